// loop4: a 4x4 -> 8-bit multiplier with a combinational loop, written for axhw's tests. The loop goes through
// a helper module: for odd a, t = ~(t & 1) = ~t oscillates at one simulation time, so Icarus never finishes.
// The import must refuse it before simulating (Yosys finds the loop through t, u and u_inv.x).
module loop4_inv (input x, output y);
    assign y = ~x;
endmodule

module loop4 (input [3:0] a, input [3:0] b, output [7:0] p);
    wire t;
    wire u;
    loop4_inv u_inv (.x(t & a[0]), .y(u));
    assign t = u;
    assign p = (a * b) ^ {7'b0, t};
endmodule

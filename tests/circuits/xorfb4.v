// xorfb4: unsigned 4x4 -> 8-bit multiplier written so that a word-level netlist shows a false loop, for
// axhw's tests: p = q ^ {7'b0, p[7]} feeds bit 7 of p into bit 0 only, and bit 7 does not depend on p, so a
// bit-level loop check must accept it. p is the exact product with bit 0 flipped when it is 128 or more.
module xorfb4 (input [3:0] a, input [3:0] b, output [7:0] p);
    wire [7:0] q = a * b;
    assign p = q ^ {7'b0, p[7]};
endmodule

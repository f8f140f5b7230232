// rev4: an unsigned 4x4 -> 8-bit multiplier whose product bits come out in reverse order (p[0] is the
// most significant), written for axhw's tests: absurd under both signed and unsigned readings (mean
// relative error 432 % unsigned, 856 % signed), so the import points at the port map and bit order.
module rev4 (input [3:0] a, input [3:0] b, output [7:0] p);
    wire [7:0] q = a * b;
    assign p = {q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]};
endmodule

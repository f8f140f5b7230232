// otrunc8u: unsigned 8x8 -> 16-bit operand-truncation multiplier, written for axhw's power tests.
// Both operands lose their 3 low bits before an exact 5x5 multiply: p = (a & ~7) * (b & ~7), always at or
// below the exact product. Ports a, b, p (the defaults). Python model: tests/power/test_imported_power.py.
module otrunc8u (input [7:0] a, input [7:0] b, output [15:0] p);
    wire [4:0] ah = a[7:3];
    wire [4:0] bh = b[7:3];
    wire [9:0] ph = ah * bh;
    assign p = {ph, 6'b000000};
endmodule

// undriven12s: a 12-bit multiplier whose product bit 0 is never driven (written for axhw's tests).
module undriven12s (input signed [11:0] a, input signed [11:0] b, output signed [23:0] p);
    wire signed [23:0] full = a * b;
    assign p[23:1] = full[23:1];
endmodule

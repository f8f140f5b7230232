// loop12s: a 12-bit multiplier with a combinational loop on its product's bit 0 (written for axhw's tests).
module loop12s (input signed [11:0] a, input signed [11:0] b, output signed [23:0] p);
    wire signed [23:0] full = a * b;
    wire t;
    assign t = ~(t & a[0]);
    assign p = {full[23:1], full[0] ^ t};
endmodule

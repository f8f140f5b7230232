// rtrunc12s: signed (two's complement) 12x12 -> 24-bit multiplier whose 6 low product bits are cleared,
// written for axhw's tests of wide imports. Ports x (activation), w (weight), y (product): import with
// --bits 12 --ports a=x,b=w,p=y. Product = floor(x * w / 64) * 64. Python model: models.py::rtrunc12s.
`timescale 1ns / 1ps
module rtrunc12s (input signed [11:0] x, input signed [11:0] w, output signed [23:0] y);
    wire signed [23:0] full;
    assign full = x * w;
    assign y = {full[23:6], 6'b000000};
endmodule

// rtrunc8s: signed (two's complement) 8x8 -> 16-bit multiplier whose 4 low product bits are cleared,
// written for axhw's tests. Ports x (activation), w (weight), y (product): import with --ports a=x,b=w,p=y.
// Product = floor(x * w / 16) * 16. Python model: tests/circuits/models.py::rtrunc8s.
`timescale 1ns / 1ps
module rtrunc8s (input signed [7:0] x, input signed [7:0] w, output signed [15:0] y);
    wire signed [15:0] full;
    assign full = x * w;
    assign y = {full[15:4], 4'b0000};
endmodule

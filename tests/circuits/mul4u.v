// mul4u: exact unsigned 4x4 -> 8-bit multiplier, written for axhw's tests (the signedness check).
// Read as unsigned its error is 0; read as signed (a forgotten --unsigned) its mean relative error is 529 %.
module mul4u (input [3:0] a, input [3:0] b, output [7:0] p);
    assign p = a * b;
endmodule

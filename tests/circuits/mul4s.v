// mul4s: exact signed (two's-complement) 4x4 -> 8-bit multiplier, written for axhw's tests (the signedness
// check). Read as signed its error is 0; read as unsigned (a stray --unsigned) its mean relative error is 378 %.
module mul4s (input signed [3:0] a, input signed [3:0] b, output signed [7:0] p);
    assign p = a * b;
endmodule

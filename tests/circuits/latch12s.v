// latch12s: a 12-bit "multiplier" that holds its product in a latch (written for axhw's tests: the
// bit-sliced compiler must refuse state).
module latch12s (input signed [11:0] a, input signed [11:0] b, output reg signed [23:0] p);
    always @(*) begin
        if (a[0]) p = a * b;
    end
endmodule

// trunc8u: unsigned 8x8 -> 16-bit truncated multiplier, written for axhw's tests (behavioural, one module).
// Partial products a[i] & b[j] of weight i + j < 5 are never formed (fixed-width truncation without
// compensation): always below the exact product, by less than 2**5 * 5. Commutative.
// Python model: tests/circuits/models.py::trunc8u.
module trunc8u (input [7:0] a, input [7:0] b, output [15:0] p);
    reg [15:0] acc;
    integer i;
    integer j;
    always @* begin
        acc = 16'd0;
        for (j = 0; j < 8; j = j + 1)
            for (i = 0; i < 8; i = i + 1)
                if (i + j >= 5 && a[i] && b[j]) acc = acc + (16'd1 << (i + j));
    end
    assign p = acc;
endmodule

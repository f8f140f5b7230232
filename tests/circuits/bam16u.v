// bam16u: unsigned 16x16 -> 32-bit broken-array multiplier (horizontal break 2, vertical break 12: partial
// products a[i] b[j] with j >= 2 and i + j >= 12 only), written for axhw's tests of wide imports. Two
// modules (one partial-product row per instance), parameters, generate loops, a flat bus of rows and a chain
// of word adders. Python model: models.py::bam16u.
module bam16u_row #(parameter J = 0) (input [15:0] a, input b, output [31:0] row);
    wire [15:0] kept;
    genvar i;
    generate
        for (i = 0; i < 16; i = i + 1) begin : g
            assign kept[i] = (J >= 2 && i + J >= 12) ? (a[i] & b) : 1'b0;
        end
    endgenerate
    assign row = {16'b0, kept} << J;
endmodule

module bam16u (input [15:0] A, input [15:0] B, output [31:0] O);
    wire [16*32-1:0] rows;
    wire [17*32-1:0] acc;
    assign acc[31:0] = 32'd0;
    genvar j;
    generate
        for (j = 0; j < 16; j = j + 1) begin : r
            bam16u_row #(.J(j)) u_row (.a(A), .b(B[j]), .row(rows[j*32 +: 32]));
            assign acc[(j+1)*32 +: 32] = acc[j*32 +: 32] + rows[j*32 +: 32];
        end
    endgenerate
    assign O = acc[16*32 +: 32];
endmodule

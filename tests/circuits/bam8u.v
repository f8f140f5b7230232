// bam8u: unsigned 8x8 -> 16-bit broken-array multiplier, written for axhw's tests (structural, several modules).
// A ripple-carry array: row j (module tc_row, one per weight bit) adds the partial products A[k] & B[j],
// shifted by j, to the running sum with half/full adders (helper modules tc_ha, tc_fa). Broken array: the
// cells of row 0 (HBL = 1: the weight operand's LSB) and every partial product of weight k + j < VBL = 6 are
// omitted. Not commutative: B's rows are broken, A's columns are not.
// Python model: tests/circuits/models.py::bam8u.
module tc_ha (input a, input b, output s, output c);
    assign s = a ^ b;
    assign c = a & b;
endmodule

module tc_fa (input a, input b, input ci, output s, output co);
    wire t;
    assign t = a ^ b;
    assign s = t ^ ci;
    assign co = (a & b) | (t & ci);
endmodule

module tc_row #(parameter J = 1, parameter HBL = 1, parameter VBL = 6) (
    input [7:0] A,
    input bj,
    input [15:0] prev,
    output [15:0] next
);
    wire [8:0] c;
    wire [7:0] pp;
    genvar k;
    generate
        for (k = 0; k < 8; k = k + 1) begin : col
            assign pp[k] = (J >= HBL && k + J >= VBL) ? (A[k] & bj) : 1'b0;
            if (k == 0) begin : h
                tc_ha u_ha (.a(prev[J]), .b(pp[0]), .s(next[J]), .c(c[1]));
            end else begin : f
                tc_fa u_fa (.a(prev[J + k]), .b(pp[k]), .ci(c[k]), .s(next[J + k]), .co(c[k + 1]));
            end
        end
        if (J + 9 <= 15) begin : top_zero
            assign next[15:J + 9] = 0;
        end
    endgenerate
    assign c[0] = 1'b0;
    assign next[J - 1:0] = prev[J - 1:0];
    assign next[J + 8] = c[8];
endmodule

module bam8u (A, B, O);
    input [7:0] A;
    input [7:0] B;
    output [15:0] O;
    localparam HBL = 1;
    localparam VBL = 6;
    wire [15:0] s0, s1, s2, s3, s4, s5, s6, s7;
    genvar k;
    generate
        for (k = 0; k < 8; k = k + 1) begin : row0
            assign s0[k] = (HBL <= 0 && k >= VBL) ? (A[k] & B[0]) : 1'b0;
        end
    endgenerate
    assign s0[15:8] = 8'd0;
    tc_row #(.J(1), .HBL(HBL), .VBL(VBL)) r1 (.A(A), .bj(B[1]), .prev(s0), .next(s1));
    tc_row #(.J(2), .HBL(HBL), .VBL(VBL)) r2 (.A(A), .bj(B[2]), .prev(s1), .next(s2));
    tc_row #(.J(3), .HBL(HBL), .VBL(VBL)) r3 (.A(A), .bj(B[3]), .prev(s2), .next(s3));
    tc_row #(.J(4), .HBL(HBL), .VBL(VBL)) r4 (.A(A), .bj(B[4]), .prev(s3), .next(s4));
    tc_row #(.J(5), .HBL(HBL), .VBL(VBL)) r5 (.A(A), .bj(B[5]), .prev(s4), .next(s5));
    tc_row #(.J(6), .HBL(HBL), .VBL(VBL)) r6 (.A(A), .bj(B[6]), .prev(s5), .next(s6));
    tc_row #(.J(7), .HBL(HBL), .VBL(VBL)) r7 (.A(A), .bj(B[7]), .prev(s6), .next(s7));
    assign O = s7;
endmodule

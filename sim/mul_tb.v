// mul_tb: self-checking golden-vector wrapper around one generated multiplier (`DUT = drum_mul / exact_mul).
//
// Why: driving 65,536 operand pairs one by one from Python costs a VPI round trip per vector; here the
// simulator walks a $readmemh table of {a, b, expected p} words (written by axhw.rtl.verify from the Python
// model axhw.arith.multipliers) at one vector per clock and counts mismatches itself. The cocotb test
// (sim/mul_tb.py) starts the clock, reads the counters, and then drives a few pairs directly (ext = 1) to
// compare the DUT against the model without this wrapper in between.
//
// Parameters (set by the runner): BITS operand width, DEPTH vector memory depth.
// Plusargs: +vectors=<hex file> (one {a, b, p} word of 4*BITS bits per line), +nvec=<vectors in it>.
`default_nettype none

module mul_tb #(
    parameter BITS = 8,
    parameter DEPTH = 65536
) (
    input  wire                clk,
    input  wire                go,
    input  wire                ext,
    input  wire [BITS-1:0]     ext_a,
    input  wire [BITS-1:0]     ext_b,
    output wire [BITS-1:0]     a,
    output wire [BITS-1:0]     b,
    output wire [2*BITS-1:0]   p,
    output wire [2*BITS-1:0]   expected,
    output reg                 done,
    output reg  [31:0]         checked,
    output reg  [31:0]         mismatches,
    output reg  [31:0]         first_bad,
    output reg  [2*BITS-1:0]   first_bad_p
);
    localparam AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;

    reg [4*BITS-1:0] vectors [0:DEPTH-1];
    reg [31:0] idx;
    reg [31:0] nvec;
    reg [8*1024-1:0] path;

    initial begin
        done = 1'b0;
        checked = 32'd0;
        mismatches = 32'd0;
        first_bad = 32'd0;
        first_bad_p = {2*BITS{1'b0}};
        idx = 32'd0;
        if (!$value$plusargs("vectors=%s", path) || !$value$plusargs("nvec=%d", nvec)) begin
            $display("mul_tb: ERROR: missing +vectors=<hex file> or +nvec=<count>");
            $finish;
        end
        $readmemh(path, vectors, 0, nvec - 32'd1);
    end

    wire [4*BITS-1:0] vec = vectors[idx[AW-1:0]];
    assign expected = vec[2*BITS-1:0];
    assign a = ext ? ext_a : vec[4*BITS-1:3*BITS];
    assign b = ext ? ext_b : vec[3*BITS-1:2*BITS];

    `DUT u_dut (.a(a), .b(b), .p(p));

`ifdef AXHW_SELF_CLOCK
    // Event-driven simulators (Icarus) run a Verilog clock far faster than cocotb's clock driver, which
    // pays a VPI callback per edge; Verilator (no --timing) is clocked from cocotb instead.
    reg tick;
    initial tick = 1'b0;
    always #1 if (go && !done) tick = ~tick;
    wire vclk = tick;
`else
    wire vclk = clk;
    wire unused_go = go;
`endif

    // One vector per cycle: idx advances on the edge, the combinational DUT settles before the next edge.
    always @(posedge vclk) begin
        if (!done && !ext) begin
            checked <= checked + 32'd1;
            if (p !== expected) begin
                if (mismatches == 32'd0) begin
                    first_bad <= idx;
                    first_bad_p <= p;
                end
                mismatches <= mismatches + 32'd1;
            end
            if (idx == nvec - 32'd1) done <= 1'b1;
            else idx <= idx + 32'd1;
        end
    end
endmodule

`default_nettype wire

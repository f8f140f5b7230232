// array_tb: runs the generated pe_array on a table of input samples and dumps every layer's outputs.
//
// Why a Verilog-side loop: a breast-cancer test set is ~200k clock cycles and MNIST ~16k per sample; driving
// the host port from cocotb would cost a VPI round trip per cycle. The wrapper walks the samples itself:
// for each sample it writes the input vector into the neuron buffer, pulses start, waits for done, then
// writes the hidden activations (neuron buffer [dlo, dhi)) and the output accumulators (output buffer
// [0, nout)) to the dump file, one hex word per line. The Python driver (axhw.rtl.netverify) compares the
// dump with the golden model (axhw.golden.network.QuantizedNetwork.forward_int); the cocotb test (sim/array_tb.py)
// starts the walk and reports the cycle counts.
//
// Parameters (set by the runner): BITS, ACC, NAW (neuron buffer address bits), OAW (output buffer address
// bits), INDEPTH (input table depth). Plusargs: +inputs=<hex> +nsamp=<n> +nin=<features> +dlo=<a> +dhi=<b>
// +nout=<outputs> +dump=<file>, optionally +vcd=<file>: every signal of the array as a VCD (switching activity
// for power analysis; Icarus always, Verilator when built with --trace and AXHW_VCD).
`default_nettype none

module array_tb #(
    parameter BITS = 8,
    parameter ACC = 32,
    parameter NAW = 8,
    parameter OAW = 4,
    parameter INDEPTH = 524288
) (
    input  wire        clk,
    input  wire        go,
    output reg         finished,
    output reg  [31:0] samples,
    output reg  [31:0] busy_cycles
);
    localparam IAW = $clog2(INDEPTH);
    localparam [2:0] RESET = 3'd0;
    localparam [2:0] LOAD = 3'd1;
    localparam [2:0] START = 3'd2;
    localparam [2:0] WAIT = 3'd3;
    localparam [2:0] DUMPN = 3'd4;
    localparam [2:0] DUMPO = 3'd5;
    localparam [2:0] FIN = 3'd6;

    reg [BITS-1:0] inputs [0:INDEPTH-1];
    reg [8*1024-1:0] in_path;
    reg [8*1024-1:0] dump_path;
    reg [8*1024-1:0] vcd_path;
    reg [31:0] nsamp;
    reg [31:0] nin;
    reg [31:0] dlo;
    reg [31:0] dhi;
    reg [31:0] nout;
    integer fd;

    reg [2:0] phase;
    reg [31:0] i;
    reg [31:0] base;
    reg [3:0] rst_cnt;

    initial begin
        finished = 1'b0;
        samples = 32'd0;
        busy_cycles = 32'd0;
        phase = RESET;
        i = 32'd0;
        base = 32'd0;
        rst_cnt = 4'd0;
        if (!$value$plusargs("inputs=%s", in_path) || !$value$plusargs("nsamp=%d", nsamp)
            || !$value$plusargs("nin=%d", nin) || !$value$plusargs("dlo=%d", dlo)
            || !$value$plusargs("dhi=%d", dhi) || !$value$plusargs("nout=%d", nout)
            || !$value$plusargs("dump=%s", dump_path)) begin
            $display("array_tb: ERROR: missing plusargs (+inputs +nsamp +nin +dlo +dhi +nout +dump)");
            $finish;
        end
        $readmemh(in_path, inputs, 0, nsamp * nin - 32'd1);
        fd = $fopen(dump_path, "w");
`ifndef VERILATOR
`define AXHW_CAN_DUMP
`endif
`ifdef AXHW_VCD
`define AXHW_CAN_DUMP
`endif
`ifdef AXHW_CAN_DUMP
        if ($value$plusargs("vcd=%s", vcd_path)) begin
            $dumpfile(vcd_path);
            $dumpvars(0, u_dut);
        end
`endif
    end

`ifdef AXHW_SELF_CLOCK
    // As in mul_tb.v: Icarus clocks itself (much faster than a cocotb clock); Verilator is clocked by cocotb.
    reg tick;
    initial tick = 1'b0;
    always #1 if (go && !finished) tick = ~tick;
    wire vclk = tick;
`else
    wire vclk = clk;
    wire unused_go = go;
`endif

    wire rst = (phase == RESET);
    wire start = (phase == START);
    wire busy;
    wire done;
    wire host_we = (phase == LOAD);
    wire [NAW-1:0] host_addr = i[NAW-1:0];
    wire [31:0] in_idx = base + i;
    wire [BITS-1:0] host_wdata = inputs[in_idx[IAW-1:0]];
    wire [BITS-1:0] host_rdata;
    wire [OAW-1:0] host_oaddr = i[OAW-1:0];
    wire [ACC-1:0] host_odata;

    pe_array u_dut (
        .clk(vclk), .rst(rst), .start(start), .busy(busy), .done(done), .host_we(host_we),
        .host_addr(host_addr), .host_wdata(host_wdata), .host_rdata(host_rdata), .host_oaddr(host_oaddr),
        .host_odata(host_odata)
    );

    always @(posedge vclk) begin
        if (go && !finished) begin
            if (busy) busy_cycles <= busy_cycles + 32'd1;
            case (phase)
                RESET: begin
                    rst_cnt <= rst_cnt + 4'd1;
                    if (rst_cnt == 4'd3) begin
                        phase <= (nsamp == 32'd0) ? FIN : LOAD;
                        i <= 32'd0;
                    end
                end
                LOAD: begin
                    if (i == nin - 32'd1) begin
                        i <= 32'd0;
                        phase <= START;
                    end else i <= i + 32'd1;
                end
                START: phase <= WAIT;
                WAIT: if (!busy && done) begin
                    i <= dlo;
                    phase <= (dhi > dlo) ? DUMPN : DUMPO;
                    if (dhi <= dlo) i <= 32'd0;
                end
                DUMPN: begin
                    $fdisplay(fd, "%h", host_rdata);
                    if (i == dhi - 32'd1) begin
                        i <= 32'd0;
                        phase <= DUMPO;
                    end else i <= i + 32'd1;
                end
                DUMPO: begin
                    $fdisplay(fd, "%h", host_odata);
                    if (i == nout - 32'd1) begin
                        i <= 32'd0;
                        samples <= samples + 32'd1;
                        base <= base + nin;
                        if (samples + 32'd1 == nsamp) phase <= FIN;
                        else phase <= LOAD;
                    end else i <= i + 32'd1;
                end
                default: begin
                    $fclose(fd);
                    finished <= 1'b1;
                end
            endcase
        end
    end
endmodule

`default_nettype wire

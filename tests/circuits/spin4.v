// spin4: a 4x4 -> 8-bit multiplier whose simulation never finishes although it has no combinational loop,
// written for axhw's tests (the simulation watchdog, SIGTERM during a simulation). Its always block loops
// forever at one simulation time when a == 0, the first operand pair the testbench applies; Yosys cannot
// read the while loop (so it cannot check it), Icarus runs it.
module spin4 (input [3:0] a, input [3:0] b, output reg [7:0] p);
    always @* begin
        p = a * b;
        while (a == 4'd0) p = 8'd0;
    end
endmodule

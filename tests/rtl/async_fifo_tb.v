// Testbench for async_fifo.v, dumping bitmac's trace format.
//
// Clocks are generated here from periods and phases (parameters, ps):
// write edge k at WPHASE + k*WPERIOD, read edge k at RPHASE + k*RPERIOD,
// every edge with time <= TEND. The enable of each edge comes from a file
// written by the Rust test (one 0/1 per line, edge order per domain,
// $readmemb). Simulation time runs at 4 ticks per model ps: edges at 4t+4,
// trace lines printed at 4t+5 (after all non-blocking updates), clocks fall
// at 4t+6. Reset is asserted from tick 0 and released at tick 2.
//
// The writer offers words 0, 1, 2, ... (mod 2^DSIZE): wdata is the number
// of pushes so far. At each edge the testbench samples push = winc & ~wfull
// and pop = rinc & ~rempty (and rdata) before raising the clock.
`timescale 1ps/1ps
module async_fifo_tb;
    parameter DSIZE   = 8;
    parameter ASIZE   = 4;
    parameter SYNC    = 2;
    parameter WPERIOD = 10000;
    parameter RPERIOD = 13700;
    parameter WPHASE  = 0;
    parameter RPHASE  = 0;
    parameter TEND    = 1000000;
    parameter NW      = 100;      // entries in wen.txt
    parameter NR      = 100;      // entries in ren.txt
    parameter HEX     = 2;        // hex digits per pointer (for the header only)

    reg wclk = 0, rclk = 0, wrst_n = 0, rrst_n = 0, winc = 0, rinc = 0;
    reg [DSIZE-1:0] wdata = 0;
    wire [DSIZE-1:0] rdata;
    wire wfull, rempty;
    wire [ASIZE:0] wptr, rptr, wq_rptr, rq_wptr;

    async_fifo #(.DSIZE(DSIZE), .ASIZE(ASIZE), .SYNC(SYNC)) dut (
        .wclk(wclk), .wrst_n(wrst_n), .winc(winc), .wdata(wdata), .wfull(wfull),
        .rclk(rclk), .rrst_n(rrst_n), .rinc(rinc), .rdata(rdata), .rempty(rempty),
        .wptr(wptr), .rptr(rptr), .wq_rptr(wq_rptr), .rq_wptr(rq_wptr));

    reg wen_mem [0:NW-1];
    reg ren_mem [0:NR-1];
    integer fd;
    reg [63:0] tw, tr, t, now;
    integer kw, kr;
    reg hw, hr, push, pop;
    reg [DSIZE-1:0] popped;

    initial begin
        $readmemb("wen.txt", wen_mem);
        $readmemb("ren.txt", ren_mem);
        fd = $fopen("rtl_trace.txt", "w");
        $fdisplay(fd, "# async_fifo_tb.v (Icarus) ASIZE=%0d SYNC=%0d DSIZE=%0d", ASIZE, SYNC, DSIZE);
        $fdisplay(fd, "# time_ps dom wfull rempty wptr rptr data en wq_rptr rq_wptr");
        #2 wrst_n = 1; rrst_n = 1;
        now = 2;
        kw = 0; kr = 0;
        tw = WPHASE; tr = RPHASE;
        while ((tw <= TEND) || (tr <= TEND)) begin
            t = (tw < tr) ? tw : tr;
            hw = (tw == t);
            hr = (tr == t);
            #(4 * t + 4 - now);
            now = 4 * t + 4;
            if (hw) winc = (kw < NW) ? wen_mem[kw] : 1'b0;
            if (hr) rinc = (kr < NR) ? ren_mem[kr] : 1'b0;
            #0;
            push = hw & winc & ~wfull;
            pop = hr & rinc & ~rempty;
            popped = rdata;
            if (hw) wclk = 1;
            if (hr) rclk = 1;
            #1;
            if (hw) begin
                if (push)
                    $fdisplay(fd, "%0d W %0d %0d %h %h %0d %0d %h %h", t, wfull, rempty, wptr, rptr, wdata, winc, wq_rptr, rq_wptr);
                else
                    $fdisplay(fd, "%0d W %0d %0d %h %h - %0d %h %h", t, wfull, rempty, wptr, rptr, winc, wq_rptr, rq_wptr);
                if (push) wdata = wdata + 1;
                kw = kw + 1;
                tw = WPHASE + kw * WPERIOD;
            end
            if (hr) begin
                if (pop)
                    $fdisplay(fd, "%0d R %0d %0d %h %h %0d %0d %h %h", t, wfull, rempty, wptr, rptr, popped, rinc, wq_rptr, rq_wptr);
                else
                    $fdisplay(fd, "%0d R %0d %0d %h %h - %0d %h %h", t, wfull, rempty, wptr, rptr, rinc, wq_rptr, rq_wptr);
                kr = kr + 1;
                tr = RPHASE + kr * RPERIOD;
            end
            #1;
            wclk = 0;
            rclk = 0;
            now = now + 2;
        end
        $fclose(fd);
        $finish;
    end
endmodule

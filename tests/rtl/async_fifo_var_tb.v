// Testbench for async_fifo_var.v (FIFO variants), dumping bitmac's trace
// format v2 (docs/cdc.md sections 9 and 16). Same clocking as async_fifo_tb.v.
//
// Clocks are generated here from periods and phases (parameters, ps):
// write edge k at WPHASE + k*WPERIOD, read edge k at RPHASE + k*RPERIOD,
// every edge with time <= TEND; with EXT = 1 (jittered clocks) the edge
// times are read from wt.txt / rt.txt instead. The enable of each edge comes from a file
// written by the Rust test (one 0/1 per line, edge order per domain,
// $readmemb). Simulation time runs at 4 ticks per model ps: edges at 4t+4,
// trace lines printed at 4t+5 (after all non-blocking updates), clocks fall
// at 4t+6. Reset is asserted from tick 0 and released at tick 2.
//
// The writer offers words 0, 1, 2, ... (mod 2^DSIZE): wdata is the number
// of pushes so far. At each edge the testbench samples push = winc & ~wfull
// and pop = rinc & ~rempty (and rdata) before raising the clock.
`timescale 1ps/1ps
module async_fifo_var_tb;
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
    parameter EXT     = 0;        // 1: edge times from wt.txt / rt.txt (hex, NW / NR lines)
    parameter STAGES  = 0;
    parameter FWFT    = 1;
    parameter AFEN    = 0;
    parameter AF      = 1;
    parameter AEEN    = 0;
    parameter AE      = 0;

    reg wclk = 0, rclk = 0, wrst_n = 0, rrst_n = 0, winc = 0, rinc = 0;
    reg [DSIZE-1:0] wdata = 0;
    wire [DSIZE-1:0] rdata;
    wire [DSIZE-1:0] core_data;
    wire wfull, rempty, wafull, raempty, rvalid, core_pop;
    wire [ASIZE:0] wptr, rptr, wq_rptr, rq_wptr;

    async_fifo_var #(.DSIZE(DSIZE), .ASIZE(ASIZE), .SYNC(SYNC), .STAGES(STAGES), .FWFT(FWFT),
                     .AFEN(AFEN), .AF(AF), .AEEN(AEEN), .AE(AE)) dut (
        .wclk(wclk), .wrst_n(wrst_n), .winc(winc), .wdata(wdata), .wfull(wfull), .wafull(wafull),
        .rclk(rclk), .rrst_n(rrst_n), .rinc(rinc), .rvalid(rvalid), .rdata(rdata), .rempty(rempty),
        .raempty(raempty), .wptr(wptr), .rptr(rptr), .wq_rptr(wq_rptr), .rq_wptr(rq_wptr),
        .core_pop(core_pop), .core_data(core_data));

    reg wen_mem [0:NW-1];
    reg ren_mem [0:NR-1];
    reg [63:0] wt_mem [0:NW-1];
    reg [63:0] rt_mem [0:NR-1];
    // Time of edge k of a domain: generated from period and phase, or
    // (EXT = 1, jittered clocks) read from the files; past the list: never.
    function [63:0] wtime(input integer k);
        wtime = EXT ? ((k < NW) ? wt_mem[k] : 64'hFFFF_FFFF_FFFF_FFFF) : WPHASE + k * WPERIOD;
    endfunction
    function [63:0] rtime(input integer k);
        rtime = EXT ? ((k < NR) ? rt_mem[k] : 64'hFFFF_FFFF_FFFF_FFFF) : RPHASE + k * RPERIOD;
    endfunction
    integer fd;
    reg [63:0] tw, tr, t, now;
    integer kw, kr;
    reg hw, hr, push, pop, tk;
    reg [DSIZE-1:0] popped, taken;
    // The v2 columns after the instant: wafull raempty valid dout (take is
    // printed per domain line).
    task ext;
        begin
            if (AFEN) $fwrite(fd, " %0d", wafull); else $fwrite(fd, " -");
            if (AEEN) $fwrite(fd, " %0d", raempty); else $fwrite(fd, " -");
            if (rvalid) $fwrite(fd, " 1 %0d", rdata); else $fwrite(fd, " 0 -");
        end
    endtask

    initial begin
        $readmemb("wen.txt", wen_mem);
        $readmemb("ren.txt", ren_mem);
        if (EXT) begin
            $readmemh("wt.txt", wt_mem);
            $readmemh("rt.txt", rt_mem);
        end
        fd = $fopen("rtl_trace.txt", "w");
        $fdisplay(fd, "# async_fifo_var_tb.v (Icarus) ASIZE=%0d SYNC=%0d DSIZE=%0d STAGES=%0d FWFT=%0d", ASIZE, SYNC, DSIZE, STAGES, FWFT);
        $fdisplay(fd, "# time_ps dom wfull rempty wptr rptr data en wq_rptr rq_wptr wafull raempty valid dout take");
        #2 wrst_n = 1; rrst_n = 1;
        now = 2;
        kw = 0; kr = 0;
        tw = wtime(0); tr = rtime(0);
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
            pop = hr & core_pop;
            popped = core_data;
            tk = hr & (FWFT ? (rinc & rvalid) : rvalid);
            taken = rdata;
            if (hw) wclk = 1;
            if (hr) rclk = 1;
            #1;
            if (hw) begin
                if (push)
                    $fwrite(fd, "%0d W %0d %0d %h %h %0d %0d %h %h", t, wfull, rempty, wptr, rptr, wdata, winc, wq_rptr, rq_wptr);
                else
                    $fwrite(fd, "%0d W %0d %0d %h %h - %0d %h %h", t, wfull, rempty, wptr, rptr, winc, wq_rptr, rq_wptr);
                ext;
                $fdisplay(fd, " -");
                if (push) wdata = wdata + 1;
                kw = kw + 1;
                tw = wtime(kw);
            end
            if (hr) begin
                if (pop)
                    $fwrite(fd, "%0d R %0d %0d %h %h %0d %0d %h %h", t, wfull, rempty, wptr, rptr, popped, rinc, wq_rptr, rq_wptr);
                else
                    $fwrite(fd, "%0d R %0d %0d %h %h - %0d %h %h", t, wfull, rempty, wptr, rptr, rinc, wq_rptr, rq_wptr);
                ext;
                if (tk) $fdisplay(fd, " %0d", taken); else $fdisplay(fd, " -");
                kr = kr + 1;
                tr = rtime(kr);
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

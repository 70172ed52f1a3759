// Replays a committed bitmac `cdc` vector case on async_fifo.v (the cdc
// branch's Cummings style-1 RTL) and compares every edge.
//
// The trace (`trace.txt`, the `bitmac cdc --trace` format: one line per
// rising edge after reset release, W before R at an instant, state after
// the instant) gives each edge's time, domain and sampled enable. This
// testbench raises the clocks at exactly those instants (both at once when
// a W and an R line share a time), drives winc/rinc from `en`, offers the
// words 0, 1, 2, ... (mod 2^DSIZE) like `bitmac cdc`, and after the edge
// compares wfull, rempty, wptr, rptr (Gray, hex), the pushed/popped word
// and both synchronizer outputs with the line. Lines starting with `#` are
// comments. Time runs at 4 ticks per ps: edges at 4t+4, checks at 4t+5,
// clocks fall at 4t+6; reset is released at tick 2.
`timescale 1ps/1ps
module cdc_replay_tb;
    parameter DSIZE = 8;
    parameter ASIZE = 4;
    parameter SYNC  = 2;

    reg wclk = 0, rclk = 0, wrst_n = 0, rrst_n = 0, winc = 0, rinc = 0;
    reg [DSIZE-1:0] wdata = 0;
    wire [DSIZE-1:0] rdata;
    wire wfull, rempty;
    wire [ASIZE:0] wptr, rptr, wq_rptr, rq_wptr;

    async_fifo #(.DSIZE(DSIZE), .ASIZE(ASIZE), .SYNC(SYNC)) dut (
        .wclk(wclk), .wrst_n(wrst_n), .winc(winc), .wdata(wdata), .wfull(wfull),
        .rclk(rclk), .rrst_n(rrst_n), .rinc(rinc), .rdata(rdata), .rempty(rempty),
        .wptr(wptr), .rptr(rptr), .wq_rptr(wq_rptr), .rq_wptr(rq_wptr));

    // One parsed line.
    reg [8*512:1] buf_;
    integer fd, lineno, n, errors, edges, have;
    reg [63:0] t, now;
    reg [8*8:1] dom, dstr;
    integer e_wfull, e_rempty, e_en, e_data;
    reg [ASIZE:0] e_wptr, e_rptr, e_wq, e_rq;
    // The (at most two) lines of the current instant.
    reg [63:0] g_t;
    reg g_hw, g_hr;
    integer w_line, r_line, w_wfull, w_rempty, w_en, w_data, r_wfull, r_rempty, r_en, r_data;
    reg w_hasdata, r_hasdata;
    reg [ASIZE:0] w_wptr, w_rptr, w_wq, w_rq, r_wptr, r_rptr, r_wq, r_rq;
    reg push, pop;
    reg [DSIZE-1:0] pushed, popped;

    // Read the next data line into the e_* fields; have = 0 at end of file.
    task next_line;
        begin
            have = 0;
            while (!have && !$feof(fd)) begin
                buf_ = 0;
                n = $fgets(buf_, fd);
                if (n > 0) begin
                    lineno = lineno + 1;
                    n = $sscanf(buf_, "%d %s %d %d %h %h %s %d %h %h", t, dom, e_wfull, e_rempty, e_wptr, e_rptr, dstr, e_en, e_wq, e_rq);
                    if (n == 10) have = 1;
                end
            end
        end
    endtask

    task check(input [8*8:1] d, input integer ln, input integer xf, input integer xe, input [ASIZE:0] xw,
               input [ASIZE:0] xr, input hasdata, input integer xdata, input did, input [DSIZE-1:0] got,
               input [ASIZE:0] xwq, input [ASIZE:0] xrq);
        begin
            edges = edges + 1;
            if (wfull !== xf[0] || rempty !== xe[0] || wptr !== xw || rptr !== xr || wq_rptr !== xwq
                || rq_wptr !== xrq || did !== hasdata || (hasdata && got !== xdata[DSIZE-1:0])) begin
                errors = errors + 1;
                if (errors <= 5)
                    $display("FAIL trace.txt line %0d (%0s edge): rtl wfull=%0d rempty=%0d wptr=%h rptr=%h data=%0s%0d wq_rptr=%h rq_wptr=%h, expected wfull=%0d rempty=%0d wptr=%h rptr=%h data=%0s%0d wq_rptr=%h rq_wptr=%h",
                             ln, d, wfull, rempty, wptr, rptr, did ? "" : "-", did ? got : 0, wq_rptr, rq_wptr,
                             xf, xe, xw, xr, hasdata ? "" : "-", hasdata ? xdata : 0, xwq, xrq);
            end
        end
    endtask

    initial begin
        fd = $fopen({`VDIR, "/trace.txt"}, "r");
        if (fd == 0) begin $display("FAIL cannot open trace.txt"); $finish; end
        lineno = 0; errors = 0; edges = 0;
        #2 wrst_n = 1; rrst_n = 1;
        now = 2;
        next_line;
        while (have) begin
            // Gather the instant: a W line and/or an R line with time t.
            g_t = t; g_hw = 0; g_hr = 0;
            if (dom == "W") begin
                g_hw = 1; w_line = lineno; w_wfull = e_wfull; w_rempty = e_rempty; w_wptr = e_wptr; w_rptr = e_rptr;
                w_en = e_en; w_wq = e_wq; w_rq = e_rq; w_hasdata = (dstr != "-");
                if (w_hasdata) n = $sscanf(dstr, "%d", w_data);
                next_line;
            end
            if (have && t == g_t && dom == "R") begin
                g_hr = 1; r_line = lineno; r_wfull = e_wfull; r_rempty = e_rempty; r_wptr = e_wptr; r_rptr = e_rptr;
                r_en = e_en; r_wq = e_wq; r_rq = e_rq; r_hasdata = (dstr != "-");
                if (r_hasdata) n = $sscanf(dstr, "%d", r_data);
                next_line;
            end
            if (!g_hw && !g_hr) begin
                $display("FAIL trace.txt line %0d: domain %0s is not W or R, or out of order", lineno, dom);
                errors = errors + 1;
                have = 0;
            end else begin
                #(4 * g_t + 4 - now);
                now = 4 * g_t + 4;
                if (g_hw) winc = w_en[0];
                if (g_hr) rinc = r_en[0];
                #0;
                push = g_hw & winc & ~wfull;
                pop = g_hr & rinc & ~rempty;
                pushed = wdata;
                popped = rdata;
                if (g_hw) wclk = 1;
                if (g_hr) rclk = 1;
                #1;
                if (g_hw) begin
                    // The W line shows the state after the whole instant, as does the R line.
                    check("W", w_line, w_wfull, w_rempty, w_wptr, w_rptr, w_hasdata, w_data, push, pushed, w_wq, w_rq);
                    if (push) wdata = wdata + 1;
                end
                if (g_hr) check("R", r_line, r_wfull, r_rempty, r_wptr, r_rptr, r_hasdata, r_data, pop, popped, r_wq, r_rq);
                #1;
                wclk = 0;
                rclk = 0;
                now = now + 2;
            end
        end
        $fclose(fd);
        if (errors == 0 && edges > 0) $display("PASS %0d edges", edges);
        else $display("FAIL %0d of %0d edges differ", errors, edges);
        $finish;
    end
endmodule

// Replays a committed bitmac `gemm` case (the datapath's weight- or
// input-stationary or output-stationary array) column by column on RTL:
// pe_column.v computes each fold's column sum (narrowing at every PE
// adder), psum_round.v drops D LSBs of it with the psum rounding mode and
// centre offset, and a `pe` used as the psum-buffer adder (weight 1)
// accumulates B = store_P(B + round_D(s)) - the datapath's writeback
// (docs/datapath.md). Folds cover K in chunks of FOLD rows (the array's R
// for ws/is, all of K for os), in ascending order; rows past K hold weight
// 0. Loads a.hex (M x K), w.hex (K x N) and compares every final B with
// acc.hex (M x N).
`timescale 1ns/1ps
module gemm_column_tb;
    parameter M = 4;
    parameter K = 8;
    parameter N = 2;
    parameter FOLD = 4;
    parameter AW = 8;
    parameter A_SIGNED = 1;
    parameter WW = 8;
    parameter W_SIGNED = 1;
    parameter ACCW = 32;
    parameter OVF = 0;
    parameter D = 0;
    parameter MODE = 2;
    parameter integer OFFSET = 0;
    localparam RW = ACCW + 2;          // the rounded column sum, never narrowed
    localparam NF = (K + FOLD - 1) / FOLD;

    reg clk = 0;
    reg load;
    reg [FOLD*WW-1:0] w_in;
    reg [FOLD*AW-1:0] a_in;
    wire [ACCW-1:0] colsum;
    wire colovf;
    reg [ACCW-1:0] rx;
    wire [RW-1:0] rounded;
    wire rovf;
    wire [1:0] rpos;
    reg bload;
    reg [ACCW-1:0] b_in;
    wire [ACCW-1:0] b_out;
    wire bovf;

    pe_column #(.K(FOLD), .AW(AW), .A_SIGNED(A_SIGNED), .WW(WW), .W_SIGNED(W_SIGNED), .ACCW(ACCW), .OVF(OVF))
        col (.clk(clk), .load(load), .w_in(w_in), .a_in(a_in), .psum_out(colsum), .ovf_out(colovf));
    psum_round #(.IN_W(ACCW), .IN_SIGNED(1), .K(D), .MODE(MODE), .OFFSET(OFFSET), .OUT_W(RW), .OUT_SIGNED(1), .OVF(0))
        rnd (.clk(clk), .x(rx), .y(rounded), .ovf(rovf), .pos(rpos));
    pe #(.AW(RW), .A_SIGNED(1), .WW(2), .W_SIGNED(1), .ACCW(ACCW), .OVF(OVF))
        buffer (.clk(clk), .load(bload), .w_in(2'b01), .a_in(rounded), .psum_in(b_in), .ovf_in(1'b0),
                .psum_out(b_out), .ovf_out(bovf));

    reg [AW-1:0]   am   [0:M*K-1];
    reg [WW-1:0]   wm   [0:K*N-1];
    reg [ACCW-1:0] accm [0:M*N-1];
    reg [ACCW-1:0] s    [0:M-1];
    reg [ACCW-1:0] B    [0:M-1];

    integer j, f, e, r, m, kk, errors;
    initial begin
        $readmemh({`VDIR, "/a.hex"}, am);
        $readmemh({`VDIR, "/w.hex"}, wm);
        $readmemh({`VDIR, "/acc.hex"}, accm);
        errors = 0;
        // The buffer adder's weight (1) is loaded once.
        bload = 1; b_in = 0; rx = 0; load = 0; w_in = 0; a_in = 0;
        #1 clk = 1; #1 clk = 0;
        bload = 0;
        for (j = 0; j < N; j = j + 1) begin
            for (m = 0; m < M; m = m + 1) B[m] = 0;
            for (f = 0; f < NF; f = f + 1) begin
                // One pe_column pass: load, then stream the M activation vectors (skewed).
                for (e = 0; e < M + FOLD; e = e + 1) begin
                    load = (e == 0);
                    for (r = 0; r < FOLD; r = r + 1) begin
                        kk = f * FOLD + r;
                        w_in[r*WW +: WW] = (kk < K) ? wm[kk*N + j] : {WW{1'b0}};
                        m = e - 1 - r;
                        a_in[r*AW +: AW] = (kk < K && m >= 0 && m < M) ? am[m*K + kk] : {AW{1'b0}};
                    end
                    #1 clk = 1; #1 clk = 0;
                    m = e - FOLD;
                    if (m >= 0 && m < M) s[m] = colsum;
                end
                // Writeback of each column sum: round, then B = store(B + rounded).
                for (m = 0; m < M; m = m + 1) begin
                    rx = s[m];
                    #1 clk = 1; #1 clk = 0;      // psum_round registers the rounded sum
                    b_in = B[m];
                    #1 clk = 1; #1 clk = 0;      // the buffer adder registers B + rounded
                    B[m] = b_out;
                end
            end
            for (m = 0; m < M; m = m + 1) begin
                if (B[m] !== accm[m*N + j]) begin
                    errors = errors + 1;
                    if (errors <= 5)
                        $display("FAIL acc[%0d][%0d] (acc.hex line %0d): rtl %h, expected %h", m, j, m*N + j + 1, B[m], accm[m*N + j]);
                end
            end
        end
        if (errors == 0) $display("PASS %0d outputs", M*N);
        else $display("FAIL %0d of %0d outputs differ", errors, M*N);
        $finish;
    end
endmodule

// Two-clock asynchronous FIFO, Cummings (SNUG 2002) style 1, written for
// bitmac's RTL cross-check. Synthesizable Verilog-2001.
//
// - DEPTH = 2**ASIZE words of DSIZE bits;
// - (ASIZE+1)-bit binary pointers; the crossing registers hold the Gray code
//   of the *next* binary value (registered, never combinational);
// - SYNC flops per direction (SYNC >= 1);
// - registered flags: rempty <= (rgraynext == rq_wptr),
//   wfull <= (wgraynext == {~wq_rptr[ASIZE:ASIZE-1], wq_rptr[ASIZE-2:0]});
// - asynchronous active-low reset per domain: pointers and syncs 0,
//   wfull 0, rempty 1. The memory is not reset.
`timescale 1ps/1ps
module async_fifo #(
    parameter DSIZE = 8,
    parameter ASIZE = 4,
    parameter SYNC  = 2
) (
    input  wire             wclk,
    input  wire             wrst_n,
    input  wire             winc,
    input  wire [DSIZE-1:0] wdata,
    output reg              wfull,
    input  wire             rclk,
    input  wire             rrst_n,
    input  wire             rinc,
    output wire [DSIZE-1:0] rdata,
    output reg              rempty,
    // Observation ports for the testbench.
    output reg  [ASIZE:0]   wptr,
    output reg  [ASIZE:0]   rptr,
    output wire [ASIZE:0]   wq_rptr,
    output wire [ASIZE:0]   rq_wptr
);
    localparam DEPTH = 1 << ASIZE;

    reg [DSIZE-1:0] mem [0:DEPTH-1];
    reg [ASIZE:0]   wbin, rbin;
    reg [ASIZE:0]   wq [0:SYNC-1];   // rptr synchronized into wclk
    reg [ASIZE:0]   rq [0:SYNC-1];   // wptr synchronized into rclk

    assign wq_rptr = wq[SYNC-1];
    assign rq_wptr = rq[SYNC-1];

    // ---------------- write domain ----------------
    wire           wpush     = winc & ~wfull;
    wire [ASIZE:0] wbinnext  = wbin + {{ASIZE{1'b0}}, wpush};
    wire [ASIZE:0] wgraynext = (wbinnext >> 1) ^ wbinnext;
    wire [ASIZE:0] wq_inv    = wq_rptr ^ (3 << (ASIZE-1)); // two MSBs inverted (works for ASIZE = 1)
    wire           wfull_val = (wgraynext == wq_inv);

    always @(posedge wclk)
        if (wpush) mem[wbin[ASIZE-1:0]] <= wdata;

    integer i;
    always @(posedge wclk or negedge wrst_n)
        if (!wrst_n) begin
            wbin  <= 0;
            wptr  <= 0;
            wfull <= 1'b0;
            for (i = 0; i < SYNC; i = i + 1) wq[i] <= 0;
        end else begin
            wbin  <= wbinnext;
            wptr  <= wgraynext;
            wfull <= wfull_val;
            wq[0] <= rptr;
            for (i = 1; i < SYNC; i = i + 1) wq[i] <= wq[i-1];
        end

    // ---------------- read domain ----------------
    wire           rpop      = rinc & ~rempty;
    wire [ASIZE:0] rbinnext  = rbin + {{ASIZE{1'b0}}, rpop};
    wire [ASIZE:0] rgraynext = (rbinnext >> 1) ^ rbinnext;
    wire           rempty_val = (rgraynext == rq_wptr);

    assign rdata = mem[rbin[ASIZE-1:0]];

    integer j;
    always @(posedge rclk or negedge rrst_n)
        if (!rrst_n) begin
            rbin   <= 0;
            rptr   <= 0;
            rempty <= 1'b1;
            for (j = 0; j < SYNC; j = j + 1) rq[j] <= 0;
        end else begin
            rbin   <= rbinnext;
            rptr   <= rgraynext;
            rempty <= rempty_val;
            rq[0]  <= wptr;
            for (j = 1; j < SYNC; j = j + 1) rq[j] <= rq[j-1];
        end
endmodule

// Two-clock asynchronous FIFO with the variants of bitmac's docs/cdc.md
// section 16, written for bitmac's RTL cross-check. Synthesizable
// Verilog-2001. The core is an instance of async_fifo.v (Cummings, SNUG
// 2002, style 1: one copy of the pointer, synchronizer and flag logic); on
// top of it:
//
// - STAGES (0..3) read-stage registers sv/sd[0..STAGES-1] between the
//   memory and the read port (index STAGES-1 drives the port). At a read
//   edge, with ready = rinc: stage j >= 1 loads stage j-1 when ready or a
//   stage k >= j is empty; stage 0 loads mem[rbin] (valid = the core is not
//   empty) when ready or any stage is empty, and that load is the core read;
// - FWFT = 1: the port shows the head word and its valid before the read
//   (rvalid/rdata), the consumer takes it at an edge with rinc & rvalid;
//   FWFT = 0: a read (rinc & the head valid) loads an output register
//   (rvalid_r, dout_r) that delivers the word at the next read edge;
// - AFEN/AF: wafull <= (wbinnext - bin(wq_rptr)) mod 2^(ASIZE+1) >= AF;
//   AEEN/AE: raempty <= (bin(rq_wptr) - rbinnext) mod 2^(ASIZE+1) <= AE;
//   reset values 0 and 1.
`timescale 1ps/1ps
module async_fifo_var #(
    parameter DSIZE  = 8,
    parameter ASIZE  = 4,
    parameter SYNC   = 2,
    parameter STAGES = 0,
    parameter FWFT   = 1,
    parameter AFEN   = 0,
    parameter AF     = 1,
    parameter AEEN   = 0,
    parameter AE     = 0
) (
    input  wire             wclk,
    input  wire             wrst_n,
    input  wire             winc,
    input  wire [DSIZE-1:0] wdata,
    output wire             wfull,
    output reg              wafull,
    input  wire             rclk,
    input  wire             rrst_n,
    input  wire             rinc,
    output wire             rvalid,
    output wire [DSIZE-1:0] rdata,
    output wire             rempty,
    output reg              raempty,
    // Observation ports for the testbench.
    output wire [ASIZE:0]   wptr,
    output wire [ASIZE:0]   rptr,
    output wire [ASIZE:0]   wq_rptr,
    output wire [ASIZE:0]   rq_wptr,
    output wire             core_pop,
    output wire [DSIZE-1:0] core_data
);
    wire core_rd;
    async_fifo #(.DSIZE(DSIZE), .ASIZE(ASIZE), .SYNC(SYNC)) core (
        .wclk(wclk), .wrst_n(wrst_n), .winc(winc), .wdata(wdata), .wfull(wfull),
        .rclk(rclk), .rrst_n(rrst_n), .rinc(core_rd), .rdata(core_data), .rempty(rempty),
        .wptr(wptr), .rptr(rptr), .wq_rptr(wq_rptr), .rq_wptr(rq_wptr));

    function [ASIZE:0] g2b(input [ASIZE:0] g);
        integer k;
        begin
            g2b[ASIZE] = g[ASIZE];
            for (k = ASIZE - 1; k >= 0; k = k - 1) g2b[k] = g2b[k+1] ^ g[k];
        end
    endfunction

    // ---------------- almost flags ----------------
    // The core's registered pointers are the Gray codes of its binary
    // pointers, so bin = g2b(ptr); the next binary values follow from the
    // core's own push and pop conditions.
    wire           wpush    = winc & ~wfull;
    wire [ASIZE:0] wbinnext = g2b(wptr) + {{ASIZE{1'b0}}, wpush};
    wire [ASIZE:0] wocc     = wbinnext - g2b(wq_rptr);
    wire           rpop     = core_rd & ~rempty;
    wire [ASIZE:0] rbinnext = g2b(rptr) + {{ASIZE{1'b0}}, rpop};
    wire [ASIZE:0] rocc     = g2b(rq_wptr) - rbinnext;
    assign core_pop = rpop;

    always @(posedge wclk or negedge wrst_n)
        if (!wrst_n) wafull <= 1'b0;
        else         wafull <= AFEN ? (wocc >= AF) : 1'b0;

    // ---------------- read stage ----------------
    reg             sv [0:2];
    reg [DSIZE-1:0] sd [0:2];
    reg             rvalid_r;
    reg [DSIZE-1:0] dout_r;
    wire b0 = (STAGES >= 1) && !sv[0];
    wire b1 = (STAGES >= 2) && !sv[1];
    wire b2 = (STAGES >= 3) && !sv[2];
    assign core_rd = (STAGES == 0) ? rinc : (rinc | b0 | b1 | b2);

    reg             port_v;
    reg [DSIZE-1:0] port_d;
    always @(*)
        case (STAGES)
            0: begin port_v = ~rempty; port_d = core_data; end
            1: begin port_v = sv[0]; port_d = sd[0]; end
            2: begin port_v = sv[1]; port_d = sd[1]; end
            default: begin port_v = sv[2]; port_d = sd[2]; end
        endcase
    wire take = rinc & port_v;
    assign rvalid = FWFT ? port_v : rvalid_r;
    assign rdata  = FWFT ? port_d : dout_r;

    always @(posedge rclk or negedge rrst_n)
        if (!rrst_n) begin
            raempty  <= 1'b1;
            sv[0]    <= 1'b0;
            sv[1]    <= 1'b0;
            sv[2]    <= 1'b0;
            rvalid_r <= 1'b0;
        end else begin
            raempty <= AEEN ? (rocc <= AE) : 1'b1;
            if (STAGES >= 3 && (rinc | b2)) begin sv[2] <= sv[1]; sd[2] <= sd[1]; end
            if (STAGES >= 2 && (rinc | b1 | b2)) begin sv[1] <= sv[0]; sd[1] <= sd[0]; end
            if (STAGES >= 1 && core_rd) begin sv[0] <= rpop; sd[0] <= core_data; end
            if (!FWFT) begin
                rvalid_r <= take;
                if (take) dout_r <= port_d;
            end
        end
endmodule

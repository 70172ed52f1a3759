// systolic_array: a full R x C systolic MAC array with its sequencer, operand
// memories and partial-sum writeback, written from docs/datapath.md (§1-§5,
// the timing of §5 exactly) and docs/numerics.md, not from bitmac's code.
// tests/rtl_array.rs runs it under Verilator and compares every PE register
// on every cycle with the cycle engine's register trace (docs/datapath.md
// §7); benches/verilator_vs_bitmac.sh times it. Ports, parameters and what
// it models: tests/rtl/README.md.
//
// One GEMM per `start` pulse: A (M x K activation codes, row-major in amem),
// W (K x N weight codes, row-major in wmem). Dataflows ws / is / os with the
// tile order, preload, skew, bubbles, fold restarts and drain of §5; every
// adder narrows into the signed P-bit accumulator with the overflow mode;
// each column sum leaving the array goes through the psum writeback:
//     B = narrow_P(B + round_d(S))      (B = 0 before the first fold)
// with one of the eight ac_fixed rounding modes and a rounding-centre offset.
//
// Configuration: with RUNTIME_CFG = 1 the cfg_* ports choose dataflow,
// signedness, P, overflow mode, d, rounding mode and offset (held constant
// during a run; one compiled model covers many configurations); with
// RUNTIME_CFG = 0 the parameters of the same names do, and are constants
// the simulator folds away (the benchmark build).
//
// Encodings: DATAFLOW 0 ws, 1 is, 2 os; OVF 0 WRAP, 1 SAT, 2 SAT_ZERO,
// 3 SAT_SYM; RMODE 0 TRN, 1 TRN_ZERO, 2 RND, 3 RND_ZERO, 4 RND_MIN_INF,
// 5 RND_INF, 6 RND_CONV, 7 RND_CONV_ODD.
//
// Defines: BITMAC_DPI_MEM loads amem/wmem at time 0 through the DPI-C
// function bitmac_mem_read(which, index) (Verilator driver); BITMAC_DUMP
// prints every register after every cycle (the register trace).
module systolic_array #(
    parameter R = 4,                 // array rows
    parameter C = 4,                 // array columns
    parameter AW = 16,               // activation code width in amem (<= 16)
    parameter WW = 16,               // weight code width in wmem (<= 16)
    parameter PW = 64,               // widest accumulator supported (P <= PW <= 64)
    parameter DMAX = 32,             // largest d supported (<= 32)
    parameter ADEPTH = 4096,         // amem entries (>= M*K)
    parameter WDEPTH = 4096,         // wmem entries (>= K*N)
    parameter BDEPTH = 4096,         // psum-buffer entries (>= M*N)
    parameter RUNTIME_CFG = 1,
    parameter DATAFLOW = 0,
    parameter A_SIGNED = 0,
    parameter W_SIGNED = 1,
    parameter ACC_BITS = 32,
    parameter OVF = 0,
    parameter DROP = 0,
    parameter RMODE = 2,
    parameter signed [63:0] OFFSET = 0
) (
    input  wire                 clk,
    input  wire                 rst,          // synchronous, active high
    input  wire                 start,        // in idle: begin a GEMM (cycle 0 is the next edge)
    input  wire [1:0]           cfg_df,
    input  wire                 cfg_a_signed,
    input  wire                 cfg_w_signed,
    input  wire [6:0]           cfg_p,
    input  wire [1:0]           cfg_ovf,
    input  wire [5:0]           cfg_d,
    input  wire [2:0]           cfg_rmode,
    input  wire signed [63:0]   cfg_offset,
    input  wire [31:0]          cfg_m,
    input  wire [31:0]          cfg_k,
    input  wire [31:0]          cfg_n,
    input  wire                 mem_we,       // host write port: amem (mem_sel 0) or wmem (1)
    input  wire                 mem_sel,
    input  wire [31:0]          mem_addr,
    input  wire [15:0]          mem_data,
    output reg                  done,
    output reg  [63:0]          cycles,       // cycles executed since start
    output reg  [C-1:0]         wb_valid,     // writebacks of the cycle just executed, per column
    output reg  [C*32-1:0]      wb_addr,      // m*N + n
    output reg  [C*64-1:0]      wb_value      // new buffer value B (units of 2^d), sign-extended
);
    // ---- effective configuration -------------------------------------
    wire [1:0]  df   = RUNTIME_CFG ? cfg_df : DATAFLOW;
    wire        asg  = RUNTIME_CFG ? cfg_a_signed : (A_SIGNED != 0);
    wire        wsg  = RUNTIME_CFG ? cfg_w_signed : (W_SIGNED != 0);
    wire [6:0]  pbits = RUNTIME_CFG ? cfg_p : ACC_BITS;
    wire [1:0]  ovf  = RUNTIME_CFG ? cfg_ovf : OVF;
    wire [5:0]  dd   = RUNTIME_CFG ? cfg_d : DROP;
    wire [2:0]  rmd  = RUNTIME_CFG ? cfg_rmode : RMODE;
    wire signed [63:0] coff = RUNTIME_CFG ? cfg_offset : OFFSET;

    // ---- widths --------------------------------------------------------
    localparam PRODW = AW + WW + 2;                            // exact product
    localparam M1 = (PW > PRODW) ? PW : PRODW;
    localparam M2 = (M1 > DMAX + 2) ? M1 : DMAX + 2;
    localparam NW = M2 + 3;                                    // every exact intermediate
    localparam signed [NW-1:0] ONE = 1;

    localparam [2:0] S_IDLE = 0, S_PRE = 1, S_STREAM = 2, S_WB = 3, S_OSMAC = 4, S_DRAIN = 5, S_DONE = 6;

    // narrow_P(x) with the overflow mode: {overflowed, stored value}.
    function [NW:0] narrow;
        input signed [NW-1:0] x;
        input [6:0] p;
        input [1:0] mode;
        reg signed [NW-1:0] mx, mn, t, v;
        begin
            mx = (ONE <<< (p - 1)) - ONE;
            mn = -mx - ONE;
            case (mode)
                2'd0: begin t = x <<< (NW - p); v = t >>> (NW - p); end      // WRAP: low P bits
                2'd1: v = (x > mx) ? mx : ((x < mn) ? mn : x);                // SAT
                2'd2: v = ((x > mx) || (x < mn)) ? 0 : x;                     // SAT_ZERO
                default: v = (x > mx) ? mx : ((x < -mx) ? -mx : x);           // SAT_SYM
            endcase
            narrow = {v != x, v};
        end
    endfunction

    // round_d(x): drop d LSBs with the mode and centre offset c.
    function signed [NW-1:0] round_d;
        input signed [NW-1:0] x;
        input [5:0] d;
        input [2:0] mode;
        input signed [63:0] c64;
        reg signed [NW-1:0] c, q, r, h, t;
        begin
            c = c64;
            if (d == 0) round_d = x;
            else begin
                q = x >>> d;                      // floor(x / 2^d)
                r = x - (q <<< d);                // x mod 2^d
                h = (ONE <<< (d - 1)) + c;        // rounding centre (nearest modes)
                t = x + c;
                case (mode)
                    3'd0: round_d = t >>> d;                                 // TRN
                    3'd1: round_d = (t < 0) ? -((-t) >>> d) : (t >>> d);     // TRN_ZERO
                    default: begin
                        if (r > h) round_d = q + ONE;
                        else if (r < h) round_d = q;
                        else case (mode)                                      // tie
                            3'd2: round_d = q + ONE;                          // RND: +inf
                            3'd3: round_d = (q < 0) ? q + ONE : q;            // RND_ZERO
                            3'd4: round_d = q;                                // RND_MIN_INF
                            3'd5: round_d = (q < 0) ? q : q + ONE;            // RND_INF
                            3'd6: round_d = q[0] ? q + ONE : q;               // RND_CONV: even
                            default: round_d = q[0] ? q : q + ONE;            // RND_CONV_ODD
                        endcase
                    end
                endcase
            end
        end
    endfunction

    // ---- memories ------------------------------------------------------
    reg [AW-1:0] amem [0:ADEPTH-1];
    reg [WW-1:0] wmem [0:WDEPTH-1];
    reg signed [PW-1:0] bmem [0:BDEPTH-1];     // psum buffer, units of 2^d
`ifdef BITMAC_DPI_MEM
    import "DPI-C" function int bitmac_mem_read(input int which, input int index);
    integer li;
    initial begin
        for (li = 0; li < ADEPTH; li = li + 1) amem[li] = bitmac_mem_read(0, li);
        for (li = 0; li < WDEPTH; li = li + 1) wmem[li] = bitmac_mem_read(1, li);
    end
`endif

    // ---- PE registers (row-major, index r*C + c) ------------------------
    reg signed [AW:0]    ra [0:R*C-1];   // activation register (ws/os: moving right; is: stationary)
    reg signed [WW:0]    rw [0:R*C-1];   // weight register (ws: stationary; is: moving right; os: moving down)
    reg signed [PW-1:0]  rp [0:R*C-1];   // psum (ws/is) / accumulator (os)
    reg                  ro [0:R*C-1];   // this cycle's adder overflowed

    // ---- sequencer -----------------------------------------------------
    reg [2:0]  state;
    reg [31:0] q;                        // cycle within the phase
    reg [31:0] k0, c0, r0;               // tile origin: fold start (ws/is), column / row start
    // pending column sums at the bottom (ws/is), consumed the next cycle
    reg        pend   [0:C-1];
    reg [31:0] pend_m [0:C-1];
    reg [31:0] pend_n [0:C-1];
    reg        pend_f0 [0:C-1];          // first fold: B starts from 0

    wire ws = (df == 2'd0);
    wire os = (df == 2'd2);
    wire [31:0] cdim = ws ? cfg_n : cfg_m;   // ws/is: dimension mapped to columns
    wire [31:0] slen = ws ? cfg_m : cfg_n;   // ws/is: stream length S
    wire [31:0] ru = os ? ((cfg_m - r0 < R) ? cfg_m - r0 : R) : ((cfg_k - k0 < R) ? cfg_k - k0 : R);
    wire [31:0] cu = os ? ((cfg_n - c0 < C) ? cfg_n - c0 : C) : ((cdim - c0 < C) ? cdim - c0 : C);

    // for the dump: this cycle's writebacks
    reg signed [PW-1:0] wb_s [0:C-1];
    reg signed [PW-1:0] wb_b [0:C-1];
    reg        [31:0]   wb_mm [0:C-1];
    reg        [31:0]   wb_nn [0:C-1];
    reg                 wb_of [0:C-1];
    reg                 ran;             // the last edge executed a cycle
    reg        [63:0]   ran_cycle;

    // ---- per-cycle temporaries (blocking) --------------------------------
    reg signed [AW:0] edge_a [0:R-1];    // activation entering row r from the left
    reg signed [WW:0] edge_w [0:R-1];    // weight entering row r from the left (is)
    reg signed [AW:0] top_a  [0:C-1];    // activation entering column c at the top (is preload)
    reg signed [WW:0] top_w  [0:C-1];    // weight entering column c at the top (ws preload, os)
    reg signed [AW:0] ain;
    reg signed [WW:0] win;
    reg signed [PRODW-1:0] prodn;
    reg signed [NW-1:0] pin, prod, rv, bold;
    reg [NW:0] nr;
    reg [31:0] s, src, idx, mm, nn, len;
    reg wv, wf0;
    reg signed [PW-1:0] wsum;
    integer r, c, i;

    function signed [AW:0] ext_a;
        input [AW-1:0] raw;
        input sg;
        ext_a = sg ? $signed({raw[AW-1], raw}) : $signed({1'b0, raw});
    endfunction
    function signed [WW:0] ext_w;
        input [WW-1:0] raw;
        input sg;
        ext_w = sg ? $signed({raw[WW-1], raw}) : $signed({1'b0, raw});
    endfunction

    always @(posedge clk) begin
        if (mem_we) begin
            if (mem_sel) wmem[mem_addr] <= mem_data[WW-1:0];
            else amem[mem_addr] <= mem_data[AW-1:0];
        end
        if (rst) begin
            state <= S_IDLE;
            done <= 1'b0;
            cycles <= 0;
            ran <= 1'b0;
            q <= 0; k0 <= 0; c0 <= 0; r0 <= 0;
            wb_valid <= 0;
            for (i = 0; i < R * C; i = i + 1) begin
                ra[i] <= 0; rw[i] <= 0; rp[i] <= 0; ro[i] <= 1'b0;
            end
            for (c = 0; c < C; c = c + 1) begin
                pend[c] <= 1'b0; wb_of[c] <= 1'b0;
            end
        end else if (state == S_IDLE || state == S_DONE) begin
            ran <= 1'b0;
            wb_valid <= 0;
            if (state == S_IDLE && start) begin
                state <= os ? S_OSMAC : S_PRE;
                q <= 0; k0 <= 0; c0 <= 0; r0 <= 0;
                cycles <= 0;
                done <= 1'b0;
            end
        end else begin
            ran <= 1'b1;
            ran_cycle <= cycles;
            cycles <= cycles + 1;

            // -- operands entering the edges this cycle --
            for (r = 0; r < R; r = r + 1) begin
                edge_a[r] = 0;
                edge_w[r] = 0;
                if (state == S_STREAM && r < ru && q >= r && q - r < slen) begin
                    s = q - r;
                    if (ws) edge_a[r] = ext_a(amem[s * cfg_k + k0 + r], asg);
                    else edge_w[r] = ext_w(wmem[(k0 + r) * cfg_n + s], wsg);
                end
                if (state == S_OSMAC && r < ru && q >= r && q - r < cfg_k)
                    edge_a[r] = ext_a(amem[(r0 + r) * cfg_k + q - r], asg);
            end
            for (c = 0; c < C; c = c + 1) begin
                top_a[c] = 0;
                top_w[c] = 0;
                src = R - 1 - q;
                if (state == S_PRE && src < ru && c < cu) begin
                    if (ws) top_w[c] = ext_w(wmem[(k0 + src) * cfg_n + c0 + c], wsg);
                    else top_a[c] = ext_a(amem[(c0 + c) * cfg_k + k0 + src], asg);
                end
                if (state == S_OSMAC && c < cu && q >= c && q - c < cfg_k)
                    top_w[c] = ext_w(wmem[(q - c) * cfg_n + c0 + c], wsg);
            end

            // -- psum writeback: the column sums at the bottom of the array --
            for (c = 0; c < C; c = c + 1) begin
                wsum = rp[(R - 1) * C + c];
                if (state == S_DRAIN) begin
                    wv = (R - 1 - q < ru) && (c < cu);
                    mm = r0 + R - 1 - q;
                    nn = c0 + c;
                    wf0 = 1'b1;
                end else begin
                    wv = pend[c];
                    mm = pend_m[c];
                    nn = pend_n[c];
                    wf0 = pend_f0[c];
                end
                wb_valid[c] <= wv;
                wb_of[c] <= 1'b0;
                if (wv) begin
                    idx = mm * cfg_n + nn;
                    rv = round_d(wsum, dd, rmd, coff);
                    bold = wf0 ? 0 : bmem[idx];
                    nr = narrow(bold + rv, pbits, ovf);
                    bmem[idx] <= nr[PW-1:0];
                    wb_addr[c * 32 +: 32] <= idx;
                    wb_value[c * 64 +: 64] <= {{(64 - PW){nr[PW-1]}}, nr[PW-1:0]};
                    wb_s[c] <= wsum;
                    wb_b[c] <= nr[PW-1:0];
                    wb_mm[c] <= mm;
                    wb_nn[c] <= nn;
                    wb_of[c] <= nr[NW];
                end
            end

            // -- the PE array (indices are constants once the loops unroll) --
            for (r = 0; r < R; r = r + 1) begin
                for (c = 0; c < C; c = c + 1) begin
                    ro[r * C + c] <= 1'b0;
                    case (state)
                        S_PRE: begin
                            // stationary values shift down one row per cycle
                            if (ws) rw[r * C + c] <= (r == 0) ? top_w[c] : rw[(r == 0) ? 0 : (r - 1) * C + c];
                            else ra[r * C + c] <= (r == 0) ? top_a[c] : ra[(r == 0) ? 0 : (r - 1) * C + c];
                        end
                        S_STREAM, S_OSMAC: begin
                            ain = (!ws && !os) ? ra[r * C + c] : ((c == 0) ? edge_a[r] : ra[(c == 0) ? 0 : r * C + c - 1]);
                            if (os) win = (r == 0) ? top_w[c] : rw[(r == 0) ? 0 : (r - 1) * C + c];
                            else if (ws) win = rw[r * C + c];
                            else win = (c == 0) ? edge_w[r] : rw[(c == 0) ? 0 : r * C + c - 1];
                            prodn = ain * win;            // exact in AW+WW+2 bits
                            prod = prodn;
                            if (os) pin = rp[r * C + c];
                            else pin = (r == 0) ? 0 : rp[(r == 0) ? 0 : (r - 1) * C + c];
                            nr = narrow(pin + prod, pbits, ovf);
                            rp[r * C + c] <= nr[PW-1:0];
                            ro[r * C + c] <= nr[NW];
                            ra[r * C + c] <= ain;
                            rw[r * C + c] <= win;
                        end
                        S_DRAIN: begin
                            // results shift down and leave at the bottom; operand pipelines cleared
                            rp[r * C + c] <= (r == 0) ? 0 : rp[(r == 0) ? 0 : (r - 1) * C + c];
                            ra[r * C + c] <= 0;
                            rw[r * C + c] <= 0;
                        end
                        default: ;                    // S_WB: everything holds
                    endcase
                end
            end

            // -- column sums registered at the bottom this cycle (ws/is) --
            for (c = 0; c < C; c = c + 1) begin
                s = q - (R - 1) - c;
                pend[c] <= (state == S_STREAM) && (c < cu) && (q >= R - 1 + c) && (s < slen);
                pend_m[c] <= ws ? s : c0 + c;
                pend_n[c] <= ws ? c0 + c : s;
                pend_f0[c] <= (k0 == 0);
            end

            // -- next phase --
            case (state)
                S_PRE: begin
                    if (q == R - 1) begin state <= S_STREAM; q <= 0; end
                    else q <= q + 1;
                end
                S_STREAM: begin
                    len = slen + R + cu - 2;
                    if (q == len - 1) begin
                        q <= 0;
                        if (k0 + R < cfg_k) begin k0 <= k0 + R; state <= S_PRE; end
                        else if (c0 + C < cdim) begin k0 <= 0; c0 <= c0 + C; state <= S_PRE; end
                        else state <= S_WB;
                    end else q <= q + 1;
                end
                S_WB: begin state <= S_DONE; done <= 1'b1; end
                S_OSMAC: begin
                    len = cfg_k + ru + cu - 2;
                    if (q == len - 1) begin state <= S_DRAIN; q <= 0; end
                    else q <= q + 1;
                end
                S_DRAIN: begin
                    if (q == R - 1) begin
                        q <= 0;
                        if (c0 + C < cfg_n) begin c0 <= c0 + C; state <= S_OSMAC; end
                        else if (r0 + R < cfg_m) begin c0 <= 0; r0 <= r0 + R; state <= S_OSMAC; end
                        else begin state <= S_DONE; done <= 1'b1; end
                    end else q <= q + 1;
                end
                default: ;
            endcase
        end
    end

`ifdef BITMAC_DUMP
    // The register trace: one line per executed cycle, after its clock edge,
    //   <cycle> a=<R*C> w=<R*C> p=<R*C> [wb=col:m,n:S>B;...] [ovf=row,col;...]
    // (row R in ovf: the psum-buffer adder below that column).
    integer dr, dc, dn;
    always @(negedge clk) begin
        if (ran) begin
            $write("%0d a=", ran_cycle);
            for (dr = 0; dr < R * C; dr = dr + 1) begin
                if (dr > 0) $write(",");
                $write("%0d", ra[dr]);
            end
            $write(" w=");
            for (dr = 0; dr < R * C; dr = dr + 1) begin
                if (dr > 0) $write(",");
                $write("%0d", rw[dr]);
            end
            $write(" p=");
            for (dr = 0; dr < R * C; dr = dr + 1) begin
                if (dr > 0) $write(",");
                $write("%0d", rp[dr]);
            end
            dn = 0;
            for (dc = 0; dc < C; dc = dc + 1) if (wb_valid[dc]) begin
                if (dn > 0) $write(";");
                else $write(" wb=");
                $write("%0d:%0d,%0d:%0d>%0d", dc, wb_mm[dc], wb_nn[dc], wb_s[dc], wb_b[dc]);
                dn = dn + 1;
            end
            dn = 0;
            for (dr = 0; dr < R; dr = dr + 1) for (dc = 0; dc < C; dc = dc + 1) if (ro[dr * C + dc]) begin
                if (dn > 0) $write(";");
                else $write(" ovf=");
                $write("%0d,%0d", dr, dc);
                dn = dn + 1;
            end
            for (dc = 0; dc < C; dc = dc + 1) if (wb_of[dc]) begin
                if (dn > 0) $write(";");
                else $write(" ovf=");
                $write("%0d,%0d", R, dc);
                dn = dn + 1;
            end
            $write("\n");
        end
    end
`endif
endmodule

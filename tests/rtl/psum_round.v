// psum_round: the partial-sum rounding stage of a bitmac datapath, written
// for bitmac's golden vectors (docs/numerics.md is the normative spec).
//
// Drops K LSBs of x with one of the eight ac_fixed rounding modes and a
// rounding-centre offset, then stores the result into OUT_W bits with one of
// the four overflow modes. One registered stage: y, ovf and pos are valid
// after the clock edge that sampled x.
//
//   MODE: 0 TRN, 1 TRN_ZERO, 2 RND, 3 RND_ZERO, 4 RND_MIN_INF, 5 RND_INF,
//         6 RND_CONV, 7 RND_CONV_ODD
//   OVF:  0 WRAP, 1 SAT, 2 SAT_ZERO, 3 SAT_SYM
//   pos:  residue x mod 2^K below (0) / at (1) / above (2) the rounding
//         centre (2^(K-1) + OFFSET for round-to-nearest; for TRN/TRN_ZERO
//         where floor((x+OFFSET)/2^K) steps up; 0 when K = 0)
//
// Synthesizable: parameters fix the mode; the datapath is shifts, adds,
// compares and muxes. OFFSET is a 32-bit integer parameter.
module psum_round #(
    parameter IN_W = 24,
    parameter IN_SIGNED = 1,
    parameter K = 4,
    parameter MODE = 2,
    parameter integer OFFSET = 0,
    parameter OUT_W = 16,
    parameter OUT_SIGNED = 1,
    parameter OVF = 1
) (
    input  wire             clk,
    input  wire [IN_W-1:0]  x,
    output reg  [OUT_W-1:0] y,
    output reg              ovf,
    output reg  [1:0]       pos
);
    // Internal width: every value below fits with a margin (the rounded
    // value needs at most one bit more than the input).
    localparam W = ((IN_W > OUT_W) ? IN_W : OUT_W) + 4;
    localparam signed [W-1:0] ONE = 1;
    localparam signed [W-1:0] C = OFFSET;
    // The rounding centre (docs/numerics.md): the residue at which the
    // result steps up. Round-to-nearest: 2^(K-1) + C. Truncating modes
    // (C added before truncation): 2^K - C for C >= 0 (2^K: never reached,
    // plain truncation has no ties), -C for C < 0.
    localparam signed [W-1:0] H = (K == 0) ? 0
                                : (MODE <= 1) ? ((C >= 0) ? (ONE <<< K) - C : -C)
                                : (ONE <<< (K - 1)) + C;
    localparam signed [W-1:0] OMAX = OUT_SIGNED ? (ONE <<< (OUT_W - 1)) - ONE : (ONE <<< OUT_W) - ONE;
    localparam signed [W-1:0] OMIN = OUT_SIGNED ? -(ONE <<< (OUT_W - 1)) : 0;
    localparam signed [W-1:0] SMIN = OUT_SIGNED ? -OMAX : 0;   // SAT_SYM lower bound

    wire signed [W-1:0] xs = IN_SIGNED ? {{(W - IN_W){x[IN_W-1]}}, x} : {{(W - IN_W){1'b0}}, x};

    reg signed [W-1:0] q, r, t, rnd, v;
    reg [1:0] p;
    reg of;

    always @* begin
        q = xs >>> K;                 // floor(x / 2^K)
        r = xs - (q <<< K);           // x mod 2^K, in 0 .. 2^K-1
        t = xs + C;
        if (K == 0) begin
            rnd = xs;
            p = 2'd0;
        end else begin
            p = (r < H) ? 2'd0 : ((r == H) ? 2'd1 : 2'd2);
            case (MODE)
                0: rnd = t >>> K;                                     // TRN: floor((x+c)/2^K)
                1: rnd = (t < 0) ? -((-t) >>> K) : (t >>> K);         // TRN_ZERO: toward 0
                default: begin
                    if (r > H) rnd = q + ONE;
                    else if (r < H) rnd = q;
                    else begin                                        // tie
                        case (MODE)
                            2: rnd = q + ONE;                         // RND: +inf
                            3: rnd = (q < 0) ? q + ONE : q;           // RND_ZERO: toward 0
                            4: rnd = q;                               // RND_MIN_INF: -inf
                            5: rnd = (q < 0) ? q : q + ONE;           // RND_INF: away from 0
                            6: rnd = q[0] ? q + ONE : q;              // RND_CONV: even
                            default: rnd = q[0] ? q : q + ONE;        // RND_CONV_ODD: odd
                        endcase
                    end
                end
            endcase
        end
        // Store into OUT_W bits.
        case (OVF)
            0: v = rnd;                                               // WRAP: keep the low bits
            1: v = (rnd > OMAX) ? OMAX : ((rnd < OMIN) ? OMIN : rnd); // SAT
            2: v = ((rnd > OMAX) || (rnd < OMIN)) ? 0 : rnd;          // SAT_ZERO
            default: v = (rnd > OMAX) ? OMAX : ((rnd < SMIN) ? SMIN : rnd); // SAT_SYM
        endcase
        if (OVF == 0) of = (rnd > OMAX) || (rnd < OMIN);
        else of = (v != rnd);
    end

    always @(posedge clk) begin
        y <= v[OUT_W-1:0];
        ovf <= of;
        pos <= p;
    end
endmodule

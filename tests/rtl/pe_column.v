// pe_column: a weight-stationary PE column, written for bitmac's golden
// vectors (kind `pe_column`, docs/vectors.md).
//
// K processing elements in a chain. Each holds one weight (loaded when
// `load` is high at a clock edge) and, at every clock edge, registers
//     psum_out = store(psum_in + a * w)
// where the product and the sum are exact and `store` narrows into the
// signed ACCW-bit accumulator with the overflow mode OVF (0 WRAP, 1 SAT,
// 2 SAT_ZERO, 3 SAT_SYM), i.e. overflow is applied at every adder. PE 0's
// psum_in is 0. ovf_out is the OR of every overflow along the chain.
// Activations are not skewed inside: the driver presents a[k] to PE k one
// cycle after a[k-1] reached PE k-1 (the testbench does the skew).
module pe #(
    parameter AW = 8, parameter A_SIGNED = 1,
    parameter WW = 8, parameter W_SIGNED = 1,
    parameter ACCW = 20, parameter OVF = 0
) (
    input  wire            clk,
    input  wire            load,
    input  wire [WW-1:0]   w_in,
    input  wire [AW-1:0]   a_in,
    input  wire [ACCW-1:0] psum_in,
    input  wire            ovf_in,
    output reg  [ACCW-1:0] psum_out,
    output reg             ovf_out
);
    localparam PW = AW + WW + 2;                       // exact product width
    localparam S = ((ACCW > PW) ? ACCW : PW) + 2;      // exact sum width
    localparam signed [S-1:0] ONE = 1;
    localparam signed [S-1:0] AMAX = (ONE <<< (ACCW - 1)) - ONE;
    localparam signed [S-1:0] AMIN = -(ONE <<< (ACCW - 1));

    reg [WW-1:0] w_reg;
    wire signed [AW:0] a_s = A_SIGNED ? {a_in[AW-1], a_in} : {1'b0, a_in};
    wire signed [WW:0] w_s = W_SIGNED ? {w_reg[WW-1], w_reg} : {1'b0, w_reg};
    wire signed [PW-1:0] prod = a_s * w_s;
    wire signed [ACCW-1:0] p_in = psum_in;
    wire signed [S-1:0] sum = p_in + prod;

    reg signed [S-1:0] v;
    reg of;
    always @* begin
        case (OVF)
            0: v = sum;                                                  // WRAP: low ACCW bits
            1: v = (sum > AMAX) ? AMAX : ((sum < AMIN) ? AMIN : sum);    // SAT
            2: v = ((sum > AMAX) || (sum < AMIN)) ? 0 : sum;             // SAT_ZERO
            default: v = (sum > AMAX) ? AMAX : ((sum < -AMAX) ? -AMAX : sum); // SAT_SYM
        endcase
        of = (sum > AMAX) || (sum < ((OVF == 3) ? -AMAX : AMIN));
    end

    always @(posedge clk) begin
        if (load) w_reg <= w_in;
        psum_out <= v[ACCW-1:0];
        ovf_out <= ovf_in | of;
    end
endmodule

module pe_column #(
    parameter K = 4,
    parameter AW = 8, parameter A_SIGNED = 1,
    parameter WW = 8, parameter W_SIGNED = 1,
    parameter ACCW = 20, parameter OVF = 0
) (
    input  wire            clk,
    input  wire            load,
    input  wire [K*WW-1:0] w_in,
    input  wire [K*AW-1:0] a_in,
    output wire [ACCW-1:0] psum_out,
    output wire            ovf_out
);
    wire [ACCW-1:0] chain [0:K];
    wire            ochain [0:K];
    assign chain[0] = {ACCW{1'b0}};
    assign ochain[0] = 1'b0;
    genvar k;
    generate
        for (k = 0; k < K; k = k + 1) begin : g_pe
            pe #(.AW(AW), .A_SIGNED(A_SIGNED), .WW(WW), .W_SIGNED(W_SIGNED), .ACCW(ACCW), .OVF(OVF)) u (
                .clk(clk), .load(load),
                .w_in(w_in[k*WW +: WW]), .a_in(a_in[k*AW +: AW]),
                .psum_in(chain[k]), .ovf_in(ochain[k]),
                .psum_out(chain[k+1]), .ovf_out(ochain[k+1]));
        end
    endgenerate
    assign psum_out = chain[K];
    assign ovf_out = ochain[K];
endmodule

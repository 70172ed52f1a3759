// A minimal R x C weight-stationary systolic array for the whole-process
// benchmark (benches/verilator_ws.sh): the datapath of docs/datapath.md for
// the bench's configuration only (unsigned AW-bit activations, signed
// WW-bit weights, PW-bit WRAP accumulators, d = 0, one fold, one column
// tile). Not a verification model: tests/rtl/ holds those.
//
// Weights are preloaded one row per cycle (w_we, w_row, w_data). Each cycle
// row r's activation enters PE(r, 0) on a_in and moves one PE to the right
// per cycle; PE(r, c) adds w[r][c] * a to the psum from the PE above (0 for
// row 0); the bottom row's psums leave on p_out.
module ws_array #(
    parameter R = 16,
    parameter C = 16,
    parameter AW = 8,
    parameter WW = 8,
    parameter PW = 32
) (
    input wire clk,
    input wire w_we,
    input wire [7:0] w_row,
    input wire [C*WW-1:0] w_data,
    input wire [R*AW-1:0] a_in,
    output wire [C*PW-1:0] p_out
);
    wire [AW-1:0] a_w[0:R-1][0:C];
    wire [PW-1:0] p_w[0:R][0:C-1];
    genvar r, c;
    generate
        for (c = 0; c < C; c = c + 1) begin : edge_c
            assign p_w[0][c] = {PW{1'b0}};
            assign p_out[c*PW+:PW] = p_w[R][c];
        end
        for (r = 0; r < R; r = r + 1) begin : row
            assign a_w[r][0] = a_in[r*AW+:AW];
            for (c = 0; c < C; c = c + 1) begin : col
                reg signed [WW-1:0] w;
                reg [AW-1:0] a;
                reg [PW-1:0] p;
                // Both operands signed at PW bits: the exact product.
                wire signed [PW-1:0] prod = $signed({1'b0, a_w[r][c]}) * w;
                always @(posedge clk) begin
                    if (w_we && w_row == r) w <= w_data[c*WW+:WW];
                    a <= a_w[r][c];
                    p <= p_w[r][c] + prod;  // PW-bit wrap
                end
                assign a_w[r][c+1] = a;
                assign p_w[r+1][c] = p;
            end
        end
    endgenerate
endmodule

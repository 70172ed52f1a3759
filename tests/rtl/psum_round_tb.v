// Testbench for psum_round: loads a committed bitmac `round` case with
// $readmemh (x.hex stimulus; y.hex, ovf.hex, pos.hex expected) and compares
// every output. Parameters come from the case manifest (tests/rtl_vectors.rs
// passes them with -P); VDIR is the case directory (-DVDIR="...").
`timescale 1ns/1ps
module psum_round_tb;
    parameter COUNT = 16;
    parameter IN_W = 24;
    parameter IN_SIGNED = 1;
    parameter K = 4;
    parameter MODE = 2;
    parameter integer OFFSET = 0;
    parameter OUT_W = 16;
    parameter OUT_SIGNED = 1;
    parameter OVF = 1;

    reg clk = 0;
    reg [IN_W-1:0] x;
    wire [OUT_W-1:0] y;
    wire ovf;
    wire [1:0] pos;

    reg [IN_W-1:0]  xm  [0:COUNT-1];
    reg [OUT_W-1:0] ym  [0:COUNT-1];
    reg             om  [0:COUNT-1];
    reg [1:0]       pm  [0:COUNT-1];

    psum_round #(.IN_W(IN_W), .IN_SIGNED(IN_SIGNED), .K(K), .MODE(MODE), .OFFSET(OFFSET),
                 .OUT_W(OUT_W), .OUT_SIGNED(OUT_SIGNED), .OVF(OVF))
        dut (.clk(clk), .x(x), .y(y), .ovf(ovf), .pos(pos));

    integer i, errors;
    initial begin
        $readmemh({`VDIR, "/x.hex"}, xm);
        $readmemh({`VDIR, "/y.hex"}, ym);
        $readmemh({`VDIR, "/ovf.hex"}, om);
        $readmemh({`VDIR, "/pos.hex"}, pm);
        errors = 0;
        for (i = 0; i < COUNT; i = i + 1) begin
            x = xm[i];
            #1 clk = 1;
            #1 clk = 0;
            if (y !== ym[i] || ovf !== om[i] || pos !== pm[i]) begin
                errors = errors + 1;
                if (errors <= 5)
                    $display("FAIL element %0d (hex line %0d): x=%h y=%h ovf=%b pos=%0d, expected y=%h ovf=%b pos=%0d",
                             i, i + 1, xm[i], y, ovf, pos, ym[i], om[i], pm[i]);
            end
        end
        if (errors == 0) $display("PASS %0d elements", COUNT);
        else $display("FAIL %0d of %0d elements differ", errors, COUNT);
        $finish;
    end
endmodule

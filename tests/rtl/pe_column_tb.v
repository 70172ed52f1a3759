// Testbench for pe_column: loads a committed bitmac `pe_column` case
// (a.hex M x K, w.hex K x N; expected acc.hex, ovf.hex M x N and the
// cycle-stamped acc.stream) and compares every output, both against the
// hex files and, as the column runs, against the stream's cycle stamps.
// Timing (docs/vectors.md): pass j starts at global cycle j*(M+K) with the
// weight load; A[m][k] reaches PE k at cycle 1+m+k of the pass; output
// (m, j) is registered out at cycle j*(M+K) + m + K.
`timescale 1ns/1ps
module pe_column_tb;
    parameter M = 4;
    parameter K = 4;
    parameter N = 2;
    parameter AW = 8;
    parameter A_SIGNED = 1;
    parameter WW = 8;
    parameter W_SIGNED = 1;
    parameter ACCW = 20;
    parameter OVF = 0;

    reg clk = 0;
    reg load;
    reg [K*WW-1:0] w_in;
    reg [K*AW-1:0] a_in;
    wire [ACCW-1:0] psum;
    wire ovf;

    reg [AW-1:0]   am   [0:M*K-1];
    reg [WW-1:0]   wm   [0:K*N-1];
    reg [ACCW-1:0] accm [0:M*N-1];
    reg            ovm  [0:M*N-1];

    pe_column #(.K(K), .AW(AW), .A_SIGNED(A_SIGNED), .WW(WW), .W_SIGNED(W_SIGNED), .ACCW(ACCW), .OVF(OVF))
        dut (.clk(clk), .load(load), .w_in(w_in), .a_in(a_in), .psum_out(psum), .ovf_out(ovf));

    integer j, e, k, m, errors, checked, cycle, fd, scyc, sval, nread, streamed;
    reg [ACCW-1:0] sv;
    initial begin
        $readmemh({`VDIR, "/a.hex"}, am);
        $readmemh({`VDIR, "/w.hex"}, wm);
        $readmemh({`VDIR, "/acc.hex"}, accm);
        $readmemh({`VDIR, "/ovf.hex"}, ovm);
        fd = $fopen({`VDIR, "/acc.stream"}, "r");
        if (fd == 0) begin $display("FAIL cannot open acc.stream"); $finish; end
        errors = 0; checked = 0; streamed = 0; cycle = 0;
        nread = $fscanf(fd, "%d %h\n", scyc, sv);
        for (j = 0; j < N; j = j + 1) begin
            for (e = 0; e < M + K; e = e + 1) begin
                // Drive the inputs sampled at edge e of pass j.
                load = (e == 0);
                for (k = 0; k < K; k = k + 1) begin
                    w_in[k*WW +: WW] = wm[k*N + j];
                    m = e - 1 - k;
                    a_in[k*AW +: AW] = (m >= 0 && m < M) ? am[m*K + k] : {AW{1'b0}};
                end
                #1 clk = 1;
                #1 clk = 0;
                m = e - K;
                if (m >= 0 && m < M) begin
                    checked = checked + 1;
                    if (psum !== accm[m*N + j] || ovf !== ovm[m*N + j]) begin
                        errors = errors + 1;
                        if (errors <= 5)
                            $display("FAIL acc[%0d][%0d] (acc.hex line %0d): got %h ovf=%b, expected %h ovf=%b",
                                     m, j, m*N + j + 1, psum, ovf, accm[m*N + j], ovm[m*N + j]);
                    end
                end
                // The stream: every line stamped with this cycle must match now.
                while (nread == 2 && scyc == cycle) begin
                    streamed = streamed + 1;
                    if (psum !== sv) begin
                        errors = errors + 1;
                        if (errors <= 5)
                            $display("FAIL acc.stream line %0d: cycle %0d got %h, expected %h", streamed, cycle, psum, sv);
                    end
                    nread = $fscanf(fd, "%d %h\n", scyc, sv);
                end
                cycle = cycle + 1;
            end
        end
        if (nread == 2) begin
            errors = errors + 1;
            $display("FAIL acc.stream has a line for cycle %0d, after the last cycle %0d", scyc, cycle - 1);
        end
        if (streamed != M*N) begin
            errors = errors + 1;
            $display("FAIL acc.stream: %0d lines matched, expected %0d", streamed, M*N);
        end
        if (errors == 0) $display("PASS %0d outputs, %0d stream lines", checked, streamed);
        else $display("FAIL %0d errors", errors);
        $finish;
    end
endmodule

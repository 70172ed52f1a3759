// Verilator driver for benches/rtl/ws_array.v: reads A.npy (M x R, uint8)
// and W.npy (R x C, int8), preloads W, streams A with the row skew, collects
// the bottom row's psums and writes OUT.npy (M x C, int32, C order, the
// bytes `bitmac gemm --stage acc` writes). Prints `cycles=N`.
#include "Vws_array.h"
#include "verilated.h"
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

static std::vector<uint8_t> load(const char* path, std::vector<long>& shape) {
    FILE* f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    unsigned char pre[10];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) || pre[6] != 1) {
        fprintf(stderr, "%s: not a v1 .npy\n", path); exit(2);
    }
    size_t hl = pre[8] | (pre[9] << 8);
    std::string h(hl, ' ');
    if (fread(&h[0], 1, hl, f) != hl) exit(2);
    size_t p = h.find("'shape': (") + 10;
    shape.clear();
    while (h[p] != ')') {
        shape.push_back(strtol(&h[p], nullptr, 10));
        p = h.find_first_of(",)", p);
        if (h[p] == ',') { p++; while (h[p] == ' ') p++; }
    }
    long n = 1;
    for (long d : shape) n *= d;
    std::vector<uint8_t> v(n);
    if (fread(v.data(), 1, n, f) != (size_t)n) { fprintf(stderr, "%s: truncated\n", path); exit(2); }
    fclose(f);
    return v;
}

int main(int argc, char** argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s A.npy W.npy OUT.npy\n", argv[0]); return 2; }
    std::vector<long> sa, sw;
    auto A = load(argv[1], sa);
    auto W = load(argv[2], sw);
    const long M = sa[0], K = sa[1], N = sw[1];
    if (K != BM_R || N != BM_C || sw[0] != K) { fprintf(stderr, "shape must be M x %d, %d x %d\n", BM_R, BM_R, BM_C); return 2; }
    Verilated::commandArgs(argc, argv);
    Vws_array* top = new Vws_array;
    long cycles = 0;
    auto tick = [&]() { top->clk = 0; top->eval(); top->clk = 1; top->eval(); cycles++; };
    for (int r = 0; r < BM_R; r++) {
        top->w_we = 1; top->w_row = r;
        for (int c = 0; c < BM_C; c++) {
            uint32_t& word = top->w_data[c / 4];
            if (c % 4 == 0) word = 0;
            word |= (uint32_t)W[r * N + c] << (8 * (c % 4));
        }
        tick();
    }
    top->w_we = 0;
    std::vector<int32_t> out(M * N);
    const long steps = M + BM_R + BM_C - 2;
    for (long q = 0; q < steps; q++) {
        for (int w = 0; w < BM_R / 4; w++) top->a_in[w] = 0;
        for (int r = 0; r < BM_R; r++) {
            long mm = q - r;
            if (mm >= 0 && mm < M) top->a_in[r / 4] |= (uint32_t)A[mm * K + r] << (8 * (r % 4));
        }
        tick();
        for (int c = 0; c < BM_C; c++) {
            long mm = q - (BM_R - 1) - c;
            if (mm >= 0 && mm < M) out[mm * N + c] = (int32_t)top->p_out[c];
        }
    }
    printf("cycles=%ld\n", cycles);
    // .npy v1, header padded to 64 bytes as NumPy does.
    char hdr[256];
    int hlen = snprintf(hdr, sizeof hdr, "{'descr': '<i4', 'fortran_order': False, 'shape': (%ld, %ld), }", M, N);
    int total = 10 + hlen + 1, pad = (64 - total % 64) % 64;
    FILE* f = fopen(argv[3], "wb");
    if (!f) { perror(argv[3]); return 2; }
    unsigned short hl = hlen + pad + 1;
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&hl, 2, 1, f);
    fwrite(hdr, 1, hlen, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(out.data(), 4, out.size(), f);
    fclose(f);
    delete top;
    return 0;
}

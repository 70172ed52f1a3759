// Verilator driver for tests/rtl/systolic_array.v (see tests/rtl/README.md).
//
//   Vsystolic_array A.npy W.npy [--df ws|is|os] [--asigned 0|1] [--wsigned 0|1]
//                   [--p P] [--ovf 0..3] [--d D] [--rmode 0..7] [--offset C]
//                   [--out OUT.npy] [--print-acc]
//
// Reads A (M x K) and W (K x N) integer .npy files, hands them to the RTL's
// operand memories through the DPI-C function bitmac_mem_read (at time 0),
// pulses start, clocks the model until `done`, collects every writeback from
// the wb_* ports (the last one per output is the result) and prints
// `cycles=<n>`. --out writes acc * 2^d as .npy (int32 when P + d <= 32, else
// int64), byte-identical to `bitmac gemm --stage acc`; --print-acc prints
// `acc=<v,...>` (units of 2^d, row-major). The cfg options are ignored by a
// model built with RUNTIME_CFG=0 (its parameters decide), except --d, which
// must then match DROP for the --out scaling. Exit 2 on bad input.
#include "Vsystolic_array.h"
#include "Vsystolic_array__Dpi.h"
#include "verilated.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#ifndef BM_ADEPTH
#error "build with -CFLAGS -DBM_ADEPTH=<ADEPTH> (and BM_WDEPTH, BM_BDEPTH, BM_C)"
#endif

static std::vector<int64_t> g_a, g_w;

[[noreturn]] static void fail(const std::string& msg) {
    std::fprintf(stderr, "error: %s\n", msg.c_str());
    std::exit(2);
}

// A 2-D little-endian integer .npy (C order) as int64 values.
static std::vector<int64_t> read_npy(const char* path, size_t& rows, size_t& cols) {
    FILE* f = std::fopen(path, "rb");
    if (!f) fail(std::string(path) + ": cannot open");
    std::vector<unsigned char> buf;
    unsigned char tmp[1 << 16];
    size_t got;
    while ((got = std::fread(tmp, 1, sizeof tmp, f)) > 0) buf.insert(buf.end(), tmp, tmp + got);
    std::fclose(f);
    if (buf.size() < 10 || std::memcmp(buf.data(), "\x93NUMPY", 6) != 0) fail(std::string(path) + ": not a .npy file");
    size_t hlen, off;
    if (buf[6] == 1) {
        hlen = buf[8] | (buf[9] << 8);
        off = 10;
    } else {
        if (buf.size() < 12) fail(std::string(path) + ": truncated header");
        hlen = buf[8] | (buf[9] << 8) | (buf[10] << 16) | ((size_t)buf[11] << 24);
        off = 12;
    }
    if (off + hlen > buf.size()) fail(std::string(path) + ": truncated header");
    std::string h(buf.begin() + off, buf.begin() + off + hlen);
    size_t d = h.find("'descr'");
    size_t q1 = h.find('\'', h.find(':', d) + 1);
    std::string descr = h.substr(q1 + 1, h.find('\'', q1 + 1) - q1 - 1);
    if (h.find("'fortran_order': False") == std::string::npos) fail(std::string(path) + ": fortran_order must be False");
    size_t sp = h.find('(', h.find("'shape'"));
    if (std::sscanf(h.c_str() + sp, "(%zu, %zu)", &rows, &cols) != 2) fail(std::string(path) + ": shape must be 2-D");
    if ((descr[0] != '<' && descr[0] != '|') || (descr[1] != 'i' && descr[1] != 'u'))
        fail(std::string(path) + ": dtype " + descr + " (need little-endian integers)");
    bool sg = descr[1] == 'i';
    int size = std::atoi(descr.c_str() + 2);
    if (size != 1 && size != 2 && size != 4 && size != 8) fail(std::string(path) + ": dtype " + descr);
    size_t n = rows * cols;
    const unsigned char* p = buf.data() + off + hlen;
    if ((size_t)(buf.data() + buf.size() - p) < n * size) fail(std::string(path) + ": truncated data");
    std::vector<int64_t> v(n);
    for (size_t i = 0; i < n; i++) {
        uint64_t u = 0;
        std::memcpy(&u, p + i * size, size);
        if (sg && size < 8 && (u >> (8 * size - 1)) & 1) u |= ~0ull << (8 * size);
        v[i] = (int64_t)u;
    }
    return v;
}

// bitmac's .npy writer layout (src/npy.rs): v1.0, header padded with spaces
// to a multiple of 64 bytes.
static void write_npy(const char* path, const std::vector<int64_t>& v, size_t rows, size_t cols, int size) {
    std::string h = "{'descr': '<i" + std::to_string(size) + "', 'fortran_order': False, 'shape': (" +
                    std::to_string(rows) + ", " + std::to_string(cols) + "), }";
    size_t total = 10 + h.size() + 1;
    h.append((64 - total % 64) % 64, ' ');
    h.push_back('\n');
    std::string tmp = std::string(path) + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail(std::string(path) + ": cannot write");
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(h.size() & 255),
                              (unsigned char)(h.size() >> 8)};
    std::fwrite(head, 1, 10, f);
    std::fwrite(h.data(), 1, h.size(), f);
    std::vector<unsigned char> out(v.size() * size);
    for (size_t i = 0; i < v.size(); i++) std::memcpy(&out[i * size], &v[i], size);
    std::fwrite(out.data(), 1, out.size(), f);
    if (std::fclose(f) != 0 || std::rename(tmp.c_str(), path) != 0) fail(std::string(path) + ": write failed");
}

extern "C" int bitmac_mem_read(int which, int index) {
    const std::vector<int64_t>& v = which ? g_w : g_a;
    return (size_t)index < v.size() ? (int)v[index] : 0;
}

// 32-bit word i of a port, whatever C type Verilator chose for its width.
template <typename T> static inline uint32_t word(const T& v, int i) { return (uint32_t)((uint64_t)v >> (32 * i)); }
template <std::size_t N> static inline uint32_t word(const VlWide<N>& v, int i) { return v[i]; }

int main(int argc, char** argv) {
    if (argc < 3) fail("usage: Vsystolic_array A.npy W.npy [--df ws|is|os] [--p P] ... (tests/rtl/README.md)");
    size_t m, k, k2, n;
    g_a = read_npy(argv[1], m, k);
    g_w = read_npy(argv[2], k2, n);
    if (k != k2) fail("A is " + std::to_string(m) + "x" + std::to_string(k) + " but W is " + std::to_string(k2) + "x" + std::to_string(n));
    if (m * k > BM_ADEPTH || k * n > BM_WDEPTH || m * n > BM_BDEPTH)
        fail("GEMM too large for this build (ADEPTH/WDEPTH/BDEPTH)");
    int df = 0, asg = 0, wsg = 1, p = 32, ovf = 0, d = 0, rmode = 2;
    long long offset = 0;
    const char* out = nullptr;
    bool print_acc = false;
    for (int i = 3; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> const char* {
            if (i + 1 >= argc) fail(a + " needs a value");
            return argv[++i];
        };
        if (a == "--df") {
            std::string v = val();
            df = v == "ws" ? 0 : v == "is" ? 1 : v == "os" ? 2 : -1;
            if (df < 0) fail("--df " + v + " (allowed: ws, is, os)");
        } else if (a == "--asigned") asg = std::atoi(val());
        else if (a == "--wsigned") wsg = std::atoi(val());
        else if (a == "--p") p = std::atoi(val());
        else if (a == "--ovf") ovf = std::atoi(val());
        else if (a == "--d") d = std::atoi(val());
        else if (a == "--rmode") rmode = std::atoi(val());
        else if (a == "--offset") offset = std::atoll(val());
        else if (a == "--out") out = val();
        else if (a == "--print-acc") print_acc = true;
        else fail("unknown option " + a);
    }

    auto ctx = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vsystolic_array>(ctx.get());
    top->cfg_df = df;
    top->cfg_a_signed = asg;
    top->cfg_w_signed = wsg;
    top->cfg_p = p;
    top->cfg_ovf = ovf;
    top->cfg_d = d;
    top->cfg_rmode = rmode;
    top->cfg_offset = (uint64_t)offset;
    top->cfg_m = m;
    top->cfg_k = k;
    top->cfg_n = n;
    top->mem_we = 0;
    std::vector<int64_t> acc(m * n, 0);
    std::vector<unsigned char> seen(m * n, 0);
    auto tick = [&]() {
        top->clk = 1;
        top->eval();
        uint64_t v = (uint64_t)top->wb_valid;
        if (v) {
            for (int c = 0; c < BM_C; c++) {
                if ((v >> c) & 1) {
                    uint32_t a = word(top->wb_addr, c);
                    acc[a] = (int64_t)((uint64_t)word(top->wb_value, 2 * c) | ((uint64_t)word(top->wb_value, 2 * c + 1) << 32));
                    seen[a] = 1;
                }
            }
        }
        top->clk = 0;
        top->eval();
    };
    top->clk = 0;
    top->rst = 1;
    top->start = 0;
    top->eval();
    tick();
    top->rst = 0;
    top->start = 1;
    tick();
    top->start = 0;
    // Far above any schedule of this size: a hang is reported, not waited on.
    uint64_t limit = 4 * (uint64_t)(m + 64) * (k + 64) * (n + 64) + 1000000;
    while (!top->done) {
        tick();
        if ((uint64_t)top->cycles > limit) fail("the array did not finish (cycles > " + std::to_string(limit) + ")");
    }
    for (size_t i = 0; i < m * n; i++)
        if (!seen[i]) fail("output " + std::to_string(i / n) + "," + std::to_string(i % n) + " was never written back");
    std::printf("cycles=%llu\n", (unsigned long long)top->cycles);
    if (print_acc) {
        std::printf("acc=");
        for (size_t i = 0; i < acc.size(); i++) std::printf("%s%lld", i ? "," : "", (long long)acc[i]);
        std::printf("\n");
    }
    if (out) {
        std::vector<int64_t> scaled(acc.size());
        for (size_t i = 0; i < acc.size(); i++) scaled[i] = (int64_t)((uint64_t)acc[i] << d);
        write_npy(out, scaled, m, n, p + d <= 32 ? 4 : 8);
    }
    top->final();
    return 0;
}

// bitmac_dpi: the bitmac C ABI (capi/include/bitmac.h, docs/abi.md) imported into
// SystemVerilog through DPI-C, for scoreboards that call the golden model transaction by
// transaction. Link the simulation with libbitmac_capi (cargo build --release -p bitmac-capi:
// target/release/libbitmac_capi.so or .a).
//
// Every function returns a status: BITMAC_OK (0) or a BITMAC_E_* code, with the one-line
// message in bitmac_last_error(). Handles (config, FIFO, GEMM job) are chandles; free them.
// Type mapping: int64_t = longint, uint64_t = longint unsigned, int32_t = int,
// uint32_t = int unsigned, double = real, float = shortreal, const char* = string,
// T* out-parameters = output.
package bitmac_dpi;
    localparam int BITMAC_OK = 0;
    localparam int BITMAC_E_MISMATCH = 1;
    localparam int BITMAC_E_INPUT = 2;
    localparam int BITMAC_E_INTERNAL = 3;
    localparam int BITMAC_E_PANIC = 4;
    localparam int BITMAC_E_NULL = 5;

    localparam int BITMAC_STAGE_OUT = 0;
    localparam int BITMAC_STAGE_ACC = 1;
    localparam int BITMAC_ENGINE_FAST = 0;
    localparam int BITMAC_ENGINE_CYCLE = 1;

    // Rounding modes (psum_round.v MODE order) and overflow modes (OVF order).
    localparam int BITMAC_TRN = 0;
    localparam int BITMAC_TRN_ZERO = 1;
    localparam int BITMAC_RND = 2;
    localparam int BITMAC_RND_ZERO = 3;
    localparam int BITMAC_RND_MIN_INF = 4;
    localparam int BITMAC_RND_INF = 5;
    localparam int BITMAC_RND_CONV = 6;
    localparam int BITMAC_RND_CONV_ODD = 7;
    localparam int BITMAC_WRAP = 0;
    localparam int BITMAC_SAT = 1;
    localparam int BITMAC_SAT_ZERO = 2;
    localparam int BITMAC_SAT_SYM = 3;
    localparam int BITMAC_REQUANT_DOUBLE = 0;
    localparam int BITMAC_REQUANT_SINGLE = 1;

    // bitmac_fifo_get fields.
    localparam int BITMAC_FIFO_WFULL = 0;
    localparam int BITMAC_FIFO_REMPTY = 1;
    localparam int BITMAC_FIFO_WPTR = 2;
    localparam int BITMAC_FIFO_RPTR = 3;
    localparam int BITMAC_FIFO_WQ_RPTR = 4;
    localparam int BITMAC_FIFO_RQ_WPTR = 5;
    localparam int BITMAC_FIFO_WBIN = 6;
    localparam int BITMAC_FIFO_RBIN = 7;
    localparam int BITMAC_FIFO_OCCUPANCY = 8;
    localparam int BITMAC_FIFO_RDATA = 9;

    import "DPI-C" function string bitmac_last_error();
    import "DPI-C" function string bitmac_version();

    // Hardware configuration.
    import "DPI-C" function int bitmac_hw_load(input string path, output chandle hw);
    import "DPI-C" function int bitmac_hw_from_json(input string json, input string what, output chandle hw);
    import "DPI-C" function int bitmac_hw_set(input chandle hw, input string path, input string value);
    import "DPI-C" function int bitmac_hw_shape(input chandle hw, output int unsigned rows, output int unsigned cols);
    import "DPI-C" function void bitmac_hw_free(input chandle hw);

    // Scalar kernels.
    import "DPI-C" function int bitmac_round(input longint x, input int unsigned k, input int mode,
                                             input longint offset, output longint value, output int position);
    import "DPI-C" function int bitmac_narrow(input longint x, input int unsigned bits, input int is_signed,
                                              input int mode, output longint value, output int overflowed);
    import "DPI-C" function int bitmac_requant(input longint x, input real multiplier, input int rounding,
                                               input int unsigned out_bits, input int out_signed, input int relu,
                                               output longint code, output int clamped);
    import "DPI-C" function int bitmac_layer_multiplier(input shortreal s_w, input shortreal s_a,
                                                        input shortreal s_out, output real multiplier);

    // GEMM, element by element (bitmac_gemm itself takes C arrays).
    import "DPI-C" function int bitmac_job_new(input chandle hw, input int unsigned m, input int unsigned k,
                                               input int unsigned n, output chandle job);
    import "DPI-C" function int bitmac_job_set_a(input chandle job, input int unsigned i, input int unsigned j,
                                                 input longint v);
    import "DPI-C" function int bitmac_job_set_w(input chandle job, input int unsigned i, input int unsigned j,
                                                 input longint v);
    import "DPI-C" function int bitmac_job_set_bias(input chandle job, input int unsigned j, input int v);
    import "DPI-C" function int bitmac_job_run(input chandle job, input int stage, input int engine,
                                               input real multiplier);
    import "DPI-C" function int bitmac_job_get(input chandle job, input int unsigned i, input int unsigned j,
                                               output longint value);
    import "DPI-C" function void bitmac_job_free(input chandle job);

    // The stepping async FIFO.
    import "DPI-C" function int bitmac_fifo_new(input int unsigned depth, input int unsigned sync,
                                                input int unsigned data_width, output chandle fifo);
    import "DPI-C" function void bitmac_fifo_free(input chandle fifo);
    import "DPI-C" function int bitmac_fifo_reset(input chandle fifo);
    import "DPI-C" function int bitmac_fifo_write_edge(input chandle fifo, input int wen, input longint unsigned data,
                                                       output int pushed);
    import "DPI-C" function int bitmac_fifo_read_edge(input chandle fifo, input int ren, output int popped,
                                                      output longint unsigned data);
    import "DPI-C" function int bitmac_fifo_both_edges(input chandle fifo, input int wen,
                                                       input longint unsigned wdata, input int ren,
                                                       output int pushed, output int popped,
                                                       output longint unsigned rdata);
    import "DPI-C" function longint bitmac_fifo_get(input chandle fifo, input int field);
endpackage

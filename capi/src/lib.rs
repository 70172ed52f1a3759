//! The C ABI of bitmac: config loading, GEMM, rounding, narrowing,
//! requantization and the stepping async FIFO, for C/C++ testbenches and
//! SystemVerilog DPI-C (`tests/dpi/bitmac_dpi.sv`). Normative description:
//! `docs/abi.md`; the header `capi/include/bitmac.h` is generated from this
//! file by cbindgen (`build.rs`) and committed.
//!
//! Every entry point:
//! - returns a status (`BITMAC_OK` = 0, else one of the `BITMAC_E_*` codes)
//!   and writes results through out-pointers only on success;
//! - runs inside `catch_unwind`: a Rust panic becomes `BITMAC_E_PANIC`, never
//!   an unwind across the C boundary;
//! - on failure stores a one-line message (the CLI's message for user
//!   errors) retrievable with `bitmac_last_error()` on the same thread.
//!
//! Handles (`BitmacHw`, `BitmacFifo`) are opaque, created by `*_new`/`*_load`
//! and released by `*_free` (NULL is accepted and ignored). A handle must
//! not be used from two threads at once; distinct handles are independent.

// Raw pointers from C are checked for NULL and dereferenced only inside
// this file; the library itself stays `forbid(unsafe_code)`.
#![allow(clippy::missing_safety_doc)]

use bitmac::array::{Engine, Matrix};
use bitmac::cdc::{Data, StepFifo};
use bitmac::gemm::{GemmRequest, Stage};
use bitmac::hw::HwConfig;
use bitmac::import::model::LoadedModel;
use bitmac::lsq::{LsqConfig, LsqKind, LsqVariant};
use bitmac::numerics::{IntFormat, Narrower, OverflowMode, Position, RoundMode, Rounder};
use bitmac::requant::{quantize_multiplier, RequantRounding, Requantizer};
use bitmac::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Success.
pub const BITMAC_OK: i32 = 0;
/// A comparison found a difference (the CLI's exit code 1).
pub const BITMAC_E_MISMATCH: i32 = 1;
/// Bad input: a value out of range, a malformed config, a bad path (exit code 2).
pub const BITMAC_E_INPUT: i32 = 2;
/// An internal error (exit code 3).
pub const BITMAC_E_INTERNAL: i32 = 3;
/// A Rust panic was caught at the boundary (a bug; please report it).
pub const BITMAC_E_PANIC: i32 = 4;
/// A required pointer argument was NULL, or a string was not UTF-8.
pub const BITMAC_E_NULL: i32 = 5;

/// `stage`: requantized output codes.
pub const BITMAC_STAGE_OUT: i32 = 0;
/// `stage`: accumulator values `acc * 2^d`, before bias and requantization.
pub const BITMAC_STAGE_ACC: i32 = 1;
/// `engine`: the functional engine.
pub const BITMAC_ENGINE_FAST: i32 = 0;
/// `engine`: the cycle-level engine (same results).
pub const BITMAC_ENGINE_CYCLE: i32 = 1;

/// Rounding modes (the order of `tests/rtl/psum_round.v`'s `MODE`).
pub const BITMAC_TRN: i32 = 0;
pub const BITMAC_TRN_ZERO: i32 = 1;
pub const BITMAC_RND: i32 = 2;
pub const BITMAC_RND_ZERO: i32 = 3;
pub const BITMAC_RND_MIN_INF: i32 = 4;
pub const BITMAC_RND_INF: i32 = 5;
pub const BITMAC_RND_CONV: i32 = 6;
pub const BITMAC_RND_CONV_ODD: i32 = 7;

/// Overflow modes (the order of `psum_round.v`'s `OVF`).
pub const BITMAC_WRAP: i32 = 0;
pub const BITMAC_SAT: i32 = 1;
pub const BITMAC_SAT_ZERO: i32 = 2;
pub const BITMAC_SAT_SYM: i32 = 3;

/// Requantization schemes.
pub const BITMAC_REQUANT_DOUBLE: i32 = 0;
pub const BITMAC_REQUANT_SINGLE: i32 = 1;

/// LSQ quantizer kinds (`docs/lsq.md`).
pub const BITMAC_LSQ_ACT: i32 = 0;
pub const BITMAC_LSQ_WEIGHT: i32 = 1;
/// LSQ variants: the seed's PyTorch code, or Esser et al. (ICLR 2020).
pub const BITMAC_LSQ_SEED: i32 = 0;
pub const BITMAC_LSQ_PAPER: i32 = 1;

/// Fields of `bitmac_fifo_get`.
pub const BITMAC_FIFO_WFULL: i32 = 0;
pub const BITMAC_FIFO_REMPTY: i32 = 1;
pub const BITMAC_FIFO_WPTR: i32 = 2;
pub const BITMAC_FIFO_RPTR: i32 = 3;
pub const BITMAC_FIFO_WQ_RPTR: i32 = 4;
pub const BITMAC_FIFO_RQ_WPTR: i32 = 5;
pub const BITMAC_FIFO_WBIN: i32 = 6;
pub const BITMAC_FIFO_RBIN: i32 = 7;
pub const BITMAC_FIFO_OCCUPANCY: i32 = 8;
/// The show-ahead read data `mem[rbin mod D]` (-1 if never written).
pub const BITMAC_FIFO_RDATA: i32 = 9;

const ROUND_MODES: [&str; 8] =
    ["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV", "RND_CONV_ODD"];
const OVERFLOW_MODES: [&str; 4] = ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"];

/// A validated hardware configuration (opaque).
pub struct BitmacHw {
    cfg: HwConfig,
    what: String,
}

/// A loaded model (opaque): `bitmac-model/1`, `bitmac-graph/1` or ONNX.
pub struct BitmacModel {
    m: LoadedModel,
}

/// A stepping async FIFO (opaque), `docs/cdc.md` §3–§4.
pub struct BitmacFifo {
    f: StepFifo,
}

/// GEMM statistics (`docs/datapath.md` §6; the full set is in `bitmac gemm --stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BitmacGemmStats {
    /// Cycles of the array (`docs/datapath.md` §5).
    pub cycles: u64,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Overflowing adders, array plus psum buffer.
    pub overflows: u64,
    /// Overflowing PE adders.
    pub overflows_array: u64,
    /// Overflowing psum-buffer adders.
    pub overflows_psum: u64,
    /// Psum roundings exactly at the rounding centre.
    pub psum_ties: u64,
    /// Outputs changed by the requantization clamp.
    pub out_clamped: u64,
    /// Narrowest accumulator that would not overflow.
    pub min_acc_bits: u32,
}

/// The registers of a stepping FIFO after the last edge.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BitmacFifoState {
    pub wfull: i32,
    pub rempty: i32,
    pub wptr: u32,
    pub rptr: u32,
    pub wq_rptr: u32,
    pub rq_wptr: u32,
    pub wbin: u32,
    pub rbin: u32,
    pub occupancy: u64,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// A failed call: its status and message.
struct Fail(i32, String);

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let code = match e.exit_code() {
            1 => BITMAC_E_MISMATCH,
            2 => BITMAC_E_INPUT,
            _ => BITMAC_E_INTERNAL,
        };
        Fail(code, e.to_string())
    }
}

fn null(what: &str) -> Fail {
    Fail(BITMAC_E_NULL, format!("{what}: NULL pointer"))
}

/// Run `f`, catching panics; store the message of a failure.
fn guard(f: impl FnOnce() -> Result<(), Fail>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => BITMAC_OK,
        Ok(Err(Fail(code, msg))) => {
            set_error(&msg);
            code
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            set_error(&format!("internal error: panic in bitmac: {what}"));
            BITMAC_E_PANIC
        }
    }
}

unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(null(what));
    }
    CStr::from_ptr(p).to_str().map_err(|_| Fail(BITMAC_E_NULL, format!("{what}: not valid UTF-8")))
}

unsafe fn out<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Fail> {
    p.as_mut().ok_or_else(|| null(what))
}

unsafe fn put<T>(p: *mut T, v: T) {
    if let Some(r) = p.as_mut() {
        *r = v;
    }
}

fn pick<T: std::str::FromStr<Err = Error>>(v: i32, names: &[&str], field: &str) -> Result<T, Fail> {
    let name = usize::try_from(v).ok().and_then(|i| names.get(i)).ok_or_else(|| {
        let list: Vec<String> = names.iter().enumerate().map(|(i, n)| format!("{i} {n}")).collect();
        Fail::from(Error::field(field, v, list.join(", ")))
    })?;
    Ok(name.parse::<T>()?)
}

/// The message of the last failed call on this thread (`""` if none). The
/// pointer stays valid until the next failing call on this thread.
#[no_mangle]
pub extern "C" fn bitmac_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The library version, e.g. `"0.1.0"` (static storage).
#[no_mangle]
pub extern "C" fn bitmac_version() -> *const c_char {
    static V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"?",
    };
    V.as_ptr()
}

/// Load and validate a hardware config JSON file (`docs/hw-config.md`).
#[no_mangle]
pub unsafe extern "C" fn bitmac_hw_load(path: *const c_char, hw: *mut *mut BitmacHw) -> i32 {
    guard(|| {
        let path = str_arg(path, "path")?;
        let o = out(hw, "hw")?;
        let cfg = HwConfig::load(std::path::Path::new(path))?;
        *o = Box::into_raw(Box::new(BitmacHw { cfg, what: path.to_string() }));
        Ok(())
    })
}

/// Parse and validate hardware config JSON text; `what` (may be NULL:
/// `"hw"`) names the source in error messages.
#[no_mangle]
pub unsafe extern "C" fn bitmac_hw_from_json(
    json: *const c_char,
    what: *const c_char,
    hw: *mut *mut BitmacHw,
) -> i32 {
    guard(|| {
        let text = str_arg(json, "json")?;
        let what = if what.is_null() { "hw" } else { str_arg(what, "what")? };
        let o = out(hw, "hw")?;
        let cfg = HwConfig::from_json_str(text, what)?;
        *o = Box::into_raw(Box::new(BitmacHw { cfg, what: what.to_string() }));
        Ok(())
    })
}

/// Override one field as `bitmac run --set PATH=VALUE` does (`value` is
/// JSON, or a bare string such as `RND_CONV`), then re-validate; on error
/// the config is unchanged.
#[no_mangle]
pub unsafe extern "C" fn bitmac_hw_set(hw: *mut BitmacHw, path: *const c_char, value: *const c_char) -> i32 {
    guard(|| {
        let h = out(hw, "hw")?;
        let path = str_arg(path, "path")?;
        let value = str_arg(value, "value")?;
        let text = serde_json_text(&h.cfg)?;
        let text = bitmac::cli::apply_overrides(&text, &h.what, &[format!("{path}={value}")])?;
        h.cfg = HwConfig::from_json_str(&text, &h.what)?;
        Ok(())
    })
}

fn serde_json_text(cfg: &HwConfig) -> Result<String, Fail> {
    serde_json::to_string(cfg.spec()).map_err(|e| Fail(BITMAC_E_INTERNAL, format!("hw: serialising: {e}")))
}

/// Release a config (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn bitmac_hw_free(hw: *mut BitmacHw) {
    if !hw.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(hw))));
    }
}

/// Array rows and columns of a config (either out-pointer may be NULL).
#[no_mangle]
pub unsafe extern "C" fn bitmac_hw_shape(hw: *const BitmacHw, rows: *mut u32, cols: *mut u32) -> i32 {
    guard(|| {
        let h = hw.as_ref().ok_or_else(|| null("hw"))?;
        put(rows, h.cfg.rows() as u32);
        put(cols, h.cfg.cols() as u32);
        Ok(())
    })
}

fn gemm_stats(s: &bitmac::array::Stats) -> BitmacGemmStats {
    BitmacGemmStats {
        cycles: s.cycles,
        macs: s.macs,
        overflows: s.overflows(),
        overflows_array: s.overflows_array,
        overflows_psum: s.overflows_psum,
        psum_ties: s.psum_ties,
        out_clamped: s.out_clamped,
        min_acc_bits: s.min_acc_bits,
    }
}

/// One GEMM `A (m x k) x W (k x n)` through the array, as `bitmac gemm`:
/// `a`, `w` row-major int64 (each value must fit the config's operand
/// format), `bias` NULL or `n` int32 values, `stage` `BITMAC_STAGE_*`,
/// `engine` `BITMAC_ENGINE_*`, `multiplier` the real requant multiplier
/// (0 = none; required for `BITMAC_STAGE_OUT`). Writes `m * n` int64 values
/// to `out` and, if `stats` is not NULL, the statistics.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bitmac_gemm(
    hw: *const BitmacHw,
    a: *const i64,
    m: usize,
    k: usize,
    w: *const i64,
    n: usize,
    bias: *const i32,
    stage: i32,
    engine: i32,
    multiplier: f64,
    out_values: *mut i64,
    stats: *mut BitmacGemmStats,
) -> i32 {
    guard(|| {
        let h = hw.as_ref().ok_or_else(|| null("hw"))?;
        if a.is_null() {
            return Err(null("a"));
        }
        if w.is_null() {
            return Err(null("w"));
        }
        if out_values.is_null() {
            return Err(null("out"));
        }
        let (mk, kn, mn) = match (m.checked_mul(k), k.checked_mul(n), m.checked_mul(n)) {
            (Some(x), Some(y), Some(z)) => (x, y, z),
            _ => return Err(Error::input(format!("gemm shape {m}x{k}x{n} overflows")).into()),
        };
        let stage = match stage {
            BITMAC_STAGE_OUT => Stage::Out,
            BITMAC_STAGE_ACC => Stage::Acc,
            v => return Err(Error::field("stage", v, "0 (out), 1 (acc)").into()),
        };
        let engine = match engine {
            BITMAC_ENGINE_FAST => Engine::Fast,
            BITMAC_ENGINE_CYCLE => Engine::Cycle,
            v => return Err(Error::field("engine", v, "0 (fast), 1 (cycle)").into()),
        };
        let mult = bitmac::gemm::multiplier((multiplier != 0.0).then_some(multiplier), [None; 3])?;
        let am = Matrix::from_i64(m, k, std::slice::from_raw_parts(a, mk), h.cfg.activations(), "A")?;
        let wm = Matrix::from_i64(k, n, std::slice::from_raw_parts(w, kn), h.cfg.weights(), "W")?;
        let bias = (!bias.is_null()).then(|| std::slice::from_raw_parts(bias, n));
        let req = GemmRequest {
            a: &am,
            w: &wm,
            bias,
            stage,
            engine,
            multiplier: mult,
            trace: false,
            max_work: bitmac::limits::GEMM_MAX_WORK,
        };
        let res = bitmac::gemm::gemm(&h.cfg, &req)?;
        std::slice::from_raw_parts_mut(out_values, mn).copy_from_slice(&res.values);
        put(stats, gemm_stats(&res.summary.stats));
        Ok(())
    })
}

/// The real multiplier of a layer from its step sizes,
/// `M = f64(f32(s_a * s_w)) / f64(s_out)` (`docs/requant.md`).
#[no_mangle]
pub unsafe extern "C" fn bitmac_layer_multiplier(
    s_w: f32,
    s_a: f32,
    s_out: f32,
    multiplier: *mut f64,
) -> i32 {
    guard(|| {
        let o = out(multiplier, "multiplier")?;
        *o = bitmac::requant::layer_multiplier(s_w, s_a, s_out)?;
        Ok(())
    })
}

/// Drop `k` LSBs of `x` (`docs/numerics.md`): `mode` `BITMAC_TRN` ..
/// `BITMAC_RND_CONV_ODD`, rounding-centre `offset`. Writes the exact rounded
/// value and (if not NULL) the residue's position relative to the centre:
/// 0 below, 1 at (a tie), 2 above.
#[no_mangle]
pub unsafe extern "C" fn bitmac_round(
    x: i64,
    k: u32,
    mode: i32,
    offset: i64,
    value: *mut i64,
    position: *mut i32,
) -> i32 {
    guard(|| {
        let o = out(value, "value")?;
        let mode: RoundMode = pick(mode, &ROUND_MODES, "mode")?;
        if k > 63 {
            return Err(Error::field("k", k, "0..=63").into());
        }
        let r = Rounder::new(k, mode, offset)?;
        let (y, info) = r.round_info(x as i128);
        *o = i64::try_from(y).map_err(|_| Fail::from(Error::field("rounded value", y, "int64")))?;
        put(
            position,
            match info.position {
                Position::Below => 0,
                Position::At => 1,
                Position::Above => 2,
            },
        );
        Ok(())
    })
}

/// Store `x` into a `bits`-bit (1..=64) signed or unsigned format with
/// overflow `mode` `BITMAC_WRAP` .. `BITMAC_SAT_SYM`. Writes the stored
/// value and (if not NULL) 1 if it differs from `x`.
#[no_mangle]
pub unsafe extern "C" fn bitmac_narrow(
    x: i64,
    bits: u32,
    is_signed: i32,
    mode: i32,
    value: *mut i64,
    overflowed: *mut i32,
) -> i32 {
    guard(|| {
        let o = out(value, "value")?;
        let mode: OverflowMode = pick(mode, &OVERFLOW_MODES, "mode")?;
        let fmt = IntFormat::new(is_signed != 0, bits)?;
        let (y, ovf) = Narrower::new(fmt, mode).narrow(x as i128);
        *o = i64::try_from(y).map_err(|_| Fail::from(Error::field("narrowed value", y, "int64")))?;
        put(overflowed, ovf as i32);
        Ok(())
    })
}

/// TFLite requantization of `x` (accumulator plus bias, `docs/requant.md`)
/// with the real `multiplier` (quantized to Q0.31 as TFLite does),
/// `rounding` `BITMAC_REQUANT_*`, an `out_bits` (2..=32) output format and
/// optional fused ReLU. Writes the code and (if not NULL) 1 if clamped.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bitmac_requant(
    x: i64,
    multiplier: f64,
    rounding: i32,
    out_bits: u32,
    out_signed: i32,
    relu: i32,
    code: *mut i64,
    clamped: *mut i32,
) -> i32 {
    guard(|| {
        let o = out(code, "code")?;
        let rounding: RequantRounding = pick(rounding, &["double", "single"], "rounding")?;
        let m = quantize_multiplier(multiplier)?;
        let rq = Requantizer::new(m, rounding, IntFormat::new(out_signed != 0, out_bits)?, relu != 0)?;
        let (y, c) = rq.apply(x as i128);
        *o = y;
        put(clamped, c as i32);
        Ok(())
    })
}

fn lsq_cfg(kind: i32, variant: i32, nbit: i64, step: f64) -> Result<LsqConfig, Fail> {
    let kind = match kind {
        BITMAC_LSQ_ACT => LsqKind::Act,
        BITMAC_LSQ_WEIGHT => LsqKind::Weight,
        _ => return Err(Error::field("kind", kind, "0 BITMAC_LSQ_ACT, 1 BITMAC_LSQ_WEIGHT").into()),
    };
    let variant = match variant {
        BITMAC_LSQ_SEED => LsqVariant::Seed,
        BITMAC_LSQ_PAPER => LsqVariant::Paper,
        _ => return Err(Error::field("variant", variant, "0 BITMAC_LSQ_SEED, 1 BITMAC_LSQ_PAPER").into()),
    };
    Ok(LsqConfig::from_boundary(kind, variant, nbit, step)?)
}

unsafe fn f32_slice<'a>(p: *const f32, n: usize, what: &str) -> Result<&'a [f32], Fail> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(null(what));
    }
    Ok(std::slice::from_raw_parts(p, n))
}

/// LSQ forward (`bitmac lsq`, `docs/lsq.md`) of `n` float32 values `x`: `kind`
/// `BITMAC_LSQ_ACT/WEIGHT`, `variant` `BITMAC_LSQ_SEED/PAPER`, `nbit` 2..=16, `step` a
/// positive finite float32. Writes `n` fake-quantized values to `y` and `n` integer codes to
/// `code` (either may be NULL when not wanted). A NaN input is `BITMAC_E_INPUT`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bitmac_lsq_forward(
    kind: i32,
    variant: i32,
    nbit: i64,
    step: f64,
    x: *const f32,
    n: usize,
    y: *mut f32,
    code: *mut i32,
) -> i32 {
    guard(|| {
        let cfg = lsq_cfg(kind, variant, nbit, step)?;
        let x = f32_slice(x, n, "x")?;
        let f = cfg.forward(x)?;
        if !y.is_null() && n > 0 {
            std::slice::from_raw_parts_mut(y, n).copy_from_slice(&f.y);
        }
        if !code.is_null() && n > 0 {
            std::slice::from_raw_parts_mut(code, n).copy_from_slice(&f.code);
        }
        Ok(())
    })
}

/// LSQ backward of `n` values (`bitmac lsq --grad`): `grad_y` the upstream gradient; writes
/// `n` values to `grad_x` (may be NULL) and the step gradient to `grad_s` (may be NULL; the
/// paper variant scales it by `1/sqrt(n * Qp)`, i.e. the paper's `N` is `n`, as `bitmac lsq`
/// and the Python `lsq_backward`). A non-finite `grad_s` (the f32 sum overflowed) is
/// `BITMAC_E_INPUT` with the CLI's message.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bitmac_lsq_backward(
    kind: i32,
    variant: i32,
    nbit: i64,
    step: f64,
    x: *const f32,
    grad_y: *const f32,
    n: usize,
    grad_x: *mut f32,
    grad_s: *mut f32,
) -> i32 {
    guard(|| {
        let cfg = lsq_cfg(kind, variant, nbit, step)?;
        let x = f32_slice(x, n, "x")?;
        let g = f32_slice(grad_y, n, "grad_y")?;
        let b = cfg.backward(x, g)?;
        if !b.grad_s.is_finite() {
            return Err(Fail(
                BITMAC_E_INPUT,
                format!(
                    "grad_s: the f32 sum overflowed to {} (allowed: finite; scale grad_y down)",
                    b.grad_s
                ),
            ));
        }
        if !grad_x.is_null() && n > 0 {
            std::slice::from_raw_parts_mut(grad_x, n).copy_from_slice(&b.grad_x);
        }
        put(grad_s, b.grad_s);
        Ok(())
    })
}

/// Load a model file (`bitmac run --model`): a `bitmac-model/1` or `bitmac-graph/1` JSON, or
/// an `.onnx` file; `requant` NULL for the default, else (ONNX only) `"float32"`,
/// `"hardware"`, `"double"` or `"single"` as `bitmac run --requant`.
#[no_mangle]
pub unsafe extern "C" fn bitmac_model_load(
    path: *const c_char,
    requant: *const c_char,
    model: *mut *mut BitmacModel,
) -> i32 {
    guard(|| {
        let path = str_arg(path, "path")?;
        let o = out(model, "model")?;
        let rq = if requant.is_null() {
            None
        } else {
            Some(bitmac::graph::RequantMode::parse(str_arg(requant, "requant")?)?)
        };
        let m = LoadedModel::load(std::path::Path::new(path), rq)?;
        *o = Box::into_raw(Box::new(BitmacModel { m }));
        Ok(())
    })
}

/// Release a model (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn bitmac_model_free(model: *mut BitmacModel) {
    if !model.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(model))));
    }
}

/// Floats per input sample and output codes (classes) per sample (either may be NULL).
#[no_mangle]
pub unsafe extern "C" fn bitmac_model_shape(
    model: *const BitmacModel,
    input_len: *mut usize,
    classes: *mut usize,
) -> i32 {
    guard(|| {
        let m = &model.as_ref().ok_or_else(|| null("model"))?.m;
        put(input_len, m.input_len());
        put(classes, m.graph().tensor(m.graph().output()).len());
        Ok(())
    })
}

/// Run `samples` float32 samples `x` (`samples * input_len` values, the CLI's input units)
/// through the graph runner on `hw` (NULL: the CLI's default for the format, `models/hw/
/// default.json` or `models/hw/onnx.json`) with `engine` `BITMAC_ENGINE_*`. Writes the output
/// codes to `logits` (`samples * classes`, may be NULL), the argmax per sample (lowest index on
/// ties) to `predictions` (`samples`, may be NULL) and the array nodes' statistics merged in
/// node order to `stats` (may be NULL). Results equal `bitmac run`'s.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bitmac_model_run(
    model: *const BitmacModel,
    hw: *const BitmacHw,
    x: *const f32,
    samples: usize,
    engine: i32,
    logits: *mut i64,
    predictions: *mut u32,
    stats: *mut BitmacGemmStats,
) -> i32 {
    guard(|| {
        let m = &model.as_ref().ok_or_else(|| null("model"))?.m;
        let engine = match engine {
            BITMAC_ENGINE_FAST => Engine::Fast,
            BITMAC_ENGINE_CYCLE => Engine::Cycle,
            _ => {
                return Err(
                    Error::field("engine", engine, "0 BITMAC_ENGINE_FAST, 1 BITMAC_ENGINE_CYCLE").into()
                )
            }
        };
        let n = samples
            .checked_mul(m.input_len())
            .ok_or_else(|| Fail::from(Error::field("samples", samples, "samples * input_len fits usize")))?;
        let x = f32_slice(x, n, "x")?;
        let cfg = match hw.as_ref() {
            Some(h) => h.cfg.clone(),
            None => {
                let what = if m.format == "onnx" { "models/hw/onnx.json" } else { "models/hw/default.json" };
                HwConfig::from_json_str(m.default_hw(), what)?
            }
        };
        // Batch 1, as `bitmac run`'s default (the cycle counts depend on the batch).
        let r = m.run(x, &cfg, engine, 1)?;
        if !logits.is_null() && !r.logits.is_empty() {
            std::slice::from_raw_parts_mut(logits, r.logits.len()).copy_from_slice(&r.logits);
        }
        if !predictions.is_null() && samples > 0 {
            let p = std::slice::from_raw_parts_mut(predictions, samples);
            for (d, &s) in p.iter_mut().zip(&r.predictions) {
                *d = s as u32;
            }
        }
        put(stats, gemm_stats(&r.total));
        Ok(())
    })
}

/// A stepping async FIFO in its reset state: `depth` a power of two in
/// 2..=65536, `sync` flops 2..=16, `data_width` 1..=64.
#[no_mangle]
pub unsafe extern "C" fn bitmac_fifo_new(
    depth: u32,
    sync: u32,
    data_width: u32,
    fifo: *mut *mut BitmacFifo,
) -> i32 {
    guard(|| {
        let o = out(fifo, "fifo")?;
        let f = StepFifo::new(depth as u64, sync, data_width)?;
        *o = Box::into_raw(Box::new(BitmacFifo { f }));
        Ok(())
    })
}

/// Release a FIFO (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn bitmac_fifo_free(fifo: *mut BitmacFifo) {
    if !fifo.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(fifo))));
    }
}

/// Both domains back to reset (the memory keeps its contents).
#[no_mangle]
pub unsafe extern "C" fn bitmac_fifo_reset(fifo: *mut BitmacFifo) -> i32 {
    guard(|| {
        out(fifo, "fifo")?.f.reset();
        Ok(())
    })
}

/// One write-clock edge: `push = wen & !wfull`; `pushed` (may be NULL) gets 0/1.
#[no_mangle]
pub unsafe extern "C" fn bitmac_fifo_write_edge(
    fifo: *mut BitmacFifo,
    wen: i32,
    data: u64,
    pushed: *mut i32,
) -> i32 {
    guard(|| {
        let f = out(fifo, "fifo")?;
        let e = f.f.write_edge(wen != 0, data)?;
        put(pushed, e.moved as i32);
        Ok(())
    })
}

fn word(d: Data) -> u64 {
    match d {
        Data::Word(v) => v,
        Data::None | Data::X => 0,
    }
}

/// One read-clock edge: `pop = ren & !rempty`; `popped` and `data` (either
/// may be NULL) get 0/1 and the popped word (0 when nothing was popped).
#[no_mangle]
pub unsafe extern "C" fn bitmac_fifo_read_edge(
    fifo: *mut BitmacFifo,
    ren: i32,
    popped: *mut i32,
    data: *mut u64,
) -> i32 {
    guard(|| {
        let f = out(fifo, "fifo")?;
        let e = f.f.read_edge(ren != 0);
        put(popped, e.moved as i32);
        put(data, word(e.data));
        Ok(())
    })
}

/// Coincident write and read edges (one instant; each register from the
/// state before it, `docs/cdc.md` §4).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn bitmac_fifo_both_edges(
    fifo: *mut BitmacFifo,
    wen: i32,
    wdata: u64,
    ren: i32,
    pushed: *mut i32,
    popped: *mut i32,
    rdata: *mut u64,
) -> i32 {
    guard(|| {
        let f = out(fifo, "fifo")?;
        let (w, r) = f.f.both_edges(wen != 0, wdata, ren != 0)?;
        put(pushed, w.moved as i32);
        put(popped, r.moved as i32);
        put(rdata, word(r.data));
        Ok(())
    })
}

/// All registers after the last edge.
#[no_mangle]
pub unsafe extern "C" fn bitmac_fifo_state(fifo: *const BitmacFifo, state: *mut BitmacFifoState) -> i32 {
    guard(|| {
        let f = &fifo.as_ref().ok_or_else(|| null("fifo"))?.f;
        *out(state, "state")? = BitmacFifoState {
            wfull: f.wfull() as i32,
            rempty: f.rempty() as i32,
            wptr: f.wptr(),
            rptr: f.rptr(),
            wq_rptr: f.wq_rptr(),
            rq_wptr: f.rq_wptr(),
            wbin: f.wbin(),
            rbin: f.rbin(),
            occupancy: f.occupancy(),
        };
        Ok(())
    })
}

/// One register by field (`BITMAC_FIFO_*`), for callers without structs
/// (SystemVerilog DPI): the value, or -1 for a NULL handle or an unknown
/// field (message in `bitmac_last_error`).
#[no_mangle]
pub unsafe extern "C" fn bitmac_fifo_get(fifo: *const BitmacFifo, field: i32) -> i64 {
    let mut v = -1i64;
    let rc = guard(|| {
        let f = &fifo.as_ref().ok_or_else(|| null("fifo"))?.f;
        v = match field {
            BITMAC_FIFO_WFULL => f.wfull() as i64,
            BITMAC_FIFO_REMPTY => f.rempty() as i64,
            BITMAC_FIFO_WPTR => f.wptr() as i64,
            BITMAC_FIFO_RPTR => f.rptr() as i64,
            BITMAC_FIFO_WQ_RPTR => f.wq_rptr() as i64,
            BITMAC_FIFO_RQ_WPTR => f.rq_wptr() as i64,
            BITMAC_FIFO_WBIN => f.wbin() as i64,
            BITMAC_FIFO_RBIN => f.rbin() as i64,
            BITMAC_FIFO_OCCUPANCY => f.occupancy() as i64,
            BITMAC_FIFO_RDATA => f.rdata().map_or(-1, |d| d as i64),
            _ => return Err(Error::field("field", field, "0..=9 (BITMAC_FIFO_*)").into()),
        };
        Ok(())
    });
    if rc == BITMAC_OK {
        v
    } else {
        -1
    }
}

/// A GEMM built element by element, for callers that cannot pass arrays
/// (SystemVerilog DPI-C without open arrays): `bitmac_job_new`, then
/// `bitmac_job_set_a` / `_set_w` / `_set_bias` (zero-initialized; no bias
/// until one is set), `bitmac_job_run`, `bitmac_job_get`. The job owns a
/// copy of the config.
pub struct BitmacJob {
    cfg: HwConfig,
    m: usize,
    k: usize,
    n: usize,
    a: Vec<i64>,
    w: Vec<i64>,
    bias: Option<Vec<i32>>,
    out: Vec<i64>,
    stats: BitmacGemmStats,
}

/// A job for `A (m x k) x W (k x n)` on `hw`; each dimension 1..=2^24 and
/// `m*k + k*n + m*n <= 2^28` elements.
#[no_mangle]
pub unsafe extern "C" fn bitmac_job_new(
    hw: *const BitmacHw,
    m: u32,
    k: u32,
    n: u32,
    job: *mut *mut BitmacJob,
) -> i32 {
    guard(|| {
        let h = hw.as_ref().ok_or_else(|| null("hw"))?;
        let o = out(job, "job")?;
        for (name, v) in [("m", m), ("k", k), ("n", n)] {
            if !(1..=1 << 24).contains(&v) {
                return Err(Error::field(name, v, "1..=16777216").into());
            }
        }
        let (m, k, n) = (m as usize, k as usize, n as usize);
        let total = m * k + k * n + m * n;
        if total > 1 << 28 {
            return Err(Error::field("job elements (m*k + k*n + m*n)", total, "..=268435456").into());
        }
        *o = Box::into_raw(Box::new(BitmacJob {
            cfg: h.cfg.clone(),
            m,
            k,
            n,
            a: vec![0; m * k],
            w: vec![0; k * n],
            bias: None,
            out: vec![0; m * n],
            stats: BitmacGemmStats::default(),
        }));
        Ok(())
    })
}

/// Release a job (NULL is ignored).
#[no_mangle]
pub unsafe extern "C" fn bitmac_job_free(job: *mut BitmacJob) {
    if !job.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(job))));
    }
}

fn index(what: &str, i: u32, j: u32, rows: usize, cols: usize) -> Result<usize, Fail> {
    let (i, j) = (i as usize, j as usize);
    if i >= rows || j >= cols {
        return Err(Error::input(format!("{what}[{i},{j}]: index out of range (shape {rows}x{cols})")).into());
    }
    Ok(i * cols + j)
}

/// `A[i][j] = v` (checked against the operand format when the job runs).
#[no_mangle]
pub unsafe extern "C" fn bitmac_job_set_a(job: *mut BitmacJob, i: u32, j: u32, v: i64) -> i32 {
    guard(|| {
        let jb = out(job, "job")?;
        let ix = index("A", i, j, jb.m, jb.k)?;
        jb.a[ix] = v;
        Ok(())
    })
}

/// `W[i][j] = v`.
#[no_mangle]
pub unsafe extern "C" fn bitmac_job_set_w(job: *mut BitmacJob, i: u32, j: u32, v: i64) -> i32 {
    guard(|| {
        let jb = out(job, "job")?;
        let ix = index("W", i, j, jb.k, jb.n)?;
        jb.w[ix] = v;
        Ok(())
    })
}

/// `bias[j] = v` (the first call enables the bias; the others are 0).
#[no_mangle]
pub unsafe extern "C" fn bitmac_job_set_bias(job: *mut BitmacJob, j: u32, v: i32) -> i32 {
    guard(|| {
        let jb = out(job, "job")?;
        let ix = index("bias", 0, j, 1, jb.n)?;
        jb.bias.get_or_insert_with(|| vec![0; jb.n])[ix] = v;
        Ok(())
    })
}

/// Run the job as `bitmac_gemm` does (same `stage`, `engine`, `multiplier`).
#[no_mangle]
pub unsafe extern "C" fn bitmac_job_run(
    job: *mut BitmacJob,
    stage: i32,
    engine: i32,
    multiplier: f64,
) -> i32 {
    guard(|| {
        let jb = out(job, "job")?;
        let mut st = BitmacGemmStats::default();
        let bias = jb.bias.as_ref().map_or(std::ptr::null(), |b| b.as_ptr());
        let hw = BitmacHw { cfg: jb.cfg.clone(), what: String::new() };
        let mut res = vec![0i64; jb.m * jb.n];
        let rc = bitmac_gemm(
            &hw,
            jb.a.as_ptr(),
            jb.m,
            jb.k,
            jb.w.as_ptr(),
            jb.n,
            bias,
            stage,
            engine,
            multiplier,
            res.as_mut_ptr(),
            &mut st,
        );
        if rc != BITMAC_OK {
            let msg = LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned());
            return Err(Fail(rc, msg));
        }
        jb.out = res;
        jb.stats = st;
        Ok(())
    })
}

/// Output `[i][j]` of the last run.
#[no_mangle]
pub unsafe extern "C" fn bitmac_job_get(job: *const BitmacJob, i: u32, j: u32, value: *mut i64) -> i32 {
    guard(|| {
        let jb = job.as_ref().ok_or_else(|| null("job"))?;
        let ix = index("out", i, j, jb.m, jb.n)?;
        *out(value, "value")? = jb.out[ix];
        Ok(())
    })
}

/// The statistics of the last run.
#[no_mangle]
pub unsafe extern "C" fn bitmac_job_stats(job: *const BitmacJob, stats: *mut BitmacGemmStats) -> i32 {
    guard(|| {
        let jb = job.as_ref().ok_or_else(|| null("job"))?;
        *out(stats, "stats")? = jb.stats;
        Ok(())
    })
}

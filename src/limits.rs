//! Work limits: every subcommand estimates its work (cycles, MACs, edges,
//! elements, bytes) from its validated inputs before starting, and refuses,
//! with a one-line error naming the field, anything past a documented limit
//! (`docs/limits.md` is the normative list). Where a real user could want
//! more, the subcommand has a `--max-work N` override.
//!
//! Estimates are computed in `u128` from numbers that were already
//! range-checked, so they cannot overflow.

use crate::error::{Error, Result};

/// `gemm`: default bound on the work of one GEMM, in MAC-steps (the fast
/// engine: `M*K*N` MACs; the cycle engine: cycles x rows x cols PE-steps,
/// which counts the idle PEs of fill, drain and partial tiles too).
pub const GEMM_MAX_WORK: u64 = 1 << 34;
/// `gemm`: the output `M x N` may hold at most this many elements (the
/// result buffers take about 48 bytes per element).
pub const GEMM_MAX_OUT_ELEMS: u64 = 1 << 26;
/// Bound on an estimated per-cycle trace (`gemm --trace`), in bytes.
pub const MAX_TRACE_BYTES: u64 = 1 << 30;
/// `gen`/`check` (gemm, conv2d, model_layer kinds): bound on the
/// cycle-engine work of one case in PE-steps (cycles x rows x cols).
pub const GEN_MAX_PE_STEPS: u64 = 1 << 26;
/// `gen`/`check`: bound on a case's estimated array trace, in bytes (the
/// trace is always built: `acc.stream` is derived from it).
pub const GEN_MAX_TRACE_BYTES: u64 = 1 << 28;
/// `scalesim`: default bound on the folds of a whole topology (the cycle
/// models step once per fold).
pub const SCALESIM_MAX_FOLDS: u64 = 1 << 24;

/// Upper bound on the bytes of the cycle engine's trace (`docs/datapath.md`
/// section 7) for `cycles` cycles on a `rows x cols` array: a header, and
/// per cycle at most 40 bytes of cycle/tile/kind, 8 per row (`in=`), 48 per
/// column (`wb=` and `top=`) and 8 per PE and buffer adder (`ovf=`).
pub fn trace_bytes_bound(cycles: u64, rows: usize, cols: usize) -> u128 {
    let (r, c) = (rows as u128, cols as u128);
    256 + cycles as u128 * (40 + 8 * r + 48 * c + 8 * (r + 1) * c)
}

/// Refuse `estimate > limit`: `FIELD: ESTIMATE UNIT is too much work
/// (allowed: at most LIMIT UNIT[; HINT])`.
pub fn check(field: &str, estimate: u128, limit: u64, unit: &str, hint: Option<&str>) -> Result<()> {
    if estimate <= limit as u128 {
        return Ok(());
    }
    let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
    Err(Error::input(format!(
        "{field}: {estimate} {unit} is more than the limit (allowed: at most {limit} {unit}{hint})"
    )))
}

/// Upper bound on the rising edges (both domains) of moving `words` words
/// across one of the datapath's async FIFOs (`hw.cdc`) with always-on
/// enables: each word takes at most `ceil(Pmax/Pmin) + 1` edges of each
/// domain once the pipeline is full, plus the fill (`depth + 2*sync + 16`
/// words' worth).
pub fn cdc_edges_bound(cdc: &crate::hw::CdcConfig, array_period_ps: u64, words: u128) -> u128 {
    let (p, q) = (cdc.host_period_ps.max(array_period_ps), cdc.host_period_ps.min(array_period_ps).max(1));
    let ratio = p.div_ceil(q) as u128;
    2 * (words + cdc.fifo_depth as u128 + 2 * cdc.sync_stages as u128 + 16) * (ratio + 1)
}

/// The work of one `M x K` by `K x N` GEMM on `hw` with `engine`, in
/// MAC-steps: `M*K*N` (fast) or cycles x rows x cols (cycle), plus, with a
/// `cdc` section, the FIFO edges of moving A in and the results out.
pub fn gemm_work(
    hw: &crate::hw::HwConfig,
    engine: crate::array::Engine,
    m: usize,
    k: usize,
    n: usize,
) -> u128 {
    let (r, c) = (hw.rows(), hw.cols());
    let compute = match engine {
        crate::array::Engine::Fast => m as u128 * k as u128 * n as u128,
        crate::array::Engine::Cycle => {
            crate::array::compute_cycles(hw.dataflow(), r, c, m, k, n) as u128 * r as u128 * c as u128
        }
    };
    let cdc = hw.cdc().map_or(0, |cd| {
        let p = hw.clock_period_ps();
        // Input crossing, output crossing back to back (the comparison), and
        // the overlapped output crossing, which also spans the compute
        // (docs/cdc.md §18).
        let cycles = crate::array::compute_cycles(hw.dataflow(), r, c, m, k, n) as u128;
        let ratio = cd.host_period_ps.max(p).div_ceil(cd.host_period_ps.min(p).max(1)) as u128;
        cdc_edges_bound(&cd, p, m as u128 * k as u128)
            + 2 * cdc_edges_bound(&cd, p, m as u128 * n as u128)
            + 2 * cycles * (ratio + 1)
    });
    compute + cdc
}

/// `bitmac gemm`'s checks before it runs (docs/limits.md): the output size,
/// the work against `max_work` (`--max-work`), and the trace size.
pub fn check_gemm(
    hw: &crate::hw::HwConfig,
    engine: crate::array::Engine,
    (m, k, n): (usize, usize, usize),
    max_work: u64,
    trace: bool,
) -> Result<()> {
    check(
        &format!("output {m}x{n} (A rows x W columns)"),
        m as u128 * n as u128,
        GEMM_MAX_OUT_ELEMS,
        "elements",
        None,
    )?;
    check(
        &format!("GEMM {m}x{k}x{n} on a {}x{} array (engine {})", hw.rows(), hw.cols(), engine.name()),
        gemm_work(hw, engine, m, k, n),
        max_work,
        "MAC-steps",
        Some("raise the limit with --max-work N"),
    )?;
    if trace {
        let cycles = crate::array::compute_cycles(hw.dataflow(), hw.rows(), hw.cols(), m, k, n);
        check(
            "--trace",
            trace_bytes_bound(cycles, hw.rows(), hw.cols()),
            MAX_TRACE_BYTES,
            "bytes (estimated)",
            None,
        )?;
    }
    Ok(())
}

/// `dse`: default bound on a synthetic-workload sweep's MACs (points x
/// MACs per point).
pub const DSE_MAX_WORK: u64 = 1 << 40;

/// `run`: default bound on the datapath work of a whole run, in MAC-steps
/// (the sum of [`gemm_work`] over every layer of every batch).
pub const RUN_MAX_WORK: u64 = 1 << 36;
/// `run`: default bound on the memory the per-sample results take
/// ([`run_memory`]), in bytes.
pub const RUN_MAX_MEM_BYTES: u64 = 1 << 33;

/// The work of running `samples` samples of `model` in batches of `batch`
/// on `hw` ([`gemm_work`] of each layer's GEMM, `M` scaled by the batch).
pub fn run_work(
    model: &crate::model::Model,
    hw: &crate::hw::HwConfig,
    engine: crate::array::Engine,
    samples: usize,
    batch: usize,
) -> u128 {
    let batch = batch.clamp(1, samples.max(1));
    let (full, rest) = (samples / batch, samples % batch);
    let per = |b: usize| -> u128 {
        model
            .layers()
            .iter()
            .map(|l| {
                let (m, k, n) = l.gemm_dims();
                gemm_work(hw, engine, m.saturating_mul(b), k, n)
            })
            .sum()
    };
    full as u128 * per(batch) + if rest > 0 { per(rest) } else { 0 }
}

/// The memory `run` keeps for `samples` samples: 40 bytes (an `i64` code
/// and two `i128` accumulator values) per layer output element per sample.
pub fn run_memory(model: &crate::model::Model, samples: usize) -> u128 {
    let per: u128 = model.layers().iter().map(|l| l.output_len() as u128).sum();
    40 * per * samples as u128
}

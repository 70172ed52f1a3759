//! One `bitmac gemm` as a library call: the semantics `bitmac gemm`, the
//! Python package (`python/`) and the C ABI (`capi/`) share, so the three
//! give the same bytes and the same one-line errors (`docs/datapath.md` §9,
//! `docs/abi.md`).
//!
//! - the requantization multiplier comes from the real multiplier `M` or
//!   from the three LSQ step sizes (`requant::step_multiplier`), never both;
//!   [`Stage::Out`] needs one, [`Stage::Acc`] needs neither;
//! - with a `cdc` section the array runs in its own clock domain
//!   (`sim::gemm_cdc`), else in one domain (`layers::run_gemm_chunked`);
//! - [`Stage::Acc`] returns `acc * 2^d` (before bias) as int64 values and
//!   names int32 as the output dtype when `P + d <= 32`; [`Stage::Out`]
//!   returns the requantized codes, dtype int8 when the output format fits
//!   (signed <= 8 bits, unsigned <= 7), else int16 or int32.

use crate::array::{Engine, Matrix, Stats};
use crate::error::{Error, Result};
use crate::hw::HwConfig;
use crate::npy::Dtype;
use crate::requant::{quantize_multiplier, step_multiplier, Multiplier, Requantizer};
use std::fmt;
use std::str::FromStr;

/// Which values a GEMM returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stage {
    /// The requantized output codes.
    #[default]
    Out,
    /// The accumulator values `acc * 2^d`, before bias and requantization.
    Acc,
}

impl Stage {
    /// `out` or `acc`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Out => "out",
            Stage::Acc => "acc",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Stage {
    type Err = Error;
    fn from_str(s: &str) -> Result<Stage> {
        match s {
            "out" => Ok(Stage::Out),
            "acc" => Ok(Stage::Acc),
            _ => Err(Error::field("--stage", format!("{s:?}"), "out, acc")),
        }
    }
}

/// The requant multiplier of a bare GEMM: the real multiplier `m`
/// (quantized as TFLite does), or the three step sizes `[s_w, s_a, s_out]`
/// (all three or none), or neither (`None`).
pub fn multiplier(m: Option<f64>, scales: [Option<f32>; 3]) -> Result<Option<Multiplier>> {
    let n_scales = scales.iter().filter(|s| s.is_some()).count();
    match (m, scales) {
        (Some(_), _) if n_scales > 0 => {
            Err(Error::input("give either --multiplier or --scale-w/--scale-a/--scale-out, not both"))
        }
        (Some(m), _) => Ok(Some(quantize_multiplier(m)?)),
        (None, [Some(sw), Some(sa), Some(so)]) => Ok(Some(step_multiplier(sw, sa, so)?)),
        (None, _) if n_scales == 0 => Ok(None),
        (None, _) => Err(Error::input("--scale-w, --scale-a and --scale-out must be given together")),
    }
}

/// Bias values (e.g. read from a `.npy`) checked to fit int32; `what`
/// names the source in the error (`B.npy: bias[3]: ...`).
pub fn bias_i32(data: &[i64], what: &str) -> Result<Vec<i32>> {
    let mut v = Vec::with_capacity(data.len());
    for (i, &x) in data.iter().enumerate() {
        let x = i32::try_from(x)
            .map_err(|_| Error::field(format!("{what}[{i}]"), x, "-2147483648..=2147483647 (int32)"))?;
        v.push(x);
    }
    Ok(v)
}

/// One GEMM request. `a` is M x K, `w` is K x N (checked against the
/// config's operand formats by [`Matrix::from_i64`]).
#[derive(Clone, Copy, Debug)]
pub struct GemmRequest<'a> {
    pub a: &'a Matrix,
    pub w: &'a Matrix,
    /// N int32 values added before requantization.
    pub bias: Option<&'a [i32]>,
    pub stage: Stage,
    pub engine: Engine,
    /// Required for [`Stage::Out`].
    pub multiplier: Option<Multiplier>,
    /// Produce the per-cycle trace (`docs/datapath.md` §7; cycle engine only).
    pub trace: bool,
    /// Refuse a GEMM whose estimated work exceeds this many MAC-steps
    /// (`docs/limits.md`; default [`crate::limits::GEMM_MAX_WORK`]).
    pub max_work: u64,
}

/// What a GEMM returns: its values and the [`GemmSummary`] that
/// [`gemm_stream`] returns (shape, dtype, statistics, trace, CDC, energy).
#[derive(Clone, Debug)]
pub struct GemmOutput {
    /// Row-major M x N: the codes ([`Stage::Out`]) or `acc * 2^d` ([`Stage::Acc`]).
    pub values: Vec<i64>,
    /// Everything else.
    pub summary: GemmSummary,
}

/// Everything a GEMM returns except its values: what [`gemm_stream`]
/// returns after it has delivered the values.
#[derive(Clone, Debug)]
pub struct GemmSummary {
    /// Output rows M.
    pub m: usize,
    /// Output columns N.
    pub n: usize,
    /// The `.npy` dtype `bitmac gemm` writes the values as.
    pub dtype: Dtype,
    /// Statistics (`docs/datapath.md` §6).
    pub stats: Stats,
    /// The per-cycle trace text, if asked for.
    pub trace: Option<String>,
    /// The clock-domain summary line(s), with a `cdc` section.
    pub cdc_summary: Option<String>,
    /// The clock-domain totals, with a `cdc` section (docs/cdc.md §18).
    pub cdc: Option<crate::sim::CdcTotals>,
    /// The GEMM's energy (`docs/energy.md`), zero products counted from
    /// the operands.
    pub energy: crate::energy::Breakdown,
}

/// The statistics JSON of a GEMM, as `bitmac gemm --stats` writes it and
/// the bindings return it: [`Stats::to_json`] (fields in the order of
/// `docs/datapath.md` §6) and, with a `cdc` section, a `cdc` object
/// (`docs/cdc.md` §18) after them.
pub fn stats_json(stats: &Stats, cdc: Option<&crate::sim::CdcTotals>) -> Result<String> {
    let text = stats.to_json();
    let Some(c) = cdc else { return Ok(text) };
    // Spliced after the last field, so the statistics keep their documented
    // order (a serde_json::Value would sort them).
    let cdc = serde_json::to_string_pretty(&c.to_json())
        .map_err(|e| crate::error::Error::internal(format!("stats JSON: {e}")))?;
    let body = text.trim_end().strip_suffix('}').map(str::trim_end).unwrap_or(&text);
    Ok(format!("{body},\n  \"cdc\": {}\n}}\n", cdc.replace('\n', "\n  ")))
}

/// The `.npy` dtype of a GEMM's values: for [`Stage::Acc`] int32 when
/// `P + d <= 32`, else int64; for [`Stage::Out`] int8 when the output format
/// fits (signed <= 8 bits, unsigned <= 7), else int16 or int32.
pub fn out_dtype(hw: &HwConfig, stage: Stage) -> Dtype {
    match stage {
        Stage::Acc if hw.acc_bits() + hw.psum().drop_bits > 32 => Dtype::I64,
        Stage::Acc => Dtype::I32,
        Stage::Out => {
            let f = hw.requant().out;
            match f.width() + u32::from(!f.is_signed()) {
                0..=8 => Dtype::I8,
                9..=16 => Dtype::I16,
                _ => Dtype::I32,
            }
        }
    }
}

/// Outputs per chunk of [`gemm_stream`] (about 2 MB of `i64` per buffer):
/// large enough that per-chunk costs vanish, small enough that a
/// 1,000,000-row GEMM never holds its output whole.
const CHUNK_OUTPUTS: usize = 1 << 18;

/// Run one GEMM through the array with `hw`'s requant section (see the
/// module doc for the rules) and return it whole. Errors are one line, as
/// in `bitmac gemm`. This is [`gemm_stream`] collecting the chunks.
pub fn gemm(hw: &HwConfig, req: &GemmRequest<'_>) -> Result<GemmOutput> {
    let mut values = Vec::new();
    let s = gemm_stream(hw, req, |_, v| {
        values.extend_from_slice(v);
        Ok(())
    })?;
    Ok(GemmOutput { values, summary: s })
}

/// The one GEMM entry point (`bitmac gemm`, Python, C): runs the GEMM and
/// hands its values to `sink` as consecutive whole-row chunks `(row0,
/// values)` (row-major, `N` per row, in row order), so the caller can
/// stream them out; the values, their order and the statistics are the same
/// for any chunking (`layers::run_gemm_chunked`). With a `cdc` section the
/// GEMM runs whole and is delivered in one chunk. On an error (in the GEMM or
/// from `sink`) it stops and returns the error.
pub fn gemm_stream(
    hw: &HwConfig,
    req: &GemmRequest<'_>,
    mut sink: impl FnMut(usize, &[i64]) -> Result<()>,
) -> Result<GemmSummary> {
    if req.trace && req.engine != Engine::Cycle {
        return Err(Error::input("--trace needs --engine cycle"));
    }
    let mult =
        match (req.multiplier, req.stage) {
            (Some(m), _) => m,
            // The accumulators do not depend on the multiplier; any valid one.
            (None, Stage::Acc) => quantize_multiplier(1.0)?,
            (None, Stage::Out) => return Err(Error::input(
                "--stage out needs the requant multiplier: --multiplier M or --scale-w/--scale-a/--scale-out",
            )),
        };
    let rq = hw.requant();
    let requant = Requantizer::new(mult, rq.rounding, rq.out, rq.relu)?;
    // Bounded work (docs/limits.md): estimated from the validated shapes
    // before anything runs.
    crate::limits::check_gemm(
        hw,
        req.engine,
        (req.a.rows(), req.a.cols(), req.w.cols()),
        req.max_work,
        req.trace,
    )?;
    let stage_acc = req.stage == Stage::Acc;
    let (m, k, n) = (req.a.rows(), req.a.cols(), req.w.cols());
    let drop_bits = crate::array::ArrayConfig::from_hw(hw)?.drop_bits();
    let dtype = out_dtype(hw, req.stage);
    // One chunk's values: the codes, or `acc * 2^d` checked to fit int64.
    let mut vals = Vec::new();
    let mut deliver = |row0: usize, out: &[i64], acc: &[i64]| -> Result<()> {
        if !stage_acc {
            return sink(row0, out);
        }
        if drop_bits == 0 {
            // acc * 2^0 is the stored value itself (an i64 already).
            return sink(row0, acc);
        }
        vals.clear();
        vals.reserve(acc.len());
        for (i, &a) in acc.iter().enumerate() {
            let v = (a as i128) << drop_bits;
            vals.push(i64::try_from(v).map_err(|_| {
                let i = row0 * n + i;
                Error::field(format!("accumulator value [{},{}]", i / n, i % n), v, "int64 (.npy output)")
            })?);
        }
        sink(row0, &vals)
    };
    let mut trace = req.trace.then(String::new);
    let (stats, cdc_summary, cdc) = if let Some(cc) = hw.cdc() {
        // The array in its own clock domain: A crosses in, results cross out.
        let (r, c) = crate::sim::gemm_cdc(
            hw,
            req.a,
            req.w,
            req.bias,
            &requant,
            req.engine,
            trace.as_mut(),
            stage_acc,
        )?;
        deliver(0, &r.out, &r.acc)?;
        (r.stats, Some(c.summary(&cc, hw.clock_period_ps())), Some(c))
    } else {
        let chunk_rows = (CHUNK_OUTPUTS / n.max(1)).max(1);
        let stats = crate::layers::run_gemm_chunked(
            hw,
            req.a,
            req.w,
            req.bias,
            &requant,
            req.engine,
            trace.as_mut(),
            chunk_rows,
            |c| deliver(c.row0, c.out, c.acc),
        )?;
        (stats, None, None)
    };
    let zeros = crate::energy::zero_products(req.a, req.w);
    let energy = crate::energy::for_hw(hw, m as u64, k as u64, n as u64, Some(zeros), !stage_acc);
    Ok(GemmSummary { m, n, dtype, stats, trace, cdc_summary, cdc, energy })
}

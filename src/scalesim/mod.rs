//! SCALE-Sim v3 compatibility: read SCALE-Sim's config and topology files,
//! map each layer onto the array as a GEMM, time it with a pluggable cycle
//! model, and write SCALE-Sim's `COMPUTE_REPORT.csv`.
//!
//! - [`ScaleSimConfig`] reads the `.cfg` (array size, dataflow, SRAM sizes).
//! - [`Topology`] reads the topology CSV in conv or GEMM form (reusable by
//!   other commands, e.g. design-space sweeps).
//! - [`GemmMapping`] is one layer on one array: the input to any timing model.
//! - [`run_topology`] runs every layer through a timing model;
//!   [`scalesim_timing`] is SCALE-Sim v3's own model, reproduced exactly
//!   (see `docs/scalesim.md` for the formulas and the quirks).
//! - [`compute_report_csv`] renders SCALE-Sim's report byte for byte
//!   (including Python's float formatting).

pub mod config;
pub mod memory;
pub mod timing;
pub mod topology;

pub use config::{BandwidthMode, ScaleSimConfig, UserBandwidth};
pub use topology::{ConvShape, GemmDims, InputType, Layer, LayerShape, Topology};

use crate::error::{Error, Result};
use std::fmt;

/// A systolic dataflow, named as SCALE-Sim names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataflow {
    /// Output stationary: each PE keeps one output; operands stream through.
    Os,
    /// Weight stationary: each PE holds one filter weight.
    Ws,
    /// Input stationary: each PE holds one ifmap (window) element.
    Is,
}

impl Dataflow {
    /// `os`, `ws` or `is`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dataflow::Os => "os",
            Dataflow::Ws => "ws",
            Dataflow::Is => "is",
        }
    }
}

impl fmt::Display for Dataflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One layer mapped onto one array: the GEMM (M x K) times (K x N) on an
/// R x C array with a dataflow. This is everything a timing model sees.
///
/// SCALE-Sim's names for the dimensions: M = ofmap pixels per filter
/// (`ofmap_h * ofmap_w`), K = window size (`filter_h * filter_w * channels`),
/// N = number of filters. For a GEMM-form topology row `M, N, K` they are the
/// row's M, N and K.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmMapping {
    pub dataflow: Dataflow,
    /// Array rows R (`ArrayHeight`).
    pub rows: u32,
    /// Array columns C (`ArrayWidth`).
    pub cols: u32,
    pub m: u64,
    pub k: u64,
    pub n: u64,
    /// Distinct ifmap elements the layer reads (<= M * K; fewer for
    /// overlapping windows). Only SCALE-Sim's prefetch model uses it.
    pub ifmap_elems_read: u64,
}

impl GemmMapping {
    /// Map `layer` onto an R x C array with `dataflow`.
    pub fn new(layer: &Layer, dataflow: Dataflow, rows: u32, cols: u32) -> GemmMapping {
        let d = layer.gemm_dims();
        GemmMapping {
            dataflow,
            rows,
            cols,
            m: d.m,
            k: d.k,
            n: d.n,
            ifmap_elems_read: layer.ifmap_elems_read(),
        }
    }

    /// SCALE-Sim's spatio-temporal dimensions (Sr, Sc, T): what is spread
    /// over the array rows, over its columns, and over time.
    /// OS: (M, N, K); WS: (K, N, M); IS: (K, M, N).
    pub fn spatio_temporal(&self) -> (u64, u64, u64) {
        match self.dataflow {
            Dataflow::Os => (self.m, self.n, self.k),
            Dataflow::Ws => (self.k, self.n, self.m),
            Dataflow::Is => (self.k, self.m, self.n),
        }
    }

    /// Multiply-accumulates: M * N * K.
    pub fn macs(&self) -> u64 {
        self.m * self.n * self.k
    }
}

/// The numbers of one row of SCALE-Sim's `COMPUTE_REPORT.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerTiming {
    /// "Total Cycles (incl. prefetch)": from the first DRAM prefetch to the
    /// last ofmap DRAM write.
    pub total_cycles_incl_prefetch: u64,
    /// "Total Cycles": compute cycles plus stalls.
    pub total_cycles: u64,
    /// "Stall Cycles".
    pub stall_cycles: u64,
    /// "Overall Util %": MACs * 100 / (total cycles * R * C).
    pub overall_util_pct: f64,
    /// "Mapping Efficiency %": mean over folds of used PEs / (R * C), x100.
    pub mapping_efficiency_pct: f64,
    /// "Compute Util %": mean over folds of MACs / (R * C * fold cycles), x100.
    pub compute_util_pct: f64,
}

impl LayerTiming {
    /// A timing from a model that gives only a total cycle count and no
    /// memory stalls (e.g. bitmac's own array timing): incl.-prefetch =
    /// total, no stalls, overall and compute utilization both MACs * 100 /
    /// (cycles * R * C), mapping efficiency as SCALE-Sim computes it (it is
    /// a property of the fold mapping, not of the timing).
    pub fn from_cycles(m: &GemmMapping, total_cycles: u64) -> LayerTiming {
        let util = timing::overall_util(m, total_cycles);
        LayerTiming {
            total_cycles_incl_prefetch: total_cycles,
            total_cycles,
            stall_cycles: 0,
            overall_util_pct: util,
            mapping_efficiency_pct: timing::fold_averages(m).0,
            compute_util_pct: util,
        }
    }
}

/// One reported layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    pub name: String,
    pub mapping: GemmMapping,
    pub timing: LayerTiming,
}

/// The timing models `bitmac scalesim --timing` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TimingModel {
    /// bitmac's own cycle-exact array timing.
    #[default]
    Bitmac,
    /// SCALE-Sim v3's timing, reproduced exactly.
    Scalesim,
}

/// SCALE-Sim v3's timing model for `cfg` in CALC mode (its SRAM sizes
/// matter for the incl.-prefetch column and for write-buffer stalls): a
/// closed form per layer, held equal to the memory model by tests. In USER
/// mode the timing needs the address streams, so this closure returns an
/// error; use [`scalesim_reports`].
pub fn scalesim_timing(cfg: &ScaleSimConfig) -> impl Fn(&GemmMapping) -> Result<LayerTiming> + '_ {
    move |m| timing::layer_timing(cfg, m)
}

/// bitmac's own array timing for one mapped layer (`--timing bitmac`).
///
/// bitmac's own cycle-exact array timing ([`crate::array::compute_cycles`],
/// `docs/datapath.md` "Timing"), the same count the cycle-level engine
/// produces by stepping every PE.
pub fn bitmac_timing(m: &GemmMapping) -> Result<LayerTiming> {
    let df = match m.dataflow {
        Dataflow::Os => crate::hw::Dataflow::Os,
        Dataflow::Ws => crate::hw::Dataflow::Ws,
        Dataflow::Is => crate::hw::Dataflow::Is,
    };
    let dim = |v: u64, what: &str| {
        usize::try_from(v).map_err(|_| Error::field(format!("layer {what}"), v, "at most usize::MAX"))
    };
    let cycles = crate::array::compute_cycles(
        df,
        m.rows as usize,
        m.cols as usize,
        dim(m.m, "M")?,
        dim(m.k, "K")?,
        dim(m.n, "N")?,
    );
    Ok(LayerTiming::from_cycles(m, cycles))
}

/// The folds of the whole topology on the array of `cfg`: both timing
/// models step once per fold of every layer, so this is the work estimate
/// `bitmac scalesim` checks before it runs (`docs/limits.md`).
pub fn topology_folds(cfg: &ScaleSimConfig, topo: &Topology) -> u128 {
    topo.layers
        .iter()
        .map(|layer| {
            let f = timing::Folds::of(&GemmMapping::new(layer, cfg.dataflow, cfg.rows, cfg.cols));
            f.row_folds as u128 * f.col_folds as u128
        })
        .sum()
}

/// The work of SCALE-Sim's memory model on the whole topology
/// ([`memory::layer_work`] summed): checked against
/// [`crate::limits::SCALESIM_MAX_MEMORY_WORK`] before it runs.
pub fn topology_memory_work(cfg: &ScaleSimConfig, topo: &Topology) -> u128 {
    topo.layers
        .iter()
        .map(|layer| {
            memory::layer_work(cfg, layer, &GemmMapping::new(layer, cfg.dataflow, cfg.rows, cfg.cols))
        })
        .sum()
}

/// Run every layer of `topo` through SCALE-Sim's memory system
/// ([`memory::layer_accesses`]). Errors are prefixed with the layer.
pub fn topology_accesses(cfg: &ScaleSimConfig, topo: &Topology) -> Result<Vec<memory::LayerAccesses>> {
    topo.layers
        .iter()
        .enumerate()
        .map(|(id, layer)| {
            let mapping = GemmMapping::new(layer, cfg.dataflow, cfg.rows, cfg.cols);
            memory::layer_accesses(cfg, layer, &mapping)
                .map_err(|e| e.context(format_args!("layer {id} ({})", layer.name)))
        })
        .collect()
}

/// SCALE-Sim v3's COMPUTE_REPORT rows for `topo` in either bandwidth mode,
/// given the memory system's results `accesses` (from
/// [`topology_accesses`]): in CALC mode the closed-form timing
/// ([`scalesim_timing`], equal to the memory model's), in USER mode the
/// memory model's total and stall cycles ([`memory::LayerAccesses::timing`]).
pub fn scalesim_reports(
    cfg: &ScaleSimConfig,
    topo: &Topology,
    accesses: &[memory::LayerAccesses],
) -> Result<Vec<LayerReport>> {
    match cfg.bandwidth_mode {
        BandwidthMode::Calc => run_topology(cfg, topo, &scalesim_timing(cfg)),
        BandwidthMode::User(_) => {
            if accesses.len() != topo.layers.len() {
                return Err(Error::input(format!(
                    "{} memory-model results for {} layers",
                    accesses.len(),
                    topo.layers.len()
                )));
            }
            Ok(topo
                .layers
                .iter()
                .zip(accesses)
                .map(|(layer, a)| {
                    let mapping = GemmMapping::new(layer, cfg.dataflow, cfg.rows, cfg.cols);
                    LayerReport { name: layer.name.clone(), mapping, timing: a.timing(&mapping) }
                })
                .collect())
        }
    }
}

/// Map every layer of `topo` onto the array of `cfg` and time it with
/// `timing`. Errors from the timing model are prefixed with the layer.
pub fn run_topology(
    cfg: &ScaleSimConfig,
    topo: &Topology,
    timing: &dyn Fn(&GemmMapping) -> Result<LayerTiming>,
) -> Result<Vec<LayerReport>> {
    topo.layers
        .iter()
        .enumerate()
        .map(|(id, layer)| {
            let mapping = GemmMapping::new(layer, cfg.dataflow, cfg.rows, cfg.cols);
            let t = timing(&mapping).map_err(|e| e.context(format_args!("layer {id} ({})", layer.name)))?;
            Ok(LayerReport { name: layer.name.clone(), mapping, timing: t })
        })
        .collect()
}

/// SCALE-Sim v3's `COMPUTE_REPORT.csv` header, verbatim.
pub const COMPUTE_REPORT_HEADER: &str =
    "LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, \
Overall Util %, Mapping Efficiency %, Compute Util %,";

/// Render SCALE-Sim's `COMPUTE_REPORT.csv` (same header, `, ` separators,
/// trailing comma, floats as Python's `str(float)`), so it diffs clean
/// against SCALE-Sim's own file.
pub fn compute_report_csv(reports: &[LayerReport]) -> String {
    let mut s = String::with_capacity(64 * (reports.len() + 1));
    s.push_str(COMPUTE_REPORT_HEADER);
    s.push('\n');
    for (id, r) in reports.iter().enumerate() {
        let t = &r.timing;
        s.push_str(&format!(
            "{id}, {}, {}, {}, {}, {}, {},\n",
            t.total_cycles_incl_prefetch,
            t.total_cycles,
            t.stall_cycles,
            py_float(t.overall_util_pct),
            py_float(t.mapping_efficiency_pct),
            py_float(t.compute_util_pct)
        ));
    }
    s
}

/// One parsed row of a `COMPUTE_REPORT.csv` (SCALE-Sim's or bitmac's).
#[derive(Clone, Debug, PartialEq)]
pub struct ReportRow {
    pub layer_id: u64,
    pub timing: LayerTiming,
}

/// Parse a `COMPUTE_REPORT.csv`; `origin` names it in errors.
pub fn parse_compute_report(text: &str, origin: &str) -> Result<Vec<ReportRow>> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim_end() == COMPUTE_REPORT_HEADER => {}
        _ => return Err(Error::input(format!("{origin}:1: not a SCALE-Sim v3 COMPUTE_REPORT.csv header"))),
    }
    let mut rows = Vec::new();
    for (idx, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let at = |what: &str| Error::input(format!("{origin}:{}: bad {what}", idx + 1));
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 8 || !f[7].is_empty() {
            return Err(at("row (expected 7 fields and a trailing comma)"));
        }
        let int = |i: usize| -> Result<u64> { f[i].parse::<u64>().map_err(|_| at("integer")) };
        let flt = |i: usize| -> Result<f64> { f[i].parse::<f64>().map_err(|_| at("number")) };
        rows.push(ReportRow {
            layer_id: int(0)?,
            timing: LayerTiming {
                total_cycles_incl_prefetch: int(1)?,
                total_cycles: int(2)?,
                stall_cycles: int(3)?,
                overall_util_pct: flt(4)?,
                mapping_efficiency_pct: flt(5)?,
                compute_util_pct: flt(6)?,
            },
        });
    }
    Ok(rows)
}

/// Format a float as Python's `repr`/`str` does: the shortest digits that
/// round-trip, fixed notation for decimal exponents -4..=15 (always with a
/// fractional part, e.g. `100.0`), else `d.ddde+XX`.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde<exp>".
    let sci = format!("{:e}", x.abs());
    let (mant, exp) = sci.split_once('e').expect("LowerExp has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let mut digits: String = mant.chars().filter(|c| *c != '.').collect();
    // When x lies exactly halfway between the two shortest candidates,
    // Python (David Gay's dtoa) picks the even last digit; Rust may not.
    if let Some(even) = tie_to_even(x.abs(), &digits, exp) {
        digits = even;
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    let body = if (-4..16).contains(&exp) {
        if exp >= 0 {
            let e = exp as usize;
            if digits.len() <= e + 1 {
                format!("{digits}{}.0", "0".repeat(e + 1 - digits.len()))
            } else {
                format!("{}.{}", &digits[..e + 1], &digits[e + 1..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        }
    } else {
        let frac = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{}{frac}e{esign}{:02}", &digits[..1], exp.abs())
    };
    format!("{sign}{body}")
}

/// If `x`'s exact decimal value is `floor(digits)` followed by a single 5
/// (a tie between two shortest round-trip candidates), the candidate with
/// the even last digit; None otherwise.
fn tie_to_even(x: f64, digits: &str, exp: i32) -> Option<String> {
    let n = digits.len();
    // Enough digits to write x exactly: its binary fraction has at most
    // 1074 bits, each adding one decimal digit.
    let exact = format!("{:.1100e}", x);
    let (emant, eexp) = exact.split_once('e')?;
    if eexp.parse::<i32>().ok()? != exp {
        return None;
    }
    let e: Vec<u8> = emant.bytes().filter(|b| *b != b'.').collect();
    if e.len() <= n || e[n] != b'5' || e[n + 1..].iter().any(|b| *b != b'0') {
        return None;
    }
    let floor = &e[..n];
    if (floor[n - 1] - b'0').is_multiple_of(2) {
        return String::from_utf8(floor.to_vec()).ok();
    }
    // Odd floor: the even candidate is floor + 1. A floor ending in 9 would
    // carry into a shorter candidate, which the shortest-digits search would
    // already have found; keep Rust's digits then.
    if floor[n - 1] == b'9' {
        return None;
    }
    let mut up = floor.to_vec();
    up[n - 1] += 1;
    String::from_utf8(up).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_float_breaks_exact_ties_to_even_like_python() {
        // Exact binary values halfway between two 16/17-digit candidates, and
        // Python 3.11's repr of each.
        let cases = [
            ("0.61054229736328125", "0.6105422973632812"),
            ("216491324649.359375", "216491324649.35938"),
            ("25623359.7509765625", "25623359.750976562"),
            ("109739465117.203125", "109739465117.20312"),
            ("2394914755.64453125", "2394914755.6445312"),
            ("19430746248.6796875", "19430746248.679688"),
            ("822987084.19921875", "822987084.1992188"),
        ];
        for (exact, want) in cases {
            let x: f64 = exact.parse().unwrap();
            assert_eq!(format!("{x:.60}").trim_end_matches('0'), exact, "input must be exact");
            assert_eq!(py_float(x), want, "{exact}");
        }
    }

    #[test]
    fn py_float_matches_python_repr() {
        // Expected strings are Python 3.11's repr of the same floats.
        let cases: [(f64, &str); 14] = [
            (100.0, "100.0"),
            (78.125, "78.125"),
            (70.92819614711033, "70.92819614711033"),
            (35.714285714285744, "35.714285714285744"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (6.5625, "6.5625"),
            (-2.5, "-2.5"),
        ];
        for (x, want) in cases {
            assert_eq!(py_float(x), want, "{x:?}");
        }
    }

    #[test]
    fn report_round_trips() {
        let m =
            GemmMapping { dataflow: Dataflow::Os, rows: 2, cols: 2, m: 3, k: 4, n: 5, ifmap_elems_read: 12 };
        let t = LayerTiming::from_cycles(&m, 40);
        let csv = compute_report_csv(&[LayerReport { name: "x".into(), mapping: m, timing: t }]);
        let rows = parse_compute_report(&csv, "r").unwrap();
        assert_eq!(rows, vec![ReportRow { layer_id: 0, timing: t }]);
    }
}

//! The hardware configuration of the MAC array: JSON at the boundary
//! ([`HwSpec`], unknown fields rejected), validated once into [`HwConfig`].
//!
//! Every validation error is one line naming the JSON path of the field, the
//! bad value and the allowed range, e.g.
//! `accumulator.bits: 70 is out of range (allowed: 2..=64)`.
//! Normative description of every field: `docs/hw-config.md`; what the
//! fields mean for the arithmetic and the timing: `docs/datapath.md`.

use crate::error::{Error, Result};
use crate::numerics::{IntFormat, OverflowMode, RoundMode, Rounder};
use crate::requant::RequantRounding;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// How GEMM dimensions are mapped onto the array (see `docs/datapath.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dataflow {
    /// Weight stationary: K on rows, N on columns, M streams.
    Ws,
    /// Output stationary: M on rows, N on columns, K streams.
    Os,
    /// Input (activation) stationary: K on rows, M on columns, N streams.
    Is,
}

impl Dataflow {
    /// Every dataflow.
    pub const ALL: [Dataflow; 3] = [Dataflow::Ws, Dataflow::Os, Dataflow::Is];

    /// The JSON/CLI name: `ws`, `os` or `is`.
    pub fn name(self) -> &'static str {
        match self {
            Dataflow::Ws => "ws",
            Dataflow::Os => "os",
            Dataflow::Is => "is",
        }
    }
}

impl fmt::Display for Dataflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataflow {
    type Err = Error;
    fn from_str(s: &str) -> Result<Dataflow> {
        Dataflow::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s)
            .ok_or_else(|| Error::input(format!("dataflow: unknown {s:?} (allowed: ws, os, is)")))
    }
}

/// JSON form of the whole hardware config. Field meanings: `docs/hw-config.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HwSpec {
    pub array: ArraySpec,
    pub weights: OperandSpec,
    pub activations: OperandSpec,
    pub accumulator: AccumulatorSpec,
    #[serde(default)]
    pub psum: PsumSpec,
    pub requant: RequantSpec,
    pub clock: ClockSpec,
    /// Host clock domain and FIFO; parsed and carried, wired up by the CDC
    /// model (not used by the array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdc: Option<CdcSpec>,
    /// SRAM sizes (used by the energy model, `docs/energy.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySpec>,
    /// The energy reference table (`docs/energy.md`); absent: Horowitz 45 nm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy: Option<crate::energy::EnergyTable>,
}

/// `memory`: the three scratchpads' sizes in KiB (SCALE-Sim's defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySpec {
    pub ifmap_sram_kb: u64,
    pub filter_sram_kb: u64,
    pub ofmap_sram_kb: u64,
    /// SRAM banks per scratchpad (needs `sram_bank_bytes`; default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sram_banks: Option<u64>,
    /// Bytes each bank reads per cycle (absent: unlimited SRAM ports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sram_bank_bytes: Option<u64>,
    /// DRAM bytes per array cycle (absent: unlimited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dram_bytes_per_cycle: Option<u64>,
    /// DRAM latency in array cycles (absent: 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dram_latency: Option<u64>,
    /// `ws`: preload the next tile's weights while the current one computes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_double_buffer: Option<bool>,
}

impl Default for MemorySpec {
    fn default() -> MemorySpec {
        MemorySpec {
            ifmap_sram_kb: 256,
            filter_sram_kb: 256,
            ofmap_sram_kb: 128,
            sram_banks: None,
            sram_bank_bytes: None,
            dram_bytes_per_cycle: None,
            dram_latency: None,
            weight_double_buffer: None,
        }
    }
}

/// `array`: shape and dataflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySpec {
    pub rows: u64,
    pub cols: u64,
    pub dataflow: String,
}

/// `weights` / `activations`: the multiplier input format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperandSpec {
    pub bits: u64,
    pub signed: bool,
}

/// `accumulator`: width P (signed) and overflow mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccumulatorSpec {
    pub bits: u64,
    pub overflow: String,
}

/// `psum`: the partial-sum writeback path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PsumSpec {
    /// d: LSBs dropped when a column sum is written back.
    pub drop_bits: u64,
    pub rounding: String,
    /// Rounding-centre offset c, in LSBs of the column sum.
    #[serde(default)]
    pub offset: i64,
}

impl Default for PsumSpec {
    fn default() -> PsumSpec {
        PsumSpec { drop_bits: 0, rounding: "RND".into(), offset: 0 }
    }
}

/// `requant`: rounding scheme, fused ReLU, default output format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequantSpec {
    pub rounding: String,
    #[serde(default)]
    pub relu: bool,
    pub out_bits: u64,
    pub out_signed: bool,
}

/// `clock`: the array clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    pub period_ps: u64,
}

/// `cdc` (optional): host clock domain and the FIFO between it and the array.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcSpec {
    pub host_period_ps: u64,
    pub fifo_depth: u64,
    pub sync_stages: u64,
    /// Read-stage registers in front of each FIFO's read port, 0..=3
    /// (docs/cdc.md §16); absent: 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_stages: Option<u64>,
    /// `"fwft"` (default) or `"registered"` read data (docs/cdc.md §16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data: Option<String>,
    /// Almost-full threshold, 1..=fifo_depth; absent: no flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub almost_full: Option<u64>,
    /// Almost-empty threshold, 0..=fifo_depth-1; absent: no flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub almost_empty: Option<u64>,
    /// Seeded metastability emulation of both datapath FIFOs (docs/cdc.md §6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<CdcMetaSpec>,
    /// Seed of the metastability draws (default 0; docs/cdc.md §18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// `cdc.meta`: the metastability windows (ps) around each synchronizer capture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcMetaSpec {
    pub setup_ps: u64,
    pub hold_ps: u64,
}

/// The validated partial-sum path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsumConfig {
    /// d, in `0..=min(P-1, 32)`.
    pub drop_bits: u32,
    pub rounding: RoundMode,
    pub offset: i64,
}

/// The validated requantization defaults (a layer may override the output
/// format with its own bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequantConfig {
    pub rounding: RequantRounding,
    pub relu: bool,
    pub out: IntFormat,
}

/// The validated CDC section (carried for the CDC model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdcConfig {
    pub host_period_ps: u64,
    /// A power of two in 2..=4096.
    pub fifo_depth: u32,
    /// Synchronizer flops, 2..=8.
    pub sync_stages: u32,
    /// FIFO variant of both datapath FIFOs (read stage, read data, almost
    /// flags), validated against the depth.
    pub variant: crate::cdc::Variant,
    /// Metastability windows (None: off); setup + hold is below both clock
    /// periods.
    pub meta: Option<crate::cdc::Meta>,
    /// Seed of the metastability draws.
    pub seed: u64,
}

/// A validated hardware config. Build it with [`HwConfig::from_spec`] (or a
/// loader); every value is in range, so the array code assumes validity.
#[derive(Clone, Debug, PartialEq)]
pub struct HwConfig {
    rows: usize,
    cols: usize,
    dataflow: Dataflow,
    weights: IntFormat,
    activations: IntFormat,
    acc_bits: u32,
    overflow: OverflowMode,
    psum: PsumConfig,
    requant: RequantConfig,
    clock_period_ps: u64,
    cdc: Option<CdcConfig>,
    memory: crate::memory::MemoryConfig,
    energy: crate::energy::EnergyTable,
    spec: HwSpec,
}

/// The documented range of every numeric field (docs/hw-config.md), the one
/// table both the validation and the JSON type errors use.
const RANGES: [(&str, u64, u64); 14] = [
    ("array.rows", 1, 256),
    ("array.cols", 1, 256),
    ("weights.bits", 2, 16),
    ("activations.bits", 2, 16),
    ("accumulator.bits", 2, 64),
    ("requant.out_bits", 2, 16),
    ("clock.period_ps", 1, 1_000_000_000),
    ("cdc.host_period_ps", 1, 1_000_000_000),
    ("cdc.fifo_depth", 2, 4096),
    ("cdc.sync_stages", 2, 8),
    ("memory.sram_banks", 1, 1024),
    ("memory.sram_bank_bytes", 1, 4096),
    ("memory.dram_bytes_per_cycle", 1, 1 << 20),
    ("memory.dram_latency", 0, 100_000),
];

/// What a field allows, for error messages: the numeric ranges of
/// [`RANGES`], the names of the enum fields, the dependent ranges in words.
fn allowed(path: &str) -> Option<String> {
    if let Some((_, lo, hi)) = RANGES.iter().find(|(f, _, _)| *f == path) {
        return Some(if path == "cdc.fifo_depth" {
            format!("a power of two in {lo}..={hi}")
        } else {
            format!("an integer {lo}..={hi}")
        });
    }
    Some(
        match path {
            "array.dataflow" => "one of ws, os, is",
            "accumulator.overflow" => "one of WRAP, SAT, SAT_ZERO, SAT_SYM",
            "psum.rounding" => {
                "one of TRN, TRN_ZERO, RND, RND_ZERO, RND_MIN_INF, RND_INF, RND_CONV, RND_CONV_ODD"
            }
            "requant.rounding" => "one of double, single",
            "psum.drop_bits" => "an integer 0..=min(accumulator.bits - 1, 32, 65 - accumulator.bits)",
            "psum.offset" => "an integer within the rounding mode's offset range (docs/hw-config.md)",
            "memory.weight_double_buffer" => "true (with array.dataflow ws) or false",
            "weights.signed" | "activations.signed" | "requant.relu" | "requant.out_signed" => {
                "true or false"
            }
            _ => return None,
        }
        .to_string(),
    )
}

fn checked(field: &str, v: u64) -> Result<u64> {
    let (_, lo, hi) = RANGES.iter().find(|(f, _, _)| *f == field).copied().unwrap_or((field, 0, u64::MAX));
    in_range(field, v, lo, hi)
}

fn in_range(field: &str, v: u64, lo: u64, hi: u64) -> Result<u64> {
    if v < lo || v > hi {
        return Err(Error::field(field, v, format!("{lo}..={hi}")));
    }
    Ok(v)
}

fn parse_named<T: FromStr>(field: &str, v: &str, allowed: &str) -> Result<T> {
    v.parse::<T>().map_err(|_| Error::field(field, format!("{v:?}"), allowed))
}

impl HwConfig {
    /// Validate a spec. Errors name the field's JSON path.
    pub fn from_spec(spec: &HwSpec) -> Result<HwConfig> {
        let rows = checked("array.rows", spec.array.rows)? as usize;
        let cols = checked("array.cols", spec.array.cols)? as usize;
        let dataflow: Dataflow = parse_named("array.dataflow", &spec.array.dataflow, "ws, os, is")?;
        let wb = checked("weights.bits", spec.weights.bits)? as u32;
        let ab = checked("activations.bits", spec.activations.bits)? as u32;
        let weights = IntFormat::new(spec.weights.signed, wb)?;
        let activations = IntFormat::new(spec.activations.signed, ab)?;
        let acc_bits = checked("accumulator.bits", spec.accumulator.bits)? as u32;
        let overflow: OverflowMode =
            parse_named("accumulator.overflow", &spec.accumulator.overflow, "WRAP, SAT, SAT_ZERO, SAT_SYM")?;
        // d <= P-1 (something must remain), d <= 32 (exact error sums), and
        // P + d <= 65 (the accumulator value acc * 2^d stays within 65 bits,
        // the requantizer's exact domain).
        let dmax = (acc_bits as u64 - 1).min(32).min(65 - acc_bits as u64);
        let drop_bits = in_range("psum.drop_bits", spec.psum.drop_bits, 0, dmax)? as u32;
        let rounding: RoundMode = parse_named(
            "psum.rounding",
            &spec.psum.rounding,
            "TRN, TRN_ZERO, RND, RND_ZERO, RND_MIN_INF, RND_INF, RND_CONV, RND_CONV_ODD",
        )?;
        let (lo, hi) = rounding.offset_range(drop_bits);
        let off = spec.psum.offset as i128;
        if off < lo || off > hi {
            return Err(Error::field(
                "psum.offset",
                spec.psum.offset,
                format!("{lo}..={hi} for {rounding} dropping {drop_bits} bits"),
            ));
        }
        // Cannot fail after the checks above; kept as the single source of
        // truth for the rounding rules.
        Rounder::new(drop_bits, rounding, spec.psum.offset).map_err(|e| e.context("psum"))?;
        let rq_rounding: RequantRounding =
            parse_named("requant.rounding", &spec.requant.rounding, "double, single")?;
        let ob = checked("requant.out_bits", spec.requant.out_bits)? as u32;
        let out = IntFormat::new(spec.requant.out_signed, ob)?;
        let clock_period_ps = checked("clock.period_ps", spec.clock.period_ps)?;
        let cdc = match &spec.cdc {
            None => None,
            Some(c) => {
                let host_period_ps = checked("cdc.host_period_ps", c.host_period_ps)?;
                let fifo_depth = checked("cdc.fifo_depth", c.fifo_depth)?;
                if !fifo_depth.is_power_of_two() {
                    return Err(Error::field("cdc.fifo_depth", fifo_depth, "a power of two in 2..=4096"));
                }
                let sync_stages = checked("cdc.sync_stages", c.sync_stages)?;
                let read_stages = in_range("cdc.read_stages", c.read_stages.unwrap_or(0), 0, 3)? as u32;
                let fwft = match c.read_data.as_deref() {
                    None | Some("fwft") => true,
                    Some("registered") => false,
                    Some(o) => {
                        return Err(Error::field(
                            "cdc.read_data",
                            format!("{o:?}"),
                            "one of fwft, registered",
                        ))
                    }
                };
                let almost_full = match c.almost_full {
                    None => None,
                    Some(v) => Some(in_range("cdc.almost_full", v, 1, fifo_depth)? as u32),
                };
                let almost_empty = match c.almost_empty {
                    None => None,
                    Some(v) => Some(in_range("cdc.almost_empty", v, 0, fifo_depth - 1)? as u32),
                };
                let meta = match &c.meta {
                    None => None,
                    Some(m) => {
                        // At most one pointer change may fall in one capture's
                        // window (docs/cdc.md §6): setup + hold below the
                        // shorter clock period.
                        let lim = host_period_ps.min(clock_period_ps) - 1;
                        let setup_ps = in_range("cdc.meta.setup_ps", m.setup_ps, 0, lim)?;
                        let hold_ps = in_range("cdc.meta.hold_ps", m.hold_ps, 0, lim - setup_ps)?;
                        Some(crate::cdc::Meta { setup_ps, hold_ps })
                    }
                };
                Some(CdcConfig {
                    host_period_ps,
                    fifo_depth: fifo_depth as u32,
                    sync_stages: sync_stages as u32,
                    variant: crate::cdc::Variant { read_stages, fwft, almost_full, almost_empty },
                    meta,
                    seed: c.seed.unwrap_or(0),
                })
            }
        };
        let mem = spec.memory.clone().unwrap_or_default();
        let kb = |f: &str, v: u64| in_range(&format!("memory.{f}"), v, 1, 1 << 20).map(|v| v * 1024);
        let sram_bytes = [
            kb("ifmap_sram_kb", mem.ifmap_sram_kb)?,
            kb("filter_sram_kb", mem.filter_sram_kb)?,
            kb("ofmap_sram_kb", mem.ofmap_sram_kb)?,
        ];
        let opt = |f: &str, v: Option<u64>| v.map(|v| checked(f, v)).transpose();
        let banks = opt("memory.sram_banks", mem.sram_banks)?;
        let bank_bytes = opt("memory.sram_bank_bytes", mem.sram_bank_bytes)?;
        if let (Some(b), None) = (banks, bank_bytes) {
            return Err(Error::field(
                "memory.sram_banks",
                b,
                "only together with memory.sram_bank_bytes (the bytes per bank per cycle)",
            ));
        }
        let dbuf = mem.weight_double_buffer.unwrap_or(false);
        if dbuf && dataflow != Dataflow::Ws {
            return Err(Error::field(
                "memory.weight_double_buffer",
                "true",
                format!("false for array.dataflow {dataflow} (weight double-buffering is a ws option)"),
            ));
        }
        let memory = crate::memory::MemoryConfig {
            sram_bytes,
            sram_port: bank_bytes.map(|w| (banks.unwrap_or(1), w)),
            dram_bytes_per_cycle: opt("memory.dram_bytes_per_cycle", mem.dram_bytes_per_cycle)?,
            dram_latency: opt("memory.dram_latency", mem.dram_latency)?.unwrap_or(0),
            weight_double_buffer: dbuf,
            ofmap_bits: ob,
            enabled: mem.sram_bank_bytes.is_some()
                || mem.dram_bytes_per_cycle.is_some()
                || mem.dram_latency.is_some()
                || mem.weight_double_buffer.is_some(),
        };
        let energy = spec.energy.clone().unwrap_or_default();
        energy.validate("energy")?;
        Ok(HwConfig {
            memory,
            energy,
            rows,
            cols,
            dataflow,
            weights,
            activations,
            acc_bits,
            overflow,
            psum: PsumConfig { drop_bits, rounding, offset: spec.psum.offset },
            requant: RequantConfig { rounding: rq_rounding, relu: spec.requant.relu, out },
            clock_period_ps,
            cdc,
            spec: spec.clone(),
        })
    }

    /// Parse and validate JSON text; `what` names the source in errors.
    pub fn from_json_str(text: &str, what: &str) -> Result<HwConfig> {
        let spec: HwSpec = crate::error::parse_json(text, what, &allowed)?;
        HwConfig::from_spec(&spec).map_err(|e| e.context(what))
    }

    /// Load a JSON file.
    pub fn load(path: &Path) -> Result<HwConfig> {
        let text = crate::io::read_to_string(path)?;
        HwConfig::from_json_str(&text, &path.display().to_string())
    }

    /// The spec this config was validated from (for editing and re-validating,
    /// e.g. in sweeps, and for writing next to results).
    pub fn spec(&self) -> &HwSpec {
        &self.spec
    }
    /// SRAM sizes in bytes: ifmap, filter, ofmap.
    pub fn sram_bytes(&self) -> [u64; 3] {
        self.memory.sram_bytes
    }
    /// The memory-system timing config (`docs/memory.md`).
    pub fn memory(&self) -> crate::memory::MemoryConfig {
        self.memory
    }
    /// The energy reference table.
    pub fn energy(&self) -> &crate::energy::EnergyTable {
        &self.energy
    }
    /// Array rows R.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Array columns C.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The dataflow.
    pub fn dataflow(&self) -> Dataflow {
        self.dataflow
    }
    /// Weight (multiplier input) format.
    pub fn weights(&self) -> IntFormat {
        self.weights
    }
    /// Activation (multiplier input) format.
    pub fn activations(&self) -> IntFormat {
        self.activations
    }
    /// Accumulator width P (the accumulator is signed).
    pub fn acc_bits(&self) -> u32 {
        self.acc_bits
    }
    /// Accumulator overflow mode, applied at every adder.
    pub fn overflow(&self) -> OverflowMode {
        self.overflow
    }
    /// The partial-sum path.
    pub fn psum(&self) -> PsumConfig {
        self.psum
    }
    /// Requantization defaults.
    pub fn requant(&self) -> RequantConfig {
        self.requant
    }
    /// Array clock period in picoseconds.
    pub fn clock_period_ps(&self) -> u64 {
        self.clock_period_ps
    }
    /// The CDC section, if given.
    pub fn cdc(&self) -> Option<CdcConfig> {
        self.cdc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "array": {"rows": 16, "cols": 16, "dataflow": "ws"},
      "weights": {"bits": 8, "signed": true},
      "activations": {"bits": 8, "signed": true},
      "accumulator": {"bits": 32, "overflow": "WRAP"},
      "psum": {"drop_bits": 0, "rounding": "RND", "offset": 0},
      "requant": {"rounding": "double", "relu": false, "out_bits": 8, "out_signed": true},
      "clock": {"period_ps": 1000}
    }"#;

    #[test]
    fn good_config_parses() {
        let hw = HwConfig::from_json_str(GOOD, "hw").unwrap();
        assert_eq!(hw.rows(), 16);
        assert_eq!(hw.dataflow(), Dataflow::Ws);
        assert_eq!(hw.acc_bits(), 32);
    }

    fn err_of(patch: (&str, &str)) -> String {
        let text = GOOD.replace(patch.0, patch.1);
        HwConfig::from_json_str(&text, "hw").unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let e = err_of((r#""bits": 32"#, r#""bits": 70"#));
        assert!(e.contains("accumulator.bits: 70") && e.contains("2..=64"), "{e}");
        let e = err_of((r#""rows": 16"#, r#""rows": 0"#));
        assert!(e.contains("array.rows: 0") && e.contains("1..=256"), "{e}");
        let e = err_of((r#""ws""#, r#""xs""#));
        assert!(e.contains("array.dataflow"), "{e}");
        let e = err_of((
            r#""drop_bits": 0, "rounding": "RND", "offset": 0"#,
            r#""drop_bits": 3, "rounding": "RND", "offset": 9"#,
        ));
        assert!(e.contains("psum.offset: 9") && e.contains("-4..=3"), "{e}");
        let e = err_of((r#""period_ps": 1000"#, r#""period_ps": 1000, "x": 1"#));
        assert!(e.contains("unknown field"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn memory_timing_fields_are_validated() {
        let with = |mem: &str| {
            err_of((r#""period_ps": 1000}"#, &format!(r#""period_ps": 1000}}, "memory": {mem}"#)))
        };
        let e = with(r#"{"dram_bytes_per_cycle": 0}"#);
        assert!(e.contains("memory.dram_bytes_per_cycle: 0") && e.contains("1..=1048576"), "{e}");
        let e = with(r#"{"dram_latency": 100001}"#);
        assert!(e.contains("memory.dram_latency: 100001"), "{e}");
        let e = with(r#"{"sram_banks": 4}"#);
        assert!(e.contains("memory.sram_banks: 4") && e.contains("sram_bank_bytes"), "{e}");
        let e = with(r#"{"sram_bank_bytes": 0}"#);
        assert!(e.contains("memory.sram_bank_bytes: 0"), "{e}");
        let text = GOOD.replace(r#""ws""#, r#""os""#).replace(
            r#""period_ps": 1000}"#,
            r#""period_ps": 1000}, "memory": {"weight_double_buffer": true}"#,
        );
        let e = HwConfig::from_json_str(&text, "hw").unwrap_err().to_string();
        assert!(e.contains("memory.weight_double_buffer") && e.contains("ws"), "{e}");
        // Absent timing fields: the model is off; any present one turns it on.
        assert!(!HwConfig::from_json_str(GOOD, "hw").unwrap().memory().enabled);
        let text =
            GOOD.replace(r#""period_ps": 1000}"#, r#""period_ps": 1000}, "memory": {"dram_latency": 0}"#);
        let hw = HwConfig::from_json_str(&text, "hw").unwrap();
        assert!(hw.memory().enabled);
        // The spec round-trips without the absent fields.
        let json = serde_json::to_string(hw.spec()).unwrap();
        assert!(json.contains(r#""dram_latency":0"#) && !json.contains("sram_banks"), "{json}");
    }
}

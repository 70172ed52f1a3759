//! The hardware parameters a sweep point sets, and the table of sweepable
//! parameters (dotted paths) with their allowed values.
//!
//! A point's configuration is a JSON object (the base config, a
//! `models/hw/*.json` preset, with the point's overrides applied at dotted
//! paths), deserialized into the datapath's [`HwSpec`]
//! (`deny_unknown_fields`) and validated into [`HwConfig`]. Range checks of a single
//! field live in [`PARAMS`] and are applied to the base and to every value a
//! spec lists, so a bad value is a spec error; checks that involve several
//! fields (a centre offset outside the range its mode and dropped bits allow,
//! dropped bits not below the accumulator width) are combination checks done
//! per point in [`Hw::from_value`], and make that point `skipped`.

use crate::error::{json_error, Error, Result};
use crate::hw::{CdcConfig, HwConfig, HwSpec};
use serde_json::Value;

/// How a parameter's values are constrained (a single-field check).
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// An integer in `lo..=hi`.
    Int(i64, i64),
    /// A power of two in `lo..=hi`.
    Pow2(i64, i64),
    /// A finite number in `lo..=hi`.
    Float(f64, f64),
    /// `true` or `false`.
    Bool,
    /// One of these strings.
    Enum(&'static [&'static str]),
}

impl Kind {
    /// The allowed values, as printed in errors.
    pub fn allowed(&self) -> String {
        match self {
            Kind::Int(lo, hi) => format!("an integer in {lo}..={hi}"),
            Kind::Pow2(lo, hi) => format!("a power of two in {lo}..={hi}"),
            Kind::Float(lo, hi) => format!("a number in {lo}..={hi}"),
            Kind::Bool => "true or false".into(),
            Kind::Enum(v) => v.join(", "),
        }
    }

    /// Check one JSON value; `field` names it in the error.
    pub fn check(&self, field: &str, v: &Value) -> Result<()> {
        let ok = match self {
            Kind::Int(lo, hi) => v.as_i64().is_some_and(|x| (*lo..=*hi).contains(&x)),
            Kind::Pow2(lo, hi) => {
                v.as_i64().is_some_and(|x| (*lo..=*hi).contains(&x) && x > 0 && (x & (x - 1)) == 0)
            }
            Kind::Float(lo, hi) => v.as_f64().is_some_and(|x| x.is_finite() && x >= *lo && x <= *hi),
            Kind::Bool => v.is_boolean(),
            Kind::Enum(names) => v.as_str().is_some_and(|s| names.contains(&s)),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::field(field, v, self.allowed()))
        }
    }
}

const ROUND_NAMES: &[&str] =
    &["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV", "RND_CONV_ODD"];
const OVF_NAMES: &[&str] = &["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"];

/// Every sweepable parameter: its dotted path in the hardware config
/// (`docs/hw-config.md`) and its single-field range (the same ranges
/// [`HwConfig::from_spec`] enforces; ranges that depend on other fields,
/// such as `psum.offset` and `psum.drop_bits`, are checked per point).
/// Sorted by path.
pub const PARAMS: &[(&str, Kind)] = &[
    ("accumulator.bits", Kind::Int(2, 64)),
    ("accumulator.overflow", Kind::Enum(OVF_NAMES)),
    ("activations.bits", Kind::Int(2, 16)),
    ("activations.signed", Kind::Bool),
    ("array.cols", Kind::Int(1, 256)),
    ("array.dataflow", Kind::Enum(&["ws", "os", "is"])),
    ("array.rows", Kind::Int(1, 256)),
    ("cdc.fifo_depth", Kind::Pow2(2, 4096)),
    ("cdc.host_period_ps", Kind::Int(1, 1_000_000_000)),
    ("cdc.sync_stages", Kind::Int(2, 8)),
    ("clock.period_ps", Kind::Int(1, 1_000_000_000)),
    ("memory.dram_bytes_per_cycle", Kind::Int(1, 1 << 20)),
    ("memory.dram_latency", Kind::Int(0, 100_000)),
    ("memory.filter_sram_kb", Kind::Int(1, 1 << 20)),
    ("memory.ifmap_sram_kb", Kind::Int(1, 1 << 20)),
    ("memory.ofmap_sram_kb", Kind::Int(1, 1 << 20)),
    ("memory.sram_bank_bytes", Kind::Int(1, 4096)),
    ("memory.sram_banks", Kind::Int(1, 1024)),
    ("memory.weight_double_buffer", Kind::Bool),
    ("psum.drop_bits", Kind::Int(0, 32)),
    ("psum.offset", Kind::Int(-(1i64 << 32), 1i64 << 32)),
    ("psum.rounding", Kind::Enum(ROUND_NAMES)),
    ("requant.out_bits", Kind::Int(2, 16)),
    ("requant.out_signed", Kind::Bool),
    ("requant.relu", Kind::Bool),
    ("requant.rounding", Kind::Enum(&["double", "single"])),
    ("weights.bits", Kind::Int(2, 16)),
    ("weights.signed", Kind::Bool),
];

/// The single-field kind of a dotted path, or an error listing the known
/// paths.
pub fn param_kind(path: &str, field: &str) -> Result<Kind> {
    PARAMS.iter().find(|(p, _)| *p == path).map(|(_, k)| *k).ok_or_else(|| {
        let known: Vec<&str> = PARAMS.iter().map(|(p, _)| *p).collect();
        Error::input(format!("{field}: unknown parameter {path:?} (allowed: {})", known.join(", ")))
    })
}

/// Read the value at a dotted path of a JSON object.
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, key| cur.get(key))
}

/// Set the value at a dotted path of a JSON object (the path's section must
/// exist; a missing last field is added, for the optional fields such as
/// `memory.dram_bytes_per_cycle` that have no base value).
pub fn set_path(v: &mut Value, path: &str, new: Value) -> Result<()> {
    let missing = || Error::input(format!("base config has no field {path:?}"));
    let (parent, last) = path.rsplit_once('.').unwrap_or(("", path));
    let mut cur = v;
    if !parent.is_empty() {
        for key in parent.split('.') {
            cur = cur.get_mut(key).ok_or_else(missing)?;
        }
    }
    let obj = cur.as_object_mut().ok_or_else(missing)?;
    obj.insert(last.to_string(), new);
    Ok(())
}

/// Complete a base configuration for sweeping: a missing `psum` section
/// becomes the hardware default (`drop_bits` 0, `RND`, offset 0) and a
/// missing `cdc` section becomes `{"host_period_ps": clock.period_ps,
/// "fifo_depth": 8, "sync_stages": 2}`, and a missing `memory` section
/// becomes SCALE-Sim's default sizes, so every parameter of [`PARAMS`]
/// has a base value.
pub fn complete_base(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        if !o.contains_key("psum") {
            o.insert("psum".into(), serde_json::json!({"drop_bits": 0, "rounding": "RND", "offset": 0}));
        } else if let Some(p) = o.get_mut("psum").and_then(Value::as_object_mut) {
            p.entry("offset").or_insert(Value::from(0));
        }
        if !o.contains_key("memory") {
            let d = crate::hw::MemorySpec::default();
            o.insert(
                "memory".into(),
                serde_json::json!({"ifmap_sram_kb": d.ifmap_sram_kb, "filter_sram_kb": d.filter_sram_kb, "ofmap_sram_kb": d.ofmap_sram_kb}),
            );
        }
        if !o.contains_key("cdc") {
            let period =
                o.get("clock").and_then(|c| c.get("period_ps")).cloned().unwrap_or(Value::from(1000));
            o.insert(
                "cdc".into(),
                serde_json::json!({"host_period_ps": period, "fifo_depth": 8, "sync_stages": 2}),
            );
        }
    }
}

/// A validated point configuration: the datapath's [`HwConfig`] (which owns
/// the semantics) plus the CDC section the sweep always has.
#[derive(Clone, Debug)]
pub struct Hw {
    /// The validated datapath configuration.
    pub cfg: HwConfig,
    /// The FIFO between the array and the host (always present in a sweep).
    pub cdc: CdcConfig,
}

impl Hw {
    /// Validate a full configuration object. Single-field ranges come from
    /// [`PARAMS`]; the rest (combination checks) from [`HwConfig::from_spec`].
    pub fn from_value(v: &Value) -> Result<Hw> {
        for (path, kind) in PARAMS {
            if let Some(x) = get_path(v, path) {
                kind.check(path, x)?;
            }
        }
        let spec: HwSpec =
            serde_json::from_value(v.clone()).map_err(|e| json_error("hardware config", &e))?;
        let cfg = HwConfig::from_spec(&spec)?;
        let cdc = cfg.cdc().ok_or_else(|| Error::input("hardware config: missing cdc section"))?;
        Ok(Hw { cfg, cdc })
    }

    /// Accumulator width P in bits.
    pub fn acc_width(&self) -> u32 {
        self.cfg.acc_bits()
    }

    /// Partial-sum dropped bits d.
    pub fn psum_k(&self) -> u32 {
        self.cfg.psum().drop_bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_sorted_and_unique() {
        for w in PARAMS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
        }
    }

    #[test]
    fn pow2_kind() {
        let k = Kind::Pow2(2, 16);
        assert!(k.check("x", &Value::from(8)).is_ok());
        assert!(k.check("x", &Value::from(6)).is_err());
        assert!(k.check("x", &Value::from(32)).is_err());
    }
}

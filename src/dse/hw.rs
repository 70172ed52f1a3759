//! The hardware parameters a sweep point sets, and the table of sweepable
//! parameters (dotted paths) with their allowed values.
//!
//! A point's configuration is a JSON object (the base config with the point's
//! overrides applied at dotted paths), deserialized into [`HwJson`]
//! (`deny_unknown_fields`) and validated into [`Hw`]. Range checks of a single
//! field live in [`PARAMS`] and are applied to the base and to every value a
//! spec lists, so a bad value is a spec error; checks that involve several
//! fields (a centre offset outside the range its mode and dropped bits allow,
//! dropped bits not below the accumulator width) are combination checks done
//! per point in [`Hw::from_value`], and make that point `skipped`.

use crate::error::{json_error, Error, Result};
use crate::numerics::{IntFormat, Narrower, OverflowMode, RoundMode, Rounder};
use crate::requant::RequantRounding;
use serde::Deserialize;
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

/// Every sweepable parameter: its dotted path and its single-field range.
/// Sorted by path (the order of the CSV parameter columns is the sorted order
/// of the swept paths, so this table's order does not reach any output).
pub const PARAMS: &[(&str, Kind)] = &[
    ("acc.overflow", Kind::Enum(OVF_NAMES)),
    ("acc.width", Kind::Int(2, 64)),
    ("act.bits", Kind::Int(2, 16)),
    ("act.signed", Kind::Bool),
    ("array.cols", Kind::Int(1, 256)),
    ("array.dataflow", Kind::Enum(&["ws", "os", "is"])),
    ("array.rows", Kind::Int(1, 256)),
    ("clock_ns", Kind::Float(0.01, 1000.0)),
    ("fifo.clock_ratio", Kind::Float(0.05, 20.0)),
    ("fifo.depth", Kind::Pow2(2, 4096)),
    ("fifo.sync_stages", Kind::Int(2, 8)),
    ("psum.dropped_bits", Kind::Int(0, 63)),
    ("psum.offset", Kind::Int(-(1i64 << 62), 1i64 << 62)),
    ("psum.round", Kind::Enum(ROUND_NAMES)),
    ("requant.rounding", Kind::Enum(&["double", "single"])),
    ("weight.bits", Kind::Int(2, 16)),
    ("weight.signed", Kind::Bool),
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

/// Set the value at a dotted path of a JSON object (the path must exist).
pub fn set_path(v: &mut Value, path: &str, new: Value) -> Result<()> {
    let mut cur = v;
    for key in path.split('.') {
        cur = cur.get_mut(key).ok_or_else(|| Error::input(format!("base config has no field {path:?}")))?;
    }
    *cur = new;
    Ok(())
}

/// The JSON shape of a DSE hardware configuration (see `docs/dse.md`).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HwJson {
    pub array: ArrayJson,
    pub weight: OperandJson,
    pub act: OperandJson,
    pub acc: AccJson,
    pub psum: PsumJson,
    pub requant: RequantJson,
    pub fifo: FifoJson,
    pub clock_ns: f64,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ArrayJson {
    pub rows: i64,
    pub cols: i64,
    pub dataflow: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct OperandJson {
    pub bits: i64,
    pub signed: bool,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AccJson {
    pub width: i64,
    pub overflow: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PsumJson {
    pub dropped_bits: i64,
    pub round: String,
    pub offset: i64,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RequantJson {
    pub rounding: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct FifoJson {
    pub depth: i64,
    pub sync_stages: i64,
    pub clock_ratio: f64,
}

/// Array dataflow (which operand stays in the PEs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataflow {
    /// Weight stationary: K on rows, N on columns, M streams.
    Ws,
    /// Output stationary: M on rows, N on columns, K streams (no psum fold).
    Os,
    /// Input stationary: K on rows, M on columns, N streams.
    Is,
}

/// A validated point configuration. Hot loops assume its invariants:
/// `psum_k < acc.width`, the offset is in the mode's range for `psum_k`.
#[derive(Clone, Debug)]
pub struct Hw {
    pub rows: usize,
    pub cols: usize,
    pub dataflow: Dataflow,
    pub weight: IntFormat,
    pub act: IntFormat,
    /// The accumulator: signed, `acc_width` bits, with its overflow mode.
    pub acc: Narrower,
    /// Dropping `psum_k` bits with a mode and centre offset at each fold.
    pub psum_round: Rounder,
    /// The psum buffer: signed, `acc_width - psum_k` bits, same overflow mode.
    pub psum: Narrower,
    pub requant: RequantRounding,
    pub fifo_depth: u32,
    pub sync_stages: u32,
    pub clock_ratio: f64,
    pub clock_ns: f64,
}

impl Hw {
    /// Validate a full configuration object. Single-field ranges come from
    /// [`PARAMS`]; combination errors name both fields.
    pub fn from_value(v: &Value) -> Result<Hw> {
        for (path, kind) in PARAMS {
            let x =
                get_path(v, path).ok_or_else(|| Error::input(format!("hardware config: missing {path}")))?;
            kind.check(path, x)?;
        }
        let j: HwJson = serde_json::from_value(v.clone()).map_err(|e| json_error("hardware config", &e))?;
        let dataflow = match j.array.dataflow.as_str() {
            "ws" => Dataflow::Ws,
            "os" => Dataflow::Os,
            _ => Dataflow::Is,
        };
        let ovf: OverflowMode = j.acc.overflow.parse()?;
        let mode: RoundMode = j.psum.round.parse()?;
        let width = j.acc.width as u32;
        let k = j.psum.dropped_bits as u32;
        if k >= width {
            return Err(Error::input(format!(
                "psum.dropped_bits {k} must be below acc.width {width} (allowed: 0..={})",
                width - 1
            )));
        }
        let (lo, hi) = mode.offset_range(k);
        if (j.psum.offset as i128) < lo || (j.psum.offset as i128) > hi {
            return Err(Error::input(format!(
                "psum.offset {} is out of range for psum.round {mode} with psum.dropped_bits {k} (allowed: {lo}..={hi})",
                j.psum.offset
            )));
        }
        let psum_round = Rounder::new(k, mode, j.psum.offset)?;
        Ok(Hw {
            rows: j.array.rows as usize,
            cols: j.array.cols as usize,
            dataflow,
            weight: IntFormat::new(j.weight.signed, j.weight.bits as u32)?,
            act: IntFormat::new(j.act.signed, j.act.bits as u32)?,
            acc: Narrower::new(IntFormat::signed(width)?, ovf),
            psum_round,
            psum: Narrower::new(IntFormat::signed(width - k)?, ovf),
            requant: j.requant.rounding.parse()?,
            fifo_depth: j.fifo.depth as u32,
            sync_stages: j.fifo.sync_stages as u32,
            clock_ratio: j.fifo.clock_ratio,
            clock_ns: j.clock_ns,
        })
    }

    /// Accumulator width in bits.
    pub fn acc_width(&self) -> u32 {
        self.acc.format().width()
    }

    /// Partial-sum dropped bits.
    pub fn psum_k(&self) -> u32 {
        self.psum_round.k()
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

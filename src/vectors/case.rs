//! The case model: what `bitmac gen` reads from `CASE.json`.
//!
//! A case is one JSON object with a `kind` tag and the kind's fields
//! (`deny_unknown_fields` throughout). Common fields: `name` (the output
//! directory name), `description`, `seed`. Each kind validates its fields
//! once ([`CaseSpec::validate`]) into the internal types its generator uses.

use super::kinds::{cdc, gemm, lsq, model_node, pe_column, requant, round};
use crate::error::{Error, Result};
use crate::numerics::{IntFormat, OverflowMode, RoundMode};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A vector case, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CaseSpec {
    /// The partial-sum rounding stage: drop k LSBs, round, narrow.
    Round(round::RoundCase),
    /// A weight-stationary PE column: products accumulated with narrowing
    /// at every adder.
    PeColumn(pe_column::PeColumnCase),
    /// Integer requantization of accumulators.
    Requant(requant::RequantCase),
    /// An LSQ quantizer input set (forward and backward).
    Lsq(lsq::LsqCase),
    /// A GEMM through the datapath (needs `--hw`).
    Gemm(gemm::GemmCase),
    /// A conv2d layer through the datapath (needs `--hw`).
    Conv2d(gemm::Conv2dCase),
    /// A layer of the shipped default model on shipped test samples (needs `--hw`).
    ModelLayer(gemm::ModelLayerCase),
    /// Any node of any model (bitmac-model/1, bitmac-graph/1, ONNX) on one
    /// sample, through the graph runner (needs `--hw`).
    ModelNode(model_node::ModelNodeCase),
    /// A CDC FIFO scenario (the `bitmac cdc` run).
    Cdc(cdc::CdcCase),
}

/// The kinds, in documentation order.
pub const KINDS: &str = "round, pe_column, requant, lsq, gemm, conv2d, model_layer, model_node, cdc";

impl CaseSpec {
    /// The case name (directory name).
    pub fn name(&self) -> &str {
        match self {
            CaseSpec::Round(c) => &c.name,
            CaseSpec::PeColumn(c) => &c.name,
            CaseSpec::Requant(c) => &c.name,
            CaseSpec::Lsq(c) => &c.name,
            CaseSpec::Gemm(c) => &c.name,
            CaseSpec::Conv2d(c) => &c.name,
            CaseSpec::ModelLayer(c) => &c.name,
            CaseSpec::ModelNode(c) => &c.name,
            CaseSpec::Cdc(c) => &c.name,
        }
    }

    /// The seed every generator stream derives from.
    pub fn seed(&self) -> u64 {
        match self {
            CaseSpec::Round(c) => c.seed,
            CaseSpec::PeColumn(c) => c.seed,
            CaseSpec::Requant(c) => c.seed,
            CaseSpec::Lsq(c) => c.seed,
            CaseSpec::Gemm(c) => c.seed,
            CaseSpec::Conv2d(c) => c.seed,
            CaseSpec::ModelLayer(c) => c.seed,
            CaseSpec::ModelNode(c) => c.seed,
            CaseSpec::Cdc(c) => c.seed,
        }
    }

    /// The `kind` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            CaseSpec::Round(_) => "round",
            CaseSpec::PeColumn(_) => "pe_column",
            CaseSpec::Requant(_) => "requant",
            CaseSpec::Lsq(_) => "lsq",
            CaseSpec::Gemm(_) => "gemm",
            CaseSpec::Conv2d(_) => "conv2d",
            CaseSpec::ModelLayer(_) => "model_layer",
            CaseSpec::ModelNode(_) => "model_node",
            CaseSpec::Cdc(_) => "cdc",
        }
    }

    /// True when the kind reads the hardware config (`--hw`).
    pub fn needs_hw(&self) -> bool {
        matches!(
            self,
            CaseSpec::Gemm(_) | CaseSpec::Conv2d(_) | CaseSpec::ModelLayer(_) | CaseSpec::ModelNode(_)
        )
    }

    /// Validate the common fields (the kind's own fields are validated by
    /// its generator before anything is drawn).
    pub fn validate_common(&self) -> Result<()> {
        validate_name(self.name())
    }
}

/// Parse a case JSON text; `what` names it in errors.
pub fn parse_case(text: &str, what: &str) -> Result<CaseSpec> {
    let c: CaseSpec = serde_json::from_str(text).map_err(|e| crate::error::json_error(what, &e))?;
    c.validate_common().map_err(|e| e.context(what))?;
    Ok(c)
}

/// Read and parse a case file.
pub fn read_case(path: &Path) -> Result<CaseSpec> {
    let text = crate::io::read_to_string(path)?;
    parse_case(&text, &path.display().to_string())
}

/// Case names are directory names: 1..=64 of `[A-Za-z0-9_.-]`, not
/// starting with `.`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::field(
            "name",
            format!("{name:?}"),
            "1..=64 characters of [A-Za-z0-9_.-], not starting with '.'",
        ))
    }
}

/// Parse an integer format string `i<w>` / `u<w>` (w in `wmin..=wmax`).
pub fn parse_format(field: &str, s: &str, wmin: u32, wmax: u32) -> Result<IntFormat> {
    let allowed = format!("i<w> or u<w> with w in {wmin}..={wmax}");
    let signed = match s.as_bytes().first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(Error::field(field, format!("{s:?}"), allowed)),
    };
    let w: u32 = s[1..].parse().map_err(|_| Error::field(field, format!("{s:?}"), &allowed))?;
    if !(wmin..=wmax).contains(&w) || s[1..].starts_with('0') {
        return Err(Error::field(field, format!("{s:?}"), allowed));
    }
    IntFormat::new(signed, w)
}

/// Parse a rounding mode name, naming the field on error.
pub fn parse_round_mode(field: &str, s: &str) -> Result<RoundMode> {
    s.parse::<RoundMode>().map_err(|e| e.context(field))
}

/// Parse an overflow mode name, naming the field on error.
pub fn parse_overflow(field: &str, s: &str) -> Result<OverflowMode> {
    s.parse::<OverflowMode>().map_err(|e| e.context(field))
}

/// Check `1 <= v <= max` for a size field.
pub fn check_size(field: &str, v: usize, min: usize, max: usize) -> Result<()> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(Error::field(field, v, format!("{min}..={max}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_kinds_are_rejected() {
        let e =
            parse_case(r#"{"kind":"round","name":"a","seed":1,"count":4,"bogus":1}"#, "c.json").unwrap_err();
        assert!(e.to_string().contains("unknown field `bogus`"), "{e}");
        let e = parse_case(r#"{"kind":"nope","name":"a"}"#, "c.json").unwrap_err();
        assert!(e.to_string().contains("unknown variant `nope`"), "{e}");
        let e = parse_case(r#"{"name":"a"}"#, "c.json").unwrap_err();
        assert!(e.to_string().contains("missing field `kind`"), "{e}");
    }

    #[test]
    fn formats_parse_strictly() {
        assert_eq!(parse_format("f", "i8", 1, 64).unwrap(), IntFormat::signed(8).unwrap());
        assert_eq!(parse_format("f", "u1", 1, 64).unwrap(), IntFormat::unsigned(1).unwrap());
        for bad in ["", "i", "x8", "i08", "i65", "i0", "i-1", "u 8"] {
            let e = parse_format("acc", bad, 1, 64).unwrap_err();
            assert!(e.to_string().starts_with("acc: "), "{bad}: {e}");
        }
    }

    #[test]
    fn names_are_directory_safe() {
        assert!(validate_name("round_rnd-k4.v1").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}

//! One generator per case kind. Each validates its case (one-line errors
//! naming the field) and returns its artifacts and statistics; the framework
//! (`super`) encodes them and writes the manifest.

use super::case::CaseSpec;
use super::files::Artifact;
use crate::error::{Error, Result};
use crate::hw::HwConfig;
use std::collections::BTreeMap;

pub mod cdc;
pub mod gemm;
pub mod lsq;
pub mod model_node;
pub mod pe_column;
pub mod requant;
pub mod round;

/// What a kind generator produces.
#[derive(Clone, Debug, Default)]
pub struct KindOutput {
    /// Files, in manifest order.
    pub artifacts: Vec<Artifact>,
    /// Aggregate statistics, written as `stats.json` (sorted keys).
    pub stats: BTreeMap<String, serde_json::Value>,
}

/// Run the case's generator.
pub(crate) fn generate(case: &CaseSpec, hw: Option<&HwConfig>, base: &std::path::Path) -> Result<KindOutput> {
    let need_hw = || {
        hw.ok_or_else(|| {
            Error::input(format!("case kind {} needs a hardware config (--hw HW.json)", case.kind()))
        })
    };
    match case {
        CaseSpec::Round(c) => round::generate(c),
        CaseSpec::PeColumn(c) => pe_column::generate(c),
        CaseSpec::Requant(c) => requant::generate(c),
        CaseSpec::Lsq(c) => lsq::generate(c),
        CaseSpec::Gemm(c) => gemm::generate_gemm(c, need_hw()?),
        CaseSpec::Conv2d(c) => gemm::generate_conv2d(c, need_hw()?),
        CaseSpec::ModelLayer(c) => gemm::generate_model_layer(c, need_hw()?),
        CaseSpec::ModelNode(c) => model_node::generate(c, need_hw()?, base),
        CaseSpec::Cdc(c) => cdc::generate(c),
    }
}

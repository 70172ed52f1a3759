//! Model workloads: a shipped model on its data set.

use super::eval::{Evaluator, Metrics};
use super::hw::Hw;
use super::spec::Sweep;
use crate::error::{Error, Result};

/// The model evaluator (needs `crate::model`).
pub struct ModelEval;

impl ModelEval {
    /// Preload the model, data and reference once.
    pub fn load(_sweep: &Sweep) -> Result<ModelEval> {
        Err(Error::input("workload.kind \"model\" is not available in this build yet (allowed: gemm, conv)"))
    }
}

impl Evaluator for ModelEval {
    fn evaluate(&self, _hw: &Hw) -> Result<Metrics> {
        Err(Error::internal("model evaluator not built"))
    }

    fn quality_name(&self) -> &'static str {
        "accuracy"
    }
}

//! Model importers: ONNX (QONNX from Brevitas/FINN, and ONNX QDQ from ONNX Runtime's
//! quantizer) onto the quantized graph. Normative doc: `docs/onnx.md`.
//!
//! The importers only translate; the integer semantics of every node live in the graph
//! (`docs/graph.md`).

pub mod model;
pub mod onnx;
pub mod proto;
pub mod reference;
pub mod run;

//! Model importers: ONNX (QONNX from Brevitas/FINN, and ONNX QDQ from ONNX Runtime's
//! quantizer) onto the quantized graph. Normative doc: `docs/onnx.md`.

pub mod proto;

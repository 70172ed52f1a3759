//! Design-space exploration: sweeps over hardware and numerics parameters,
//! run in parallel, resumable and shardable, ending in CSV tables, a Pareto
//! front and SVG plots. Normative text: `docs/dse.md`.
//!
//! - [`spec`]: the sweep spec (JSON), validated and expanded into points with
//!   stable ids.
//! - [`hw`]: the sweepable parameters (dotted paths) and the validated point
//!   configuration.
//! - [`engine`]: the cost models: exact GEMM reference, FIFO stalls and MTBF
//!   (on `crate::cdc`), area proxy.
//! - [`eval`]: the [`eval::Evaluator`] interface, the metrics, synthetic
//!   workloads; [`model`]: model workloads. Both run the datapath's fast
//!   engine (`crate::layers::run_gemm`).
//! - [`run`]: the runner (out directory, resume, shards, merge, final files).
//! - [`pareto`], [`svg`]: the front and the plots.
//!
//! Invariants: a point's id and metrics depend only on the spec (and the
//! files it names), never on thread count, completion order, interruption
//! or sharding; every final file is produced from the records sorted by id.

pub mod engine;
pub mod eval;
pub mod hw;
pub mod model;
pub mod pareto;
pub mod run;
pub mod spec;

pub use eval::{Evaluator, Metrics};
pub use run::{merge, run, RunOptions, Shard, Summary};
pub use spec::Sweep;

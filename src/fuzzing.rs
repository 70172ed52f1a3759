//! One entry point per input parser, taking raw bytes, for the fuzz
//! harnesses (`tests/fuzz_parsers.rs`, run by `cargo test`, and the
//! cargo-fuzz targets in `fuzz/`). Each returns `Ok(())` when the input was
//! accepted and `Err(message)` with the one-line error bitmac would print
//! when it was refused; a panic, a hang or an allocation abort is a bug.
//!
//! The functions call exactly what the CLI calls after reading a file
//! (`io::read` and UTF-8 decoding are replaced by the bytes given).

use crate::error::{Error, Result};
use std::path::Path;

/// A parser under fuzzing: its name and entry point.
pub type Target = (&'static str, fn(&[u8]) -> std::result::Result<(), String>);

/// Every parser, by name (the cargo-fuzz target names).
pub const TARGETS: &[Target] = &[
    ("hw_config", hw_config),
    ("model", model),
    ("reference", reference),
    ("dataset", dataset),
    ("npy", npy),
    ("scalesim_config", scalesim_config),
    ("scalesim_topology", scalesim_topology),
    ("sweep_spec", sweep_spec),
    ("vector_case", vector_case),
    ("vector_manifest", vector_manifest),
    ("cdc_trace", cdc_trace),
];

fn text(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::input(format!("{what}: not valid UTF-8 text")))
}

fn done<T>(r: Result<T>) -> std::result::Result<(), String> {
    r.map(|_| ()).map_err(|e| e.to_string())
}

/// A hardware config (`docs/hw-config.md`).
pub fn hw_config(bytes: &[u8]) -> std::result::Result<(), String> {
    done(text(bytes, "hw.json").and_then(|t| crate::hw::HwConfig::from_json_str(&t, "hw.json")))
}

/// A model file (`docs/model-format.md`).
pub fn model(bytes: &[u8]) -> std::result::Result<(), String> {
    done(text(bytes, "model.json").and_then(|t| crate::model::Model::from_json_str(&t, "model.json")))
}

/// A fake-quant reference (`bitmac-ref/1`); relative paths resolve against
/// the current directory.
pub fn reference(bytes: &[u8]) -> std::result::Result<(), String> {
    done(
        text(bytes, "model.ref.json")
            .and_then(|t| crate::model::Reference::from_json_str(&t, "model.ref.json", Path::new("."))),
    )
}

/// A data set CSV.
pub fn dataset(bytes: &[u8]) -> std::result::Result<(), String> {
    done(text(bytes, "data.csv").and_then(|t| crate::model::Dataset::parse(&t, "data.csv")))
}

/// A `.npy` file.
pub fn npy(bytes: &[u8]) -> std::result::Result<(), String> {
    crate::npy::parse_npy(bytes).map(|_| ()).map_err(|m| format!("x.npy: {m}"))
}

/// A SCALE-Sim config (`.cfg`).
pub fn scalesim_config(bytes: &[u8]) -> std::result::Result<(), String> {
    done(text(bytes, "x.cfg").and_then(|t| crate::scalesim::ScaleSimConfig::parse(&t, "x.cfg")))
}

/// A SCALE-Sim topology CSV (form detected from the header), with its work
/// estimate on a 1x1 array (the largest fold count).
pub fn scalesim_topology(bytes: &[u8]) -> std::result::Result<(), String> {
    done(text(bytes, "t.csv").and_then(|t| {
        let topo = crate::scalesim::Topology::parse(&t, "t.csv", crate::scalesim::InputType::Auto)?;
        let cfg = crate::scalesim::ScaleSimConfig::parse(
            "[architecture_presets]\nArrayHeight: 1\nArrayWidth: 1\nIfmapSramSzkB: 1\nFilterSramSzkB: 1\nOfmapSramSzkB: 1\nDataflow: os\n",
            "1x1.cfg",
        )?;
        crate::limits::check(
            "t.csv",
            crate::scalesim::topology_folds(&cfg, &topo),
            crate::limits::SCALESIM_MAX_FOLDS,
            "folds",
            None,
        )
    }))
}

/// A sweep spec (`docs/dse.md`); relative paths resolve against
/// `models/sweeps` (where the shipped specs' presets are).
pub fn sweep_spec(bytes: &[u8]) -> std::result::Result<(), String> {
    done(
        text(bytes, "sweep.json")
            .and_then(|t| crate::dse::Sweep::parse(&t, "sweep.json", Path::new("models/sweeps"))),
    )
}

/// A vector case (`docs/vectors.md`), validated and, for the kinds without
/// a hardware config, generated (bounded by `docs/limits.md`).
pub fn vector_case(bytes: &[u8]) -> std::result::Result<(), String> {
    done(text(bytes, "case.json").and_then(|t| {
        let c = crate::vectors::parse_case(&t, "case.json")?;
        if c.needs_hw() {
            return Ok(());
        }
        crate::vectors::generate(&c, None).map(|_| ())
    }))
}

/// A vector-case manifest: parsed as `check` parses it, then regenerated
/// (bounded by `docs/limits.md`) when its kind needs no hardware config.
pub fn vector_manifest(bytes: &[u8]) -> std::result::Result<(), String> {
    done(text(bytes, "manifest.json").and_then(|t| {
        let m = crate::vectors::parse_manifest(&t, "manifest.json")?;
        if m.case.needs_hw() && m.hw.is_none() {
            return Ok(());
        }
        crate::vectors::generate_as(&m.case, m.hw.as_ref(), &m.bitmac_version).map(|_| ())
    }))
}

/// A CDC trace (`bitmac cdc --trace` format) for a depth-4, 2-flop, 12-bit
/// FIFO.
pub fn cdc_trace(bytes: &[u8]) -> std::result::Result<(), String> {
    done(text(bytes, "trace.txt").and_then(|t| {
        let cfg =
            crate::cdc::FifoSpec { depth: 4, sync: 2, data_width: 12, ..Default::default() }.validate()?;
        crate::cdc::trace::parse(&t, "trace.txt", &cfg)
    }))
}

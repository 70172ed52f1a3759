//! `bitmac run` on a `bitmac-graph/1` model (a child module of `cli::run`,
//! so it shares its arguments, hardware loading and report printers).

use super::{apply_overrides, report_json, report_text, Args, DEFAULT_HW};
use crate::array::Engine;
use crate::error::Result;
use crate::graph::format::GraphFile;
use crate::graph::report::{run_graph_model, GraphReference, NodeReport};
use crate::hw::HwConfig;
use crate::model::{self, Dataset};
use crate::sim::RunOptions;
use std::path::Path;
use std::time::Instant;

/// True when `path` is a graph file (its JSON `format` is `bitmac-graph/1`).
pub(super) fn is_graph(path: &Path) -> bool {
    crate::io::read_to_string(path).map(|t| GraphFile::is_graph_json(&t)).unwrap_or(false)
}

fn nodes_json(nodes: &[NodeReport]) -> serde_json::Value {
    serde_json::Value::Array(
        nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name,
                    "kind": n.kind,
                    "output_shape": n.output_shape,
                    "ppu": {"outputs": n.ppu.outputs, "saturated": n.ppu.saturated, "overflows": n.ppu.overflows, "ties": n.ppu.ties},
                    "bias_max_rounding_error": n.bias_max_rounding_error,
                })
            })
            .collect(),
    )
}

/// `--dump DIR --sample I`: trace one sample through every node.
pub(super) fn write_dump(
    graph: &crate::graph::Graph,
    hw: &HwConfig,
    input: &[i64],
    sample: usize,
    engine: Engine,
    dir: &Path,
) -> Result<i32> {
    let low = crate::graph::run::lower(graph, hw)?;
    let n = crate::graph::dump::dump(graph, &low, hw, input, sample, engine, dir)?;
    println!("wrote {n} files for sample {sample} ({} nodes) to {}", graph.nodes().len(), dir.display());
    Ok(0)
}

pub(super) fn run(args: &Args, path: &Path, engine: Engine, t0: Instant) -> Result<i32> {
    let text = crate::io::read_to_string(path)?;
    let file = GraphFile::from_json_str(&text, &path.display().to_string())?;
    let (data, data_text) = match &args.data {
        Some(p) => (Dataset::load(p)?, crate::io::read(p)?),
        None => (
            model::default_test_data()?,
            crate::io::read(Path::new(model::DEFAULT_DATA_PATH)).unwrap_or_default(),
        ),
    };
    let reference = match &args.reference {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(GraphReference::load(p, Some(text.as_bytes()), None)?),
        None => {
            let p = GraphReference::path_for_model(path);
            if p.exists() && args.data.is_none() {
                let d = if data_text.is_empty() { None } else { Some(data_text.as_slice()) };
                Some(GraphReference::load(&p, Some(text.as_bytes()), d)?)
            } else {
                None
            }
        }
    };
    let hw_text = match &args.hw {
        Some(p) => crate::io::read_to_string(p)?,
        None => DEFAULT_HW.to_string(),
    };
    let hw_name = args.hw.as_ref().map_or("models/hw/default.json".to_string(), |p| p.display().to_string());
    let hw_text = apply_overrides(&hw_text, &hw_name, &args.set)?;
    let hw = HwConfig::from_json_str(&hw_text, &hw_name)?;
    // Bounded work and memory (docs/limits.md), estimated from the
    // validated graph before running: the work estimate `bitmac run` uses
    // for ONNX models (`import::run::graph_work`) and the memory of the
    // graph runner's `run_all`.
    let samples = if args.dump.is_some() { 1 } else { data.len() };
    let batch = if args.dump.is_some() { 1 } else { args.batch };
    let hint = |flag: &str| format!("raise the limit with {flag} N");
    let what = format!("{samples} samples of {} in batches of {batch}", file.graph.name());
    crate::limits::check(
        &what,
        crate::import::run::graph_work(&file.graph, &hw, engine, samples, batch),
        args.max_work,
        "MAC-steps",
        Some(&hint("--max-work")),
    )?;
    crate::limits::check(
        &format!("{what} (kept codes)"),
        crate::graph::run::run_all_memory(&file.graph, samples, batch),
        args.max_mem,
        "bytes",
        Some(&hint("--max-mem")),
    )?;
    if let Some(dir) = &args.dump {
        let raw = super::sample_of(&data, args.sample)?;
        let x: Vec<f32> = raw.iter().map(|&r| r * file.raw_scale).collect();
        let input = file.graph.quantize_input(&x)?;
        return write_dump(&file.graph, &hw, &input, args.sample, engine, dir);
    }
    let opts = RunOptions { engine, batch: args.batch, max_explain: args.explain };
    let (report, nodes) = run_graph_model(&file, &data, reference.as_ref(), &hw, &opts, &|_| {})?;
    let wall = t0.elapsed().as_secs_f64();
    super::write_plots(args, &report, &hw)?;
    let data_name =
        args.data.as_ref().map_or(model::DEFAULT_DATA_PATH.to_string(), |p| p.display().to_string());
    if args.json {
        let mut v: serde_json::Value =
            serde_json::from_str(&report_json(&report, &hw_name, &data_name, &hw, wall)).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("nodes".into(), nodes_json(&nodes));
            o.insert("predictions".into(), serde_json::json!(report.predictions));
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", report_text(&report, &hw_name, &data_name, &hw, wall));
        println!("post-processing unit (per node): outputs, saturated, int32 overflows, rounding ties; max |bias rounding| (acc LSBs)");
        for n in &nodes {
            println!(
                "  {:<10} {:<15} {:>8} {:>8} {:>6} {:>6}  {}",
                n.name,
                n.kind,
                n.ppu.outputs,
                n.ppu.saturated,
                n.ppu.overflows,
                n.ppu.ties,
                n.bias_max_rounding_error.map_or("-".into(), |e| format!("{e:.3}"))
            );
        }
    }
    Ok(0)
}

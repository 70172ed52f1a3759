//! `bitmac run`, the default subcommand: a shipped (or user) model on its
//! data set through the datapath, with a report comparing the integer-only
//! results against the PyTorch fake-quant reference.

use crate::array::Engine;
use crate::error::{Error, Result};
use crate::hw::HwConfig;
use crate::model::{self, Dataset, Model, Reference};
use crate::sim::{self, RunOptions, RunReport};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// The hardware preset compiled in for the default run.
const DEFAULT_HW: &str = include_str!("../../models/hw/default.json");

/// Arguments of `bitmac run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file (bitmac-model/1 JSON). Default: the shipped cnn_w4a4.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Hardware config JSON. Default: the shipped models/hw/default.json.
    #[arg(long)]
    hw: Option<PathBuf>,
    /// Data set: CSV (`label,NAME,...`, one sample per line) or `.npy`
    /// inputs (N x the model's input shape, float32 or integer; needs
    /// --labels). Default: the shipped digits test split.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Labels `.npy` (N integers) for `--data INPUTS.npy`. ONNX models: optional, default
    /// the reference's labels when the data is the reference's.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Fake-quant reference (bitmac-ref/1). Default: MODEL with .ref.json,
    /// if it exists (the shipped one for the default model); its
    /// model_sha256 and data_sha256 must match the files used.
    /// `--reference none` disables the comparison.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Override a hardware config field, e.g. `--set psum.drop_bits=4`
    /// (repeatable; the value is JSON, or a bare string).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
    /// Array engine: fast or cycle (identical results).
    #[arg(long, default_value = "fast")]
    engine: String,
    /// Samples per inference batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Explain at most this many differing predictions.
    #[arg(long, default_value_t = 10)]
    explain: usize,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// ONNX models: requantization mode of every requantizing node (float32 = ONNX Runtime's
    /// CPU kernels; hardware, double, single). docs/onnx.md.
    #[arg(long, default_value = "float32")]
    requant: String,
    /// Print one Markdown table row instead of the report: psum dropped
    /// bits, rounding, offset, requant, accuracy, agreement, psum ties,
    /// then each layer's psum bias (units of 2^d) and output bias.
    #[arg(long, conflicts_with = "json")]
    row: bool,
    /// Refuse a run whose estimated datapath work exceeds N MAC-steps
    /// (docs/limits.md).
    #[arg(long, value_name = "N", default_value_t = crate::limits::RUN_MAX_WORK)]
    max_work: u64,
    /// Refuse a run whose held results (one window of samples, docs/limits.md) would take more than N bytes
    /// (docs/limits.md).
    #[arg(long, value_name = "BYTES", default_value_t = crate::limits::RUN_MAX_MEM_BYTES)]
    max_mem: u64,
    /// Write every node's input codes, accumulators and outputs for one
    /// sample (`--sample`) into DIR as .npy and $readmemh hex with a
    /// manifest (docs/graph.md §12), instead of the report.
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
    /// The sample `--dump` traces (index into the data set).
    #[arg(long, default_value_t = 0, requires = "dump")]
    sample: usize,
    /// Write histogram plots (SVG and PNG) into DIR, created if missing:
    /// per layer the psum residues around the rounding centre, with a `cdc`
    /// section the FIFO occupancy and latency, and their counts as
    /// DIR/histograms.csv (docs/plots.md).
    #[arg(long, value_name = "DIR", conflicts_with = "dump")]
    plot: Option<PathBuf>,
}

impl Default for Args {
    /// The same values clap gives when `bitmac` runs with no subcommand.
    fn default() -> Args {
        Args {
            model: None,
            hw: None,
            data: None,
            labels: None,
            reference: None,
            set: Vec::new(),
            engine: "fast".into(),
            batch: 1,
            explain: 10,
            json: false,
            row: false,
            requant: "float32".into(),
            max_work: crate::limits::RUN_MAX_WORK,
            max_mem: crate::limits::RUN_MAX_MEM_BYTES,
            dump: None,
            sample: 0,
            plot: None,
        }
    }
}

/// Run `bitmac run`.
pub fn run(args: Args) -> Result<i32> {
    let t0 = Instant::now();
    let engine: Engine = args.engine.parse()?;
    if let Some(p) = args.model.as_ref().filter(|p| graph_cli::is_graph(p)) {
        return graph_cli::run(&args, p, engine, t0);
    }
    // ONNX models (QONNX, QDQ) go through the importer and the graph runner (docs/onnx.md).
    if let Some(mp) = args.model.as_deref().filter(|p| crate::import::run::is_onnx(p)) {
        if args.row {
            return Err(crate::Error::input("--row is not supported for ONNX models"));
        }
        if args.plot.is_some() {
            return Err(crate::Error::input("--plot is not supported for ONNX models yet"));
        }
        let hw_text = match &args.hw {
            Some(p) => crate::io::read_to_string(p)?,
            None => crate::import::run::ONNX_HW.to_string(),
        };
        let hw_name = args.hw.as_ref().map_or("models/hw/onnx.json".to_string(), |p| p.display().to_string());
        let hw = HwConfig::from_json_str(&apply_overrides(&hw_text, &hw_name, &args.set)?, &hw_name)?;
        let requant = crate::graph::RequantMode::parse(&args.requant)?;
        if requant == crate::graph::RequantMode::Accumulator {
            return Err(crate::Error::field("--requant", "accumulator", "float32, hardware, double, single"));
        }
        if let Some(dir) = &args.dump {
            // `--dump` on an ONNX model: the same dump as for graph models
            // (docs/graph.md §12), of sample I of --data X.npy.
            let m = crate::graph::load::AnyModel::load(mp, requant)?;
            let Some(data) = args.data.as_deref() else {
                return Err(Error::input(
                    "--dump on an ONNX model needs --data X.npy (float32, the model's input shape)",
                ));
            };
            let samples = crate::graph::load::Samples::load(Some(data), None)?;
            let x = samples.sample(args.sample, "--sample")?;
            let input = m.input_codes(x).map_err(|e| e.context(format!("sample {}", args.sample)))?;
            crate::limits::check(
                &format!("1 sample of {}", mp.display()),
                crate::import::run::graph_work(&m.graph, &hw, engine, 1, 1),
                args.max_work,
                "MAC-steps",
                Some("raise the limit with --max-work N"),
            )?;
            return graph_cli::write_dump(&m.graph, &hw, &input, args.sample, engine, dir);
        }
        let out = crate::import::run::run_cli(&crate::import::run::CliArgs {
            model: mp,
            data: args.data.as_deref(),
            labels: args.labels.as_deref(),
            reference: args.reference.as_deref(),
            requant,
            hw: &hw,
            hw_name: &hw_name,
            engine,
            batch: args.batch,
            explain: args.explain,
            json: args.json,
            max_work: args.max_work,
            max_mem: args.max_mem,
        })?;
        print!("{out}");
        return Ok(0);
    }
    // The model and data, with the SHA-256 of the bytes actually used (the
    // reference records which files it was made from).
    let (model, model_path, model_name, model_sha) = match &args.model {
        Some(p) => {
            let bytes = crate::io::read(p)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::input(format!("{}: not UTF-8 text", p.display())))?;
            let m = Model::from_json_str(&text, &p.display().to_string())?;
            (m, Some(p.clone()), p.display().to_string(), model::sha256_hex(text.as_bytes()))
        }
        None => (
            model::default_model()?,
            None,
            format!("(embedded) {}", model::DEFAULT_MODEL_PATH),
            model::default_model_sha256(),
        ),
    };
    let is_npy = |p: &std::path::Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let (data, data_name, data_sha) = match (&args.data, &args.labels) {
        (Some(p), Some(l)) if is_npy(p) => {
            let d = Dataset::load_npy(p, l)?;
            (d, p.display().to_string(), model::sha256_hex(&crate::io::read(p)?))
        }
        (Some(p), None) if is_npy(p) => {
            return Err(Error::input(format!(
                "--data {}: a .npy data set needs --labels LABELS.npy (N integer labels)",
                p.display()
            )))
        }
        (Some(p), None) => {
            let text = crate::io::read_to_string(p)?;
            let d = Dataset::parse(&text, &p.display().to_string())?;
            (d, p.display().to_string(), model::sha256_hex(text.as_bytes()))
        }
        (_, Some(l)) => {
            return Err(Error::input(format!("--labels {}: only used with --data INPUTS.npy", l.display())))
        }
        (None, None) => (
            model::default_test_data()?,
            model::DEFAULT_DATA_PATH.to_string(),
            model::default_test_data_sha256(),
        ),
    };
    data.check_for(&model, &data_name)?;
    let reference = match (&args.reference, &model_path) {
        (Some(p), _) if p.as_os_str() == "none" => None,
        (Some(p), _) => Some((Reference::load(p)?, p.display().to_string())),
        (None, Some(mp)) => {
            let p = Reference::path_for_model(mp);
            if p.exists() {
                Some((Reference::load(&p)?, p.display().to_string()))
            } else {
                None
            }
        }
        (None, None) => {
            Some((model::default_reference()?, "(embedded) models/cnn_w4a4.ref.json".to_string()))
        }
    };
    if let Some((r, what)) = &reference {
        r.check_model(&model).map_err(|e| e.context(what))?;
        r.verify_sha256(what, &model_name, &model_sha, &data_name, &data_sha)?;
    }
    let reference = reference.map(|(r, _)| r);
    let hw_text = match &args.hw {
        Some(p) => crate::io::read_to_string(p)?,
        None => DEFAULT_HW.to_string(),
    };
    let hw_name = args.hw.as_ref().map_or("models/hw/default.json".to_string(), |p| p.display().to_string());
    let hw_text = apply_overrides(&hw_text, &hw_name, &args.set)?;
    let hw = HwConfig::from_json_str(&hw_text, &hw_name).map_err(|e| name_the_set(e, &args.set))?;
    if let Some(dir) = &args.dump {
        let graph = crate::graph::from_model(&model)?;
        let x = sample_of(&data, args.sample)?;
        let input: Vec<i64> = model
            .input_codes(x)
            .map_err(|e| e.context(format!("sample {}", args.sample)))?
            .into_iter()
            .map(i64::from)
            .collect();
        return graph_cli::write_dump(&graph, &hw, &input, args.sample, engine, dir);
    }
    let opts = RunOptions { engine, batch: args.batch, max_explain: args.explain };
    // Bounded work and memory (docs/limits.md), estimated before running.
    let hint = |flag: &str| format!("raise the limit with {flag} N");
    crate::limits::check(
        &format!("{} samples of {} in batches of {}", data.len(), model.name(), args.batch),
        crate::limits::run_work(&model, &hw, engine, data.len(), args.batch),
        args.max_work,
        "MAC-steps",
        Some(&hint("--max-work")),
    )?;
    crate::limits::check(
        &format!(
            "{} samples of {} (one window of results, and a prediction per sample)",
            data.len(),
            model.name()
        ),
        crate::limits::run_memory(&model, data.len(), args.batch),
        args.max_mem,
        "bytes",
        Some(&hint("--max-mem")),
    )?;

    let bar = if std::io::stderr().is_terminal() && !args.json {
        let pb = indicatif::ProgressBar::new(data.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} samples, ETA {eta}",
            )
            .map_err(|e| Error::internal(e.to_string()))?
            .progress_chars("=> "),
        );
        pb.set_message(model.name().to_string());
        Some(pb)
    } else {
        None
    };
    let progress = |n: usize| {
        if let Some(pb) = &bar {
            pb.set_position(n as u64);
        }
    };
    let report = sim::run_model(&model, &data, reference.as_ref(), &hw, &opts, &progress)?;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let wall = t0.elapsed().as_secs_f64();
    write_plots(&args, &report, &hw)?;
    if args.json {
        println!("{}", report_json(&report, &hw_name, &data_name, &hw, wall));
    } else if args.row {
        println!("{}", report_row(&report, &hw));
    } else {
        print!("{}", report_text(&report, &hw_name, &data_name, &hw, wall));
    }
    Ok(0)
}

/// `--plot DIR`: every histogram of the run, rendered before the first
/// file is written.
fn write_plots(args: &Args, report: &RunReport, hw: &HwConfig) -> Result<()> {
    if let Some(dir) = &args.plot {
        let plots = crate::plot::run_plots(report, hw)?;
        crate::plot::write_named(dir, &plots)?;
    }
    Ok(())
}

/// Apply `PATH=VALUE` overrides to a JSON document. `PATH` is dotted
/// (`psum.drop_bits`); `VALUE` is parsed as JSON, or taken as a string when
/// it is not JSON (`--set psum.rounding=RND_CONV`). The path must exist in
/// the document's schema; unknown fields are then rejected by the config
/// loader as usual.
pub fn apply_overrides(text: &str, what: &str, sets: &[String]) -> Result<String> {
    if sets.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| crate::error::json_error(what, &e))?;
    for s in sets {
        let (path, value) = s.split_once('=').ok_or_else(|| {
            Error::input(format!("--set {s:?}: expected PATH=VALUE, e.g. psum.drop_bits=4"))
        })?;
        let value: serde_json::Value =
            serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        let mut node = &mut doc;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let obj = node.as_object_mut().ok_or_else(|| {
                Error::input(format!("--set {path}: {} is not an object", parts[..i].join(".")))
            })?;
            if i + 1 == parts.len() {
                obj.insert(part.to_string(), value.clone());
                break;
            }
            node =
                obj.entry(part.to_string()).or_insert_with(|| serde_json::Value::Object(Default::default()));
        }
    }
    serde_json::to_string_pretty(&doc).map_err(|e| Error::internal(e.to_string()))
}

/// Prefix a config error with the `--set` argument that produced the bad
/// field (the last one naming it), so the user sees what they typed rather
/// than a position in the re-serialized JSON.
fn name_the_set(e: Error, sets: &[String]) -> Error {
    let msg = e.to_string();
    for s in sets.iter().rev() {
        let path = s.split_once('=').map_or(s.as_str(), |(p, _)| p);
        if msg.contains(&format!(": {path}: ")) || msg.contains(&format!(": {path} ")) {
            return e.context(format!("--set {s}"));
        }
    }
    e
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn opt_f(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

fn report_text(r: &RunReport, hw_name: &str, data_name: &str, hw: &HwConfig, wall: f64) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let p = hw.psum();
    let _ = writeln!(
        s,
        "bitmac run: model {} on {} ({} samples)\nhardware: {hw_name}: {}x{} {} array, {}-bit {} accumulator, psum drops {} bits ({} offset {}), {} requant; engine {}, batch {}",
        r.model,
        data_name,
        r.samples,
        r.rows,
        r.cols,
        hw.dataflow().name(),
        hw.acc_bits(),
        hw.overflow(),
        p.drop_bits,
        p.rounding,
        p.offset,
        hw.requant().rounding,
        r.engine,
        r.batch,
    );
    let _ = writeln!(s);
    let _ =
        writeln!(s, "accuracy (integer-only datapath): {} ({}/{})", pct(r.accuracy()), r.correct, r.samples);
    if let Some(fq) = r.fake_quant_accuracy {
        let _ = writeln!(s, "accuracy (PyTorch fake-quant):    {}", pct(fq));
    }
    if let Some(f) = r.float_accuracy {
        let _ = writeln!(s, "accuracy (PyTorch float):         {}", pct(f));
    }
    match r.agree {
        Some(a) => {
            let _ = writeln!(
                s,
                "predictions differing from fake-quant: {} of {} (agreement {})",
                r.flips_total,
                r.samples,
                pct(a as f64 / r.samples.max(1) as f64)
            );
            for f in &r.flips {
                let _ = writeln!(
                    s,
                    "  sample {:>4} (label {}): integer {} vs fake-quant {}: first differs at {}: {}",
                    f.sample, f.label, f.integer, f.fake_quant, f.layer, f.why
                );
            }
            if r.flips_total > r.flips.len() {
                let _ = writeln!(s, "  ... {} more (raise --explain)", r.flips_total - r.flips.len());
            }
        }
        None => {
            let _ = writeln!(s, "no fake-quant reference: agreement not computed");
        }
    }
    // Two tables so that every line fits 80 columns.
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<8} {:<6} {:>12} {:>10} {:>7} {:>8} {:>8} {:>9}",
        "layer", "kind", "GEMM MxKxN", "cycles", "util", "overflow", "psum tie", "max|i-fq|"
    );
    for l in &r.layers {
        let st = &l.stats;
        let _ = writeln!(
            s,
            "{:<8} {:<6} {:>12} {:>10} {:>7} {:>8} {:>8} {:>9}",
            l.name,
            l.kind,
            format!("{}x{}x{}", l.gemm.0, l.gemm.1, l.gemm.2),
            st.cycles,
            pct(l.utilization),
            st.overflows(),
            st.psum_ties,
            opt_f(l.max_diff_vs_fake_quant, 3),
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<8} {:>9} {:>9} {:>9} {:>10} {:>5} {:>9}",
        "layer", "psum bias", "out bias", "out rms", "max|acc|", "minP", "A2Q t/w"
    );
    for l in &r.layers {
        let st = &l.stats;
        let _ = writeln!(
            s,
            "{:<8} {:>9} {:>9} {:>9} {:>10} {:>5} {:>9}",
            l.name,
            opt_f(st.psum_err_mean(), 4),
            opt_f(st.out_err_mean(), 4),
            opt_f(st.out_err_rms(), 4),
            st.max_abs_acc,
            st.min_acc_bits,
            format!("{}/{}", st.a2q_bits_types, st.a2q_bits_weights),
        );
    }
    let t = &r.total;
    let _ = writeln!(
        s,
        "total: {} cycles ({} per sample, {:.3} us per sample at {} ps), {} overflows{}, {} psum ties of {} roundings",
        t.cycles,
        t.cycles / r.samples.max(1) as u64,
        t.cycles as f64 * hw.clock_period_ps() as f64 / 1e6 / r.samples.max(1) as f64,
        hw.clock_period_ps(),
        t.overflows(),
        t.first_overflow.map_or(String::new(), |e| format!(
            " (first at cycle {}, row {}, col {})",
            e.cycle, e.row, e.col
        )),
        t.psum_ties,
        t.psum_rounded,
    );
    if let (Some(c), Some(cc)) = (&r.cdc, hw.cdc()) {
        let _ = writeln!(s, "{}", c.summary(&cc, hw.clock_period_ps()));
    }
    let _ = writeln!(
        s,
        "columns: max|i-fq| = largest |integer code - fake-quant value/step| (last layer:\n\
         \x20 in accumulator LSBs); psum bias = mean psum rounding error (units of 2^d);\n\
         \x20 out bias/rms = output error vs exact real requant (output LSBs);\n\
         \x20 max|acc| = largest |psum-buffer value| (units of 2^d), without the bias\n\
         \x20 (the int32 bias is added after the array); minP = narrowest accumulator\n\
         \x20 with no overflow on this data; A2Q t/w = A2Q minimum width from data types\n\
         \x20 / actual weights"
    );
    let _ = writeln!(s, "wall time: {wall:.3} s");
    wrap(&s, REPORT_WIDTH)
}

/// The text report's width: it fits an 80-column terminal.
pub const REPORT_WIDTH: usize = 80;

/// Wrap every line longer than `width` characters at its last space before
/// the limit (or, without one, hard at the limit); continuation lines are
/// indented by the line's own indentation plus 4. Lines that fit are kept.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for line in text.split_inclusive('\n') {
        let (body, nl) = line.strip_suffix('\n').map_or((line, ""), |b| (b, "\n"));
        let indent = body.len() - body.trim_start_matches(' ').len();
        let cont = " ".repeat((indent + 4).min(width / 2));
        let mut rest: Vec<char> = body.chars().collect();
        let mut first = true;
        while rest.len() + if first { 0 } else { cont.len() } > width {
            let room = width - if first { 0 } else { cont.len() };
            let cut = rest[..room].iter().rposition(|&c| c == ' ').filter(|&p| p > 0).unwrap_or(room);
            if !first {
                out.push_str(&cont);
            }
            out.extend(&rest[..cut]);
            out.push('\n');
            let skip = usize::from(rest.get(cut) == Some(&' '));
            rest.drain(..cut + skip);
            first = false;
        }
        if !first {
            out.push_str(&cont);
        }
        out.extend(&rest);
        out.push_str(nl);
    }
    out
}

/// One Markdown row (see `--row`); the header is in docs/seed-question.md.
fn report_row(r: &RunReport, hw: &HwConfig) -> String {
    let p = hw.psum();
    let mut cells = vec![
        p.drop_bits.to_string(),
        format!("`{}`", p.rounding),
        p.offset.to_string(),
        hw.requant().rounding.to_string(),
        pct(r.accuracy()),
        r.agree.map_or("-".into(), |a| format!("{a}/{}", r.samples)),
        format!("{}/{}", r.total.psum_ties, r.total.psum_rounded),
    ];
    for l in &r.layers {
        cells.push(format!("{} / {}", opt_f(l.stats.psum_err_mean(), 3), opt_f(l.stats.out_err_mean(), 3)));
    }
    format!("| {} |", cells.join(" | "))
}

fn report_json(r: &RunReport, hw_name: &str, data_name: &str, hw: &HwConfig, wall: f64) -> String {
    use serde_json::{json, Value};
    let stats =
        |st: &crate::array::Stats| -> Value { serde_json::from_str(&st.to_json()).unwrap_or(Value::Null) };
    let layers: Vec<Value> = r
        .layers
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "kind": l.kind,
                "gemm": [l.gemm.0, l.gemm.1, l.gemm.2],
                "utilization": l.utilization,
                "max_diff_vs_fake_quant": l.max_diff_vs_fake_quant,
                "codes_differing": l.codes_differing,
                "multiplier": l.multiplier.map(|m| json!({"m0": m.m0, "shift": m.shift})),
                "stats": stats(&l.stats),
                "energy_per_inference": l.energy.to_json(),
            })
        })
        .collect();
    let flips: Vec<Value> = r
        .flips
        .iter()
        .map(|f| {
            json!({"sample": f.sample, "label": f.label, "integer": f.integer, "fake_quant": f.fake_quant, "layer": f.layer, "why": f.why})
        })
        .collect();
    let v = json!({
        "model": r.model,
        "data": data_name,
        "hw": hw_name,
        "hw_config": serde_json::to_value(hw.spec()).unwrap_or(Value::Null),
        "engine": r.engine.name(),
        "batch": r.batch,
        "samples": r.samples,
        "correct": r.correct,
        "accuracy": r.accuracy(),
        "predictions": r.predictions,
        "fake_quant_accuracy": r.fake_quant_accuracy,
        "float_accuracy": r.float_accuracy,
        "agree": r.agree,
        "differing": r.flips_total,
        "flips": flips,
        "layers": layers,
        "total": stats(&r.total),
        "energy_per_inference_pj": r.layers.iter().map(|l| l.energy.total()).sum::<f64>(),
        "cdc": r.cdc.as_ref().map(crate::sim::CdcTotals::to_json),
        "wall_s": wall,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn sample_of(data: &Dataset, i: usize) -> Result<&[f32]> {
    if i >= data.len() {
        return Err(Error::field("--sample", i, format!("0..{} (the data set's samples)", data.len())));
    }
    Ok(data.image(i))
}

#[path = "run_graph.rs"]
mod graph_cli;

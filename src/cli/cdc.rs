//! `bitmac cdc`: simulate the two-clock asynchronous FIFO, or replay a trace.
//! Thin layer over [`crate::cdc`]; the rules are in `docs/cdc.md`.

use crate::cdc::{
    self, trace, vcd, Clock, ClockPair, Domain, Fault, FifoSpec, Meta, MetaKind, NoObserver, Observer,
    Pattern, Variant,
};
use crate::error::{Error, Result};
use std::io::Write as _;
use std::path::PathBuf;

/// Arguments of `bitmac cdc`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Write clock period (ps).
    #[arg(long, value_name = "PS")]
    pub wclk_ps: Option<u64>,
    /// Read clock period (ps).
    #[arg(long, value_name = "PS")]
    pub rclk_ps: Option<u64>,
    /// Time of the first write edge (ps, below the period).
    #[arg(long, value_name = "PS", default_value_t = 0)]
    pub wphase_ps: u64,
    /// Time of the first read edge (ps, below the period).
    #[arg(long, value_name = "PS", default_value_t = 0)]
    pub rphase_ps: u64,
    /// Peak write-clock jitter (ps, seeded, uniform in [-J, J]).
    #[arg(long, value_name = "PS", default_value_t = 0)]
    pub wjitter_ps: u64,
    /// Peak read-clock jitter (ps).
    #[arg(long, value_name = "PS", default_value_t = 0)]
    pub rjitter_ps: u64,
    /// FIFO depth (power of two, 2..=65536; --replay: default from the trace header).
    #[arg(long)]
    pub depth: Option<u64>,
    /// Synchronizer flops per direction: 2..=16, or 1 with --fault single-flop; --replay accepts 1..=16 (default from the trace header). Flags combinational on K flops: --sync K-1.
    #[arg(long)]
    pub sync: Option<u32>,
    /// Data width in bits (1..=64; --replay: default from the trace header).
    #[arg(long)]
    pub data_width: Option<u32>,
    /// Words the producer offers (0, 1, 2, ... modulo 2^data_width).
    #[arg(long)]
    pub words: Option<u64>,
    /// Write enable probability per write edge (percent, 1..=100).
    #[arg(long, value_name = "PCT", default_value_t = 100)]
    pub wen: u32,
    /// Read enable probability per read edge (percent, 1..=100).
    #[arg(long, value_name = "PCT", default_value_t = 100)]
    pub ren: u32,
    /// Seed of every random stream (enables, jitter, metastability).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Turn metastability emulation on.
    #[arg(long)]
    pub meta: bool,
    /// Metastability setup window before a capturing edge (ps, default 20; needs --meta).
    #[arg(long, value_name = "PS")]
    pub meta_setup_ps: Option<u64>,
    /// Metastability hold window after a capturing edge (ps, default 10, includes a coincident source edge; needs --meta).
    #[arg(long, value_name = "PS")]
    pub meta_hold_ps: Option<u64>,
    /// Write every metastability event to this file (text, one per line).
    #[arg(long, value_name = "FILE")]
    pub meta_log: Option<PathBuf>,
    /// Fault mode: none, binary, single-flop, reset-write, reset-read.
    #[arg(long, default_value = "none")]
    pub fault: String,
    /// When the one-domain reset hits (ps; reset-write / reset-read).
    #[arg(long, value_name = "PS")]
    pub fault_at_ps: Option<u64>,
    /// Binary fault: arrival skew of the crossing bus from bit 0 to the MSB (ps).
    #[arg(long, value_name = "PS")]
    pub fault_skew_ps: Option<u64>,
    /// Sizing options (boxed: keeps the command enum small).
    #[command(flatten)]
    pub size: Box<SizeArgs>,
    /// FIFO variant options (boxed: keeps the command enum small).
    #[command(flatten)]
    pub var: Box<VariantArgs>,
    /// Bound on rising edges (both domains) before the run is stopped; overrides the default bound and its limit (docs/cdc.md section 7).
    #[arg(long)]
    pub max_edges: Option<u64>,
    /// Write the edge trace to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write a VCD waveform to FILE.
    #[arg(long, value_name = "FILE")]
    pub vcd: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the occupancy and latency histograms as SVG and PNG into DIR
    /// (created if missing): occupancy, lat_write_pop, lat_write_rempty_clear,
    /// lat_read_wfull_clear (docs/cdc.md section 5).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Replay TRACE (takes time, dom, en of each line) and compare every field.
    #[arg(long, value_name = "TRACE")]
    pub replay: Option<PathBuf>,
}

/// The `--size` flags of `bitmac cdc` (docs/cdc.md section 17).
#[derive(clap::Args, Debug, Default)]
pub struct SizeArgs {
    /// Report the smallest --sync meeting --mtbf-s and the smallest --depth without a write stall, for the given clocks, words and enables / burst.
    #[arg(long)]
    pub size: bool,
    /// --size: MTBF target of the FIFO's two synchronizers (s).
    #[arg(long, value_name = "S")]
    pub mtbf_s: Option<f64>,
    /// --size: metastability time constant tau (ps).
    #[arg(long, value_name = "PS")]
    pub tau_ps: Option<f64>,
    /// --size: metastability window constant T0 (s).
    #[arg(long, value_name = "S")]
    pub t0_s: Option<f64>,
    /// --size: setup time of the synchronizer flops (ps).
    #[arg(long, value_name = "PS", default_value_t = 0.0)]
    pub t_setup_ps: f64,
    /// --size: clock-to-output delay of the synchronizer flops (ps).
    #[arg(long, value_name = "PS", default_value_t = 0.0)]
    pub t_clk2q_ps: f64,
    /// --size: the producer writes in bursts of B words on consecutive write edges, then idles I edges (B:I; instead of --wen).
    #[arg(long, value_name = "B:I")]
    pub burst: Option<String>,
}

/// The FIFO variant flags of `bitmac cdc` (docs/cdc.md section 16).
#[derive(clap::Args, Debug, Default)]
pub struct VariantArgs {
    /// FIFO variant: registers in front of the read port, 0..=3 (docs/cdc.md section 16; --replay: default from the trace header).
    #[arg(long, value_name = "N")]
    pub read_stages: Option<u32>,
    /// FIFO variant: read data `fwft` (first word falls through, default) or `registered` (delivered one read edge after the read).
    #[arg(long, value_name = "STYLE")]
    pub read_data: Option<String>,
    /// FIFO variant: almost-full flag, set when the write side's occupancy estimate is >= AF (1..=depth).
    #[arg(long, value_name = "AF")]
    pub almost_full: Option<u32>,
    /// FIFO variant: almost-empty flag, set when the read side's occupancy estimate is <= AE (0..=depth-1).
    #[arg(long, value_name = "AE")]
    pub almost_empty: Option<u32>,
}

fn need<T: Copy>(v: Option<T>, flag: &str) -> Result<T> {
    v.ok_or_else(|| Error::input(format!("{flag} is required (see bitmac cdc --help)")))
}

/// A no-op or trace / VCD observer pair.
struct Both {
    tr: Option<trace::TraceWriter>,
    vcd: Option<vcd::VcdWriter>,
}

impl Observer for Both {
    fn instant(&mut self, sim: &cdc::Sim<'_>, t: u64, w: Option<cdc::EdgeRec>, r: Option<cdc::EdgeRec>) {
        if let Some(x) = &mut self.tr {
            x.instant(sim, t, w, r);
        }
        if let Some(x) = &mut self.vcd {
            x.instant(sim, t, w, r);
        }
    }
}

fn parse_fault(a: &Args, clocks_hint: u64) -> Result<Fault> {
    let at = a.fault_at_ps.unwrap_or(64 * clocks_hint);
    let f = match a.fault.as_str() {
        "none" => Fault::None,
        "binary" => Fault::BinaryPointers { skew_ps: a.fault_skew_ps.unwrap_or(0) },
        "single-flop" => Fault::SingleFlop,
        "reset-write" => Fault::ResetOneDomain { domain: Domain::W, at_ps: at },
        "reset-read" => Fault::ResetOneDomain { domain: Domain::R, at_ps: at },
        o => {
            return Err(Error::field("--fault", o, "none, binary, single-flop, reset-write, reset-read"));
        }
    };
    if a.fault_skew_ps.is_some() && !matches!(f, Fault::BinaryPointers { .. }) {
        return Err(Error::input("--fault-skew-ps applies only to --fault binary"));
    }
    if a.fault_at_ps.is_some() && !matches!(f, Fault::ResetOneDomain { .. }) {
        return Err(Error::input("--fault-at-ps applies only to --fault reset-write / reset-read"));
    }
    Ok(f)
}

/// `key=value` settings of a trace's comment header (`# depth=16 sync=2 ...`),
/// as `bitmac cdc --trace` writes them: the first value of each key wins.
fn header_value(text: &str, key: &str) -> Option<String> {
    for l in text.lines() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        let Some(c) = l.strip_prefix('#') else { break };
        for tok in c.split_whitespace() {
            if let Some(v) = tok.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// `--FLAG` if given, else the trace header's `key=`, else an error naming both.
fn flag_or_header<T: std::str::FromStr>(
    v: Option<T>,
    flag: &str,
    text: &str,
    key: &str,
    name: &str,
) -> Result<T> {
    if let Some(v) = v {
        return Ok(v);
    }
    match header_value(text, key) {
        Some(s) => s.parse().map_err(|_| {
            Error::input(format!("{name}: header {key}={s} is not a valid {flag} (pass {flag} explicitly)"))
        }),
        None => Err(Error::input(format!("{flag} is required: {name} has no `{key}=` in its header"))),
    }
}

fn parse_read_data(s: &str) -> Result<bool> {
    match s {
        "fwft" => Ok(true),
        "registered" => Ok(false),
        o => Err(Error::field("--read-data", o, "fwft, registered")),
    }
}

/// The variant from the flags (a run: absent flags are the plain core).
fn variant_from_flags(a: &Args) -> Result<Variant> {
    Ok(Variant {
        read_stages: a.var.read_stages.unwrap_or(0),
        fwft: a.var.read_data.as_deref().map(parse_read_data).transpose()?.unwrap_or(true),
        almost_full: a.var.almost_full,
        almost_empty: a.var.almost_empty,
    })
}

/// The variant for `--replay`: each flag, else the trace header's value
/// (`read_stages=`, `read_data=`, `almost_full=`, `almost_empty=`; `-` = off),
/// else the plain core.
fn variant_for_replay(a: &Args, text: &str, name: &str) -> Result<Variant> {
    let thr = |v: Option<u32>, flag: &str, key: &str| -> Result<Option<u32>> {
        if v.is_some() {
            return Ok(v);
        }
        match header_value(text, key).as_deref() {
            None | Some("-") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                Error::input(format!(
                    "{name}: header {key}={s} is not a valid {flag} (pass {flag} explicitly)"
                ))
            }),
        }
    };
    let read_stages = match a.var.read_stages {
        Some(n) => n,
        None => match header_value(text, "read_stages") {
            None => 0,
            Some(s) => s.parse().map_err(|_| {
                Error::input(format!("{name}: header read_stages={s} is not a valid --read-stages"))
            })?,
        },
    };
    let fwft = match (&a.var.read_data, header_value(text, "read_data")) {
        (Some(s), _) => parse_read_data(s)?,
        (None, Some(s)) => parse_read_data(&s).map_err(|e| e.context(format!("{name}: header")))?,
        (None, None) => true,
    };
    Ok(Variant {
        read_stages,
        fwft,
        almost_full: thr(a.var.almost_full, "--almost-full", "almost_full")?,
        almost_empty: thr(a.var.almost_empty, "--almost-empty", "almost_empty")?,
    })
}

fn replay(a: &Args, path: &std::path::Path) -> Result<i32> {
    let text = crate::io::read_to_string(path)?;
    let name = path.display().to_string();
    let depth = flag_or_header(a.depth, "--depth", &text, "depth", &name)?;
    let sync = flag_or_header(a.sync, "--sync", &text, "sync", &name)?;
    let data_width = flag_or_header(a.data_width, "--data-width", &text, "data_width", &name)?;
    if !(1..=cdc::config::MAX_SYNC).contains(&sync) {
        return Err(Error::field("--sync", sync, format!("1..={} for --replay", cdc::config::MAX_SYNC)));
    }
    let cfg = FifoSpec {
        depth,
        sync,
        data_width,
        fault: if sync == 1 { Fault::SingleFlop } else { Fault::None },
        meta: None,
        seed: 0,
    }
    .validate()?
    .with_variant(variant_for_replay(a, &text, &name)?)?;
    let lines = trace::parse(&text, &name, &cfg)?;
    let n = trace::replay(&lines, &name, &cfg)?;
    println!("{n} edges match");
    Ok(0)
}

/// Largest `--words` of `bitmac cdc --size` (each of up to 16 runs keeps
/// 40 bytes of per-word records).
const SIZE_MAX_WORDS: u64 = 1_000_000;

fn size(a: &Args) -> Result<i32> {
    use crate::cdc::size::{size, SizeQuery};
    let sa = &a.size;
    let wclk = need(a.wclk_ps, "--wclk-ps")?;
    let rclk = need(a.rclk_ps, "--rclk-ps")?;
    let words = need(a.words, "--words")?;
    let data_width = need(a.data_width, "--data-width")?;
    if !(1..=SIZE_MAX_WORDS).contains(&words) {
        return Err(Error::field("--words", words, format!("1..={SIZE_MAX_WORDS} with --size")));
    }
    if a.depth.is_some() || a.sync.is_some() {
        return Err(Error::input("--size searches --depth and --sync: do not pass them"));
    }
    for (f, v) in [("--wen", a.wen), ("--ren", a.ren)] {
        if !(1..=100).contains(&v) {
            return Err(Error::field(f, v, "1..=100 (percent of edges)"));
        }
    }
    let pct = |x: u32| if x >= 100 { Pattern::Always } else { Pattern::Percent(x) };
    let (producer, duty) = match &sa.burst {
        None => (pct(a.wen), a.wen as f64 / 100.0),
        Some(b) => {
            if a.wen != 100 {
                return Err(Error::input("--burst replaces --wen: pass one of them"));
            }
            let bad = || Error::field("--burst", b, "B:I with B in 1..=65536 and I in 0..=65536");
            let (x, y) = b.split_once(':').ok_or_else(bad)?;
            let (bl, idle): (u64, u64) = (x.parse().map_err(|_| bad())?, y.parse().map_err(|_| bad())?);
            if !(1..=65536).contains(&bl) || idle > 65536 {
                return Err(bad());
            }
            // Word k exists at write edge (k / B) * (B + I) + k mod B.
            let ready = (0..words).map(|k| (k / bl) * (bl + idle) + k % bl).collect();
            (Pattern::ReadyAt(ready), bl as f64 / (bl + idle) as f64)
        }
    };
    let timing = crate::cdc::mtbf::Timing {
        tau_s: sa.tau_ps.ok_or_else(|| Error::input("--tau-ps is required with --size"))? * 1e-12,
        t0_s: sa.t0_s.ok_or_else(|| Error::input("--t0-s is required with --size"))?,
        stages: 2,
        t_setup_s: sa.t_setup_ps * 1e-12,
        t_clk2q_s: sa.t_clk2q_ps * 1e-12,
        t_logic_s: 0.0,
    };
    let clocks = ClockPair {
        w: Clock { period_ps: wclk, phase_ps: a.wphase_ps, jitter_ps: a.wjitter_ps },
        r: Clock { period_ps: rclk, phase_ps: a.rphase_ps, jitter_ps: a.rjitter_ps },
    };
    let q = SizeQuery {
        clocks,
        data_width,
        words,
        producer,
        producer_duty: duty,
        consumer: pct(a.ren),
        consumer_duty: a.ren as f64 / 100.0,
        timing,
        mtbf_target_s: sa.mtbf_s.ok_or_else(|| Error::input("--mtbf-s is required with --size"))?,
        seed: a.seed,
    };
    let r = size(&q)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| Error::internal(e.to_string()))?);
    } else {
        println!(
            "sync: {} (system MTBF 10^{:.3} s >= target {:e} s; w2r 10^{:.3} s, r2w 10^{:.3} s)",
            r.sync,
            r.log10_mtbf_s,
            q.mtbf_target_s,
            r.synchronizers[0].log10_mtbf_s,
            r.synchronizers[1].log10_mtbf_s
        );
        for t in &r.tried {
            println!(
                "depth {}: {} write stall edges, {} read wait edges, end {} ps",
                t.depth, t.write_stalls, t.read_waits, t.end_time_ps
            );
        }
        match r.depth {
            Some(d) => println!("depth: {d} (smallest without a write stall at sync {})", r.sync),
            None => {
                println!("depth: none up to 65536 avoids write stalls (the producer outpaces the consumer)")
            }
        }
    }
    Ok(if r.depth.is_some() { 0 } else { 1 })
}

/// Run `bitmac cdc`.
pub fn run(a: Args) -> Result<i32> {
    if let Some(path) = &a.replay {
        return replay(&a, path);
    }
    if a.size.size {
        return size(&a);
    }
    let depth = need(a.depth, "--depth")?;
    let sync = need(a.sync, "--sync")?;
    let data_width = need(a.data_width, "--data-width")?;
    let wclk = need(a.wclk_ps, "--wclk-ps")?;
    let rclk = need(a.rclk_ps, "--rclk-ps")?;
    let words = need(a.words, "--words")?;
    let fault = parse_fault(&a, wclk.max(rclk))?;
    if !a.meta && (a.meta_setup_ps.is_some() || a.meta_hold_ps.is_some() || a.meta_log.is_some()) {
        return Err(Error::input("--meta-setup-ps / --meta-hold-ps / --meta-log need --meta"));
    }
    let meta = a
        .meta
        .then_some(Meta { setup_ps: a.meta_setup_ps.unwrap_or(20), hold_ps: a.meta_hold_ps.unwrap_or(10) });
    let cfg = FifoSpec { depth, sync, data_width, fault, meta, seed: a.seed }
        .validate()?
        .with_variant(variant_from_flags(&a)?)?;
    let clocks = ClockPair {
        w: Clock { period_ps: wclk, phase_ps: a.wphase_ps, jitter_ps: a.wjitter_ps },
        r: Clock { period_ps: rclk, phase_ps: a.rphase_ps, jitter_ps: a.rjitter_ps },
    };
    clocks.validate(&cfg)?;
    if words == 0 {
        return Err(Error::field("--words", 0, "1..=18446744073709551614"));
    }
    if !(1..=100).contains(&a.wen) {
        return Err(Error::field("--wen", a.wen, "1..=100 (percent of write edges)"));
    }
    if !(1..=100).contains(&a.ren) {
        return Err(Error::field("--ren", a.ren, "1..=100 (percent of read edges)"));
    }
    let observed = a.trace.is_some() || a.vcd.is_some();
    // Refuse unbounded work before creating any file (docs/cdc.md section 7).
    let limit = if observed { cdc::EDGE_LIMIT_OBSERVED } else { cdc::EDGE_LIMIT };
    let max_edges = cdc::edge_bound(&cfg, &clocks, words, a.wen.min(a.ren), a.max_edges, limit)?;
    let desc = cdc::describe(&cfg, &clocks);
    let extra = cdc::trace_header(&cfg, &clocks, words, a.wen, a.ren);
    // Outputs stream into temporary files; they are published (renamed) only
    // once the run is complete and reportable, and removed on any error.
    let mut outputs: Vec<crate::io::AtomicFile> = Vec::new();
    let report = if !observed {
        cdc::simulate(&cfg, &clocks, words, a.wen, a.ren, Some(max_edges), &mut NoObserver)?
    } else {
        let mut obs = Both { tr: None, vcd: None };
        if let Some(p) = &a.trace {
            obs.tr = Some(trace::TraceWriter::to_file(&cfg, &extra, crate::io::AtomicFile::create(p)?));
        }
        if let Some(p) = &a.vcd {
            obs.vcd = Some(vcd::VcdWriter::to_file(&cfg, wclk, rclk, crate::io::AtomicFile::create(p)?));
        }
        let rep = cdc::simulate(&cfg, &clocks, words, a.wen, a.ren, Some(max_edges), &mut obs)?;
        if let Some(t) = obs.tr.take() {
            outputs.push(t.finish_file()?);
        }
        if let Some(v) = obs.vcd.take() {
            outputs.push(v.finish_file()?);
        }
        rep
    };
    let v = &report.verdict;
    let only_unfinished = !v.finished
        && v.duplicated == 0
        && v.reordered == 0
        && v.truly_full_pushes == 0
        && v.truly_empty_pops == 0
        && v.garbage == 0
        && v.corrupt_crossings == 0
        && v.lost == words - report.stats.r.client_ops.min(words);
    if only_unfinished && cfg.fault() == Fault::None {
        // An input error (the bound was too small): no output is written.
        return Err(Error::input(format!(
            "run did not finish: {} of {} words taken after {} edges (raise --max-edges; no output written)",
            report.stats.r.client_ops,
            words,
            report.stats.w.edges + report.stats.r.edges
        )));
    }
    if let Some(p) = &a.meta_log {
        let mut f = crate::io::AtomicFile::create(p)?;
        let mut s = String::from("# time_ps dom kind old new seen\n");
        for e in &report.events {
            let k = match e.kind {
                MetaKind::Setup => "setup",
                MetaKind::Hold => "hold",
                MetaKind::FanOut => "fanout",
            };
            s.push_str(&format!(
                "{} {} {} {:x} {:x} {:x}\n",
                e.time_ps,
                e.dom.letter(),
                k,
                e.old,
                e.new,
                e.seen
            ));
            if s.len() >= 1 << 16 {
                f.write_all(s.as_bytes()).map_err(|e| Error::io(p, &e))?;
                s.clear();
            }
        }
        f.write_all(s.as_bytes()).map_err(|e| Error::io(p, &e))?;
        outputs.push(f);
    }
    // Plots are rendered before anything is published, so a failure leaves
    // no partial output.
    let plots = match &a.plot {
        Some(_) => histogram_plots(&a, &cfg, &clocks, &report)?,
        None => Vec::new(),
    };
    for f in outputs {
        f.commit()?;
    }
    if let Some(dir) = &a.plot {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, &e))?;
        for (name, r) in &plots {
            crate::plot::write(dir, name, r)?;
        }
    }
    if a.json {
        let mut ev = std::collections::BTreeMap::new();
        for e in &report.events {
            *ev.entry(format!("{:?}_{}", e.kind, e.dom.letter()).to_lowercase()).or_insert(0u64) += 1;
        }
        let j = serde_json::json!({
            "config": desc,
            "words": words,
            "finished": report.finished,
            "end_time_ps": report.end_time_ps,
            "verdict": report.verdict,
            "stats": report.stats,
            "write_throughput": report.write_throughput(),
            "read_throughput": report.read_throughput(),
            "meta_events": ev,
        });
        println!("{}", serde_json::to_string_pretty(&j).map_err(|e| Error::internal(e.to_string()))?);
    } else {
        print_summary(&desc, &report);
    }
    if !report.verdict.clean {
        if !report.finished {
            eprintln!(
                "bitmac: run stopped after {} edges with {} of {} words taken (raise --max-edges if the FIFO is correct); the trace/VCD written hold every edge simulated",
                report.stats.w.edges + report.stats.r.edges,
                report.stats.r.client_ops,
                words
            );
        }
        return Ok(1);
    }
    Ok(0)
}

/// The four histograms of a run (docs/cdc.md section 5) as plots, by file name.
fn histogram_plots(
    a: &Args,
    cfg: &cdc::FifoConfig,
    clocks: &ClockPair,
    r: &cdc::Report,
) -> Result<Vec<(&'static str, crate::plot::Rendered)>> {
    let s = &r.stats;
    // A short subtitle that fits the plot width (the full configuration is
    // in the text and JSON reports).
    let sub = format!(
        "{} words; depth {}, sync {}, wclk {} ps, rclk {} ps, wen {}%, ren {}%, seed {}{}{}",
        r.words,
        cfg.depth(),
        cfg.sync(),
        clocks.w.period_ps,
        clocks.r.period_ps,
        a.wen,
        a.ren,
        cfg.seed(),
        if cfg.meta().is_some() { ", meta" } else { "" },
        if cfg.variant().is_plain() { "" } else { ", variant" },
    );
    let mut out = Vec::new();
    for (name, counts, title, x, y) in [
        ("occupancy", &s.occupancy, "FIFO occupancy", "unread words after the edge", "edges"),
        ("lat_write_pop", &s.lat_write_pop, "latency push -> pop", "read edges", "words"),
        (
            "lat_write_rempty_clear",
            &s.lat_write_rempty_clear,
            "latency push -> rempty clear",
            "read edges",
            "clears",
        ),
        (
            "lat_read_wfull_clear",
            &s.lat_read_wfull_clear,
            "latency pop -> wfull clear",
            "write edges",
            "clears",
        ),
    ] {
        out.push((name, crate::plot::count_histogram(counts, title, &sub, x, y)?));
    }
    Ok(out)
}

fn hist(v: &[u64]) -> String {
    let parts: Vec<String> =
        v.iter().enumerate().filter(|(_, c)| **c > 0).map(|(k, c)| format!("{k}:{c}")).collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn print_summary(desc: &str, r: &cdc::Report) {
    let s = &r.stats;
    println!("config: {desc}");
    println!("words: {}  finished: {}  end_time_ps: {}", r.words, r.finished, r.end_time_ps);
    for (name, d, op, flag) in [("write", &s.w, "pushes", "wfull"), ("read", &s.r, "pops", "rempty")] {
        println!(
            "{name}: edges {}  enabled {}  {op} {} ({:.4}/edge, {:.4} Mwords/s)  stalls {}  {flag} pessimistic edges {}  {flag} asserts {} clears {}",
            d.edges,
            d.en_edges,
            d.ops,
            if d.edges == 0 { 0.0 } else { d.ops as f64 / d.edges as f64 },
            if r.end_time_ps == 0 { 0.0 } else { d.ops as f64 / (r.end_time_ps as f64 * 1e-6) },
            d.stall_edges,
            d.pessimistic_edges,
            d.flag_asserts,
            d.flag_clears
        );
    }
    println!("occupancy (words:edges): {}", hist(&s.occupancy));
    println!("latency write->rempty clear (read edges:count): {}", hist(&s.lat_write_rempty_clear));
    println!("latency read->wfull clear (write edges:count): {}", hist(&s.lat_read_wfull_clear));
    println!("latency write->pop (read edges:count): {}", hist(&s.lat_write_pop));
    let mut counts = std::collections::BTreeMap::new();
    for e in &r.events {
        *counts.entry((e.dom.letter(), format!("{:?}", e.kind).to_lowercase())).or_insert(0u64) += 1;
    }
    let ev: Vec<String> = counts.iter().map(|((d, k), c)| format!("{d}:{k}={c}")).collect();
    println!("metastability events: {}", if ev.is_empty() { "none".to_string() } else { ev.join(" ") });
    println!("scoreboard: {}", r.verdict.summary());
}

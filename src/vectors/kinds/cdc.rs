//! `cdc`: a two-clock asynchronous FIFO scenario (docs/cdc.md), exactly as
//! `bitmac cdc` runs it: the writer offers the words 0, 1, 2, ... and the
//! enables are drawn per edge from the case seed.
//!
//! Files: `trace.txt` (the `bitmac cdc --trace` format, byte-identical to
//! what `bitmac cdc` writes for the same parameters), `rdata` (output: the
//! popped words in order, `u<data_width>`), `rdata.stream` (cycle = index of
//! the read edge that popped the word, counted from 0 over all read edges
//! after reset release), optionally `fifo.vcd`, and `stats.json`.

use super::super::case::check_size;
use super::super::files::{Artifact, Role, Stream, Tensor, Text};
use super::KindOutput;
use crate::cdc::{self, trace, vcd, Clock, ClockPair, Fault, FifoSpec, Meta, Observer};
use crate::error::{Error, Result};
use crate::numerics::IntFormat;
use serde::{Deserialize, Serialize};

/// Metastability emulation windows (ps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSpec {
    pub setup_ps: u64,
    pub hold_ps: u64,
}

fn pct100() -> u32 {
    100
}

/// Case JSON of kind `cdc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcCase {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Seeds the enables, jitter and metastability (`bitmac cdc --seed`).
    pub seed: u64,
    pub wclk_ps: u64,
    pub rclk_ps: u64,
    #[serde(default)]
    pub wphase_ps: u64,
    #[serde(default)]
    pub rphase_ps: u64,
    #[serde(default)]
    pub wjitter_ps: u64,
    #[serde(default)]
    pub rjitter_ps: u64,
    /// FIFO depth, a power of two.
    pub depth: u64,
    /// Synchronizer flops per direction.
    pub sync: u32,
    pub data_width: u32,
    /// Words to move (1..=4096).
    pub words: u64,
    /// Write / read enable probability per edge, percent (default 100).
    #[serde(default = "pct100")]
    pub wen: u32,
    #[serde(default = "pct100")]
    pub ren: u32,
    /// Metastability emulation (absent: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaSpec>,
    /// Also write `fifo.vcd`.
    #[serde(default)]
    pub vcd: bool,
}

/// Largest default edge bound of a `cdc` vector case: 2^24 rising edges. A
/// correct FIFO finishes in about 1/16 of its bound, so a case's trace stays
/// near 2^20 lines (~35 MB) at most; the bound itself caps it at 2^24.
pub const CASE_EDGE_LIMIT: u64 = 1 << 24;

struct Both {
    tr: trace::TraceWriter,
    vcd: Option<vcd::VcdWriter>,
}

impl Observer for Both {
    fn instant(&mut self, sim: &cdc::Sim<'_>, t: u64, w: Option<cdc::EdgeRec>, r: Option<cdc::EdgeRec>) {
        self.tr.instant(sim, t, w, r);
        if let Some(x) = &mut self.vcd {
            x.instant(sim, t, w, r);
        }
    }
}

pub(crate) fn generate(c: &CdcCase) -> Result<KindOutput> {
    let words = c.words;
    if !(1..=4096).contains(&words) {
        return Err(Error::field("words", words, "1..=4096 (vector cases are kept small)"));
    }
    check_size("data_width", c.data_width as usize, 1, 64)?;
    let meta = c.meta.as_ref().map(|m| Meta { setup_ps: m.setup_ps, hold_ps: m.hold_ps });
    let cfg = FifoSpec {
        depth: c.depth,
        sync: c.sync,
        data_width: c.data_width,
        fault: Fault::None,
        meta,
        seed: c.seed,
    }
    .validate()?;
    let clocks = ClockPair {
        w: Clock { period_ps: c.wclk_ps, phase_ps: c.wphase_ps, jitter_ps: c.wjitter_ps },
        r: Clock { period_ps: c.rclk_ps, phase_ps: c.rphase_ps, jitter_ps: c.rjitter_ps },
    };
    clocks.validate(&cfg)?;
    for (f, v) in [("wen", c.wen), ("ren", c.ren)] {
        if !(1..=100).contains(&v) {
            return Err(Error::field(f, v, "1..=100 (percent of edges)"));
        }
    }
    // The same header `bitmac cdc --trace` writes.
    let desc = cdc::describe(&cfg, &clocks);
    let extra = [
        desc,
        format!("words={} wen={} ren={}", words, c.wen, c.ren),
        "one line per rising edge after reset release; W before R at an instant; state after the instant"
            .to_string(),
    ];
    // Bounded work and memory (the trace and VCD are held in memory): the
    // default edge bound (docs/cdc.md §7) must stay within CASE_EDGE_LIMIT.
    let max_edges = cdc::edge_bound_named(
        &cfg,
        &clocks,
        words,
        c.wen.min(c.ren).clamp(1, 100),
        None,
        CASE_EDGE_LIMIT,
        ["words", "wclk_ps/rclk_ps", "max_edges"],
    )?;
    let mut obs = Both {
        tr: trace::TraceWriter::new(&cfg, &extra),
        vcd: c.vcd.then(|| vcd::VcdWriter::new(&cfg, c.wclk_ps, c.rclk_ps)),
    };
    let report = cdc::simulate(&cfg, &clocks, words, c.wen, c.ren, Some(max_edges), &mut obs)?;
    if !report.finished || !report.verdict.clean {
        return Err(Error::input(format!(
            "the scenario did not move every word cleanly ({}); vector cases must",
            report.verdict.summary()
        )));
    }
    let text = obs.tr.out;
    // The popped words and the read-edge index of each pop.
    let (mut rdata, mut stream, mut redge) = (Vec::new(), Vec::new(), 0u64);
    for l in text.lines() {
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 10 && f[1] == "R" {
            if f[6] != "-" {
                let v: u64 = f[6]
                    .parse()
                    .map_err(|_| Error::internal(format!("cdc trace data `{}` is not a word", f[6])))?;
                rdata.push(i128::from(v));
                stream.push((redge, i128::from(v)));
            }
            redge += 1;
        }
    }
    let fmt = IntFormat::unsigned(c.data_width)?;
    let mut out = KindOutput::default();
    out.artifacts.push(Artifact::Text(Text {
        file: "trace.txt".into(),
        role: Role::Trace,
        encoding: "cdc-trace".into(),
        tensor: "trace".into(),
        bytes: text.into_bytes(),
    }));
    let n = rdata.len();
    out.artifacts.push(Artifact::Tensor(Tensor::int("rdata", Role::Output, &[n], fmt, rdata)));
    out.artifacts.push(Artifact::Stream(Stream {
        name: "rdata".into(),
        role: Role::Output,
        fmt,
        entries: stream,
    }));
    if let Some(v) = obs.vcd {
        out.artifacts.push(Artifact::Text(Text {
            file: "fifo.vcd".into(),
            role: Role::Waveform,
            encoding: "vcd".into(),
            tensor: "fifo".into(),
            bytes: v.finish().into_bytes(),
        }));
    }
    let s = |v: serde_json::Value| v;
    out.stats.insert(
        "stats".into(),
        s(serde_json::to_value(&report.stats).map_err(|e| Error::internal(e.to_string()))?),
    );
    out.stats.insert(
        "verdict".into(),
        s(serde_json::to_value(&report.verdict).map_err(|e| Error::internal(e.to_string()))?),
    );
    out.stats.insert("end_time_ps".into(), serde_json::json!(report.end_time_ps));
    out.stats.insert("meta_events".into(), serde_json::json!(report.events.len()));
    out.stats.insert("read_edges".into(), serde_json::json!(redge));
    Ok(out)
}

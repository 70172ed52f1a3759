//! The two-clock asynchronous FIFO (Cummings SNUG 2002, style 1): an
//! edge-exact model with synchronizers, registered flags, optional seeded
//! clock jitter and metastability emulation, fault modes, a scoreboard and
//! statistics. `docs/cdc.md` states every rule precisely.
//!
//! Entry points:
//! - [`simulate`]: the `bitmac cdc` run (producer offers words 0, 1, 2, ...);
//! - [`transfer`] / [`transfer_trace`]: move given words through the FIFO with
//!   a producer / consumer [`Pattern`] (for the datapath and `bitmac gen`);
//! - [`trace::parse`] + [`trace::replay`]: check a trace (e.g. from RTL);
//! - [`mtbf`]: synchronizer MTBF.

pub mod config;
mod fast;
pub mod mtbf;
pub mod overlap;
mod sim;
pub mod size;
pub mod stats;
pub mod step;
pub mod trace;
pub mod vcd;

pub use config::{Clock, ClockPair, Domain, Fault, FifoConfig, FifoSpec, Meta, Variant};
pub use sim::{Data, EdgeRec, MetaEvent, MetaKind, NoObserver, Observer, Pattern, Sim};
pub use stats::{DomainStats, Stats, Verdict};
pub use step::{StepEdge, StepFifo};

use crate::error::{Error, Result};
use sim::{Source, WordLog};

/// Default bound on the number of rising edges (both domains) of a run that
/// moves `words` words: generous enough that a correct FIFO with enables of
/// at least `min_pct` percent essentially never hits it, small enough that a
/// stuck (faulty) FIFO ends quickly.
/// `16 * (words + depth + 2*sync + 16) * ceil(Pmax/Pmin) * ceil(100/min_pct) + 1024`.
pub fn default_max_edges(cfg: &FifoConfig, clocks: &ClockPair, words: u64, min_pct: u32) -> u64 {
    let pmax = clocks.w.period_ps.max(clocks.r.period_ps);
    let pmin = clocks.w.period_ps.min(clocks.r.period_ps);
    let ratio = pmax.div_ceil(pmin);
    let pct = min_pct.clamp(1, 100) as u64;
    16u64
        .saturating_mul(words.saturating_add(cfg.depth() + 2 * cfg.sync() as u64 + 16))
        .saturating_mul(ratio + 1)
        .saturating_mul(100u64.div_ceil(pct))
        .saturating_add(1024)
}

/// Largest default edge bound of a run without an observer (docs/cdc.md §7):
/// 2^34 rising edges. A correct FIFO needs about 1/16 of its bound, so a
/// default run does at most ~1.1e9 edges (seconds on the fast path).
pub const EDGE_LIMIT: u64 = 1 << 34;
/// Largest default edge bound of a run with an observer (trace, VCD, vector
/// case): 2^30 rising edges (a trace line is about 30 bytes).
pub const EDGE_LIMIT_OBSERVED: u64 = 1 << 30;
/// Simulated time stays below this (ps): every edge the bound allows, and the
/// next edge of the slower clock, must come before 2^63 ps.
pub const TIME_LIMIT_PS: u64 = 1 << 63;

/// The edge bound of a run, checked before any work starts (docs/cdc.md §7).
/// `max_edges` (the `--max-edges` override) is taken as given (1 or more);
/// otherwise [`default_max_edges`] must not exceed `limit` ([`EDGE_LIMIT`] or
/// [`EDGE_LIMIT_OBSERVED`]). In both cases `(bound + 2) * Pmin + 2 * Pmax`
/// must stay below [`TIME_LIMIT_PS`], so no edge time saturates. Errors are
/// one line naming the flag (`--words`, `--wclk-ps/--rclk-ps`, `--max-edges`).
pub fn edge_bound(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    words: u64,
    min_pct: u32,
    max_edges: Option<u64>,
    limit: u64,
) -> Result<u64> {
    edge_bound_named(
        cfg,
        clocks,
        words,
        min_pct,
        max_edges,
        limit,
        ["--words", "--wclk-ps/--rclk-ps", "--max-edges"],
    )
}

/// [`edge_bound`] with other names for the words, clocks and edge-bound
/// fields in its errors (e.g. JSON fields of a vector case).
#[allow(clippy::too_many_arguments)]
pub fn edge_bound_named(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    words: u64,
    min_pct: u32,
    max_edges: Option<u64>,
    limit: u64,
    names: [&str; 3],
) -> Result<u64> {
    let pmax = clocks.w.period_ps.max(clocks.r.period_ps) as u128;
    let pmin = clocks.w.period_ps.min(clocks.r.period_ps) as u128;
    // Largest bound whose edges all come before TIME_LIMIT_PS.
    let time_max = ((TIME_LIMIT_PS as u128 - 2 * pmax) / pmin).saturating_sub(2).min(u64::MAX as u128) as u64;
    match max_edges {
        Some(0) => Err(Error::field(names[2], 0, format!("1..={time_max}"))),
        Some(m) if m > time_max => Err(Error::field(
            names[2],
            m,
            format!("1..={time_max} (simulated time must stay below 2^63 ps at the {pmin} ps clock)"),
        )),
        Some(m) => Ok(m),
        None => {
            let d = default_max_edges(cfg, clocks, words, min_pct);
            let ratio1 = ClockPair { w: clocks.w, r: clocks.w };
            let (flag, val) = if default_max_edges(cfg, &ratio1, words, min_pct) > limit.min(time_max) {
                (names[0], words.to_string())
            } else {
                (names[1], format!("{}/{}", clocks.w.period_ps, clocks.r.period_ps))
            };
            if d > limit {
                return Err(Error::field(
                    flag,
                    val,
                    format!(
                        "a default edge bound of at most {limit} rising edges; this run's is {d} (docs/cdc.md §7); pass {} N to allow more", names[2]
                    ),
                ));
            }
            if d > time_max {
                return Err(Error::field(
                    flag,
                    val,
                    format!(
                        "a default edge bound of at most {time_max} rising edges at these clocks (simulated time below 2^63 ps); this run's is {d}; pass a smaller {}", names[2]
                    ),
                ));
            }
            Ok(d)
        }
    }
}

/// Outcome of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// Words offered by the producer.
    pub words: u64,
    /// The consumer took all words before the edge cap.
    pub finished: bool,
    /// Time of the last processed instant (ps).
    pub end_time_ps: u64,
    /// Statistics.
    pub stats: Stats,
    /// Scoreboard verdict.
    pub verdict: Verdict,
    /// Metastability events, in simulation order.
    pub events: Vec<MetaEvent>,
}

impl Report {
    /// Pushes per write edge.
    pub fn write_throughput(&self) -> f64 {
        ratio(self.stats.w.ops, self.stats.w.edges)
    }
    /// Pops per read edge.
    pub fn read_throughput(&self) -> f64 {
        ratio(self.stats.r.ops, self.stats.r.edges)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn check_pattern(p: &Pattern, what: &str, items: u64) -> Result<u32> {
    match p {
        Pattern::Always => Ok(100),
        Pattern::Percent(x) => {
            if !(1..=100).contains(x) {
                return Err(Error::field(what, x, "1..=100 (percent of edges)"));
            }
            Ok(*x)
        }
        Pattern::ReadyAt(v) => {
            if (v.len() as u64) < items {
                return Err(Error::input(format!(
                    "{what}: ReadyAt has {} entries for {items} items",
                    v.len()
                )));
            }
            if v.windows(2).any(|w| w[0] > w[1]) {
                return Err(Error::input(format!("{what}: ReadyAt edge indices must be non-decreasing")));
            }
            Ok(100)
        }
        Pattern::List(_) => Err(Error::input(format!("{what}: List patterns are for replay only"))),
    }
}

/// Run the FIFO until the consumer has taken `items` items or `max_edges`
/// rising edges were processed. Validates clocks/patterns.
#[allow(clippy::too_many_arguments)]
fn run_core<O: Observer>(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    items: u64,
    words: Option<&[u64]>,
    producer: &Pattern,
    consumer: &Pattern,
    max_edges: Option<u64>,
    obs: &mut O,
    log: bool,
) -> Result<(Report, Option<WordLog>)> {
    clocks.validate(cfg)?;
    let pw = check_pattern(producer, "--wen", items)?;
    let pr = check_pattern(consumer, "--ren", items)?;
    let limit = if obs.is_noop() { EDGE_LIMIT } else { EDGE_LIMIT_OBSERVED };
    let max_edges = edge_bound(cfg, clocks, items, pw.min(pr), max_edges, limit)?;
    let mut sim = Sim::new(cfg, Source::Clocks { clocks, producer, consumer, items }, words);
    if log {
        sim.log = Some(WordLog::default());
    }
    while sim.delivered < items && sim.w.edges + sim.r.edges < max_edges {
        if !sim.step(obs) {
            break;
        }
    }
    let finished = sim.delivered >= items;
    let mut stats = sim.stats.clone();
    stats.w.edges = sim.w.edges;
    stats.r.edges = sim.r.edges;
    let verdict = sim.sb.verdict(items, finished);
    let report = Report {
        words: items,
        finished,
        end_time_ps: sim.last_t,
        stats,
        verdict,
        events: std::mem::take(&mut sim.events),
    };
    Ok((report, sim.log.take()))
}

/// The `bitmac cdc` run: the producer offers words 0, 1, 2, ... (value
/// `k & data_mask`), `n_words` of them; the write / read enables are drawn per
/// edge with probability `wen_pct` / `ren_pct` percent (1..=100). The run ends
/// at the instant the consumer takes the `n_words`-th word, or after
/// `max_edges` rising edges (default [`default_max_edges`]).
#[allow(clippy::too_many_arguments)]
pub fn simulate<O: Observer>(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    n_words: u64,
    wen_pct: u32,
    ren_pct: u32,
    max_edges: Option<u64>,
    obs: &mut O,
) -> Result<Report> {
    if n_words == 0 {
        return Err(Error::field("--words", 0, "1..=18446744073709551614"));
    }
    let p = |x: u32| if x >= 100 { Pattern::Always } else { Pattern::Percent(x) };
    if !(1..=100).contains(&wen_pct) {
        return Err(Error::field("--wen", wen_pct, "1..=100 (percent of write edges)"));
    }
    if !(1..=100).contains(&ren_pct) {
        return Err(Error::field("--ren", ren_pct, "1..=100 (percent of read edges)"));
    }
    let (pw, pr) = (p(wen_pct), p(ren_pct));
    let no_meta = cfg.meta().is_none_or(|m| m.setup_ps == 0 && m.hold_ps == 0);
    // Variants run on the general simulator (the fast path is the plain core).
    let plain = no_meta && cfg.fault() == Fault::None && cfg.variant().is_plain();
    if obs.is_noop() && plain {
        clocks.validate(cfg)?;
        let max_edges = edge_bound(cfg, clocks, n_words, wen_pct.min(ren_pct), max_edges, EDGE_LIMIT)?;
        let out = fast::run(cfg, clocks, n_words, &pw, &pr, max_edges);
        let finished = out.taken >= n_words;
        let verdict = out.sb.verdict(n_words, finished);
        return Ok(Report {
            words: n_words,
            finished,
            end_time_ps: out.last_t,
            stats: out.stats,
            verdict,
            events: Vec::new(),
        });
    }
    Ok(run_core(cfg, clocks, n_words, None, &pw, &pr, max_edges, obs, false)?.0)
}

/// [`simulate`] forced through the general simulator (for tests comparing
/// it with the fast path).
#[doc(hidden)]
pub fn simulate_general(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    n_words: u64,
    wen_pct: u32,
    ren_pct: u32,
) -> Result<Report> {
    struct Any;
    impl Observer for Any {
        fn instant(&mut self, _: &Sim<'_>, _: u64, _: Option<EdgeRec>, _: Option<EdgeRec>) {}
    }
    simulate(cfg, clocks, n_words, wen_pct, ren_pct, None, &mut Any)
}

/// Result of [`transfer`].
#[derive(Clone, Debug)]
pub struct TransferReport {
    /// Words in the order the consumer took them (equal to the input when
    /// the FIFO is correct).
    pub popped: Vec<u64>,
    /// Write-edge index (0-based) at which word k was pushed.
    pub push_edge: Vec<u64>,
    /// Time (ps) at which word k was pushed.
    pub push_time_ps: Vec<u64>,
    /// Read-edge index (0-based) of the k-th take.
    pub pop_edge: Vec<u64>,
    /// Time (ps) of the k-th take.
    pub pop_time_ps: Vec<u64>,
    /// Write-domain cycles (rising edges) simulated.
    pub write_cycles: u64,
    /// Read-domain cycles simulated.
    pub read_cycles: u64,
    /// Write edges where the producer offered but wfull stalled it.
    pub write_stalls: u64,
    /// Read edges where the consumer wanted a word but rempty stalled it.
    pub read_stalls: u64,
    /// occupancy[k]: edges after which k unread words were in the FIFO.
    pub occupancy: Vec<u64>,
    /// The full run report (statistics, verdict, events).
    pub report: Report,
}

fn transfer_core<O: Observer>(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    words: &[u64],
    producer: &Pattern,
    consumer: &Pattern,
    max_edges: Option<u64>,
    obs: &mut O,
) -> Result<TransferReport> {
    if words.is_empty() {
        return Err(Error::input("transfer: no words"));
    }
    let mask = cfg.data_mask();
    if let Some((i, w)) = words.iter().enumerate().find(|(_, w)| **w & !mask != 0) {
        return Err(Error::input(format!(
            "transfer: word {i} = {w} does not fit in data_width {} (allowed: 0..={mask})",
            cfg.data_width()
        )));
    }
    let (report, log) =
        run_core(cfg, clocks, words.len() as u64, Some(words), producer, consumer, max_edges, obs, true)?;
    let log = log.unwrap_or_default();
    if !report.finished {
        return Err(Error::input(format!(
            "transfer did not finish: {} of {} words taken after {} edges",
            log.popped.len(),
            words.len(),
            report.stats.w.edges + report.stats.r.edges
        )));
    }
    Ok(TransferReport {
        popped: log.popped,
        push_edge: log.push_edge,
        push_time_ps: log.push_time,
        pop_edge: log.pop_edge,
        pop_time_ps: log.pop_time,
        write_cycles: report.stats.w.edges,
        read_cycles: report.stats.r.edges,
        write_stalls: report.stats.w.stall_edges,
        read_stalls: report.stats.r.stall_edges,
        occupancy: report.stats.occupancy.clone(),
        report,
    })
}

/// Move `words` (each must fit in the data width) from a producer in the
/// write domain to a consumer in the read domain. The producer offers word k
/// per `producer` (e.g. [`Pattern::ReadyAt`] with the write-edge index at
/// which the word exists), the consumer takes per `consumer`. The run ends
/// when the consumer took all words; an error if it cannot finish within
/// [`default_max_edges`]. Deterministic for a given `cfg.seed()`.
pub fn transfer(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    words: &[u64],
    producer: &Pattern,
    consumer: &Pattern,
) -> Result<TransferReport> {
    transfer_core(cfg, clocks, words, producer, consumer, None, &mut NoObserver)
}

/// [`transfer`] with an explicit edge bound (`max_edges` rising edges, both
/// domains), e.g. for a producer that waits for a long computation.
pub fn transfer_bounded(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    words: &[u64],
    producer: &Pattern,
    consumer: &Pattern,
    max_edges: u64,
) -> Result<TransferReport> {
    transfer_core(cfg, clocks, words, producer, consumer, Some(max_edges.max(1)), &mut NoObserver)
}

/// [`transfer`] plus the trace text (the `bitmac cdc --trace` format, with
/// comment header), e.g. for `bitmac gen` CDC vector cases.
pub fn transfer_trace(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    words: &[u64],
    producer: &Pattern,
    consumer: &Pattern,
) -> Result<(TransferReport, String)> {
    let mut tw = trace::TraceWriter::new(cfg, &[describe(cfg, clocks)]);
    let rep = transfer_core(cfg, clocks, words, producer, consumer, None, &mut tw)?;
    Ok((rep, tw.out))
}

/// [`simulate`] with a trace: returns the report and the trace text exactly
/// as `bitmac cdc --trace` writes it (same comment header), e.g. for
/// `bitmac gen` CDC vector cases.
pub fn simulate_trace(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    n_words: u64,
    wen_pct: u32,
    ren_pct: u32,
) -> Result<(Report, String)> {
    let mut tw = trace::TraceWriter::new(cfg, &trace_header(cfg, clocks, n_words, wen_pct, ren_pct));
    let rep = simulate(cfg, clocks, n_words, wen_pct, ren_pct, None, &mut tw)?;
    Ok((rep, tw.out))
}

/// The comment lines `bitmac cdc --trace` puts after `# bitmac cdc trace v1`.
pub fn trace_header(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    n_words: u64,
    wen_pct: u32,
    ren_pct: u32,
) -> Vec<String> {
    vec![
        describe(cfg, clocks),
        format!("words={n_words} wen={wen_pct} ren={ren_pct}"),
        "one line per rising edge after reset release; W before R at an instant; state after the instant"
            .into(),
    ]
}

/// One-line description of a configuration (used in trace headers).
pub fn describe(cfg: &FifoConfig, clocks: &ClockPair) -> String {
    let meta = match cfg.meta() {
        Some(m) => format!("setup={}ps,hold={}ps", m.setup_ps, m.hold_ps),
        None => "off".into(),
    };
    format!(
        "depth={} sync={} data_width={} wclk_ps={} wphase_ps={} wjitter_ps={} rclk_ps={} rphase_ps={} rjitter_ps={} seed={} meta={} fault={}{}",
        cfg.depth(),
        cfg.sync(),
        cfg.data_width(),
        clocks.w.period_ps,
        clocks.w.phase_ps,
        clocks.w.jitter_ps,
        clocks.r.period_ps,
        clocks.r.phase_ps,
        clocks.r.jitter_ps,
        cfg.seed(),
        meta,
        cfg.fault().name(),
        cfg.variant().describe()
    )
}

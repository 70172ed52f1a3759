//! FIFO sizing (`bitmac cdc --size`, docs/cdc.md §17): the smallest
//! synchronizer count S that meets an MTBF target and, with that S, the
//! smallest depth D = 2^n at which the producer never stalls on `wfull`.
//!
//! - S: the smallest S in 2..=16 whose system MTBF (the FIFO's two Gray
//!   pointer synchronizers, [`super::mtbf`]) is at least the target, with the
//!   pointers' change rates bounded by the enable rates: w2r samples at
//!   f_rclk with f_data = f_wclk * (producer's enabled fraction), r2w at
//!   f_wclk with f_data = f_rclk * (consumer's enabled fraction). A larger S
//!   only lengthens the resolution time, so the first S that meets the
//!   target is the smallest.
//! - D: for D = 2, 4, ..., 65536 in order, the run of [`super::transfer`]
//!   (same clocks, words, patterns, seed; the plain core with S) is
//!   simulated and its write stall edges counted; the first D with none is
//!   the answer. Each run is bounded by [`super::edge_bound`].

use super::mtbf::{system_log10, SyncMtbf, Timing};
use super::{ClockPair, FifoSpec, Pattern};
use crate::error::{Error, Result};
use serde::Serialize;

/// A sizing question.
#[derive(Clone, Debug)]
pub struct SizeQuery {
    /// Write / read clocks.
    pub clocks: ClockPair,
    /// Data width (bits).
    pub data_width: u32,
    /// Words moved per run.
    pub words: u64,
    /// Producer pattern (`Percent`, `Always` or a burst `ReadyAt`).
    pub producer: Pattern,
    /// Fraction of write edges with the producer enabled (for the MTBF data rate).
    pub producer_duty: f64,
    /// Consumer pattern.
    pub consumer: Pattern,
    /// Fraction of read edges with the consumer enabled.
    pub consumer_duty: f64,
    /// Flop timing (its `stages` is ignored: S is searched).
    pub timing: Timing,
    /// MTBF target (s).
    pub mtbf_target_s: f64,
    /// Seed of the runs.
    pub seed: u64,
}

/// One simulated depth.
#[derive(Clone, Debug, Serialize)]
pub struct DepthTry {
    /// Depth.
    pub depth: u64,
    /// Producer edges stalled by `wfull`.
    pub write_stalls: u64,
    /// Consumer edges that waited on `rempty`.
    pub read_waits: u64,
    /// Time of the last delivery (ps).
    pub end_time_ps: u64,
}

/// The answer.
#[derive(Clone, Debug, Serialize)]
pub struct SizeReport {
    /// Smallest synchronizer count meeting the MTBF target.
    pub sync: u32,
    /// The two synchronizers at that S.
    pub synchronizers: Vec<SyncMtbf>,
    /// log10 of the system MTBF (s) at that S.
    pub log10_mtbf_s: f64,
    /// Smallest depth without a write stall (None: none up to 65536).
    pub depth: Option<u64>,
    /// Every depth simulated, in order.
    pub tried: Vec<DepthTry>,
}

/// Answer `q` (see the module docs). Errors: a target no S in 2..=16 meets
/// (one line naming `--mtbf-s` with the best MTBF reachable), bad timing,
/// or a run beyond its edge bound.
pub fn size(q: &SizeQuery) -> Result<SizeReport> {
    if !(q.mtbf_target_s.is_finite() && q.mtbf_target_s > 0.0) {
        return Err(Error::field("--mtbf-s", q.mtbf_target_s, "a positive finite number of seconds"));
    }
    let fw = 1e12 / q.clocks.w.period_ps as f64;
    let fr = 1e12 / q.clocks.r.period_ps as f64;
    let target = q.mtbf_target_s.log10();
    let mut best = None;
    for s in 2..=super::config::MAX_SYNC {
        let t = Timing { stages: s, ..q.timing };
        t.validate()?;
        let parts = vec![
            t.synchronizer("w2r", fr, (fw * q.producer_duty).max(f64::MIN_POSITIVE))?,
            t.synchronizer("r2w", fw, (fr * q.consumer_duty).max(f64::MIN_POSITIVE))?,
        ];
        let l = system_log10(&parts);
        if l >= target {
            best = Some((s, parts, l));
            break;
        }
        if s == super::config::MAX_SYNC {
            return Err(Error::field(
                "--mtbf-s",
                format!("{:e}", q.mtbf_target_s),
                format!("at most 10^{l:.3} s (the system MTBF with 16 synchronizer flops at these clocks and timing)"),
            ));
        }
    }
    let (sync, synchronizers, log10_mtbf_s) = best.ok_or_else(|| Error::internal("no S searched"))?;
    let mut tried = Vec::new();
    let mut depth = None;
    let words: Vec<u64> = (0..q.words).map(|k| k & mask(q.data_width)).collect();
    for n in 1..=16u32 {
        let d = 1u64 << n;
        let cfg = FifoSpec { depth: d, sync, data_width: q.data_width, seed: q.seed, ..Default::default() }
            .validate()?;
        let rep = super::transfer(&cfg, &q.clocks, &words, &q.producer, &q.consumer)?;
        tried.push(DepthTry {
            depth: d,
            write_stalls: rep.write_stalls,
            read_waits: rep.read_stalls,
            end_time_ps: rep.report.end_time_ps,
        });
        if rep.write_stalls == 0 {
            depth = Some(d);
            break;
        }
    }
    Ok(SizeReport { sync, synchronizers, log10_mtbf_s, depth, tried })
}

fn mask(w: u32) -> u64 {
    if w >= 64 {
        u64::MAX
    } else {
        (1u64 << w) - 1
    }
}

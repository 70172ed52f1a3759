//! Scoreboard (is the data stream intact?) and statistics (how did it flow?).
//!
//! Everything here is ordered (Vec / BTreeSet), so reports are deterministic.

use serde::Serialize;
use std::collections::BTreeSet;

/// Add one to bucket `k` of a histogram stored as a dense Vec.
#[inline]
pub(crate) fn bump(v: &mut Vec<u64>, k: u64) {
    let k = k as usize;
    if k >= v.len() {
        v.resize(k + 1, 0);
    }
    v[k] += 1;
}

/// Checks the consumer's stream against the producer's: the consumer must
/// receive word 0, 1, 2, ... exactly once each, in order; the memory must
/// never be written over an unread word nor read where no unread word is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scoreboard {
    pub(crate) expected: u64,
    pub(crate) missing: BTreeSet<u64>,
    /// Words received a second time.
    pub duplicated: u64,
    /// Words received after a later word (each counted once, when it arrives).
    pub reordered: u64,
    /// Pushes into a slot still holding an unread word (overwrite).
    pub truly_full_pushes: u64,
    /// Pops / consumer takes from a slot holding no unread word.
    pub truly_empty_pops: u64,
    /// Takes from a memory slot that was never written (`x`).
    pub garbage: u64,
    /// Synchronizer captures of a value the source pointer never held (a
    /// mix of its old and new bits): a corrupted multi-bit crossing.
    pub corrupt_crossings: u64,
}

impl Scoreboard {
    #[inline]
    pub(crate) fn receive(&mut self, seq: u64) {
        if seq == self.expected {
            self.expected += 1;
        } else if seq > self.expected {
            for k in self.expected..seq {
                self.missing.insert(k);
            }
            self.expected = seq + 1;
        } else if self.missing.remove(&seq) {
            self.reordered += 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// The final verdict once the run ended with `words` words offered.
    pub fn verdict(&self, words: u64, finished: bool) -> Verdict {
        let never = words.saturating_sub(self.expected);
        let lost = self.missing.len() as u64 + never;
        let first_lost = self.missing.iter().next().copied().or((never > 0).then_some(self.expected));
        let clean = finished
            && lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.truly_full_pushes == 0
            && self.truly_empty_pops == 0
            && self.garbage == 0
            && self.corrupt_crossings == 0;
        Verdict {
            clean,
            finished,
            lost,
            first_lost,
            duplicated: self.duplicated,
            reordered: self.reordered,
            truly_full_pushes: self.truly_full_pushes,
            truly_empty_pops: self.truly_empty_pops,
            garbage: self.garbage,
            corrupt_crossings: self.corrupt_crossings,
        }
    }
}

/// The scoreboard's findings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// No finding at all and the run finished.
    pub clean: bool,
    /// The consumer took all words before the edge cap.
    pub finished: bool,
    /// Words never received (late words count as reordered, not lost).
    pub lost: u64,
    /// The lowest lost word index, if any.
    pub first_lost: Option<u64>,
    /// Words received more than once (extra copies).
    pub duplicated: u64,
    /// Words received after a later one.
    pub reordered: u64,
    /// Pushes over an unread word.
    pub truly_full_pushes: u64,
    /// Pops where no unread word was.
    pub truly_empty_pops: u64,
    /// Reads of never-written memory.
    pub garbage: u64,
    /// Synchronized pointer values the source never held.
    pub corrupt_crossings: u64,
}

impl Verdict {
    /// One-line summary: `clean` or the list of findings.
    pub fn summary(&self) -> String {
        if self.clean {
            return "clean".into();
        }
        let mut p = Vec::new();
        if !self.finished {
            p.push("did not finish".to_string());
        }
        if self.lost > 0 {
            p.push(format!("{} lost (first: word {})", self.lost, self.first_lost.unwrap_or(0)));
        }
        for (n, what) in [
            (self.duplicated, "duplicated"),
            (self.reordered, "reordered"),
            (self.truly_full_pushes, "pushes when truly full"),
            (self.truly_empty_pops, "pops when truly empty"),
            (self.garbage, "reads of never-written memory"),
            (
                self.corrupt_crossings,
                "corrupted pointer crossings (synchronized value never held by the source)",
            ),
        ] {
            if n > 0 {
                p.push(format!("{n} {what}"));
            }
        }
        format!("FAIL: {}", p.join(", "))
    }
}

/// Counters of one domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DomainStats {
    /// Rising edges.
    pub edges: u64,
    /// Edges with the enable (winc / rinc) high.
    pub en_edges: u64,
    /// Pushes (W) / pops (R) done by the FIFO's pointer logic.
    pub ops: u64,
    /// Words the producer saw accepted (W) / the consumer took (R); equal to
    /// `ops` except in the single-flop fault.
    pub client_ops: u64,
    /// Edges with the enable high and the flag (wfull / rempty) set: stalls.
    pub stall_edges: u64,
    /// Edges at which the flag was set although the memory was not truly
    /// full (W) / empty (R): the flag's pessimism.
    pub pessimistic_edges: u64,
    /// Flag 0 -> 1 transitions.
    pub flag_asserts: u64,
    /// Flag 1 -> 0 transitions.
    pub flag_clears: u64,
}

/// Statistics of a run. Histograms are dense Vecs indexed by the value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Write domain.
    pub w: DomainStats,
    /// Read domain.
    pub r: DomainStats,
    /// occupancy[k]: rising edges (either domain) after which exactly k
    /// unread words were in the memory.
    pub occupancy: Vec<u64>,
    /// Latency, in read edges strictly after the push, from a push to the
    /// rempty clear that exposes that word as head.
    pub lat_write_rempty_clear: Vec<u64>,
    /// Latency, in write edges strictly after the pop, from the pop that
    /// freed the next write slot to the wfull clear.
    pub lat_read_wfull_clear: Vec<u64>,
    /// Latency, in read edges strictly after the push, from push to take.
    pub lat_write_pop: Vec<u64>,
}

impl Stats {
    pub(crate) fn new(depth: u64) -> Stats {
        Stats { occupancy: vec![0; depth as usize + 1], ..Default::default() }
    }
}

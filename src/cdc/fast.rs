//! The fast path of [`super::simulate`]: the correct design (no fault, no
//! metastability), no observer. Same rules, same statistics and scoreboard as
//! [`super::sim::Sim`], but with all state in locals so it stays in registers
//! (the general simulator keeps it in a struct shared with observers). The
//! tests check both paths agree on every statistic for random configurations.
//!
//! The loop is monomorphized over the edge sources (periodic clocks: a plain
//! add per edge; jittered: the general [`TimeSrc`]), the enable sources
//! (always on: no draw at all; percent: one draw per edge) and the
//! synchronizer depth (S = 2: two registers; other S: a ring), so the common
//! case carries no per-edge dispatch. Every variant draws exactly the random
//! numbers the general simulator draws, in the same order. Each instant is
//! one of three cases (write edge only, read edge only, both), each with
//! straight-line code for its domain(s) instead of `if hw` / `if hr` tests.

use super::config::{ClockPair, FifoConfig};
use super::sim::{stream, Pattern, TimeSrc, NEVER, STREAM_REN, STREAM_RJIT, STREAM_WEN, STREAM_WJIT};
use super::stats::{Scoreboard, Stats};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

/// Slot marker: never written.
const NO_SEQ: u64 = u64::MAX;

pub(crate) struct FastOut {
    pub stats: Stats,
    pub sb: Scoreboard,
    pub last_t: u64,
    pub taken: u64,
}

fn pct(p: &Pattern) -> u32 {
    match p {
        Pattern::Percent(x) => *x,
        _ => 100,
    }
}

/// Rising-edge times of one clock.
trait Edges {
    fn next(&mut self) -> u64;
}

/// Jitter-free clock: edge k at `phase + k*period` (saturating, as
/// [`TimeSrc::next`] with no jitter).
struct Periodic {
    base: u64,
    period: u64,
}

impl Edges for Periodic {
    #[inline(always)]
    fn next(&mut self) -> u64 {
        let b = self.base;
        self.base = b.saturating_add(self.period);
        b
    }
}

impl Edges for TimeSrc {
    #[inline(always)]
    fn next(&mut self) -> u64 {
        TimeSrc::next(self)
    }
}

/// Raw enable of the next edge of one domain.
trait Enable {
    fn draw(&mut self) -> bool;
}

/// `Always` (or 100 %): no random number is drawn.
struct On;

impl Enable for On {
    #[inline(always)]
    fn draw(&mut self) -> bool {
        true
    }
}

/// `Percent(p)`: `next_u32() % 100 < p` on the domain's stream (no draw at 100).
struct Pct {
    p: u32,
    rng: ChaCha8Rng,
}

impl Enable for Pct {
    #[inline(always)]
    fn draw(&mut self) -> bool {
        self.p >= 100 || (self.rng.next_u32() % 100) < self.p
    }
}

/// A synchronizer chain: `shift(v)` captures `v` into the first flop and
/// returns what the last flop held before the edge.
trait Chain {
    fn shift(&mut self, v: u32) -> u32;
}

/// S = 2.
#[derive(Default)]
struct Two {
    first: u32,
    last: u32,
}

impl Chain for Two {
    #[inline(always)]
    fn shift(&mut self, v: u32) -> u32 {
        let out = self.last;
        self.last = self.first;
        self.first = v;
        out
    }
}

/// Any S: a ring whose cursor points at the oldest (output) flop.
struct Ring {
    q: [u32; super::config::MAX_SYNC as usize],
    c: usize,
    s: usize,
}

impl Chain for Ring {
    #[inline(always)]
    fn shift(&mut self, v: u32) -> u32 {
        let c = self.c % self.q.len();
        let out = self.q[c];
        self.q[c] = v;
        self.c = if c + 1 == self.s { 0 } else { c + 1 };
        out
    }
}

/// Add one to bucket `k` of a dense histogram (grown to `k + 1` when needed,
/// exactly as [`super::stats::bump`]).
#[inline(always)]
fn bump(v: &mut Vec<u64>, k: u64) {
    match v.get_mut(k as usize) {
        Some(x) => *x += 1,
        None => grow(v, k),
    }
}

#[cold]
#[inline(never)]
fn grow(v: &mut Vec<u64>, k: u64) {
    super::stats::bump(v, k);
}

/// Per memory slot: sequence number of the word written last (NO_SEQ =
/// never written), read-edge count at its push, write-edge count at the pop
/// that freed it, unread flag.
#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    push_r: u64,
    pop_w: u64,
    valid: bool,
}

/// Run until the consumer took `items` words or `max_edges` edges.
/// `producer` / `consumer` must be `Always` or `Percent`.
pub(crate) fn run(
    cfg: &FifoConfig,
    clocks: &ClockPair,
    items: u64,
    producer: &Pattern,
    consumer: &Pattern,
    max_edges: u64,
) -> FastOut {
    let seed = cfg.seed;
    let (pw, pr) = (pct(producer), pct(consumer));
    let periodic = clocks.w.jitter_ps == 0 && clocks.r.jitter_ps == 0;
    let always = pw >= 100 && pr >= 100;
    let per = |c: &super::config::Clock| Periodic { base: c.phase_ps, period: c.period_ps };
    let src = |c: &super::config::Clock, id: u64| TimeSrc::Clock {
        period: c.period_ps,
        base: c.phase_ps,
        jitter: c.jitter_ps,
        rng: (c.jitter_ps > 0).then(|| Box::new(stream(seed, id))),
    };
    let pcts =
        || (Pct { p: pw, rng: stream(seed, STREAM_WEN) }, Pct { p: pr, rng: stream(seed, STREAM_REN) });
    let a = Args { cfg, items, max_edges };
    // The enable streams are only consumed by `Pct`, and `On` is chosen only
    // when neither domain would draw, so every variant consumes the same
    // random numbers as the general simulator.
    macro_rules! go {
        ($ch:expr) => {
            match (periodic, always) {
                (true, true) => a.run(per(&clocks.w), per(&clocks.r), On, On, $ch, $ch),
                (true, false) => {
                    let (ew, er) = pcts();
                    a.run(per(&clocks.w), per(&clocks.r), ew, er, $ch, $ch)
                }
                (false, true) => {
                    a.run(src(&clocks.w, STREAM_WJIT), src(&clocks.r, STREAM_RJIT), On, On, $ch, $ch)
                }
                (false, false) => {
                    let (ew, er) = pcts();
                    a.run(src(&clocks.w, STREAM_WJIT), src(&clocks.r, STREAM_RJIT), ew, er, $ch, $ch)
                }
            }
        };
    }
    if cfg.sync == 2 {
        go!(Two::default())
    } else {
        go!(Ring { q: [0; super::config::MAX_SYNC as usize], c: 0, s: cfg.sync as usize })
    }
}

struct Args<'a> {
    cfg: &'a FifoConfig,
    items: u64,
    max_edges: u64,
}

impl Args<'_> {
    /// The loop proper (see [`run`]); `wq` / `rq` are the synchronizers into
    /// the write (read pointer) and read (write pointer) domains.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn run<TW: Edges, TR: Edges, EW: Enable, ER: Enable, C: Chain>(
        &self,
        mut wt: TW,
        mut rt: TR,
        mut wen: EW,
        mut ren: ER,
        mut wq: C,
        mut rq: C,
    ) -> FastOut {
        let (items, max_edges) = (self.items, self.max_edges);
        let n = self.cfg.addr_bits;
        let depth = 1u64 << n;
        let pmask = (1u32 << (n + 1)) - 1;
        let amask = (1u32 << n) - 1;
        let full_xor = 3u32 << (n - 1);

        let mut slots = vec![Slot { seq: NO_SEQ, push_r: 0, pop_w: 0, valid: false }; depth as usize];
        let mut occupancy = vec![0u64; depth as usize + 1];
        let (mut lat_pop, mut lat_rclear, mut lat_wclear) = (Vec::new(), Vec::new(), Vec::new());
        let mut sb = Scoreboard::default();
        let (mut w_en, mut w_pess, mut w_clears) = (0u64, 0u64, 0u64);
        let (mut r_en, mut r_pess, mut r_clears) = (0u64, 0u64, 0u64);
        let (mut wbin, mut wptr, mut wfull) = (0u32, 0u32, false);
        let (mut rbin, mut rptr, mut rempty) = (0u32, 0u32, true);
        let (mut wedges, mut redges) = (0u64, 0u64);
        let (mut witems, mut ritems) = (0u64, 0u64);
        let mut occ = 0u64;
        let mut tw = wt.next();
        let mut tr = rt.next();
        let mut wraw = wen.draw();
        let mut rraw = ren.draw();
        let mut last_t = 0;
        // One read edge, from the pre-instant write pointer `wptr_old`.
        macro_rules! read_edge {
            ($wptr_old:expr) => {{
                let en_r = rraw && ritems < items;
                r_en += en_r as u64;
                r_pess += (rempty && occ > 0) as u64;
                if en_r && !rempty {
                    let sl = &mut slots[(rbin & amask) as usize];
                    if sl.valid {
                        bump(&mut lat_pop, redges - sl.push_r);
                        sl.valid = false;
                        occ -= 1;
                    } else {
                        sb.truly_empty_pops += 1;
                    }
                    // NO_SEQ never equals `expected` (< items < NO_SEQ).
                    if sl.seq == sb.expected {
                        sb.expected += 1;
                    } else if sl.seq == NO_SEQ {
                        sb.garbage += 1;
                    } else {
                        sb.receive(sl.seq);
                    }
                    sl.pop_w = wedges;
                    ritems += 1;
                    rbin = (rbin + 1) & pmask;
                }
                let out_old = rq.shift($wptr_old);
                rptr = rbin ^ (rbin >> 1);
                let f = rptr == out_old;
                if rempty && !f {
                    r_clears += 1;
                    let h = &slots[(rbin & amask) as usize];
                    if h.valid {
                        bump(&mut lat_rclear, redges - h.push_r);
                    }
                }
                rempty = f;
                tr = rt.next();
                rraw = ren.draw();
            }};
        }
        // One write edge, from the pre-instant read pointer `rptr_old` (and
        // after the read edge of the same instant, if any: `occ` is the
        // truth after that pop, as in the general simulator).
        macro_rules! write_edge {
            ($rptr_old:expr) => {{
                let en_w = wraw && witems < items;
                w_en += en_w as u64;
                w_pess += (wfull && occ < depth) as u64;
                if en_w && !wfull {
                    let sl = &mut slots[(wbin & amask) as usize];
                    if sl.valid {
                        sb.truly_full_pushes += 1;
                    } else {
                        occ += 1;
                    }
                    sl.seq = witems;
                    sl.valid = true;
                    sl.push_r = redges;
                    witems += 1;
                    wbin = (wbin + 1) & pmask;
                }
                let out_old = wq.shift($rptr_old);
                wptr = wbin ^ (wbin >> 1);
                let f = wptr == (out_old ^ full_xor);
                if wfull && !f {
                    w_clears += 1;
                    let nx = &slots[(wbin & amask) as usize];
                    if !nx.valid && nx.seq != NO_SEQ {
                        bump(&mut lat_wclear, wedges - nx.pop_w);
                    }
                }
                wfull = f;
                tw = wt.next();
                wraw = wen.draw();
            }};
        }
        // Both edge counters of an instant are incremented before either
        // domain's update (the general simulator counts an instant's edges
        // first), and the read edge goes first.
        while ritems < items && wedges + redges < max_edges {
            if tw < tr {
                last_t = tw;
                wedges += 1;
                write_edge!(rptr);
                occupancy[occ as usize] += 1;
            } else if tr < tw {
                last_t = tr;
                redges += 1;
                read_edge!(wptr);
                occupancy[occ as usize] += 1;
            } else {
                if tw == NEVER {
                    break;
                }
                last_t = tw;
                wedges += 1;
                redges += 1;
                let rptr_old = rptr;
                read_edge!(wptr);
                write_edge!(rptr_old);
                occupancy[occ as usize] += 2;
            }
        }
        let mut st = Stats::new(depth);
        st.occupancy = occupancy;
        st.lat_write_pop = lat_pop;
        st.lat_write_rempty_clear = lat_rclear;
        st.lat_read_wfull_clear = lat_wclear;
        // Derived instead of counted per edge (fewer live values in the
        // loop): the ops are the items moved; in the correct design a stall is
        // an enabled edge without an op, and asserts - clears = final flag -
        // reset flag.
        st.w.ops = witems;
        st.r.ops = ritems;
        st.w.en_edges = w_en;
        st.r.en_edges = r_en;
        st.w.pessimistic_edges = w_pess;
        st.r.pessimistic_edges = r_pess;
        st.w.flag_clears = w_clears;
        st.r.flag_clears = r_clears;
        st.w.stall_edges = w_en - witems;
        st.r.stall_edges = r_en - ritems;
        st.w.flag_asserts = w_clears + wfull as u64;
        st.r.flag_asserts = r_clears + rempty as u64 - 1;
        st.w.edges = wedges;
        st.r.edges = redges;
        st.w.client_ops = witems;
        st.r.client_ops = ritems;
        FastOut { stats: st, sb, last_t, taken: ritems }
    }
}

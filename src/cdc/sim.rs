//! The event loop: two rising-edge streams merged in time order, each edge
//! updating its own domain from the state before the instant.
//!
//! Invariants (checked by the tests, stated in `docs/cdc.md`):
//! - every register written at an instant is computed from the state before
//!   that instant (both domains, when edges coincide): the synchronizer
//!   captures of both domains are computed first, then the read edge, then
//!   the write edge, each using the other domain's pre-instant pointer;
//! - pointers are (n+1)-bit counters; the crossing register holds
//!   `enc(bin')` of the *next* binary value (Gray, or binary in that fault);
//! - the truth (which memory slot holds an unread word) is tracked apart from
//!   the pointers, so the scoreboard judges the design, not itself.
//!
//! The hot loop does no allocation and no formatting: observers are generic
//! and the no-op observer compiles away.

use super::config::{ClockPair, Domain, Fault, FifoConfig, Meta, Variant};
use super::stats::{bump, Scoreboard, Stats};
use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// "No edge any more" / "never".
pub(crate) const NEVER: u64 = u64::MAX;
/// Sequence number of a memory slot never written (reads give `x`).
pub(crate) const NO_SEQ: u64 = u64::MAX;

/// RNG stream ids (all from `ChaCha8Rng::seed_from_u64(seed)`).
pub(crate) const STREAM_WEN: u64 = 0;
pub(crate) const STREAM_REN: u64 = 1;
pub(crate) const STREAM_WJIT: u64 = 2;
pub(crate) const STREAM_RJIT: u64 = 3;
pub(crate) const STREAM_META: u64 = 4;

pub(crate) fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(id);
    r
}

/// When a producer offers / a consumer accepts (the enable at an edge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Every edge while items remain.
    Always,
    /// Each edge independently with this probability in percent (1..=100):
    /// `en = next_u32() % 100 < pct` on the domain's stream (no draw at 100).
    Percent(u32),
    /// Item k (word k for the producer, the k-th pop for the consumer) may be
    /// offered/taken at edges of index >= `ready[k]` (0-based, per domain).
    /// Must be non-decreasing.
    ReadyAt(Vec<u64>),
    /// Replay: the enable of edge i is `list[i]` (false past the end), no item limit.
    List(Vec<bool>),
}

/// What a trace line's `data` field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// `-`: nothing pushed / popped at this edge.
    None,
    /// A word (decimal in the trace).
    Word(u64),
    /// `x`: a pop of a memory slot never written (fault modes only).
    X,
}

/// One rising edge as the observer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeRec {
    /// The enable sampled at the edge (`winc` / `rinc`).
    pub en: bool,
    /// The word pushed (W) / popped from the FIFO memory (R; in the plain
    /// core, the word the consumer took).
    pub data: Data,
    /// R: the word delivered to the consumer at this edge (equal to `data`
    /// in the plain core; differs with a read stage or registered read data).
    pub take: Data,
}

/// A word held in a read-stage or output register: its index, value and the
/// read-edge count at its push (for the latency histogram).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub seq: u64,
    pub val: u64,
    pub push_r: u64,
}

/// Kinds of metastability events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetaKind {
    /// Input changed in the setup window: the capture saw the previous value.
    Setup,
    /// Input will change in the hold window: each changing bit was drawn.
    Hold,
    /// Single-flop fault: the flag register sampled an unresolved input; its
    /// two loads (pointer logic, client handshake) resolved independently.
    FanOut,
}

/// A recorded metastability event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaEvent {
    /// Time of the capturing edge.
    pub time_ps: u64,
    /// The capturing domain (W: `wq_rptr` sync / `wfull`; R: `rq_wptr` / `rempty`).
    pub dom: Domain,
    /// Kind.
    pub kind: MetaKind,
    /// Setup/Hold: the input value before the change; FanOut: old flag.
    pub old: u32,
    /// Setup/Hold: the value after the change; FanOut: new flag.
    pub new: u32,
    /// Setup/Hold: value captured; FanOut: bit0 = pointer logic saw new, bit1 = client saw new.
    pub seen: u32,
}

pub(crate) enum TimeSrc {
    /// Edge k at `max(0, phase + k*period + d_k)`; `base` = phase + k*period
    /// of the next edge (kept incrementally: no multiply per edge).
    Clock {
        period: u64,
        base: u64,
        jitter: u64,
        rng: Option<Box<ChaCha8Rng>>,
    },
    List {
        times: Vec<u64>,
        i: usize,
    },
}

impl TimeSrc {
    #[inline(always)]
    pub(crate) fn next(&mut self) -> u64 {
        match self {
            TimeSrc::Clock { period, base, jitter, rng } => {
                let b = *base;
                *base = b.saturating_add(*period);
                match rng {
                    None => b,
                    Some(r) => {
                        let d = (r.next_u64() % (2 * *jitter + 1)) as i128 - *jitter as i128;
                        (b as i128 + d).max(0) as u64
                    }
                }
            }
            TimeSrc::List { times, i } => {
                let t = times.get(*i).copied().unwrap_or(NEVER);
                *i += 1;
                t
            }
        }
    }
}

pub(crate) struct EnSrc {
    pattern: Pattern,
    rng: ChaCha8Rng,
    raw: bool,
    limit: u64,
}

impl EnSrc {
    /// Draw the raw enable of the next edge (index `idx`).
    #[inline(always)]
    fn draw(&mut self, idx: u64) {
        self.raw = match &self.pattern {
            Pattern::Always | Pattern::ReadyAt(_) => true,
            Pattern::Percent(p) => *p >= 100 || (self.rng.next_u32() % 100) < *p,
            Pattern::List(l) => l.get(idx as usize).copied().unwrap_or(false),
        };
    }
    #[inline(always)]
    fn en(&self, idx: u64, items: u64) -> bool {
        if !self.raw || items >= self.limit {
            return false;
        }
        match &self.pattern {
            Pattern::ReadyAt(r) => r[items as usize] <= idx,
            _ => true,
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Slot {
    pub seq: u64,
    pub val: u64,
    pub valid: bool,
    /// Read edges at or before the push instant.
    pub push_r: u64,
    /// Write edges at or before the pop instant.
    pub pop_w: u64,
}

/// One domain's registers (plus its client's item count).
pub(crate) struct Side {
    pub bin: u32,
    pub ptr: u32,
    pub flag: bool,
    pub sync: [u32; 16],
    pub edges: u64,
    pub next_t: u64,
    pub ptr_prev: u32,
    pub changed_at: u64,
    pub unresolved: bool,
    pub fan: Option<(bool, bool)>,
    pub items: u64,
}

impl Side {
    fn new(flag: bool) -> Side {
        Side {
            bin: 0,
            ptr: 0,
            flag,
            sync: [0; 16],
            edges: 0,
            next_t: NEVER,
            ptr_prev: 0,
            changed_at: NEVER,
            unresolved: false,
            fan: None,
            items: 0,
        }
    }
}

/// The binary fault's crossing buses: per-bit arrival delays and, per source
/// domain, the recent history of its crossing register.
pub(crate) struct Bus {
    bits: u32,
    delay: Vec<u64>,
    max_delay: u64,
    /// Per source (0 = W, 1 = R): value before the oldest kept change, and
    /// the changes (time, new value), oldest first.
    base: [u32; 2],
    hist: [std::collections::VecDeque<(u64, u32)>; 2],
}

impl Bus {
    fn new(bits: u32, skew: u64) -> Bus {
        let n = (bits - 1).max(1) as u64;
        let delay: Vec<u64> = (0..bits as u64).map(|i| skew * i / n).collect();
        Bus { bits, max_delay: skew, delay, base: [0, 0], hist: Default::default() }
    }
    fn ix(d: Domain) -> usize {
        match d {
            Domain::W => 0,
            Domain::R => 1,
        }
    }
    fn record(&mut self, d: Domain, t: u64, v: u32) {
        let k = Self::ix(d);
        self.hist[k].push_back((t, v));
    }
    /// Whether the source held `v` within the kept window (the values a
    /// correct crossing could show).
    fn recent(&self, d: Domain, v: u32) -> bool {
        let k = Self::ix(d);
        self.base[k] == v || self.hist[k].iter().any(|x| x.1 == v)
    }
    /// Drop changes no query at time >= t can need.
    fn prune(&mut self, d: Domain, t: u64) {
        let k = Self::ix(d);
        let h = &mut self.hist[k];
        while h.len() >= 2 && h[1].0.saturating_add(self.max_delay) < t {
            self.base[k] = h[0].1;
            h.pop_front();
        }
    }
    /// Bit i as seen at time t through delay d: (visible value, arrival time
    /// of its last change if any, arrival time of its next change if known).
    fn bit_at(
        &self,
        d: Domain,
        i: u32,
        t: u64,
        dl: u64,
        predicted: Option<(u64, u32)>,
    ) -> (bool, Option<u64>, Option<u64>) {
        let k = Self::ix(d);
        let h = &self.hist[k];
        let bit = |v: u32| (v >> i) & 1 == 1;
        // Index of the first change that has not arrived (tc + dl >= t).
        let j = h.iter().position(|(tc, _)| tc + dl >= t).unwrap_or(h.len());
        let vis_val = if j == 0 { self.base[k] } else { h[j - 1].1 };
        let vis = bit(vis_val);
        // Last arrival of a change of this bit.
        let mut last = None;
        for q in (0..j).rev() {
            let before = if q == 0 { self.base[k] } else { h[q - 1].1 };
            if bit(before) != bit(h[q].1) {
                last = Some(h[q].0 + dl);
                break;
            }
        }
        // Next arrival of a change of this bit.
        let mut next = None;
        let mut cur = vis_val;
        for (tc, v) in h.iter().skip(j) {
            if bit(*v) != bit(cur) {
                next = Some(tc + dl);
                break;
            }
            cur = *v;
        }
        if next.is_none() {
            if let Some((tn, pv)) = predicted {
                let last_v = h.back().map(|x| x.1).unwrap_or(self.base[k]);
                if bit(pv) != bit(last_v) && bit(last_v) == bit(cur) {
                    next = Some(tn + dl);
                }
            }
        }
        (vis, last, next)
    }
}

/// Receives every instant (after it is committed).
pub trait Observer {
    /// Called once per instant with the records of the domains that had an
    /// edge; `sim` shows the state after the instant.
    fn instant(&mut self, sim: &Sim<'_>, t: u64, w: Option<EdgeRec>, r: Option<EdgeRec>);
    /// True if the observer ignores everything (lets [`super::simulate`]
    /// take its register-resident fast path).
    fn is_noop(&self) -> bool {
        false
    }
}

/// Observes nothing (the fast path).
pub struct NoObserver;
impl Observer for NoObserver {
    #[inline(always)]
    fn instant(&mut self, _: &Sim<'_>, _: u64, _: Option<EdgeRec>, _: Option<EdgeRec>) {}
    fn is_noop(&self) -> bool {
        true
    }
}

/// Per-word records (for [`super::transfer`]).
#[derive(Default, Clone, Debug)]
pub(crate) struct WordLog {
    pub push_edge: Vec<u64>,
    pub push_time: Vec<u64>,
    pub pop_edge: Vec<u64>,
    pub pop_time: Vec<u64>,
    pub popped: Vec<u64>,
}

/// The simulator state. Build with [`Sim::new`], drive with [`Sim::step`].
pub struct Sim<'a> {
    n: u32,
    s: usize,
    pmask: u32,
    amask: u32,
    gray: bool,
    /// Binary fault only: per-bit arrival delays and the source histories.
    bus: Option<Bus>,
    /// No metastability and no bus skew: a capture is the plain pre-instant value.
    plain_capture: bool,
    full_xor: u32,
    single_flop: bool,
    data_mask: u64,
    depth: u64,
    pub(crate) w: Side,
    pub(crate) r: Side,
    wt: TimeSrc,
    rt: TimeSrc,
    wen: EnSrc,
    ren: EnSrc,
    pub(crate) slots: Vec<Slot>,
    pub(crate) occ: u64,
    meta: Option<Meta>,
    mrng: ChaCha8Rng,
    words: Option<&'a [u64]>,
    reset: Option<(Domain, u64)>,
    pub(crate) sb: Scoreboard,
    pub(crate) stats: Stats,
    pub(crate) events: Vec<MetaEvent>,
    pub(crate) log: Option<WordLog>,
    pub(crate) last_t: u64,
    /// Words delivered to the consumer (the run ends when all are).
    pub(crate) delivered: u64,
    /// FIFO variant (docs/cdc.md §16) and its registers.
    variant: Variant,
    /// Read stage valid bits and words; index `read_stages - 1` is the output.
    st_v: [bool; 3],
    st_d: [Held; 3],
    /// Registered read data (variant `fwft = false`): valid and word.
    rvalid: bool,
    dout: Held,
    wafull: bool,
    raempty: bool,
}

/// Where edges and enables come from.
pub(crate) enum Source<'p> {
    Clocks { clocks: &'p ClockPair, producer: &'p Pattern, consumer: &'p Pattern, items: u64 },
    Lists { wt: Vec<u64>, wen: Vec<bool>, rt: Vec<u64>, ren: Vec<bool> },
}

impl<'a> Sim<'a> {
    /// Build a simulator in the reset state. `words`: the producer's values
    /// (word k = `words[k]`); `None` means word k = `k & data_mask`.
    pub(crate) fn new(cfg: &FifoConfig, src: Source<'_>, words: Option<&'a [u64]>) -> Sim<'a> {
        let n = cfg.addr_bits;
        let seed = cfg.seed;
        let gray = !matches!(cfg.fault, Fault::BinaryPointers { .. });
        let skew = match cfg.fault {
            Fault::BinaryPointers { skew_ps } => Some(skew_ps),
            _ => None,
        };
        let (wt, rt, wen, ren) = match src {
            Source::Clocks { clocks, producer, consumer, items } => {
                let mk = |c: &super::config::Clock, id: u64| TimeSrc::Clock {
                    period: c.period_ps,
                    base: c.phase_ps,
                    jitter: c.jitter_ps,
                    rng: (c.jitter_ps > 0).then(|| Box::new(stream(seed, id))),
                };
                (
                    mk(&clocks.w, STREAM_WJIT),
                    mk(&clocks.r, STREAM_RJIT),
                    EnSrc {
                        pattern: producer.clone(),
                        rng: stream(seed, STREAM_WEN),
                        raw: false,
                        limit: items,
                    },
                    EnSrc {
                        pattern: consumer.clone(),
                        rng: stream(seed, STREAM_REN),
                        raw: false,
                        limit: items,
                    },
                )
            }
            Source::Lists { wt, wen, rt, ren } => (
                TimeSrc::List { times: wt, i: 0 },
                TimeSrc::List { times: rt, i: 0 },
                EnSrc {
                    pattern: Pattern::List(wen),
                    rng: stream(seed, STREAM_WEN),
                    raw: false,
                    limit: NEVER,
                },
                EnSrc {
                    pattern: Pattern::List(ren),
                    rng: stream(seed, STREAM_REN),
                    raw: false,
                    limit: NEVER,
                },
            ),
        };
        let depth = 1u64 << n;
        let mut sim = Sim {
            n,
            s: cfg.sync as usize,
            pmask: (1u32 << (n + 1)) - 1,
            amask: (1u32 << n) - 1,
            gray,
            bus: skew.map(|sk| Bus::new(n + 1, sk)),
            plain_capture: skew.is_none() && cfg.meta.filter(|m| m.setup_ps > 0 || m.hold_ps > 0).is_none(),
            full_xor: if gray { 3u32 << (n - 1) } else { 1u32 << n },
            single_flop: matches!(cfg.fault, Fault::SingleFlop),
            data_mask: cfg.data_mask(),
            depth,
            w: Side::new(false),
            r: Side::new(true),
            wt,
            rt,
            wen,
            ren,
            slots: vec![Slot { seq: NO_SEQ, val: 0, valid: false, push_r: 0, pop_w: 0 }; depth as usize],
            occ: 0,
            meta: cfg.meta.filter(|m| m.setup_ps > 0 || m.hold_ps > 0),
            mrng: stream(seed, STREAM_META),
            words,
            reset: match cfg.fault {
                Fault::ResetOneDomain { domain, at_ps } => Some((domain, at_ps)),
                _ => None,
            },
            sb: Scoreboard::default(),
            stats: Stats::new(depth),
            events: Vec::new(),
            log: None,
            last_t: 0,
            delivered: 0,
            variant: cfg.variant,
            st_v: [false; 3],
            st_d: [Held::default(); 3],
            rvalid: false,
            dout: Held::default(),
            wafull: false,
            raempty: true,
        };
        sim.w.next_t = sim.wt.next();
        sim.wen.draw(0);
        sim.r.next_t = sim.rt.next();
        sim.ren.draw(0);
        sim
    }

    #[inline(always)]
    fn enc(&self, bin: u32) -> u32 {
        if self.gray {
            bin ^ (bin >> 1)
        } else {
            bin
        }
    }

    /// Registered write full flag.
    pub fn wfull(&self) -> bool {
        self.w.flag
    }
    /// Registered read empty flag.
    pub fn rempty(&self) -> bool {
        self.r.flag
    }
    /// Write pointer crossing register (Gray, or binary in that fault).
    pub fn wptr(&self) -> u32 {
        self.w.ptr
    }
    /// Read pointer crossing register.
    pub fn rptr(&self) -> u32 {
        self.r.ptr
    }
    /// Output of the read-to-write synchronizer (last flop).
    pub fn wq_rptr(&self) -> u32 {
        self.w.sync[self.s - 1]
    }
    /// Output of the write-to-read synchronizer (last flop).
    pub fn rq_wptr(&self) -> u32 {
        self.r.sync[self.s - 1]
    }
    /// Write edges so far.
    pub fn write_edges(&self) -> u64 {
        self.w.edges
    }
    /// Read edges so far.
    pub fn read_edges(&self) -> u64 {
        self.r.edges
    }
    /// Items (words) delivered to the consumer.
    pub fn taken(&self) -> u64 {
        self.delivered
    }
    /// The FIFO variant.
    pub fn variant(&self) -> Variant {
        self.variant
    }
    /// Registered almost-full flag (None when not configured).
    pub fn wafull(&self) -> Option<bool> {
        self.variant.almost_full.map(|_| self.wafull)
    }
    /// Registered almost-empty flag (None when not configured).
    pub fn raempty(&self) -> Option<bool> {
        self.variant.almost_empty.map(|_| self.raempty)
    }
    /// The consumer port after the instant: `Some(word)` when it shows a
    /// valid word (FWFT: the head word / output register; registered read
    /// data: the output register while `rvalid`), else None.
    pub fn port(&self) -> Option<Data> {
        let v = self.variant;
        let held = |h: Held| if h.seq == NO_SEQ { Data::X } else { Data::Word(h.val) };
        if !v.fwft {
            return self.rvalid.then(|| held(self.dout));
        }
        let n = v.read_stages as usize;
        if n == 0 {
            if self.r.flag {
                return None;
            }
            let sl = self.slots[(self.r.bin & self.amask) as usize];
            return Some(held(Held { seq: sl.seq, val: sl.val, push_r: sl.push_r }));
        }
        self.st_v[n - 1].then(|| held(self.st_d[n - 1]))
    }
    /// Gray to binary.
    fn g2b(g: u32) -> u32 {
        let mut b = g;
        let mut sh = 1;
        while sh < 32 {
            b ^= b >> sh;
            sh <<= 1;
        }
        b
    }
    /// Words the producer has had accepted.
    pub fn accepted(&self) -> u64 {
        self.w.items
    }
    /// Number of unread words really in the memory.
    pub fn true_occupancy(&self) -> u64 {
        self.occ
    }

    fn side(&self, d: Domain) -> &Side {
        match d {
            Domain::W => &self.w,
            Domain::R => &self.r,
        }
    }

    /// The crossing-pointer value `src` will hold after its next edge with
    /// enable `en` (used by the hold-window lookahead).
    fn predict(&self, src: Domain, en: bool) -> u32 {
        let s = self.side(src);
        let view = s.fan.map(|f| f.0).unwrap_or(s.flag);
        let op = (en && !view) as u32;
        self.enc((s.bin + op) & self.pmask)
    }

    /// Value captured by `dst`'s first synchronizer flop at `t`, and whether
    /// the capture was in a metastability window.
    #[inline]
    fn capture(&mut self, dst: Domain, t: u64, src_en: bool) -> (u32, bool) {
        let src = match dst {
            Domain::W => Domain::R,
            Domain::R => Domain::W,
        };
        if self.bus.is_some() {
            return self.capture_bus(dst, src, t, src_en);
        }
        let s = self.side(src);
        let cur = s.ptr;
        let Some(m) = self.meta else {
            return (cur, false);
        };
        if m.setup_ps > 0 && s.changed_at != NEVER && t - s.changed_at < m.setup_ps {
            let old = s.ptr_prev;
            // One changing bit (Gray): the capture sees the previous value.
            // Several (binary fault): each bit resolves on its own.
            let seen = if self.gray { old } else { self.mix(old, cur) };
            self.sb.corrupt_crossings += (seen != old && seen != cur) as u64;
            self.events.push(MetaEvent { time_ps: t, dom: dst, kind: MetaKind::Setup, old, new: cur, seen });
            return (seen, true);
        }
        if m.hold_ps > 0 && s.next_t != NEVER && s.next_t < t.saturating_add(m.hold_ps) {
            let nxt = self.predict(src, src_en);
            if nxt != cur {
                let seen = self.mix(cur, nxt);
                self.sb.corrupt_crossings += (seen != cur && seen != nxt) as u64;
                self.events.push(MetaEvent {
                    time_ps: t,
                    dom: dst,
                    kind: MetaKind::Hold,
                    old: cur,
                    new: nxt,
                    seen,
                });
                return (seen, true);
            }
        }
        (cur, false)
    }

    /// Binary-fault capture: each bit of the crossing bus is seen as of its
    /// own arrival time, and metastability windows apply per bit (see
    /// `docs/cdc.md`, "Fault modes"). Draws: one per bit in a hold window,
    /// LSB first.
    fn capture_bus(&mut self, dst: Domain, src: Domain, t: u64, src_en: bool) -> (u32, bool) {
        let next_t = self.side(src).next_t;
        let predicted = if next_t == NEVER { None } else { Some((next_t, self.predict(src, src_en))) };
        let meta = self.meta;
        let bus = self.bus.as_mut().expect("bus");
        bus.prune(src, t);
        let mut plain = 0u32;
        let mut seen = 0u32;
        let mut setup = false;
        let mut hold = false;
        for i in 0..bus.bits {
            let d = bus.delay[i as usize];
            let (vis, last_arrival, next_arrival) = bus.bit_at(src, i, t, d, predicted);
            plain |= (vis as u32) << i;
            let mut b = vis;
            if let Some(m) = meta {
                if m.setup_ps > 0 && last_arrival.is_some_and(|a| t - a < m.setup_ps) {
                    b = !vis; // previous value of this bit
                    setup = true;
                } else if m.hold_ps > 0 && next_arrival.is_some_and(|a| a < t.saturating_add(m.hold_ps)) {
                    hold = true;
                    if self.mrng.next_u32() & 1 == 1 {
                        b = !vis;
                    }
                }
            }
            seen |= (b as u32) << i;
        }
        let bus = self.bus.as_ref().expect("bus");
        if !bus.recent(src, seen) && !matches!(predicted, Some(p) if p.1 == seen) {
            self.sb.corrupt_crossings += 1;
        }
        let metastable = setup || hold;
        if metastable {
            let kind = if setup { MetaKind::Setup } else { MetaKind::Hold };
            self.events.push(MetaEvent { time_ps: t, dom: dst, kind, old: plain, new: plain, seen });
        }
        (seen, metastable)
    }

    /// Each bit that differs between `old` and `new` independently takes its
    /// new value iff the next draw of the metastability stream is odd
    /// (draws in bit order, LSB first).
    fn mix(&mut self, old: u32, new: u32) -> u32 {
        let mut diff = old ^ new;
        let mut seen = old;
        while diff != 0 {
            let bit = diff & diff.wrapping_neg();
            if self.mrng.next_u32() & 1 == 1 {
                seen ^= bit;
            }
            diff ^= bit;
        }
        seen
    }

    fn value_of(&self, seq: u64) -> u64 {
        match self.words {
            Some(w) => w[seq as usize],
            None => seq & self.data_mask,
        }
    }

    fn apply_reset(&mut self, d: Domain, at: u64) {
        let side = match d {
            Domain::W => &mut self.w,
            Domain::R => &mut self.r,
        };
        if side.ptr != 0 {
            side.ptr_prev = side.ptr;
            side.changed_at = at;
            if let Some(b) = &mut self.bus {
                b.record(d, at, 0);
            }
        }
        side.bin = 0;
        side.ptr = 0;
        side.flag = d == Domain::R;
        side.sync = [0; 16];
        side.unresolved = false;
        side.fan = None;
    }

    /// Process the next instant (one or two coincident rising edges).
    /// Returns false when both edge streams are exhausted.
    #[inline(always)]
    pub fn step<O: Observer>(&mut self, obs: &mut O) -> bool {
        let tw = self.w.next_t;
        let tr = self.r.next_t;
        let t = tw.min(tr);
        if t == NEVER {
            return false;
        }
        if let Some((d, at)) = self.reset {
            if t > at {
                self.apply_reset(d, at);
                self.reset = None;
            }
        }
        let hw = tw == t;
        let hr = tr == t;
        // Enables of the edges at t, or (for the lookahead) of each domain's next edge.
        let en_w = self.wen.en(self.w.edges, self.w.items);
        let en_r = self.ren.en(self.r.edges, self.r.items);
        // Phase 1: both synchronizer captures from the pre-instant state.
        let (cap_w, cap_r) = if self.plain_capture {
            ((self.r.ptr, false), (self.w.ptr, false))
        } else {
            (
                if hw { self.capture(Domain::W, t, en_r) } else { (0, false) },
                if hr { self.capture(Domain::R, t, en_w) } else { (0, false) },
            )
        };
        let wptr_old = self.w.ptr;
        self.w.edges += hw as u64;
        self.r.edges += hr as u64;
        // Phase 2: read edge first (it reads memory before the write edge
        // of the same instant writes it), then the write edge. Neither reads
        // a register the other writes, except through the captures above.
        let rec_r = if hr { Some(self.edge_r(t, en_r, cap_r, wptr_old)) } else { None };
        let rec_w = if hw { Some(self.edge_w(t, en_w, cap_w)) } else { None };
        if hw {
            self.w.next_t = self.wt.next();
            self.wen.draw(self.w.edges);
        }
        if hr {
            self.r.next_t = self.rt.next();
            self.ren.draw(self.r.edges);
        }
        let occ = self.occ as usize;
        self.stats.occupancy[occ] += hw as u64 + hr as u64;
        self.last_t = t;
        obs.instant(self, t, rec_w, rec_r);
        true
    }

    #[inline]
    fn fanout(&mut self, d: Domain, t: u64, old: bool, new: bool) -> (bool, bool) {
        let a = self.mrng.next_u32() & 1 == 1;
        let b = self.mrng.next_u32() & 1 == 1;
        self.events.push(MetaEvent {
            time_ps: t,
            dom: d,
            kind: MetaKind::FanOut,
            old: old as u32,
            new: new as u32,
            seen: a as u32 | (b as u32) << 1,
        });
        (if a { new } else { old }, if b { new } else { old })
    }

    #[inline(always)]
    fn edge_r(&mut self, t: u64, en: bool, cap: (u32, bool), _wptr_old: u32) -> EdgeRec {
        if !self.variant.is_plain() {
            return self.edge_r_variant(t, en, cap);
        }
        let (pv, cv) = self.r.fan.take().unwrap_or((self.r.flag, self.r.flag));
        let pop = en && !pv;
        let take = en && !cv;
        let st = &mut self.stats.r;
        st.en_edges += en as u64;
        st.stall_edges += (en && self.r.flag) as u64;
        st.pessimistic_edges += (self.r.flag && self.occ > 0) as u64;
        let slot_i = (self.r.bin & self.amask) as usize;
        let mut data = Data::None;
        if take {
            let sl = self.slots[slot_i];
            if !sl.valid {
                self.sb.truly_empty_pops += 1;
            } else {
                bump(&mut self.stats.lat_write_pop, self.r.edges - sl.push_r);
            }
            if sl.seq == NO_SEQ {
                self.sb.garbage += 1;
                data = Data::X;
            } else {
                data = Data::Word(sl.val);
                self.sb.receive(sl.seq);
            }
            if let Some(log) = &mut self.log {
                log.popped.push(sl.val);
                log.pop_edge.push(self.r.edges - 1);
                log.pop_time.push(t);
            }
            self.r.items += 1;
            self.delivered += 1;
            self.stats.r.client_ops += 1;
        }
        if pop {
            let sl = &mut self.slots[slot_i];
            if sl.valid {
                sl.valid = false;
                self.occ -= 1;
            } else if !take {
                self.sb.truly_empty_pops += 1;
            }
            sl.pop_w = self.w.edges;
            self.r.bin = (self.r.bin + 1) & self.pmask;
            self.stats.r.ops += 1;
        }
        self.r_registers(t, cap);
        EdgeRec { en, data, take: data }
    }

    /// A read edge of a FIFO variant (docs/cdc.md §16; no fault, so the
    /// pointer logic and the client see the same flag). All from the state
    /// before the instant: the consumer port, the read stage (Forencich-style:
    /// stage j shifts when the consumer is ready or some stage k >= j is
    /// empty; stage 0 loads the head word when the consumer is ready or any
    /// stage is empty, popping the core iff it is not empty), the registered
    /// output, then the core pointers, synchronizer and flags as in §4.
    fn edge_r_variant(&mut self, t: u64, en: bool, cap: (u32, bool)) -> EdgeRec {
        let v = self.variant;
        let n = v.read_stages as usize;
        let flag = self.r.flag;
        let slot_i = (self.r.bin & self.amask) as usize;
        let sl = self.slots[slot_i];
        let head = Held { seq: sl.seq, val: sl.val, push_r: sl.push_r };
        let (port_valid, port) = if n == 0 { (!flag, head) } else { (self.st_v[n - 1], self.st_d[n - 1]) };
        let take = en && port_valid;
        let core_rd = if n == 0 { en } else { en || self.st_v[..n].iter().any(|x| !x) };
        let pop = core_rd && !flag;
        let st = &mut self.stats.r;
        st.en_edges += en as u64;
        st.stall_edges += (en && !port_valid) as u64;
        st.pessimistic_edges += (flag && self.occ > 0) as u64;
        // The word the consumer receives at this edge.
        let deliver = if v.fwft { take.then_some(port) } else { self.rvalid.then_some(self.dout) };
        if !v.fwft {
            self.rvalid = take;
            if take {
                self.dout = port;
            }
        }
        if n > 0 {
            let (ov, od) = (self.st_v, self.st_d);
            for j in (1..n).rev() {
                if en || ov[j..n].iter().any(|x| !x) {
                    self.st_v[j] = ov[j - 1];
                    self.st_d[j] = od[j - 1];
                }
            }
            if core_rd {
                self.st_v[0] = pop;
                self.st_d[0] = head;
            }
        }
        self.r.items += take as u64;
        let mut take_d = Data::None;
        if let Some(h) = deliver {
            if h.seq == NO_SEQ {
                self.sb.garbage += 1;
                take_d = Data::X;
            } else {
                take_d = Data::Word(h.val);
                self.sb.receive(h.seq);
                bump(&mut self.stats.lat_write_pop, self.r.edges - h.push_r);
            }
            if let Some(log) = &mut self.log {
                log.popped.push(h.val);
                log.pop_edge.push(self.r.edges - 1);
                log.pop_time.push(t);
            }
            self.delivered += 1;
            self.stats.r.client_ops += 1;
        }
        let mut data = Data::None;
        if pop {
            let sl = &mut self.slots[slot_i];
            if sl.valid {
                sl.valid = false;
                self.occ -= 1;
            } else {
                self.sb.truly_empty_pops += 1;
            }
            data = if sl.seq == NO_SEQ { Data::X } else { Data::Word(sl.val) };
            sl.pop_w = self.w.edges;
            self.r.bin = (self.r.bin + 1) & self.pmask;
            self.stats.r.ops += 1;
        }
        let out_old = self.r_registers(t, cap);
        if let Some(ae) = v.almost_empty {
            let est = Self::g2b(out_old).wrapping_sub(self.r.bin) & self.pmask;
            self.raempty = est <= ae;
        }
        EdgeRec { en, data, take: take_d }
    }

    /// The read side's registers after the pop decision, shared by both read
    /// edges (plain core and variants): synchronizer shift (capture `cap`),
    /// crossing pointer, `rempty` from the pre-instant synchronizer output
    /// (with the single-flop fault's fan-out), flag statistics. Returns that
    /// pre-instant output (`rq_wptr` before the edge).
    #[inline(always)]
    fn r_registers(&mut self, t: u64, cap: (u32, bool)) -> u32 {
        let s = self.s;
        let out_old = self.r.sync[s - 1];
        for i in (1..s).rev() {
            self.r.sync[i] = self.r.sync[i - 1];
        }
        self.r.sync[0] = cap.0;
        let np = self.enc(self.r.bin);
        if np != self.r.ptr {
            self.r.ptr_prev = self.r.ptr;
            self.r.changed_at = t;
            self.r.ptr = np;
            if let Some(b) = &mut self.bus {
                b.record(Domain::R, t, np);
            }
        }
        let flag_new = np == out_old;
        if self.r.unresolved && flag_new != self.r.flag {
            let old = self.r.flag;
            self.r.fan = Some(self.fanout(Domain::R, t, old, flag_new));
        }
        self.r.unresolved = self.single_flop && cap.1;
        if flag_new != self.r.flag {
            if flag_new {
                self.stats.r.flag_asserts += 1;
            } else {
                self.stats.r.flag_clears += 1;
                let head = self.slots[(self.r.bin & self.amask) as usize];
                if head.valid {
                    bump(&mut self.stats.lat_write_rempty_clear, self.r.edges - head.push_r);
                }
            }
        }
        self.r.flag = flag_new;
        out_old
    }

    #[inline(always)]
    fn edge_w(&mut self, t: u64, en: bool, cap: (u32, bool)) -> EdgeRec {
        let (pv, cv) = self.w.fan.take().unwrap_or((self.w.flag, self.w.flag));
        let push = en && !pv;
        let accept = en && !cv;
        let st = &mut self.stats.w;
        st.en_edges += en as u64;
        st.stall_edges += (en && self.w.flag) as u64;
        st.pessimistic_edges += (self.w.flag && self.occ < self.depth) as u64;
        let mut data = Data::None;
        if push {
            let k = self.w.items;
            let val = self.value_of(k);
            let slot_i = (self.w.bin & self.amask) as usize;
            let sl = &mut self.slots[slot_i];
            if sl.valid {
                self.sb.truly_full_pushes += 1;
            } else {
                self.occ += 1;
            }
            sl.seq = k;
            sl.val = val;
            sl.valid = true;
            sl.push_r = self.r.edges;
            data = Data::Word(val);
            self.w.bin = (self.w.bin + 1) & self.pmask;
            self.stats.w.ops += 1;
            if let Some(log) = &mut self.log {
                if log.push_edge.len() as u64 == k {
                    log.push_edge.push(self.w.edges - 1);
                    log.push_time.push(t);
                }
            }
        }
        if accept {
            self.w.items += 1;
            self.stats.w.client_ops += 1;
        }
        let s = self.s;
        let out_old = self.w.sync[s - 1];
        for i in (1..s).rev() {
            self.w.sync[i] = self.w.sync[i - 1];
        }
        self.w.sync[0] = cap.0;
        let np = self.enc(self.w.bin);
        if np != self.w.ptr {
            self.w.ptr_prev = self.w.ptr;
            self.w.changed_at = t;
            self.w.ptr = np;
            if let Some(b) = &mut self.bus {
                b.record(Domain::W, t, np);
            }
        }
        let flag_new = np == (out_old ^ self.full_xor);
        if self.w.unresolved && flag_new != self.w.flag {
            let old = self.w.flag;
            self.w.fan = Some(self.fanout(Domain::W, t, old, flag_new));
        }
        self.w.unresolved = self.single_flop && cap.1;
        if flag_new != self.w.flag {
            if flag_new {
                self.stats.w.flag_asserts += 1;
            } else {
                self.stats.w.flag_clears += 1;
                let next = self.slots[(self.w.bin & self.amask) as usize];
                if !next.valid && next.seq != NO_SEQ {
                    bump(&mut self.stats.lat_read_wfull_clear, self.w.edges - next.pop_w);
                }
            }
        }
        self.w.flag = flag_new;
        if let Some(af) = self.variant.almost_full {
            let est = self.w.bin.wrapping_sub(Self::g2b(out_old)) & self.pmask;
            self.wafull = est >= af;
        }
        EdgeRec { en, data, take: Data::None }
    }

    /// Pointer width in bits (n+1).
    pub fn ptr_bits(&self) -> u32 {
        self.n + 1
    }
}

//! The fast path of [`super::simulate`]: the correct design (no fault, no
//! metastability), no observer. Same rules, same statistics and scoreboard as
//! [`super::sim::Sim`], but with all state in locals so it stays in registers
//! (the general simulator keeps it in a struct shared with observers). The
//! tests check both paths agree on every statistic for random configurations.

use super::config::{ClockPair, FifoConfig};
use super::sim::{stream, Pattern, TimeSrc, NEVER, STREAM_REN, STREAM_RJIT, STREAM_WEN, STREAM_WJIT};
use super::stats::{bump, Scoreboard, Stats};
use rand::RngCore;

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
    let n = cfg.addr_bits;
    let s = cfg.sync as usize;
    let depth = 1u64 << n;
    let pmask = (1u32 << (n + 1)) - 1;
    let amask = (1u32 << n) - 1;
    let full_xor = 3u32 << (n - 1);
    let seed = cfg.seed;
    let mk = |c: &super::config::Clock, id: u64| TimeSrc::Clock {
        period: c.period_ps,
        base: c.phase_ps,
        jitter: c.jitter_ps,
        rng: (c.jitter_ps > 0).then(|| Box::new(stream(seed, id))),
    };
    let mut wt = mk(&clocks.w, STREAM_WJIT);
    let mut rt = mk(&clocks.r, STREAM_RJIT);
    let (pw, pr) = (pct(producer), pct(consumer));
    let mut wrng = stream(seed, STREAM_WEN);
    let mut rrng = stream(seed, STREAM_REN);
    let draw = |p: u32, r: &mut rand_chacha::ChaCha8Rng| p >= 100 || (r.next_u32() % 100) < p;

    // Per slot: sequence number (NO_SEQ = never written), unread flag,
    // read-edge count at push, write-edge count at pop.
    let d = depth as usize;
    let mut seq = vec![NO_SEQ; d];
    let mut valid = vec![false; d];
    let mut push_r = vec![0u64; d];
    let mut pop_w = vec![0u64; d];

    let mut st = Stats::new(depth);
    let mut sb = Scoreboard::default();
    let (mut wbin, mut wptr, mut wfull) = (0u32, 0u32, false);
    let (mut rbin, mut rptr, mut rempty) = (0u32, 0u32, true);
    // Synchronizers as rings: the oldest (output) flop is at the cursor.
    let mut wq = [0u32; 16];
    let mut rq = [0u32; 16];
    let (mut wc, mut rc) = (0usize, 0usize);
    let (mut wedges, mut redges) = (0u64, 0u64);
    let (mut witems, mut ritems) = (0u64, 0u64);
    let mut occ = 0u64;
    let mut tw = wt.next();
    let mut tr = rt.next();
    let mut wraw = draw(pw, &mut wrng);
    let mut rraw = draw(pr, &mut rrng);
    let mut last_t = 0;
    while ritems < items && wedges + redges < max_edges {
        let t = tw.min(tr);
        if t == NEVER {
            break;
        }
        let hw = tw == t;
        let hr = tr == t;
        let en_w = hw && wraw && witems < items;
        let en_r = hr && rraw && ritems < items;
        let wptr_old = wptr;
        let rptr_old = rptr;
        wedges += hw as u64;
        redges += hr as u64;
        if hr {
            let pop = en_r && !rempty;
            st.r.en_edges += en_r as u64;
            st.r.pessimistic_edges += (rempty && occ > 0) as u64;
            if pop {
                let i = (rbin & amask) as usize;
                let q = seq[i];
                if valid[i] {
                    bump(&mut st.lat_write_pop, redges - push_r[i]);
                    valid[i] = false;
                    occ -= 1;
                } else {
                    sb.truly_empty_pops += 1;
                }
                if q == NO_SEQ {
                    sb.garbage += 1;
                } else {
                    sb.receive(q);
                }
                pop_w[i] = wedges;
                ritems += 1;
                rbin = (rbin + 1) & pmask;
                st.r.ops += 1;
            }
            let out_old = rq[rc];
            rq[rc] = wptr_old;
            rc = if rc + 1 == s { 0 } else { rc + 1 };
            rptr = rbin ^ (rbin >> 1);
            let f = rptr == out_old;
            if f != rempty {
                if !f {
                    st.r.flag_clears += 1;
                    let h = (rbin & amask) as usize;
                    if valid[h] {
                        bump(&mut st.lat_write_rempty_clear, redges - push_r[h]);
                    }
                }
                rempty = f;
            }
            tr = rt.next();
            rraw = draw(pr, &mut rrng);
        }
        if hw {
            let push = en_w && !wfull;
            st.w.en_edges += en_w as u64;
            st.w.pessimistic_edges += (wfull && occ < depth) as u64;
            if push {
                let i = (wbin & amask) as usize;
                if valid[i] {
                    sb.truly_full_pushes += 1;
                } else {
                    occ += 1;
                }
                seq[i] = witems;
                valid[i] = true;
                push_r[i] = redges;
                witems += 1;
                wbin = (wbin + 1) & pmask;
                st.w.ops += 1;
            }
            let out_old = wq[wc];
            wq[wc] = rptr_old;
            wc = if wc + 1 == s { 0 } else { wc + 1 };
            wptr = wbin ^ (wbin >> 1);
            let f = wptr == (out_old ^ full_xor);
            if f != wfull {
                if !f {
                    st.w.flag_clears += 1;
                    let nx = (wbin & amask) as usize;
                    if !valid[nx] && seq[nx] != NO_SEQ {
                        bump(&mut st.lat_read_wfull_clear, wedges - pop_w[nx]);
                    }
                }
                wfull = f;
            }
            tw = wt.next();
            wraw = draw(pw, &mut wrng);
        }
        st.occupancy[occ as usize] += hw as u64 + hr as u64;
        last_t = t;
    }
    // Derived instead of counted per edge (fewer live values in the loop):
    // in the correct design a stall is an enabled edge without an op, and
    // asserts - clears = final flag - reset flag.
    st.w.stall_edges = st.w.en_edges - st.w.ops;
    st.r.stall_edges = st.r.en_edges - st.r.ops;
    st.w.flag_asserts = st.w.flag_clears + wfull as u64;
    st.r.flag_asserts = st.r.flag_clears + rempty as u64 - 1;
    st.w.edges = wedges;
    st.r.edges = redges;
    st.w.client_ops = st.w.ops;
    st.r.client_ops = st.r.ops;
    FastOut { stats: st, sb, last_t, taken: ritems }
}

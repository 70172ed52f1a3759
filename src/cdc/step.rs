//! A stepping model of the FIFO for testbench scoreboards: the caller drives
//! it edge by edge (`write_edge`, `read_edge`, or both at one instant) and
//! reads the flags and pointers after each edge, so it can predict an RTL
//! FIFO live, cycle by cycle.
//!
//! It implements exactly the edge rules of `docs/cdc.md` §3–§4 for the
//! correct design (no fault, no metastability): the same rules the general
//! simulator (`sim.rs`) applies. The unit test below replays general
//! simulator runs (random clocks, enables, depths and synchronizer lengths)
//! through this model and requires every trace field of every edge to match.
//! Unlike the general simulator, the word written at a push is the caller's
//! (`data`), and the caller's enable is used as given (there is no word
//! count: the caller decides when to stop).

use super::config::{FifoConfig, FifoSpec};
use super::sim::Data;
use crate::error::{Error, Result};

/// What one edge did: whether it pushed / popped, and the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepEdge {
    /// The write edge pushed (`winc & !wfull`), or the read edge popped
    /// (`rinc & !rempty`), with the flag value from before the edge.
    pub moved: bool,
    /// Read edge: the popped word (`Data::X` if the slot was never written,
    /// `Data::None` if nothing was popped). Write edge: the pushed word or
    /// `Data::None`.
    pub data: Data,
}

/// The stepping FIFO (depth D = 2^n, S synchronizer flops, W-bit words).
/// Registers as in `docs/cdc.md` §3; reset state at construction.
#[derive(Clone, Debug)]
pub struct StepFifo {
    n: u32,
    s: usize,
    mask: u64,
    pmask: u32,
    full_inv: u32,
    wbin: u32,
    rbin: u32,
    wptr: u32,
    rptr: u32,
    wfull: bool,
    rempty: bool,
    /// `wq[0]` samples rptr; `wq[S-1]` is `wq_rptr`.
    wq: Vec<u32>,
    /// `rq[0]` samples wptr; `rq[S-1]` is `rq_wptr`.
    rq: Vec<u32>,
    /// `None` = never written (`x`).
    mem: Vec<Option<u64>>,
    write_edges: u64,
    read_edges: u64,
}

fn gray(b: u32) -> u32 {
    b ^ (b >> 1)
}

impl StepFifo {
    /// A FIFO in its reset state. `depth` a power of two in 2..=65536,
    /// `sync` 2..=16, `data_width` 1..=64 (the `bitmac cdc` ranges; errors
    /// name the `bitmac cdc` flag, e.g. `--depth: 3 is out of range ...`).
    pub fn new(depth: u64, sync: u32, data_width: u32) -> Result<StepFifo> {
        let cfg = FifoSpec { depth, sync, data_width, ..FifoSpec::default() }.validate()?;
        Ok(StepFifo::from_config(&cfg))
    }

    /// A FIFO in its reset state for a validated config (its fault,
    /// metastability and seed are ignored: this is the correct zero-delay
    /// design).
    pub fn from_config(cfg: &FifoConfig) -> StepFifo {
        let n = cfg.addr_bits();
        let s = cfg.sync().max(1) as usize;
        let depth = cfg.depth() as usize;
        StepFifo {
            n,
            s,
            mask: cfg.data_mask(),
            pmask: (1u32 << (n + 1)) - 1,
            full_inv: 0b11 << (n - 1),
            wbin: 0,
            rbin: 0,
            wptr: 0,
            rptr: 0,
            wfull: false,
            rempty: true,
            wq: vec![0; s],
            rq: vec![0; s],
            mem: vec![None; depth],
            write_edges: 0,
            read_edges: 0,
        }
    }

    /// Back to the reset state of both domains (memory contents kept, as
    /// in the RTL, whose memory is not reset).
    pub fn reset(&mut self) {
        self.wbin = 0;
        self.rbin = 0;
        self.wptr = 0;
        self.rptr = 0;
        self.wfull = false;
        self.rempty = true;
        self.wq.iter_mut().for_each(|v| *v = 0);
        self.rq.iter_mut().for_each(|v| *v = 0);
        self.write_edges = 0;
        self.read_edges = 0;
    }

    fn check_data(&self, data: u64) -> Result<()> {
        if data & !self.mask != 0 {
            return Err(Error::field(
                "data",
                data,
                format!("0..={} ({}-bit word)", self.mask, self.data_width()),
            ));
        }
        Ok(())
    }

    /// One rising write-clock edge with write enable `wen` and word `data`
    /// (must fit the data width). `push = wen & !wfull`.
    pub fn write_edge(&mut self, wen: bool, data: u64) -> Result<StepEdge> {
        self.check_data(data)?;
        let rptr = self.rptr;
        Ok(self.w_edge(wen, data, rptr))
    }

    /// One rising read-clock edge with read enable `ren`. `pop = ren &
    /// !rempty`; the popped word is `mem[rbin mod D]` before the edge.
    pub fn read_edge(&mut self, ren: bool) -> StepEdge {
        let wptr = self.wptr;
        self.r_edge(ren, wptr)
    }

    /// Coincident write and read edges (one instant): every register is
    /// computed from the state before the instant, so the read sees the
    /// memory before the write and each synchronizer samples the other
    /// domain's pointer from before the instant. Returns (write, read).
    pub fn both_edges(&mut self, wen: bool, data: u64, ren: bool) -> Result<(StepEdge, StepEdge)> {
        self.check_data(data)?;
        let (wptr0, rptr0) = (self.wptr, self.rptr);
        // The read goes first so it reads the memory before the write.
        let r = self.r_edge(ren, wptr0);
        let w = self.w_edge(wen, data, rptr0);
        Ok((w, r))
    }

    fn w_edge(&mut self, wen: bool, data: u64, rptr_before: u32) -> StepEdge {
        self.write_edges += 1;
        let push = wen && !self.wfull;
        if push {
            self.mem[(self.wbin & (self.pmask >> 1)) as usize] = Some(data);
            self.wbin = (self.wbin + 1) & self.pmask;
        }
        self.wptr = gray(self.wbin);
        let out_old = self.wq[self.s - 1];
        self.wq.copy_within(0..self.s - 1, 1);
        self.wq[0] = rptr_before;
        self.wfull = self.wptr == (out_old ^ self.full_inv);
        StepEdge { moved: push, data: if push { Data::Word(data) } else { Data::None } }
    }

    fn r_edge(&mut self, ren: bool, wptr_before: u32) -> StepEdge {
        self.read_edges += 1;
        let pop = ren && !self.rempty;
        let mut data = Data::None;
        if pop {
            data = match self.mem[(self.rbin & (self.pmask >> 1)) as usize] {
                Some(v) => Data::Word(v),
                None => Data::X,
            };
            self.rbin = (self.rbin + 1) & self.pmask;
        }
        self.rptr = gray(self.rbin);
        let out_old = self.rq[self.s - 1];
        self.rq.copy_within(0..self.s - 1, 1);
        self.rq[0] = wptr_before;
        self.rempty = self.rptr == out_old;
        StepEdge { moved: pop, data }
    }

    /// Depth D.
    pub fn depth(&self) -> u64 {
        1u64 << self.n
    }
    /// Synchronizer flops S per direction.
    pub fn sync(&self) -> u32 {
        self.s as u32
    }
    /// Data width W.
    pub fn data_width(&self) -> u32 {
        64 - self.mask.leading_zeros()
    }
    /// The registered full flag.
    pub fn wfull(&self) -> bool {
        self.wfull
    }
    /// The registered empty flag.
    pub fn rempty(&self) -> bool {
        self.rempty
    }
    /// Write binary counter (n+1 bits).
    pub fn wbin(&self) -> u32 {
        self.wbin
    }
    /// Read binary counter (n+1 bits).
    pub fn rbin(&self) -> u32 {
        self.rbin
    }
    /// Write crossing pointer (Gray, n+1 bits).
    pub fn wptr(&self) -> u32 {
        self.wptr
    }
    /// Read crossing pointer (Gray, n+1 bits).
    pub fn rptr(&self) -> u32 {
        self.rptr
    }
    /// Read pointer as synchronized into the write domain (`wq[S-1]`).
    pub fn wq_rptr(&self) -> u32 {
        self.wq[self.s - 1]
    }
    /// Write pointer as synchronized into the read domain (`rq[S-1]`).
    pub fn rq_wptr(&self) -> u32 {
        self.rq[self.s - 1]
    }
    /// The word a pop would return now (the RTL's show-ahead `rdata`,
    /// `mem[rbin mod D]`); `None` if that slot was never written.
    pub fn rdata(&self) -> Option<u64> {
        self.mem[(self.rbin & (self.pmask >> 1)) as usize]
    }
    /// Words pushed and not yet popped (`wbin - rbin` mod 2D): the true
    /// occupancy of the correct design.
    pub fn occupancy(&self) -> u64 {
        (self.wbin.wrapping_sub(self.rbin) & self.pmask) as u64
    }
    /// Write edges so far.
    pub fn write_edges(&self) -> u64 {
        self.write_edges
    }
    /// Read edges so far.
    pub fn read_edges(&self) -> u64 {
        self.read_edges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdc::config::{Clock, ClockPair, Domain};
    use crate::cdc::trace::parse;
    use rand::{Rng, SeedableRng};

    /// Replays general-simulator runs through the stepping model: every
    /// field of every trace line must match (the word pushed is the
    /// producer's next word, k mod 2^W, as in `bitmac cdc`).
    #[test]
    fn stepping_model_equals_general_simulator() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        for case in 0..40 {
            let depth = 1u64 << rng.gen_range(1..=4);
            let sync = rng.gen_range(2..=4);
            let width = rng.gen_range(1..=8);
            let spec = FifoSpec { depth, sync, data_width: width, seed: case, ..FifoSpec::default() };
            let cfg = spec.validate().unwrap();
            // Harmonic periods now and then, so many instants have both edges.
            let wp = if case % 3 == 0 { 2000 } else { rng.gen_range(500..5000) };
            let rp = if case % 3 == 0 { 2000 * rng.gen_range(1..=3) } else { rng.gen_range(500..5000) };
            let clocks = ClockPair { w: Clock::new(wp), r: Clock::new(rp) };
            clocks.validate(&cfg).unwrap();
            let (wen, ren) = (rng.gen_range(30..=100), rng.gen_range(30..=100));
            let (_rep, text) = crate::cdc::simulate_trace(&cfg, &clocks, 60, wen, ren).unwrap();
            let lines = parse(&text, "trace", &cfg).unwrap();
            let mut f = StepFifo::from_config(&cfg);
            let mut next_word = 0u64;
            let mut i = 0;
            let mut both_seen = false;
            while i < lines.len() {
                let l = lines[i].line;
                let pair = i + 1 < lines.len()
                    && lines[i + 1].line.time_ps == l.time_ps
                    && l.dom == Domain::W
                    && lines[i + 1].line.dom == Domain::R;
                let word = next_word & cfg.data_mask();
                let got: Vec<(Domain, StepEdge)> = if pair {
                    both_seen = true;
                    let (w, r) = f.both_edges(l.en, word, lines[i + 1].line.en).unwrap();
                    vec![(Domain::W, w), (Domain::R, r)]
                } else if l.dom == Domain::W {
                    vec![(Domain::W, f.write_edge(l.en, word).unwrap())]
                } else {
                    vec![(Domain::R, f.read_edge(l.en))]
                };
                for (j, (dom, e)) in got.iter().enumerate() {
                    let want = lines[i + j].line;
                    assert_eq!(want.dom, *dom);
                    if *dom == Domain::W && e.moved {
                        next_word += 1;
                    }
                    let ctx = format!("case {case} line {}", lines[i + j].line_no);
                    assert_eq!(want.data, e.data, "{ctx}: data");
                    assert_eq!(want.wfull, f.wfull(), "{ctx}: wfull");
                    assert_eq!(want.rempty, f.rempty(), "{ctx}: rempty");
                    assert_eq!(want.wptr, f.wptr(), "{ctx}: wptr");
                    assert_eq!(want.rptr, f.rptr(), "{ctx}: rptr");
                    assert_eq!(want.wq_rptr, f.wq_rptr(), "{ctx}: wq_rptr");
                    assert_eq!(want.rq_wptr, f.rq_wptr(), "{ctx}: rq_wptr");
                }
                i += got.len();
            }
            assert!(next_word >= 60, "case {case}: the run moved every word");
            if case % 3 == 0 {
                assert!(both_seen, "case {case}: harmonic clocks give coincident edges");
            }
        }
    }

    #[test]
    fn bad_inputs_are_one_line_errors() {
        assert!(StepFifo::new(3, 2, 8).unwrap_err().to_string().contains("--depth"));
        let mut f = StepFifo::new(4, 2, 4).unwrap();
        let e = f.write_edge(true, 16).unwrap_err().to_string();
        assert!(e.contains("data: 16") && e.contains("0..=15"), "{e}");
        assert_eq!(f.write_edges(), 0, "a rejected edge changes nothing");
    }
}

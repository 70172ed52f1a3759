//! Validated configuration of the FIFO and its two clocks.
//!
//! Serde-free on purpose: the CLI builds a [`FifoSpec`] and a [`ClockPair`]
//! from its flags and calls `validate` once; the simulator then assumes every
//! value is in range. Errors name the CLI flag of the bad field, its value and
//! the allowed range (one line, exit code 2).

use crate::error::{Error, Result};

/// Largest number of synchronizer flops per direction.
pub const MAX_SYNC: u32 = 16;
/// Largest clock period, 1 s in ps.
pub const MAX_PERIOD_PS: u64 = 1_000_000_000_000;

/// A clock domain: the write (producer) side or the read (consumer) side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// The write clock domain (`wclk`).
    W,
    /// The read clock domain (`rclk`).
    R,
}

impl Domain {
    /// `'W'` or `'R'`, as in the trace.
    pub fn letter(self) -> char {
        match self {
            Domain::W => 'W',
            Domain::R => 'R',
        }
    }
}

/// A deliberately broken FIFO, to show the scoreboard catches real bugs.
/// See `docs/cdc.md` ("Fault modes") for what each one models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fault {
    /// The correct design.
    #[default]
    None,
    /// Pointers cross the clock boundary in binary instead of Gray code, over
    /// an unconstrained asynchronous path: bit i of each crossing bus arrives
    /// `floor(skew_ps * i / n)` ps after the source register changes (bit 0
    /// first, the MSB `skew_ps` late). Metastability, when on, acts on each
    /// bit's own arrival time.
    BinaryPointers {
        /// Arrival skew from bit 0 to the MSB (ps); 0 = all bits at once.
        skew_ps: u64,
    },
    /// One synchronizer flop per direction (`sync` must be 1); a metastable
    /// capture is still unresolved when the flag register samples it.
    SingleFlop,
    /// A reset pulse that reaches only `domain`, taking effect just after the
    /// last instant at or before `at_ps`.
    ResetOneDomain {
        /// The domain that is reset.
        domain: Domain,
        /// When the reset hits (ps).
        at_ps: u64,
    },
}

impl Fault {
    /// Short name used in reports: `none`, `binary`, `single-flop`,
    /// `reset-write@T`, `reset-read@T`.
    pub fn name(&self) -> String {
        match self {
            Fault::None => "none".into(),
            Fault::BinaryPointers { skew_ps: 0 } => "binary".into(),
            Fault::BinaryPointers { skew_ps } => format!("binary(skew={skew_ps}ps)"),
            Fault::SingleFlop => "single-flop".into(),
            Fault::ResetOneDomain { domain: Domain::W, at_ps } => format!("reset-write@{at_ps}"),
            Fault::ResetOneDomain { domain: Domain::R, at_ps } => format!("reset-read@{at_ps}"),
        }
    }
}

/// Metastability emulation windows (ps) around each capturing edge of the
/// first synchronizer flop. See `docs/cdc.md` ("Metastability").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Setup window: an input change at `tc` with `t - setup_ps < tc < t`
    /// makes the capture at `t` see the previous value.
    pub setup_ps: u64,
    /// Hold window: an input change at `tn` with `t <= tn < t + hold_ps`
    /// may be seen early by the capture at `t` (each changing bit by a coin flip).
    pub hold_ps: u64,
}

/// FIFO variants on top of the Cummings core (docs/cdc.md §16): a read stage,
/// the read-data style and programmable almost-full / almost-empty flags.
/// `Variant::default()` is the plain core (trace format v1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Registers in front of the read port, 0..=3 (refilled when the
    /// consumer is ready or any register is empty).
    pub read_stages: u32,
    /// First-word-fall-through (true: the consumer sees the head word and
    /// its valid before it reads) or registered read data (false: a read
    /// loads an output register; the word is delivered one read edge later).
    pub fwft: bool,
    /// Almost-full threshold AF (1..=depth): `wafull` is set when the write
    /// side's occupancy estimate is >= AF. None: no flag.
    pub almost_full: Option<u32>,
    /// Almost-empty threshold AE (0..=depth-1): `raempty` is set when the read
    /// side's occupancy estimate is <= AE. None: no flag.
    pub almost_empty: Option<u32>,
}

impl Default for Variant {
    fn default() -> Self {
        Variant { read_stages: 0, fwft: true, almost_full: None, almost_empty: None }
    }
}

impl Variant {
    /// The plain Cummings core (no stage, FWFT, no almost flags).
    pub fn is_plain(&self) -> bool {
        *self == Variant::default()
    }
    /// `read_stages=N read_data=fwft|registered almost_full=AF|- almost_empty=AE|-`
    /// (in trace headers; empty for the plain core so v1 headers stay as they were).
    pub fn describe(&self) -> String {
        if self.is_plain() {
            return String::new();
        }
        let o = |v: Option<u32>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
        format!(
            " read_stages={} read_data={} almost_full={} almost_empty={}",
            self.read_stages,
            if self.fwft { "fwft" } else { "registered" },
            o(self.almost_full),
            o(self.almost_empty)
        )
    }
}

/// The FIFO as the user asked for it (unvalidated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoSpec {
    /// Number of words, a power of two 2..=65536.
    pub depth: u64,
    /// Synchronizer flops per direction, 2..=16 (1 only with [`Fault::SingleFlop`]).
    pub sync: u32,
    /// Data width in bits, 1..=64.
    pub data_width: u32,
    /// Fault mode (default none).
    pub fault: Fault,
    /// Metastability emulation (default off).
    pub meta: Option<Meta>,
    /// Seed of every random stream of a run (enables, jitter, metastability).
    pub seed: u64,
}

impl Default for FifoSpec {
    fn default() -> Self {
        FifoSpec { depth: 16, sync: 2, data_width: 8, fault: Fault::None, meta: None, seed: 0 }
    }
}

/// A validated FIFO configuration (see [`FifoSpec::validate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FifoConfig {
    pub(crate) addr_bits: u32,
    pub(crate) sync: u32,
    pub(crate) data_width: u32,
    pub(crate) fault: Fault,
    pub(crate) meta: Option<Meta>,
    pub(crate) seed: u64,
    pub(crate) variant: Variant,
}

impl FifoSpec {
    /// Check every field; errors name the CLI flag, the value and the range.
    pub fn validate(&self) -> Result<FifoConfig> {
        if !(2..=65536).contains(&self.depth) || !self.depth.is_power_of_two() {
            return Err(Error::field("--depth", self.depth, "a power of two 2..=65536"));
        }
        let single = matches!(self.fault, Fault::SingleFlop);
        if single {
            if self.sync != 1 {
                return Err(Error::field("--sync", self.sync, "1 with --fault single-flop"));
            }
        } else if !(2..=MAX_SYNC).contains(&self.sync) {
            return Err(Error::field(
                "--sync",
                self.sync,
                format!("2..={MAX_SYNC}; 1 only with --fault single-flop"),
            ));
        }
        if !(1..=64).contains(&self.data_width) {
            return Err(Error::field("--data-width", self.data_width, "1..=64"));
        }
        Ok(FifoConfig {
            addr_bits: self.depth.trailing_zeros(),
            sync: self.sync,
            data_width: self.data_width,
            fault: self.fault,
            meta: self.meta,
            seed: self.seed,
            variant: Variant::default(),
        })
    }
}

impl FifoConfig {
    /// The same configuration with FIFO variant `v` (validated; errors name
    /// the CLI flags `--read-stages`, `--almost-full`, `--almost-empty`).
    /// Variants need the correct design (`Fault::None`); metastability is allowed.
    pub fn with_variant(&self, v: Variant) -> Result<FifoConfig> {
        if v.read_stages > 3 {
            return Err(Error::field("--read-stages", v.read_stages, "0..=3"));
        }
        let d = self.depth();
        if let Some(af) = v.almost_full {
            if !(1..=d).contains(&(af as u64)) {
                return Err(Error::field("--almost-full", af, format!("1..={d} (the depth)")));
            }
        }
        if let Some(ae) = v.almost_empty {
            if ae as u64 >= d {
                return Err(Error::field("--almost-empty", ae, format!("0..={} (below the depth)", d - 1)));
            }
        }
        // The one-flop design without metastability (replay's S = 1) is plain.
        let plain_design =
            self.fault == Fault::None || (self.fault == Fault::SingleFlop && self.meta.is_none());
        if !v.is_plain() && !plain_design {
            return Err(Error::input(format!(
                "--fault {}: FIFO variants (--read-stages, --read-data, --almost-*) need --fault none",
                self.fault.name()
            )));
        }
        let mut c = self.clone();
        c.variant = v;
        Ok(c)
    }
    /// The FIFO variant (plain core by default).
    pub fn variant(&self) -> Variant {
        self.variant
    }
    /// Depth D = 2^n.
    pub fn depth(&self) -> u64 {
        1u64 << self.addr_bits
    }
    /// n = log2(depth); pointers have n+1 bits.
    pub fn addr_bits(&self) -> u32 {
        self.addr_bits
    }
    /// Synchronizer flops per direction.
    pub fn sync(&self) -> u32 {
        self.sync
    }
    /// Data width in bits.
    pub fn data_width(&self) -> u32 {
        self.data_width
    }
    /// The fault mode.
    pub fn fault(&self) -> Fault {
        self.fault
    }
    /// Metastability windows, if emulation is on.
    pub fn meta(&self) -> Option<Meta> {
        self.meta
    }
    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Mask of a data word: the low `data_width` bits.
    pub fn data_mask(&self) -> u64 {
        if self.data_width == 64 {
            u64::MAX
        } else {
            (1u64 << self.data_width) - 1
        }
    }
    /// Hex digits of a pointer in the trace: ceil((n+1)/4).
    pub fn ptr_hex_digits(&self) -> usize {
        (self.addr_bits as usize + 1).div_ceil(4)
    }
    /// A copy with another fault / metastability / seed (revalidated).
    pub fn to_spec(&self) -> FifoSpec {
        FifoSpec {
            depth: self.depth(),
            sync: self.sync,
            data_width: self.data_width,
            fault: self.fault,
            meta: self.meta,
            seed: self.seed,
        }
    }
}

/// One clock: rising edge k at `max(0, phase_ps + k*period_ps + d_k)`, where
/// `d_k` is the seeded jitter in `[-jitter_ps, jitter_ps]` (0 when off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Period in ps, 2..=10^12.
    pub period_ps: u64,
    /// Time of edge 0 in ps, 0..period_ps.
    pub phase_ps: u64,
    /// Peak jitter in ps, 0..=(period_ps-1)/2 (keeps edges strictly increasing).
    pub jitter_ps: u64,
}

impl Clock {
    /// A jitter-free clock with phase 0.
    pub fn new(period_ps: u64) -> Clock {
        Clock { period_ps, phase_ps: 0, jitter_ps: 0 }
    }
    /// The same clock with another phase.
    pub fn with_phase(mut self, phase_ps: u64) -> Clock {
        self.phase_ps = phase_ps;
        self
    }
    fn validate(&self, d: char) -> Result<()> {
        let dl = d.to_ascii_lowercase();
        if !(2..=MAX_PERIOD_PS).contains(&self.period_ps) {
            return Err(Error::field(
                format!("--{dl}clk-ps"),
                self.period_ps,
                format!("2..={MAX_PERIOD_PS}"),
            ));
        }
        if self.phase_ps >= self.period_ps {
            return Err(Error::field(
                format!("--{dl}phase-ps"),
                self.phase_ps,
                format!("0..={} (below the period)", self.period_ps - 1),
            ));
        }
        if self.jitter_ps > (self.period_ps - 1) / 2 {
            return Err(Error::field(
                format!("--{dl}jitter-ps"),
                self.jitter_ps,
                format!("0..={} (below half the period)", (self.period_ps - 1) / 2),
            ));
        }
        Ok(())
    }
    /// Smallest possible spacing of two consecutive edges.
    pub fn min_spacing_ps(&self) -> u64 {
        self.period_ps - 2 * self.jitter_ps
    }
}

/// The write and read clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockPair {
    /// Write clock.
    pub w: Clock,
    /// Read clock.
    pub r: Clock,
}

impl ClockPair {
    /// Two jitter-free clocks with phase 0.
    pub fn new(wclk_ps: u64, rclk_ps: u64) -> ClockPair {
        ClockPair { w: Clock::new(wclk_ps), r: Clock::new(rclk_ps) }
    }
    /// Check both clocks, and the metastability windows of `cfg` against them.
    pub fn validate(&self, cfg: &FifoConfig) -> Result<()> {
        self.w.validate('W')?;
        self.r.validate('R')?;
        if let Some(m) = cfg.meta {
            // At most one input change may fall in setup+hold of one capture,
            // so "previous" and "next" value are well defined.
            let lim = self.w.min_spacing_ps().min(self.r.min_spacing_ps()) - 1;
            if m.setup_ps > lim {
                return Err(Error::field("--meta-setup-ps", m.setup_ps, format!("0..={lim}")));
            }
            if m.setup_ps + m.hold_ps > lim {
                return Err(Error::field(
                    "--meta-hold-ps",
                    m.hold_ps,
                    format!("0..={} (setup + hold below the shortest edge spacing)", lim - m.setup_ps),
                ));
            }
        }
        if let Fault::BinaryPointers { skew_ps } = cfg.fault {
            let lim = 64 * self.w.period_ps.min(self.r.period_ps);
            if skew_ps > lim {
                return Err(Error::field(
                    "--fault-skew-ps",
                    skew_ps,
                    format!("0..={lim} (64 of the shorter clock period)"),
                ));
            }
        }
        if let Fault::ResetOneDomain { at_ps, .. } = cfg.fault {
            if at_ps > u64::MAX / 4 {
                return Err(Error::field("--fault-at-ps", at_ps, format!("0..={}", u64::MAX / 4)));
            }
        }
        Ok(())
    }
}

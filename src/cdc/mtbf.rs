//! Synchronizer mean time between failures.
//!
//! Model (Wakerly, *Digital Design: Principles and Practices*, 3rd ed., §8.9;
//! the same formula as Ginosar, "Metastability and Synchronizers", IEEE D&T 2011):
//!
//! `MTBF = exp(t_r / tau) / (T0 * f_clk * f_data)`
//!
//! with the resolution time `t_r` the slack a metastable first flop has to
//! resolve before the next register samples it:
//! - `S >= 2` flops: `t_r = (S-1)*T_clk - t_clk2q - t_setup` (each extra
//!   stage adds one clock period; the clock-to-output delay and the setup time
//!   of the flop-to-flop paths are charged once, and the last stage's own
//!   slack is not counted, which is conservative);
//! - `S = 1`: the flop feeds logic directly: `t_r = T_clk - t_clk2q - t_logic - t_setup`.
//!
//! Wakerly measures `t_r` from the clock edge (tpd included), i.e. use
//! `t_clk2q = 0` to reproduce his numbers. Independent synchronizers fail
//! independently, so `1/MTBF_system = sum(1/MTBF_i)`. A Gray pointer bus of
//! any width changes one bit per pointer step, so it counts as one
//! synchronizer with `f_data` = the pointer's step rate.

use crate::error::{Error, Result};
use serde::Serialize;

/// Flop and synchronizer timing (seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Metastability resolution time constant tau (s).
    pub tau_s: f64,
    /// Metastability window constant T0 (s).
    pub t0_s: f64,
    /// Synchronizer flops S (1..=16).
    pub stages: u32,
    /// Setup time of the capturing flop (s).
    pub t_setup_s: f64,
    /// Clock-to-output delay (s).
    pub t_clk2q_s: f64,
    /// Logic delay after a single flop (s, S = 1 only).
    pub t_logic_s: f64,
}

/// One synchronizer's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SyncMtbf {
    /// Name (e.g. `w2r`).
    pub name: String,
    /// Sampling clock frequency (Hz).
    pub f_clk_hz: f64,
    /// Input change rate (Hz).
    pub f_data_hz: f64,
    /// Resolution time (s).
    pub t_r_s: f64,
    /// MTBF in seconds (None if it overflows f64).
    pub mtbf_s: Option<f64>,
    /// log10 of the MTBF in seconds (always finite).
    pub log10_mtbf_s: f64,
}

fn pos(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::field(name, v, "a finite number > 0"));
    }
    Ok(())
}

fn nonneg(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(Error::field(name, v, "a finite number >= 0"));
    }
    Ok(())
}

impl Timing {
    /// Check ranges (errors name the CLI flag).
    pub fn validate(&self) -> Result<()> {
        pos("--tau-ps", self.tau_s)?;
        pos("--t0-s", self.t0_s)?;
        if !(1..=16).contains(&self.stages) {
            return Err(Error::field("--stages", self.stages, "1..=16"));
        }
        nonneg("--t-setup-ps", self.t_setup_s)?;
        nonneg("--t-clk2q-ps", self.t_clk2q_s)?;
        nonneg("--t-logic-ps", self.t_logic_s)
    }

    /// Resolution time for a clock of frequency `f_clk` (see module docs).
    pub fn resolution_time(&self, f_clk: f64) -> f64 {
        let t = 1.0 / f_clk;
        if self.stages >= 2 {
            (self.stages - 1) as f64 * t - self.t_clk2q_s - self.t_setup_s
        } else {
            t - self.t_clk2q_s - self.t_logic_s - self.t_setup_s
        }
    }

    /// MTBF of one synchronizer.
    pub fn synchronizer(&self, name: &str, f_clk: f64, f_data: f64) -> Result<SyncMtbf> {
        pos("--f-clk-hz", f_clk)?;
        pos("--f-data-hz", f_data)?;
        let t_r = self.resolution_time(f_clk);
        let m = mtbf(t_r, self.tau_s, self.t0_s, f_clk, f_data);
        let log10 = t_r / self.tau_s / std::f64::consts::LN_10 - (self.t0_s * f_clk * f_data).log10();
        Ok(SyncMtbf {
            name: name.into(),
            f_clk_hz: f_clk,
            f_data_hz: f_data,
            t_r_s: t_r,
            mtbf_s: m.is_finite().then_some(m),
            log10_mtbf_s: log10,
        })
    }
}

/// `exp(t_r/tau) / (t0 * f_clk * f_data)` (all SI units).
pub fn mtbf(t_r: f64, tau: f64, t0: f64, f_clk: f64, f_data: f64) -> f64 {
    (t_r / tau).exp() / (t0 * f_clk * f_data)
}

/// log10 of the system MTBF of independent synchronizers,
/// `1/MTBF = sum(1/MTBF_i)`, computed in the log domain (no overflow).
pub fn system_log10(parts: &[SyncMtbf]) -> f64 {
    // 1/MTBF = sum 10^(-l_i); factor out the largest term.
    let mn = parts.iter().map(|p| p.log10_mtbf_s).fold(f64::INFINITY, f64::min);
    let s: f64 = parts.iter().map(|p| 10f64.powf(mn - p.log10_mtbf_s)).sum();
    mn - s.log10()
}

/// Seconds per (Julian) year, for reporting.
pub const YEAR_S: f64 = 365.25 * 86400.0;

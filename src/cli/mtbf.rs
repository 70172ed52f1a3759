//! `bitmac mtbf`: synchronizer MTBF per synchronizer and for the system.
//! Model and units in [`crate::cdc::mtbf`] and `docs/cdc.md`.

use crate::cdc::mtbf::{system_log10, SyncMtbf, Timing, YEAR_S};
use crate::error::{Error, Result};

/// Arguments of `bitmac mtbf`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Resolution time constant tau (ps).
    #[arg(long, value_name = "PS")]
    pub tau_ps: Option<f64>,
    /// Window constant T0 (seconds, e.g. 9.6e-18).
    #[arg(long, value_name = "S")]
    pub t0_s: Option<f64>,
    /// Synchronizer flops (1..=16).
    #[arg(long, default_value_t = 2)]
    pub stages: u32,
    /// Setup time of the flops (ps).
    #[arg(long, value_name = "PS", default_value_t = 0.0)]
    pub t_setup_ps: f64,
    /// Clock-to-output delay of the flops (ps).
    #[arg(long, value_name = "PS", default_value_t = 0.0)]
    pub t_clk2q_ps: f64,
    /// Logic delay after a single flop (ps, stages = 1 only).
    #[arg(long, value_name = "PS", default_value_t = 0.0)]
    pub t_logic_ps: f64,
    /// Sampling clock frequency of one synchronizer (Hz).
    #[arg(long, value_name = "HZ")]
    pub f_clk_hz: Option<f64>,
    /// Input change rate of one synchronizer (Hz).
    #[arg(long, value_name = "HZ")]
    pub f_data_hz: Option<f64>,
    /// Number of identical synchronizers (with --f-clk-hz / --f-data-hz).
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// FIFO mode: write clock (Hz); needs --rclk-hz --push-hz --pop-hz.
    #[arg(long, value_name = "HZ")]
    pub wclk_hz: Option<f64>,
    /// FIFO mode: read clock (Hz).
    #[arg(long, value_name = "HZ")]
    pub rclk_hz: Option<f64>,
    /// FIFO mode: pushes per second (write pointer steps, one Gray bit each).
    #[arg(long, value_name = "HZ")]
    pub push_hz: Option<f64>,
    /// FIFO mode: pops per second.
    #[arg(long, value_name = "HZ")]
    pub pop_hz: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn need(v: Option<f64>, flag: &str) -> Result<f64> {
    v.ok_or_else(|| Error::input(format!("{flag} is required (see bitmac mtbf --help)")))
}

fn fmt_s(p: &SyncMtbf) -> String {
    match p.mtbf_s {
        Some(m) => format!("{m:.6e} s ({:.6e} years)", m / YEAR_S),
        None => format!("10^{:.3} s", p.log10_mtbf_s),
    }
}

/// Run `bitmac mtbf`.
pub fn run(a: Args) -> Result<i32> {
    let t = Timing {
        tau_s: need(a.tau_ps, "--tau-ps")? * 1e-12,
        t0_s: need(a.t0_s, "--t0-s")?,
        stages: a.stages,
        t_setup_s: a.t_setup_ps * 1e-12,
        t_clk2q_s: a.t_clk2q_ps * 1e-12,
        t_logic_s: a.t_logic_ps * 1e-12,
    };
    t.validate()?;
    let mut parts = Vec::new();
    if a.wclk_hz.is_some() || a.rclk_hz.is_some() || a.push_hz.is_some() || a.pop_hz.is_some() {
        if a.f_clk_hz.is_some() || a.f_data_hz.is_some() {
            return Err(Error::input(
                "use either --f-clk-hz/--f-data-hz or the FIFO flags --wclk-hz/--rclk-hz/--push-hz/--pop-hz",
            ));
        }
        let (w, r) = (need(a.wclk_hz, "--wclk-hz")?, need(a.rclk_hz, "--rclk-hz")?);
        let (pu, po) = (need(a.push_hz, "--push-hz")?, need(a.pop_hz, "--pop-hz")?);
        // w2r carries the write pointer (changes per push) into rclk.
        parts.push(t.synchronizer("w2r", r, pu).map_err(|e| e.context("w2r"))?);
        parts.push(t.synchronizer("r2w", w, po).map_err(|e| e.context("r2w"))?);
    } else {
        if !(1..=1_000_000).contains(&a.count) {
            return Err(Error::field("--count", a.count, "1..=1000000"));
        }
        let (f, d) = (need(a.f_clk_hz, "--f-clk-hz")?, need(a.f_data_hz, "--f-data-hz")?);
        let one = t.synchronizer("sync", f, d)?;
        for i in 0..a.count {
            let mut p = one.clone();
            if a.count > 1 {
                p.name = format!("sync{i}");
            }
            parts.push(p);
        }
    }
    let sys_log = system_log10(&parts);
    let sys = 10f64.powf(sys_log);
    if a.json {
        let j = serde_json::json!({
            "model": "MTBF = exp(t_r/tau)/(T0*f_clk*f_data); t_r = (S-1)*T_clk - t_clk2q - t_setup (S>=2), T_clk - t_clk2q - t_logic - t_setup (S=1); 1/MTBF_sys = sum 1/MTBF_i",
            "tau_s": t.tau_s, "t0_s": t.t0_s, "stages": t.stages,
            "synchronizers": parts,
            "system_log10_mtbf_s": sys_log,
            "system_mtbf_s": sys.is_finite().then_some(sys),
        });
        println!("{}", serde_json::to_string_pretty(&j).map_err(|e| Error::internal(e.to_string()))?);
        return Ok(0);
    }
    println!(
        "model: MTBF = exp(t_r/tau) / (T0 * f_clk * f_data); t_r = (S-1)*T_clk - t_clk2q - t_setup (S>=2)"
    );
    println!("tau = {:e} s  T0 = {:e} s  stages = {}", t.tau_s, t.t0_s, t.stages);
    for p in &parts {
        println!(
            "{}: f_clk {:e} Hz  f_data {:e} Hz  t_r {:.6e} s  MTBF {}",
            p.name,
            p.f_clk_hz,
            p.f_data_hz,
            p.t_r_s,
            fmt_s(p)
        );
        if p.t_r_s <= 0.0 {
            println!("{}: warning: no resolution time left (t_r <= 0)", p.name);
        }
    }
    if sys.is_finite() {
        println!("system: MTBF {sys:.6e} s ({:.6e} years)", sys / YEAR_S);
    } else {
        println!("system: MTBF 10^{sys_log:.3} s");
    }
    Ok(0)
}

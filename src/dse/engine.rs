//! The sweep's cost models (`docs/dse.md`): the exact GEMM used as the SQNR
//! reference of a model run, the FIFO stalls and synchronizer MTBF (on the
//! CDC model, `crate::cdc`) and the area proxy. The datapath numerics and
//! timing are the datapath's (`crate::layers`, `crate::array`).

use super::hw::Hw;
use crate::cdc::mtbf::{system_log10, Timing};
use crate::cdc::{transfer, ClockPair, FifoSpec, Pattern};
use crate::error::Result;

/// The exact GEMM (`i64`, no folds, no rounding, no overflow) for `|a|, |w| <
/// 2^16` and `kd < 2^31`; used as the reference the metrics compare with.
pub fn gemm_exact(a: &[i32], m: usize, kd: usize, w: &[i32], n: usize, bias: Option<&[i32]>) -> Vec<i64> {
    let mut out = vec![0i64; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: i64 = (0..kd).map(|t| a[i * kd + t] as i64 * w[j * kd + t] as i64).sum();
            out[i * n + j] = s + bias.map_or(0, |b| b[j] as i64);
        }
    }
    out
}

/// Write stalls of one inference's two clock-domain crossings, on the CDC
/// model (`crate::cdc::transfer`, `docs/cdc.md`), as `bitmac run` moves
/// them: `words_in` words host -> array (host clock `cdc.host_period_ps`
/// writes, array clock `clock.period_ps` reads) and `words_out` words array
/// -> host, both with a producer offering a word on every edge and a greedy
/// consumer. Returns the write edges stalled by a full FIFO, summed over the
/// two FIFOs. The words' values do not affect the timing (no fault or
/// metastability emulation), so zeros are sent.
pub fn fifo_stalls(hw: &Hw, words_in: u64, words_out: u64) -> Result<u64> {
    let (t_array, t_host) = (hw.cfg.clock_period_ps(), hw.cdc.host_period_ps);
    let fifo = FifoSpec {
        depth: hw.cdc.fifo_depth as u64,
        sync: hw.cdc.sync_stages,
        data_width: 8,
        ..FifoSpec::default()
    }
    .validate()?;
    let mut stalls = 0;
    for (n, clocks) in
        [(words_in, ClockPair::new(t_host, t_array)), (words_out, ClockPair::new(t_array, t_host))]
    {
        if n > 0 {
            let words = vec![0u64; n as usize];
            stalls += transfer(&fifo, &clocks, &words, &Pattern::Always, &Pattern::Always)?.write_stalls;
        }
    }
    Ok(stalls)
}

/// log10 of the system MTBF in seconds of the four Gray-pointer
/// synchronizers of the two FIFOs (`crate::cdc::mtbf`, `1/MTBF = sum
/// 1/MTBF_i`): each crossing into a domain is sampled by that domain's clock
/// with `cdc.sync_stages` flops and `f_data` the sending clock (a pointer
/// that may step on every sending edge, the worst case), `tau = 20 ps`,
/// `T0 = 20 ps`, zero setup and clock-to-output times.
pub fn mtbf_log10_s(hw: &Hw) -> Result<f64> {
    let t = Timing {
        tau_s: 20e-12,
        t0_s: 20e-12,
        stages: hw.cdc.sync_stages,
        t_setup_s: 0.0,
        t_clk2q_s: 0.0,
        t_logic_s: 0.0,
    };
    let fa = 1e12 / hw.cfg.clock_period_ps() as f64;
    let fh = 1e12 / hw.cdc.host_period_ps as f64;
    let parts = [
        t.synchronizer("in.w2r", fa, fh)?,
        t.synchronizer("in.r2w", fh, fa)?,
        t.synchronizer("out.w2r", fh, fa)?,
        t.synchronizer("out.r2w", fa, fh)?,
    ];
    Ok(system_log10(&parts))
}

/// The area proxy in bit-cells (`docs/dse.md`):
/// `R*C*(wbits*abits + P) + C*P*R + D*obits + 2*S*(log2(D) + 1)`: the PE
/// multipliers and accumulators, a psum buffer of `R` P-bit entries per
/// column, the FIFO storage of `D` output words of `requant.out_bits` and
/// the two synchronizers of `log2(D)+1`-bit Gray pointers.
pub fn area_proxy(hw: &Hw) -> u64 {
    let c = &hw.cfg;
    let (r, cols) = (c.rows() as u64, c.cols() as u64);
    let (wb, ab) = (c.weights().width() as u64, c.activations().width() as u64);
    let p = c.acc_bits() as u64;
    let ob = c.requant().out.width() as u64;
    let d = hw.cdc.fifo_depth as u64;
    let s = hw.cdc.sync_stages as u64;
    r * cols * (wb * ab + p) + cols * p * r + d * ob + 2 * s * (d.trailing_zeros() as u64 + 1)
}

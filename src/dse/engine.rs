//! The sweep's own proxies (`docs/dse.md`): the exact GEMM used as the
//! SQNR reference of a model run, the output-FIFO stall count, the
//! synchronizer MTBF and the area proxy. The datapath numerics and timing
//! are the datapath's (`crate::layers`, `crate::array`).

use super::hw::Hw;

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

/// Write-side stalls of the output FIFO for a stream of `words` words
/// (`docs/dse.md`): the writer offers one word per write edge (period 1),
/// the reader pops one per read edge (period `host_period / array_period`) when it sees
/// data; each side sees the other's pointer `sync_stages` of its own periods
/// late. A write edge with a word to offer and a full FIFO (as seen) is a
/// stall.
pub fn fifo_stalls(hw: &Hw, words: u64) -> u64 {
    // Integer time: write period TW, read period TR.
    const TW: u64 = 1_000_000;
    // Write clock: the array (clock.period_ps); read clock: the host
    // (cdc.host_period_ps); TR = TW * host_period / array_period.
    let tr = ((TW as u128 * hw.cdc.host_period_ps as u128) / hw.cfg.clock_period_ps() as u128).max(1) as u64;
    let s = hw.cdc.sync_stages as u64;
    let depth = hw.cdc.fifo_depth as u64;
    let mut push_t: Vec<u64> = Vec::with_capacity(words as usize); // time of the i-th push
    let mut pop_t: Vec<u64> = Vec::with_capacity(words as usize);
    let mut stalls = 0u64;
    let (mut tw, mut trd) = (TW, tr); // next write / read edge
    let seen = |events: &Vec<u64>, t: u64, lag: u64| -> u64 {
        // Events at or before t - lag (partition_point: count of times <= limit).
        match t.checked_sub(lag) {
            Some(lim) => events.partition_point(|&e| e <= lim) as u64,
            None => 0,
        }
    };
    while (pop_t.len() as u64) < words {
        if (push_t.len() as u64) < words && tw <= trd {
            // Write edge (writes win a coincident edge; the reader then sees
            // the push only after its sync delay anyway).
            let pops = seen(&pop_t, tw, s * TW);
            if push_t.len() as u64 - pops < depth {
                push_t.push(tw);
            } else {
                stalls += 1;
            }
            tw += TW;
        } else {
            let pushes = seen(&push_t, trd, s * tr);
            if pushes > pop_t.len() as u64 {
                pop_t.push(trd);
            }
            trd += tr;
        }
    }
    stalls
}

/// log10 of the synchronizer MTBF in seconds (`docs/dse.md`): the worse of
/// the two pointer crossings, `MTBF = exp(t_r / tau) / (T0 * f_clk * f_data)`
/// with `t_r = (S - 1) * T_clk` of the receiving clock, `tau = 20 ps`,
/// `T0 = 20 ps`, and `f_data` half the sending clock (a Gray pointer bit
/// toggles at most every other edge).
pub fn mtbf_log10_s(hw: &Hw) -> f64 {
    const TAU: f64 = 20e-12;
    const T0: f64 = 20e-12;
    let tw = hw.cfg.clock_period_ps() as f64 * 1e-12;
    let tr = hw.cdc.host_period_ps as f64 * 1e-12;
    let one = |t_recv: f64, t_send: f64| -> f64 {
        let tres = (hw.cdc.sync_stages as f64 - 1.0) * t_recv;
        // log10(exp(x)/y) = x/ln10 - log10(y)
        tres / TAU / std::f64::consts::LN_10 - (T0 * (1.0 / t_recv) * (0.5 / t_send)).log10()
    };
    one(tr, tw).min(one(tw, tr))
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

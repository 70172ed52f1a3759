//! The MAC array against an independent reference written from
//! `docs/datapath.md` (not from `src/array/`): per-adder narrowing with
//! num-bigint, the tile schedule and per-adder cycle formulas of the
//! "Timing" section, and the statistics definitions. Properties (proptest):
//! - the fast and the cycle engine agree bit for bit (values, statistics,
//!   cycles) and both match the reference;
//! - with P at or above the A2Q width (and at or above the reported minimum
//!   width), the result is the exact num-bigint GEMM;
//! - with WRAP and d = 0, the result is the exact GEMM mod 2^P;
//! - the reported minimum width is tight (no overflow at it, some below it).

use bitmac::array::{
    compute_cycles, run_array, run_array_chunked, ArrayBuffers, ArrayConfig, Dataflow, Engine, Matrix,
    OverflowEvent, PreparedWeights, Simd,
};
use bitmac::hw::{
    AccumulatorSpec, ArraySpec, ClockSpec, HwConfig, HwSpec, OperandSpec, PsumSpec, RequantSpec,
};
use bitmac::numerics::{OverflowMode, RoundMode, Rounder};
use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, ToPrimitive, Zero};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Case {
    df: Dataflow,
    rows: usize,
    cols: usize,
    wbits: u32,
    wsigned: bool,
    abits: u32,
    asigned: bool,
    p: u32,
    mode: OverflowMode,
    d: u32,
    rmode: RoundMode,
    offset: i64,
    m: usize,
    k: usize,
    n: usize,
    a: Vec<i32>,
    w: Vec<i32>,
}

fn spec(c: &Case) -> HwSpec {
    HwSpec {
        array: ArraySpec { rows: c.rows as u64, cols: c.cols as u64, dataflow: c.df.name().into() },
        weights: OperandSpec { bits: c.wbits as u64, signed: c.wsigned },
        activations: OperandSpec { bits: c.abits as u64, signed: c.asigned },
        accumulator: AccumulatorSpec { bits: c.p as u64, overflow: c.mode.name().into() },
        psum: PsumSpec { drop_bits: c.d as u64, rounding: c.rmode.name().into(), offset: c.offset },
        requant: RequantSpec { rounding: "double".into(), relu: false, out_bits: 8, out_signed: true },
        clock: ClockSpec { period_ps: 1000 },
        cdc: None,
        memory: None,
        energy: None,
    }
}

fn range(bits: u32, signed: bool) -> (i32, i32) {
    if signed {
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    } else {
        (0, (1 << bits) - 1)
    }
}

/// Narrow an exact value into signed P bits (docs/numerics.md, "Overflow").
fn narrow(x: &BigInt, p: u32, mode: OverflowMode) -> (BigInt, bool) {
    let max = (BigInt::one() << (p - 1)) - 1;
    let min = -(BigInt::one() << (p - 1));
    let in_range = *x >= min && *x <= max;
    let v = match mode {
        OverflowMode::Wrap => (x - &min).mod_floor(&(BigInt::one() << p)) + &min,
        OverflowMode::Sat => x.clone().min(max.clone()).max(min.clone()),
        OverflowMode::SatZero => {
            if in_range {
                x.clone()
            } else {
                BigInt::zero()
            }
        }
        OverflowMode::SatSym => x.clone().min(max.clone()).max(-max.clone()),
    };
    let ovf = v != *x;
    (v, ovf)
}

#[derive(Debug, Default)]
struct RefOut {
    acc: Vec<BigInt>,
    ovf_array: u64,
    ovf_psum: u64,
    first: Option<OverflowEvent>,
    ties: u64,
    max_psum: BigInt,
    max_acc: BigInt,
    cycles: u64,
}

/// Every tile in execution order: (start cycle, fold K range, row-mapped
/// range, column-mapped range), with L from the doc.
struct RefTile {
    start: u64,
    k0: usize,
    k1: usize,
    r0: usize,
    ru: usize,
    c0: usize,
    cu: usize,
}

fn ref_tiles(c: &Case) -> (Vec<RefTile>, u64) {
    let (r, cc) = (c.rows, c.cols);
    let mut t = 0u64;
    let mut v = Vec::new();
    match c.df {
        Dataflow::Ws | Dataflow::Is => {
            let (cdim, stream) = if c.df == Dataflow::Ws { (c.n, c.m) } else { (c.m, c.n) };
            let mut c0 = 0;
            while c0 < cdim {
                let cu = cc.min(cdim - c0);
                let mut k0 = 0;
                while k0 < c.k {
                    let k1 = (k0 + r).min(c.k);
                    v.push(RefTile { start: t, k0, k1, r0: 0, ru: 0, c0, cu });
                    t += (2 * r + stream + cu - 2) as u64;
                    k0 = k1;
                }
                c0 += cu;
            }
            (v, t + 1)
        }
        Dataflow::Os => {
            let mut r0 = 0;
            while r0 < c.m {
                let ru = r.min(c.m - r0);
                let mut c0 = 0;
                while c0 < c.n {
                    let cu = cc.min(c.n - c0);
                    v.push(RefTile { start: t, k0: 0, k1: c.k, r0, ru, c0, cu });
                    t += (c.k + ru + cu - 2 + r) as u64;
                    c0 += cu;
                }
                r0 += ru;
            }
            (v, t)
        }
    }
}

fn reference(c: &Case) -> RefOut {
    let rounder = Rounder::new(c.d, c.rmode, c.offset).unwrap();
    // The rounding centre of docs/numerics.md: where the result steps up.
    let centre = if c.d == 0 {
        0
    } else if matches!(c.rmode, RoundMode::Trn | RoundMode::TrnZero) {
        if c.offset >= 0 {
            (1i64 << c.d) - c.offset
        } else {
            -c.offset
        }
    } else {
        (1i64 << (c.d - 1)) + c.offset
    };
    let (tiles, cycles) = ref_tiles(c);
    let mut out = RefOut { acc: vec![BigInt::zero(); c.m * c.n], cycles, ..Default::default() };
    let note = |first: &mut Option<OverflowEvent>, cycle: u64, row: usize, col: usize| {
        let ev = OverflowEvent { cycle, row: row as u32, col: col as u32 };
        *first = Some(first.map_or(ev, |f| f.min(ev)));
    };
    let big_r = c.rows;
    for t in &tiles {
        // Outputs of this tile and, for each, (stream index s, row of the
        // chain's PE for product kk, column).
        let outs: Vec<(usize, usize)> = match c.df {
            Dataflow::Ws => (0..c.m).flat_map(|m| (t.c0..t.c0 + t.cu).map(move |n| (m, n))).collect(),
            Dataflow::Is => (t.c0..t.c0 + t.cu).flat_map(|m| (0..c.n).map(move |n| (m, n))).collect(),
            Dataflow::Os => {
                (t.r0..t.r0 + t.ru).flat_map(|m| (t.c0..t.c0 + t.cu).map(move |n| (m, n))).collect()
            }
        };
        for (m, n) in outs {
            // The column chain of this fold, starting from 0.
            let mut s = BigInt::zero();
            for kk in t.k0..t.k1 {
                let prod = BigInt::from(c.a[m * c.k + kk]) * BigInt::from(c.w[kk * c.n + n]);
                let (v, ovf) = narrow(&(&s + prod), c.p, c.mode);
                s = v;
                if ovf {
                    out.ovf_array += 1;
                    let r = kk - t.k0;
                    let (cycle, row, col) = match c.df {
                        Dataflow::Ws => {
                            let col = n - t.c0;
                            (t.start + (big_r + m + r + col) as u64, r, col)
                        }
                        Dataflow::Is => {
                            let col = m - t.c0;
                            (t.start + (big_r + n + r + col) as u64, r, col)
                        }
                        Dataflow::Os => {
                            let (row, col) = (m - t.r0, n - t.c0);
                            (t.start + (kk + row + col) as u64, row, col)
                        }
                    };
                    note(&mut out.first, cycle, row, col);
                }
            }
            out.max_psum = out.max_psum.clone().max(s.abs());
            // Writeback: round d LSBs, add into the P-bit buffer.
            let sv = s.to_i128().unwrap();
            let (rv, info) = rounder.round_info(sv);
            if c.d > 0 && info.residue as i64 == centre {
                out.ties += 1;
            }
            let idx = m * c.n + n;
            let (b, ovf) = narrow(&(&out.acc[idx] + BigInt::from(rv)), c.p, c.mode);
            out.acc[idx] = b;
            out.max_acc = out.max_acc.clone().max(out.acc[idx].abs());
            if ovf {
                out.ovf_psum += 1;
                let cycle = match c.df {
                    Dataflow::Ws => t.start + (2 * big_r + m + (n - t.c0)) as u64,
                    Dataflow::Is => t.start + (2 * big_r + n + (m - t.c0)) as u64,
                    Dataflow::Os => {
                        t.start + (c.k + t.ru + t.cu - 2) as u64 + (big_r - 1 - (m - t.r0)) as u64
                    }
                };
                let col = if c.df == Dataflow::Is { m - t.c0 } else { n - t.c0 };
                note(&mut out.first, cycle, big_r, col);
            }
        }
    }
    out
}

fn exact_gemm(c: &Case) -> Vec<BigInt> {
    let mut v = vec![BigInt::zero(); c.m * c.n];
    for m in 0..c.m {
        for n in 0..c.n {
            for k in 0..c.k {
                v[m * c.n + n] += BigInt::from(c.a[m * c.k + k]) * BigInt::from(c.w[k * c.n + n]);
            }
        }
    }
    v
}

fn run(c: &Case, engine: Engine) -> bitmac::array::ArrayOutput {
    run_at(c, engine, Simd::detect())
}

/// Run with the hot loops forced to one SIMD level.
fn run_at(c: &Case, engine: Engine, level: Simd) -> bitmac::array::ArrayOutput {
    let hw = HwConfig::from_spec(&spec(c)).unwrap();
    let cfg = ArrayConfig::from_hw(&hw).unwrap().with_simd(level);
    assert_eq!(cfg.simd(), level);
    let a = Matrix::new(c.m, c.k, c.a.clone()).unwrap();
    let w = Matrix::new(c.k, c.n, c.w.clone()).unwrap();
    run_array(&cfg, &a, &w, engine, None).unwrap()
}

/// Every dispatched variant (each SIMD level this CPU has, both engines)
/// and the row-chunked fast path (chunk sizes 1..=3 rows) give the same
/// output as `base`.
fn check_variants(c: &Case, base: &bitmac::array::ArrayOutput) -> Result<(), TestCaseError> {
    for level in Simd::available() {
        for engine in [Engine::Fast, Engine::Cycle] {
            let got = run_at(c, engine, level);
            prop_assert_eq!(&got, base, "{} engine at {:?}", engine, level);
        }
    }
    let hw = HwConfig::from_spec(&spec(c)).unwrap();
    let cfg = ArrayConfig::from_hw(&hw).unwrap();
    let a = Matrix::new(c.m, c.k, c.a.clone()).unwrap();
    let w = Matrix::new(c.k, c.n, c.w.clone()).unwrap();
    // The cycle engine's traced path (tag vector, pending flags, row-major
    // psum buffer: what the trace reports) against its untraced streamed path
    // (index arithmetic, diagonal-major buffer, rows retired as they
    // complete), which the runs above took.
    let mut trace = String::new();
    let traced = run_array(&cfg, &a, &w, Engine::Cycle, Some(&mut trace)).unwrap();
    prop_assert_eq!(&traced, base, "cycle engine traced vs untraced");
    // Prepared weights reused across GEMMs, into buffers a different GEMM
    // used before (larger, then smaller: stale contents must not leak), and
    // the prepared chunked path.
    let pw = PreparedWeights::new(&cfg, &w).unwrap();
    prop_assert_eq!(pw.a2q_bits_weights(), base.stats.a2q_bits_weights);
    let mut bufs = ArrayBuffers::new();
    for engine in [Engine::Fast, Engine::Cycle] {
        let big =
            Matrix::new(c.m + 3, c.k, (0..(c.m + 3) * c.k).map(|i| c.a[i % c.a.len()]).collect()).unwrap();
        pw.run(&big, engine, &mut bufs).unwrap();
        for _ in 0..2 {
            let st = pw.run(&a, engine, &mut bufs).unwrap();
            prop_assert_eq!((bufs.m(), bufs.n()), (c.m, c.n));
            prop_assert_eq!(bufs.acc(), &base.acc[..], "{} engine prepared acc", engine);
            prop_assert_eq!(bufs.exact(), &base.exact[..], "{} engine prepared exact", engine);
            prop_assert_eq!(&st, &base.stats, "{} engine prepared stats", engine);
            if bufs.exact_is_acc() {
                prop_assert!(engine == Engine::Fast && c.d == 0 && st.overflows() == 0);
            }
        }
        let (mut acc, mut exact) = (Vec::new(), Vec::new());
        let st = pw
            .run_chunked(&a, engine, 1 + c.m % 4, |_, ac, ex| {
                acc.extend_from_slice(ac);
                exact.extend_from_slice(ex);
                Ok(())
            })
            .unwrap();
        prop_assert_eq!(&acc, &base.acc, "{} engine prepared chunked acc", engine);
        prop_assert_eq!(&exact, &base.exact, "{} engine prepared chunked exact", engine);
        prop_assert_eq!(&st, &base.stats, "{} engine prepared chunked stats", engine);
    }
    for engine in [Engine::Fast, Engine::Cycle] {
        for chunk in [1 + c.m % 3, 1 + c.m / 2] {
            let (mut acc, mut exact, mut next) = (Vec::new(), Vec::new(), 0usize);
            let stats = run_array_chunked(&cfg, &a, &w, engine, None, chunk, |r0, ac, ex| {
                assert_eq!(r0, next, "chunks in row order");
                assert!(ac.len() <= chunk * c.n);
                next += ac.len() / c.n;
                acc.extend_from_slice(ac);
                exact.extend_from_slice(ex);
                Ok(())
            })
            .unwrap();
            prop_assert_eq!(next, c.m, "{} engine: every row delivered", engine);
            prop_assert_eq!(&acc, &base.acc, "{} engine chunked acc", engine);
            prop_assert_eq!(&exact, &base.exact, "{} engine chunked exact", engine);
            prop_assert_eq!(&stats, &base.stats, "{} engine chunked stats", engine);
        }
    }
    // The operands stored as i16 (what `bitmac gemm` and the bindings build
    // for every format that fits it) against the i32 storage above: same
    // values, statistics and cycles on every path.
    if c.a.iter().chain(&c.w).all(|&v| i16::try_from(v).is_ok()) {
        let a16 = Matrix::new_i16(c.m, c.k, c.a.iter().map(|&v| v as i16).collect()).unwrap();
        let w16 = Matrix::new_i16(c.k, c.n, c.w.iter().map(|&v| v as i16).collect()).unwrap();
        prop_assert_eq!(&a16, &a);
        prop_assert!(a16.as_i16().is_some() && a.as_i32().is_some());
        for engine in [Engine::Fast, Engine::Cycle] {
            let got = run_array(&cfg, &a16, &w16, engine, None).unwrap();
            prop_assert_eq!(&got, base, "{} engine, i16 storage", engine);
            let mut acc = Vec::new();
            let stats = run_array_chunked(&cfg, &a16, &w, engine, None, 1 + c.m % 3, |_, ac, _| {
                acc.extend_from_slice(ac);
                Ok(())
            })
            .unwrap();
            prop_assert_eq!(&acc, &base.acc, "{} engine chunked, A as i16", engine);
            prop_assert_eq!(&stats, &base.stats, "{} engine chunked stats, A as i16", engine);
        }
        let mut trace16 = String::new();
        let traced = run_array(&cfg, &a16, &w16, Engine::Cycle, Some(&mut trace16)).unwrap();
        prop_assert_eq!(&traced, base, "cycle engine traced, i16 storage");
        prop_assert_eq!(&trace16, &trace, "the trace does not depend on the storage");
    }
    Ok(())
}

fn case_strategy(max_bits: u32, max_p: u32) -> impl Strategy<Value = Case> {
    (
        (prop::sample::select(Dataflow::ALL.to_vec()), 1usize..6, 1usize..6),
        (2u32..=max_bits, any::<bool>(), 2u32..=max_bits, any::<bool>()),
        (2u32..=max_p, prop::sample::select(OverflowMode::ALL.to_vec())),
        (0u32..5, prop::sample::select(RoundMode::ALL.to_vec()), any::<i64>()),
        (1usize..9, 1usize..13, 1usize..9),
        any::<u64>(),
    )
        .prop_map(
            |(
                (df, rows, cols),
                (wbits, wsigned, abits, asigned),
                (p, mode),
                (d, rmode, off),
                (m, k, n),
                seed,
            )| {
                use rand::{Rng, SeedableRng};
                let d = d.min(p - 1).min(65 - p);
                let (lo, hi) = rmode.offset_range(d);
                let offset = if hi > lo { lo as i64 + off.rem_euclid((hi - lo + 1) as i64) } else { 0 };
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let (alo, ahi) = range(abits, asigned);
                let (wlo, whi) = range(wbits, wsigned);
                // Bias towards the extremes so overflows and saturation happen.
                let mut pick = |lo: i32, hi: i32| -> i32 {
                    match rng.gen_range(0..4) {
                        0 => lo,
                        1 => hi,
                        _ => rng.gen_range(lo..=hi),
                    }
                };
                let a = (0..m * k).map(|_| pick(alo, ahi)).collect();
                let w = (0..k * n).map(|_| pick(wlo, whi)).collect();
                Case {
                    df,
                    rows,
                    cols,
                    wbits,
                    wsigned,
                    abits,
                    asigned,
                    p,
                    mode,
                    d,
                    rmode,
                    offset,
                    m,
                    k,
                    n,
                    a,
                    w,
                }
            },
        )
}

fn check_case(c: &Case) -> Result<(), TestCaseError> {
    let fast = run(c, Engine::Fast);
    let cyc = run(c, Engine::Cycle);
    prop_assert_eq!(&fast, &cyc, "engines differ");
    check_variants(c, &fast)?;
    prop_assert_eq!(fast.stats.cycles, compute_cycles(c.df, c.rows, c.cols, c.m, c.k, c.n));
    let r = reference(c);
    prop_assert_eq!(fast.stats.cycles, r.cycles, "cycles vs reference");
    let got: Vec<BigInt> = fast.acc.iter().map(|&v| BigInt::from(v)).collect();
    prop_assert_eq!(&got, &r.acc, "acc vs reference");
    prop_assert_eq!(fast.stats.overflows_array, r.ovf_array);
    prop_assert_eq!(fast.stats.overflows_psum, r.ovf_psum);
    prop_assert_eq!(fast.stats.first_overflow, r.first);
    prop_assert_eq!(fast.stats.psum_ties, r.ties);
    prop_assert_eq!(BigInt::from(fast.stats.max_abs_psum), r.max_psum);
    prop_assert_eq!(BigInt::from(fast.stats.max_abs_acc), r.max_acc);
    let exact = exact_gemm(c);
    let ex: Vec<BigInt> = fast.exact.iter().map(|&v| BigInt::from(v)).collect();
    prop_assert_eq!(&ex, &exact, "exact GEMM");
    // Wide enough => exact.
    let minb = fast.stats.min_acc_bits;
    if c.d == 0 && (c.p >= fast.stats.a2q_bits_types || c.p >= fast.stats.a2q_bits_weights || c.p >= minb) {
        prop_assert_eq!(&got, &exact, "P >= A2Q/min width but not exact");
        prop_assert_eq!(fast.stats.overflows(), 0);
    }
    if c.p >= minb {
        prop_assert_eq!(fast.stats.overflows(), 0, "overflow at P >= min_acc_bits");
    }
    // WRAP, d = 0 => exact mod 2^P.
    if c.mode == OverflowMode::Wrap && c.d == 0 {
        let modp = BigInt::one() << c.p;
        let half = BigInt::one() << (c.p - 1);
        for (g, e) in got.iter().zip(&exact) {
            let want = (e + &half).mod_floor(&modp) - &half;
            prop_assert_eq!(g, &want, "WRAP is not exact mod 2^P");
        }
    }
    // Tightness of min_acc_bits: at it no overflow, one below some overflow.
    if minb <= 64 && minb + c.d <= 65 {
        let mut c2 = c.clone();
        c2.p = minb;
        prop_assert_eq!(reference(&c2).ovf_array + reference(&c2).ovf_psum, 0, "overflow at min_acc_bits");
        if minb > 2 && minb - 1 > c.d && minb - 1 + c.d <= 65 {
            c2.p = minb - 1;
            let r2 = reference(&c2);
            prop_assert!(r2.ovf_array + r2.ovf_psum > 0, "no overflow one bit below min_acc_bits {}", minb);
        }
    }
    Ok(())
}

proptest! {
    // PROPTEST_CASES overrides the number of cases (e.g. for a long soak).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        .. ProptestConfig::default()
    })]

    /// Narrow data (the i32 fast path), any P up to 24.
    #[test]
    fn engines_match_reference_narrow(c in case_strategy(8, 24)) {
        check_case(&c)?;
    }

    /// Wide data and wide accumulators (the i64 fast path), P up to 64.
    #[test]
    fn engines_match_reference_wide(c in case_strategy(16, 64)) {
        check_case(&c)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Large dropped-bit counts (d = 28..=32, P in d+1..=65-d): the psum
    /// writeback's squared-error sums past `|error| < 2^28`.
    #[test]
    fn engines_match_reference_large_d(mut c in case_strategy(16, 37), d in 28u32..=32, off in any::<i64>()) {
        c.d = d;
        c.p = c.p.clamp(d + 1, 65 - d);
        let (lo, hi) = c.rmode.offset_range(d);
        c.offset = (lo + (off as i128).rem_euclid(hi - lo + 1)) as i64;
        check_case(&c)?;
    }
}

/// The fast engine's WRAP modular shortcut and no-overflow proof on a GEMM
/// big enough to use several column blocks and folds.
#[test]
fn larger_gemm_all_modes() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for df in Dataflow::ALL {
        for mode in OverflowMode::ALL {
            for (p, d) in [(12u32, 0u32), (16, 2), (32, 0)] {
                let (m, k, n) = (9, 70, 130);
                let c = Case {
                    df,
                    rows: 8,
                    cols: 16,
                    wbits: 8,
                    wsigned: true,
                    abits: 8,
                    asigned: false,
                    p,
                    mode,
                    d,
                    rmode: RoundMode::RndConv,
                    offset: 0,
                    m,
                    k,
                    n,
                    a: (0..m * k).map(|_| rng.gen_range(0..=255)).collect(),
                    w: (0..k * n).map(|_| rng.gen_range(-128..=127)).collect(),
                };
                let fast = run(&c, Engine::Fast);
                let cyc = run(&c, Engine::Cycle);
                assert_eq!(fast, cyc, "{df} {mode} P={p} d={d}");
                check_variants(&c, &fast).unwrap();
                let r = reference(&c);
                let got: Vec<BigInt> = fast.acc.iter().map(|&v| BigInt::from(v)).collect();
                assert_eq!(got, r.acc);
                assert_eq!(fast.stats.first_overflow, r.first);
                assert_eq!(fast.stats.overflows_array + fast.stats.overflows_psum, r.ovf_array + r.ovf_psum);
                assert_eq!(r.ovf_array + r.ovf_psum > 0, p < 32, "{df} {mode} P={p}");
            }
        }
    }
}

/// The memory fields of a case (`docs/memory.md` §1).
#[derive(Clone, Debug)]
struct Mem {
    kb: [u64; 2],
    port: Option<(u64, u64)>,
    bw: Option<u64>,
    lat: Option<u64>,
    dbuf: bool,
}

fn mem_spec(c: &Case, mm: &Mem) -> HwSpec {
    let mut s = spec(c);
    s.memory = Some(bitmac::hw::MemorySpec {
        ifmap_sram_kb: mm.kb[0],
        filter_sram_kb: mm.kb[1],
        ofmap_sram_kb: 1,
        sram_banks: mm.port.map(|p| p.0),
        sram_bank_bytes: mm.port.map(|p| p.1),
        dram_bytes_per_cycle: mm.bw,
        dram_latency: mm.lat,
        weight_double_buffer: (c.df == Dataflow::Ws && mm.dbuf).then_some(true),
    });
    s
}

/// `docs/memory.md` §2–§3 transcribed independently of `src/memory.rs`:
/// the stall cycles and the total cycles of a case.
fn ref_stalls(c: &Case, mm: &Mem) -> (u64, u64) {
    let dbuf = c.df == Dataflow::Ws && mm.dbuf;
    let (r, cc) = (c.rows as u64, c.cols as u64);
    let (m, k, n) = (c.m as u64, c.k as u64, c.n as u64);
    let (ab, wb) = (c.abits as u64, c.wbits as u64);
    let by = |words: u64, bits: u64| (words * bits).div_ceil(8);
    let res = [by(m * k, ab) <= mm.kb[0] * 1024, by(k * n, wb) <= mm.kb[1] * 1024];
    // (ifmap block id + words, filter block id + words, len without
    // preload, output block id + words (§2a))
    let mut tiles = Vec::new();
    match c.df {
        Dataflow::Ws | Dataflow::Is => {
            let (cdim, s) = if c.df == Dataflow::Ws { (n, m) } else { (m, n) };
            let mut c0 = 0;
            while c0 < cdim {
                let cu = cc.min(cdim - c0);
                let mut f = 0;
                while f * r < k {
                    let ru = r.min(k - f * r);
                    let (ib, fb) = if c.df == Dataflow::Ws {
                        (((f, 0), m * ru), ((f, c0), ru * cu))
                    } else {
                        (((f, c0), cu * ru), ((f, 0), ru * n))
                    };
                    let ob = if c.df == Dataflow::Ws { ((c0, 0), m * cu) } else { ((c0, 0), cu * n) };
                    tiles.push((ib, fb, r + s + cu - 2, ob));
                    f += 1;
                }
                c0 += cu;
            }
        }
        Dataflow::Os => {
            let mut r0 = 0;
            while r0 < m {
                let ru = r.min(m - r0);
                let mut c0 = 0;
                while c0 < n {
                    let cu = cc.min(n - c0);
                    tiles.push((
                        ((r0, 0), ru * k),
                        ((0, c0), k * cu),
                        k + ru + cu - 2 + r,
                        ((r0, c0), ru * cu),
                    ));
                    c0 += cu;
                }
                r0 += ru;
            }
        }
    }
    let mut prev: [Option<(u64, u64)>; 2] = [None, None];
    let mut seen: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    let (mut now, mut t_prev, mut e_prev, mut stalls) = (0u64, 0u64, 0u64, 0u64);
    // Output write-back (§2a): ofmap words of requant.out_bits = 8 bits; the
    // write port's free cycle, the drained cycle of each buffer half, the
    // current block's index.
    let (mut wf, mut h, mut j) = (0u64, [0u64; 2], 0usize);
    for (t, &(ib, fb, base, ob)) in tiles.iter().enumerate() {
        let pre = if c.df == Dataflow::Os || (dbuf && t > 0) { 0 } else { r };
        let len = base + pre;
        let mut d = 0;
        let mut read = [0; 2];
        for (x, (id, words)) in [ib, fb].into_iter().enumerate() {
            let b = by(words, [ab, wb][x]);
            read[x] = b;
            if !(prev[x] == Some(id) || (res[x] && seen[x].contains(&id))) {
                d += b;
                seen[x].push(id);
            }
            prev[x] = Some(id);
        }
        let f = if t == 0 { 0 } else { t_prev.max(e_prev) };
        let busy = mm.bw.map_or(0, |bw| d.div_ceil(bw));
        let a = if d > 0 {
            e_prev = f + busy;
            f + busy + mm.lat.unwrap_or(0)
        } else {
            0
        };
        let g = if dbuf && t > 0 { a + r } else { a };
        let p = mm.port.map_or(0, |(nb, w)| {
            (read[0].div_ceil(nb * w).max(read[1].div_ceil(nb * w))).saturating_sub(len)
        });
        let o = if t == 0 {
            h[0]
        } else if ob.0 != tiles[t - 1].3 .0 {
            let x = now + u64::from(c.df != Dataflow::Os);
            wf = x.max(wf) + mm.bw.map_or(0, |bw| by(tiles[t - 1].3 .1, 8).div_ceil(bw));
            h[j % 2] = wf;
            j += 1;
            h[j % 2]
        } else {
            0
        };
        let start = (now + p).max(g).max(o);
        stalls += start - now;
        t_prev = start;
        now = start + len;
    }
    (stalls, now + u64::from(c.df != Dataflow::Os))
}

fn mem_strategy() -> impl Strategy<Value = Mem> {
    (
        (1u64..3, 1u64..3),
        prop::option::of((1u64..4, 1u64..6)),
        prop::option::of(1u64..40),
        prop::option::of(0u64..30),
        any::<bool>(),
    )
        .prop_map(|((i, f), port, bw, lat, dbuf)| Mem { kb: [i, f], port, bw, lat, dbuf })
}

fn check_mem_case(c: &Case, mm: &Mem) -> Result<(), TestCaseError> {
    let hw = HwConfig::from_spec(&mem_spec(c, mm)).unwrap();
    let cfg = ArrayConfig::from_hw(&hw).unwrap();
    let a = Matrix::new(c.m, c.k, c.a.clone()).unwrap();
    let w = Matrix::new(c.k, c.n, c.w.clone()).unwrap();
    let mut trace = String::new();
    let cyc = run_array(&cfg, &a, &w, Engine::Cycle, Some(&mut trace)).unwrap();
    let fast = run_array(&cfg, &a, &w, Engine::Fast, None).unwrap();
    prop_assert_eq!(&fast, &cyc, "engines differ with memory timing");
    // The untraced (streamed) cycle path: same stalls, cycles, values.
    let untraced = run_array(&cfg, &a, &w, Engine::Cycle, None).unwrap();
    prop_assert_eq!(&untraced, &cyc, "cycle engine traced vs untraced with memory timing");
    let plan = bitmac::memory::plan(&bitmac::memory::Layout::of_hw(&hw), c.m, c.k, c.n);
    let (want_stalls, want_cycles) = ref_stalls(c, mm);
    let enabled =
        mm.port.is_some() || mm.bw.is_some() || mm.lat.is_some() || (c.df == Dataflow::Ws && mm.dbuf);
    prop_assert_eq!(cyc.stats.stall_cycles, enabled.then_some(plan.stall_cycles));
    if !enabled {
        prop_assert_eq!(plan.stall_cycles, 0);
    }
    prop_assert_eq!(plan.stall_cycles, want_stalls, "stalls vs docs/memory.md");
    prop_assert_eq!(cyc.stats.cycles, plan.cycles);
    prop_assert_eq!(plan.cycles, want_cycles, "cycles vs docs/memory.md");
    // The trace: one line per cycle, one `stall` line per stall cycle.
    prop_assert_eq!(trace.lines().count() as u64 - 1, cyc.stats.cycles);
    let stall_lines = trace.lines().filter(|l| l.split(' ').nth(2) == Some("stall")).count() as u64;
    prop_assert_eq!(stall_lines, want_stalls);
    // Values and statistics equal the stall-free run (cycles aside).
    let free = run(c, Engine::Fast);
    prop_assert_eq!(&cyc.acc, &free.acc);
    prop_assert_eq!(&cyc.exact, &free.exact);
    let mut s = cyc.stats.clone();
    let free_len = if c.df == Dataflow::Ws && mm.dbuf {
        // §5a: every ws tile after the first skips its own R-cycle preload.
        let tiles = (c.k.div_ceil(c.rows) * c.n.div_ceil(c.cols)) as u64;
        free.stats.cycles - (tiles - 1) * c.rows as u64
    } else {
        free.stats.cycles
    };
    prop_assert_eq!(s.cycles, free_len + want_stalls);
    s.cycles = free.stats.cycles;
    s.stall_cycles = None;
    prop_assert_eq!(s.first_overflow.is_some(), free.stats.first_overflow.is_some());
    if let (Some(e), Some(f)) = (s.first_overflow, free.stats.first_overflow) {
        // Tiles never overlap, so the first event is in the same tile at
        // the same place; only its cycle moves with the stalls.
        prop_assert_eq!((e.row, e.col), (f.row, f.col));
    }
    s.first_overflow = free.stats.first_overflow;
    prop_assert_eq!(&s, &free.stats);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96),
        .. ProptestConfig::default()
    })]

    /// Memory stalls and weight double-buffering (docs/memory.md): the
    /// cycle engine's stall and cycle counts equal the fast engine's, the
    /// memory model's and an independent transcription of the doc; values
    /// are those of the stall-free run.
    #[test]
    fn memory_stalls_agree(c in case_strategy(8, 24), mm in mem_strategy()) {
        check_mem_case(&c, &mm)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// One semantics for the timing: with the memory model off, the closed
    /// form `compute_cycles` (which the fast engine uses then) equals the
    /// memory model's `Timer` run over the tiles (`memory::plan`, which the
    /// cycle engine steps through), with no stalls (`check_case` holds both
    /// engines' cycle counts equal to it and to the reference).
    #[test]
    fn closed_form_timing_is_the_timer(
        df in prop::sample::select(Dataflow::ALL.to_vec()),
        (rows, cols) in (1usize..40, 1usize..40),
        (m, k, n) in (1usize..300, 1usize..300, 1usize..300),
    ) {
        let lay = bitmac::memory::Layout {
            dataflow: df, rows, cols, act_bits: 8, weight_bits: 8,
            mem: bitmac::memory::MemoryConfig::default(),
        };
        prop_assert!(!lay.mem.enabled);
        let plan = bitmac::memory::plan(&lay, m, k, n);
        prop_assert_eq!(plan.cycles, compute_cycles(df, rows, cols, m, k, n));
        prop_assert_eq!(plan.stall_cycles, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// The fast engine's plain-GEMM path (AVX-512 VNNI, taken where the
    /// whole-chain no-overflow proof holds at d = 0 and the width statistic
    /// is decided by the fold sums and buffer values, `docs/performance.md`)
    /// against the chain path (portable level) and the cycle engine: same
    /// values and statistics. Wide accumulators so the proof holds; `cancel`
    /// alternates the weights' signs along K so the fold sums stay small
    /// and the width condition fails (the path must then fall back).
    #[test]
    fn plain_gemm_path_matches_chain_path(
        df in prop::sample::select(Dataflow::ALL.to_vec()),
        (rows, cols) in (1usize..20, 1usize..20),
        (p, mode) in (20u32..=32, prop::sample::select(OverflowMode::ALL.to_vec())),
        (m, k, n) in (1usize..11, 1usize..50, 1usize..40),
        (cancel, seed) in (any::<bool>(), any::<u64>()),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let a: Vec<i32> = (0..m * k).map(|_| rng.gen_range(-128..=127)).collect();
        let w: Vec<i32> = (0..k * n)
            .map(|i| {
                let v: i32 = rng.gen_range(0..=127);
                if cancel && (i / n) % 2 == 1 { -v } else if cancel { v } else { v - 64 }
            })
            .collect();
        let c = Case {
            df, rows, cols, wbits: 8, wsigned: true, abits: 8, asigned: true, p, mode, d: 0,
            rmode: RoundMode::RndConv, offset: 0, m, k, n, a, w,
        };
        let chain = run_at(&c, Engine::Fast, Simd::Portable);
        let best = run_at(&c, Engine::Fast, Simd::detect());
        prop_assert_eq!(&best, &chain, "plain path vs chain path");
        let cyc = run_at(&c, Engine::Cycle, Simd::Portable);
        prop_assert_eq!(&best, &cyc, "plain path vs cycle engine");
        let exact = exact_gemm(&c);
        let ex: Vec<BigInt> = best.exact.iter().map(|&v| BigInt::from(v)).collect();
        prop_assert_eq!(&ex, &exact, "exact GEMM");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// The fast engine's saturating i16 path (P = 16 `SAT`, d = 0, AVX-512
    /// with VNNI: `vpaddsw` chain, saturation counts from `vpaddw`, exact
    /// values from `vpdpwssd`, `docs/performance.md`) against the reference
    /// of `docs/datapath.md` and every other variant (`check_case`: the
    /// chain path at every SIMD level, the cycle engine, the row-chunked
    /// path with odd chunk starts): values, overflow counts, first overflow,
    /// maxima, minimum width. `shape` 0: uniform operands; 1: operands near
    /// the extremes with mostly aligned signs, so chains and buffers
    /// saturate and the exact buffers grow past the fold bound (the path
    /// runs); 2: weights alternating in sign along K, so the exact values
    /// stay small, the width condition fails and the path must fall back.
    /// Odd and even array sizes (odd `is` / `os` tiles fall back).
    #[test]
    fn sat16_path_matches_reference(
        df in prop::sample::select(Dataflow::ALL.to_vec()),
        (rows, cols) in (1usize..20, 1usize..20),
        (abits, asigned, wbits) in (5u32..=8, any::<bool>(), 5u32..=8),
        (m, k, n) in (1usize..12, 1usize..70, 1usize..36),
        (shape, seed) in (0u32..3, any::<u64>()),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (alo, ahi) = range(abits, asigned);
        let (wlo, whi) = range(wbits, true);
        let a: Vec<i32> = (0..m * k)
            .map(|_| match shape {
                1 if rng.gen_range(0..4) > 0 => if asigned && rng.gen_range(0..8) == 0 { alo } else { ahi },
                _ => rng.gen_range(alo..=ahi),
            })
            .collect();
        let w: Vec<i32> = (0..k * n)
            .map(|i| match shape {
                1 if rng.gen_range(0..4) > 0 => if rng.gen_range(0..6) == 0 { wlo } else { whi },
                2 => {
                    let v = rng.gen_range(0..=whi);
                    if (i / n) % 2 == 1 { -v } else { v }
                }
                _ => rng.gen_range(wlo..=whi),
            })
            .collect();
        let c = Case {
            df, rows, cols, wbits, wsigned: true, abits, asigned, p: 16, mode: OverflowMode::Sat, d: 0,
            rmode: RoundMode::RndConv, offset: 0, m, k, n, a, w,
        };
        check_case(&c)?;
    }
}

/// The saturating i16 path really runs (on a CPU with AVX-512 VNNI) for a
/// GEMM whose chains saturate, and matches the chain path there.
#[test]
fn sat16_path_runs() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (m, k, n) = (37, 96, 40);
    let c = Case {
        df: Dataflow::Ws,
        rows: 16,
        cols: 16,
        wbits: 8,
        wsigned: true,
        abits: 8,
        asigned: true,
        p: 16,
        mode: OverflowMode::Sat,
        d: 0,
        rmode: RoundMode::RndConv,
        offset: 0,
        m,
        k,
        n,
        a: (0..m * k).map(|_| rng.gen_range(-128..=127)).collect(),
        w: (0..k * n).map(|_| rng.gen_range(-128..=127)).collect(),
    };
    let before = bitmac::array::fast::path_counts().1;
    let best = run_at(&c, Engine::Fast, Simd::detect());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vnni") && Simd::detect() == Simd::Avx512 {
        assert!(bitmac::array::fast::path_counts().1 > before, "the sat16 path did not run");
    }
    assert!(best.stats.overflows_array > 0 && best.stats.overflows_psum > 0, "{:?}", best.stats);
    let chain = run_at(&c, Engine::Fast, Simd::Portable);
    assert_eq!(best, chain);
    check_case(&c).unwrap();
}

/// The cycle engine's chain bound (`docs/performance.md`, "Cycle engine"):
/// `max|moving| * max over folds and stationary columns of the fold's
/// sum of |stationary|` (`ws`: moving A, stationary W; `is`: the other way
/// round).
fn chain_bound(c: &Case) -> u64 {
    let ws = c.df == Dataflow::Ws;
    let st = |kk: usize, j: usize| if ws { c.w[kk * c.n + j] } else { c.a[j * c.k + kk] };
    let mv = if ws { &c.a } else { &c.w };
    let mvmax = mv.iter().map(|v| v.unsigned_abs() as u64).max().unwrap_or(0);
    let cdim = if ws { c.n } else { c.m };
    let mut l1max = 0u64;
    for k0 in (0..c.k).step_by(c.rows) {
        for j in 0..cdim {
            l1max = l1max.max((k0..c.k.min(k0 + c.rows)).map(|kk| st(kk, j).unsigned_abs() as u64).sum());
        }
    }
    mvmax * l1max
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// The cycle engine's bounded stationary kernel (no per-PE overflow
    /// test, no exact shadow, in-place psums, skewed activation window),
    /// taken when the chain bound is at most `2^(P-1) - 1`, at its
    /// boundary: P is the smallest width the bound allows (the kernel
    /// runs) and one bit less (it must not: the general kernel runs, and
    /// with `extreme` data, every moving value and stationary value at the
    /// top of its range, a chain reaches the bound and overflows). Every
    /// variant (`check_case`: both engines at every SIMD level, the traced
    /// path, row-chunked delivery) against the reference; `ws` / `is`,
    /// arrays and GEMMs large enough for several column tiles and folds
    /// and more than one activation window (512 cycles).
    #[test]
    fn cycle_bounded_kernel_at_its_boundary(
        ws in any::<bool>(),
        (rows, cols) in (1usize..7, 1usize..20),
        (abits, asigned, wbits, wsigned) in (2u32..=8, any::<bool>(), 2u32..=8, any::<bool>()),
        mode in prop::sample::select(OverflowMode::ALL.to_vec()),
        (m, k, n) in (1usize..9, 1usize..14, 1usize..9),
        (long, extreme, below, seed) in (any::<bool>(), any::<bool>(), any::<bool>(), any::<u64>()),
    ) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let df = if ws { Dataflow::Ws } else { Dataflow::Is };
        // A long stream (more than one 512-cycle window) in some cases.
        let (m, n) = match (long, ws) {
            (true, true) => (600 + m * 37, n),
            (true, false) => (m, 600 + n * 37),
            _ => (m, n),
        };
        let (alo, ahi) = range(abits, asigned);
        let (wlo, whi) = range(wbits, wsigned);
        let a: Vec<i32> = (0..m * k).map(|_| if extreme { ahi } else { rng.gen_range(alo..=ahi) }).collect();
        let w: Vec<i32> = (0..k * n).map(|_| if extreme { whi } else { rng.gen_range(wlo..=whi) }).collect();
        let mut c = Case {
            df, rows, cols, wbits, wsigned, abits, asigned, p: 32, mode, d: 0,
            rmode: RoundMode::RndConv, offset: 0, m, k, n, a, w,
        };
        let bound = chain_bound(&c);
        // The smallest P with 2^(P-1) - 1 >= bound, at least 2.
        let pmin = (65 - bound.leading_zeros()).max(2);
        c.p = if below && pmin > 2 { pmin - 1 } else { pmin };
        check_case(&c)?;
        if extreme && c.p < pmin && bound > 0 {
            let out = run(&c, Engine::Cycle);
            prop_assert!(out.stats.overflows_array > 0, "the bound is reached, P one bit short must overflow");
        }
    }
}

//! The full systolic-array RTL (`tests/rtl/systolic_array.v`, written from
//! docs/datapath.md and docs/numerics.md) under Verilator, held against the
//! cycle engine register by register: for random configurations (all three
//! dataflows, signed/unsigned operands of 2..16 bits, accumulators of 2..64
//! bits under all four overflow modes, psum writeback dropping d bits with
//! all eight rounding modes and centre offsets) and random matrices (biased
//! to the format extremes, so narrow accumulators overflow and saturate),
//! every PE's activation, weight and psum register after every cycle, every
//! writeback (column, output, column sum, new buffer value: the outputs and
//! their cycle of exit), every overflowing adder, the cycle count and the
//! final accumulators must be equal. The first difference is reported as
//! (cycle, row, column, register) with the case and its seed.
//!
//! A few Verilator builds (array shapes), compiled once into
//! `CARGO_TARGET_TMPDIR` and reused while the sources are unchanged; each
//! runs many GEMMs, one driver process per GEMM, on `.npy` files this test
//! writes. Without `verilator` on PATH this test FAILS with instructions,
//! unless `BITMAC_SKIP_RTL=1`.

use bitmac::array::{compute_cycles, trace_registers, ArrayConfig, Dataflow, Matrix};
use bitmac::hw::{
    AccumulatorSpec, ArraySpec, ClockSpec, HwConfig, HwSpec, OperandSpec, PsumSpec, RequantSpec,
};
use bitmac::npy::{write_npy, Dtype, NpyArray};
use bitmac::numerics::{OverflowMode, RoundMode};
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `None` when the user opted out; panics with instructions when Verilator
/// is missing.
fn verilator_available() -> Option<()> {
    if std::env::var("BITMAC_SKIP_RTL").is_ok_and(|v| v == "1") {
        eprintln!("BITMAC_SKIP_RTL=1: skipping the Verilator full-array test");
        return None;
    }
    let ok = Command::new("verilator").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`verilator` was not found on PATH: tests/rtl_array.rs runs tests/rtl/systolic_array.v under it. \
         Install it (Debian/Ubuntu: apt-get install verilator; .ci/run does this in CI) \
         or set BITMAC_SKIP_RTL=1 to skip it"
    );
    Some(())
}

/// One Verilator build of the array.
struct Build {
    name: &'static str,
    rows: usize,
    cols: usize,
    /// `-G` overrides beyond R and C (RUNTIME_CFG=0 builds fix the config).
    extra: Vec<(&'static str, String)>,
    exe: PathBuf,
}

const DEPTH: usize = 4096;

fn build(name: &'static str, rows: usize, cols: usize, extra: Vec<(&'static str, String)>) -> Build {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rtl_array").join(name);
    let srcs = [root().join("tests/rtl/systolic_array.v"), root().join("tests/rtl/systolic_array_main.cpp")];
    let mut args: Vec<String> = vec![
        "--cc".into(),
        "--exe".into(),
        "--build".into(),
        "-j".into(),
        "2".into(),
        "-Wno-fatal".into(),
        "-Wno-lint".into(),
        "-Wno-style".into(),
        "--top-module".into(),
        "systolic_array".into(),
        "-DBITMAC_DPI_MEM".into(),
        "-DBITMAC_DUMP".into(),
        format!("-GR={rows}"),
        format!("-GC={cols}"),
        format!("-GADEPTH={DEPTH}"),
        format!("-GWDEPTH={DEPTH}"),
        format!("-GBDEPTH={DEPTH}"),
    ];
    for (k, v) in &extra {
        args.push(format!("-G{k}={v}"));
    }
    // The GEMMs are tiny: compile fast rather than run fast.
    args.push("-MAKEFLAGS".into());
    args.push("OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0".into());
    args.push("-CFLAGS".into());
    args.push(format!("-O0 -DBM_ADEPTH={DEPTH} -DBM_WDEPTH={DEPTH} -DBM_BDEPTH={DEPTH} -DBM_C={cols}"));
    args.push("-Mdir".into());
    args.push(dir.join("obj").display().to_string());
    for s in &srcs {
        args.push(s.display().to_string());
    }
    // Rebuild only when the sources or the arguments change.
    let mut stamp = args.join(" ");
    for s in &srcs {
        stamp.push_str(&std::fs::read_to_string(s).unwrap());
    }
    let exe = dir.join("obj").join("Vsystolic_array");
    // Tests sharing a build wait for it instead of racing in its directory.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let stamp_file = dir.join("stamp");
    if !(exe.is_file() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp)) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("verilator").args(&args).output().expect("run verilator");
        assert!(
            out.status.success() && exe.is_file(),
            "{name}: verilator build failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&stamp_file, stamp).unwrap();
    }
    Build { name, rows, cols, extra, exe }
}

#[derive(Clone, Debug)]
struct Case {
    seed: u64,
    df: Dataflow,
    abits: u32,
    asigned: bool,
    wbits: u32,
    wsigned: bool,
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

impl Case {
    fn describe(&self, b: &Build) -> String {
        format!(
            "build {} ({}x{}), seed {}: {} a={}{} w={}{} P={} {} d={} {} offset={} M={} K={} N={}",
            b.name,
            b.rows,
            b.cols,
            self.seed,
            self.df.name(),
            if self.asigned { "i" } else { "u" },
            self.abits,
            if self.wsigned { "i" } else { "u" },
            self.wbits,
            self.p,
            self.mode.name(),
            self.d,
            self.rmode.name(),
            self.offset,
            self.m,
            self.k,
            self.n
        )
    }

    fn config(&self, b: &Build) -> ArrayConfig {
        let spec = HwSpec {
            array: ArraySpec { rows: b.rows as u64, cols: b.cols as u64, dataflow: self.df.name().into() },
            weights: OperandSpec { bits: self.wbits as u64, signed: self.wsigned },
            activations: OperandSpec { bits: self.abits as u64, signed: self.asigned },
            accumulator: AccumulatorSpec { bits: self.p as u64, overflow: self.mode.name().into() },
            psum: PsumSpec {
                drop_bits: self.d as u64,
                rounding: self.rmode.name().into(),
                offset: self.offset,
            },
            requant: RequantSpec { rounding: "double".into(), relu: false, out_bits: 8, out_signed: true },
            clock: ClockSpec { period_ps: 1000 },
            cdc: None,
            memory: None,
            energy: None,
        };
        ArrayConfig::from_hw(&HwConfig::from_spec(&spec).expect("valid random config")).unwrap()
    }
}

fn range(bits: u32, signed: bool) -> (i32, i32) {
    if signed {
        (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    } else {
        (0, (1 << bits) - 1)
    }
}

/// Values in the format, a third of them at the extremes (so that narrow
/// accumulators overflow, saturate and hit the SAT_SYM minimum).
fn values(rng: &mut impl Rng, len: usize, bits: u32, signed: bool) -> Vec<i32> {
    let (lo, hi) = range(bits, signed);
    (0..len)
        .map(|_| match rng.gen_range(0..6) {
            0 => lo,
            1 => hi,
            _ => rng.gen_range(lo..=hi),
        })
        .collect()
}

fn random_case(seed: u64) -> Case {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let df = Dataflow::ALL[rng.gen_range(0..3)];
    let abits = if rng.gen_bool(0.7) { rng.gen_range(2..=8) } else { rng.gen_range(9..=16) };
    let wbits = if rng.gen_bool(0.7) { rng.gen_range(2..=8) } else { rng.gen_range(9..=16) };
    let (asigned, wsigned) = (rng.gen_bool(0.5), rng.gen_bool(0.5));
    // Mostly narrow accumulators (frequent overflow), some wide ones
    // (including the i64 lanes of the cycle engine and P = 64).
    let p = match rng.gen_range(0..4) {
        0 | 1 => rng.gen_range(2..=14),
        2 => rng.gen_range(15..=40),
        _ => rng.gen_range(41..=64),
    };
    let mode = OverflowMode::ALL[rng.gen_range(0..4)];
    let dmax = (p - 1).min(32).min(65 - p);
    let d = if rng.gen_bool(0.25) {
        0
    } else if rng.gen_bool(0.2) {
        rng.gen_range(0..=dmax)
    } else {
        rng.gen_range(0..=dmax.min(6))
    };
    let rmode = RoundMode::ALL[rng.gen_range(0..8)];
    let (lo, hi) = rmode.offset_range(d);
    let offset = if d == 0 || rng.gen_bool(0.3) {
        0
    } else if rng.gen_bool(0.2) {
        if rng.gen_bool(0.5) {
            lo as i64
        } else {
            hi as i64
        }
    } else {
        rng.gen_range(lo as i64..=hi as i64)
    };
    let (m, k, n) = (rng.gen_range(1..=9), rng.gen_range(1..=10), rng.gen_range(1..=9));
    let a = values(&mut rng, m * k, abits, asigned);
    let w = values(&mut rng, k * n, wbits, wsigned);
    Case { seed, df, abits, asigned, wbits, wsigned, p, mode, d, rmode, offset, m, k, n, a, w }
}

/// One cycle of a register trace.
#[derive(Debug, Default, PartialEq)]
struct CycleRegs {
    a: Vec<i64>,
    w: Vec<i64>,
    p: Vec<i64>,
    /// (column, m, n, column sum S, new buffer value B)
    wb: Vec<(usize, usize, usize, i64, i64)>,
    /// (row, column) of every overflowing adder; row R = psum-buffer adder.
    ovf: BTreeSet<(usize, usize)>,
}

fn nums(s: &str) -> Vec<i64> {
    s.split(',').map(|v| v.parse().unwrap_or_else(|_| panic!("bad register value {v:?}"))).collect()
}

/// Parse a trace line: the engine's (`docs/datapath.md` §7 with register
/// fields) or the RTL dump's; fields other than cycle, a=, w=, p=, wb=,
/// ovf= are ignored.
fn parse_line(line: &str) -> (u64, CycleRegs) {
    let mut it = line.split(' ');
    let cycle: u64 = it.next().unwrap().parse().unwrap_or_else(|_| panic!("bad trace line {line:?}"));
    let mut c = CycleRegs::default();
    for f in it {
        if let Some(v) = f.strip_prefix("a=") {
            c.a = nums(v);
        } else if let Some(v) = f.strip_prefix("w=") {
            c.w = nums(v);
        } else if let Some(v) = f.strip_prefix("p=") {
            c.p = nums(v);
        } else if let Some(v) = f.strip_prefix("wb=") {
            for e in v.split(';') {
                let (col, rest) = e.split_once(':').unwrap();
                let (mn, sb) = rest.split_once(':').unwrap();
                let (mm, nn) = mn.split_once(',').unwrap();
                let (s, b) = sb.split_once('>').unwrap();
                c.wb.push((
                    col.parse().unwrap(),
                    mm.parse().unwrap(),
                    nn.parse().unwrap(),
                    s.parse().unwrap(),
                    b.parse().unwrap(),
                ));
            }
            c.wb.sort();
        } else if let Some(v) = f.strip_prefix("ovf=") {
            for e in v.split(';') {
                let (r, col) = e.split_once(',').unwrap();
                c.ovf.insert((r.parse().unwrap(), col.parse().unwrap()));
            }
        }
    }
    (cycle, c)
}

/// What the RTL produced for one GEMM.
struct RtlRun {
    cycles: Vec<(u64, CycleRegs)>,
    total: u64,
    acc: Vec<i64>,
}

fn write_matrix(path: &Path, rows: usize, cols: usize, v: &[i32]) {
    let arr = NpyArray::new(vec![rows, cols], Dtype::I64, v.iter().map(|&x| x as i64).collect()).unwrap();
    write_npy(path, &arr).unwrap();
}

fn run_rtl(b: &Build, c: &Case, tmp: &Path) -> RtlRun {
    let (ap, wp) = (tmp.join(format!("{}-a.npy", b.name)), tmp.join(format!("{}-w.npy", b.name)));
    write_matrix(&ap, c.m, c.k, &c.a);
    write_matrix(&wp, c.k, c.n, &c.w);
    let df = c.df.name();
    let rmode = RoundMode::ALL.iter().position(|&x| x == c.rmode).unwrap();
    let ovf = OverflowMode::ALL.iter().position(|&x| x == c.mode).unwrap();
    let args = [
        ("--df", df.to_string()),
        ("--asigned", u8::from(c.asigned).to_string()),
        ("--wsigned", u8::from(c.wsigned).to_string()),
        ("--p", c.p.to_string()),
        ("--ovf", ovf.to_string()),
        ("--d", c.d.to_string()),
        ("--rmode", rmode.to_string()),
        ("--offset", c.offset.to_string()),
    ];
    let mut cmd = Command::new(&b.exe);
    cmd.arg(&ap).arg(&wp).arg("--print-acc");
    for (k, v) in &args {
        cmd.arg(k).arg(v);
    }
    let out = cmd.output().expect("run the Verilator model");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: the Verilator model failed: {}",
        c.describe(b),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = RtlRun { cycles: Vec::new(), total: u64::MAX, acc: Vec::new() };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("cycles=") {
            run.total = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("acc=") {
            run.acc = nums(v);
        } else if !line.is_empty() {
            run.cycles.push(parse_line(line));
        }
    }
    run
}

/// Compare the RTL's run with the cycle engine's on the same case; `Err`
/// names the first difference.
fn compare(b: &Build, engine_case: &Case, rtl: &RtlRun) -> Result<(), String> {
    let c = engine_case;
    let cfg = c.config(b);
    let a = Matrix::new(c.m, c.k, c.a.clone()).unwrap();
    let w = Matrix::new(c.k, c.n, c.w.clone()).unwrap();
    let (out, trace) = trace_registers(&cfg, &a, &w).unwrap();
    let eng: Vec<(u64, CycleRegs)> = trace.lines().filter(|l| !l.starts_with('#')).map(parse_line).collect();
    let cols = b.cols;
    for (i, ((ec, e), (rc, r))) in eng.iter().zip(&rtl.cycles).enumerate() {
        assert_eq!((*ec, *rc), (i as u64, i as u64), "trace cycles must count from 0");
        for (name, ev, rv) in [("a", &e.a, &r.a), ("w", &e.w, &r.w), ("p", &e.p, &r.p)] {
            if ev.len() != rv.len() {
                return Err(format!(
                    "cycle {i}: register {name}: {} PEs in the RTL, {} in the engine",
                    rv.len(),
                    ev.len()
                ));
            }
            if let Some(j) = (0..ev.len()).find(|&j| ev[j] != rv[j]) {
                return Err(format!(
                    "first difference at cycle {i}, row {}, column {}, register {name}: RTL {}, engine {}",
                    j / cols,
                    j % cols,
                    rv[j],
                    ev[j]
                ));
            }
        }
        if e.wb != r.wb {
            let col = (0..cols)
                .find(|&x| e.wb.iter().find(|t| t.0 == x) != r.wb.iter().find(|t| t.0 == x))
                .unwrap_or(0);
            return Err(format!(
                "first difference at cycle {i}, row {} (psum writeback), column {col}, register wb: RTL {:?}, engine {:?}",
                b.rows, r.wb, e.wb
            ));
        }
        if e.ovf != r.ovf {
            let (row, col) = *e.ovf.symmetric_difference(&r.ovf).next().unwrap();
            return Err(format!(
                "first difference at cycle {i}, row {row}, column {col}, register ovf: RTL {}, engine {}",
                r.ovf.contains(&(row, col)),
                e.ovf.contains(&(row, col))
            ));
        }
    }
    if eng.len() != rtl.cycles.len() {
        return Err(format!("the RTL ran {} cycles, the engine {}", rtl.cycles.len(), eng.len()));
    }
    let want = compute_cycles(c.df, b.rows, b.cols, c.m, c.k, c.n);
    if rtl.total != out.stats.cycles || rtl.total != want {
        return Err(format!("cycle count: RTL {}, engine {}, docs §5 {want}", rtl.total, out.stats.cycles));
    }
    if rtl.acc != out.acc {
        return Err(format!("final accumulators: RTL {:?}, engine {:?}", rtl.acc, out.acc));
    }
    Ok(())
}

struct TmpDir(PathBuf);
impl TmpDir {
    fn new(tag: &str) -> TmpDir {
        let p = std::env::temp_dir().join(format!("bitmac-rtl-array-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }
}
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `cases` random GEMMs (seeds `seed0..`) on a build; returns how many
/// overflowed somewhere and how many used every dataflow, for the coverage
/// assertions.
fn check_build(
    b: &Build,
    seed0: u64,
    cases: u64,
    tmp: &Path,
    fixed: Option<&dyn Fn(&mut Case)>,
) -> (u64, [u64; 3]) {
    let mut overflowing = 0;
    let mut per_df = [0u64; 3];
    for seed in seed0..seed0 + cases {
        let mut c = random_case(seed);
        if let Some(f) = fixed {
            f(&mut c);
            let (a, w) = {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
                (
                    values(&mut rng, c.m * c.k, c.abits, c.asigned),
                    values(&mut rng, c.k * c.n, c.wbits, c.wsigned),
                )
            };
            c.a = a;
            c.w = w;
        }
        let rtl = run_rtl(b, &c, tmp);
        if let Err(e) = compare(b, &c, &rtl) {
            panic!("RTL and cycle engine differ ({}):\n  {e}", c.describe(b));
        }
        if rtl.cycles.iter().any(|(_, r)| !r.ovf.is_empty()) {
            overflowing += 1;
        }
        per_df[Dataflow::ALL.iter().position(|&d| d == c.df).unwrap()] += 1;
    }
    (overflowing, per_df)
}

#[test]
fn rtl_array_matches_cycle_engine_register_by_register() {
    if verilator_available().is_none() {
        return;
    }
    let tmp = TmpDir::new("regs");
    // Runtime-configured builds: every case draws its own configuration.
    let b43 = build("r4c3", 4, 3, vec![]);
    let (ovf, dfs) = check_build(&b43, 1000, 90, &tmp.0, None);
    assert!(
        ovf >= 20 && dfs.iter().all(|&n| n >= 15),
        "coverage: {ovf} overflowing cases, dataflows {dfs:?}"
    );
    let b12 = build("r1c2", 1, 2, vec![]);
    check_build(&b12, 2000, 40, &tmp.0, None);
    let b31 = build("r3c1", 3, 1, vec![]);
    check_build(&b31, 3000, 40, &tmp.0, None);
}

#[test]
fn rtl_array_parameter_build_matches_cycle_engine() {
    if verilator_available().is_none() {
        return;
    }
    let tmp = TmpDir::new("param");
    // RUNTIME_CFG=0: the configuration is fixed by parameters (as in the
    // benchmark build); the driver's cfg options are ignored by the model,
    // so the engine must be given the same configuration.
    let params = vec![
        ("RUNTIME_CFG", "0".to_string()),
        ("DATAFLOW", "1".to_string()),
        ("A_SIGNED", "1".to_string()),
        ("W_SIGNED", "0".to_string()),
        ("ACC_BITS", "11".to_string()),
        ("OVF", "3".to_string()),
        ("DROP", "3".to_string()),
        ("RMODE", "7".to_string()),
        ("OFFSET", "-2".to_string()),
        ("PW", "16".to_string()),
        ("DMAX", "4".to_string()),
        ("AW", "6".to_string()),
        ("WW", "5".to_string()),
    ];
    let b = build("r2c3_fixed", 2, 3, params);
    let fix = |c: &mut Case| {
        c.df = Dataflow::Is;
        (c.abits, c.asigned, c.wbits, c.wsigned) = (6, true, 5, false);
        (c.p, c.mode, c.d, c.rmode, c.offset) = (11, OverflowMode::SatSym, 3, RoundMode::RndConvOdd, -2);
    };
    let (ovf, _) = check_build(&b, 4000, 25, &tmp.0, Some(&fix));
    assert!(ovf >= 5, "only {ovf} cases overflowed");
    assert!(b.extra.iter().any(|(k, v)| *k == "RUNTIME_CFG" && v == "0"));
}

/// The comparison is not vacuous: an RTL run with a different configuration
/// than the engine's (or with one corrupted register value) is reported as a
/// difference naming cycle, row, column and register.
#[test]
fn rtl_array_comparison_detects_differences() {
    if verilator_available().is_none() {
        return;
    }
    let tmp = TmpDir::new("neg");
    let b = build("r4c3", 4, 3, vec![]);
    // A case that overflows under SAT with P = 6.
    let mut c = random_case(77);
    (c.df, c.p, c.mode, c.d, c.offset, c.abits, c.asigned, c.wbits, c.wsigned) =
        (Dataflow::Ws, 6, OverflowMode::Sat, 0, 0, 8, true, 8, true);
    (c.m, c.k, c.n) = (5, 6, 4);
    c.a = vec![127; c.m * c.k];
    c.w = vec![-128; c.k * c.n];
    let mut rtl = run_rtl(&b, &c, &tmp.0);
    compare(&b, &c, &rtl).expect("the unmodified run matches");
    // The RTL under WRAP, the engine under SAT.
    let mut wrap = c.clone();
    wrap.mode = OverflowMode::Wrap;
    let rtl_wrap = run_rtl(&b, &wrap, &tmp.0);
    let e = compare(&b, &c, &rtl_wrap).unwrap_err();
    assert!(e.contains("first difference at cycle") && e.contains("register p"), "{e}");
    // One corrupted weight register.
    rtl.cycles[9].1.w[5] += 1;
    let e = compare(&b, &c, &rtl).unwrap_err();
    assert_eq!(
        e,
        format!(
            "first difference at cycle 9, row 1, column 2, register w: RTL {}, engine {}",
            rtl.cycles[9].1.w[5],
            rtl.cycles[9].1.w[5] - 1
        )
    );
}

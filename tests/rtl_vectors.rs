//! The RTL consumers of the committed golden vectors: every `round` case runs
//! through `tests/rtl/psum_round.v`, every `pe_column` case through
//! `tests/rtl/pe_column.v`, under Icarus Verilog. The testbenches
//! `$readmemh` the committed files (never regenerated ones) and compare every
//! output; the RTL was written from docs/numerics.md and docs/vectors.md,
//! not from bitmac's code, so it is an independent reference.
//!
//! Without `iverilog`/`vvp` on PATH this test FAILS with a clear message,
//! unless `BITMAC_SKIP_RTL=1` is set. Simulations run in a temp directory.

use bitmac::numerics::{OverflowMode, RoundMode};
use bitmac::vectors::{CaseSpec, Manifest};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `None` when the user opted out; panics with instructions when the tools
/// are missing.
fn icarus_available() -> Option<()> {
    if std::env::var("BITMAC_SKIP_RTL").is_ok_and(|v| v == "1") {
        eprintln!("BITMAC_SKIP_RTL=1: skipping the Icarus Verilog testbenches");
        return None;
    }
    for tool in ["iverilog", "vvp"] {
        let ok = Command::new(tool).arg("-V").output().is_ok();
        assert!(
            ok,
            "`{tool}` (Icarus Verilog) was not found on PATH: the RTL testbenches under tests/rtl/ need it. \
             Install it (Debian/Ubuntu: apt-get install iverilog; .ci/run does this in CI) \
             or set BITMAC_SKIP_RTL=1 to skip them"
        );
    }
    Some(())
}

struct TmpDir(PathBuf);
impl TmpDir {
    fn new(tag: &str) -> TmpDir {
        let p = std::env::temp_dir().join(format!("bitmac-rtl-{tag}-{}", std::process::id()));
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

fn fmt_parts(s: &str) -> (u32, u32) {
    let signed = u32::from(s.starts_with('i'));
    (s[1..].parse().unwrap(), signed)
}

fn mode_index(s: &str) -> usize {
    let m: RoundMode = s.parse().unwrap();
    RoundMode::ALL.iter().position(|&x| x == m).unwrap()
}

fn ovf_index(s: &str) -> usize {
    let m: OverflowMode = s.parse().unwrap();
    OverflowMode::ALL.iter().position(|&x| x == m).unwrap()
}

/// A testbench: top module, sources, `-P` parameters.
type Bench = (&'static str, Vec<&'static str>, Vec<(String, String)>);

/// The testbench for a case, or None for kinds without an RTL consumer.
fn bench_for(case: &CaseSpec, m_hw: Option<&bitmac::hw::HwSpec>) -> Option<Bench> {
    let p = |k: &str, v: String| (k.to_string(), v);
    match case {
        CaseSpec::Round(c) => {
            let (iw, is) = fmt_parts(&c.input);
            let (ow, os) = fmt_parts(&c.output);
            assert!(i32::try_from(c.offset).is_ok(), "{}: psum_round.v takes a 32-bit offset", c.name);
            Some((
                "psum_round_tb",
                vec!["psum_round.v", "psum_round_tb.v"],
                vec![
                    p("COUNT", c.count.to_string()),
                    p("IN_W", iw.to_string()),
                    p("IN_SIGNED", is.to_string()),
                    p("K", c.k.to_string()),
                    p("MODE", mode_index(&c.mode).to_string()),
                    p("OFFSET", c.offset.to_string()),
                    p("OUT_W", ow.to_string()),
                    p("OUT_SIGNED", os.to_string()),
                    p("OVF", ovf_index(&c.overflow).to_string()),
                ],
            ))
        }
        CaseSpec::PeColumn(c) => {
            let (aw, asg) = fmt_parts(&c.a);
            let (ww, wsg) = fmt_parts(&c.w);
            let (accw, accs) = fmt_parts(&c.acc);
            assert_eq!(accs, 1, "{}: pe_column.v has a signed accumulator", c.name);
            Some((
                "pe_column_tb",
                vec!["pe_column.v", "pe_column_tb.v"],
                vec![
                    p("M", c.m.to_string()),
                    p("K", c.k.to_string()),
                    p("N", c.n.to_string()),
                    p("AW", aw.to_string()),
                    p("A_SIGNED", asg.to_string()),
                    p("WW", ww.to_string()),
                    p("W_SIGNED", wsg.to_string()),
                    p("ACCW", accw.to_string()),
                    p("OVF", ovf_index(&c.overflow).to_string()),
                ],
            ))
        }
        CaseSpec::Gemm(c) => {
            let hw = m_hw?;
            let fold = if hw.array.dataflow == "os" { c.k } else { hw.array.rows as usize };
            Some((
                "gemm_column_tb",
                vec!["pe_column.v", "psum_round.v", "gemm_column_tb.v"],
                vec![
                    p("M", c.m.to_string()),
                    p("K", c.k.to_string()),
                    p("N", c.n.to_string()),
                    p("FOLD", fold.to_string()),
                    p("AW", hw.activations.bits.to_string()),
                    p("A_SIGNED", u8::from(hw.activations.signed).to_string()),
                    p("WW", hw.weights.bits.to_string()),
                    p("W_SIGNED", u8::from(hw.weights.signed).to_string()),
                    p("ACCW", hw.accumulator.bits.to_string()),
                    p("OVF", ovf_index(&hw.accumulator.overflow).to_string()),
                    p("D", hw.psum.drop_bits.to_string()),
                    p("MODE", mode_index(&hw.psum.rounding).to_string()),
                    p("OFFSET", hw.psum.offset.to_string()),
                ],
            ))
        }
        // RTL simulators do not model metastability: only clean-clock cases replay.
        CaseSpec::Cdc(c) if c.meta.is_none() => Some((
            "cdc_replay_tb",
            vec!["async_fifo.v", "cdc_replay_tb.v"],
            vec![
                p("DSIZE", c.data_width.to_string()),
                p("ASIZE", c.depth.trailing_zeros().to_string()),
                p("SYNC", c.sync.to_string()),
            ],
        )),
        _ => None,
    }
}

/// Compile and run one testbench on the vectors in `vdir`; returns vvp's
/// stdout.
fn simulate(
    tmp: &Path,
    tag: &str,
    top: &str,
    srcs: &[&str],
    params: &[(String, String)],
    vdir: &Path,
) -> String {
    let out = tmp.join(format!("{tag}.vvp"));
    let mut cmd = Command::new("iverilog");
    cmd.arg("-g2005").arg("-o").arg(&out).arg("-s").arg(top);
    cmd.arg(format!("-DVDIR=\"{}\"", vdir.display()));
    for (k, v) in params {
        cmd.arg(format!("-P{top}.{k}={v}"));
    }
    for s in srcs {
        cmd.arg(root().join("tests/rtl").join(s));
    }
    let c = cmd.output().expect("run iverilog");
    assert!(c.status.success(), "{tag}: iverilog failed: {}", String::from_utf8_lossy(&c.stderr));
    let r = Command::new("vvp").arg("-n").arg(&out).current_dir(tmp).output().expect("run vvp");
    String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr)
}

fn committed_cases() -> Vec<(PathBuf, Manifest)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(root().join("testvectors")).unwrap() {
        let p = e.unwrap().path();
        let m = p.join("manifest.json");
        if m.is_file() {
            let man: Manifest = serde_json::from_str(&std::fs::read_to_string(&m).unwrap()).unwrap();
            v.push((p, man));
        }
    }
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn rtl_testbenches_pass_on_every_committed_vector_case() {
    if icarus_available().is_none() {
        return;
    }
    let tmp = TmpDir::new("suite");
    let (mut rounds, mut columns, mut gemms, mut cdcs) = (0, 0, 0, 0);
    for (dir, m) in committed_cases() {
        let Some((top, srcs, params)) = bench_for(&m.case, m.hw.as_ref()) else { continue };
        let out = simulate(&tmp.0, &m.name, top, &srcs, &params, &dir);
        assert!(out.contains("PASS") && !out.contains("FAIL"), "{}: {top}:\n{out}", m.name);
        match m.case {
            CaseSpec::Round(_) => rounds += 1,
            CaseSpec::PeColumn(_) => columns += 1,
            CaseSpec::Gemm(_) => gemms += 1,
            CaseSpec::Cdc(_) => cdcs += 1,
            _ => {}
        }
    }
    assert!(rounds >= 16, "only {rounds} round cases reached the RTL");
    assert!(columns >= 5, "only {columns} pe_column cases reached the RTL");
    assert!(gemms >= 9, "only {gemms} gemm cases reached the RTL");
    assert!(cdcs >= 4, "only {cdcs} cdc cases reached the RTL");
}

/// Negative control: a testbench fed one wrong expected value must fail and
/// name the element, so a PASS above means something.
#[test]
fn rtl_testbenches_detect_a_corrupted_expected_value() {
    if icarus_available().is_none() {
        return;
    }
    let tmp = TmpDir::new("neg");
    let cases = committed_cases();
    for (want_kind, file, line) in [
        ("round", "y.hex", 7usize),
        ("pe_column", "acc.hex", 5),
        ("gemm", "acc.hex", 9),
        ("cdc", "trace.txt", 40),
    ] {
        let (dir, m) = cases.iter().find(|(_, m)| m.kind == want_kind).expect("a committed case of the kind");
        let copy = tmp.0.join(&m.name);
        std::fs::create_dir_all(&copy).unwrap();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
        let p = copy.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let l = &mut lines[line - 1];
        if file == "trace.txt" {
            // Flip wfull (the third field): time, domain and enable are inputs.
            let mut f: Vec<String> = l.split(' ').map(str::to_string).collect();
            f[2] = if f[2] == "0" { "1".into() } else { "0".into() };
            *l = f.join(" ");
        } else {
            let first = l.chars().next().unwrap();
            let flipped = if first == '0' { '1' } else { '0' };
            l.replace_range(0..1, &flipped.to_string());
        }
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        let (top, srcs, params) = bench_for(&m.case, m.hw.as_ref()).unwrap();
        let out = simulate(&tmp.0, &format!("neg-{}", m.name), top, &srcs, &params, &copy);
        assert!(out.contains("FAIL"), "{}: corrupted {file} line {line} was not detected:\n{out}", m.name);
        assert!(out.contains(&format!("line {line}")), "{}: the failure names the line:\n{out}", m.name);
    }
}

//! Edge-exact cross-check of bitmac's FIFO model against an independent RTL
//! implementation (`tests/rtl/async_fifo.v`) simulated by Icarus Verilog.
//!
//! For each clock configuration: bitmac produces its trace; the enables of
//! that trace are written to files; the RTL testbench generates its own
//! clocks from the periods/phases, reads the enables, and dumps the same trace
//! format. Then (a) `--replay` logic re-simulates the RTL trace and must report
//! every edge matching, and (b) the two traces must be equal line by line.
//!
//! Requires `iverilog` and `vvp` (installed by `.ci/run`). Set
//! `BITMAC_SKIP_RTL=1` to skip on a machine without them.

use bitmac::cdc::{self, trace, Clock, ClockPair, Domain, FifoSpec, Variant};
use std::path::PathBuf;
use std::process::Command;

struct Case {
    name: &'static str,
    wclk: u64,
    rclk: u64,
    wphase: u64,
    rphase: u64,
    depth: u64,
    sync: u32,
    width: u32,
    words: u64,
    wen: u32,
    ren: u32,
    seed: u64,
    jitter: u64,
}

const CASES: &[Case] = &[
    Case {
        name: "equal_same_phase",
        wclk: 10000,
        rclk: 10000,
        wphase: 0,
        rphase: 0,
        depth: 16,
        sync: 2,
        width: 8,
        words: 300,
        wen: 70,
        ren: 60,
        seed: 1,
        jitter: 0,
    },
    Case {
        name: "10000_13700",
        wclk: 10000,
        rclk: 13700,
        wphase: 0,
        rphase: 0,
        depth: 16,
        sync: 2,
        width: 8,
        words: 300,
        wen: 100,
        ren: 100,
        seed: 2,
        jitter: 0,
    },
    Case {
        name: "fast_write",
        wclk: 3000,
        rclk: 17000,
        wphase: 1000,
        rphase: 0,
        depth: 8,
        sync: 2,
        width: 8,
        words: 200,
        wen: 100,
        ren: 80,
        seed: 3,
        jitter: 0,
    },
    Case {
        name: "fast_read",
        wclk: 17000,
        rclk: 3000,
        wphase: 0,
        rphase: 500,
        depth: 8,
        sync: 3,
        width: 8,
        words: 200,
        wen: 90,
        ren: 100,
        seed: 4,
        jitter: 0,
    },
    Case {
        name: "depth2",
        wclk: 10000,
        rclk: 13700,
        wphase: 2500,
        rphase: 0,
        depth: 2,
        sync: 2,
        width: 8,
        words: 200,
        wen: 60,
        ren: 70,
        seed: 5,
        jitter: 0,
    },
    Case {
        name: "depth4_s3_half_phase",
        wclk: 7000,
        rclk: 7000,
        wphase: 0,
        rphase: 3500,
        depth: 4,
        sync: 3,
        width: 8,
        words: 200,
        wen: 80,
        ren: 50,
        seed: 6,
        jitter: 0,
    },
    Case {
        name: "ratio2_coincident_s4",
        wclk: 5000,
        rclk: 10000,
        wphase: 0,
        rphase: 0,
        depth: 32,
        sync: 4,
        width: 16,
        words: 300,
        wen: 50,
        ren: 90,
        seed: 7,
        jitter: 0,
    },
    Case {
        name: "near_equal_narrow_data",
        wclk: 1000,
        rclk: 1001,
        wphase: 0,
        rphase: 0,
        depth: 2,
        sync: 3,
        width: 3,
        words: 200,
        wen: 75,
        ren: 75,
        seed: 8,
        jitter: 0,
    },
    Case {
        name: "jittered_10000_13700",
        wclk: 10000,
        rclk: 13700,
        wphase: 0,
        rphase: 0,
        depth: 8,
        sync: 2,
        width: 8,
        words: 300,
        wen: 80,
        ren: 80,
        seed: 9,
        jitter: 3000,
    },
];

fn tools_present() -> bool {
    let ok = |c: &str, a: &str| {
        Command::new(c)
            .arg(a)
            .output()
            .map(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
            .unwrap_or(false)
    };
    ok("iverilog", "-V") && ok("vvp", "-V")
}

fn body(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

fn run_case(c: &Case, dir: &std::path::Path, v: Variant, tag: &str) {
    let cfg =
        FifoSpec { depth: c.depth, sync: c.sync, data_width: c.width, seed: c.seed, ..Default::default() }
            .validate()
            .unwrap()
            .with_variant(v)
            .unwrap();
    let plain = v.is_plain();
    let clocks =
        ClockPair { w: Clock::new(c.wclk).with_phase(c.wphase), r: Clock::new(c.rclk).with_phase(c.rphase) };
    let mut tw = trace::TraceWriter::new(&cfg, &[]);
    let rep = cdc::simulate(&cfg, &clocks, c.words, c.wen, c.ren, None, &mut tw).unwrap();
    assert!(rep.finished && rep.verdict.clean, "{}: bitmac run not clean", c.name);
    let ours = tw.out;
    let lines = trace::parse(&ours, "bitmac", &cfg).unwrap();
    let wen: Vec<&str> =
        lines.iter().filter(|p| p.line.dom == Domain::W).map(|p| if p.line.en { "1" } else { "0" }).collect();
    let ren: Vec<&str> =
        lines.iter().filter(|p| p.line.dom == Domain::R).map(|p| if p.line.en { "1" } else { "0" }).collect();
    let case_dir = dir.join(format!("{}{tag}", c.name));
    std::fs::create_dir_all(&case_dir).unwrap();
    std::fs::write(case_dir.join("wen.txt"), wen.join("\n") + "\n").unwrap();
    std::fs::write(case_dir.join("ren.txt"), ren.join("\n") + "\n").unwrap();
    // Jittered clocks: the testbench takes the edge times from files.
    let times = |d: Domain| -> String {
        lines.iter().filter(|p| p.line.dom == d).map(|p| format!("{:x}\n", p.line.time_ps)).collect()
    };
    std::fs::write(case_dir.join("wt.txt"), times(Domain::W)).unwrap();
    std::fs::write(case_dir.join("rt.txt"), times(Domain::R)).unwrap();
    let rtl = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/rtl");
    let asize = c.depth.trailing_zeros();
    let tb = if plain { "async_fifo_tb" } else { "async_fifo_var_tb" };
    let mut params = vec![
        format!("-Pasync_fifo_tb.DSIZE={}", c.width),
        format!("-Pasync_fifo_tb.ASIZE={asize}"),
        format!("-Pasync_fifo_tb.SYNC={}", c.sync),
        format!("-Pasync_fifo_tb.WPERIOD={}", c.wclk),
        format!("-Pasync_fifo_tb.RPERIOD={}", c.rclk),
        format!("-Pasync_fifo_tb.WPHASE={}", c.wphase),
        format!("-Pasync_fifo_tb.RPHASE={}", c.rphase),
        format!("-Pasync_fifo_tb.TEND={}", rep.end_time_ps),
        format!("-Pasync_fifo_tb.NW={}", wen.len()),
        format!("-Pasync_fifo_tb.NR={}", ren.len()),
        format!("-Pasync_fifo_tb.EXT={}", (c.jitter > 0) as u8),
    ];
    if !plain {
        params.extend([
            format!("-Pasync_fifo_tb.STAGES={}", v.read_stages),
            format!("-Pasync_fifo_tb.FWFT={}", v.fwft as u8),
            format!("-Pasync_fifo_tb.AFEN={}", v.almost_full.is_some() as u8),
            format!("-Pasync_fifo_tb.AF={}", v.almost_full.unwrap_or(1)),
            format!("-Pasync_fifo_tb.AEEN={}", v.almost_empty.is_some() as u8),
            format!("-Pasync_fifo_tb.AE={}", v.almost_empty.unwrap_or(0)),
        ]);
    }
    let params: Vec<String> =
        params.into_iter().map(|p| p.replace("async_fifo_tb.", &format!("{tb}."))).collect();
    let out = Command::new("iverilog")
        .args(["-g2005", "-o"])
        .arg(case_dir.join("tb.vvp"))
        .args(&params)
        .arg(rtl.join(format!("{tb}.v")))
        .arg(rtl.join("async_fifo.v"))
        .args(if plain { None } else { Some(rtl.join("async_fifo_var.v")) })
        .output()
        .expect("running iverilog");
    assert!(out.status.success(), "{}: iverilog failed: {}", c.name, String::from_utf8_lossy(&out.stderr));
    let out =
        Command::new("vvp").arg("-n").arg("tb.vvp").current_dir(&case_dir).output().expect("running vvp");
    assert!(out.status.success(), "{}: vvp failed: {}", c.name, String::from_utf8_lossy(&out.stderr));
    let theirs = std::fs::read_to_string(case_dir.join("rtl_trace.txt")).unwrap();

    // (a) replay the RTL trace: every edge must match.
    let parsed = trace::parse(&theirs, "rtl_trace.txt", &cfg).unwrap();
    let n =
        trace::replay(&parsed, "rtl_trace.txt", &cfg).unwrap_or_else(|e| panic!("{}: replay: {e}", c.name));
    assert_eq!(n, lines.len(), "{}: edge count", c.name);
    // ... and through the CLI (the RTL trace has no bitmac header: flags).
    let mut vflags: Vec<String> = vec![
        "--read-stages".into(),
        v.read_stages.to_string(),
        "--read-data".into(),
        (if v.fwft { "fwft" } else { "registered" }).into(),
    ];
    if let Some(af) = v.almost_full {
        vflags.extend(["--almost-full".into(), af.to_string()]);
    }
    if let Some(ae) = v.almost_empty {
        vflags.extend(["--almost-empty".into(), ae.to_string()]);
    }
    let cli = Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(["cdc", "--replay"])
        .arg(case_dir.join("rtl_trace.txt"))
        .args([
            "--depth",
            &c.depth.to_string(),
            "--sync",
            &c.sync.to_string(),
            "--data-width",
            &c.width.to_string(),
        ])
        .args(if plain { Vec::new() } else { vflags })
        .output()
        .unwrap();
    assert_eq!(
        cli.status.code(),
        Some(0),
        "{}: cli replay: {}",
        c.name,
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&cli.stdout).trim(), format!("{n} edges match"));

    // (b) line-by-line equality.
    let (a, b) = (body(&ours), body(&theirs));
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        assert_eq!(x, y, "{}: trace line {} differs (bitmac vs RTL)", c.name, i + 1);
    }
    assert_eq!(a.len(), b.len(), "{}: number of trace lines", c.name);
}

#[test]
fn rtl_matches_bitmac_edge_for_edge() {
    if !tools_present() {
        if std::env::var("BITMAC_SKIP_RTL").as_deref() == Ok("1") {
            eprintln!("cdc_rtl: iverilog/vvp not found; skipped because BITMAC_SKIP_RTL=1");
            return;
        }
        panic!("cdc_rtl: iverilog/vvp not found: install Icarus Verilog (apt-get install iverilog) or set BITMAC_SKIP_RTL=1 to skip");
    }
    let dir = std::env::temp_dir().join(format!(
        "bitmac_cdc_rtl_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(CASES.len() >= 6);
    for c in CASES {
        run_case(c, &dir, Variant::default(), "");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The FIFO variants of docs/cdc.md §16 (read stages, registered read data,
/// almost-full/-empty), each against `tests/rtl/async_fifo_var.v` across all
/// nine clock configurations above (`CASES`), edge for edge.
#[test]
fn rtl_variants_match_bitmac_edge_for_edge() {
    if !tools_present() {
        if std::env::var("BITMAC_SKIP_RTL").as_deref() == Ok("1") {
            eprintln!("cdc_rtl: iverilog/vvp not found; skipped because BITMAC_SKIP_RTL=1");
            return;
        }
        panic!("cdc_rtl: iverilog/vvp not found: install Icarus Verilog (apt-get install iverilog) or set BITMAC_SKIP_RTL=1 to skip");
    }
    let dir = std::env::temp_dir().join(format!(
        "bitmac_cdc_rtl_var_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(CASES.len() >= 8);
    // Thresholds from the depth: af(d) and ae(d) stay in range for d >= 2.
    type Mk = fn(u64) -> Variant;
    let variants: [(&str, Mk); 6] = [
        ("_s1", |_| Variant { read_stages: 1, ..Default::default() }),
        ("_s2", |_| Variant { read_stages: 2, ..Default::default() }),
        ("_s3_almost", |d| Variant {
            read_stages: 3,
            almost_full: Some((d - 1) as u32),
            almost_empty: Some(1),
            ..Default::default()
        }),
        ("_registered", |_| Variant { fwft: false, ..Default::default() }),
        ("_s2_registered_almost", |d| Variant {
            read_stages: 2,
            fwft: false,
            almost_full: Some((d / 2) as u32),
            almost_empty: Some((d / 2 - 1) as u32),
        }),
        ("_almost", |d| Variant { almost_full: Some(d as u32), almost_empty: Some(0), ..Default::default() }),
    ];
    for (tag, mk) in variants {
        for c in CASES {
            run_case(c, &dir, mk(c.depth), tag);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! Properties, fault detection, replay, VCD and CLI checks of the CDC FIFO.
//! (The edge-exact RTL comparison is in `cdc_rtl.rs`.)

use bitmac::cdc::mtbf::{mtbf, Timing};
use bitmac::cdc::{
    self, trace, vcd, Clock, ClockPair, Domain, Fault, FifoSpec, Meta, NoObserver, Pattern, Variant,
};
use proptest::prelude::*;
use std::process::Command;

fn spec(depth: u64, sync: u32, seed: u64) -> FifoSpec {
    FifoSpec { depth, sync, data_width: 16, seed, ..Default::default() }
}

/// Read-edge times of a jitter-free clock, straight from the definition.
fn edge_times(c: &Clock, upto: u64) -> Vec<u64> {
    (0..).map(|k| c.phase_ps + k * c.period_ps).take_while(|t| *t <= upto).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Gray pointers, S >= 2, metastability on, random everything: the
    /// scoreboard is always clean and every word arrives in order.
    #[test]
    fn gray_with_metastability_is_always_clean(
        // Periods >= 2*25 + 25 + 25 + 2, so every setup/hold pair drawn
        // passes validation (setup + hold below the shortest edge spacing).
        wclk in 102u64..20000, rclk in 102u64..20000,
        wph in 0u64..1000, rph in 0u64..1000,
        depth_log in 1u32..=6, sync in 2u32..=4,
        wen in 1u32..=100, ren in 1u32..=100,
        seed in any::<u64>(), jit in 0u64..=25,
        setup in 0u64..=25, hold in 0u64..=25,
    ) {
        let mut s = spec(1 << depth_log, sync, seed);
        s.meta = Some(Meta { setup_ps: setup, hold_ps: hold });
        let cfg = s.validate().unwrap();
        let clocks = ClockPair {
            w: Clock { period_ps: wclk, phase_ps: wph % wclk, jitter_ps: jit },
            r: Clock { period_ps: rclk, phase_ps: rph % rclk, jitter_ps: jit },
        };
        let rep = cdc::simulate(&cfg, &clocks, 150, wen, ren, None, &mut NoObserver).unwrap();
        prop_assert!(rep.verdict.clean, "{:?}", rep.verdict);
        prop_assert_eq!(rep.stats.r.client_ops, 150);
    }

    /// The register-resident fast path (no observer) and the general
    /// simulator agree on every statistic and the verdict.
    #[test]
    fn fast_path_equals_general_simulator(
        wclk in 2u64..20000, rclk in 2u64..20000,
        wph in 0u64..20000, rph in 0u64..20000,
        // Biased so each specialized loop of the fast path (S = 2 or not,
        // jitter-free or not, enables always on or not) is hit often.
        depth_log in 1u32..=6, sync in prop_oneof![Just(2u32), 2u32..=6],
        wen in prop_oneof![Just(100u32), 1u32..=100], ren in prop_oneof![Just(100u32), 1u32..=100],
        seed in any::<u64>(), jit in prop_oneof![Just(0u64), 0u64..=100],
    ) {
        let cfg = spec(1 << depth_log, sync, seed).validate().unwrap();
        let clocks = ClockPair {
            w: Clock { period_ps: wclk, phase_ps: wph % wclk, jitter_ps: jit.min((wclk - 1) / 2) },
            r: Clock { period_ps: rclk, phase_ps: rph % rclk, jitter_ps: jit.min((rclk - 1) / 2) },
        };
        let a = cdc::simulate(&cfg, &clocks, 120, wen, ren, None, &mut NoObserver).unwrap();
        let b = cdc::simulate_general(&cfg, &clocks, 120, wen, ren).unwrap();
        prop_assert_eq!(&a.stats, &b.stats);
        prop_assert_eq!(&a.verdict, &b.verdict);
        prop_assert_eq!(a.end_time_ps, b.end_time_ps);
        prop_assert!(a.verdict.clean);
    }

    /// The same on harmonic clocks with equal phases, so that many instants
    /// have a write and a read edge together (the fast path handles such
    /// instants apart from single-domain ones).
    #[test]
    fn fast_path_equals_general_simulator_on_coincident_edges(
        wclk in 2u64..3000, mult in 1u64..=4, write_slower in any::<bool>(), ph in 0u64..3000,
        depth_log in 1u32..=6, sync in prop_oneof![Just(2u32), 2u32..=6],
        wen in prop_oneof![Just(100u32), 1u32..=100], ren in prop_oneof![Just(100u32), 1u32..=100],
        seed in any::<u64>(),
    ) {
        let cfg = spec(1 << depth_log, sync, seed).validate().unwrap();
        let (a, b) = if write_slower { (wclk * mult, wclk) } else { (wclk, wclk * mult) };
        let clocks = ClockPair {
            w: Clock { period_ps: a, phase_ps: ph % wclk, jitter_ps: 0 },
            r: Clock { period_ps: b, phase_ps: ph % wclk, jitter_ps: 0 },
        };
        let x = cdc::simulate(&cfg, &clocks, 120, wen, ren, None, &mut NoObserver).unwrap();
        let y = cdc::simulate_general(&cfg, &clocks, 120, wen, ren).unwrap();
        prop_assert_eq!(&x.stats, &y.stats);
        prop_assert_eq!(&x.verdict, &y.verdict);
        prop_assert_eq!(x.end_time_ps, y.end_time_ps);
        prop_assert!(x.verdict.clean);
    }

    /// A trace written by bitmac (any clocks, jitter, enables) replays with
    /// every edge matching, and parses back to the lines the simulator saw.
    #[test]
    fn own_traces_replay_clean(
        wclk in 2u64..3000, rclk in 2u64..3000,
        wph in 0u64..3000, rph in 0u64..3000,
        depth_log in 1u32..=5, sync in 2u32..=4, width in 1u32..=64,
        wen in 1u32..=100, ren in 1u32..=100, seed in any::<u64>(), jit in 0u64..=50,
    ) {
        let cfg = FifoSpec { depth: 1 << depth_log, sync, data_width: width, seed, ..Default::default() }.validate().unwrap();
        let clocks = ClockPair {
            w: Clock { period_ps: wclk, phase_ps: wph % wclk, jitter_ps: jit.min((wclk - 1) / 2) },
            r: Clock { period_ps: rclk, phase_ps: rph % rclk, jitter_ps: jit.min((rclk - 1) / 2) },
        };
        let mut tw = trace::TraceWriter::new(&cfg, &[]);
        let rep = cdc::simulate(&cfg, &clocks, 60, wen, ren, None, &mut tw).unwrap();
        let lines = trace::parse(&tw.out, "t", &cfg).unwrap();
        prop_assert_eq!(lines.len() as u64, rep.stats.w.edges + rep.stats.r.edges);
        prop_assert_eq!(trace::replay(&lines, "t", &cfg).unwrap(), lines.len());
        // Popped data are the words 0..60 modulo 2^width, in order.
        let popped: Vec<u64> = lines.iter().filter(|p| p.line.dom == Domain::R).filter_map(|p| match p.line.data {
            cdc::Data::Word(v) => Some(v),
            _ => None,
        }).collect();
        let want: Vec<u64> = (0..60u64).map(|k| k & cfg.data_mask()).collect();
        prop_assert_eq!(popped, want);
    }

    /// The latency facts of reference.md §5 (no metastability, no jitter):
    /// a write into an empty FIFO clears rempty on the (S+1)-th read edge
    /// strictly after it, a greedy reader pops it on the (S+2)-th; a read
    /// from a full FIFO clears wfull on the (S+1)-th write edge after it.
    #[test]
    fn latency_facts(
        wclk in 2u64..5000, rclk in 2u64..5000,
        wph in 0u64..5000, rph in 0u64..5000,
        depth_log in 1u32..=5, sync in 2u32..=5,
        wen in 1u32..=100, seed in any::<u64>(),
    ) {
        let cfg = spec(1 << depth_log, sync, seed).validate().unwrap();
        let clocks = ClockPair { w: Clock::new(wclk).with_phase(wph % wclk), r: Clock::new(rclk).with_phase(rph % rclk) };
        let words: Vec<u64> = (0..40).collect();
        let prod = if wen == 100 { Pattern::Always } else { Pattern::Percent(wen) };
        let (rep, text) = cdc::transfer_trace(&cfg, &clocks, &words, &prod, &Pattern::Always).unwrap();
        prop_assert_eq!(&rep.popped, &words);
        let s = sync as u64;
        // Word 0 goes into an empty FIFO; count read edges independently.
        let rt = edge_times(&clocks.r, rep.pop_time_ps[0]);
        let after: Vec<u64> = rt.into_iter().filter(|t| *t > rep.push_time_ps[0]).collect();
        prop_assert_eq!(after.len() as u64, s + 2, "pop of word 0 on read edge #{}", after.len());
        // rempty first clears on the (S+1)-th of those edges.
        let lines = trace::parse(&text, "t", &cfg).unwrap();
        let clear = lines.iter().find(|p| p.line.dom == Domain::R && !p.line.rempty).unwrap().line.time_ps;
        prop_assert_eq!(clear, after[s as usize]);
        // Every rempty / wfull clear has latency exactly S+1.
        for (k, c) in rep.report.stats.lat_write_rempty_clear.iter().enumerate() {
            prop_assert!(*c == 0 || k as u64 == s + 1, "rempty clear latency {}", k);
        }
        for (k, c) in rep.report.stats.lat_read_wfull_clear.iter().enumerate() {
            prop_assert!(*c == 0 || k as u64 == s + 1, "wfull clear latency {}", k);
        }
        prop_assert!(rep.report.stats.lat_write_pop.iter().take(s as usize + 2).all(|c| *c == 0));
    }
}

fn run_fault(fault: Fault, sync: u32, meta: Option<Meta>, wclk: u64, rclk: u64, seed: u64) -> cdc::Report {
    let mut s = spec(8, sync, seed);
    s.fault = fault;
    s.meta = meta;
    let cfg = s.validate().unwrap();
    let clocks = ClockPair::new(wclk, rclk);
    cdc::simulate(&cfg, &clocks, 2000, 80, 80, None, &mut NoObserver).unwrap()
}

#[test]
fn binary_pointers_are_caught() {
    let m = Some(Meta { setup_ps: 20, hold_ps: 10 });
    // Metastability alone: a mixed capture of a multi-bit change is a value
    // the source never held (a corrupted crossing). Cummings' registered
    // equality flags contain it (one extra operation, always backed), so no
    // word is lost -- but the crossing itself is flagged.
    for seed in [1, 2, 3] {
        let rep = run_fault(Fault::BinaryPointers { skew_ps: 0 }, 2, m, 10000, 10000, seed);
        assert!(!rep.verdict.clean);
        assert!(rep.verdict.corrupt_crossings > 0, "{:?}", rep.verdict);
        assert!(run_fault(Fault::None, 2, m, 10000, 10000, seed).verdict.clean);
    }
    // Without metastability or skew a binary crossing is invisible to simulation.
    assert!(run_fault(Fault::BinaryPointers { skew_ps: 0 }, 2, None, 10000, 10000, 1).verdict.clean);
    // An unconstrained binary bus (bit skew) with metastability loses data:
    // words lost / duplicated, pops of empty slots, pushes over unread words.
    for (w, r, skew) in
        [(17000, 3000, 5000), (3000, 17000, 5000), (10000, 10000, 20000), (10000, 13700, 20000)]
    {
        let rep = run_fault(Fault::BinaryPointers { skew_ps: skew }, 2, m, w, r, 1);
        let v = &rep.verdict;
        assert!(v.lost > 0, "{w}/{r}: {v:?}");
        assert!(v.truly_empty_pops > 0 || v.truly_full_pushes > 0, "{w}/{r}: {v:?}");
        // Gray pointers with the same clocks stay clean.
        assert!(run_fault(Fault::None, 2, m, w, r, 1).verdict.clean);
    }
}

#[test]
fn single_flop_synchronizer_loses_and_duplicates_words() {
    let m = Some(Meta { setup_ps: 20, hold_ps: 10 });
    for seed in [1, 2, 3] {
        let rep = run_fault(Fault::SingleFlop, 1, m, 10000, 10000, seed);
        let v = &rep.verdict;
        assert!(v.lost > 0 && v.duplicated > 0, "{v:?}");
        // The same run with two flops is clean.
        assert!(run_fault(Fault::None, 2, m, 10000, 10000, seed).verdict.clean);
    }
}

#[test]
fn reset_in_one_domain_corrupts_the_stream() {
    // (A reset that hits while the FIFO is empty and both pointers are equal
    // mod 2*depth is harmless, so the times are chosen, not random.)
    for (d, at) in
        [(Domain::W, 640_000), (Domain::W, 2_000_000), (Domain::R, 1_000_000), (Domain::R, 2_000_000)]
    {
        let rep = run_fault(Fault::ResetOneDomain { domain: d, at_ps: at }, 2, None, 10000, 13700, 7);
        let v = &rep.verdict;
        assert!(
            v.lost > 0 || v.duplicated > 0 || v.truly_empty_pops > 0 || v.truly_full_pushes > 0,
            "{d:?}: {v:?}"
        );
    }
}

fn small_run(words: u64, seed: u64) -> (bitmac::cdc::FifoConfig, ClockPair, String) {
    let cfg = FifoSpec { depth: 4, sync: 2, data_width: 8, seed, ..Default::default() }.validate().unwrap();
    let clocks = ClockPair::new(10000, 13700);
    let mut tw = trace::TraceWriter::new(&cfg, &[]);
    cdc::simulate(&cfg, &clocks, words, 70, 60, None, &mut tw).unwrap();
    (cfg, clocks, tw.out)
}

#[test]
fn replay_reports_first_mismatch_and_bad_lines() {
    let (cfg, _, text) = small_run(50, 3);
    let lines = trace::parse(&text, "t", &cfg).unwrap();
    assert_eq!(trace::replay(&lines, "t", &cfg).unwrap(), lines.len());
    // Flip rempty on the 10th data line.
    let mut out = Vec::new();
    let mut k = 0;
    let mut target = 0;
    for (i, l) in text.lines().enumerate() {
        if l.starts_with('#') {
            out.push(l.to_string());
            continue;
        }
        k += 1;
        if k == 10 {
            let mut f: Vec<String> = l.split(' ').map(String::from).collect();
            f[3] = if f[3] == "0" { "1".into() } else { "0".into() };
            out.push(f.join(" "));
            target = i + 1;
        } else {
            out.push(l.to_string());
        }
    }
    let bad = out.join("\n");
    let e = trace::replay(&trace::parse(&bad, "t", &cfg).unwrap(), "t", &cfg).unwrap_err();
    assert!(e.is_mismatch());
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("t:{target}: edge 10 ")), "{msg}");
    assert!(msg.contains("differs in rempty"), "{msg}");
    // Malformed lines: input errors with the line number.
    for (bad, want) in [
        ("0 W 0 1 1 0 0 1 0\n", "t:1: expected 10 fields"),
        ("0 Q 0 1 1 0 0 1 0 0\n", "t:1: dom"),
        ("# c\n5 W 0 1 1 0 0 1 0 0\n3 R 0 1 1 0 - 1 0 0\n", "t:3: time_ps"),
        ("5 R 0 1 1 0 - 1 0 0\n5 W 0 1 1 0 0 1 0 0\n", "t:2: second W"),
        ("0 W 0 1 zz 0 0 1 0 0\n", "t:1: wptr"),
        ("0 W 0 1 1f 0 0 1 0 0\n", "t:1: wptr: 1f does not fit in 3 bits"),
    ] {
        let e = trace::parse(bad, "t", &cfg).unwrap_err();
        assert!(e.is_input() && e.to_string().starts_with(want), "{e}");
    }
}

#[test]
fn same_seed_same_bytes_different_seed_differs() {
    let (_, _, a) = small_run(80, 11);
    let (_, _, b) = small_run(80, 11);
    let (_, _, c) = small_run(80, 12);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// Parse the VCD back: at every rising clock edge, the values after the
/// timestamp must equal the trace line's state.
#[test]
fn vcd_parses_back_to_the_trace() {
    let cfg =
        FifoSpec { depth: 4, sync: 3, data_width: 8, seed: 5, ..Default::default() }.validate().unwrap();
    let clocks = ClockPair { w: Clock::new(10000), r: Clock::new(13700).with_phase(100) };
    let mut tw = trace::TraceWriter::new(&cfg, &[]);
    cdc::simulate(&cfg, &clocks, 60, 80, 70, None, &mut tw).unwrap();
    let mut vw = vcd::VcdWriter::new(&cfg, 10000, 13700);
    cdc::simulate(&cfg, &clocks, 60, 80, 70, None, &mut vw).unwrap();
    let text = vw.finish();
    assert!(text.contains("$timescale 1ps $end") && text.contains("$enddefinitions $end"));
    // id -> name
    let mut names = std::collections::BTreeMap::new();
    for l in text.lines().filter(|l| l.starts_with("$var")) {
        let f: Vec<&str> = l.split_whitespace().collect();
        names.insert(f[3].to_string(), f[4].to_string());
    }
    assert_eq!(names.len(), 14);
    let mut val: std::collections::BTreeMap<String, u64> = Default::default();
    let mut snaps: Vec<(u64, std::collections::BTreeMap<String, u64>)> = Vec::new();
    let mut t = 0u64;
    let flush = |t: u64, val: &std::collections::BTreeMap<String, u64>, snaps: &mut Vec<_>| {
        snaps.push((t, val.clone()))
    };
    for l in text.lines().skip_while(|l| !l.starts_with("$enddefinitions")).skip(1) {
        if let Some(ts) = l.strip_prefix('#') {
            flush(t, &val, &mut snaps);
            t = ts.parse().unwrap();
        } else if let Some(rest) = l.strip_prefix('b') {
            let (v, id) = rest.split_once(' ').unwrap();
            val.insert(names[id].clone(), u64::from_str_radix(v, 2).unwrap());
        } else if l.starts_with('0') || l.starts_with('1') {
            val.insert(names[&l[1..]].clone(), (l.as_bytes()[0] - b'0') as u64);
        }
    }
    flush(t, &val, &mut snaps);
    let lines = trace::parse(&tw.out, "t", &cfg).unwrap();
    for p in &lines {
        let l = p.line;
        let (_, v) = snaps.iter().rev().find(|(st, _)| *st == l.time_ps).expect("timestamp in VCD");
        let clk = if l.dom == Domain::W { "wclk" } else { "rclk" };
        assert_eq!(v[clk], 1, "{clk} high at {}", l.time_ps);
        assert_eq!(v["wfull"], l.wfull as u64);
        assert_eq!(v["rempty"], l.rempty as u64);
        assert_eq!(v["wptr"], l.wptr as u64);
        assert_eq!(v["rptr"], l.rptr as u64);
        assert_eq!(v["wq_rptr"], l.wq_rptr as u64);
        assert_eq!(v["rq_wptr"], l.rq_wptr as u64);
        let en = if l.dom == Domain::W { "winc" } else { "rinc" };
        assert_eq!(v[en], l.en as u64);
        if let cdc::Data::Word(d) = l.data {
            assert_eq!(v[if l.dom == Domain::W { "wdata" } else { "rdata" }], d);
        }
    }
}

#[test]
fn transfer_ready_at_and_errors() {
    let cfg =
        FifoSpec { depth: 8, sync: 2, data_width: 12, seed: 9, ..Default::default() }.validate().unwrap();
    let clocks = ClockPair::new(3000, 7000);
    let words: Vec<u64> = (0..100).map(|k| (k * 37) % 4096).collect();
    let ready: Vec<u64> = (0..100).map(|k| k * 3).collect();
    let rep = cdc::transfer(&cfg, &clocks, &words, &Pattern::ReadyAt(ready.clone()), &Pattern::Percent(60))
        .unwrap();
    assert_eq!(rep.popped, words);
    assert!(rep.push_edge.iter().zip(&ready).all(|(e, r)| e >= r));
    assert!(rep.push_time_ps.iter().zip(&rep.pop_time_ps).all(|(p, q)| q > p));
    assert_eq!(rep.occupancy.iter().sum::<u64>(), rep.write_cycles + rep.read_cycles);
    assert!(cdc::transfer(&cfg, &clocks, &[5000], &Pattern::Always, &Pattern::Always).is_err());
}

#[test]
fn mtbf_matches_worked_examples() {
    // Wakerly, Digital Design: Principles and Practices, 3rd ed., §8.9:
    // 74ALS74 (tau = 1.00 ns, T0 = 8.7e-6 s), 16 MHz clock, 1e5 changes/s:
    // MTBF(42.5 ns) = 2.06e11 s; with t_setup 10 ns instead of 20: MTBF(52.5 ns) = 4.54e15 s.
    // t_r there = T_clk - t_setup (measured from the clock edge).
    let t =
        Timing { tau_s: 1.0e-9, t0_s: 8.7e-6, stages: 2, t_setup_s: 20e-9, t_clk2q_s: 0.0, t_logic_s: 0.0 };
    let s = t.synchronizer("x", 16e6, 1e5).unwrap();
    assert!((s.t_r_s - 42.5e-9).abs() < 1e-15);
    let m = s.mtbf_s.unwrap();
    assert!((m / 2.06e11 - 1.0).abs() < 0.005, "{m}");
    let t2 = Timing { t_setup_s: 10e-9, ..t };
    let m2 = t2.synchronizer("x", 16e6, 1e5).unwrap().mtbf_s.unwrap();
    assert!((m2 / 4.54e15 - 1.0).abs() < 0.005, "{m2}");
    // mbedded.ninja "Metastability and synchronisation": t_r = 2.3 ns,
    // tau = 0.31 ns, T0 = 9.6e-18 s, f = 100 MHz, a = 1 MHz -> 20.1 days.
    let days = mtbf(2.3e-9, 0.31e-9, 9.6e-18, 100e6, 1e6) / 86400.0;
    assert!((days - 20.1).abs() < 0.05, "{days}");
    // Each extra stage adds one period to t_r.
    let t3 = Timing { stages: 3, ..t };
    assert!((t3.resolution_time(16e6) - t.resolution_time(16e6) - 62.5e-9).abs() < 1e-15);
}

fn bitmac(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_bitmac")).args(args).output().unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn cli_errors_json_and_mtbf() {
    let base = [
        "cdc",
        "--wclk-ps",
        "10000",
        "--rclk-ps",
        "13700",
        "--sync",
        "2",
        "--data-width",
        "8",
        "--words",
        "50",
    ];
    let (c, _, e) = bitmac(&[&base[..], &["--depth", "12"]].concat());
    assert_eq!(c, 2);
    assert!(e.contains("--depth: 12 is out of range") && e.lines().count() == 1, "{e}");
    let (c, _, e) = bitmac(&[
        "cdc",
        "--wclk-ps",
        "10000",
        "--rclk-ps",
        "13700",
        "--sync",
        "1",
        "--data-width",
        "8",
        "--words",
        "5",
        "--depth",
        "4",
    ]);
    assert_eq!(c, 2);
    assert!(e.contains("--sync: 1 is out of range"), "{e}");
    let (c, _, e) = bitmac(&[&base[..], &["--depth", "4", "--wphase-ps", "10000"]].concat());
    assert_eq!(c, 2);
    assert!(e.contains("--wphase-ps"), "{e}");
    let (c, _, e) = bitmac(&[&base[..], &["--depth", "4", "--max-edges", "20"]].concat());
    assert_eq!(c, 2);
    assert!(e.contains("run did not finish") && e.contains("--max-edges") && e.lines().count() == 1, "{e}");
    // --trace writes the same bytes as the library's simulate_trace.
    let dir = std::env::temp_dir().join(format!("bitmac_cdc_cli_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tpath = dir.join("t.txt");
    let (c, _, _) = bitmac(
        &[&base[..], &["--depth", "4", "--wen", "70", "--seed", "3", "--trace", tpath.to_str().unwrap()]]
            .concat(),
    );
    assert_eq!(c, 0);
    let cfg =
        FifoSpec { depth: 4, sync: 2, data_width: 8, seed: 3, ..Default::default() }.validate().unwrap();
    let (_, text) = cdc::simulate_trace(&cfg, &ClockPair::new(10000, 13700), 50, 70, 100).unwrap();
    assert_eq!(std::fs::read_to_string(&tpath).unwrap(), text);
    let _ = std::fs::remove_dir_all(&dir);
    let (c, o, _) = bitmac(&[&base[..], &["--depth", "4", "--json"]].concat());
    assert_eq!(c, 0);
    let j: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(j["verdict"]["clean"], true);
    assert_eq!(j["stats"]["r"]["ops"], 50);
    let (c, o, _) =
        bitmac(&[&base[..], &["--depth", "4", "--fault", "reset-read", "--fault-at-ps", "300000"]].concat());
    assert_eq!(c, 1);
    assert!(o.contains("scoreboard: FAIL"), "{o}");
    let (c, o, _) = bitmac(&[
        "mtbf",
        "--tau-ps",
        "1000",
        "--t0-s",
        "8.7e-6",
        "--stages",
        "2",
        "--t-setup-ps",
        "20000",
        "--f-clk-hz",
        "16e6",
        "--f-data-hz",
        "1e5",
    ]);
    assert_eq!(c, 0);
    assert!(o.contains("MTBF 2.060043e11 s"), "{o}");
    let (c, o, _) = bitmac(&[
        "mtbf",
        "--tau-ps",
        "20",
        "--t0-s",
        "2e-11",
        "--stages",
        "2",
        "--wclk-hz",
        "1e9",
        "--rclk-hz",
        "7.3e8",
        "--push-hz",
        "5e8",
        "--pop-hz",
        "5e8",
        "--json",
    ]);
    assert_eq!(c, 0);
    let j: serde_json::Value = serde_json::from_str(&o).unwrap();
    assert_eq!(j["synchronizers"].as_array().unwrap().len(), 2);
    let (c, _, e) =
        bitmac(&["mtbf", "--tau-ps", "0", "--t0-s", "1e-9", "--f-clk-hz", "1e8", "--f-data-hz", "1e6"]);
    assert_eq!(c, 2);
    assert!(e.contains("--tau-ps"), "{e}");
}

/// Run bitmac with a generous wall-clock limit (the bound cases must be
/// refused before any work starts, not after a long run).
fn bitmac_timed(args: &[&str], secs: u64) -> (i32, String, String) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitmac"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let (mut o, mut e) = (String::new(), String::new());
            child.stdout.take().unwrap().read_to_string(&mut o).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut e).unwrap();
            return (st.code().unwrap_or(-1), o, e);
        }
        if start.elapsed() > std::time::Duration::from_secs(secs) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bitmac {args:?} ran longer than {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn cdc_args<'a>(w: &'a str, r: &'a str, words: &'a str) -> Vec<&'a str> {
    vec![
        "cdc",
        "--wclk-ps",
        w,
        "--rclk-ps",
        r,
        "--depth",
        "4",
        "--sync",
        "2",
        "--data-width",
        "8",
        "--words",
        words,
    ]
}

#[test]
fn unbounded_runs_are_refused_before_any_work() {
    // Clock periods near 2^31..2^32 ps against a fast clock: ~2^31 edges per word.
    for (w, r) in [("4294967295", "3"), ("2", "2147483648"), ("3", "1000000000000")] {
        let (c, _, e) = bitmac_timed(&cdc_args(w, r, "10"), 20);
        assert_eq!(c, 2, "{w}/{r}: {e}");
        assert!(
            e.contains("--wclk-ps/--rclk-ps") && e.contains("--max-edges") && e.lines().count() == 1,
            "{e}"
        );
    }
    // Word counts near 1e12 and 2^63.
    for words in ["1000000000000", "9223372036854775808", "18446744073709551614"] {
        let (c, _, e) = bitmac_timed(&cdc_args("10000", "13700", words), 20);
        assert_eq!(c, 2, "{words}: {e}");
        assert!(e.starts_with("bitmac: --words") || e.contains("--words:"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    // Observed runs have the lower limit: a run fine without --trace is refused with it.
    let dir = std::env::temp_dir().join(format!("bitmac_cdc_bound_{}", std::process::id()));
    let t = dir.join("t.txt");
    let mut a = cdc_args("10000", "10000", "100000000");
    a.extend(["--trace", t.to_str().unwrap()]);
    let (c, _, e) = bitmac_timed(&a, 20);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("--words") && e.lines().count() == 1, "{e}");
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none(), "nothing written");
    // An explicit --max-edges whose edges would pass 2^63 ps is refused.
    let mut a = cdc_args("1000000000000", "1000000000000", "10");
    a.extend(["--max-edges", "18446744073709551615"]);
    let (c, _, e) = bitmac_timed(&a, 20);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("--max-edges: 18446744073709551615 is out of range") && e.lines().count() == 1, "{e}");
    // ... and a small explicit bound over the default limit runs (the override).
    let mut a = cdc_args("4294967295", "3", "3");
    a.extend(["--max-edges", "3000"]);
    let (c, _, e) = bitmac_timed(&a, 20);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("run did not finish") && e.contains("3000 edges"), "{e}");
    // The library refuses the same (transfer, the datapath's entry point).
    let cfg = spec(4, 2, 0).validate().unwrap();
    let err = cdc::transfer(
        &cfg,
        &ClockPair::new(2, 1_000_000_000_000),
        &[1, 2],
        &Pattern::Always,
        &Pattern::Always,
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_run_leaves_no_output_and_large_outputs_stream() {
    let dir = std::env::temp_dir().join(format!("bitmac_cdc_noout_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (t, v) = (dir.join("t.txt"), dir.join("w.vcd"));
    let mut a = cdc_args("10000", "13700", "50");
    a.extend(["--max-edges", "20", "--trace", t.to_str().unwrap(), "--vcd", v.to_str().unwrap()]);
    let (c, _, e) = bitmac_timed(&a, 20);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("run did not finish") && e.contains("no output written"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
    // A run big enough to flush the stream many times writes the same bytes
    // as the in-memory writers.
    let mut a = cdc_args("10000", "13700", "3000");
    a.extend(["--wen", "80", "--seed", "5", "--trace", t.to_str().unwrap(), "--vcd", v.to_str().unwrap()]);
    let (c, _, e) = bitmac_timed(&a, 60);
    assert_eq!(c, 0, "{e}");
    let cfg =
        FifoSpec { depth: 4, sync: 2, data_width: 8, seed: 5, ..Default::default() }.validate().unwrap();
    let clocks = ClockPair::new(10000, 13700);
    let (_, text) = cdc::simulate_trace(&cfg, &clocks, 3000, 80, 100).unwrap();
    assert!(text.len() > 4 * (1 << 16));
    assert_eq!(std::fs::read_to_string(&t).unwrap(), text);
    let mut vw = vcd::VcdWriter::new(&cfg, 10000, 13700);
    cdc::simulate(&cfg, &clocks, 3000, 80, 100, None, &mut vw).unwrap();
    assert_eq!(std::fs::read_to_string(&v).unwrap(), vw.finish());
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["t.txt", "w.vcd"], "no temp files left");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_takes_the_configuration_from_the_trace_header() {
    let dir = std::env::temp_dir().join(format!("bitmac_cdc_hdr_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg =
        FifoSpec { depth: 8, sync: 3, data_width: 5, seed: 2, ..Default::default() }.validate().unwrap();
    let (_, text) = cdc::simulate_trace(&cfg, &ClockPair::new(7000, 11000), 60, 75, 60).unwrap();
    let p = dir.join("t.txt");
    std::fs::write(&p, &text).unwrap();
    let (c, o, e) = bitmac(&["cdc", "--replay", p.to_str().unwrap()]);
    assert_eq!(c, 0, "{e}");
    assert!(o.contains("edges match"), "{o}");
    // An explicit flag wins over the header (and a wrong one mismatches).
    let (c, _, e) = bitmac(&["cdc", "--replay", p.to_str().unwrap(), "--sync", "2"]);
    assert_eq!(c, 1, "{e}");
    // A header-less trace still needs the flags, and says which.
    let body: String = text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, body).unwrap();
    let (c, _, e) = bitmac(&["cdc", "--replay", p.to_str().unwrap()]);
    assert_eq!(c, 2);
    assert!(e.contains("--depth is required") && e.lines().count() == 1, "{e}");
    let (c, _, e) =
        bitmac(&["cdc", "--replay", p.to_str().unwrap(), "--depth", "8", "--sync", "3", "--data-width", "5"]);
    assert_eq!(c, 0, "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_and_docs_state_the_sync_rules() {
    let (c, o, _) = bitmac(&["cdc", "--help"]);
    assert_eq!(c, 0);
    let sync = o.lines().find(|l| l.contains("--sync <SYNC>")).unwrap_or_default();
    assert!(sync.contains("--replay accepts 1..=16") && sync.contains("K-1"), "{o}");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cdc.md")).unwrap();
    assert!(doc.contains("combinational on K synchronizer flops") && doc.contains("`--sync K−1`"));
}

#[test]
fn gen_cdc_case_is_bounded() {
    let dir = std::env::temp_dir().join(format!("bitmac_cdc_gen_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // 4096 words at a 1:5e11 clock ratio: the trace would be terabytes.
    let case = dir.join("c.json");
    std::fs::write(
        &case,
        r#"{"kind":"cdc","name":"big","seed":1,"wclk_ps":2,"rclk_ps":1000000000000,"depth":4,"sync":2,"data_width":8,"words":4096}"#,
    )
    .unwrap();
    let out = dir.join("out");
    let (c, _, e) =
        bitmac_timed(&["gen", "--case", case.to_str().unwrap(), "--out", out.to_str().unwrap()], 20);
    assert_eq!(c, 2, "{e}");
    assert!(e.contains("wclk_ps") && e.contains("rclk_ps") && e.lines().count() == 1, "{e}");
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Every FIFO variant (docs/cdc.md §16), with metastability on: the
    /// scoreboard is clean, every word is delivered in order, and the trace
    /// (v2) replays edge for edge. Registered read data delivers each word
    /// exactly one read edge after the FWFT configuration would.
    #[test]
    fn variants_are_clean_and_replay(
        wclk in 102u64..20000, rclk in 102u64..20000,
        depth_log in 1u32..=5, sync in 2u32..=4,
        wen in 1u32..=100, ren in 1u32..=100,
        seed in any::<u64>(), stages in 0u32..=3, fwft in any::<bool>(),
        af in proptest::option::of(0u32..64), ae in proptest::option::of(0u32..64),
        meta in any::<bool>(),
    ) {
        let d = 1u32 << depth_log;
        let v = Variant {
            read_stages: stages,
            fwft,
            almost_full: af.map(|x| 1 + x % d),
            almost_empty: ae.map(|x| x % d),
        };
        let mut s = spec(d as u64, sync, seed);
        if meta {
            s.meta = Some(Meta { setup_ps: 20, hold_ps: 10 });
        }
        let cfg = s.validate().unwrap().with_variant(v).unwrap();
        let clocks = ClockPair::new(wclk, rclk);
        // Replay offers words 0, 1, 2, ... (mod 2^W), so the transfer does too.
        let words: Vec<u64> = (0..80u64).map(|k| k & cfg.data_mask()).collect();
        let (rep, text) = cdc::transfer_trace(&cfg, &clocks, &words, &Pattern::Percent(wen), &Pattern::Percent(ren)).unwrap();
        prop_assert!(rep.report.verdict.clean, "{:?}", rep.report.verdict);
        prop_assert_eq!(&rep.popped, &words);
        if !meta {
            let lines = trace::parse(&text, "t", &cfg).unwrap();
            prop_assert_eq!(trace::replay(&lines, "t", &cfg).unwrap(), lines.len());
        }
        // Registered read data = FWFT delayed by one read edge, word for word
        // (same enables: the pop edges are the same, the delivery is next edge).
        if !fwft && !meta && ren == 100 {
            let f = cfg.with_variant(Variant { fwft: true, ..v }).unwrap();
            let a = cdc::transfer(&f, &clocks, &words, &Pattern::Percent(wen), &Pattern::Always).unwrap();
            let b = cdc::transfer(&cfg, &clocks, &words, &Pattern::Percent(wen), &Pattern::Always).unwrap();
            let later: Vec<u64> = a.pop_edge.iter().map(|e| e + 1).collect();
            prop_assert_eq!(b.pop_edge, later);
        }
    }
}

#[test]
fn size_reports_the_smallest_sync_and_depth() {
    use bitmac::cdc::mtbf::{system_log10, Timing};
    let base = [
        "cdc",
        "--size",
        "--wclk-ps",
        "1000",
        "--rclk-ps",
        "1370",
        "--data-width",
        "8",
        "--words",
        "600",
        "--burst",
        "16:24",
        "--mtbf-s",
        "1e12",
        "--tau-ps",
        "20",
        "--t0-s",
        "2e-11",
        "--json",
    ];
    let (c, o, e) = bitmac_timed(&base, 60);
    assert_eq!(c, 0, "{e}");
    let j: serde_json::Value = serde_json::from_str(&o).unwrap();
    let (s, d) = (j["sync"].as_u64().unwrap() as u32, j["depth"].as_u64().unwrap());
    // S: meets the target, S-1 does not (independently, from the MTBF formula).
    let t = |st: u32| Timing {
        tau_s: 20e-12,
        t0_s: 2e-11,
        stages: st,
        t_setup_s: 0.0,
        t_clk2q_s: 0.0,
        t_logic_s: 0.0,
    };
    let (fw, fr) = (1e12 / 1000.0, 1e12 / 1370.0);
    let sys = |st: u32| {
        system_log10(&[
            t(st).synchronizer("a", fr, fw * 16.0 / 40.0).unwrap(),
            t(st).synchronizer("b", fw, fr).unwrap(),
        ])
    };
    assert!(sys(s) >= 12.0 && (s == 2 || sys(s - 1) < 12.0), "S = {s}");
    // D: no write stall at D, some at D/2 (the same burst run through the library).
    let words: Vec<u64> = (0..600u64).map(|k| k & 255).collect();
    let ready: Vec<u64> = (0..600u64).map(|k| (k / 16) * 40 + k % 16).collect();
    let stalls = |depth: u64| {
        let cfg = FifoSpec { depth, sync: s, data_width: 8, ..Default::default() }.validate().unwrap();
        cdc::transfer(
            &cfg,
            &ClockPair::new(1000, 1370),
            &words,
            &Pattern::ReadyAt(ready.clone()),
            &Pattern::Always,
        )
        .unwrap()
        .write_stalls
    };
    assert!(d >= 4, "a 16-word burst at 1000/1370 ps needs more than 2 slots");
    assert_eq!(stalls(d), 0);
    assert!(stalls(d / 2) > 0);
    assert_eq!(j["tried"].as_array().unwrap().len() as u32, d.trailing_zeros());
    // Errors: one line naming the flag, exit 2.
    for (flag, val, msg) in [
        ("--mtbf-s", "1e300", "--mtbf-s: 1e300 is out of range"),
        ("--burst", "16", "--burst: 16 is out of range"),
        ("--words", "2000000", "--words: 2000000 is out of range"),
    ] {
        let mut a: Vec<&str> = base.to_vec();
        let i = a.iter().position(|x| *x == flag).unwrap();
        a[i + 1] = val;
        if flag == "--mtbf-s" {
            // make 16 flops insufficient: a 2 ps write clock
            a[3] = "4";
            a[5] = "5";
        }
        let (c, _, e) = bitmac_timed(&a, 60);
        assert_eq!(c, 2, "{flag}: {e}");
        assert!(e.contains(msg) && e.lines().count() == 1, "{e}");
    }
}

/// `bitmac cdc --plot DIR`: the four histograms as SVG and PNG, with the
/// bars of the run's own occupancy histogram (values that occur) as x ticks.
#[test]
fn cdc_plot_writes_the_histograms() {
    let dir = std::env::temp_dir().join(format!("bitmac-cdc-plot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.join("plots");
    let args = [
        "cdc",
        "--wclk-ps",
        "1000",
        "--rclk-ps",
        "1370",
        "--depth",
        "8",
        "--sync",
        "2",
        "--data-width",
        "8",
        "--words",
        "500",
        "--wen",
        "70",
        "--ren",
        "90",
        "--json",
        "--plot",
        d.to_str().unwrap(),
    ];
    let (code, out, err) = bitmac(&args);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let occ: Vec<u64> = serde_json::from_value(v["stats"]["occupancy"].clone()).unwrap();
    for name in ["occupancy", "lat_write_pop", "lat_write_rempty_clear", "lat_read_wfull_clear"] {
        let png = std::fs::read(d.join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}");
        let svg = std::fs::read_to_string(d.join(format!("{name}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("500 words"), "{name}");
    }
    // Same run, same bytes.
    let first = std::fs::read(d.join("occupancy.svg")).unwrap();
    let (code, _, _) = bitmac(&args);
    assert_eq!(code, 0);
    assert_eq!(std::fs::read(d.join("occupancy.svg")).unwrap(), first);
    let svg = String::from_utf8(first).unwrap();
    let max = occ.iter().rposition(|&c| c > 0).unwrap();
    assert!(svg.contains(&format!(">\n{max}\n</text>")), "the largest occupancy {max} is a tick");
    std::fs::remove_dir_all(&dir).ok();
}

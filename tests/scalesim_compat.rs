//! `bitmac scalesim --timing scalesim` against real SCALE-Sim v3 reports.
//!
//! The references under tests/scalesim/refs/ were produced by SCALE-Sim
//! 3.0.0 itself (tests/scalesim/gen_refs.py; provenance in
//! tests/scalesim/README.md): every topology in tests/scalesim/topologies/
//! x every config in tests/scalesim/configs/ (3 array shapes x 3 dataflows).
//! No Python runs here.

use bitmac::scalesim::{self, parse_compute_report, ScaleSimConfig, Topology};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scalesim")
}

/// (topology file, config file, reference file) for every committed reference.
fn cases() -> Vec<(PathBuf, PathBuf, PathBuf)> {
    cases_in("refs", "topologies", "configs")
}

fn cases_in(refs_dir: &str, topo_dir: &str, cfg_dir: &str) -> Vec<(PathBuf, PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut refs: Vec<_> =
        std::fs::read_dir(root().join(refs_dir)).unwrap().map(|e| e.unwrap().path()).collect();
    refs.sort();
    for r in refs {
        let stem = r.file_stem().unwrap().to_str().unwrap().to_string();
        if stem.contains('.') {
            // <stem>.bandwidth.csv / <stem>.detailed.csv: see `access_reports`.
            continue;
        }
        let (topo, cfg) = stem.split_once("__").expect("refs are named <topology>__<config>.csv");
        out.push((
            root().join(topo_dir).join(format!("{topo}.csv")),
            root().join(cfg_dir).join(format!("{cfg}.cfg")),
            r,
        ));
    }
    out
}

#[test]
fn reference_set_covers_the_done_when_matrix() {
    let cases = cases();
    let topos: std::collections::BTreeSet<_> = cases.iter().map(|c| c.0.clone()).collect();
    let cfgs: std::collections::BTreeSet<_> = cases.iter().map(|c| c.1.clone()).collect();
    assert!(topos.len() >= 10, "need at least 10 topologies, have {}", topos.len());
    assert!(cfgs.len() >= 9, "need 3 dataflows x 3 array shapes, have {} configs", cfgs.len());
    assert_eq!(cases.len(), topos.len() * cfgs.len(), "every topology x config pair has a reference");
    let mut shapes = std::collections::BTreeSet::new();
    let mut dfs = std::collections::BTreeSet::new();
    for c in &cfgs {
        let cfg = ScaleSimConfig::read(c).unwrap();
        shapes.insert((cfg.rows, cfg.cols));
        dfs.insert(cfg.dataflow);
    }
    assert_eq!(dfs.len(), 3);
    assert!(shapes.len() >= 3 && shapes.iter().any(|(r, c)| r != c), "shapes: {shapes:?}");
    let gemm = topos
        .iter()
        .filter(|t| Topology::read(t, Default::default()).unwrap().input_type == scalesim::InputType::Gemm)
        .count();
    assert!(gemm >= 2, "need GEMM-form topologies too");
}

/// Compare bitmac's `--timing scalesim` with every reference; returns the
/// number of layers compared, the number of BANDWIDTH/DETAILED_ACCESS
/// reference files compared (`<stem>.bandwidth.csv`, `<stem>.detailed.csv`
/// beside a COMPUTE_REPORT reference) and one message per differing layer
/// or file.
fn compare(cases: &[(PathBuf, PathBuf, PathBuf)]) -> (usize, usize, Vec<String>) {
    let mut layers = 0;
    let mut access_files = 0;
    let mut failures = Vec::new();
    for (topo_path, cfg_path, ref_path) in cases {
        let cfg = ScaleSimConfig::read(cfg_path).unwrap();
        let topo = Topology::read(topo_path, Default::default()).unwrap();
        // The memory system (BANDWIDTH_REPORT, DETAILED_ACCESS_REPORT; in
        // USER mode also the COMPUTE_REPORT's cycles).
        let acc = scalesim::topology_accesses(&cfg, &topo).unwrap();
        let reports = scalesim::scalesim_reports(&cfg, &topo, &acc).unwrap();
        let want_text = std::fs::read_to_string(ref_path).unwrap();
        let want = parse_compute_report(&want_text, &ref_path.display().to_string()).unwrap();
        assert_eq!(reports.len(), want.len(), "{}: layer count", ref_path.display());
        let before = failures.len();
        for (got, want) in reports.iter().zip(&want) {
            layers += 1;
            if got.timing.total_cycles != want.timing.total_cycles {
                failures.push(format!(
                    "{} layer {} ({}): Total Cycles {} != SCALE-Sim {}",
                    ref_path.display(),
                    want.layer_id,
                    got.name,
                    got.timing.total_cycles,
                    want.timing.total_cycles
                ));
            } else if got.timing != want.timing {
                failures.push(format!(
                    "{} layer {} ({}): {:?} != SCALE-Sim {:?}",
                    ref_path.display(),
                    want.layer_id,
                    got.name,
                    got.timing,
                    want.timing
                ));
            }
        }
        let got_text = scalesim::compute_report_csv(&reports);
        if failures.len() == before && got_text != want_text {
            failures.push(format!("{}: report text differs from SCALE-Sim's", ref_path.display()));
        }
        // BANDWIDTH_REPORT and DETAILED_ACCESS_REPORT, byte for byte, from
        // the memory model; in CALC mode the closed-form timing gave the
        // COMPUTE_REPORT, and the memory model's row must equal it.
        for (a, r) in acc.iter().zip(&reports) {
            if a.timing(&r.mapping) != r.timing {
                failures.push(format!(
                    "{}: layer {}: memory model {} cycles / {} stalls, timing model {} / {}",
                    ref_path.display(),
                    r.name,
                    a.total_cycles,
                    a.stall_cycles,
                    r.timing.total_cycles,
                    r.timing.stall_cycles
                ));
            }
        }
        for (suffix, got) in [
            ("bandwidth", scalesim::memory::bandwidth_report_csv(&acc)),
            ("detailed", scalesim::memory::detailed_access_report_csv(&acc)),
        ] {
            let path = ref_path.with_extension(format!("{suffix}.csv"));
            let Ok(want) = std::fs::read_to_string(&path) else { continue };
            access_files += 1;
            if let Some(msg) = first_difference(&got, &want) {
                failures.push(format!("{}: {msg}", path.display()));
            }
        }
    }
    (layers, access_files, failures)
}

/// `None` if equal, else the first differing row (layer) and column, named
/// by the reference's header.
fn first_difference(got: &str, want: &str) -> Option<String> {
    if got == want {
        return None;
    }
    let header: Vec<&str> = want.lines().next().unwrap_or("").split(", ").collect();
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        if g != w {
            for (c, (gc, wc)) in g.split(", ").zip(w.split(", ")).enumerate() {
                if gc != wc {
                    let col = header.get(c).copied().unwrap_or("?");
                    return Some(format!(
                        "line {} (layer {}), column {col:?}: {gc:?} != SCALE-Sim {wc:?}",
                        i + 1,
                        i.saturating_sub(1)
                    ));
                }
            }
            return Some(format!("line {}: {g:?} != SCALE-Sim {w:?}", i + 1));
        }
    }
    Some(format!("{} lines != SCALE-Sim {} lines", got.lines().count(), want.lines().count()))
}

/// Every layer's Total Cycles equals SCALE-Sim's, and so does every other
/// column: bitmac's report is byte-identical to SCALE-Sim's.
#[test]
fn total_cycles_and_every_column_match_scalesim() {
    let cases = cases();
    let (layers, access_files, failures) = compare(&cases);
    assert!(failures.is_empty(), "{} of {layers} layers differ:\n{}", failures.len(), failures.join("\n"));
    assert!(layers >= 400, "only {layers} layers compared");
    // Every COMPUTE_REPORT reference has its BANDWIDTH and DETAILED_ACCESS
    // siblings, and all were compared byte for byte.
    assert_eq!(access_files, 2 * cases.len(), "BANDWIDTH/DETAILED_ACCESS references compared");
}

/// USER bandwidth mode: every committed refs_user/ run (2 array shapes x 3
/// dataflows x DRAM bandwidths 1, 4, 16 on 13 small layers, and ResNet-shaped
/// conv layers at bandwidth 4; 1-2 kB SRAMs that stall), all three reports
/// byte for byte.
#[test]
fn user_bandwidth_mode_matches_scalesim() {
    let cases = cases_in("refs_user", "topologies", "configs_user");
    assert!(cases.len() >= 42, "{} USER references", cases.len());
    let topos: std::collections::BTreeSet<_> = cases.iter().map(|c| c.0.clone()).collect();
    let cfgs: std::collections::BTreeSet<_> = cases.iter().map(|c| c.1.clone()).collect();
    assert!(topos.len() >= 3 && cfgs.len() >= 18, "{} topologies, {} configs", topos.len(), cfgs.len());
    // The done-when matrix: >= 10 layers x 3 dataflows x 2 array shapes x
    // several bandwidths (the SRAMs too small: the stall check below).
    use std::collections::BTreeSet;
    let (mut dfs, mut shapes, mut bws) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for c in &cfgs {
        let cfg = ScaleSimConfig::read(c).unwrap();
        let scalesim::BandwidthMode::User(bw) = cfg.bandwidth_mode else {
            panic!("{}: not USER", c.display())
        };
        dfs.insert(cfg.dataflow);
        shapes.insert((cfg.rows, cfg.cols));
        bws.insert((bw.ifmap, bw.filter, bw.ofmap));
    }
    assert!(dfs.len() == 3 && shapes.len() >= 2 && bws.len() >= 3, "{dfs:?} {shapes:?} {bws:?}");
    let layers: usize =
        topos.iter().map(|t| Topology::read(t, Default::default()).unwrap().layers.len()).sum();
    assert!(layers >= 10, "{layers} distinct layers");
    let (layers, access_files, failures) = compare(&cases);
    assert!(failures.is_empty(), "{} of {layers} layers differ:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(access_files, 2 * cases.len(), "BANDWIDTH/DETAILED_ACCESS references compared");
    // The set stalls: the references are not CALC runs in disguise.
    let stalls: u64 = cases
        .iter()
        .map(|(_, _, r)| {
            let t = std::fs::read_to_string(r).unwrap();
            parse_compute_report(&t, "r").unwrap().iter().map(|row| row.timing.stall_cycles).sum::<u64>()
        })
        .sum();
    assert!(stalls > 0);
}

/// Real-size layers (AlexNet, ResNet-18, a ViT block) on 32x32 arrays.
#[test]
fn real_size_layers_match_scalesim() {
    let cases = cases_in("refs_large", "topologies_large", "configs");
    assert!(cases.len() >= 9, "{} large references", cases.len());
    // COMPUTE_REPORT for all; BANDWIDTH/DETAILED_ACCESS where committed
    // (AlexNet on os and is at least: tests/scalesim/README.md).
    let (layers, access_files, failures) = compare(&cases);
    assert!(failures.is_empty(), "{} of {layers} layers differ:\n{}", failures.len(), failures.join("\n"));
    assert!(access_files >= 4, "{access_files} BANDWIDTH/DETAILED_ACCESS references compared");
}

fn bitmac(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bitmac")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bitmac-scalesim-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn cli_writes_scalesims_compute_report() {
    let out = tmpdir("cli");
    let dir = out.join("run");
    let cfg = root().join("configs/a8x16_ws.cfg");
    let topo = root().join("topologies/mobilenet_mini.csv");
    let (code, stdout, stderr) = bitmac(&[
        "scalesim",
        "--config",
        cfg.to_str().unwrap(),
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--timing",
        "scalesim",
    ]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert!(stdout.contains("COMPUTE_REPORT.csv"), "{stdout}");
    let got = std::fs::read_to_string(dir.join("COMPUTE_REPORT.csv")).unwrap();
    let want = std::fs::read_to_string(root().join("refs/mobilenet_mini__a8x16_ws.csv")).unwrap();
    assert_eq!(got.lines().next(), want.lines().next(), "header");
    assert_eq!(got, want);
    for (file, suffix) in [("BANDWIDTH_REPORT.csv", "bandwidth"), ("DETAILED_ACCESS_REPORT.csv", "detailed")]
    {
        let got = std::fs::read_to_string(dir.join(file)).unwrap();
        let want =
            std::fs::read_to_string(root().join(format!("refs/mobilenet_mini__a8x16_ws.{suffix}.csv")))
                .unwrap();
        assert_eq!(got, want, "{file}");
    }
    // The energy report: a header, one row per layer, a Total row whose
    // Total pJ is the sum of the layers' (in layer order).
    let energy = std::fs::read_to_string(dir.join("ENERGY_REPORT.csv")).unwrap();
    let lines: Vec<&str> = energy.lines().collect();
    assert_eq!(lines.len(), want.lines().count() + 1, "{energy}");
    assert!(lines[0].starts_with("LayerID, Layer, MACs,") && lines[0].ends_with("Total pJ,"), "{}", lines[0]);
    let last_col = |l: &str| -> f64 { l.trim_end_matches(',').rsplit(", ").next().unwrap().parse().unwrap() };
    let sum: f64 = lines[1..lines.len() - 1].iter().map(|l| last_col(l)).sum();
    let total = last_col(lines[lines.len() - 1]);
    assert!(lines[lines.len() - 1].starts_with("Total, , "));
    assert!(total > 0.0 && (sum - total).abs() <= 1e-9 * total, "{sum} vs {total}");
    // No temporary file is left behind by the atomic writes.
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(
        names,
        ["BANDWIDTH_REPORT.csv", "COMPUTE_REPORT.csv", "DETAILED_ACCESS_REPORT.csv", "ENERGY_REPORT.csv"]
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn cli_user_bandwidth_mode_writes_scalesims_three_reports() {
    let d = tmpdir("user");
    let cfg = root().join("configs_user/u16x4_ws_bw1.cfg");
    let topo = root().join("topologies/gemm_small.csv");
    let out = d.join("out");
    let (code, _, stderr) = bitmac(&[
        "scalesim",
        "--config",
        cfg.to_str().unwrap(),
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--timing",
        "scalesim",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stderr, "", "USER mode is modelled: no warning");
    for (file, suffix) in [
        ("COMPUTE_REPORT.csv", ""),
        ("BANDWIDTH_REPORT.csv", ".bandwidth"),
        ("DETAILED_ACCESS_REPORT.csv", ".detailed"),
    ] {
        let got = std::fs::read_to_string(out.join(file)).unwrap();
        let want =
            std::fs::read_to_string(root().join(format!("refs_user/gemm_small__u16x4_ws_bw1{suffix}.csv")))
                .unwrap();
        assert_eq!(got, want, "{file}");
    }
    // The memory-work limit counts USER mode's prefetch matrices too: a
    // limit just below the estimate is refused before anything runs.
    let cfg_s = ScaleSimConfig::read(&cfg).unwrap();
    let topo_s = Topology::read(&topo, Default::default()).unwrap();
    let work = scalesim::topology_memory_work(&cfg_s, &topo_s);
    let calc = ScaleSimConfig { bandwidth_mode: scalesim::BandwidthMode::Calc, ..cfg_s.clone() };
    assert!(work > scalesim::topology_memory_work(&calc, &topo_s));
    let out2 = d.join("out2");
    let (code, _, stderr) = bitmac(&[
        "scalesim",
        "--config",
        cfg.to_str().unwrap(),
        "--topology",
        topo.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--timing",
        "scalesim",
        "--max-memory-work",
        &(work - 1).to_string(),
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("max-memory-work"), "{stderr}");
    assert!(!out2.exists());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_2() {
    let d = tmpdir("bad");
    let good_cfg = root().join("configs/a32x32_os.cfg");
    let good_topo = root().join("topologies/odd_shapes.csv");
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let malformed_cfg = write("bad.cfg", "[architecture_presets]\nArrayHeight 8\n");
    let zero_cfg = write("zero.cfg", "[architecture_presets]\nArrayHeight: 0\nArrayWidth: 4\nDataflow: os\n");
    let conv_header = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n";
    let bad_row = write("badrow.csv", &format!("{conv_header}a, 7, 7, 3, 3, 4, 8, 1,\nb, 7, 7, 3,\n"));
    let zero_dim = write("zero.csv", &format!("{conv_header}a, 7, 7, 3, 3, 4, 0, 1,\n"));
    let missing = d.join("missing.cfg");
    let out = d.join("out");
    let cases: [(&Path, &Path, &str); 5] = [
        (&missing, &good_topo, "missing.cfg"),
        (&malformed_cfg, &good_topo, "bad.cfg:2:"),
        (&zero_cfg, &good_topo, "zero.cfg:2: ArrayHeight"),
        (&good_cfg, &bad_row, "badrow.csv:3:"),
        (&good_cfg, &zero_dim, "zero.csv:2: Num Filter"),
    ];
    for (cfg, topo, needle) in cases {
        let (code, _, stderr) = bitmac(&[
            "scalesim",
            "--config",
            cfg.to_str().unwrap(),
            "--topology",
            topo.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--timing",
            "scalesim",
        ]);
        assert_eq!(code, 2, "{needle}: stderr {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
        assert!(!out.join("COMPUTE_REPORT.csv").exists());
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// `--timing bitmac` (the default) reports, for every layer, exactly the
/// cycle count the cycle-level engine gets by stepping every PE register on
/// that layer's GEMM (same dims, same array, same dataflow).
#[test]
fn bitmac_timing_equals_the_cycle_engine() {
    use bitmac::array::{Engine, Matrix};
    use bitmac::hw::HwConfig;
    use bitmac::numerics::IntFormat;
    use bitmac::requant::{quantize_multiplier, RequantRounding, Requantizer};
    let topo_path = root().join("topologies/odd_shapes.csv");
    for (cfg_name, rows, cols, df) in
        [("a8x16_ws", 8, 16, "ws"), ("a16x4_os", 16, 4, "os"), ("a16x4_is", 16, 4, "is")]
    {
        let d = tmpdir(&format!("bt-{cfg_name}"));
        let cfg = root().join(format!("configs/{cfg_name}.cfg"));
        let (code, _, stderr) = bitmac(&[
            "scalesim",
            "--config",
            cfg.to_str().unwrap(),
            "--topology",
            topo_path.to_str().unwrap(),
            "--out",
            d.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        let report = std::fs::read_to_string(d.join("COMPUTE_REPORT.csv")).unwrap();
        let rows_out = parse_compute_report(&report, "bitmac").unwrap();
        let topo = Topology::read(&topo_path, scalesim::InputType::Auto).unwrap();
        assert_eq!(rows_out.len(), topo.layers.len());
        let hw_json = format!(
            r#"{{"array": {{"rows": {rows}, "cols": {cols}, "dataflow": "{df}"}},
               "weights": {{"bits": 8, "signed": true}}, "activations": {{"bits": 8, "signed": true}},
               "accumulator": {{"bits": 32, "overflow": "WRAP"}},
               "psum": {{"drop_bits": 0, "rounding": "RND", "offset": 0}},
               "requant": {{"rounding": "double", "relu": false, "out_bits": 8, "out_signed": true}},
               "clock": {{"period_ps": 1000}}}}"#
        );
        let hw = HwConfig::from_json_str(&hw_json, "t").unwrap();
        let rq = Requantizer::new(
            quantize_multiplier(0.01).unwrap(),
            RequantRounding::Double,
            IntFormat::signed(8).unwrap(),
            false,
        )
        .unwrap();
        for (layer, row) in topo.layers.iter().zip(&rows_out) {
            let g = layer.gemm_dims();
            let (m, k, n) = (g.m as usize, g.k as usize, g.n as usize);
            let a = Matrix::new(m, k, (0..m * k).map(|i| (i % 7) as i32 - 3).collect()).unwrap();
            let w = Matrix::new(k, n, (0..k * n).map(|i| (i % 5) as i32 - 2).collect()).unwrap();
            let r = bitmac::layers::run_gemm(&hw, &a, &w, None, &rq, Engine::Cycle).unwrap();
            assert_eq!(row.timing.total_cycles, r.stats.cycles, "{cfg_name} layer {}", layer.name);
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

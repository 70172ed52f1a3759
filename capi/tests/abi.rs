//! The C ABI through its Rust symbols: the committed header is what
//! cbindgen generates now, results equal the library's, every bad input is a
//! status code plus the CLI's one-line message, and NULL pointers are
//! rejected (never dereferenced).

use bitmac_capi::*;
use std::ffi::{CStr, CString};
use std::ptr;

const HEADER_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include/bitmac.h");

#[test]
fn committed_header_is_up_to_date() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/bitmac.h"));
    if std::env::var_os("BITMAC_WRITE_HEADER").is_some() {
        std::fs::write(HEADER_PATH, generated).unwrap();
    }
    let committed = std::fs::read_to_string(HEADER_PATH).unwrap_or_default();
    assert!(
        committed == generated,
        "capi/include/bitmac.h is stale: regenerate with BITMAC_WRITE_HEADER=1 cargo test -p bitmac-capi --test abi"
    );
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(bitmac_last_error()).to_str().unwrap().to_string() }
}

fn hw(json: &str) -> *mut BitmacHw {
    let j = CString::new(json).unwrap();
    let mut h = ptr::null_mut();
    assert_eq!(
        unsafe { bitmac_hw_from_json(j.as_ptr(), ptr::null(), &mut h) },
        BITMAC_OK,
        "{}",
        last_error()
    );
    h
}

const HW: &str = r#"{"array": {"rows": 4, "cols": 3, "dataflow": "ws"},
  "weights": {"bits": 4, "signed": true}, "activations": {"bits": 4, "signed": true},
  "accumulator": {"bits": 8, "overflow": "SAT"},
  "psum": {"drop_bits": 2, "rounding": "RND_CONV", "offset": 0},
  "requant": {"rounding": "double", "relu": false, "out_bits": 8, "out_signed": true},
  "clock": {"period_ps": 1000}}"#;

#[test]
fn gemm_equals_the_library() {
    let h = hw(HW);
    let cfg = bitmac::hw::HwConfig::from_json_str(HW, "hw").unwrap();
    let (m, k, n) = (5usize, 7usize, 4usize);
    // Row 0 of A and column 0 of W all -8: 4 products of 64 overflow the 8-bit fold.
    let a: Vec<i64> = (0..m * k).map(|i| if i < k { -8 } else { ((i * 7 + 3) % 16) as i64 - 8 }).collect();
    let w: Vec<i64> =
        (0..k * n).map(|i| if i % n == 0 { -8 } else { ((i * 5 + 1) % 16) as i64 - 8 }).collect();
    let bias: Vec<i32> = vec![3, -100, 7, 0];
    for (stage, lib_stage) in
        [(BITMAC_STAGE_OUT, bitmac::gemm::Stage::Out), (BITMAC_STAGE_ACC, bitmac::gemm::Stage::Acc)]
    {
        for (engine, lib_engine) in [
            (BITMAC_ENGINE_FAST, bitmac::array::Engine::Fast),
            (BITMAC_ENGINE_CYCLE, bitmac::array::Engine::Cycle),
        ] {
            let mut out = vec![0i64; m * n];
            let mut st = BitmacGemmStats::default();
            let rc = unsafe {
                bitmac_gemm(
                    h,
                    a.as_ptr(),
                    m,
                    k,
                    w.as_ptr(),
                    n,
                    bias.as_ptr(),
                    stage,
                    engine,
                    0.37,
                    out.as_mut_ptr(),
                    &mut st,
                )
            };
            assert_eq!(rc, BITMAC_OK, "{}", last_error());
            let am = bitmac::array::Matrix::from_i64(m, k, &a, cfg.activations(), "A").unwrap();
            let wm = bitmac::array::Matrix::from_i64(k, n, &w, cfg.weights(), "W").unwrap();
            let req = bitmac::gemm::GemmRequest {
                a: &am,
                w: &wm,
                bias: Some(&bias),
                stage: lib_stage,
                engine: lib_engine,
                multiplier: Some(bitmac::requant::quantize_multiplier(0.37).unwrap()),
                trace: false,
                max_work: bitmac::limits::GEMM_MAX_WORK,
            };
            let want = bitmac::gemm::gemm(&cfg, &req).unwrap();
            assert_eq!(out, want.values);
            assert_eq!(st.cycles, want.summary.stats.cycles);
            assert_eq!(st.overflows, want.summary.stats.overflows());
            assert!(st.overflows > 0, "the 8-bit SAT accumulator overflows on this data");
        }
    }
    unsafe { bitmac_hw_free(h) };
}

#[test]
fn errors_are_codes_and_one_line_messages() {
    // A config error names the field, as `bitmac gemm --hw` does.
    let bad = HW.replace("\"bits\": 8, \"overflow\"", "\"bits\": 70, \"overflow\"");
    let j = CString::new(bad).unwrap();
    let mut h = ptr::null_mut();
    assert_eq!(unsafe { bitmac_hw_from_json(j.as_ptr(), ptr::null(), &mut h) }, BITMAC_E_INPUT);
    assert!(h.is_null(), "nothing is written on error");
    let e = last_error();
    assert!(e.contains("accumulator.bits: 70 is out of range (allowed: 2..=64)"), "{e}");
    assert!(!e.contains('\n'));

    let h = hw(HW);
    // An operand outside the 4-bit format.
    let a = [9i64; 4];
    let w = [1i64; 4];
    let mut out = [0i64; 4];
    let rc = unsafe {
        bitmac_gemm(
            h,
            a.as_ptr(),
            2,
            2,
            w.as_ptr(),
            2,
            ptr::null(),
            BITMAC_STAGE_ACC,
            BITMAC_ENGINE_FAST,
            0.0,
            out.as_mut_ptr(),
            ptr::null_mut(),
        )
    };
    assert_eq!(rc, BITMAC_E_INPUT);
    assert!(last_error().starts_with("A[0,0]: 9 is out of range"), "{}", last_error());
    assert_eq!(out, [0; 4], "nothing is written on error");
    // --stage out without a multiplier: the CLI's message.
    let a = [1i64; 4];
    let rc = unsafe {
        bitmac_gemm(
            h,
            a.as_ptr(),
            2,
            2,
            w.as_ptr(),
            2,
            ptr::null(),
            BITMAC_STAGE_OUT,
            BITMAC_ENGINE_FAST,
            0.0,
            out.as_mut_ptr(),
            ptr::null_mut(),
        )
    };
    assert_eq!(rc, BITMAC_E_INPUT);
    assert!(last_error().contains("--stage out needs the requant multiplier"), "{}", last_error());
    // NULL pointers.
    let rc = unsafe {
        bitmac_gemm(
            h,
            ptr::null(),
            2,
            2,
            w.as_ptr(),
            2,
            ptr::null(),
            0,
            0,
            1.0,
            out.as_mut_ptr(),
            ptr::null_mut(),
        )
    };
    assert_eq!(rc, BITMAC_E_NULL);
    assert_eq!(last_error(), "a: NULL pointer");
    // --set semantics, then re-validation.
    let p = CString::new("psum.rounding").unwrap();
    let v = CString::new("RND_SOMETHING").unwrap();
    assert_eq!(unsafe { bitmac_hw_set(h, p.as_ptr(), v.as_ptr()) }, BITMAC_E_INPUT);
    assert!(last_error().contains("psum.rounding: \"RND_SOMETHING\" is out of range"), "{}", last_error());
    let v = CString::new("TRN").unwrap();
    assert_eq!(unsafe { bitmac_hw_set(h, p.as_ptr(), v.as_ptr()) }, BITMAC_OK);
    let (mut r, mut c) = (0u32, 0u32);
    assert_eq!(unsafe { bitmac_hw_shape(h, &mut r, &mut c) }, BITMAC_OK);
    assert_eq!((r, c), (4, 3));
    unsafe { bitmac_hw_free(h) };
    unsafe { bitmac_hw_free(ptr::null_mut()) };
    let mut v = 0i64;
    assert_eq!(unsafe { bitmac_round(5, 1, 99, 0, &mut v, ptr::null_mut()) }, BITMAC_E_INPUT);
    assert!(
        last_error().starts_with("mode: 99 is out of range (allowed: 0 TRN, 1 TRN_ZERO"),
        "{}",
        last_error()
    );
    assert_eq!(unsafe { bitmac_round(5, 1, BITMAC_RND, 0, ptr::null_mut(), ptr::null_mut()) }, BITMAC_E_NULL);
}

#[test]
fn scalar_kernels_equal_the_library() {
    use bitmac::numerics::{IntFormat, Narrower, OverflowMode, RoundMode, Rounder};
    let modes = ["TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV", "RND_CONV_ODD"];
    for (mi, name) in modes.iter().enumerate() {
        let r = Rounder::new(3, name.parse::<RoundMode>().unwrap(), -1).unwrap();
        for x in -40i64..40 {
            let (mut v, mut p) = (0i64, -1i32);
            assert_eq!(unsafe { bitmac_round(x, 3, mi as i32, -1, &mut v, &mut p) }, BITMAC_OK);
            let (y, info) = r.round_info(x as i128);
            assert_eq!(v as i128, y, "{name} x={x}");
            assert_eq!(p, info.position as i32);
        }
    }
    for (mi, name) in ["WRAP", "SAT", "SAT_ZERO", "SAT_SYM"].iter().enumerate() {
        let nw = Narrower::new(IntFormat::new(true, 5).unwrap(), name.parse::<OverflowMode>().unwrap());
        for x in -70i64..70 {
            let (mut v, mut o) = (0i64, -1i32);
            assert_eq!(unsafe { bitmac_narrow(x, 5, 1, mi as i32, &mut v, &mut o) }, BITMAC_OK);
            let (y, ovf) = nw.narrow(x as i128);
            assert_eq!((v as i128, o != 0), (y, ovf), "{name} x={x}");
        }
    }
    let m = bitmac::requant::quantize_multiplier(0.0123).unwrap();
    for (ri, name) in ["double", "single"].iter().enumerate() {
        let rq = bitmac::requant::Requantizer::new(
            m,
            name.parse().unwrap(),
            IntFormat::new(true, 8).unwrap(),
            false,
        )
        .unwrap();
        for x in (-30000i64..30000).step_by(37) {
            let (mut v, mut c) = (0i64, -1i32);
            assert_eq!(unsafe { bitmac_requant(x, 0.0123, ri as i32, 8, 1, 0, &mut v, &mut c) }, BITMAC_OK);
            let (y, cl) = rq.apply(x as i128);
            assert_eq!((v, c != 0), (y, cl));
        }
    }
}

#[test]
fn fifo_steps_like_the_library() {
    let mut f = ptr::null_mut();
    assert_eq!(unsafe { bitmac_fifo_new(4, 2, 8, &mut f) }, BITMAC_OK);
    let mut lib = bitmac::cdc::StepFifo::new(4, 2, 8).unwrap();
    let mut word = 0u64;
    for i in 0..200u64 {
        let (wen, ren) = (i % 3 != 0, i % 5 < 2);
        let (mut pushed, mut popped, mut data) = (0i32, 0i32, 0u64);
        if i % 2 == 0 {
            assert_eq!(
                unsafe {
                    bitmac_fifo_both_edges(
                        f,
                        wen as i32,
                        word,
                        ren as i32,
                        &mut pushed,
                        &mut popped,
                        &mut data,
                    )
                },
                BITMAC_OK
            );
            let (w, r) = lib.both_edges(wen, word, ren).unwrap();
            assert_eq!((pushed != 0, popped != 0), (w.moved, r.moved));
        } else {
            assert_eq!(unsafe { bitmac_fifo_write_edge(f, wen as i32, word, &mut pushed) }, BITMAC_OK);
            assert_eq!(pushed != 0, lib.write_edge(wen, word).unwrap().moved);
        }
        if pushed != 0 {
            word = (word + 1) % 256;
        }
        let mut st = BitmacFifoState::default();
        assert_eq!(unsafe { bitmac_fifo_state(f, &mut st) }, BITMAC_OK);
        assert_eq!(
            (st.wfull != 0, st.rempty != 0, st.wptr, st.rptr),
            (lib.wfull(), lib.rempty(), lib.wptr(), lib.rptr())
        );
        assert_eq!(unsafe { bitmac_fifo_get(f, BITMAC_FIFO_OCCUPANCY) }, lib.occupancy() as i64);
    }
    let mut pushed = 0;
    assert_eq!(unsafe { bitmac_fifo_write_edge(f, 1, 256, &mut pushed) }, BITMAC_E_INPUT);
    assert_eq!(last_error(), "data: 256 is out of range (allowed: 0..=255 (8-bit word))");
    assert_eq!(unsafe { bitmac_fifo_get(f, 42) }, -1);
    unsafe { bitmac_fifo_free(f) };
    assert_eq!(unsafe { bitmac_fifo_new(3, 2, 8, &mut f) }, BITMAC_E_INPUT);
    assert!(last_error().starts_with("--depth: 3"), "{}", last_error());
}

#[test]
fn job_equals_gemm() {
    let h = hw(HW);
    let (m, k, n) = (3usize, 6usize, 2usize);
    let a: Vec<i64> = (0..m * k).map(|i| (i % 16) as i64 - 8).collect();
    let w: Vec<i64> = (0..k * n).map(|i| 7 - (i % 16) as i64).collect();
    let bias = [0i32, -77];
    let mut want = vec![0i64; m * n];
    let rc = unsafe {
        bitmac_gemm(
            h,
            a.as_ptr(),
            m,
            k,
            w.as_ptr(),
            n,
            bias.as_ptr(),
            BITMAC_STAGE_OUT,
            BITMAC_ENGINE_FAST,
            0.2,
            want.as_mut_ptr(),
            ptr::null_mut(),
        )
    };
    assert_eq!(rc, BITMAC_OK);
    let mut j = ptr::null_mut();
    assert_eq!(unsafe { bitmac_job_new(h, m as u32, k as u32, n as u32, &mut j) }, BITMAC_OK);
    unsafe { bitmac_hw_free(h) }; // the job owns a copy
    for (i, &v) in a.iter().enumerate() {
        assert_eq!(unsafe { bitmac_job_set_a(j, (i / k) as u32, (i % k) as u32, v) }, BITMAC_OK);
    }
    for (i, &v) in w.iter().enumerate() {
        assert_eq!(unsafe { bitmac_job_set_w(j, (i / n) as u32, (i % n) as u32, v) }, BITMAC_OK);
    }
    assert_eq!(unsafe { bitmac_job_set_bias(j, 1, -77) }, BITMAC_OK);
    assert_eq!(unsafe { bitmac_job_run(j, BITMAC_STAGE_OUT, BITMAC_ENGINE_CYCLE, 0.2) }, BITMAC_OK);
    for (i, &want_i) in want.iter().enumerate() {
        let mut v = 0;
        assert_eq!(unsafe { bitmac_job_get(j, (i / n) as u32, (i % n) as u32, &mut v) }, BITMAC_OK);
        assert_eq!(v, want_i);
    }
    assert_eq!(unsafe { bitmac_job_set_a(j, 3, 0, 1) }, BITMAC_E_INPUT);
    assert_eq!(last_error(), "A[3,0]: index out of range (shape 3x6)");
    assert_eq!(unsafe { bitmac_job_set_a(j, 0, 0, 100) }, BITMAC_OK);
    assert_eq!(unsafe { bitmac_job_run(j, BITMAC_STAGE_OUT, BITMAC_ENGINE_FAST, 0.2) }, BITMAC_E_INPUT);
    assert!(last_error().starts_with("A[0,0]: 100 is out of range"), "{}", last_error());
    unsafe { bitmac_job_free(j) };
}

#[test]
fn lsq_equals_the_library() {
    use bitmac::lsq::{LsqConfig, LsqKind, LsqVariant};
    let x: Vec<f32> = (0..300).map(|i| (i as f32 - 150.0) * 0.0173).chain([f32::INFINITY, -0.0]).collect();
    let g: Vec<f32> = (0..x.len()).map(|i| ((i * 7919) % 13) as f32 * 0.25 - 1.5).collect();
    let n = x.len();
    for (ki, kind) in [LsqKind::Act, LsqKind::Weight].into_iter().enumerate() {
        for (vi, variant) in [LsqVariant::Seed, LsqVariant::Paper].into_iter().enumerate() {
            for nbit in [2i64, 4, 8] {
                let lib = LsqConfig::from_boundary(kind, variant, nbit, 0.11).unwrap();
                let f = lib.forward(&x).unwrap();
                let (mut y, mut code) = (vec![0f32; n], vec![0i32; n]);
                let st = unsafe {
                    bitmac_lsq_forward(
                        ki as i32,
                        vi as i32,
                        nbit,
                        0.11,
                        x.as_ptr(),
                        n,
                        y.as_mut_ptr(),
                        code.as_mut_ptr(),
                    )
                };
                assert_eq!(st, BITMAC_OK, "{}", last_error());
                assert_eq!(
                    y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    f.y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
                assert_eq!(code, f.code);
                let b = lib.backward(&x, &g).unwrap();
                let (mut gx, mut gs) = (vec![0f32; n], 0f32);
                let st = unsafe {
                    bitmac_lsq_backward(
                        ki as i32,
                        vi as i32,
                        nbit,
                        0.11,
                        x.as_ptr(),
                        g.as_ptr(),
                        n,
                        gx.as_mut_ptr(),
                        &mut gs,
                    )
                };
                assert_eq!(st, BITMAC_OK, "{}", last_error());
                assert_eq!(
                    gx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    b.grad_x.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
                assert_eq!(gs.to_bits(), b.grad_s.to_bits());
            }
        }
    }
    // The paper's gradient scale differs from the seed's (so the variant really is passed).
    let (mut s0, mut s1) = (0f32, 0f32);
    unsafe {
        bitmac_lsq_backward(0, 0, 4, 0.11, x.as_ptr(), g.as_ptr(), 300, ptr::null_mut(), &mut s0);
        bitmac_lsq_backward(0, 1, 4, 0.11, x.as_ptr(), g.as_ptr(), 300, ptr::null_mut(), &mut s1);
    }
    assert_ne!(s0, s1);
    // Errors: the library's messages, nothing written.
    let mut y = [7f32; 1];
    assert_eq!(
        unsafe { bitmac_lsq_forward(2, 0, 4, 0.1, x.as_ptr(), 1, y.as_mut_ptr(), ptr::null_mut()) },
        BITMAC_E_INPUT
    );
    assert!(last_error().starts_with("kind: 2 is out of range"), "{}", last_error());
    assert_eq!(
        unsafe { bitmac_lsq_forward(0, 0, 17, 0.1, x.as_ptr(), 1, y.as_mut_ptr(), ptr::null_mut()) },
        BITMAC_E_INPUT
    );
    assert!(last_error().contains("17"), "{}", last_error());
    let nan = [f32::NAN];
    assert_eq!(
        unsafe { bitmac_lsq_forward(0, 0, 4, 0.1, nan.as_ptr(), 1, y.as_mut_ptr(), ptr::null_mut()) },
        BITMAC_E_INPUT
    );
    assert_eq!(y[0], 7.0);
    assert_eq!(
        unsafe { bitmac_lsq_forward(0, 0, 4, 0.1, ptr::null(), 1, y.as_mut_ptr(), ptr::null_mut()) },
        BITMAC_E_NULL
    );
    // x above the range gives xbin = Qp = 7 per element: 7 * f32::MAX is not finite.
    let (big, gbig) = ([1.0e30f32; 4], [f32::MAX; 4]);
    let mut gs = 0f32;
    let st = unsafe {
        bitmac_lsq_backward(0, 0, 4, 1.0, big.as_ptr(), gbig.as_ptr(), 4, ptr::null_mut(), &mut gs)
    };
    assert_eq!(st, BITMAC_E_INPUT);
    assert!(last_error().starts_with("grad_s: the f32 sum overflowed"), "{}", last_error());
}

#[test]
fn model_run_predicts_like_onnx_runtime() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/onnx/");
    let path = CString::new(format!("{root}qdq_cnn.onnx")).unwrap();
    let mut m = ptr::null_mut();
    assert_eq!(
        unsafe { bitmac_model_load(path.as_ptr(), ptr::null(), &mut m) },
        BITMAC_OK,
        "{}",
        last_error()
    );
    let (mut len, mut classes) = (0usize, 0usize);
    assert_eq!(unsafe { bitmac_model_shape(m, &mut len, &mut classes) }, BITMAC_OK);
    assert_eq!((len, classes), (64, 10));
    let x = bitmac::npy::read_f32(std::path::Path::new(&format!("{root}digits_test_x.npy"))).unwrap();
    let n = x.shape[0];
    let (mut logits, mut pred, mut st) = (vec![0i64; n * 10], vec![0u32; n], BitmacGemmStats::default());
    let s = unsafe {
        bitmac_model_run(
            m,
            ptr::null(),
            x.data.as_ptr(),
            n,
            BITMAC_ENGINE_FAST,
            logits.as_mut_ptr(),
            pred.as_mut_ptr(),
            &mut st,
        )
    };
    assert_eq!(s, BITMAC_OK, "{}", last_error());
    // ONNX Runtime's committed logits (ORT_DISABLE_ALL, models/onnx/ort_qdq.py).
    let r =
        bitmac::npy::read_f32(std::path::Path::new(&format!("{root}qdq_cnn.ref.disable_all.npy"))).unwrap();
    let ort: Vec<u32> = r.data.chunks(10).map(|row| bitmac::import::reference::argmax(row) as u32).collect();
    assert_eq!(pred, ort);
    for (s, p) in pred.iter().enumerate() {
        assert_eq!(bitmac::import::reference::argmax(&logits[s * 10..s * 10 + 10]) as u32, *p);
    }
    assert!(st.macs > 0 && st.cycles > 0);
    // Errors: one line, nothing written.
    let mut p1 = [99u32; 1];
    assert_eq!(
        unsafe {
            bitmac_model_run(
                m,
                ptr::null(),
                x.data.as_ptr(),
                1,
                5,
                ptr::null_mut(),
                p1.as_mut_ptr(),
                ptr::null_mut(),
            )
        },
        BITMAC_E_INPUT
    );
    assert!(last_error().starts_with("engine: 5"), "{}", last_error());
    assert_eq!(
        unsafe {
            bitmac_model_run(
                m,
                ptr::null(),
                ptr::null(),
                1,
                0,
                ptr::null_mut(),
                p1.as_mut_ptr(),
                ptr::null_mut(),
            )
        },
        BITMAC_E_NULL
    );
    assert_eq!(p1[0], 99);
    unsafe { bitmac_model_free(m) };
    let bad = CString::new(format!("{root}missing.onnx")).unwrap();
    assert_eq!(unsafe { bitmac_model_load(bad.as_ptr(), ptr::null(), &mut m) }, BITMAC_E_INPUT);
    assert!(last_error().contains("missing.onnx"), "{}", last_error());
    let json = CString::new(format!("{root}../cnn_w4a4.json")).unwrap();
    let rq = CString::new("double").unwrap();
    assert_eq!(unsafe { bitmac_model_load(json.as_ptr(), rq.as_ptr(), &mut m) }, BITMAC_E_INPUT);
    unsafe { bitmac_model_free(ptr::null_mut()) };
}

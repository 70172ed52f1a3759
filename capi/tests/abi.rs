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
            };
            let want = bitmac::gemm::gemm(&cfg, &req).unwrap();
            assert_eq!(out, want.values);
            assert_eq!(st.cycles, want.stats.cycles);
            assert_eq!(st.overflows, want.stats.overflows());
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
    for i in 0..m * k {
        assert_eq!(unsafe { bitmac_job_set_a(j, (i / k) as u32, (i % k) as u32, a[i]) }, BITMAC_OK);
    }
    for i in 0..k * n {
        assert_eq!(unsafe { bitmac_job_set_w(j, (i / n) as u32, (i % n) as u32, w[i]) }, BITMAC_OK);
    }
    assert_eq!(unsafe { bitmac_job_set_bias(j, 1, -77) }, BITMAC_OK);
    assert_eq!(unsafe { bitmac_job_run(j, BITMAC_STAGE_OUT, BITMAC_ENGINE_CYCLE, 0.2) }, BITMAC_OK);
    for i in 0..m * n {
        let mut v = 0;
        assert_eq!(unsafe { bitmac_job_get(j, (i / n) as u32, (i % n) as u32, &mut v) }, BITMAC_OK);
        assert_eq!(v, want[i]);
    }
    assert_eq!(unsafe { bitmac_job_set_a(j, 3, 0, 1) }, BITMAC_E_INPUT);
    assert_eq!(last_error(), "A[3,0]: index out of range (shape 3x6)");
    assert_eq!(unsafe { bitmac_job_set_a(j, 0, 0, 100) }, BITMAC_OK);
    assert_eq!(unsafe { bitmac_job_run(j, BITMAC_STAGE_OUT, BITMAC_ENGINE_FAST, 0.2) }, BITMAC_E_INPUT);
    assert!(last_error().starts_with("A[0,0]: 100 is out of range"), "{}", last_error());
    unsafe { bitmac_job_free(j) };
}

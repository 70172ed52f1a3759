//! `bitmac gemm`: one integer GEMM through the MAC array, `.npy` in and out.
//!
//! The requant multiplier of a bare GEMM is given either as the real
//! multiplier (`--multiplier M`) or as the three LSQ step sizes
//! (`--scale-w`, `--scale-a`, `--scale-out`, combined as TFLite does, see
//! `requant::step_multiplier`, the function every command uses); `--stage out` needs one of the two,
//! `--stage acc` needs neither. Output format, ReLU and rounding scheme come
//! from the hardware config's `requant` section.

use crate::array::Engine;
use crate::error::{Error, Result};
use crate::hw::HwConfig;
use crate::layers::run_gemm_chunked;
use crate::npy::{read_npy, write_typed, Dtype};
use crate::numerics::IntFormat;
use crate::requant::{quantize_multiplier, step_multiplier, Multiplier, Requantizer};
use std::path::{Path, PathBuf};

/// Arguments of `bitmac gemm` (boxed: the options are many, and the
/// subcommand enum stays small).
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    #[command(flatten)]
    pub opts: Box<GemmArgs>,
}

/// The options of `bitmac gemm`.
#[derive(clap::Args, Debug, Default)]
pub struct GemmArgs {
    /// Hardware config (JSON, see docs/hw-config.md).
    #[arg(long)]
    pub hw: PathBuf,
    /// Activations A, M x K integer .npy.
    #[arg(long)]
    pub a: PathBuf,
    /// Weights W, K x N integer .npy.
    #[arg(long)]
    pub w: PathBuf,
    /// Output .npy (M x N).
    #[arg(long)]
    pub out: PathBuf,
    /// What to write: `out` (requantized codes) or `acc` (accumulator
    /// values acc*2^d, before bias and requantization).
    #[arg(long, default_value = "out")]
    pub stage: String,
    /// Write statistics (JSON) here.
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// Write the per-cycle trace here (needs --engine cycle).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Bias, N int32 values (.npy, 1-D), added before requantization.
    #[arg(long)]
    pub bias: Option<PathBuf>,
    /// `fast` or `cycle`.
    #[arg(long, default_value = "fast")]
    pub engine: String,
    /// Real requant multiplier M (alternative to the three scales).
    #[arg(long)]
    pub multiplier: Option<f64>,
    /// Weight step size s_w.
    #[arg(long)]
    pub scale_w: Option<f32>,
    /// Activation step size s_a.
    #[arg(long)]
    pub scale_a: Option<f32>,
    /// Output step size s_out.
    #[arg(long)]
    pub scale_out: Option<f32>,
    /// Refuse a GEMM whose estimated work exceeds N MAC-steps (fast engine:
    /// M*K*N; cycle engine: cycles x rows x cols; plus FIFO edges with a
    /// cdc section). See docs/limits.md.
    #[arg(long, value_name = "N", default_value_t = crate::limits::GEMM_MAX_WORK)]
    pub max_work: u64,
}

/// An operand matrix straight from the file's native width (one bulk
/// read, one range-checked narrowing copy; no `i64` intermediate).
fn matrix(path: &Path, fmt: IntFormat, what: &str) -> Result<crate::array::Matrix> {
    let arr = crate::npy::read(path)?;
    if arr.shape.len() != 2 {
        return Err(Error::input(format!(
            "{}: {what} must be 2-D, got shape {:?}",
            path.display(),
            arr.shape
        )));
    }
    let (rows, cols) = (arr.shape[0], arr.shape[1]);
    let (lo, hi) = (fmt.min(), fmt.max());
    let data = arr.data.to_i32_in(lo as i64, hi as i64).map_err(|bad| match bad {
        Some((i, v)) => Error::field(
            format!("{what}[{},{}]", i / cols.max(1), i % cols.max(1)),
            v,
            format!("{lo}..={hi} ({fmt} multiplier input)"),
        )
        .context(path.display()),
        None => Error::input(format!(
            "{}: {what} has dtype {} (allowed: int8/16/32/64, uint8/16/32/64)",
            path.display(),
            arr.data.dtype_name()
        )),
    })?;
    crate::array::Matrix::new(rows, cols, data).map_err(|e| e.context(path.display()))
}

/// Rows per chunk of the streamed output stage (about 2^18 outputs).
fn chunk_rows(n: usize) -> usize {
    ((1usize << 18) / n.max(1)).max(1)
}

fn multiplier(args: &GemmArgs) -> Result<Option<Multiplier>> {
    let scales = [args.scale_w, args.scale_a, args.scale_out];
    let n_scales = scales.iter().filter(|s| s.is_some()).count();
    match (args.multiplier, n_scales) {
        (Some(_), n) if n > 0 => {
            Err(Error::input("give either --multiplier or --scale-w/--scale-a/--scale-out, not both"))
        }
        (Some(m), _) => Ok(Some(quantize_multiplier(m)?)),
        (None, 3) => {
            Ok(Some(step_multiplier(args.scale_w.unwrap(), args.scale_a.unwrap(), args.scale_out.unwrap())?))
        }
        (None, 0) => Ok(None),
        (None, _) => Err(Error::input("--scale-w, --scale-a and --scale-out must be given together")),
    }
}

/// Run `bitmac gemm`.
pub fn run(args: Args) -> Result<i32> {
    let args = *args.opts;
    let hw = HwConfig::load(&args.hw)?;
    let engine: Engine = args.engine.parse()?;
    let stage_acc = match args.stage.as_str() {
        "out" => false,
        "acc" => true,
        s => return Err(Error::field("--stage", format!("{s:?}"), "out, acc")),
    };
    if args.trace.is_some() && engine != Engine::Cycle {
        return Err(Error::input("--trace needs --engine cycle"));
    }
    let mult = multiplier(&args)?;
    let mult =
        match (mult, stage_acc) {
            (Some(m), _) => m,
            // The accumulators do not depend on the multiplier; any valid one.
            (None, true) => quantize_multiplier(1.0)?,
            (None, false) => return Err(Error::input(
                "--stage out needs the requant multiplier: --multiplier M or --scale-w/--scale-a/--scale-out",
            )),
        };
    let rq = hw.requant();
    let requant = Requantizer::new(mult, rq.rounding, rq.out, rq.relu)?;
    let a = matrix(&args.a, hw.activations(), "A")?;
    let w = matrix(&args.w, hw.weights(), "W")?;
    let bias = match &args.bias {
        None => None,
        Some(p) => {
            let arr = read_npy(p)?;
            if arr.shape.len() != 1 {
                return Err(Error::input(format!(
                    "{}: bias must be 1-D, got shape {:?}",
                    p.display(),
                    arr.shape
                )));
            }
            let mut v = Vec::with_capacity(arr.data.len());
            for (i, &x) in arr.data.iter().enumerate() {
                let x = i32::try_from(x).map_err(|_| {
                    Error::field(format!("{}: bias[{i}]", p.display()), x, "-2147483648..=2147483647 (int32)")
                })?;
                v.push(x);
            }
            Some(v)
        }
    };
    // Bounded work (docs/limits.md): estimated from the validated shapes
    // before anything runs.
    crate::limits::check_gemm(
        &hw,
        engine,
        (a.rows(), a.cols(), w.cols()),
        args.max_work,
        args.trace.is_some(),
    )?;
    let mut trace = args.trace.as_ref().map(|_| String::new());
    let (m, n) = (a.rows(), w.cols());
    let shape = [m, n];
    // The output dtype: `acc` stage int32 unless P + d > 32; `out` stage the
    // narrowest signed type holding the output format.
    let wide = hw.acc_bits() + hw.psum().drop_bits > 32;
    let f = rq.out;
    let out_dtype = match f.width() + u32::from(!f.is_signed()) {
        0..=8 => Dtype::I8,
        9..=16 => Dtype::I16,
        _ => Dtype::I32,
    };
    let mut out = OutBuf::new(
        if stage_acc {
            if wide {
                Dtype::I64
            } else {
                Dtype::I32
            }
        } else {
            out_dtype
        },
        m * n,
    )?;
    let (stats, cdc) = if hw.cdc().is_some() {
        // The array in its own clock domain: A crosses in, results cross out.
        let (r, c) =
            crate::sim::gemm_cdc(&hw, &a, &w, bias.as_deref(), &requant, engine, trace.as_mut(), stage_acc)?;
        if stage_acc {
            out.put_acc(0, n, &r.acc, r.drop_bits)?;
        } else {
            out.put(0, &r.out);
        }
        (r.stats, Some(c))
    } else {
        let d = hw.psum().drop_bits;
        let st = run_gemm_chunked(
            &hw,
            &a,
            &w,
            bias.as_deref(),
            &requant,
            engine,
            trace.as_mut(),
            chunk_rows(n),
            |c| {
                let at = c.row0 * n;
                if stage_acc {
                    out.put_acc(at, n, c.acc, d)
                } else {
                    out.put(at, c.out);
                    Ok(())
                }
            },
        )?;
        (st, None)
    };
    out.write(&args.out, &shape)?;
    if let Some(p) = &args.stats {
        crate::io::write_atomic(p, stats.to_json().as_bytes())?;
    }
    if let (Some(p), Some(t)) = (&args.trace, &trace) {
        crate::io::write_atomic(p, t.as_bytes())?;
    }
    eprintln!(
        "gemm {}x{}x{} on {}x{} {}: {} cycles, {} overflows, min accumulator {} bits",
        m,
        a.cols(),
        n,
        hw.rows(),
        hw.cols(),
        hw.dataflow(),
        stats.cycles,
        stats.overflows(),
        stats.min_acc_bits
    );
    if let (Some(c), Some(cc)) = (&cdc, hw.cdc()) {
        eprintln!("{}", c.summary(&cc, hw.clock_period_ps()));
    }
    Ok(0)
}

/// The output array in its native width, filled chunk by chunk and written
/// in bulk at the end (the values are in range by construction: output
/// codes lie in the output format, accumulators are checked).
enum OutBuf {
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

impl OutBuf {
    fn new(dtype: Dtype, len: usize) -> Result<OutBuf> {
        fn z<T: Clone + Default>(len: usize) -> Result<Vec<T>> {
            let mut v = Vec::new();
            v.try_reserve_exact(len)
                .map_err(|_| Error::input(format!("output of {len} elements does not fit in memory")))?;
            v.resize(len, T::default());
            Ok(v)
        }
        Ok(match dtype {
            Dtype::I8 => OutBuf::I8(z(len)?),
            Dtype::I16 => OutBuf::I16(z(len)?),
            Dtype::I32 => OutBuf::I32(z(len)?),
            _ => OutBuf::I64(z(len)?),
        })
    }

    /// Output codes at flat index `at` (each fits the buffer's type).
    fn put(&mut self, at: usize, codes: &[i64]) {
        match self {
            OutBuf::I8(v) => v[at..at + codes.len()].iter_mut().zip(codes).for_each(|(d, &c)| *d = c as i8),
            OutBuf::I16(v) => v[at..at + codes.len()].iter_mut().zip(codes).for_each(|(d, &c)| *d = c as i16),
            OutBuf::I32(v) => v[at..at + codes.len()].iter_mut().zip(codes).for_each(|(d, &c)| *d = c as i32),
            OutBuf::I64(v) => v[at..at + codes.len()].copy_from_slice(codes),
        }
    }

    /// Accumulator values `acc * 2^d` at flat index `at`, each checked to
    /// fit the buffer's type (int32 when P + d <= 32, else int64).
    fn put_acc(&mut self, at: usize, n: usize, acc: &[i64], d: u32) -> Result<()> {
        for (j, &x) in acc.iter().enumerate() {
            let v = (x as i128) << d;
            let i = at + j;
            let bad =
                || Error::field(format!("accumulator value [{},{}]", i / n, i % n), v, "int64 (.npy output)");
            match self {
                OutBuf::I32(o) => o[i] = i32::try_from(v).map_err(|_| bad())?,
                OutBuf::I64(o) => o[i] = i64::try_from(v).map_err(|_| bad())?,
                _ => return Err(Error::internal("accumulator output buffer must be int32 or int64")),
            }
        }
        Ok(())
    }

    fn write(&self, path: &Path, shape: &[usize]) -> Result<()> {
        match self {
            OutBuf::I8(v) => write_typed(path, shape, v),
            OutBuf::I16(v) => write_typed(path, shape, v),
            OutBuf::I32(v) => write_typed(path, shape, v),
            OutBuf::I64(v) => write_typed(path, shape, v),
        }
    }
}

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
use crate::layers::run_gemm_traced;
use crate::npy::{read_npy, write_npy, Dtype, NpyArray};
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

fn matrix(path: &Path, fmt: IntFormat, what: &str) -> Result<crate::array::Matrix> {
    let arr = read_npy(path)?;
    if arr.shape.len() != 2 {
        return Err(Error::input(format!(
            "{}: {what} must be 2-D, got shape {:?}",
            path.display(),
            arr.shape
        )));
    }
    crate::array::Matrix::from_i64(arr.shape[0], arr.shape[1], &arr.data, fmt, what)
        .map_err(|e| e.context(path.display()))
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
    let (res, cdc) = if hw.cdc().is_some() {
        // The array in its own clock domain: A crosses in, results cross out.
        let (r, c) =
            crate::sim::gemm_cdc(&hw, &a, &w, bias.as_deref(), &requant, engine, trace.as_mut(), stage_acc)?;
        (r, Some(c))
    } else {
        (run_gemm_traced(&hw, &a, &w, bias.as_deref(), &requant, engine, trace.as_mut())?, None)
    };
    let shape = vec![res.m, res.n];
    let arr = if stage_acc {
        let wide = hw.acc_bits() + res.drop_bits > 32;
        let dtype = if wide { Dtype::I64 } else { Dtype::I32 };
        let mut data = Vec::with_capacity(res.acc.len());
        for i in 0..res.acc.len() {
            let v = res.acc_value(i);
            data.push(i64::try_from(v).map_err(|_| {
                Error::field(
                    format!("accumulator value [{},{}]", i / res.n, i % res.n),
                    v,
                    "int64 (.npy output)",
                )
            })?);
        }
        NpyArray::new(shape, dtype, data)?
    } else {
        let f = rq.out;
        let w = f.width() + u32::from(!f.is_signed());
        let dtype = match w {
            0..=8 => Dtype::I8,
            9..=16 => Dtype::I16,
            _ => Dtype::I32,
        };
        NpyArray::new(shape, dtype, res.out)?
    };
    write_npy(&args.out, &arr)?;
    if let Some(p) = &args.stats {
        crate::io::write_atomic(p, res.stats.to_json().as_bytes())?;
    }
    if let (Some(p), Some(t)) = (&args.trace, &trace) {
        crate::io::write_atomic(p, t.as_bytes())?;
    }
    eprintln!(
        "gemm {}x{}x{} on {}x{} {}: {} cycles, {} overflows, min accumulator {} bits",
        res.m,
        a.cols(),
        res.n,
        hw.rows(),
        hw.cols(),
        hw.dataflow(),
        res.stats.cycles,
        res.stats.overflows(),
        res.stats.min_acc_bits
    );
    if let (Some(c), Some(cc)) = (&cdc, hw.cdc()) {
        eprintln!("{}", c.summary(&cc, hw.clock_period_ps()));
    }
    Ok(0)
}

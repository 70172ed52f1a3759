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
use crate::gemm::{GemmRequest, Stage};
use crate::hw::HwConfig;
use crate::npy::{read_npy, NpyStream};
use crate::numerics::IntFormat;
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
    /// Write the GEMM's energy breakdown (docs/energy.md) as JSON here.
    #[arg(long, value_name = "FILE")]
    pub energy: Option<PathBuf>,
    /// Write plots here: DIR/psum_residues.svg and .png, the histogram of
    /// the partial-sum residues around the rounding centre.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
}

/// An operand matrix straight from the file (`npy::read_codes`: decoded in
/// 1 MB chunks, range-checked, into the matrix's own storage, `i16` for
/// every format up to 15 unsigned / 16 signed bits; the file's values are
/// never held whole, and there is no `i64` or `i32` intermediate).
fn matrix(path: &Path, fmt: IntFormat, what: &str) -> Result<crate::array::Matrix> {
    let (lo, hi) = (fmt.min(), fmt.max());
    let arr = crate::npy::read_codes(path, lo as i64, hi as i64)?;
    if arr.shape.len() != 2 {
        return Err(Error::input(format!(
            "{}: {what} must be 2-D, got shape {:?}",
            path.display(),
            arr.shape
        )));
    }
    let (rows, cols) = (arr.shape[0], arr.shape[1]);
    let data = arr.codes.map_err(|bad| match bad {
        Some((i, v)) => Error::field(
            format!("{what}[{},{}]", i / cols.max(1), i % cols.max(1)),
            v,
            format!("{lo}..={hi} ({fmt} multiplier input)"),
        )
        .context(path.display()),
        None => Error::input(format!(
            "{}: {what} has dtype {} (allowed: int8/16/32/64, uint8/16/32/64)",
            path.display(),
            arr.dtype_name
        )),
    })?;
    crate::array::Matrix::from_storage(rows, cols, data).map_err(|e| e.context(path.display()))
}

/// Run `bitmac gemm`.
pub fn run(args: Args) -> Result<i32> {
    let args = *args.opts;
    let hw = HwConfig::load(&args.hw)?;
    let engine: Engine = args.engine.parse()?;
    let stage: Stage = args.stage.parse()?;
    if args.trace.is_some() && engine != Engine::Cycle {
        return Err(Error::input("--trace needs --engine cycle"));
    }
    let mult = crate::gemm::multiplier(args.multiplier, [args.scale_w, args.scale_a, args.scale_out])?;
    if mult.is_none() && stage == Stage::Out {
        // Checked before reading the matrices, as before the library split.
        return Err(Error::input(
            "--stage out needs the requant multiplier: --multiplier M or --scale-w/--scale-a/--scale-out",
        ));
    }
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
            Some(crate::gemm::bias_i32(&arr.data, &format!("{}: bias", p.display()))?)
        }
    };
    let req = GemmRequest {
        a: &a,
        w: &w,
        bias: bias.as_deref(),
        stage,
        engine,
        multiplier: mult,
        trace: args.trace.is_some(),
        // Bounded work (docs/limits.md): checked by `gemm::gemm` from the
        // validated shapes before anything runs.
        max_work: args.max_work,
    };
    // The output is streamed to the file chunk by chunk as the GEMM
    // produces it (never whole in memory); published only if all went well.
    let mut file = NpyStream::create(&args.out, &[a.rows(), w.cols()], crate::gemm::out_dtype(&hw, stage))?;
    let res = crate::gemm::gemm_stream(&hw, &req, |_, vals| file.put(vals))?;
    file.commit()?;
    if let Some(p) = &args.stats {
        let text = crate::gemm::stats_json(&res.stats, res.cdc.as_ref())?;
        crate::io::write_atomic(p, text.as_bytes())?;
    }
    if let Some(p) = &args.energy {
        let mut text = serde_json::to_string_pretty(&res.energy.to_json())
            .map_err(|e| Error::internal(format!("energy JSON: {e}")))?;
        text.push('\n');
        crate::io::write_atomic(p, text.as_bytes())?;
    }
    if let Some(dir) = &args.plot {
        let what = format!("{}x{}x{} GEMM, {} roundings", res.m, a.cols(), res.n, res.stats.psum_rounded);
        crate::plot::write(
            dir,
            "psum_residues",
            &crate::plot::residue_histogram(&res.stats.psum_residues, &what)?,
        )?;
    }
    if let (Some(p), Some(t)) = (&args.trace, &res.trace) {
        crate::io::write_atomic(p, t.as_bytes())?;
    }
    // Memory stalls (docs/memory.md) only when the model is on, so the
    // default line is unchanged.
    let stalls = res.stats.stall_cycles.map(|s| format!(" ({s} memory stall cycles)")).unwrap_or_default();
    eprintln!(
        "gemm {}x{}x{} on {}x{} {}: {} cycles{stalls}, {} overflows, min accumulator {} bits",
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
    if let Some(c) = &res.cdc_summary {
        eprintln!("{c}");
    }
    Ok(0)
}

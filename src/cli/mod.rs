//! The command-line interface: a thin layer that parses arguments, calls the
//! library and prints. One file per subcommand; each exposes `Args` and
//! `run(Args) -> Result<i32>` (the exit code on success paths, e.g. 1 when
//! a comparison mismatches).

use crate::error::{Error, Result};
use clap::{Parser, Subcommand};
use std::ffi::OsString;

mod cdc;
mod check;
mod dse;
mod gemm;
mod gen;
mod lsq;
mod mtbf;
mod run;
mod scalesim;

// `--set PATH=VALUE` semantics, shared with the Python package and the C ABI.
pub use run::apply_overrides;

/// bitmac: a bit-accurate, cycle-level simulator of a quantized neural-network
/// accelerator datapath (LSQ quantizers, a MAC array with finite accumulators
/// and partial-sum rounding, and a two-clock asynchronous FIFO).
#[derive(Parser, Debug)]
#[command(name = "bitmac", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a quantized model through the datapath and report (the default).
    Run(run::Args),
    /// Apply an LSQ quantizer (forward and backward) to a JSON input.
    Lsq(lsq::Args),
    /// Run one integer GEMM through the MAC array (.npy in and out).
    Gemm(gemm::Args),
    /// Read SCALE-Sim config and topology files and report compute cycles.
    Scalesim(scalesim::Args),
    /// Generate golden test vectors for a case.
    Gen(gen::Args),
    /// Regenerate golden test vectors and compare them byte for byte.
    Check(check::Args),
    /// Run a design-space sweep.
    Dse(dse::Args),
    /// Simulate the two-clock asynchronous FIFO (or replay a trace).
    Cdc(cdc::Args),
    /// Estimate synchronizer MTBF.
    Mtbf(mtbf::Args),
}

/// Parse `args` (including the program name) and run the chosen subcommand.
/// Returns the exit code; errors carry their own (see [`Error::exit_code`]).
pub fn try_main<I, T>(args: I) -> Result<i32>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    print!("{e}");
                    return Ok(0);
                }
                _ => {
                    // clap's message spans several lines (usage, tip); keep
                    // the first, which names the argument and the problem.
                    let text = e.to_string();
                    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
                    let first = first.trim_start_matches("error: ");
                    return Err(Error::input(format!("{first} (see bitmac --help)")));
                }
            }
        }
    };
    match cli.command {
        None => run::run(run::Args::default()),
        Some(Command::Run(a)) => run::run(a),
        Some(Command::Lsq(a)) => lsq::run(a),
        Some(Command::Gemm(a)) => gemm::run(a),
        Some(Command::Scalesim(a)) => scalesim::run(a),
        Some(Command::Gen(a)) => gen::run(a),
        Some(Command::Check(a)) => check::run(a),
        Some(Command::Dse(a)) => dse::run(a),
        Some(Command::Cdc(a)) => cdc::run(a),
        Some(Command::Mtbf(a)) => mtbf::run(a),
    }
}

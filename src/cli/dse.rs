//! `bitmac dse`: run a sweep (`--spec S --out D`) or merge shard outputs
//! (`dse merge DIR... --out D`).

use crate::dse::{self, RunOptions, Shard};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// Arguments of `bitmac dse`.
#[derive(clap::Args, Debug, Default)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// The sweep spec (JSON, see docs/dse.md).
    #[arg(long, value_name = "SWEEP.json")]
    spec: Option<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue an interrupted sweep in --out (skips finished points; the spec
    /// hash must match).
    #[arg(long)]
    resume: bool,
    /// Run only the i-th of n disjoint slices (0-based: 0/3, 1/3, 2/3).
    #[arg(long, value_name = "i/n")]
    shard: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Refuse a synthetic-workload sweep of more than N MACs in all
    /// (points x MACs per point). See docs/limits.md.
    #[arg(long, value_name = "N", default_value_t = crate::limits::DSE_MAX_WORK)]
    max_work: u64,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Combine shard output directories into the files a single run makes.
    Merge {
        /// Shard output directories (all n shards of one sweep).
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Output directory for the merged results.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Run `bitmac dse`.
pub fn run(args: Args) -> Result<i32> {
    let t0 = std::time::Instant::now();
    let (s, out) = match args.cmd {
        Some(Cmd::Merge { dirs, out }) => (dse::merge(&dirs, &out)?, out),
        None => {
            let spec = args.spec.ok_or_else(|| {
                Error::input("dse: --spec is required (allowed: --spec SWEEP.json --out DIR, or dse merge)")
            })?;
            let out = args.out.ok_or_else(|| Error::input("dse: --out is required (allowed: --out DIR)"))?;
            let shard = args.shard.as_deref().map(str::parse::<Shard>).transpose()?;
            if let Some(n) = args.threads {
                if !(1..=1024).contains(&n) {
                    return Err(Error::field("--threads", n, "1..=1024"));
                }
            }
            let opts = RunOptions {
                spec,
                out: out.clone(),
                resume: args.resume,
                shard,
                threads: args.threads,
                progress: true,
                max_work: args.max_work,
            };
            (dse::run(&opts)?, out)
        }
    };
    println!(
        "dse: {} points ({} ok, {} skipped), {} evaluated now, {} on the Pareto front; wrote {}/results.csv, pareto.csv, plot_*.svg in {:.1} s",
        s.points,
        s.ok,
        s.skipped,
        s.evaluated,
        s.pareto,
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(0)
}

//! `bitmac scalesim`: read SCALE-Sim v3 inputs, write its COMPUTE_REPORT.csv.

use crate::error::Result;
use crate::scalesim::{self, BandwidthMode, InputType, ScaleSimConfig, TimingModel, Topology};
use std::path::PathBuf;

/// Arguments of `bitmac scalesim`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// SCALE-Sim config file (.cfg): array size, dataflow, SRAM sizes.
    #[arg(long, value_name = "X.cfg")]
    pub config: PathBuf,
    /// SCALE-Sim topology CSV (conv or GEMM form).
    #[arg(long, value_name = "Y.csv")]
    pub topology: PathBuf,
    /// Output directory; DIR/COMPUTE_REPORT.csv is written atomically.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Cycle model: bitmac's own array timing, or SCALE-Sim v3's (exact).
    #[arg(long, value_enum, default_value_t = TimingModel::Bitmac)]
    pub timing: TimingModel,
    /// Topology form (SCALE-Sim's `-i`): auto detects GEMM by an `M` second header column.
    #[arg(long, value_enum, default_value_t = InputType::Auto)]
    pub input_type: InputType,
    /// Refuse a topology with more than N folds in all (both timing models
    /// step once per fold). See docs/limits.md.
    #[arg(long, value_name = "N", default_value_t = crate::limits::SCALESIM_MAX_FOLDS)]
    pub max_work: u64,
}

/// Run `bitmac scalesim`.
pub fn run(args: Args) -> Result<i32> {
    let cfg = ScaleSimConfig::read(&args.config)?;
    let topo = Topology::read(&args.topology, args.input_type)?;
    crate::limits::check(
        &format!("{}: layers on the {}x{} array", args.topology.display(), cfg.rows, cfg.cols),
        scalesim::topology_folds(&cfg, &topo),
        args.max_work,
        "folds",
        Some("raise the limit with --max-work N"),
    )?;
    let reports = match args.timing {
        TimingModel::Scalesim => {
            if cfg.bandwidth_mode == BandwidthMode::User {
                eprintln!(
                    "bitmac: warning: {}: InterfaceBandwidth USER is not modelled; reporting SCALE-Sim's CALC-mode \
                     numbers (Total Cycles match SCALE-Sim's only where its DRAM model adds no stall cycles; \
                     Total Cycles (incl. prefetch) differs)",
                    args.config.display()
                );
            }
            scalesim::run_topology(&cfg, &topo, &scalesim::scalesim_timing(&cfg))?
        }
        TimingModel::Bitmac => scalesim::run_topology(&cfg, &topo, &scalesim::bitmac_timing)?,
    };
    let path = args.out.join("COMPUTE_REPORT.csv");
    crate::io::write_atomic(&path, scalesim::compute_report_csv(&reports).as_bytes())?;
    let total: u64 = reports.iter().map(|r| r.timing.total_cycles).sum();
    println!(
        "bitmac scalesim: {} layers on {}x{} {}, {} total cycles (timing: {}) -> {}",
        reports.len(),
        cfg.rows,
        cfg.cols,
        cfg.dataflow,
        total,
        match args.timing {
            TimingModel::Scalesim => "scalesim",
            TimingModel::Bitmac => "bitmac",
        },
        path.display()
    );
    Ok(0)
}

//! `bitmac scalesim`: read SCALE-Sim v3 inputs, write its COMPUTE_REPORT.csv
//! (and with `--timing scalesim` its BANDWIDTH_REPORT.csv and
//! DETAILED_ACCESS_REPORT.csv), plus bitmac's ENERGY_REPORT.csv.

use crate::error::Result;
use crate::scalesim::{self, InputType, ScaleSimConfig, TimingModel, Topology};
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
    /// Refuse a topology whose memory model (SCALE-Sim's demand lines, one
    /// step per element) exceeds N steps. See docs/limits.md.
    #[arg(long, value_name = "N", default_value_t = crate::limits::SCALESIM_MAX_MEMORY_WORK)]
    pub max_memory_work: u64,
    /// bitmac hardware config (JSON) whose energy table and operand widths
    /// the energy report uses (default: src/energy.rs's table, 8-bit words,
    /// 32-bit accumulators). See docs/energy.md.
    #[arg(long, value_name = "HW.json")]
    pub hw: Option<PathBuf>,
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
    crate::limits::check(
        &format!("{}: memory model on the {}x{} array", args.topology.display(), cfg.rows, cfg.cols),
        scalesim::topology_memory_work(&cfg, &topo),
        args.max_memory_work,
        "demand elements and address words",
        Some("raise the limit with --max-memory-work N"),
    )?;
    let energy_setup = match &args.hw {
        None => scalesim::memory::EnergySetup::default(),
        Some(p) => {
            let hw = crate::hw::HwConfig::load(p)?;
            scalesim::memory::EnergySetup {
                table: hw.energy().clone(),
                act_bits: hw.activations().width(),
                weight_bits: hw.weights().width(),
                acc_bits: hw.acc_bits(),
                out_bits: hw.requant().out.width(),
            }
        }
    };
    let accesses = scalesim::topology_accesses(&cfg, &topo)?;
    let reports = match args.timing {
        TimingModel::Scalesim => scalesim::scalesim_reports(&cfg, &topo, &accesses)?,
        TimingModel::Bitmac => scalesim::run_topology(&cfg, &topo, &scalesim::bitmac_timing)?,
    };
    let energy: Vec<scalesim::memory::EnergyRow> = reports
        .iter()
        .zip(&accesses)
        .map(|(r, a)| scalesim::memory::EnergyRow {
            name: &r.name,
            macs: r.mapping.macs(),
            dram: [a.dram[0].count, a.dram[1].count, a.dram[2].count],
            energy: scalesim::memory::layer_energy(&cfg, &r.mapping, a, &energy_setup),
        })
        .collect();
    // Render everything first, then write: nothing is written on error.
    let mut files = vec![("COMPUTE_REPORT.csv", scalesim::compute_report_csv(&reports))];
    if args.timing == TimingModel::Scalesim {
        files.push(("BANDWIDTH_REPORT.csv", scalesim::memory::bandwidth_report_csv(&accesses)));
        files.push(("DETAILED_ACCESS_REPORT.csv", scalesim::memory::detailed_access_report_csv(&accesses)));
    }
    files.push(("ENERGY_REPORT.csv", scalesim::memory::energy_report_csv(&energy)));
    for (name, text) in &files {
        crate::io::write_atomic(&args.out.join(name), text.as_bytes())?;
    }
    let path = args.out.join("COMPUTE_REPORT.csv");
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

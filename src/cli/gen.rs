//! `bitmac gen`: write golden vectors for one or more cases.

use crate::error::{Error, Result};
use crate::vectors;
use std::path::PathBuf;

/// Arguments of `bitmac gen`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Hardware config JSON (needed by the kinds that run the datapath).
    #[arg(long, value_name = "HW.json")]
    pub hw: Option<PathBuf>,
    /// Case JSON; repeat for several cases.
    #[arg(long, value_name = "CASE.json", required = true)]
    pub case: Vec<PathBuf>,
    /// Output root: each case is written to OUT/<case name>/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Run `bitmac gen`.
pub fn run(args: Args) -> Result<i32> {
    let hw: Option<vectors::HwJson> = match &args.hw {
        Some(p) => Some(crate::io::read_json(p)?),
        None => None,
    };
    // Validate and generate every case before writing any (no partial runs
    // on a bad case file).
    let mut done = Vec::new();
    for c in &args.case {
        let spec = vectors::read_case(c)?;
        let g = vectors::generate_at(&spec, hw.as_ref(), vectors::BITMAC_VERSION, &args.out)
            .map_err(|e| e.context(c.display()))?;
        if done.iter().any(|d: &vectors::Generated| d.name == g.name) {
            return Err(Error::input(format!("{}: case name {:?} given twice", c.display(), g.name)));
        }
        done.push(g);
    }
    for g in &done {
        let dir = vectors::write_case(&args.out, g)?;
        println!("{}: {} files", dir.display(), g.files.len() + 1);
    }
    Ok(0)
}

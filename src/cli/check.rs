//! `bitmac check`: regenerate golden vectors and compare byte for byte.

use crate::error::Result;
use crate::vectors;
use std::path::PathBuf;

/// Arguments of `bitmac check`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Case directories, or directories to search for them (a directory
    /// holding manifest.json is a case; others are searched recursively).
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,
}

/// Run `bitmac check`: prints `N cases, M files match` (exit 0) or the first
/// mismatch (an `Error::mismatch`, exit 1).
pub fn run(args: Args) -> Result<i32> {
    let s = vectors::check_paths(&args.dirs)?;
    println!("{} cases, {} files match", s.cases, s.files);
    Ok(0)
}

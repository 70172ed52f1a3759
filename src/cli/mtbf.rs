//! `bitmac mtbf`.

use crate::error::Result;

/// Arguments of `bitmac mtbf`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac mtbf`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("mtbf"))
}

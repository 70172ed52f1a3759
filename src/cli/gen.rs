//! `bitmac gen`.

use crate::error::Result;

/// Arguments of `bitmac gen`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac gen`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("gen"))
}

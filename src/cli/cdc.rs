//! `bitmac cdc`.

use crate::error::Result;

/// Arguments of `bitmac cdc`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac cdc`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("cdc"))
}

//! `bitmac check`.

use crate::error::Result;

/// Arguments of `bitmac check`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac check`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("check"))
}

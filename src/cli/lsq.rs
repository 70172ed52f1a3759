//! `bitmac lsq`.

use crate::error::Result;

/// Arguments of `bitmac lsq`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac lsq`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("lsq"))
}

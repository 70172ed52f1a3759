//! `bitmac dse`.

use crate::error::Result;

/// Arguments of `bitmac dse`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac dse`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("dse"))
}

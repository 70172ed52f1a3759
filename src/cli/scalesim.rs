//! `bitmac scalesim`.

use crate::error::Result;

/// Arguments of `bitmac scalesim`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac scalesim`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("scalesim"))
}

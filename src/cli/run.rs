//! `bitmac run`, the default subcommand.

use crate::error::Result;

/// Arguments of `bitmac run`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac run`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("run"))
}

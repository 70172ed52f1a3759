//! `bitmac gemm`.

use crate::error::Result;

/// Arguments of `bitmac gemm`.
#[derive(clap::Args, Debug, Default)]
pub struct Args {}

/// Run `bitmac gemm`.
pub fn run(_args: Args) -> Result<i32> {
    Err(super::not_built("gemm"))
}

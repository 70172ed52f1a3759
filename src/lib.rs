//! bitmac: a bit-accurate, cycle-level simulator of a quantized
//! neural-network accelerator datapath.
//!
//! One module per hardware block; see `docs/ARCHITECTURE.md` for the code map
//! and the invariants. The CLI (`cli`) is a thin layer over this library.

#![forbid(unsafe_code)]

pub mod error;
pub mod io;
pub mod limits;

pub mod lsq;
pub mod numerics;

pub mod array;
pub mod hw;
pub mod layers;
pub mod npy;
pub mod requant;
pub mod scalesim;

pub mod cdc;

pub mod graph;
pub mod import;
pub mod model;
pub mod ppu;
pub mod sim;

pub mod dse;
pub mod vectors;

pub mod cli;
pub mod fuzzing;

pub use error::{Error, Result};

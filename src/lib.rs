//! bitmac: a bit-accurate, cycle-level simulator of a quantized
//! neural-network accelerator datapath.
//!
//! One module per hardware block; see `docs/ARCHITECTURE.md` for the code map
//! and the invariants. The CLI (`cli`) is a thin layer over this library.

// Unsafe code is denied everywhere except the SIMD dispatch wrappers of the
// array engines (`#[allow(unsafe_code)]`), whose only unsafe operation is
// calling a `#[target_feature]` function after the CPU check (`array::Simd`),
// and the fast engine's AVX-512 kernels (`array::fast`: the VNNI plain-GEMM
// and exact kernels, the saturating i16 kernel), whose only other unsafe
// operations are unaligned 64-byte loads and stores of slices of that
// length and one register-only masked vector add (`asm!` in `count16`).
#![deny(unsafe_code)]

pub mod error;
pub mod io;
pub mod limits;

pub mod lsq;
pub mod numerics;

pub mod array;
pub mod gemm;
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
pub mod energy;
pub mod memory;
pub mod plot;
pub mod vectors;

pub mod cli;
pub mod fuzzing;

pub use error::{Error, Result};

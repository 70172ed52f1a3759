//! Generates the C header from src/lib.rs with cbindgen into OUT_DIR. The
//! committed copy is include/bitmac.h; `tests/header.rs` fails when the two
//! differ (regenerate with `BITMAC_WRITE_HEADER=1 cargo test -p bitmac-capi
//! --test header`).

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let cfg = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("capi/cbindgen.toml");
    cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(cfg)
        .generate()
        .expect("cbindgen: generating bitmac.h")
        .write_to_file(format!("{out}/bitmac.h"));
}

//! The `bitmac` binary: a thin shell over [`bitmac::cli::try_main`].
//! All logic lives in the library; this file only maps the outcome to an
//! exit code (0 ok, 1 mismatch, 2 bad input, 3 internal error).

fn main() {
    let code = match bitmac::cli::try_main(std::env::args_os()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("bitmac: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code);
}

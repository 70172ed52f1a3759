//! cargo-fuzz target: `bitmac::fuzzing::scalesim_topology` must return (Ok or a one-line
//! error), never panic, hang or abort.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = bitmac::fuzzing::scalesim_topology(data) {
        assert!(!e.is_empty() && !e.contains('\n'), "not a one-line error: {e:?}");
    }
});

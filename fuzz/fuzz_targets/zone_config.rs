//! Arbitrary zone file text through the zone loader (and, when it loads, the snapshot and the
//! `check` warnings): errors are fine, panics are not.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, reason = "each target calls one of the harness's checks")]
#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = harness::check_zone_config(data) {
        panic!("{violation}");
    }
});

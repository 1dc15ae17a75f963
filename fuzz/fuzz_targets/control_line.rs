//! Arbitrary bytes as one control socket request line: never a panic, always a reply that
//! serializes to one JSON line the client parses back.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, reason = "each target calls one of the harness's checks")]
#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = harness::check_control_line(data) {
        panic!("{violation}");
    }
});

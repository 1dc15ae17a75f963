//! Arbitrary bytes as one control socket request line: never a panic, always a reply that
//! serializes to one JSON line the client parses back.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = failover_dns::fuzzing::check_control_line(data) {
        panic!("{violation}");
    }
});

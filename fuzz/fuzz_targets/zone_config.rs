//! Arbitrary zone file text through the zone loader (and, when it loads, the snapshot and the
//! `check` warnings): errors are fine, panics are not.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = failover_dns::fuzzing::check_zone_config(data) {
        panic!("{violation}");
    }
});

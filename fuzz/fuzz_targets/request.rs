//! Raw bytes as a DNS query, through the handler the server uses, over UDP and TCP: never a
//! panic; every reply parses, is a response, echoes the ID and fits the client's UDP limit.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, reason = "each target calls one of the harness's checks")]
#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = harness::check_request(data) {
        panic!("{violation}");
    }
});

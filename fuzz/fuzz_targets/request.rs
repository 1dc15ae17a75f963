//! Raw bytes as a DNS query, through the handler the server uses, over UDP and TCP: never a
//! panic; every reply parses, is a response, echoes the ID and fits the client's UDP limit.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = failover_dns::fuzzing::check_request(data) {
        panic!("{violation}");
    }
});

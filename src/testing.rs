//! What unit tests share (compiled for tests only): the zone the fuzz targets use (assets with
//! several names and IPv4 and IPv6 addresses, a virtual asset on a gateway, a subnet, a name
//! hidden by policy) and a handler over it without upstreams.

use std::path::Path;
use std::sync::OnceLock;

use crate::config::load_zone_sources;
use crate::dns::forward::ForwardSettings;
use crate::dns::handler::Handler;
use crate::dns::snapshot::{SharedSnapshot, Snapshot};
use crate::health::HealthTable;
use crate::location::SourceFile;
use crate::model::{Identity, ZoneData};

/// Whether a unit test that needs root may run: true as root; otherwise prints `skipped: needs
/// root (WHY)` and returns false, unless `FAILOVER_DNS_REQUIRE_ROOT_TESTS` is set (CI sets it),
/// where a skipped root test is a failure.
pub fn needs_root(why: &str) -> bool {
    if crate::os::current_uid() == Some(0) {
        return true;
    }
    assert!(
        std::env::var_os("FAILOVER_DNS_REQUIRE_ROOT_TESTS").is_none(),
        "needs root ({why}), and this run requires every root test to run"
    );
    eprintln!("skipped: needs root ({why})");
    false
}

/// The identity the sample settings (`failover-dns.toml`) give: unit tests evaluate the sample
/// policies for it.
pub fn demo_identity() -> Identity {
    Identity {
        user: Some("alice".to_string()),
        groups: vec!["engineering".to_string()],
        device: Some("alice-laptop".to_string()),
    }
}

/// The fuzz targets' zone (`fuzz/zone.toml`).
pub const TEST_ZONE: &str = include_str!("../fuzz/zone.toml");

/// [`TEST_ZONE`] loaded.
pub fn test_zone_data() -> ZoneData {
    let source = SourceFile::new(Path::new("zone.toml"), TEST_ZONE.to_string());
    load_zone_sources(&[source]).expect("the test zone loads")
}

/// One handler over [`TEST_ZONE`], without upstreams or cache, shared by the tests.
pub fn test_handler() -> &'static Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let forwarder = ForwardSettings {
            cache_size: 0,
            ..ForwardSettings::default()
        };
        Handler::standalone(
            SharedSnapshot::new(Snapshot::new(test_zone_data(), demo_identity())),
            HealthTable::new(),
            forwarder,
        )
    })
}

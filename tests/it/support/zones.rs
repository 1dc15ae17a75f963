//! The zone fixtures: where a test's zone files go ([`zone_dir`]), and the zone text many tests
//! share — the `app.internal` network in zone `internal`:
//!
//! - `app-host`, the primary asset, at 100.64.1.10 ([`APP_PRIMARY`]);
//! - `app-via-berlin`, a virtual asset at 10.10.0.10 ([`APP_VIA_BERLIN`]) on gateway
//!   `gw-berlin` (100.64.0.2).
//!
//! The pieces are macros, so that `concat!` (literals only) builds `const` zones from them:
//! [`internal_zone_toml!`], [`app_host_toml!`], [`app_via_berlin_toml!`] and
//! [`app_policy_toml!`]. The usual zones are `const`s: [`APP_ZONE`], [`APP_PRIMARY_ONLY_ZONE`],
//! [`APP_THREE_ENDPOINTS_ZONE`], [`APP_AND_DB_ZONE`]. A test whose zone differs on purpose keeps it in its own file and says
//! why.

use tempfile::TempDir;

/// Writes `files` (name, contents) into a fresh temporary directory's `zones/`.
pub fn zone_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let zones = dir.path().join("zones");
    std::fs::create_dir(&zones).expect("create the zones directory");
    for (name, text) in files {
        std::fs::write(zones.join(name), text).expect("write a zone file");
    }
    dir
}

/// The `[[zone]]` table of `internal`, with no TTL or SOA of its own (a test that wants one adds
/// `ttl = ...` right after it).
macro_rules! internal_zone_toml {
    () => {
        "[[zone]]\norigin = \"internal\"\n"
    };
}
pub(crate) use internal_zone_toml;

/// `app.internal`'s primary asset `app-host` (100.64.1.10), alone.
macro_rules! app_host_toml {
    () => {
        r#"[[asset]]
id = "app-host"
kind = "primary"
addresses = ["100.64.1.10"]
names = ["app.internal"]
"#
    };
}
pub(crate) use app_host_toml;

/// The `app.internal` network: gateway `gw-berlin` (100.64.0.2), the primary asset `app-host`
/// (100.64.1.10) and the virtual asset `app-via-berlin` (10.10.0.10) on the gateway. No zone
/// table and no policy.
macro_rules! app_via_berlin_toml {
    () => {
        concat!(
            r#"[[asset]]
id = "gw-berlin"
kind = "gateway"
addresses = ["100.64.0.2"]

"#,
            $crate::support::zones::app_host_toml!(),
            r#"
[[virtual_asset]]
id = "app-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.10"]
names = ["app.internal"]
"#
        )
    };
}
pub(crate) use app_via_berlin_toml;

/// The usual policy: everyone may use both endpoints of `app.internal`.
macro_rules! app_policy_toml {
    () => {
        r#"[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-berlin"]
"#
    };
}
pub(crate) use app_policy_toml;

/// `[[zone]]` of `internal` and nothing in it.
pub const INTERNAL_ZONE: &str = internal_zone_toml!();

/// The `app.internal` network in zone `internal`, both endpoints granted to everyone. The
/// primary's address is on line 12 (`reload` cuts the file there).
pub const APP_ZONE: &str = concat!(
    internal_zone_toml!(),
    "\n",
    app_via_berlin_toml!(),
    "\n",
    app_policy_toml!()
);

/// `app.internal` on its primary asset only, granted to everyone: one address, for tests about
/// something else than the order of several.
pub const APP_PRIMARY_ONLY_ZONE: &str = concat!(
    internal_zone_toml!(),
    "\n",
    app_host_toml!(),
    r#"
[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host"]
"#
);

/// The network with a TTL of 5 and a third endpoint, the virtual asset `app-via-munich`
/// ([`APP_VIA_MUNICH`]) on gateway `gw-munich` (100.64.0.3); one policy grants all three. Three
/// endpoints for reports to reorder and rotate (`failover`, `fast_path`, `bench_tools`).
pub const APP_THREE_ENDPOINTS_ZONE: &str = concat!(
    internal_zone_toml!(),
    "ttl = 5\n\n",
    app_via_berlin_toml!(),
    r#"
[[asset]]
id = "gw-munich"
kind = "gateway"
addresses = ["100.64.0.3"]

[[virtual_asset]]
id = "app-via-munich"
gateway = "gw-munich"
addresses = ["172.20.0.10"]
names = ["app.internal"]

[[policy]]
id = "app"
sources = ["*"]
destinations = ["app-host", "app-via-berlin", "app-via-munich"]
"#
);

/// `app.internal` (the network), and `db.internal`: the same shape with other addresses, so one
/// of them can be removed while the other stays. One policy grants all four endpoints.
pub const APP_AND_DB_ZONE: &str = concat!(
    internal_zone_toml!(),
    "\n",
    app_via_berlin_toml!(),
    r#"
[[asset]]
id = "db-host"
kind = "primary"
addresses = ["100.64.2.10"]
names = ["db.internal"]

[[virtual_asset]]
id = "db-via-berlin"
gateway = "gw-berlin"
addresses = ["10.10.0.20"]
names = ["db.internal"]

[[policy]]
id = "everyone"
sources = ["*"]
destinations = ["app-host", "app-via-berlin", "db-host", "db-via-berlin"]
"#
);

/// `app.internal`'s primary asset, `app-host`.
pub const APP_PRIMARY: &str = "100.64.1.10";
/// `app.internal`'s virtual asset on gateway `gw-berlin`, `app-via-berlin`.
pub const APP_VIA_BERLIN: &str = "10.10.0.10";
/// `app.internal`'s virtual asset on gateway `gw-munich`, `app-via-munich`
/// ([`APP_THREE_ENDPOINTS_ZONE`]).
pub const APP_VIA_MUNICH: &str = "172.20.0.10";
/// `db.internal`'s primary asset, `db-host` ([`APP_AND_DB_ZONE`]).
pub const DB_PRIMARY: &str = "100.64.2.10";
/// `db.internal`'s virtual asset on gateway `gw-berlin`, `db-via-berlin` ([`APP_AND_DB_ZONE`]).
pub const DB_VIA_BERLIN: &str = "10.10.0.20";

/// The network is the text written out here in full, and the primary's address is on line 12 of
/// [`APP_ZONE`], where `reload` cuts it.
#[test]
fn the_shared_zones_are_the_texts_the_tests_expect() {
    assert_eq!(
        app_via_berlin_toml!(),
        "[[asset]]\nid = \"gw-berlin\"\nkind = \"gateway\"\naddresses = [\"100.64.0.2\"]\n\n\
         [[asset]]\nid = \"app-host\"\nkind = \"primary\"\naddresses = [\"100.64.1.10\"]\n\
         names = [\"app.internal\"]\n\n\
         [[virtual_asset]]\nid = \"app-via-berlin\"\ngateway = \"gw-berlin\"\n\
         addresses = [\"10.10.0.10\"]\nnames = [\"app.internal\"]\n"
    );
    assert_eq!(
        APP_ZONE.lines().nth(11),
        Some("addresses = [\"100.64.1.10\"]")
    );
}

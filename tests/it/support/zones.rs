//! The zone fixtures: where a test's zone files go, and the zone text that many tests share.

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

/// `app.internal`: a primary and a virtual asset; `db.internal`: the same shape with other
/// addresses, so one of them can be removed while the other stays.
pub const APP_AND_DB_ZONE: &str = concat!(
    r#"[[zone]]
origin = "internal"

"#,
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
/// `db.internal`'s primary asset, `db-host` ([`APP_AND_DB_ZONE`]).
pub const DB_PRIMARY: &str = "100.64.2.10";
/// `db.internal`'s virtual asset on gateway `gw-berlin`, `db-via-berlin` ([`APP_AND_DB_ZONE`]).
pub const DB_VIA_BERLIN: &str = "10.10.0.20";

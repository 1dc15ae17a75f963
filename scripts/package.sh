#!/usr/bin/env bash
# Builds the Debian package target/debian/failover-dns_VERSION-1_ARCH.deb (under the real target
# directory when CARGO_TARGET_DIR is set) and prints its path last. What goes where is
# [package.metadata.deb] in Cargo.toml; this script installs cargo-deb when it is missing, builds
# the release binary, has its hidden generate-docs command write the man pages and completions,
# packs, and adds the empty /etc/failover-dns/zones/ (cargo-deb packs files only).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "package: installing cargo-deb" >&2
  cargo install cargo-deb --locked --quiet
fi

target_dir=$(cargo metadata --locked --no-deps --format-version 1 |
  grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[ -n "$target_dir" ] || { echo "package: cannot find the target directory" >&2; exit 1; }

cargo build --locked --release -p failover-dns
"$target_dir/release/failover-dns" generate-docs "$target_dir/release/docs" >/dev/null
gzip -9 --no-name --force "$target_dir"/release/docs/man/*.1

deb=$(cargo deb --locked --no-build --strip -p failover-dns | tail -n 1)
[ -f "$deb" ] || { echo "package: cargo deb made no package (said: $deb)" >&2; exit 1; }

# The empty zones directory the settings point at: unpack, add it, pack again (same contents,
# same control files, owned by root).
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
dpkg-deb --raw-extract "$deb" "$staging/root"
install -d -m 755 "$staging/root/etc/failover-dns/zones"
dpkg-deb --root-owner-group -Zxz --build "$staging/root" "$deb" >/dev/null
echo "$deb"

#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to the server with. Idempotent: does nothing
# when every tool is already there. Needs root (or sudo) only when something is missing.
set -euo pipefail

# tool → Debian package
declare -A packages=(
  [dig]=bind9-dnsutils    # queries in every DNS test
  [unbound]=unbound       # the real upstream resolver forwarding tests start on loopback
  [openssl]=openssl       # certificates for the DNS-over-TLS upstream tests
  [curl]=curl             # the end-to-end failover tests
  [python3]=python3       # a second real client (urllib) and HTTP servers in failover tests
  [nft]=nftables          # dead paths (drop rules) in the tests' network namespaces
  [ip]=iproute2           # the tests' network namespaces
  [ss]=iproute2
  [unshare]=util-linux    # a private /etc/resolv.conf for C-library resolver tests
  [mount]=mount
  [getent]=libc-bin
  [man]=man-db            # the package's man pages render (man -l)
  [dpkg-shlibdeps]=dpkg-dev  # cargo-deb's Depends: what the binary links
)

missing=()
for tool in "${!packages[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${packages[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing test dependencies: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

# The tests start unbound themselves on loopback ports. Installing the package must not start
# the system service (on port 53, fetching root trust anchors from the internet): deny service
# starts for the duration of the install unless the machine already has a policy.
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  added_policy=yes
fi
cleanup() { [ -z "$added_policy" ] || $sudo rm -f "$policy"; }
trap cleanup EXIT

$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

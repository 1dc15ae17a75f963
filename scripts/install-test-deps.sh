#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to the server with. Idempotent: does nothing
# when every tool is already there. Needs root (or sudo) only when something is missing.
set -euo pipefail

# tool → Debian package
declare -A packages=(
  [dig]=bind9-dnsutils
  [curl]=curl
  [unshare]=util-linux
  [getent]=libc-bin
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
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

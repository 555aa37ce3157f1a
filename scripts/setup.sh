#!/usr/bin/env bash
# Installs what building talos-csr-signer needs on a fresh Debian/Ubuntu machine:
# cmake and a C++ compiler for gRPC core, libssl-dev for the system OpenSSL it
# links, pkg-config. Does nothing when everything is already there.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)

[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

command -v cargo >/dev/null 2>&1 || {
  echo "setup: cargo not found; install Rust (https://rustup.rs), 1.85 or newer" >&2
  exit 1
}

#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests that start
# the real binary on 127.0.0.1 and talk gRPC over TLS to it. One profile
# (release), so gRPC core is built once. Builds the OpenSSL FIPS provider the
# FIPS tests use on first run (scripts/fips-provider.sh, cached), and the
# Debian 12 root file system the systemd tests boot (scripts/systemd-rootfs.sh,
# cached).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"
scripts/setup.sh
# The hostile-input tests speak raw HTTP/2 through Python's h2 package.
python3 -c 'import h2' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check "h2==4.1.0"
# The Go compatibility tests use Go's crypto/tls and crypto/x509 (Talos's stack).
command -v go >/dev/null 2>&1 || apt_install golang-go
# The FIPS tests run on a real FIPS provider, built once and cached.
TALOS_FIPS_DIR="$(scripts/fips-provider.sh)"
export TALOS_FIPS_DIR
# The systemd tests boot Debian 12 with systemd-nspawn; its root file system
# is made once and cached (empty where it cannot be made: the test says why).
TALOS_SYSTEMD_ROOTFS="$(scripts/systemd-rootfs.sh)"
export TALOS_SYSTEMD_ROOTFS
exec cargo test --release "$@"

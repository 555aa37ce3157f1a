#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests that start
# the real binary on 127.0.0.1 and talk gRPC over TLS to it. One profile
# (release, so gRPC core is built once), with our own crate built with debug
# assertions and overflow checks on (a per-package setting: only our crate is
# rebuilt for it, and the shipped build stays as it is). Installs what the
# tests use: Python's h2, Go, kubernetes-validate; builds the OpenSSL FIPS
# provider the FIPS tests use (scripts/fips-provider.sh, cached) and the
# Debian 12 root file system the systemd tests boot
# (scripts/systemd-rootfs.sh, cached), and as root the container image for
# linux/amd64 and linux/arm64 (scripts/image.sh build) and qemu-user, which
# runs the arm64 binary from it.
#
# Tests that need what a machine may lack (root for namespaces, podman and
# systemd-nspawn, Talos's config validator) are marked ignored, with the
# reason; they run here (--include-ignored) when everything they need is
# there, and cargo lists them as ignored otherwise. Under CI
# (TALOS_CSR_SIGNER_CI=1) a missing prerequisite is a failure.
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
ensure_kubernetes_validate
# The FIPS tests run on a real FIPS provider, built once and cached.
TALOS_FIPS_DIR="$(scripts/fips-provider.sh)"
export TALOS_FIPS_DIR
# The systemd tests boot Debian 12 with systemd-nspawn; its root file system
# is made once and cached (empty where it cannot be made).
TALOS_SYSTEMD_ROOTFS="$(scripts/systemd-rootfs.sh)"
export TALOS_SYSTEMD_ROOTFS

# The container tests run the image built from the Dockerfile, with podman in
# our own image store (scripts/image.sh; the first build compiles gRPC core in
# the container once per platform, 15 minutes or more each). The arm64
# binary runs under qemu-user. Root only, as podman is here.
if [ "$(id -u)" -eq 0 ]; then
  command -v qemu-aarch64-static >/dev/null 2>&1 || apt_install qemu-user-static
  scripts/image.sh build
  podman_here
  TALOS_IMAGE="localhost/talos-csr-signer:dev"
  export TALOS_IMAGE
fi

missing=()
[ "$(id -u)" -eq 0 ] || missing+=("root")
[ -n "$TALOS_SYSTEMD_ROOTFS" ] || missing+=("a Debian 12 root file system (scripts/systemd-rootfs.sh)")
# Talos's machine-config validator: TALOS_CONFIG_VALIDATE, else the copy
# beside this checkout or in this workplace's shared tools (as the tests look).
for v in "${TALOS_CONFIG_VALIDATE:-}" "$ROOT/../shared/tools/talos-config-validate/talos-config-validate" \
  /work/shared/tools/talos-config-validate/talos-config-validate; do
  if [ -n "$v" ] && [ -x "$v" ]; then
    TALOS_CONFIG_VALIDATE="$v"
    export TALOS_CONFIG_VALIDATE
    break
  fi
done
[ -n "${TALOS_CONFIG_VALIDATE:-}" ] || missing+=("Talos's config validator (TALOS_CONFIG_VALIDATE)")
ignored=()
if [ ${#missing[@]} -eq 0 ]; then
  ignored=(--include-ignored)
elif [ -n "${TALOS_CSR_SIGNER_CI:-}" ]; then
  die "CI runs every test, but this machine lacks: ${missing[*]}"
else
  echo "test: the tests marked ignored do not run here; missing: ${missing[*]}" >&2
fi

# Arguments before a `--` go to cargo, after it to the test binaries. Every
# test binary runs even when one fails, so a report names every failure.
cargo_args=() test_args=() after=
for a in "$@"; do
  if [ -z "$after" ] && [ "$a" = "--" ]; then after=1; continue; fi
  if [ -z "$after" ]; then cargo_args+=("$a"); else test_args+=("$a"); fi
done
cargo test --release --features loadgen --no-fail-fast \
  --config 'profile.release.package.talos-csr-signer.debug-assertions=true' \
  --config 'profile.release.package.talos-csr-signer.overflow-checks=true' \
  "${cargo_args[@]}" -- "${ignored[@]}" "${test_args[@]}"

#!/usr/bin/env bash
# Builds a real OpenSSL FIPS provider for tests and FIPS trials on machines
# whose distribution ships none (Debian has no fips.so). The source is OpenSSL
# 3.0.8, the release whose FIPS provider was validated (CMVP #4282), as shipped
# in the crates.io package openssl-src 300.0.13+3.0.8; it is configured with
# enable-fips as its security policy describes, then `openssl fipsinstall`
# writes the module's configuration. Output, in a cache directory outside the
# repository (reused when complete):
#   fips.so  fipsmodule.cnf  openssl-fips.cnf (activates fips + base, fips=yes)
# Prints the directory. Env: TALOS_FIPS_DIR overrides the cache directory.
# Use:  OPENSSL_MODULES=DIR OPENSSL_CONF=DIR/openssl-fips.cnf talos-csr-signer serve --fips …
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"

CRATE_VERSION="300.0.13+3.0.8"
DIR="${TALOS_FIPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer/fips-3.0.8}"

works() {
  [ -s "$DIR/fips.so" ] && [ -s "$DIR/fipsmodule.cnf" ] && [ -s "$DIR/openssl-fips.cnf" ] &&
    OPENSSL_MODULES="$DIR" OPENSSL_CONF="$DIR/openssl-fips.cnf" openssl list -providers 2>/dev/null |
    grep -A3 '^  fips' | grep -q 'status: active'
}
if works; then
  echo "$DIR"
  exit 0
fi

need openssl "apt-get install openssl"
need perl "apt-get install perl"
need make "apt-get install make"
need cargo
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Fetch the crate through cargo, so registry mirrors and proxies apply.
mkdir -p "$work/fetch/src"
printf '[package]\nname = "fips-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nopenssl-src = "=%s"\n' \
  "$CRATE_VERSION" >"$work/fetch/Cargo.toml"
: >"$work/fetch/src/lib.rs"
cargo fetch --quiet --manifest-path "$work/fetch/Cargo.toml" >&2
crate="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name "openssl-src-$CRATE_VERSION.crate" | head -n 1)"
[ -n "$crate" ] || die "cargo fetched openssl-src $CRATE_VERSION but its .crate file is not in the registry cache"
tar -xzf "$crate" -C "$work"
src="$work/openssl-src-$CRATE_VERSION/openssl"
[ -x "$src/Configure" ] || die "no OpenSSL source in $crate"

echo "fips-provider: building OpenSSL 3.0.8's FIPS provider (about a minute)" >&2
(
  cd "$src"
  ./Configure enable-fips linux-x86_64 >"$work/configure.log" 2>&1 || { cat "$work/configure.log" >&2; exit 1; }
  # Generated headers first: the module's objects depend on them.
  { make build_generated && make -j"$(nproc)" providers/fips.so; } >"$work/make.log" 2>&1 ||
    { tail -n 40 "$work/make.log" >&2; exit 1; }
)

mkdir -p "$DIR"
install -m 0644 "$src/providers/fips.so" "$DIR/fips.so"
openssl fipsinstall -module "$DIR/fips.so" -out "$DIR/fipsmodule.cnf" -provider_name fips >&2
cat >"$DIR/openssl-fips.cnf" <<CNF
# OpenSSL configuration that makes every process using it FIPS-only:
# the fips and base providers active, fips=yes the default property query.
config_diagnostics = 1
openssl_conf = openssl_init

.include $DIR/fipsmodule.cnf

[openssl_init]
providers = provider_sect
alg_section = algorithm_sect

[provider_sect]
fips = fips_sect
base = base_sect

[base_sect]
activate = 1

[algorithm_sect]
default_properties = fips=yes
CNF
works || die "the provider built but does not load: check $DIR"
echo "$DIR"

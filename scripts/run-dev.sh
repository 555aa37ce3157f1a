#!/usr/bin/env bash
# Builds and runs the signer in development mode: a throwaway Ed25519 machine
# CA and token in ./dev-pki (unless CA_CERT_PATH/CA_KEY_PATH/TALOS_TOKEN give
# real ones), listening on 127.0.0.1:50001. It prints the `request` command
# that exercises it. Extra arguments go to `serve`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"
scripts/setup.sh
exec cargo run --release --quiet --bin talos-csr-signer -- serve --dev "$@"

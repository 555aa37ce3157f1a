#!/usr/bin/env bash
# Builds the release binary (target/release/talos-csr-signer). The first build
# compiles gRPC core (~12 min on 2 cores); later ones take seconds.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
cargo build --release --locked
echo "built $ROOT/target/release/talos-csr-signer"

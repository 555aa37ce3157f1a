#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests that start
# the real binary on 127.0.0.1 and talk gRPC over TLS to it. One profile
# (release), so gRPC core is built once.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"
scripts/setup.sh
exec cargo test --release "$@"

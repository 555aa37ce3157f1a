#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the integration tests that start
# the real binary on 127.0.0.1 and talk gRPC over TLS to it. One profile
# (release), so gRPC core is built once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo test --release "$@"

#!/usr/bin/env bash
# Formatting and lints: cargo fmt --check, clippy -D warnings, shellcheck on
# the scripts, and the deployment files (scripts/check-deploy.sh).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"
cargo fmt --check
cargo clippy --release --features loadgen --all-targets -- -D warnings
need shellcheck "apt-get install shellcheck"
shellcheck -x scripts/*.sh .ci/run
scripts/check-deploy.sh

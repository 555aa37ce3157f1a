#!/usr/bin/env bash
# Runs the cargo-fuzz targets in tests/fuzz: issue, loaders, config, import.
#   scripts/fuzz.sh [SECONDS]   total time, split evenly (default 60)
# Prints each target's executions; fails on any crash (reproducers are left
# in tests/fuzz/artifacts/<target>/). Installs cargo-fuzz when missing; the
# first build compiles gRPC core for the fuzz profile (~10 min).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
total="${1:-60}"
targets=(issue loaders config import)
per=$(( total / ${#targets[@]} ))
[ "$per" -ge 1 ] || die "give at least ${#targets[@]} seconds"

"$ROOT/scripts/setup.sh"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
# Sanitizer and coverage flags are nightly-only; this lets the stable
# toolchain accept them.
export RUSTC_BOOTSTRAP=1
cd "$ROOT"
fuzz=(cargo fuzz)
cargo fuzz build --fuzz-dir tests/fuzz --release >&2

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
grand=0
for t in "${targets[@]}"; do
  # New inputs go to a scratch corpus; the committed seeds stay as they are.
  mkdir -p "$work/$t"
  "${fuzz[@]}" run --fuzz-dir tests/fuzz --release "$t" "$work/$t" "tests/fuzz/corpus/$t" -- \
    -max_total_time="$per" -rss_limit_mb=4096 -print_final_stats=1 >"$work/$t.log" 2>&1 || {
    tail -n 40 "$work/$t.log" >&2
    die "fuzz target $t crashed; the reproducer is in tests/fuzz/artifacts/$t/"
  }
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)"
  grand=$(( grand + ${runs:-0} ))
  echo "fuzz: $t: ${runs:-?} executions in ${per}s, no crash"
done
echo "fuzz: $grand executions in total across ${#targets[@]} targets, 0 crashes"

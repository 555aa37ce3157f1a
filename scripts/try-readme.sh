#!/usr/bin/env bash
# Does what README.md tells a new user, so the README and reality cannot drift
# apart: `try-readme.sh run` starts the README's run command (the block under
# "**Run it**") as written, runs the `request` command it prints, requires it
# to succeed, then stops the server with SIGTERM and requires exit 0.
# `try-readme.sh test` runs the README's test command (the block under
# "**Test it**"), with any extra arguments appended. CI calls both.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"

# The shell block that follows the line starting with $1 in README.md.
readme_block() {
  awk -v marker="$1" '
    index($0, marker) == 1 { found = 1; next }
    found && /^```sh$/ { inside = 1; next }
    inside && /^```$/ { exit }
    inside { print }
  ' README.md
}

run_command() {
  local cmd hint status
  cmd="$(readme_block '**Run it**')"
  [ -n "$cmd" ] || die "README.md has no sh block under **Run it**"
  echo "try-readme: README's run command: $cmd" >&2
  # log and pid are global: the EXIT trap reads them after this returns.
  log="$(mktemp)"
  # Its own process group, so stopping it reaches the server, not only bash.
  setsid bash -c "$cmd" >"$log" 2>&1 &
  pid=$!
  trap 'kill -TERM -- "-$pid" 2>/dev/null || true; rm -f "$log"' EXIT
  # The first build of a fresh clone compiles gRPC core (~12 min).
  for _ in $(seq 1 3600); do
    grep -q 'request a certificate like a Talos worker with:' "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "the run command exited before serving"; }
    sleep 0.5
  done
  hint="$(grep -A1 'request a certificate like a Talos worker with:' "$log" | sed -n 2p)"
  [ -n "$hint" ] || { cat "$log" >&2; die "the run command printed no request command"; }
  echo "try-readme: the request command it printed: $hint" >&2
  bash -c "$hint" || { cat "$log" >&2; die "the printed request command failed"; }
  kill -TERM -- "-$pid"
  status=0
  wait "$pid" || status=$?
  trap 'rm -f "$log"' EXIT
  [ "$status" -eq 0 ] || { cat "$log" >&2; die "the server exited with $status on SIGTERM"; }
  grep -q 'stopped' "$log" || { cat "$log" >&2; die "the server did not log its orderly stop"; }
  echo "try-readme: run command served, the printed request passed, SIGTERM stopped it (exit 0)"
}

test_command() {
  local cmd
  cmd="$(readme_block '**Test it**')"
  [ -n "$cmd" ] || die "README.md has no sh block under **Test it**"
  echo "try-readme: README's test command: $cmd $*" >&2
  # Word-splitting the README's one-line command is the point here.
  # shellcheck disable=SC2086
  eval "$cmd" '"$@"'
}

case "${1:-}" in
  run) run_command ;;
  test) shift; test_command "$@" ;;
  *) die "usage: $(basename "$0") run|test [test arguments]" ;;
esac

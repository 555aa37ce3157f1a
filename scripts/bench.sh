#!/usr/bin/env bash
# Benchmarks the release build on loopback and writes scripts/BENCHMARKS.md.
# For an Ed25519 and an ECDSA P-256 machine CA it measures: idle RSS and
# threads 1 s after ready; CPU used while idle; start-to-ready; signings/s over
# persistent connections at concurrency 1, 16, 64 (p50/p99); p99 at 80 % of
# the concurrency-16 rate; worker-style calls (a new TLS connection each);
# peak RSS under load and with 1000 idle TLS connections; and the crypto
# ceiling (parse+verify CSR, sign, in-process on all cores) with the server's
# CPU per call; then h2load (nghttp2) as an independent client, persistent and
# as a storm of fresh connections. Concurrency 16, the ceiling and the h2load
# persistent run are medians of three runs. Every loadgen call uses one of
# 1000 distinct CSRs. The load generators run on the same machine. Last, the
# memory of each of 10 idle instances running side by side (PSS and private),
# a reboot storm of 4000 workers with Talos-like retries from one address, and,
# where the Go talos-csr-signer's binary is present (../shared/peer or
# GO_SIGNER), the side-by-side table of scripts/bench-vs-go.sh; and the
# instructions per call by part (scripts/bench-instructions.sh, callgrind).
#   scripts/bench.sh [--quick]   (--quick: 10 s idle window, fewer calls)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
quick="${1:-}"
cd "$ROOT"
scripts/setup.sh
cargo build --release --locked --features loadgen --bins >&2
command -v h2load >/dev/null 2>&1 || apt_install nghttp2-client
command -v curl >/dev/null 2>&1 || apt_install curl
BIN="$ROOT/target/release/talos-csr-signer"
LOADGEN="$ROOT/target/release/loadgen"
IDLE_S=60; CALLS=4000
[ "$quick" = "--quick" ] && { IDLE_S=10; CALLS=1500; }
work="$(mktemp -d)"
pid=""
many=()
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ "${#many[@]}" -gt 0 ] && kill "${many[@]}" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

make_ca() { # $1 = ed25519 | p256
  if [ "$1" = ed25519 ]; then
    make_test_ca "$work/$1" -algorithm ed25519
  else
    make_test_ca "$work/$1" -algorithm EC -pkeyopt ec_paramgen_curve:P-256
  fi
}

row() { printf '| %s | %s |\n' "$1" "$2"; }
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
percent() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 100 * a / b }'; }

# This machine's neighbours swing single runs by 10-20 %, so the figures that
# are compared with the ceiling (and the ceiling) are the median of three
# runs. Prints the output of the median run; $1 reads the rate from an output.
median_of_3() { # $1 = rate reader, $2... = command
  local rate="$1" out
  shift
  for _ in 1 2 3; do
    out="$("$@")"
    printf '%s\t%s\n' "$(echo "$out" | $rate)" "$(echo "$out" | base64 -w0)"
  done | sort -n | sed -n 2p | cut -f2 | base64 -d
}

# nghttp2's h2load as an independent, much lighter client (C, one thread),
# sending one CSR for every call (each is still verified and signed). Two runs
# on a separate instance whose /metrics counts what it really issued (h2load
# sees HTTP 200 even for a gRPC error):
#   persistent: 16 connections, as for the loadgen concurrency-16 row;
#   storm: every call on a new TLS connection, connections arriving at
#   2000/s (faster than they can be served), like workers after a mass reboot.
# Prints: sent, issued, rps and mean latency for each run.
h2load_run() { # $1 = CA dir, $2 = CSR key type, $3 = port
  local d="$1" mport=$(( $3 + 1 )) n0 n1 n2 persistent storm
  "$BIN" serve --listen "127.0.0.1:$3" --metrics-listen "127.0.0.1:$mport" --ca-cert "$d/ca.crt" \
    --ca-key "$d/ca.key" --token-file "$d/token" --max-queue 100000 --auth-fail-limit 1000000 >/dev/null 2>&1 &
  pid=$!
  "$LOADGEN" ready --target "127.0.0.1:$3" >/dev/null
  "$LOADGEN" body --key-type "$2" >"$work/body.bin"
  local call=(-m 1 -H 'content-type: application/grpc' -H 'te: trailers' -H "token: $(cat "$d/token")"
    -d "$work/body.bin" "https://127.0.0.1:$3/securityapi.SecurityService/Certificate")
  n0="$(issued "$mport")"
  persistent="$(median_of_3 h2_rps h2load -n "$CALLS" -c 16 "${call[@]}")"
  n1="$(issued "$mport")"
  storm="$(h2load -n "$((CALLS / 2))" -c "$((CALLS / 2))" -r 200 --rate-period 100ms "${call[@]}")"
  n2="$(issued "$mport")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  echo "sent=$((3 * CALLS)) issued=$(( n1 - n0 )) rps=$(echo "$persistent" | h2_rps) mean=$(echo "$persistent" | h2_mean)" \
    "storm_sent=$((CALLS / 2)) storm_issued=$(( n2 - n1 )) storm_rps=$(echo "$storm" | h2_rps) storm_mean=$(echo "$storm" | h2_mean)"
}
# A reboot storm as Talos workers make it: 4000 workers arriving at 1000/s,
# all from 127.0.0.1 (one address, as behind NAT), each retrying every error
# with Talos's schedule until served (loadgen storm). Default limits except
# the queue. Prints loadgen's line plus what the server issued.
storm_run() { # $1 = CA dir, $2 = port
  local d="$1" port=$(( $2 + 2 )) mport=$(( $2 + 3 )) out
  "$BIN" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" --ca-cert "$d/ca.crt" \
    --ca-key "$d/ca.key" --token-file "$d/token" >/dev/null 2>&1 &
  pid=$!
  "$LOADGEN" ready --target "127.0.0.1:$port" >/dev/null
  out="$("$LOADGEN" storm --target "127.0.0.1:$port" --ca "$d/ca.crt" --token-file "$d/token" --workers 4000 --rate 1000)"
  echo "$out issued=$(issued "$mport")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}
issued() { curl -fsS "http://127.0.0.1:$1/metrics" | awk '/^[a-z_]*certificates_issued_total / { print $2 }'; }
h2_rps() { sed -n 's/^finished in .*, \([0-9]*\)[0-9.]* req\/s.*/\1/p'; }
# h2load's mean "time for request" (from the request's first byte to the
# answer's last; the TLS handshake is not in it), in ms.
h2_mean() {
  awk '/^time for request:/ { print $6 }' |
    sed -e 's/us$/ 0.001/' -e 's/ms$/ 1/' -e 's/s$/ 1000/' | awk '{ printf "%.2f", $1 * $2 }'
}

# What one more tenant costs: N idle instances side by side (as N Kamaji
# sidecars on one node share the image's files), each one's proportional set
# size (shared pages divided among the processes that map them) and its
# private memory (pages no other instance can share). The kernel maps cached
# code pages around every touched one (fault-around), so RSS overstates what
# a process uses; PSS and private do not.
# Each listens on a port of its own choosing (port 0) so none can collide with
# the load generators' ephemeral ports. Prints: n, mean PSS and mean private
# memory in KB. Not in $(…): the instances' pids must stay visible to the exit
# trap.
instances() { # $1 = CA dir, $2 = how many
  local d="$1" i port pss=0 priv=0 p
  for i in $(seq 1 "$2"); do
    "$BIN" serve --listen 127.0.0.1:0 --ca-cert "$d/ca.crt" --ca-key "$d/ca.key" \
      --token-file "$d/token" >/dev/null 2>"$work/tenant$i.log" &
    many+=($!)
  done
  for i in $(seq 1 "$2"); do
    until port="$(sed -n 's/.* listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$work/tenant$i.log")"; [ -n "$port" ]; do
      kill -0 "${many[i - 1]}" 2>/dev/null || { echo "instance $i exited: $(tail -n1 "$work/tenant$i.log")" >&2; return 1; }
      sleep 0.05
    done
    "$LOADGEN" ready --target "127.0.0.1:$port" >/dev/null
  done
  sleep 1
  for p in "${many[@]}"; do
    pss=$(( pss + $(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup") ))
    priv=$(( priv + $(awk '$1 ~ /^Private_(Clean|Dirty):$/ { s += $2 } END { print s }' "/proc/$p/smaps_rollup") ))
  done
  kill "${many[@]}"; wait "${many[@]}" 2>/dev/null || true; many=()
  echo "n=$2 pss_kb=$(( pss / $2 )) private_kb=$(( priv / $2 ))"
}
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }

# Ports below the ephemeral range (32768-60999): the load generators' closed
# connections linger there in TIME_WAIT, and a listener cannot bind such a port.
run_ca() { # $1 = ed25519 | p256, $2 = CSR key type
  local kind="$1" kt="$2" d="$work/$1" port=20901 t0 ready rss anon threads c0 c1
  make_ca "$kind"
  t0="$(date +%s%N)"
  "$BIN" serve --listen "127.0.0.1:$port" --ca-cert "$d/ca.crt" --ca-key "$d/ca.key" \
    --token-file "$d/token" --max-queue 100000 --auth-fail-limit 1000000 >/dev/null 2>&1 &
  pid=$!
  ready="$("$LOADGEN" ready --target "127.0.0.1:$port" --since-unix-ns "$t0" | field ready_ms)"
  sleep 1
  rss="$(status_kb "$pid" VmRSS)"; anon="$(status_kb "$pid" RssAnon)"; threads="$(status_kb "$pid" Threads)"
  c0="$(cpu_ticks "$pid")"; sleep "$IDLE_S"; c1="$(cpu_ticks "$pid")"
  local args=(--target "127.0.0.1:$port" --ca "$d/ca.crt" --token-file "$d/token" --key-type "$kt")
  local c1r c16 c64 fresh paced rate80 hwm idle_rss
  c1r="$("$LOADGEN" calls "${args[@]}" --concurrency 1 --requests "$((CALLS / 4))")"
  # Server CPU over the concurrency-16 run: how much of a call is ours and how
  # much the load generator takes from the shared cores.
  local s0 s1
  s0="$(cpu_ticks "$pid")"
  c16="$(median_of_3 "field rps" "$LOADGEN" calls "${args[@]}" --concurrency 16 --requests "$CALLS")"
  s1="$(cpu_ticks "$pid")"
  c64="$("$LOADGEN" calls "${args[@]}" --concurrency 64 --requests "$CALLS")"
  rate80="$(echo "$c16" | field rps | awk '{ printf "%d", $1 * 0.8 }')"
  paced="$("$LOADGEN" calls "${args[@]}" --concurrency 16 --requests "$CALLS" --rate "$rate80")"
  fresh="$("$LOADGEN" calls "${args[@]}" --concurrency 16 --requests "$((CALLS / 2))" --fresh)"
  hwm="$(status_kb "$pid" VmHWM)"
  "$LOADGEN" idle --target "127.0.0.1:$port" --ca "$d/ca.crt" --token-file "$d/token" --connections 1000 --hold 4 >"$work/idle.out" &
  local idler=$!
  # Sample once all 1000 are open (loadgen says so), while they are held.
  until grep -q connections= "$work/idle.out" 2>/dev/null; do sleep 0.2; done
  sleep 1
  idle_rss="$(status_kb "$pid" VmRSS)"
  wait "$idler"
  local ceiling
  ceiling="$(median_of_3 "field ops_per_s" "$LOADGEN" ceiling --ca-cert "$d/ca.crt" --ca-key "$d/ca.key" --key-type "$kt" --seconds 3 | field ops_per_s)"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  # Not in $(…): the instance's pid must stay visible to the exit trap.
  h2load_run "$d" "$kt" "$port" >"$work/h2.out"
  local h2 tenants storm
  h2="$(cat "$work/h2.out")"
  storm_run "$d" "$port" >"$work/storm.out"
  storm="$(cat "$work/storm.out")"
  instances "$d" 10 >"$work/tenants.out"
  tenants="$(cat "$work/tenants.out")"
  local r16 pct per_call alone per_conn hz
  r16="$(echo "$c16" | field rps)"
  pct="$(percent "$r16" "$ceiling")"
  hz="$(getconf CLK_TCK)"
  per_call="$(awk -v t="$((s1 - s0))" -v hz="$hz" -v n="$((3 * CALLS))" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')"
  alone="$(awk -v us="$per_call" -v c="$(nproc)" -v b="$ceiling" 'BEGIN { printf "%.0f", 100 * c * 1e6 / us / b }')"
  per_conn="$(( (idle_rss - rss) / 1000 ))"
  {
    echo
    echo "### $kind machine CA, $kt CSRs"
    echo
    echo "| measure | value |"
    echo "|---|---|"
    row "idle RSS 1 s after ready" "$(mb "$rss") ($(mb "$anon") anonymous; the rest is code pages shared between instances)"
    row "each of 10 idle instances side by side (10 tenants on one node)" "PSS $(mb "$(echo "$tenants" | field pss_kb)"), private $(mb "$(echo "$tenants" | field private_kb)")"
    row "threads" "$threads"
    row "CPU while idle ($IDLE_S s)" "$((c1 - c0)) ticks ($(awk -v t="$((c1 - c0))" -v s="$IDLE_S" 'BEGIN { printf "%.2f", t / s }')/s)"
    row "start to ready (TLS handshake accepted)" "$ready ms"
    row "persistent, concurrency 1" "$(echo "$c1r" | field rps)/s, p50 $(echo "$c1r" | field p50_ms) ms, p99 $(echo "$c1r" | field p99_ms) ms"
    row "persistent, concurrency 16" "$r16/s, p50 $(echo "$c16" | field p50_ms) ms, p99 $(echo "$c16" | field p99_ms) ms"
    row "persistent, concurrency 64" "$(echo "$c64" | field rps)/s, p50 $(echo "$c64" | field p50_ms) ms, p99 $(echo "$c64" | field p99_ms) ms"
    row "concurrency 16 paced at 80 % ($rate80/s)" "p50 $(echo "$paced" | field p50_ms) ms, p99 $(echo "$paced" | field p99_ms) ms"
    row "worker-style (new TLS connection per call), concurrency 16" "$(echo "$fresh" | field rps)/s, p50 $(echo "$fresh" | field p50_ms) ms, p99 $(echo "$fresh" | field p99_ms) ms"
    row "failed calls (all runs)" "$(( $(echo "$c1r" | field failed) + $(echo "$c16" | field failed) + $(echo "$c64" | field failed) + $(echo "$paced" | field failed) + $(echo "$fresh" | field failed) ))"
    row "peak RSS under load" "$((hwm / 1024)) MB"
    row "RSS with 1000 idle TLS connections" "$((idle_rss / 1024)) MB (~$per_conn KB per connection)"
    row "crypto ceiling (in-process, all cores)" "$ceiling/s; concurrency 16 reaches $pct %"
    row "h2load cross-check (nghttp2's C client, persistent, concurrency 16)" "$(echo "$h2" | field rps)/s ($(percent "$(echo "$h2" | field rps)" "$ceiling") % of the ceiling), mean $(echo "$h2" | field mean) ms; $(echo "$h2" | field issued) of $(echo "$h2" | field sent) certificates issued"
    row "h2load worker storm (new TLS connection per call, arriving at 2000/s)" "$(echo "$h2" | field storm_rps)/s, mean $(echo "$h2" | field storm_mean) ms after the handshake; $(echo "$h2" | field storm_issued) of $(echo "$h2" | field storm_sent) certificates issued"
    row "reboot storm: 4000 workers arriving at 1000/s from one address, Talos-like retries (10 s per attempt, back-off from 1 s)" "$(echo "$storm" | field served) of $(echo "$storm" | field workers) served ($(echo "$storm" | field within_60s) within a minute), in $(echo "$storm" | field seconds) s; $(echo "$storm" | field attempts) attempts ($(echo "$storm" | field busy) signer-busy, $(echo "$storm" | field deadline) past the 10 s deadline, $(echo "$storm" | field other_errors) other); time to served p50 $(echo "$storm" | field p50_s) s, p99 $(echo "$storm" | field p99_s) s; $(echo "$storm" | field issued) certificates issued"
    row "server CPU per call at concurrency 16" "$per_call µs (the ceiling spends $(awk -v c="$(nproc)" -v b="$ceiling" 'BEGIN { printf "%.0f", c * 1e6 / b }') µs); with the cores to itself the server would reach $alone % of the ceiling"
  } >>"$work/table.md"
}

run_ca ed25519 ed25519
run_ca p256 ecdsa-p256

# Side by side with the Go signer we replace, where its binary is here.
go_signer="${GO_SIGNER:-$ROOT/../shared/peer/talos-csr-signer-go}"
if [ -x "$go_signer" ] && [ "$(id -u)" -eq 0 ]; then
  {
    echo
    echo "### Side by side with the Go talos-csr-signer (scripts/bench-vs-go.sh)"
    echo
    echo "Ed25519 machine CA; a private network namespace; each server alone on core 0"
    echo "(taskset -c 0), h2load on core 1; successes counted by the servers."
    echo
    "$ROOT/scripts/bench-vs-go.sh" "$go_signer"
  } >>"$work/table.md"
  # The same for the binary as built in the image (Debian 13, OpenSSL 3.5),
  # with the image's own libraries, where the image is here.
  if "$ROOT/scripts/image.sh" extract "$work/image" >/dev/null 2>&1; then
    {
      echo
      echo "### The same, for the binary as built in the image (scripts/image.sh extract)"
      echo
      SIGNER="$work/image/run" "$ROOT/scripts/bench-vs-go.sh" "$go_signer"
    } >>"$work/table.md"
  else
    echo "bench: no image (scripts/image.sh build): no side-by-side table for its binary" >&2
  fi
else
  echo "bench: no Go signer at $go_signer (or not root): no side-by-side table" >&2
fi

# Where a call's instructions go (callgrind): free of this machine's time noise.
if [ "$(id -u)" -eq 0 ]; then
  {
    echo
    echo "### Instructions per call (scripts/bench-instructions.sh)"
    echo
    "$ROOT/scripts/bench-instructions.sh"
  } >>"$work/table.md"
else
  echo "bench: not root: no instruction counts (scripts/bench-instructions.sh needs a network namespace)" >&2
fi

out="$ROOT/scripts/BENCHMARKS.md"
# Keep the hand-written history (everything from "## History" on).
history="$(sed -n '/^## History/,$p' "$out" 2>/dev/null || true)"
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh${quick:+ $quick}\` on $(date -u +%Y-%m-%d) at commit $(git -C "$ROOT" rev-parse --short HEAD)."
  echo "Machine: $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r), $(openssl version | cut -d' ' -f1-2)."
  echo "The load generator (target/release/loadgen) shares the machine and its cores with the server,"
  echo "so throughput figures are lower bounds; defaults everywhere (audit and request logs to /dev/null)."
  cat "$work/table.md"
  if [ -n "$history" ]; then
    echo
    echo "$history"
  fi
} >"$out"
cat "$out"

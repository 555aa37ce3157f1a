#!/usr/bin/env bash
# Side by side with the Go talos-csr-signer we replace, in one run, and prints
# the comparison as a Markdown table (scripts/bench.sh includes it):
#   scripts/bench-vs-go.sh [GO_BINARY]    (default: ../shared/peer/talos-csr-signer-go)
# Method: an Ed25519 machine CA (as Talos generates it); everything in a
# private network namespace (the Go signer listens on all interfaces), so only
# loopback is used; every server pinned alone to core 0 (taskset -c 0), every
# load generator to core 1.
# Rows: mean PSS and private memory of each of 10 idle instances side by side,
# threads at idle; h2load over persistent connections (-c 16 -m 4, 20 000
# calls); a worker storm (3000 new TLS connections offered at 1000/s, one call
# each: -c 3000 -r 100 --rate-period 100ms -m 1), and the same offered at
# 2000/s, which shows what one core takes; then persistent and the 2000/s
# storm again with a P-256 machine CA and P-256 CSRs, which separates
# OpenSSL 3.0's Ed25519 (slower than Go's) from the rest; last, each server's
# CPU time per issued certificate in those phases, which the machine's
# neighbours move less than the rates. Load rows are the median of three
# rounds, the servers taking turns. Successes are counted by each
# server (the Go signer's log, our certificates_issued_total), not by h2load,
# which sees HTTP 200 even for a gRPC error. Both servers log to a file.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
GO_SIGNER="${1:-${GO_SIGNER:-$ROOT/../shared/peer/talos-csr-signer-go}}"
[ -x "$GO_SIGNER" ] || die "no Go signer at $GO_SIGNER"
[ "$(nproc)" -ge 2 ] || die "needs two cores (server on 0, load on 1)"
# SIGNER: another build of ours to compare (e.g. before and after a change).
BIN="${SIGNER:-$ROOT/target/release/talos-csr-signer}"
LOADGEN="$ROOT/target/release/loadgen"
{ [ -x "$BIN" ] && [ -x "$LOADGEN" ]; } || die "build first: cargo build --release --features loadgen --bins"
command -v h2load >/dev/null 2>&1 || apt_install nghttp2-client
command -v curl >/dev/null 2>&1 || apt_install curl

# Into a private network namespace (root): nothing leaves loopback.
enter_private_netns "$GO_SIGNER"

work="$(mktemp -d)"
pids=()
cleanup() {
  [ "${#pids[@]}" -gt 0 ] && kill "${pids[@]}" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
# Machine CAs: $work/ed25519 (the rows' CA, as Talos generates it) and
# $work/p256 (the P-256 rows), each with a CSR of its own key type (body.bin).
make_test_ca "$work/ed25519" -algorithm ed25519
make_test_ca "$work/p256" -algorithm EC -pkeyopt ec_paramgen_curve:P-256
"$LOADGEN" body --key-type ed25519 >"$work/ed25519/body.bin"
"$LOADGEN" body --key-type ecdsa-p256 >"$work/p256/body.bin"

# Starts one server of kind $1 ("go" or "ours") on port $2, on core 0, with
# the machine CA named $3, its log in $work/$1-$2.log; with $4 = metrics, our
# /metrics on port $2+1000 (the idle rows run ours as the Go signer runs:
# nothing but the service).
start() {
  local log="$work/$1-$2.log" ca="$work/$3" token extra=()
  token="$(cat "$ca/token")"
  [ "${4:-}" = metrics ] && extra=(--metrics-listen "127.0.0.1:$(( $2 + 1000 ))")
  if [ "$1" = go ]; then
    PORT="$2" CA_CERT_PATH="$ca/ca.crt" CA_KEY_PATH="$ca/ca.key" TALOS_TOKEN="$token" \
      SERVER_IPS=127.0.0.1 taskset -c 0 "$GO_SIGNER" >"$log" 2>&1 &
  else
    TALOS_TOKEN="$token" taskset -c 0 "$BIN" serve --listen "127.0.0.1:$2" --ca-cert "$ca/ca.crt" \
      --ca-key "$ca/ca.key" "${extra[@]}" --max-queue 100000 --auth-fail-limit 1000000 >"$log" 2>&1 &
  fi
  pids+=($!)
  "$LOADGEN" ready --target "127.0.0.1:$2" >/dev/null
}
stop_all() { kill "${pids[@]}" 2>/dev/null; wait "${pids[@]}" 2>/dev/null || true; pids=(); }

# Certificates a server says it issued.
issued() { # $1 kind, $2 port
  if [ "$1" = go ]; then
    grep -c 'Certificate Request Completed Successfully' "$work/go-$2.log" || true
  else
    curl -fsS "http://127.0.0.1:$(( $2 + 1000 ))/metrics" | awk '/^[a-z_]*certificates_issued_total / { print $2 }'
  fi
}

# Ports below the ephemeral range (32768-60999): the load generators' closed
# connections linger there in TIME_WAIT, and a listener cannot bind such a port.
# 10 idle instances side by side: mean PSS and private KB, threads of one.
idle() { # $1 kind
  local port pss=0 priv=0 p
  for port in $(seq 21001 21010); do start "$1" "$port" ed25519; done
  sleep 1
  for p in "${pids[@]}"; do
    pss=$(( pss + $(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup") ))
    priv=$(( priv + $(awk '$1 ~ /^Private_(Clean|Dirty):$/ { s += $2 } END { print s }' "/proc/$p/smaps_rollup") ))
  done
  echo "pss_kb=$(( pss / 10 )) private_kb=$(( priv / 10 )) threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/${pids[0]}/status")"
  stop_all
}

h2() { # $1 port, $2 CA name (its token and CSR), then h2load options; prints req/s
  local port="$1" ca="$work/$2"
  shift 2
  h2load_certificate 1 "$port" "$ca" "$ca/body.bin" "$@" |
    sed -n 's/^finished in .*, \([0-9]*\)[0-9.]* req\/s.*/\1/p'
}

# One measured phase on the running server ${pids[0]}: the rate h2load saw,
# what the server issued, and the server's CPU time per issued certificate
# (steadier than the rate when the machine's neighbours are busy).
phase() { # $1 name, $2 kind, $3 port, $4 CA name, then h2load options
  local name="$1" kind="$2" port="$3" ca="$4" n0 t0 rps n t
  shift 4
  n0="$(issued "$kind" "$port")"
  t0="$(cpu_ticks "${pids[0]}")"
  rps="$(h2 "$port" "$ca" "$@")"
  sleep 1
  n=$(( $(issued "$kind" "$port") - n0 ))
  t=$(( $(cpu_ticks "${pids[0]}") - t0 ))
  echo "${name}_rps=$rps ${name}_issued=$n ${name}_cpu=$(( n > 0 ? t * 1000000 / CLK_TCK / n : 0 ))"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

# A reboot storm as Talos workers make it (loadgen storm: 4000 workers
# arriving at 2000/s, a new TLS connection and a 10 s deadline per attempt,
# every error retried after a back-off from 1 s): when the last worker had its
# certificate, how many had to retry, and the server's CPU per worker. Ours
# runs with start()'s --max-queue 100000; 4000 workers fit the default 4096
# as well, so the storm sees the same queue either way.
reboot() { # $1 kind, $2 port
  local t0 out
  t0="$(cpu_ticks "${pids[0]}")"
  out="$(taskset -c 1 "$LOADGEN" storm --target "127.0.0.1:$2" --ca "$work/ed25519/ca.crt" \
    --token-file "$work/ed25519/token" --workers 4000 --rate 2000)"
  echo "reboot_last_ms=$(echo "$out" | field max_s | awk '{ printf "%d", $1 * 1000 }')" \
    "reboot_p50_ms=$(echo "$out" | field p50_s | awk '{ printf "%d", $1 * 1000 }')" \
    "reboot_served=$(echo "$out" | field served) reboot_retried=$(echo "$out" | field retried_workers)" \
    "reboot_cpu=$(( ($(cpu_ticks "${pids[0]}") - t0) * 1000000 / CLK_TCK / 4000 ))"
}

# One server: persistent and storm phases, the reboot storm; then persistent
# and the fast storm with a P-256 machine CA (fields prefixed p256_).
load() { # $1 kind
  local port=22001 out
  start "$1" "$port" ed25519 metrics
  out="$(phase persistent "$1" "$port" ed25519 -n 20000 -c 16 -m 4)"
  out+=" $(phase storm "$1" "$port" ed25519 -n 3000 -c 3000 -r 100 --rate-period 100ms -m 1)"
  # The same storm offered twice as fast: what a core can take, not what
  # was offered.
  out+=" $(phase fast "$1" "$port" ed25519 -n 3000 -c 3000 -r 200 --rate-period 100ms -m 1)"
  out+=" $(reboot "$1" "$port")"
  stop_all
  start "$1" "$port" p256 metrics
  out+=" $(phase p256_persistent "$1" "$port" p256 -n 20000 -c 16 -m 4)"
  out+=" $(phase p256_fast "$1" "$port" p256 -n 3000 -c 3000 -r 200 --rate-period 100ms -m 1)"
  stop_all
  echo "$out"
}

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "—"; else printf "%.2f×", a / b }'; }
mb() { awk -v k="$1" 'BEGIN { printf "%.2f MB", k / 1024 }'; }

# Both servers run from copies made now. A binary just written by the linker
# read 150-190 KB more private memory per idle instance than the same file
# copied (2026-12-07: 1885-1889 against 1696-1704 KB, and a sync did not
# help): how the kernel counts the page-cache pages the linker left, not the
# signer. An image's files are written the way cp writes them.
cp "$BIN" "$work/ours-signer"
cp "$GO_SIGNER" "$work/go-signer"
go_source="$GO_SIGNER"
BIN="$work/ours-signer"
GO_SIGNER="$work/go-signer"
go_idle="$(idle go)"; our_idle="$(idle ours)"
# This machine's neighbours swing single runs by 10-30 %: three rounds, the
# two servers taking turns, and each rate the median of its three.
rounds=()
for _ in 1 2 3; do rounds+=("go $(load go)" "ours $(load ours)"); done
median() { # $1 kind, $2 field
  printf '%s\n' "${rounds[@]}" | awk -v k="$1" '$1 == k' | field "$2" | sort -n | sed -n 2p
}
total() { # $1 kind, $2 field: summed over the rounds
  printf '%s\n' "${rounds[@]}" | awk -v k="$1" '$1 == k' | field "$2" | awk '{ s += $1 } END { print s }'
}
summary() { # $1 kind: each rate's median and each count's total
  local f out=""
  for f in persistent storm fast p256_persistent p256_fast; do
    out+=" ${f}_rps=$(median "$1" "${f}_rps") ${f}_issued=$(total "$1" "${f}_issued") ${f}_cpu=$(median "$1" "${f}_cpu")"
  done
  for f in reboot_last_ms reboot_p50_ms reboot_cpu; do out+=" $f=$(median "$1" "$f")"; done
  for f in reboot_served reboot_retried; do out+=" $f=$(total "$1" "$f")"; done
  echo "$out"
}
go_load="$(summary go)"
our_load="$(summary ours)"

row() { # label, go value, our value, go number, our number
  printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$(ratio "$5" "$4")"
}
g() { echo "$go_idle $go_load" | field "$1"; }
o() { echo "$our_idle $our_load" | field "$1"; }
echo "| figure | Go signer | ours | ours / Go |"
echo "|---|---|---|---|"
row "10 idle instances side by side, mean PSS per instance" "$(mb "$(g pss_kb)")" "$(mb "$(o pss_kb)")" "$(g pss_kb)" "$(o pss_kb)"
row "… mean private memory per instance" "$(mb "$(g private_kb)")" "$(mb "$(o private_kb)")" "$(g private_kb)" "$(o private_kb)"
row "threads at idle" "$(g threads)" "$(o threads)" "$(g threads)" "$(o threads)"
row "persistent connections (h2load -c 16 -m 4, 20 000 calls), per server core" "$(g persistent_rps)/s ($(g persistent_issued) of 60000 issued)" "$(o persistent_rps)/s ($(o persistent_issued) of 60000 issued)" "$(g persistent_rps)" "$(o persistent_rps)"
row "worker storm (3000 new TLS connections at 1000/s, one call each), per server core" "$(g storm_rps)/s ($(g storm_issued) of 9000 issued)" "$(o storm_rps)/s ($(o storm_issued) of 9000 issued)" "$(g storm_rps)" "$(o storm_rps)"
row "… the same storm offered at 2000/s" "$(g fast_rps)/s ($(g fast_issued) of 9000 issued)" "$(o fast_rps)/s ($(o fast_issued) of 9000 issued)" "$(g fast_rps)" "$(o fast_rps)"
row "with a P-256 machine CA (P-256 CSRs): persistent, as above" "$(g p256_persistent_rps)/s ($(g p256_persistent_issued) of 60000 issued)" "$(o p256_persistent_rps)/s ($(o p256_persistent_issued) of 60000 issued)" "$(g p256_persistent_rps)" "$(o p256_persistent_rps)"
row "… worker storm offered at 2000/s" "$(g p256_fast_rps)/s ($(g p256_fast_issued) of 9000 issued)" "$(o p256_fast_rps)/s ($(o p256_fast_issued) of 9000 issued)" "$(g p256_fast_rps)" "$(o p256_fast_rps)"
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f s", ms / 1000 }'; }
row "reboot storm (4000 workers at 2000/s, Talos-like retries): last worker served (lower is better)" "$(secs "$(g reboot_last_ms)")" "$(secs "$(o reboot_last_ms)")" "$(g reboot_last_ms)" "$(o reboot_last_ms)"
row "… half the workers served by (p50)" "$(secs "$(g reboot_p50_ms)")" "$(secs "$(o reboot_p50_ms)")" "$(g reboot_p50_ms)" "$(o reboot_p50_ms)"
row "… workers that had to retry (three rounds)" "$(g reboot_retried) ($(g reboot_served) of 12000 served)" "$(o reboot_retried) ($(o reboot_served) of 12000 served)" "$(g reboot_retried)" "$(o reboot_retried)"
cpu_row() { # label, field
  row "$1" "$(g "$2") µs" "$(o "$2") µs" "$(g "$2")" "$(o "$2")"
}
cpu_row "server CPU per certificate (lower is better): persistent" persistent_cpu
cpu_row "… worker storm at 1000/s" storm_cpu
cpu_row "… worker storm at 2000/s" fast_cpu
cpu_row "… P-256 machine CA, persistent" p256_persistent_cpu
cpu_row "… P-256 machine CA, worker storm at 2000/s" p256_fast_cpu
cpu_row "… reboot storm, per worker" reboot_cpu
echo
echo "Memory and CPU per certificate: lower is better (ours / Go below 1.00× wins); throughput: higher is better."
echo "Go signer: $go_source; $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), Linux $(uname -r), $(openssl version | cut -d' ' -f1-2)."

#!/usr/bin/env bash
# Instructions per call, counted by valgrind's callgrind, as a Markdown table
# (scripts/bench.sh includes it). Time on this machine swings by 15-30 %
# between runs; an instruction count does not (two runs agree within 0.1 %),
# so this shows what a change saves even when it is below the time noise.
# It counts user-space instructions only (not the kernel, not cache misses),
# and instructions are not time: use it beside scripts/bench-vs-go.sh.
#   scripts/bench-instructions.sh [CALLS]   (default 200)
# Rows, for an Ed25519 machine CA: a worker-style call (a new TLS connection,
# one call), split into the TLS handshake and the parts of it that OpenSSL
# names, the CSR check and the signing; the same call from a client that
# offers only P-256 (a P-256 key exchange instead of Go's and OpenSSL's
# X25519); the same with NumTickets = 0 through OPENSSL_CONF as well (a check
# that src/server/tls.rs already sends no tickets: it should cost nothing);
# a call on a persistent connection; one with a P-256 machine CA and CSR;
# and, where its binary is present, the Go signer's whole call beside ours.
# Runs in a private network namespace.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
CALLS="${1:-200}"
BIN="${SIGNER:-$ROOT/target/release/talos-csr-signer}"
# The Go talos-csr-signer, counted beside ours where present.
GO_SIGNER="${GO_SIGNER:-$ROOT/../shared/peer/talos-csr-signer-go}"
LOADGEN="$ROOT/target/release/loadgen"
{ [ -x "$BIN" ] && [ -x "$LOADGEN" ]; } || die "build first: cargo build --release --features loadgen --bins"
command -v h2load >/dev/null 2>&1 || apt_install nghttp2-client
command -v valgrind >/dev/null 2>&1 || apt_install valgrind

enter_private_netns "$CALLS"

work="$(mktemp -d)"
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
# The machine CAs and a CSR of each one's key type: $work/{ed25519,p256}/
make_test_ca "$work/ed25519" -algorithm ed25519
make_test_ca "$work/p256" -algorithm EC -pkeyopt ec_paramgen_curve:P-256
"$LOADGEN" body --key-type ed25519 >"$work/ed25519/body.bin"
"$LOADGEN" body --key-type ecdsa-p256 >"$work/p256/body.bin"
ca="$work/ed25519" # the CA the next count uses
printf '%s\n' 'openssl_conf = init' '[init]' 'ssl_conf = ssl' '[ssl]' 'system_default = tls' \
  '[tls]' 'NumTickets = 0' >"$work/no-tickets.cnf"

h2() { # $1 port, then h2load options; prints how many calls succeeded
  local port="$1"
  shift
  h2load_certificate "" "$port" "$ca" "$ca/body.bin" "$@" |
    sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p'
}

# Counts one variant: $1 name, $2 port, $3 the server: "" for ours with the
# system's OpenSSL configuration, a file for ours with that OPENSSL_CONF, "go"
# for the Go signer (its binary is stripped: only its total is counted; Go's
# asynchronous preemption signals crash it under valgrind, hence GODEBUG);
# then h2load options for the measured calls. Warms up with 20 calls, zeroes
# the counters, runs the calls, dumps. Prints the inclusive counts per call.
count() {
  local name="$1" port="$2" conf="$3" out
  shift 3
  out="$work/$name.cg"
  if [ "$conf" = go ]; then
    PORT="$port" CA_CERT_PATH="$ca/ca.crt" CA_KEY_PATH="$ca/ca.key" TALOS_TOKEN="$(cat "$ca/token")" \
      SERVER_IPS=127.0.0.1 GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind \
      --callgrind-out-file="$out" "$GO_SIGNER" >"$work/$name.log" 2>&1 &
  else
    env ${conf:+OPENSSL_CONF="$conf"} TALOS_TOKEN="$(cat "$ca/token")" valgrind --tool=callgrind \
      --callgrind-out-file="$out" "$BIN" serve --listen "127.0.0.1:$port" \
      --ca-cert "$ca/ca.crt" --ca-key "$ca/ca.key" --max-queue 100000 \
      --auth-fail-limit 1000000 >"$work/$name.log" 2>&1 &
  fi
  "$LOADGEN" ready --target "127.0.0.1:$port" --timeout-ms 120000 >/dev/null
  h2 "$port" -n 20 -c 20 -m 1 >/dev/null
  callgrind_control -z "$!" >/dev/null 2>&1
  local ok
  ok="$(h2 "$port" "$@")"
  callgrind_control -d "$!" >/dev/null 2>&1
  kill "$!"
  wait "$!" 2>/dev/null || true
  [ "$ok" = "$CALLS" ] || die "$name: $ok of $CALLS calls succeeded (see $work/$name.log)"
  callgrind_annotate --inclusive=yes --threshold=100 "$out.1" 2>/dev/null | awk -v n="$CALLS" -v name="$name" '
    function take(key, pattern) { if ($0 ~ pattern && !(key in v)) { gsub(",", "", $1); v[key] = $1 / n } }
    /PROGRAM TOTALS/ { gsub(",", "", $1); v["total"] = $1 / n }
    { take("handshake", ":SSL_do_handshake ")
      take("peer_check", ":EVP_PKEY_derive_set_peer_ex ")
      take("ecdh", ":EVP_PKEY_derive ")
      take("keygen", ":EVP_PKEY_generate ")
      take("kdf", ":EVP_KDF_derive ")
      take("cert_verify", ":ECDSA_sign_ex ")
      take("csr_read", "::pki::csr::Unverified::read ")
      take("csr_verify", "::pki::csr::Unverified::verify ")
      take("csr_sig", ":X509_REQ_verify_ex ")
      take("sign", "::pki::cert::build ")
      take("ca_sig", ":X509_sign ") }
    END { v["csr"] = v["csr_read"] + v["csr_verify"]
          printf "%s", name; for (k in v) printf " %s=%d", k, v[k]; print "" }'
}

# Ports below the ephemeral range (32768-60999): the load generators' closed
# connections linger there in TIME_WAIT, and a listener cannot bind such a port.
base="$(count storm 24001 "" -n "$CALLS" -c "$CALLS" -r 10 --rate-period 1s -m 1)"
p256="$(count p256-first 24002 "" --groups=P-256 -n "$CALLS" -c "$CALLS" -r 10 --rate-period 1s -m 1)"
notickets="$(count no-tickets 24003 "$work/no-tickets.cnf" -n "$CALLS" -c "$CALLS" -r 10 --rate-period 1s -m 1)"
persistent="$(count persistent 24004 "" -n "$CALLS" -c 4 -m 4)"
go_storm="" go_persistent=""
if [ -x "$GO_SIGNER" ]; then
  go_storm="$(count go-storm 24006 go -n "$CALLS" -c "$CALLS" -r 10 --rate-period 1s -m 1)"
  go_persistent="$(count go-persistent 24007 go -n "$CALLS" -c 4 -m 4)"
fi
ca="$work/p256"
p256_persistent="$(count p256-persistent 24005 "" -n "$CALLS" -c 4 -m 4)"

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p"; }
k() { awk -v i="$1" 'BEGIN { printf "%.0f k", i / 1000 }'; }
share() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f %%", 100 * a / b }'; }
b() { echo "$base" | field "$1"; }
total="$(b total)"
row() { printf '| %s | %s | %s |\n' "$1" "$(k "$2")" "$(share "$2" "$total")"; }
echo "| per worker-style call (new TLS connection, one call; Ed25519 CA, client offers X25519 first) | instructions | share |"
echo "|---|---|---|"
row "all of the server's user space" "$total"
row "TLS handshake (SSL_do_handshake)" "$(b handshake)"
row "… key exchange: checking the client's share (EVP_PKEY_derive_set_peer; for P-256 a full public-key check)" "$(b peer_check)"
row "… key exchange: the shared secret (EVP_PKEY_derive)" "$(b ecdh)"
row "… key exchange: our key share (EVP_PKEY_generate)" "$(b keygen)"
row "… TLS 1.3 key schedule (EVP_KDF_derive, HKDF)" "$(b kdf)"
row "… CertificateVerify (ECDSA P-256 signature)" "$(b cert_verify)"
row "CSR check (parse, key type, proof of possession, names)" "$(b csr)"
row "… the CSR's Ed25519 signature (X509_REQ_verify)" "$(b csr_sig)"
row "signing the certificate" "$(b sign)"
row "… the CA's Ed25519 signature (X509_sign)" "$(b ca_sig)"
row "the rest: gRPC core, HTTP/2, TLS records, hand-off, logs" "$(( total - $(b handshake) - $(b csr) - $(b sign) ))"
echo
p256_total="$(echo "$p256" | field total)"
nt_total="$(echo "$notickets" | field total)"
pt_total="$(echo "$persistent" | field total)"
echo "| variant | instructions per call | against the worker-style call |"
echo "|---|---|---|"
printf '| client offers only P-256 (a P-256 key exchange) | %s | %s |\n' "$(k "$p256_total")" "$(k $(( p256_total - total )))"
printf '| NumTickets = 0 through OPENSSL_CONF too (src/server/tls.rs already sends none) | %s | %s |\n' "$(k "$nt_total")" "$(k $(( nt_total - total )))"
printf '| persistent connection (h2load -c 4 -m 4) | %s | %s |\n' "$(k "$pt_total")" "$(k $(( pt_total - total )))"
pp="$p256_persistent"
printf '| persistent connection, P-256 machine CA and CSR: all / CSR signature / CA signature | %s / %s / %s | |\n' \
  "$(k "$(echo "$pp" | field total)")" "$(k "$(echo "$pp" | field csr_sig)")" "$(k "$(echo "$pp" | field ca_sig)")"
if [ -n "$go_storm" ]; then
  # Where OpenSSL 3.0's Ed25519 bounds a figure: our two Ed25519 operations
  # alone against the Go signer's whole call, and everything else of ours.
  pe="$(( $(echo "$persistent" | field csr_sig) + $(echo "$persistent" | field ca_sig) ))"
  gp="$(echo "$go_persistent" | field total)"
  gs="$(echo "$go_storm" | field total)"
  echo
  echo "| the Go signer beside ours (Ed25519 CA) | Go signer, whole call | ours, whole call | ours: the two Ed25519 operations (CSR check, CA signature) | ours: all else |"
  echo "|---|---|---|---|---|"
  printf '| persistent connection | %s | %s | %s | %s |\n' "$(k "$gp")" "$(k "$pt_total")" "$(k "$pe")" "$(k $(( pt_total - pe )))"
  be="$(( $(b csr_sig) + $(b ca_sig) ))"
  printf '| worker-style call (new TLS connection) | %s | %s | %s | %s |\n' "$(k "$gs")" "$(k "$total")" "$(k "$be")" "$(k $(( total - be )))"
fi
echo
echo "$CALLS calls per variant, counted by callgrind after 20 warm-up calls; user space only."

#!/usr/bin/env bash
# Runs the RFC 5280 linter pkilint (PyPI, pinned) over certificates the signer
# issues, for every machine-CA type (Ed25519, ECDSA P-256/P-384, RSA-2048): a
# worker certificate with IP and DNS SANs and the serving certificate, each
# alone and as a chain with its CA. Exit status 0 only with zero findings at
# WARNING or above. (Talos workers also ask for their short hostname, a
# single-label DNS SAN that pkilint reports as invalid domain syntax; the
# signer copies names as asked, so the sample uses fully qualified ones.)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
PKILINT_VERSION=0.13.3
if ! python3 -c "import pkilint, importlib.metadata as m; assert m.version('pkilint') == '$PKILINT_VERSION'" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check "pkilint==$PKILINT_VERSION"
fi
cd "$ROOT"
cargo build --release --locked --bin talos-csr-signer >&2
BIN="$ROOT/target/release/talos-csr-signer"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

lint() { # label file [issuer]
  local out
  out="$(lint_pkix_cert lint -s WARNING "$2" 2>&1 || true)"
  if [ -n "$3" ]; then
    out="$out$(lint_pkix_signer_signee_cert_chain lint -s WARNING "$3" "$2" 2>&1 || true)"
  fi
  if [ -n "$out" ]; then
    echo "lint-certs: $1:"; echo "$out"; failures=$((failures + 1))
  else
    echo "lint-certs: $1: no findings"
  fi
}

failures=0
# Ports below the ephemeral range (32768-60999): the load generators' closed
# connections linger there in TIME_WAIT, and a listener cannot bind such a port.
port=20950
for kind in ed25519 p256 p384 rsa2048; do
  d="$work/$kind"
  case "$kind" in
    ed25519) make_test_ca "$d" -algorithm ed25519 ;;
    p256) make_test_ca "$d" -algorithm EC -pkeyopt ec_paramgen_curve:P-256 ;;
    p384) make_test_ca "$d" -algorithm EC -pkeyopt ec_paramgen_curve:P-384 ;;
    rsa2048) make_test_ca "$d" -algorithm RSA -pkeyopt rsa_keygen_bits:2048 ;;
  esac
  port=$((port + 1))
  "$BIN" serve --listen "127.0.0.1:$port" --ca-cert "$d/ca.crt" --ca-key "$d/ca.key" \
    --token-file "$d/token" --server-ips 10.10.10.101 --server-dns-names cp.example.org \
    --audit-log off >/dev/null 2>&1 &
  pid=$!
  until "$BIN" check --ca-cert "$d/ca.crt" --ca-key "$d/ca.key" --token-file "$d/token" >/dev/null 2>&1 &&
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
  "$BIN" request --endpoint "127.0.0.1:$port" --ca "$d/ca.crt" --token-file "$d/token" \
    --cn node-1.example --ip 10.5.0.7 --ip fd00::7 --dns node-1.example --dns api.node-1.example --out "$d/worker" >/dev/null
  lint "$kind worker certificate" "$d/worker/crt.pem" "$d/ca.crt"
  openssl s_client -connect "127.0.0.1:$port" -alpn h2 -showcerts </dev/null 2>/dev/null |
    sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' >"$d/serving.pem"
  lint "$kind serving certificate" "$d/serving.pem" "$d/ca.crt"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
[ "$failures" -eq 0 ] || die "$failures certificate(s) with findings"
echo "lint-certs: every certificate passes pkilint $PKILINT_VERSION (RFC 5280) with no findings"

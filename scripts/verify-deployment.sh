#!/usr/bin/env bash
# Proves the deployment works the way a Talos worker uses it: takes the CA and
# token from the Secret, asks the Service's external address for a certificate
# with `talos-csr-signer request`, verifies it, and prints PASS or FAIL.
# Env: NAMESPACE; ENDPOINT (default: the Service's load-balancer IP).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need kubectl
bin="$(signer_bin)"
endpoint="${ENDPOINT:-$(kubectl -n "$NAMESPACE" get service talos-csr-signer -o jsonpath='{.status.loadBalancer.ingress[0].ip}')}"
[ -n "$endpoint" ] || die "the Service has no external IP yet; set ENDPOINT=IP to test another address"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
kubectl -n "$NAMESPACE" get secret talos-csr-signer -o jsonpath='{.data.ca\.crt}' | base64 -d >"$tmp/ca.crt"
( umask 077; kubectl -n "$NAMESPACE" get secret talos-csr-signer -o jsonpath='{.data.token}' | base64 -d >"$tmp/token" )
if "$bin" request --endpoint "$endpoint" --ca "$tmp/ca.crt" --token-file "$tmp/token" \
    --cn verify-deployment --ip 127.0.0.1 --dns verify-deployment; then
  echo "PASS: $endpoint:50001 issues certificates Talos workers accept"
else
  echo "FAIL: $endpoint:50001 (see the checks above)"
  exit 1
fi

#!/usr/bin/env bash
# Runs the image locally on port 50001, read-only and non-root as in production.
#   scripts/docker-run-dev.sh           dev mode: throwaway CA and token in ./dev-pki
#   scripts/docker-run-dev.sh DIR       real mode: DIR holds ca.crt, ca.key, token
#                                       (e.g. from `talos-csr-signer import --out DIR`)
# Then: talos-csr-signer request --endpoint 127.0.0.1 --ca DIR/ca.crt --token-file DIR/token
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need docker "install Docker and start its engine"
common=(--rm --read-only --cap-drop ALL --security-opt no-new-privileges -p 127.0.0.1:50001:50001)
if [ -n "${1:-}" ]; then
  dir="$(cd "$1" && pwd)"
  exec docker run "${common[@]}" -v "$dir:/etc/talos-ca:ro" \
    -e TALOS_TOKEN_FILE=/etc/talos-ca/token "$IMAGE:$TAG" serve
fi
mkdir -p "$ROOT/dev-pki" && chmod 777 "$ROOT/dev-pki"
exec docker run "${common[@]}" -v "$ROOT/dev-pki:/dev-pki" "$IMAGE:$TAG" \
  serve --dev --dev-dir /dev-pki --listen 0.0.0.0:50001

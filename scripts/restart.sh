#!/usr/bin/env bash
# Restarts the signer pods one by one (e.g. after replacing the Secret; the
# signer also picks up Secret changes by itself within --reload-interval).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need kubectl
kubectl -n "$NAMESPACE" rollout restart deployment/talos-csr-signer
kubectl -n "$NAMESPACE" rollout status deployment/talos-csr-signer --timeout=120s

#!/usr/bin/env bash
# Shows the signer's pods, Service (with its external IP) and recent events.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need kubectl
kubectl -n "$NAMESPACE" get deployment,pods,service,pdb -l app.kubernetes.io/name=talos-csr-signer -o wide
kubectl -n "$NAMESPACE" get events --sort-by=.lastTimestamp | tail -n 10

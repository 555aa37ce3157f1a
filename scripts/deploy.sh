#!/usr/bin/env bash
# Deploys to the current kubectl context: namespace, Deployment, PDB,
# LoadBalancer Service and the Talos node RBAC (kubectl apply -k deploy).
# The Secret must exist first; create it from your Talos material with
#   talos-csr-signer import --from secrets.yaml --secret | kubectl apply -f -
# Env: NAMESPACE (default talos-csr-signer).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need kubectl
kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl apply -f "$ROOT/deploy/00-namespace.yaml"
kubectl -n "$NAMESPACE" get secret talos-csr-signer >/dev/null 2>&1 ||
  die "no Secret talos-csr-signer in $NAMESPACE; create it: talos-csr-signer import --from secrets.yaml --secret | kubectl apply -f -"
kubectl apply -k "$ROOT/deploy"
kubectl -n "$NAMESPACE" rollout status deployment/talos-csr-signer --timeout=120s

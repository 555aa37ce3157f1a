#!/usr/bin/env bash
# Deploys to the current kubectl context: namespace, Deployment, PDB,
# LoadBalancer Service and the Talos node RBAC (kubectl apply -k deploy).
# The Secret must exist first; create it from your Talos material with
#   talos-csr-signer import --from secrets.yaml --secret | kubectl apply -f -
# Env: NAMESPACE (default talos-csr-signer); IMAGE and TAG (default: our image
# as deploy/image/kustomization.yaml names it) select the image to run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need kubectl
kubectl get namespace "$NAMESPACE" >/dev/null 2>&1 || kubectl apply -f "$ROOT/deploy/00-namespace.yaml"
kubectl -n "$NAMESPACE" get secret talos-csr-signer >/dev/null 2>&1 ||
  die "no Secret talos-csr-signer in $NAMESPACE; create it: talos-csr-signer import --from secrets.yaml --secret | kubectl apply -f -"
# The image from IMAGE/TAG, through an overlay (kustomize takes no absolute
# paths, hence under target/).
overlay="$ROOT/target/deploy-image"
mkdir -p "$overlay"
cat >"$overlay/kustomization.yaml" <<EOF
resources: [../../deploy]
images:
  - name: $(default_image)
    newName: $IMAGE
    newTag: "$TAG"
EOF
kubectl apply -k "$overlay"
kubectl -n "$NAMESPACE" rollout status deployment/talos-csr-signer --timeout=120s

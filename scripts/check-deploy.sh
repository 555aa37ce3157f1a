#!/usr/bin/env bash
# Checks every deployment file offline: Kubernetes manifests against the API
# schema (kubernetes-validate, pinned), the Kamaji sidecar's container spec,
# `kubectl kustomize deploy`, the systemd unit (verify + security score), the
# Dockerfile's runtime user, and that no private key or token is committed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"

KV_VERSION=1.31.0
if ! kubernetes-validate --version 2>/dev/null | grep -q "$KV_VERSION"; then
  python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi
kubernetes-validate --strict --quiet deploy/0*.yaml deploy/kubeadm/*.yaml

# Kamaji's TenantControlPlane has no schema here: validate the signer
# container and its volume as the Pod they become.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - deploy/kamaji/tenant-control-plane.yaml >"$tmp/pod.json" <<'PY'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
tcp = next(d for d in docs if d["kind"] == "TenantControlPlane")
dep = tcp["spec"]["controlPlane"]["deployment"]
pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "signer"},
       "spec": {"containers": dep["additionalContainers"], "volumes": dep["additionalVolumes"]}}
json.dump(pod, sys.stdout)
PY
kubernetes-validate --strict --quiet "$tmp/pod.json"
kubernetes-validate --strict --quiet <(python3 -c '
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open("deploy/kamaji/tenant-control-plane.yaml")) if d]
print(json.dumps(next(d for d in docs if d["kind"] == "Service")))')

command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client
kubectl kustomize deploy >"$tmp/rendered.yaml"
grep -q "kind: Deployment" "$tmp/rendered.yaml" || die "kustomize rendered no Deployment"

unit="$tmp/talos-csr-signer.service"
sed "s#/usr/local/bin/talos-csr-signer#$(command -v true)#" deploy/systemd/talos-csr-signer.service >"$unit"
systemd-analyze verify "$unit"
score="$(systemd-analyze security --offline=true "$unit" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
echo "systemd-analyze security: exposure $score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || die "systemd exposure $score is above 2.0"

grep -Eq '^USER 65532(:65532)?$' Dockerfile || die "Dockerfile's runtime user is not 65532"
grep -q 'distroless/cc-debian12:nonroot' Dockerfile || die "Dockerfile's runtime image is not distroless cc nonroot"

# No secrets in git: no PEM private keys, no base64 of one, no Talos-shaped tokens.
if grep -rIlE 'BEGIN ([A-Z0-9]+ )?PRIVATE KEY|LS0tLS1CRUdJTi[A-Za-z0-9+/]*UFJJVkFURSBLRVk|[a-z0-9]{6}\.[a-z0-9]{16}' deploy scripts Dockerfile README.md; then
  die "the files above look like they hold a private key or token"
fi
echo "check-deploy: all deployment files OK"

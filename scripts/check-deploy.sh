#!/usr/bin/env bash
# Checks every deployment file offline, as rendered by `kubectl kustomize`
# (every kustomization and component in deploy/): Kubernetes kinds against the
# API schema (kubernetes-validate, pinned), Kamaji's TenantControlPlane against
# Kamaji's CRD strictly (scripts/check-crd.py), the cert-manager wiring and our
# image (scripts/check-manifests.py); the systemd unit (verify + security
# score), the Dockerfile's runtime user, base and version label, and that no
# key or token is committed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"

ensure_kubernetes_validate
command -v kubectl >/dev/null 2>&1 || apt_install kubernetes-client
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Every way deploy/ is applied, rendered as kubectl would apply it: the
# kubeadm Deployment and DaemonSet, Kamaji's TenantControlPlane, each of the
# first and the last also with the cert-manager component enabled.
# Kustomize takes no absolute paths: the two-part renders live under target/.
overlays="$ROOT/target/check-deploy"
render() {
  local name="$1" base="$2" component="${3:-}"
  mkdir -p "$overlays/$name"
  {
    echo "resources: [../../../$base]"
    [ -z "$component" ] || echo "components: [../../../$component]"
  } >"$overlays/$name/kustomization.yaml"
  kubectl kustomize "$overlays/$name" >"$tmp/$name.yaml"
}
render kubeadm deploy
render kubeadm-cert-manager deploy deploy/cert-manager
render kubeadm-daemonset deploy/kubeadm
render kamaji deploy/kamaji
render kamaji-cert-manager deploy/kamaji deploy/kamaji/cert-manager
render kamaji-capi deploy/kamaji-capi
grep -q "kind: Deployment" "$tmp/kubeadm.yaml" || die "kustomize rendered no Deployment"

# Built-in kinds against the Kubernetes schema; TenantControlPlanes against
# Kamaji's own CRD (tests/fixtures/kamaji), strictly; what the cert-manager
# kinds must agree on with the signer's volumes and image.
crd=tests/fixtures/kamaji/kamaji.clastix.io_tenantcontrolplanes.yaml
capi_crd=tests/fixtures/kamaji/controlplane.cluster.x-k8s.io_kamajicontrolplanes.yaml
image="$(default_image):$(default_tag)"
for f in "$tmp"/*.yaml; do
  python3 scripts/check-manifests.py builtin "$f" >"$f.builtin.yaml"
  [ -s "$f.builtin.yaml" ] && kubernetes-validate --strict --quiet "$f.builtin.yaml"
  python3 scripts/check-manifests.py wiring "$f" "$image"
  case "$f" in
    *kamaji-capi*) python3 scripts/check-crd.py "$capi_crd" "$f" ;;
    *kamaji*) python3 scripts/check-crd.py "$crd" "$f" ;;
  esac
done
# The CRD check can fail: a field Kamaji does not have is refused.
sed 's/additionalPorts:/additionalPortz:/' "$tmp/kamaji.yaml" >"$tmp/unknown-field.yaml"
if python3 scripts/check-crd.py "$crd" "$tmp/unknown-field.yaml" 2>/dev/null; then
  die "check-crd.py accepted a TenantControlPlane with an unknown field"
fi

# Kamaji's CRD embeds the container schema loosely: also validate the signer
# container and its volumes as the Pod they become.
for cp in kamaji-cert-manager kamaji-capi; do
  python3 scripts/check-manifests.py kamaji-pod "$tmp/$cp.yaml" >"$tmp/$cp-pod.json"
  kubernetes-validate --strict --quiet "$tmp/$cp-pod.json"
done
# The same for the KamajiControlPlane's CRD.
sed 's/additionalServicePorts:/additionalServicePortz:/' "$tmp/kamaji-capi.yaml" >"$tmp/unknown-capi.yaml"
if python3 scripts/check-crd.py "$capi_crd" "$tmp/unknown-capi.yaml" 2>/dev/null; then
  die "check-crd.py accepted a KamajiControlPlane with an unknown field"
fi

# No manifest, script or doc defaults to another project's image.
if grep -rnE 'image: *[^ ]*/|bsctl/talos-csr-signer|clastix/talos-csr-signer:' deploy scripts Dockerfile .ci |
    grep -v -e '^deploy/image/' -e '^scripts/check-deploy.sh:'; then
  die "the lines above name an image; ours is set only in deploy/image/kustomization.yaml"
fi

unit="$tmp/talos-csr-signer.service"
sed "s#/usr/local/bin/talos-csr-signer#$(command -v true)#" deploy/systemd/talos-csr-signer.service >"$unit"
systemd-analyze verify "$unit"
score="$(systemd-analyze security --offline=true "$unit" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
echo "systemd-analyze security: exposure $score"
awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || die "systemd exposure $score is above 2.0"

grep -Eq '^USER 65532(:65532)?$' Dockerfile || die "Dockerfile's runtime user is not 65532"
grep -q '^FROM scratch$' Dockerfile || die "Dockerfile's runtime image is not FROM scratch (the binary and its libraries only)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
grep -q "^ARG VERSION=$version\$" Dockerfile || die "Dockerfile's ARG VERSION is not Cargo.toml's version $version"

# No secrets in git: no PEM private keys, no base64 of one, no Talos-shaped tokens.
if grep -rIlE 'BEGIN ([A-Z0-9]+ )?PRIVATE KEY|LS0tLS1CRUdJTi[A-Za-z0-9+/]*UFJJVkFURSBLRVk|[a-z0-9]{6}\.[a-z0-9]{16}' deploy scripts Dockerfile README.md; then
  die "the files above look like they hold a private key or token"
fi
echo "check-deploy: all deployment files OK"

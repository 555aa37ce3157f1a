#!/usr/bin/env bash
# Installs the signer as a systemd service on this host (run as root):
#   scripts/install-systemd.sh DIR
# DIR holds ca.crt, ca.key and token (e.g. from `talos-csr-signer import --out DIR`).
# Installs /usr/local/bin/talos-csr-signer, the unit, /etc/talos-csr-signer/
# (root-only) and an env file for SERVER_IPS etc., then enables and starts it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need systemctl "this host does not run systemd"
[ "$(id -u)" -eq 0 ] || die "run as root"
src="${1:-}"
[ -n "$src" ] || die "usage: $0 DIR   (DIR holds ca.crt, ca.key and token)"
for f in ca.crt ca.key token; do
  [ -r "$src/$f" ] || die "$src/$f is missing"
done
bin="$(signer_bin)"
install -m 0755 "$bin" /usr/local/bin/talos-csr-signer
install -d -m 0700 /etc/talos-csr-signer
install -m 0644 "$src/ca.crt" /etc/talos-csr-signer/ca.crt
install -m 0600 "$src/ca.key" /etc/talos-csr-signer/ca.key
install -m 0600 "$src/token" /etc/talos-csr-signer/token
if [ ! -e /etc/talos-csr-signer/env ]; then
  install -m 0600 /dev/null /etc/talos-csr-signer/env
  printf '%s\n' '# Addresses workers dial (the VIP, this host), comma-separated:' 'SERVER_IPS=' \
    'SERVER_DNS_NAMES=' 'RUST_LOG=info' >/etc/talos-csr-signer/env
fi
install -m 0644 "$ROOT/deploy/systemd/talos-csr-signer.service" /etc/systemd/system/talos-csr-signer.service
/usr/local/bin/talos-csr-signer check --ca-cert /etc/talos-csr-signer/ca.crt \
  --ca-key /etc/talos-csr-signer/ca.key --token-file /etc/talos-csr-signer/token
systemctl daemon-reload
systemctl enable --now talos-csr-signer.service
systemctl --no-pager status talos-csr-signer.service

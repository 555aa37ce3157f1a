#!/usr/bin/env bash
# Installs the signer as a systemd service on this host (run as root):
#   scripts/install-systemd.sh DIR
# DIR holds ca.crt, ca.key and token (e.g. from `talos-csr-signer import --out DIR`).
# Installs /usr/local/bin/talos-csr-signer, the system user talos-csr-signer,
# /etc/talos-csr-signer/ (ca.crt 0644; ca.key and token 0640 root:talos-csr-signer;
# env 0600 for SERVER_IPS etc., kept if present) and the unit; checks the result
# as the service will run it (its user, its environment file); then starts the
# service, or restarts it when it was already running, so a re-run never leaves
# the old process serving old material on a deleted binary.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need systemctl "this host does not run systemd"
[ "$(id -u)" -eq 0 ] || die "run as root"
src="${1:-}"
[ -n "$src" ] || die "usage: $0 DIR   (DIR holds ca.crt, ca.key and token)"
for f in ca.crt ca.key token; do
  [ -r "$src/$f" ] || die "$src/$f is missing (talos-csr-signer import --from secrets.yaml --out $src writes it)"
done
bin="$(signer_bin)"
etc=/etc/talos-csr-signer
user=talos-csr-signer

getent group "$user" >/dev/null || groupadd --system "$user"
getent passwd "$user" >/dev/null ||
  useradd --system --gid "$user" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"

install -m 0755 "$bin" /usr/local/bin/talos-csr-signer
install -d -m 0750 -o root -g "$user" "$etc"
install -m 0644 -o root -g root "$src/ca.crt" "$etc/ca.crt"
install -m 0640 -o root -g "$user" "$src/ca.key" "$etc/ca.key"
install -m 0640 -o root -g "$user" "$src/token" "$etc/token"
if [ ! -e "$etc/env" ]; then
  install -m 0600 /dev/null "$etc/env"
  printf '%s\n' '# Addresses workers dial (the VIP, this host), comma-separated:' 'SERVER_IPS=' \
    'SERVER_DNS_NAMES=' 'RUST_LOG=info' >"$etc/env"
fi
install -m 0644 "$ROOT/deploy/systemd/talos-csr-signer.service" /etc/systemd/system/talos-csr-signer.service

# The configuration exactly as the service gets it: the unit's paths, the
# env file (systemd's KEY=VALUE lines), the service's user.
check_env=(CA_CERT_PATH="$etc/ca.crt" CA_KEY_PATH="$etc/ca.key" TALOS_TOKEN_FILE="$etc/token")
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in '' | '#'* | ';'*) continue ;; esac
  value="${line#*=}"
  # systemd drops one pair of surrounding quotes.
  case "$value" in \"*\" | \'*\') value="${value:1:${#value}-2}" ;; esac
  check_env+=("${line%%=*}=$value")
done <"$etc/env"
runuser -u "$user" -- env "${check_env[@]}" /usr/local/bin/talos-csr-signer check ||
  die "the configuration above does not load; fix the file it names and run this again"

systemctl daemon-reload
systemctl enable talos-csr-signer.service
if systemctl is-active --quiet talos-csr-signer.service; then
  # A new binary or unit needs a new process; material alone would reload.
  systemctl restart talos-csr-signer.service
else
  systemctl reset-failed talos-csr-signer.service 2>/dev/null || true
  systemctl start talos-csr-signer.service
fi
systemctl --no-pager status talos-csr-signer.service

#!/usr/bin/env bash
# Makes (once) the Debian 12 root file system the systemd tests boot with
# systemd-nspawn: debootstrap --variant=minbase plus systemd and iproute2, from
# Debian's mirror, in a cache directory outside the repository (reused when
# complete). Installs debootstrap and systemd-container when missing.
# Prints the directory; prints nothing and exits 0 where it cannot be made
# (not root, no mirror), so the tests can say why they skip.
# Env: TALOS_SYSTEMD_ROOTFS overrides the cache directory; DEBIAN_MIRROR the
# mirror (default: the first Debian URI in the apt sources, one-line
# sources.list or deb822 *.sources, whichever this machine has).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"

DIR="${TALOS_SYSTEMD_ROOTFS:-${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer/debian12-systemd}"
[ -x "$DIR/lib/systemd/systemd" ] && [ -e "$DIR/.complete" ] && { echo "$DIR"; exit 0; }
[ "$(id -u)" -eq 0 ] || { echo "systemd-rootfs: needs root to debootstrap" >&2; exit 0; }

command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
command -v systemd-nspawn >/dev/null 2>&1 || apt_install systemd-container
mirror="${DEBIAN_MIRROR:-$(debian_mirror)}"
mirror="${mirror:-http://deb.debian.org/debian}"
tmp="$DIR.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$DIR")"
echo "systemd-rootfs: debootstrap bookworm from $mirror (about a minute)" >&2
if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,iproute2 bookworm "$tmp" "$mirror" >"$tmp.log" 2>&1; then
  echo "systemd-rootfs: debootstrap failed, see $tmp.log" >&2
  exit 0
fi
rm -f "$tmp.log"
# No getty on the console and no network waits: the tests talk through nsenter.
ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
touch "$tmp/.complete"
rm -rf "$DIR"
mv "$tmp" "$DIR"
echo "$DIR"

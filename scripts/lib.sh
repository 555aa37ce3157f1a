# Shared by the scripts in this directory: settings with defaults, and checks
# that stop with a clear message when a tool is missing.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Our image as deploy/image/kustomization.yaml names it (the one place that
# does); IMAGE and TAG in the environment override it for the scripts.
default_image() {
  sed -n 's/^ *newName: *//p' "$ROOT/deploy/image/kustomization.yaml"
}
default_tag() {
  sed -n 's/^ *newTag: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/deploy/image/kustomization.yaml"
}

IMAGE="${IMAGE:-$(default_image)}"
TAG="${TAG:-$(default_tag)}"
NAMESPACE="${NAMESPACE:-talos-csr-signer}"

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "needs $1, which is not installed (${2:-install it and retry})"
}

# Installs Debian packages (through sudo when not root), refreshing the
# package lists once if a package is not found.
apt_install() {
  local as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  echo "$(basename "$0"): installing $*" >&2
  "${as_root[@]}" apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
    "${as_root[@]}" apt-get update >/dev/null
    "${as_root[@]}" apt-get install -y --no-install-recommends "$@" >/dev/null
  }
}

# Prints the script's header comment (its help) when asked.
help_if_asked() {
  case "${1:-}" in
    -h|--help)
      sed -n '2,/^set /p' "$0" | sed -e '/^set /d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
  esac
}

# The signer binary: a release build in this checkout, else one on PATH.
signer_bin() {
  if [ -x "$ROOT/target/release/talos-csr-signer" ]; then
    echo "$ROOT/target/release/talos-csr-signer"
  elif command -v talos-csr-signer >/dev/null 2>&1; then
    command -v talos-csr-signer
  else
    die "no talos-csr-signer binary: run scripts/build.sh first"
  fi
}

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

# kubernetes-validate, pinned: the Kubernetes API schema check that
# check-deploy.sh and the worker-config tests use.
ensure_kubernetes_validate() {
  local version=1.31.0
  kubernetes-validate --version 2>/dev/null | grep -q "$version" ||
    python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==$version"
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

# A throwaway machine CA for benchmarks and checks: DIR/ca.key, DIR/ca.crt
# (O=talos, CA:TRUE, keyCertSign) and a fresh DIR/token, key and token 0600.
make_test_ca() { # DIR, then openssl genpkey options (the key type)
  local d="$1"
  shift
  mkdir -p "$d"
  openssl genpkey "$@" -out "$d/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -subj /O=talos -days 365 -out "$d/ca.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,digitalSignature 2>/dev/null
  echo "$(openssl rand -hex 3).$(openssl rand -hex 8)" >"$d/token"
  chmod 600 "$d/ca.key" "$d/token"
}

# Re-runs the calling script, with the same arguments, in a private network
# namespace (needs root), so nothing it starts is reachable beyond loopback;
# inside it, brings loopback up. BIN (our signer) is passed on as SIGNER.
enter_private_netns() { # the script's arguments
  if [ -n "${BENCH_IN_NETNS:-}" ]; then
    ip link set lo up
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "needs root for a private network namespace (unshare --net)"
  exec unshare --net env BENCH_IN_NETNS=1 SIGNER="$BIN" bash "$0" "$@"
}

# One h2load run of trustd's Certificate call on 127.0.0.1:PORT with the
# CA directory's token and a request body from `loadgen body`; prints
# h2load's report. CPU "" leaves h2load unpinned, else pins it to that core.
h2load_certificate() { # CPU PORT CA_DIR BODY, then h2load options
  local cpu="$1" port="$2" dir="$3" body="$4" pin=()
  shift 4
  [ -n "$cpu" ] && pin=(taskset -c "$cpu")
  "${pin[@]}" h2load "$@" -H 'content-type: application/grpc' -H 'te: trailers' \
    -H "token: $(cat "$dir/token")" -d "$body" \
    "https://127.0.0.1:$port/securityapi.SecurityService/Certificate" 2>&1
}

# The first Debian archive URI apt uses here. Files that do not exist are
# skipped, so a machine with only deb822 sources (no sources.list) works,
# and no match at all is an empty answer, not an error.
debian_mirror() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  [ -d /etc/apt/sources.list.d ] && files+=(/etc/apt/sources.list.d)
  [ ${#files[@]} -gt 0 ] || return 0
  { grep -rhv '^[[:space:]]*#' "${files[@]}" 2>/dev/null || true; } |
    { grep -oE 'https?://[^ ]*/debian/?( |$)' || true; } | head -n 1 | tr -d ' '
}

# podman for our scripts and tests, never the Dockerfile or the commands
# users type: its own image store in our cache directory (so a run with empty
# caches, as CI's, starts with no image at all, and an operator's images are
# left alone), and what this machine needs and a normal one does not: runc
# where crun cannot run (cgroups in hybrid mode), and ulimits no higher than
# root may set (without CAP_SYS_RESOURCE podman's default of 1048576 open
# files fails). Exports CONTAINERS_CONF and CONTAINERS_STORAGE_CONF.
podman_here() {
  command -v podman >/dev/null 2>&1 || apt_install podman
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/talos-csr-signer/containers" files procs
  local conf="$dir/containers.conf" storage="$dir/storage.conf"
  mkdir -p "$dir"
  printf '[storage]\ndriver = "overlay"\ngraphroot = "%s/storage"\nrunroot = "%s/run"\n' \
    "$dir" "$dir" >"$storage"
  export CONTAINERS_STORAGE_CONF="$storage"
  files="$(ulimit -Hn)" procs="$(ulimit -Hu)"
  [ "$files" = unlimited ] && files=1048576
  # Seen here: the hard process limit itself was refused, 32768 was not.
  { [ "$procs" = unlimited ] || [ "$procs" -gt 32768 ]; } && procs=32768
  {
    echo '[containers]'
    echo "default_ulimits = [\"nofile=$files:$files\", \"nproc=$procs:$procs\"]"
    if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
      command -v runc >/dev/null 2>&1 || apt_install runc
      echo '[engine]'
      echo 'runtime = "runc"'
    fi
  } >"$conf"
  export CONTAINERS_CONF="$conf"
}

# The image the Dockerfile's build stage starts from (its `FROM … AS build`
# line, with or without a --platform).
dockerfile_base() {
  sed -n 's/^FROM \(--platform=[^ ]* \)\{0,1\}\([^ ]*\) AS build$/\2/p' "$ROOT/Dockerfile"
}

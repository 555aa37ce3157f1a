#!/usr/bin/env bash
# The container image, built from the Dockerfile users build:
#   scripts/image.sh bases   the base image the Dockerfile's FROM names
#                            (docker.io/library/debian:trixie), made from
#                            Debian's packages with debootstrap, so that the
#                            same Dockerfile builds here without a registry
#   scripts/image.sh build   localhost/talos-csr-signer:dev from the Dockerfile
#                            (Docker where an engine runs, else podman; no
#                            pull when the base is present), from the files
#                            git tracks (a clean context: no target/)
#   scripts/image.sh save FILE   the image as an OCI archive
#   scripts/image.sh extract DIR the image's files in DIR/root and DIR/run,
#                            which runs its binary here with the image's own
#                            loader and libraries (for side-by-side benchmarks)
# Env: IMAGE_TAG overrides localhost/talos-csr-signer:dev.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"

TAG="${IMAGE_TAG:-localhost/talos-csr-signer:dev}"
BASE="$(sed -n 's/^FROM \([^ ]*\) AS build$/\1/p' Dockerfile)"
[ -n "$BASE" ] || die "the Dockerfile has no 'FROM … AS build' line"

# Docker where its engine answers, else podman (root: this machine's way).
engine() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo docker
  else
    podman_here
    echo podman
  fi
}

bases() {
  local e
  e="$(engine)"
  [ "$e" = podman ] && podman_here
  if "$e" image inspect "$BASE" >/dev/null 2>&1; then
    echo "image: $BASE is there" >&2
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "needs root to debootstrap $BASE"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local suite="${BASE##*:}" dir mirror
  mirror="${DEBIAN_MIRROR:-$(debian_mirror)}"
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' RETURN
  echo "image: debootstrap $suite from ${mirror:-http://deb.debian.org/debian} as $BASE (about a minute)" >&2
  debootstrap --variant=minbase "$suite" "$dir/root" "${mirror:-http://deb.debian.org/debian}" >"$dir/log" 2>&1 ||
    { tail -n 20 "$dir/log" >&2; die "debootstrap $suite failed"; }
  tar -C "$dir/root" -c . | "$e" import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  echo "image: made $BASE" >&2
}

build() {
  local e ctx version mounts=()
  e="$(engine)"
  [ "$e" = podman ] && podman_here
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' RETURN
  # What git knows of (committed or not), nothing it ignores.
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -c | tar -C "$ctx" -x
  version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
  # A container here reaches crates.io over HTTPS only with this machine's
  # CA bundle: mounted beside the image's own, and named to cargo.
  if [ "$e" = podman ] && [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mounts=(-v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
      --build-arg CARGO_HTTP_CAINFO=/run/host-ca.crt)
  fi
  echo "image: building $TAG with $e (the first build compiles gRPC core: 15 minutes or more)" >&2
  "$e" build --pull=never "${mounts[@]}" --build-arg "VERSION=$version" -t "$TAG" "$ctx" >&2
  echo "image: built $TAG" >&2
}

save() {
  local e file="${1:?give the path of the archive}"
  e="$(engine)"
  [ "$e" = podman ] && podman_here
  rm -f "$file"
  "$e" save --format oci-archive -o "$file" "$TAG"
  echo "image: saved $TAG as $file" >&2
}

extract() {
  local e dir="${1:?give a directory}" id
  e="$(engine)"
  [ "$e" = podman ] && podman_here
  "$e" image inspect "$TAG" >/dev/null 2>&1 || die "no image $TAG: run $(basename "$0") build"
  rm -rf "$dir/root"
  mkdir -p "$dir/root"
  id="$("$e" create "$TAG")"
  "$e" export "$id" | tar -x -C "$dir/root"
  "$e" rm "$id" >/dev/null
  local loader libs
  loader="$(find "$dir/root/lib64" "$dir/root/lib" -name 'ld-linux*.so*' 2>/dev/null | head -n 1)"
  libs="$(dirname "$(find "$dir/root" -name 'libc.so.6' | head -n 1)")"
  { [ -n "$loader" ] && [ -n "$libs" ]; } || die "no loader or libc in $TAG"
  printf '#!/bin/sh\n# %s'"'"'s binary with its own loader and libraries.\nexec %s --library-path %s %s "$@"\n' \
    "$TAG" "$loader" "$libs" "$dir/root/usr/local/bin/talos-csr-signer" >"$dir/run"
  chmod +x "$dir/run"
  echo "$dir/run"
}

case "${1:-}" in
  bases) bases ;;
  build) bases; build ;;
  save) shift; save "$@" ;;
  extract) shift; extract "$@" ;;
  *) die "usage: $(basename "$0") bases|build|save FILE|extract DIR" ;;
esac

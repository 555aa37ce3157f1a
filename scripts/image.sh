#!/usr/bin/env bash
# The container image, built from the Dockerfile users build:
#   scripts/image.sh bases   the base image the Dockerfile's FROM names
#                            (docker.io/library/debian:trixie), made from
#                            Debian's packages with debootstrap, so that the
#                            same Dockerfile builds here without a registry
#   scripts/image.sh build   localhost/talos-csr-signer:dev from the Dockerfile,
#                            from the files git tracks (a clean context: no
#                            target/), with no pull when the base is present.
#                            With podman: one manifest list (OCI image index)
#                            for linux/amd64 and linux/arm64, each built on
#                            this machine (the Dockerfile cross-compiles).
#                            With a Docker engine: this machine's platform
#                            (for both, `docker buildx build --platform …`
#                            pushing to a registry, as the README says)
#   scripts/image.sh save FILE   the image (every platform) as an OCI archive
#   scripts/image.sh extract DIR [ARCH]
#                            the image's files for ARCH (default: this
#                            machine's) in DIR/root, and DIR/run, which runs
#                            its binary here with the image's own loader and
#                            libraries (a foreign ARCH under qemu-user): for
#                            side-by-side benchmarks and the arm64 test
# Env: IMAGE_TAG overrides localhost/talos-csr-signer:dev; IMAGE_PLATFORMS
# (podman) overrides linux/amd64,linux/arm64.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"

TAG="${IMAGE_TAG:-localhost/talos-csr-signer:dev}"
BASE="$(dockerfile_base)"
[ -n "$BASE" ] || die "the Dockerfile has no 'FROM … AS build' line"

# This machine's architecture in Debian's and the OCI's spelling (amd64, arm64).
native_arch() {
  dpkg --print-architecture 2>/dev/null || case "$(uname -m)" in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) uname -m ;;
  esac
}

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
  if [ "$e" = docker ]; then
    echo "image: building $TAG for linux/$(native_arch) with docker (the first build compiles gRPC core: 15 minutes or more)" >&2
    docker build --pull=never "${mounts[@]}" --build-arg "VERSION=$version" -t "$TAG" "$ctx" >&2
  else
    local platforms="${IMAGE_PLATFORMS:-linux/amd64,linux/arm64}"
    echo "image: building $TAG for $platforms with podman (gRPC core is compiled once per platform: 15 minutes or more each)" >&2
    # A new list each time: `--manifest` adds to an existing one.
    podman manifest rm "$TAG" >/dev/null 2>&1 || podman rmi "$TAG" >/dev/null 2>&1 || true
    # podman 4 does not set BUILDPLATFORM itself (BuildKit does): the build
    # stage runs here and cross-compiles for each target.
    podman build --pull=never "${mounts[@]}" --build-arg "VERSION=$version" \
      --build-arg "BUILDPLATFORM=linux/$(native_arch)" \
      --platform "$platforms" --manifest "$TAG" "$ctx" >&2
  fi
  echo "image: built $TAG" >&2
}

save() {
  local e file="${1:?give the path of the archive}"
  e="$(engine)"
  [ "$e" = podman ] && podman_here
  mkdir -p "$(dirname "$file")"
  rm -f "$file"
  if [ "$e" = podman ] && podman manifest inspect "$TAG" >/dev/null 2>&1; then
    # The index and every platform's image.
    podman manifest push --all --quiet "$TAG" "oci-archive:$file"
  else
    "$e" save --format oci-archive -o "$file" "$TAG"
  fi
  echo "image: saved $TAG as $file" >&2
}

# The image for linux/ARCH: where TAG is a manifest list (podman), its
# instance by digest (podman 4 resolves a list by name to this machine's
# platform only, whatever --platform says); else TAG itself.
instance() {
  local e="$1" arch="$2" digest repo="$TAG"
  if [ "$e" = podman ] && podman manifest exists "$TAG"; then
    digest="$(podman manifest inspect "$TAG" | python3 -c '
import json, sys
arch = sys.argv[1]
for m in json.load(sys.stdin)["manifests"]:
    if m["platform"]["os"] == "linux" and m["platform"]["architecture"] == arch:
        print(m["digest"])
        break
' "$arch")"
    [ -n "$digest" ] || die "$TAG has no linux/$arch image"
    case "${TAG##*/}" in *:*) repo="${TAG%:*}" ;; esac
    echo "$repo@$digest"
  else
    echo "$TAG"
  fi
}

extract() {
  local e dir="${1:?give a directory}" arch="${2:-$(native_arch)}" id
  e="$(engine)"
  [ "$e" = podman ] && podman_here
  { [ "$e" = podman ] && podman manifest exists "$TAG"; } || "$e" image inspect "$TAG" >/dev/null 2>&1 ||
    die "no image $TAG: run $(basename "$0") build"
  rm -rf "$dir/root"
  mkdir -p "$dir/root"
  id="$("$e" create "$(instance "$e" "$arch")")"
  "$e" export "$id" | tar -x -C "$dir/root"
  "$e" rm "$id" >/dev/null
  local loader libs bin="$dir/root/usr/local/bin/talos-csr-signer"
  loader="$({ find "$dir/root/lib64" "$dir/root/lib" -name 'ld-linux*.so*' 2>/dev/null || true; } | head -n 1)"
  libs="$(dirname "$(find "$dir/root" -name 'libc.so.6' | head -n 1)")"
  { [ -n "$loader" ] && [ -n "$libs" ]; } || die "no loader or libc in $TAG for $arch"
  if [ "$arch" = "$(native_arch)" ]; then
    printf '#!/bin/sh\n# %s'"'"'s binary with its own loader and libraries.\nexec %s --library-path %s %s "$@"\n' \
      "$TAG" "$loader" "$libs" "$bin" >"$dir/run"
  else
    # qemu-user runs the foreign binary, with the image's files as the root
    # its loader and libraries are found under.
    local qemu
    case "$arch" in
      arm64) qemu="qemu-aarch64-static" ;;
      *) die "no qemu-user for $arch here" ;;
    esac
    command -v "$qemu" >/dev/null 2>&1 || apt_install qemu-user-static
    printf '#!/bin/sh\n# %s'"'"'s %s binary under qemu-user, with the image as its library root.\nexec %s -L %s %s "$@"\n' \
      "$TAG" "$arch" "$(command -v "$qemu")" "$dir/root" "$bin" >"$dir/run"
  fi
  chmod +x "$dir/run"
  echo "$dir/run"
}

case "${1:-}" in
  bases) bases ;;
  build) bases; build ;;
  save) shift; save "$@" ;;
  extract) shift; extract "$@" ;;
  *) die "usage: $(basename "$0") bases|build|save FILE|extract DIR [ARCH]" ;;
esac

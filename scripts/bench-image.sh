#!/usr/bin/env bash
# Our container image beside the Go talos-csr-signer's, made the same way here
# (its static binary from ../shared/peer in FROM scratch with what
# distroless/static carries: passwd and group for nonroot, nsswitch.conf, CA
# certificates, tzdata, /tmp), as a Markdown table: image size uncompressed
# and compressed as pushed (gzip layers), start to ready (podman start to the
# first TLS handshake through the published port; median of 5), and memory of
# the running container at idle (the process's PSS and private memory, and
# the cgroup's usage).
#   scripts/bench-image.sh [GO_BINARY]   (needs root, podman, the image built
#                                          by scripts/image.sh build, and loadgen)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
cd "$ROOT"
GO_SIGNER="${1:-$ROOT/../shared/peer/talos-csr-signer-go}"
OURS="${IMAGE_TAG:-localhost/talos-csr-signer:dev}"
GO_IMAGE=localhost/talos-csr-signer-go:bench
LOADGEN="$ROOT/target/release/loadgen"
[ -x "$GO_SIGNER" ] || die "no Go signer at $GO_SIGNER"
[ -x "$LOADGEN" ] || die "build first: cargo build --release --features loadgen --bins"
[ "$(id -u)" -eq 0 ] || die "needs root (podman here)"
podman_here
podman image exists "$OURS" || die "no image $OURS: run scripts/image.sh build"
base="$(dockerfile_base)"

work="$(mktemp -d)"
trap 'podman ps -aq --filter name=bench- | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# The Go image: what gcr.io/distroless/static-debian12 carries, from Debian's
# packages in the same base, and the Go binary.
mkdir -p "$work/go"
cp "$GO_SIGNER" "$work/go/talos-csr-signer-go"
cat >"$work/go/Containerfile" <<EOF
FROM $base AS files
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tzdata \\
 && mkdir -p /out/etc/ssl/certs /out/usr/share /out/tmp /out/home/nonroot \\
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \\
 && cp -a /usr/share/zoneinfo /out/usr/share/ \\
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/out/etc/passwd \\
 && printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >/out/etc/group \\
 && echo 'hosts: files dns' >/out/etc/nsswitch.conf \\
 && chmod 1777 /out/tmp && chown 65532:65532 /out/home/nonroot
FROM scratch
COPY --from=files /out/ /
COPY talos-csr-signer-go /talos-csr-signer
USER 65532:65532
ENTRYPOINT ["/talos-csr-signer"]
EOF
podman build --pull=never -q -t "$GO_IMAGE" "$work/go" >/dev/null

size() { podman image inspect --format '{{.Size}}' "$1"; }
compressed() { # the gzip'd layers, as a push sends them
  rm -rf "$work/layers"
  podman save --format docker-dir --compress -o "$work/layers" "$1" >/dev/null 2>&1
  find "$work/layers" -type f -size +10k -printf '%s\n' | awk '{ s += $1 } END { print s }'
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

# Material both run with: an Ed25519 machine CA and a token, readable by 65532.
make_test_ca "$work/ca" -algorithm ed25519
chmod -R a+rX "$work/ca"
chmod a+r "$work/ca/ca.key" "$work/ca/token"
token="$(cat "$work/ca/token")"

run() { # NAME IMAGE PORT: a started container, the Go signer's way of configuring
  podman create --name "$1" --read-only --user 65532:65532 --cap-drop ALL \
    --security-opt no-new-privileges -p "127.0.0.1:$3:50001" \
    -v "$work/ca:/etc/talos-ca:ro" -e CA_CERT_PATH=/etc/talos-ca/ca.crt -e CA_KEY_PATH=/etc/talos-ca/ca.key \
    -e TALOS_TOKEN="$token" -e SERVER_IPS=127.0.0.1 "$2" >/dev/null
  local t0
  t0="$(date +%s%N)"
  podman start "$1" >/dev/null
  "$LOADGEN" ready --target "127.0.0.1:$3" --since-unix-ns "$t0" --timeout-ms 20000 | sed -n 's/^ready_ms=//p'
}

ready_ms() { # IMAGE PORT: median start-to-ready of 5
  local _ times=()
  for _ in 1 2 3 4 5; do
    times+=("$(run bench-x "$1" "$2")")
    podman rm -f -t 0 bench-x >/dev/null
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}

# Memory of N idle containers of IMAGE side by side (as a node runs several
# tenants' signers from one image, sharing its files' pages): mean PSS, mean
# anonymous memory (what each container owns), mean cgroup usage.
idle() { # IMAGE FIRST_PORT
  local n=5 i pid names=() pss=0 anon=0 cg=0
  for i in $(seq 1 "$n"); do
    run "bench-idle-$i" "$1" "$(( $2 + i ))" >/dev/null
    names+=("bench-idle-$i")
  done
  sleep 3
  for name in "${names[@]}"; do
    pid="$(podman inspect --format '{{.State.Pid}}' "$name")"
    read -r p a <<<"$(awk '/^Pss:/ { p = $2 } /^Anonymous:/ { a = $2 } END { print p * 1024, a * 1024 }' "/proc/$pid/smaps_rollup")"
    pss=$(( pss + p )) anon=$(( anon + a ))
    cg=$(( cg + $(podman stats --no-stream --format '{{.MemUsage}}' "$name" | awk '{
      v = $1; u = v; sub(/[0-9.]+/, "", u); sub(/[a-zA-Z]+$/, "", v)
      m = (u == "kB" ? 1e3 : u == "MB" ? 1e6 : u == "GB" ? 1e9 : 1); printf "%d", v * m }') ))
  done
  podman rm -f -t 0 "${names[@]}" >/dev/null
  echo "$(( pss / n )) $(( anon / n )) $(( cg / n ))"
}

# One container alone: all of its files' pages are its own.
alone() { # IMAGE PORT
  run bench-alone "$1" "$2" >/dev/null
  sleep 3
  local pid
  pid="$(podman inspect --format '{{.State.Pid}}' bench-alone)"
  awk '/^Rss:/ { print $2 * 1024 }' "/proc/$pid/smaps_rollup"
  podman rm -f -t 0 bench-alone >/dev/null
}

ours_ready="$(ready_ms "$OURS" 24101)"
go_ready="$(ready_ms "$GO_IMAGE" 24102)"
ours_rss="$(alone "$OURS" 24103)"
go_rss="$(alone "$GO_IMAGE" 24104)"
read -r ours_pss ours_anon ours_cg <<<"$(idle "$OURS" 24110)"
read -r go_pss go_anon go_cg <<<"$(idle "$GO_IMAGE" 24120)"
ours_size="$(size "$OURS")" go_size="$(size "$GO_IMAGE")"
ours_gz="$(compressed "$OURS")" go_gz="$(compressed "$GO_IMAGE")"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }
echo "| figure | Go signer's image | ours | ours / Go |"
echo "|---|---|---|---|"
row "image size, uncompressed" "$(mb "$go_size")" "$(mb "$ours_size")" "$(ratio "$ours_size" "$go_size")"
row "image size, compressed as pushed (gzip layers)" "$(mb "$go_gz")" "$(mb "$ours_gz")" "$(ratio "$ours_gz" "$go_gz")"
row "start to ready (podman start to the first TLS handshake, median of 5)" "$go_ready ms" "$ours_ready ms" "$(ratio "$ours_ready" "$go_ready")"
row "one idle container alone: the process's RSS (its image's pages all its own)" "$(mb "$go_rss")" "$(mb "$ours_rss")" "$(ratio "$ours_rss" "$go_rss")"
row "5 idle containers of the image side by side, each: PSS" "$(mb "$go_pss")" "$(mb "$ours_pss")" "$(ratio "$ours_pss" "$go_pss")"
row "… anonymous memory (what the container alone owns)" "$(mb "$go_anon")" "$(mb "$ours_anon")" "$(ratio "$ours_anon" "$go_anon")"
row "… the container's memory cgroup (podman stats)" "$(mb "$go_cg")" "$(mb "$ours_cg")" "$(ratio "$ours_cg" "$go_cg")"
echo
echo "Ed25519 machine CA; both read-only, UID 65532, no capabilities; $(podman --version); $(nproc) cores, Linux $(uname -r)."

# talos-csr-signer's image: the binary and exactly what it needs at run time,
# for linux/amd64 and linux/arm64 from one Dockerfile.
#
# Build stage: Debian 13 (trixie), its own Rust (1.85) and its OpenSSL 3.5,
# against which gRPC core is compiled (the system OpenSSL, never BoringSSL).
# It runs on the build machine's platform and cross-compiles for the target
# with Debian's packages only (multiarch libssl-dev, the GCC cross compiler and
# the Rust standard library Debian builds for each architecture): an emulated
# build of gRPC core would take hours.
# Runtime: FROM scratch with the binary, the shared libraries it links (its
# ELF NEEDED entries, followed to the end), a passwd/group entry for UID 65532,
# and OpenSSL's modules directory for a FIPS provider you mount.
# No shell, no package manager; runs as 65532 and with a read-only root.
# Like the Go talos-csr-signer's image, no arguments means `serve`.
#
#   docker build -t talos-csr-signer .          (scripts/image.sh build here)
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/talos-csr-signer:TAG --push .

FROM --platform=$BUILDPLATFORM docker.io/library/debian:trixie AS build
# Set by BuildKit and podman from --platform; without one, the build
# machine's own architecture.
ARG TARGETARCH
# The target's names in Debian's, GCC's and Rust's spelling, kept for the
# steps below.
RUN set -eu; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$arch" in \
      amd64) gnu=x86_64-linux-gnu gcc=x86-64-linux-gnu rust=x86_64-unknown-linux-gnu ;; \
      arm64) gnu=aarch64-linux-gnu gcc=aarch64-linux-gnu rust=aarch64-unknown-linux-gnu ;; \
      *) echo "talos-csr-signer builds for amd64 and arm64, not $arch" >&2; exit 1 ;; \
    esac; \
    printf 'arch=%s\ngnu=%s\ngcc=%s\nrust=%s\n' "$arch" "$gnu" "$gcc" "$rust" >/target.env; \
    dpkg --add-architecture "$arch"; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
      ca-certificates cargo rustc cmake make pkg-config g++ "g++-$gcc" \
      "libssl-dev:$arch" "libstd-rust-dev:$arch"; \
    rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
# Cargo.toml names the benchmark client's source; worker-config embeds the
# node RBAC manifest.
COPY benches benches
COPY deploy/04-talos-nodes-rbac.yaml deploy/04-talos-nodes-rbac.yaml
# The CA bundle cargo trusts for crates.io; behind a TLS-intercepting proxy,
# mount that proxy's bundle and point this at it (scripts/image.sh does).
ARG CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt
# Always built with --target and the target's GCC, native or not, so both
# platforms take the same path. pkg-config reads only the target's .pc files.
RUN set -eu; . /target.env; \
    up="$(echo "$rust" | tr a-z- A-Z_)"; low="$(echo "$rust" | tr - _)"; \
    export "CARGO_TARGET_${up}_LINKER=$gnu-gcc" \
      "CC_$low=$gnu-gcc" "CXX_$low=$gnu-g++" "AR_$low=$gnu-ar" \
      PKG_CONFIG_ALLOW_CROSS=1 \
      PKG_CONFIG_LIBDIR="/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"; \
    cargo build --release --locked --target "$rust" --bin talos-csr-signer; \
    mkdir -p /out; \
    "$gnu-strip" -o /out/talos-csr-signer "target/$rust/release/talos-csr-signer"
# The runtime file system, in /rootfs: the binary, its dynamic loader and
# every library its NEEDED entries reach (read with readelf, as ldd cannot
# run a foreign binary), found where the target's loader looks.
RUN set -eu; . /target.env; \
    mkdir -p /rootfs/usr/local/bin /rootfs/etc /rootfs/home/nonroot; \
    cp /out/talos-csr-signer /rootfs/usr/local/bin/; \
    loader="$("$gnu-readelf" -l /out/talos-csr-signer | sed -n 's/.*interpreter: \(.*\)]$/\1/p')"; \
    [ -n "$loader" ]; \
    cp --parents -L "$loader" /rootfs/; \
    todo=/out/talos-csr-signer; seen=" $(basename "$loader") "; \
    while [ -n "$todo" ]; do \
      next=; \
      for f in $todo; do \
        for lib in $("$gnu-readelf" -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do \
          case "$seen" in *" $lib "*) continue ;; esac; \
          seen="$seen$lib "; \
          path=; \
          for d in "/lib/$gnu" "/usr/lib/$gnu"; do \
            if [ -e "$d/$lib" ]; then path="$d/$lib"; break; fi; \
          done; \
          [ -n "$path" ] || { echo "no $lib for $gnu" >&2; exit 1; }; \
          cp --parents -L "$path" /rootfs/; \
          next="$next $path"; \
        done; \
      done; \
      todo="$next"; \
    done; \
    mkdir -p "/rootfs/usr/lib/$gnu/ossl-modules"; \
    echo 'root:x:0:0:root:/root:/sbin/nologin' >/rootfs/etc/passwd; \
    echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >>/rootfs/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' >/rootfs/etc/group; \
    chown 65532:65532 /rootfs/home/nonroot

FROM scratch
# Cargo.toml's version (scripts/check-deploy.sh checks that they agree).
ARG VERSION=0.1.0
COPY --from=build /rootfs/ /
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 50001
ENTRYPOINT ["/usr/local/bin/talos-csr-signer"]
LABEL org.opencontainers.image.title="talos-csr-signer" \
      org.opencontainers.image.description="Talos trustd-compatible certificate signer for Talos workers on kubeadm/Kamaji control planes" \
      org.opencontainers.image.source="https://github.com/talos-csr-signer/talos-csr-signer" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.licenses="Apache-2.0"

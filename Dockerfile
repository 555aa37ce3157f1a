# talos-csr-signer's image: the binary and exactly what it needs at run time.
#
# Build stage: Debian 13 (trixie), its own Rust (1.85) and its OpenSSL 3.5,
# against which gRPC core is compiled (the system OpenSSL, never BoringSSL).
# Runtime: FROM scratch with the binary, the shared libraries it links (found
# with ldd, copied where the dynamic loader looks), a passwd/group entry for
# UID 65532, and OpenSSL's modules directory for a FIPS provider you mount.
# No shell, no package manager; runs as 65532 and with a read-only root.
# Like the Go talos-csr-signer's image, no arguments means `serve`.
#
#   docker build -t talos-csr-signer .          (scripts/image.sh build here)

FROM docker.io/library/debian:trixie AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates cargo rustc cmake g++ make pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
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
RUN cargo build --release --locked --bin talos-csr-signer \
 && strip target/release/talos-csr-signer
# The runtime file system, in /rootfs.
RUN set -eu; \
    mkdir -p /rootfs/usr/local/bin /rootfs/etc /rootfs/home/nonroot; \
    cp target/release/talos-csr-signer /rootfs/usr/local/bin/; \
    for lib in $(ldd target/release/talos-csr-signer | grep -o '/[^ ]*'); do \
      cp --parents -L "$lib" /rootfs/; \
    done; \
    modules="$(openssl version -m 2>/dev/null | sed -n 's/^MODULESDIR: "\(.*\)"$/\1/p')"; \
    [ -n "$modules" ] || modules="/usr/lib/$(gcc -dumpmachine)/ossl-modules"; \
    mkdir -p "/rootfs$modules"; \
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

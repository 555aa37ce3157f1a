# Multi-stage build: gRPC core is compiled against Debian 12's OpenSSL 3 in the
# build stage; the runtime image (distroless cc, Debian 12) provides exactly the
# libraries the binary links: glibc, libgcc_s, libstdc++ and libssl3/libcrypto3.
# No shell and no package manager at runtime; runs as UID 65532.

FROM docker.io/library/rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ make pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
# Cargo.toml names the benchmark client's source; worker-config embeds the
# node RBAC manifest.
COPY benches benches
COPY deploy/04-talos-nodes-rbac.yaml deploy/04-talos-nodes-rbac.yaml
RUN cargo build --release --locked --bin talos-csr-signer \
 && strip target/release/talos-csr-signer

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/talos-csr-signer /usr/local/bin/talos-csr-signer
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 50001
ENTRYPOINT ["/usr/local/bin/talos-csr-signer"]
CMD ["serve"]

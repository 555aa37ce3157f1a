#!/usr/bin/env bash
# Builds the container image $IMAGE:$TAG (default: our image as
# deploy/image/kustomization.yaml names it).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need docker "install Docker and start its engine"
docker build -t "$IMAGE:$TAG" "$ROOT"
echo "built $IMAGE:$TAG"

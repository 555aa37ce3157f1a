#!/usr/bin/env bash
# Builds and pushes $IMAGE:$TAG (log in to the registry first).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need docker "install Docker and start its engine"
"$ROOT/scripts/docker-build.sh"
docker push "$IMAGE:$TAG"

#!/usr/bin/env bash
# The whole path to a running deployment: build and push the image, then deploy.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
"$ROOT/scripts/docker-push.sh"
"$ROOT/scripts/deploy.sh"

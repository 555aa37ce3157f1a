#!/usr/bin/env bash
# Removes what deploy.sh applied (the Secret is kept; delete it yourself).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need kubectl
kubectl delete -k "$ROOT/deploy" --ignore-not-found

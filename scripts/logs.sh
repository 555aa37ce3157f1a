#!/usr/bin/env bash
# Prints the signer pods' logs; -f follows them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
help_if_asked "${1:-}"
need kubectl
follow=()
[ "${1:-}" = "-f" ] && follow=(-f)
kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/name=talos-csr-signer --prefix --tail=200 "${follow[@]}"

#!/usr/bin/env bash
# Builds helm (for `helm template` / `helm lint` of the generated chart in cdk8s/helm.test.ts) from
# the Go module proxy into a cache outside the repo; prints the binary's path. Idempotent.
#
#   hack/helm/ensure.sh                 # build (or reuse); prints the path
# Environment: INFER_GATEWAY_CACHE (default ~/.cache/infer-gateway), HELM_VERSION, GO.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
CACHE_ROOT="${INFER_GATEWAY_CACHE:-$HOME/.cache/infer-gateway}"
DIR="$CACHE_ROOT/tools/helm-$HELM_VERSION"
if [[ -x "$DIR/helm" ]] && "$DIR/helm" version --short >/dev/null 2>&1; then
  echo "$DIR/helm"
  exit 0
fi
if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
[[ -x "$GO" ]] || { echo "helm/ensure.sh: no Go toolchain" >&2; exit 1; }
mkdir -p "$DIR"
# Static and path-independent; nice: it competes with nothing that matters more.
CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="$DIR" nice -n 10 "$GO" install -trimpath -ldflags '-s -w' \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
"$DIR/helm" version --short >&2
echo "$DIR/helm"

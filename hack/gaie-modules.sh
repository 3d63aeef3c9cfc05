#!/usr/bin/env bash
# Upstream Gateway API Inference Extension and Gateway API sources (CRDs, sample manifests,
# conformance objects) that the GAIE tests apply to the real API server. Fetched as Go modules at
# exact versions into the project's Go cache (never copied into the repo); instant when cached.
set -euo pipefail
CACHE_ROOT="${INFER_GATEWAY_CACHE:-$HOME/.cache/infer-gateway}"
if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
export GOPATH="$CACHE_ROOT/go" GOMODCACHE="$CACHE_ROOT/go/pkg/mod" GOFLAGS=-modcacherw GOTOOLCHAIN=local
MODULES=(
  sigs.k8s.io/gateway-api-inference-extension@v1.6.0 # InferencePool v1 CRD, test/cel
  sigs.k8s.io/gateway-api-inference-extension@v1.2.0 # InferenceObjective CRD, samples, conformance objects
  sigs.k8s.io/gateway-api@v1.6.3                     # HTTPRoute/Gateway standard CRDs
)
cd "$(mktemp -d)"
for m in "${MODULES[@]}"; do
  dir="$GOMODCACHE/${m%@*}@${m#*@}"
  if [[ -d "$dir" ]]; then continue; fi
  echo "==> downloading $m (Go module proxy)"
  "$GO" mod download -json "$m" >/dev/null
done
echo "==> GAIE / Gateway API modules in $GOMODCACHE/sigs.k8s.io"

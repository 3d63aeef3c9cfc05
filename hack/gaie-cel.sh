#!/usr/bin/env bash
# Builds the upstream InferencePool CEL validation tests (gateway-api-inference-extension v1.6.0
# `test/cel`, a Go test binary) once into the cache; test/gaie-operator.test.ts runs it with
# KUBECONFIG pointing at the real API server our operator is writing status on. Prints the path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${INFER_GATEWAY_CACHE:-$HOME/.cache/infer-gateway}"
OUT="$CACHE_ROOT/gaie-cel/cel.test"
if [[ -x "$OUT" ]]; then
  echo "$OUT"
  exit 0
fi
bash "$here/gaie-modules.sh" >&2
if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
export GOPATH="$CACHE_ROOT/go" GOMODCACHE="$CACHE_ROOT/go/pkg/mod" GOFLAGS="-modcacherw -mod=mod" \
  GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
mkdir -p "$(dirname "$OUT")"
echo "==> building the upstream GAIE test/cel binary (Go module proxy; once)" >&2
(cd "$GOMODCACHE/sigs.k8s.io/gateway-api-inference-extension@v1.6.0" &&
  "$GO" test -c -trimpath -o "$OUT.tmp" ./test/cel >&2)
mv "$OUT.tmp" "$OUT"
echo "$OUT"

#!/usr/bin/env bash
# Builds (or reuses) the Go ext_proc client of test/epp.test.ts and hack/bench/epp.ts from the Go
# module proxy (go-control-plane's generated Envoy types, grpc-go), with the module and build caches
# under the project's cache, outside the repo. Idempotent: the binary is keyed by a hash of the
# sources and the Go version; a hit costs nothing.
#
#   test/epp-client/build.sh              # build if needed, print the binary's path
# Environment: INFER_GATEWAY_CACHE (default ~/.cache/infer-gateway), GO (default: go on PATH,
# else /usr/local/go/bin/go).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${INFER_GATEWAY_CACHE:-$HOME/.cache/infer-gateway}"
if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
if [[ ! -x "$GO" ]]; then
  echo "epp-client/build.sh: no Go toolchain (looked for go on PATH and /usr/local/go/bin/go)" >&2
  exit 1
fi
key="$( (cat "$here/go.mod" "$here/go.sum" "$here"/*.go; "$GO" env GOVERSION) | sha256sum | cut -c1-16)"
out="$CACHE_ROOT/epp-client/$key/epp-client"
if [[ ! -x "$out" ]]; then
  echo "==> building the ext_proc test client (go-control-plane) into $out" >&2
  mkdir -p "$(dirname "$out")"
  (
    cd "$here"
    export GOMODCACHE="$CACHE_ROOT/go/pkg/mod" GOCACHE="$CACHE_ROOT/go-build" GOFLAGS=-modcacherw \
      GOTOOLCHAIN=local CGO_ENABLED=0
    "$GO" build -trimpath -o "$out.tmp" .
  )
  mv "$out.tmp" "$out"
fi
echo "$out"

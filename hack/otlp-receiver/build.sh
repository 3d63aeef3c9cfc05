#!/usr/bin/env bash
# Builds the OTLP receiver the tracing tests export to (main.go: the OpenTelemetry Collector's own
# otlpreceiver writing what it receives, or only how many spans, to a file) from the Go module
# proxy, into a cache outside the repo. Idempotent: a stamp records the inputs; when they match
# nothing runs (~1 min cold on 2 cores once the modules are downloaded).
#
#   hack/otlp-receiver/build.sh              # build (or reuse)
#   hack/otlp-receiver/build.sh --print-bin  # path of the binary
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${INFER_GATEWAY_CACHE:-$HOME/.cache/infer-gateway}"
# The collector release go.mod pins (receiver/otlpreceiver v0.120.0).
VERSION="collector-v0.120.0"
BIN="$CACHE_ROOT/tools/otlp-receiver-$VERSION/otlp-receiver"
if [[ "${1:-}" == "--print-bin" ]]; then
  echo "$BIN"
  exit 0
fi
if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
sum="$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"
want="$VERSION src=$sum go=$("$GO" env GOVERSION)"
if [[ -x "$BIN" && -f "$BIN.stamp" && "$(cat "$BIN.stamp")" == "$want" ]]; then
  echo "==> otlp-receiver up to date ($BIN)"
  exit 0
fi
echo "==> building the OTLP receiver ($VERSION) into $BIN"
mkdir -p "$(dirname "$BIN")"
start=$(date +%s)
(cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local \
  "$GO" build -trimpath -ldflags='-s -w' -o "$BIN.tmp" .)
mv "$BIN.tmp" "$BIN"
echo "$want" >"$BIN.stamp"
echo "    done in $(($(date +%s) - start))s"

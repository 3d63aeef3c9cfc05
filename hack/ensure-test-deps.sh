#!/usr/bin/env bash
# Runs before `npm test` (the `pretest` script): makes sure the real parts the tests start exist.
#  - redis-server (global rate limits): Debian package, installed when missing and we may (root).
#  - kube-apiserver + etcd + kubectl (operator tests): built once from the Go module proxy into a
#    cache outside the repo (~4 min cold on 2 cores; instant afterwards).
#  - otlp-receiver (tracing tests): the OpenTelemetry Collector's OTLP receiver, same way.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing redis-server (Debian package) for the rate-limit tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: install it (e.g. 'sudo apt-get install redis-server') and re-run" >&2
    exit 1
  fi
fi
bash "$here/cluster/ensure.sh"
# The OTLP receiver the tracing tests export to (the Collector's otlpreceiver, Go module proxy).
bash "$here/otlp-receiver/build.sh"
# Node 24 (the image's LTS) from the npm registry, so the build test runs the data-plane bundle on
# it; a registry failure only skips that check (the test says why).
npx tsx "$here/sea/node-dist.ts" >/dev/null || echo "==> Node 24 from the npm registry unavailable: its build check will be skipped"

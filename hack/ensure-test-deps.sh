#!/usr/bin/env bash
# Runs before `npm test` (the `pretest` script): makes sure the real parts the tests start exist.
#  - redis-server (global rate limits): Debian package, installed when missing and we may (root).
#  - kube-apiserver + etcd + kubectl (operator tests): built once from the Go module proxy into a
#    cache outside the repo (~4 min cold on 2 cores; instant afterwards).
#  - the upstream GAIE and Gateway API modules (CRDs, samples) the GAIE tests apply, and GAIE's
#    test/cel Go test binary (built once, ~minutes cold) they run against the real API server.
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
# The Go ext_proc client of test/epp.test.ts (go-control-plane's Envoy types; minutes cold, cached).
bash "$here/../test/epp-client/build.sh" >/dev/null
bash "$here/gaie-modules.sh"
bash "$here/gaie-cel.sh" >/dev/null
# The OTLP receiver the tracing tests export to (the Collector's otlpreceiver, Go module proxy).
bash "$here/otlp-receiver/build.sh"
# Node 24 (the image's LTS) from the npm registry, so the build test runs the data-plane bundle on
# it; a registry failure only skips that check (the test says why).
npx tsx "$here/sea/node-dist.ts" >/dev/null || echo "==> Node 24 from the npm registry unavailable: its build check will be skipped"
# The container image test (hack/image/image.test.ts) unpacks the built image with umoci, runs it
# with runc and pushes it with skopeo to a docker-registry it starts on loopback (Debian packages);
# the chart test runs helm, built once from the Go module proxy. Either failing only skips those
# checks (the tests say why).
if ! command -v umoci >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 ||
  ! command -v skopeo >/dev/null 2>&1 || ! command -v docker-registry >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing umoci, runc, skopeo and docker-registry (Debian packages) for the image test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq umoci runc skopeo docker-registry >/dev/null; } ||
      echo "==> umoci/runc/skopeo/docker-registry unavailable: the image run/push checks will be skipped"
    # The package enables a registry on :5000; the test starts its own on loopback instead.
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi
bash "$here/helm/ensure.sh" >/dev/null || echo "==> helm could not be built: the chart's helm checks will be skipped"

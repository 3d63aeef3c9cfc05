#!/usr/bin/env bash
# What CI runs before the tests: build (or reuse) the control-plane binaries, then show what they are.
# Exits non-zero if a binary is missing or does not run, so CI fails here and not deep inside a test.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
start=$(date +%s)
bash "$here/build.sh"
bin="$(bash "$here/build.sh" --print-bin-dir)"
echo "==> control-plane binaries in $bin (ready after $(($(date +%s) - start))s)"
echo "    etcd:           $("$bin/etcd" --version | head -1)"
echo "    kube-apiserver: $("$bin/kube-apiserver" --version)"
echo "    kubectl:        $("$bin/kubectl" version --client 2>/dev/null | head -1)"

#!/usr/bin/env bash
# Builds a real local control plane (kube-apiserver, kubectl, etcd) from the Go module proxy into a
# cache OUTSIDE the repo, so tests run against the genuine API server rather than a mock.
#
# Idempotent: a stamp file records what was built with which flags; when it matches, nothing runs.
#
#   hack/cluster/build.sh            # build (or reuse) into $INFER_GATEWAY_CACHE/k8s/<version>/bin
#   hack/cluster/build.sh --print-bin-dir
#
# Environment:
#   INFER_GATEWAY_CACHE  cache root (default ~/.cache/infer-gateway)
#   K8S_VERSION          k8s.io/kubernetes version (default below)
#   ETCD_VERSION         go.etcd.io/etcd/server/v3 version (default below)
#   GO                   go binary (default: go on PATH, else /usr/local/go/bin/go)
#   KUBECTL              an existing kubectl to reuse when within one minor of K8S_VERSION
set -euo pipefail

# v1.34.4 is the newest 1.34 patch on the module proxy and builds cleanly with Go 1.26 (1.35/1.36 were
# not tried); etcd 3.6 is the line Kubernetes 1.34 itself is tested against.
K8S_VERSION="${K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.5}"
CACHE_ROOT="${INFER_GATEWAY_CACHE:-$HOME/.cache/infer-gateway}"
ROOT="$CACHE_ROOT/k8s/$K8S_VERSION"
BIN="$ROOT/bin"
STAMP="$BIN/.stamp"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$BIN"
  exit 0
fi

if [[ -z "${GO:-}" ]]; then
  if command -v go >/dev/null 2>&1; then GO="$(command -v go)"; else GO=/usr/local/go/bin/go; fi
fi
if [[ ! -x "$GO" ]]; then
  echo "build.sh: no Go toolchain (looked for go on PATH and /usr/local/go/bin/go)" >&2
  exit 1
fi

# Static, stripped, path-independent binaries: no C toolchain needed, smaller, reproducible paths.
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
BUILD_FLAGS=(-trimpath)
# The stamp covers every input that changes the output, so a flag change triggers a rebuild.
STAMP_WANT="k8s=$K8S_VERSION etcd=$ETCD_VERSION go=$("$GO" env GOVERSION) flags=${BUILD_FLAGS[*]} -s -w v2"

step_start=0
step() {
  step_start=$(date +%s)
  echo "==> $*"
}
step_done() {
  echo "    done in $(($(date +%s) - step_start))s"
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_WANT" ]] &&
  [[ -x "$BIN/kube-apiserver" && -x "$BIN/etcd" && -x "$BIN/kubectl" ]]; then
  echo "==> control-plane binaries up to date in $BIN ($STAMP_WANT)"
  exit 0
fi

total_start=$(date +%s)
mkdir -p "$BIN"
rm -f "$STAMP"
echo "==> building Kubernetes $K8S_VERSION and etcd $ETCD_VERSION with $("$GO" env GOVERSION) into $BIN"

# --- kube-apiserver / kubectl ------------------------------------------------------------------
# k8s.io/kubernetes cannot be `go install`ed directly: its go.mod requires the k8s.io/* staging
# modules at v0.0.0 and replaces them with ./staging paths, and replace directives only count in
# the main module. So we make a tiny main module that requires it and replaces each staging
# module with its published v0.MINOR.PATCH tag.
K8S_MOD="$ROOT/mod-kubernetes"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
mkdir -p "$K8S_MOD"

step "resolve k8s.io/kubernetes@$K8S_VERSION and its staging modules"
# A placeholder main module first: -mod=mod is only accepted inside a module.
[[ -f "$K8S_MOD/go.mod" ]] || printf 'module infer-gateway.local/k8s-build\n\ngo 1.24\n' >"$K8S_MOD/go.mod"
# The upstream go.mod lands in the module cache; download fetches the module zip only once.
upstream_mod="$(cd "$K8S_MOD" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$upstream_mod" || ! -f "$upstream_mod" ]]; then
  echo "build.sh: could not locate go.mod of k8s.io/kubernetes@$K8S_VERSION" >&2
  exit 1
fi
# Lines look like `k8s.io/api => ./staging/src/k8s.io/api` (inside a replace block).
mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$upstream_mod" | sort -u)
if [[ ${#staging[@]} -lt 10 ]]; then
  echo "build.sh: found only ${#staging[@]} staging replaces in $upstream_mod; layout changed?" >&2
  exit 1
fi
# The go and godebug lines decide runtime defaults (GODEBUG), so copy them to match upstream builds.
go_line="$(grep -m1 '^go ' "$upstream_mod")"
godebug_lines="$(grep '^godebug ' "$upstream_mod" || true)"
{
  echo "module infer-gateway.local/k8s-build"
  echo
  echo "$go_line"
  [[ -z "$godebug_lines" ]] || printf '\n%s\n' "$godebug_lines"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  for m in "${staging[@]}"; do echo "	$m => $m $STAGING_VERSION"; done
  echo ")"
} >"$K8S_MOD/go.mod.new"
if ! cmp -s "$K8S_MOD/go.mod.new" "$K8S_MOD/go.mod"; then
  mv "$K8S_MOD/go.mod.new" "$K8S_MOD/go.mod"
  rm -f "$K8S_MOD/go.sum"
else
  rm -f "$K8S_MOD/go.mod.new"
fi
echo "    ${#staging[@]} staging modules pinned to $STAGING_VERSION"
step_done

# Version stamping as kubernetes' hack/lib/version.sh does, so `kubectl version` and /version
# report the real version instead of v0.0.0-master (client-go and kubectl check skew with it).
minor="${K8S_VERSION#v1.}"
minor="${minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ldx=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldx+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldx+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done
K8S_LDFLAGS="-s -w$ldx"

step "download the module graph of kube-apiserver and kubectl"
(cd "$K8S_MOD" && "$GO" list -deps k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >/dev/null)
step_done

step "go build kube-apiserver"
(cd "$K8S_MOD" && "$GO" build "${BUILD_FLAGS[@]}" -ldflags="$K8S_LDFLAGS" -o "$BIN/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
mv "$BIN/kube-apiserver.tmp" "$BIN/kube-apiserver"
step_done

# kubectl: reuse one on the machine when its minor is within one of the server's (the supported
# skew); otherwise build it from the same module (most packages are already compiled by now).
kubectl_minor() {
  # The minor may carry a suffix ("32+"), and the JSON may be on one line or many.
  "$1" version --client -o json 2>/dev/null | tr -d '\n' | grep -o '"minor": *"[0-9]*' | head -1 | grep -o '[0-9]*$'
}
existing_kubectl="${KUBECTL:-$(command -v kubectl || true)}"
reuse=""
if [[ -n "$existing_kubectl" && -x "$existing_kubectl" ]]; then
  em="$(kubectl_minor "$existing_kubectl" || true)"
  if [[ -n "$em" ]] && ((em >= minor - 1 && em <= minor + 1)); then reuse="$existing_kubectl"; fi
fi
if [[ -n "$reuse" ]]; then
  step "reuse $reuse (client minor $em is within one of $minor)"
  ln -sf "$reuse" "$BIN/kubectl"
  step_done
else
  step "go build kubectl${existing_kubectl:+ ($existing_kubectl is too far from 1.$minor)}"
  (cd "$K8S_MOD" && "$GO" build "${BUILD_FLAGS[@]}" -ldflags="$K8S_LDFLAGS" -o "$BIN/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl)
  mv "$BIN/kubectl.tmp" "$BIN/kubectl"
  step_done
fi

# --- etcd ----------------------------------------------------------------------------------------
# Same reason as above: etcd's server module has replace directives (to its sibling modules), so
# `go install …@version` refuses it; a tiny main module resolves the siblings by their tags.
ETCD_MOD="$ROOT/mod-etcd"
mkdir -p "$ETCD_MOD"
step "go build etcd $ETCD_VERSION"
cat >"$ETCD_MOD/go.mod.new" <<EOF
module infer-gateway.local/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
if ! cmp -s "$ETCD_MOD/go.mod.new" "$ETCD_MOD/go.mod"; then
  mv "$ETCD_MOD/go.mod.new" "$ETCD_MOD/go.mod"
  rm -f "$ETCD_MOD/go.sum"
else
  rm -f "$ETCD_MOD/go.mod.new"
fi
(cd "$ETCD_MOD" && "$GO" build "${BUILD_FLAGS[@]}" -ldflags="-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
mv "$BIN/etcd.tmp" "$BIN/etcd"
step_done

echo "$STAMP_WANT" >"$STAMP"
echo "==> built in $(($(date +%s) - total_start))s:"
ls -la "$BIN"
du -sh "$BIN"

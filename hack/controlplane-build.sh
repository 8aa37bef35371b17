#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok, helm) from Go modules into a versioned cache directory, once.
#
# Kubernetes' own go.mod points its k8s.io/* staging modules at ./staging, which a module
# download does not have, so a small wrapper module requires k8s.io/kubernetes and replaces each
# staging module with its published v0.X.Y twin. Prints the bin directory on stdout.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE_ROOT=${RUNCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runctl}
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
OUT="$CACHE_ROOT/controlplane/$KEY"
BIN="$OUT/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

log() { printf '[controlplane] %s\n' "$*" >&2; }

# shellcheck source=lib/go-cache.sh
source "$(dirname "$0")/lib/go-cache.sh"
enter_cache "the control plane"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
started=$(date +%s)
step=0
total=${#BINARIES[@]}

progress() {
  step=$((step + 1))
  log "[$step/$total] building $1 ($(( $(date +%s) - started ))s elapsed so far)"
}

build_etcd() {
  local dir="$OUT/src/etcd"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// Command etcd runs the etcd server from its published server module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" && rm -f go.mod go.sum && go mod init runctl.local/etcd >/dev/null 2>&1 \
    && go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null 2>&1 \
    && go mod tidy >/dev/null 2>&1 \
    && go build -trimpath -o "$BIN/etcd.tmp" . && mv "$BIN/etcd.tmp" "$BIN/etcd")
}

build_kubernetes() {
  local dir="$OUT/src/kubernetes"
  mkdir -p "$dir"
  cd "$dir"
  rm -f go.mod go.sum
  go mod init runctl.local/kubernetes >/dev/null 2>&1
  log "downloading k8s.io/kubernetes@${K8S_VERSION} (large; first time only)"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"${STAGING_VERSION}"'#p' "$gomod"
  } >>go.mod
  cat >tools.go <<'GO'
//go:build tools

// Package tools pins the Kubernetes commands this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy -e >/dev/null 2>&1 || true
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    progress "$cmd"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
  cd - >/dev/null
}

install_tool() { # name module version
  progress "$1"
  GOBIN="$OUT/src/gobin" go install -trimpath -ldflags "-s -w" "$2@$3"
  mv "$OUT/src/gobin/$1" "$BIN/$1"
}

[ -x "$BIN/etcd" ] || { progress etcd; build_etcd; }
step=1
if ! { [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] \
  && [ -x "$BIN/kube-scheduler" ] && [ -x "$BIN/kubectl" ]; }; then
  build_kubernetes
else
  step=5
fi
[ -x "$BIN/kwok" ] || install_tool kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
[ -x "$BIN/helm" ] || install_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
complete || { log "build incomplete"; exit 1; }
log "control plane ready in $BIN ($(( $(date +%s) - started ))s)"
echo "$BIN"

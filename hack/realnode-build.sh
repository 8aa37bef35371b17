#!/usr/bin/env bash
# Builds what the real node runs (kubelet, containerd v2 with ctr and its runc shim, and the
# pause program every pod sandbox holds) into a versioned cache directory, once, beside the
# control plane. The kubelet comes from the same k8s.io/kubernetes version as the control
# plane, through the same kind of wrapper module. Prints the bin directory on stdout.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CACHE_ROOT=${RUNCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runctl}
KEY="k8s-${K8S_VERSION}_containerd-${CONTAINERD_VERSION}"
OUT="$CACHE_ROOT/realnode/$KEY"
BIN="$OUT/bin"
BINARIES=(kubelet containerd ctr containerd-shim-runc-v2 pause)

log() { printf '[realnode] %s\n' "$*" >&2; }

# shellcheck source=lib/go-cache.sh
source "$(dirname "$0")/lib/go-cache.sh"
enter_cache "the real node"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
started=$(date +%s)

build_kubelet() {
  log "building kubelet (a few minutes the first time)"
  local dir="$OUT/src/kubelet"
  mkdir -p "$dir"
  cd "$dir"
  rm -f go.mod go.sum
  go mod init runctl.local/kubelet >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "require k8s.io/kubernetes ${K8S_VERSION}"
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"${STAGING_VERSION}"'#p' "$gomod"
  } >>go.mod
  cat >tools.go <<'GO'
//go:build tools

// Package tools pins the Kubernetes command this module builds.
package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
GO
  go mod tidy -e >/dev/null 2>&1 || true
  local minor
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=${minor}"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/kubelet.tmp" k8s.io/kubernetes/cmd/kubelet
  mv "$BIN/kubelet.tmp" "$BIN/kubelet"
  cd - >/dev/null
}

build_containerd() {
  log "building containerd ${CONTAINERD_VERSION}, ctr and the runc shim"
  local gobin="$OUT/src/gobin"
  local ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=${CONTAINERD_VERSION}"
  for cmd in containerd ctr containerd-shim-runc-v2; do
    GOBIN="$gobin" go install -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "$ldflags" \
      "github.com/containerd/containerd/v2/cmd/${cmd}@${CONTAINERD_VERSION}"
    mv "$gobin/$cmd" "$BIN/$cmd"
  done
}

build_pause() {
  log "building pause"
  local dir="$OUT/src/pause"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// Command pause holds a pod sandbox's namespaces: it sleeps until told to stop and reaps the
// orphans it inherits as the sandbox's first process.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 8)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
GO
  (cd "$dir" && rm -f go.mod && go mod init runctl.local/pause >/dev/null 2>&1 \
    && go build -trimpath -ldflags "-s -w" -o "$BIN/pause.tmp" . && mv "$BIN/pause.tmp" "$BIN/pause")
}

[ -x "$BIN/pause" ] || build_pause
{ [ -x "$BIN/containerd" ] && [ -x "$BIN/ctr" ] && [ -x "$BIN/containerd-shim-runc-v2" ]; } \
  || build_containerd
[ -x "$BIN/kubelet" ] || build_kubelet
complete || { log "build incomplete"; exit 1; }
log "real node binaries ready in $BIN ($(( $(date +%s) - started ))s)"
echo "$BIN"

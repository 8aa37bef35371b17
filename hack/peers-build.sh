#!/usr/bin/env bash
# Builds the controllers the bench measures runctl beside (Argo Workflows' workflow-controller
# and Tekton Pipelines' controller) from their Go modules into a versioned cache directory, once.
#
# `go install module/cmd@version` refuses both: their go.mod files have replace directives. A
# small wrapper module requires the project's module, copies its replace directives and builds
# the command from there. Prints the bin directory on stdout.
set -euo pipefail

ARGO_VERSION=${ARGO_VERSION:-v3.7.18}
TEKTON_VERSION=${TEKTON_VERSION:-v1.12.0}
CACHE_ROOT=${RUNCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runctl}
KEY="argo-${ARGO_VERSION}_tekton-${TEKTON_VERSION}"
OUT="$CACHE_ROOT/peers/$KEY"
BIN="$OUT/bin"
BINARIES=(workflow-controller tekton-pipelines-controller)

log() { printf '[peers] %s\n' "$*" >&2; }

# shellcheck source=lib/go-cache.sh
source "$(dirname "$0")/lib/go-cache.sh"
enter_cache "the peers"
started=$(date +%s)

build() { # binary module version command ldflags
  local name=$1 module=$2 version=$3 command=$4 ldflags=$5
  local dir="$OUT/src/$name"
  log "building $name from $module@$version ($(( $(date +%s) - started ))s elapsed so far)"
  rm -rf "$dir"
  mkdir -p "$dir"
  cd "$dir"
  go mod init "runctl.local/$name" >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "require $module $version"
    # Single-line replace directives, as both projects write them.
    sed -n 's#^replace \([^ ]* => [^ ]* [^ ]*\).*#replace \1#p' "$gomod"
  } >>go.mod
  cat >tools.go <<GO
//go:build tools

// Package tools pins the command this module builds.
package tools

import _ "$module/$command"
GO
  go mod tidy -e >/dev/null 2>&1 || true
  go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$name.tmp" "$module/$command"
  mv "$BIN/$name.tmp" "$BIN/$name"
  cd - >/dev/null
}

ARGO=github.com/argoproj/argo-workflows/v3
[ -x "$BIN/workflow-controller" ] || build workflow-controller "$ARGO" "$ARGO_VERSION" \
  cmd/workflow-controller "-X $ARGO.version=$ARGO_VERSION -X $ARGO.gitTag=$ARGO_VERSION"
[ -x "$BIN/tekton-pipelines-controller" ] || build tekton-pipelines-controller \
  github.com/tektoncd/pipeline "$TEKTON_VERSION" cmd/controller ""
complete || { log "build incomplete"; exit 1; }
log "peers ready in $BIN ($(( $(date +%s) - started ))s)"
echo "$BIN"

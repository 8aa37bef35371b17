# Sourced by the scripts that build Go binaries into runctl's cache (hack/controlplane-build.sh,
# hack/peers-build.sh). Expects OUT (the cache entry), BIN (its bin directory), BINARIES (what
# must be there) and a `log` function.
#
# enter_cache WHAT: when every binary is already built, print BIN and exit 0. Otherwise check
# that Go is there, take the entry's lock (one build at a time per cache entry: a second caller
# waits, then finds the binaries built and exits the same way) and set Go's build environment;
# the caller then builds.

complete() {
  for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

enter_cache() {
  if complete; then
    echo "$BIN"
    exit 0
  fi
  command -v go >/dev/null || { log "go is required to build $1"; exit 1; }
  mkdir -p "$BIN" "$OUT/src"
  exec 9>"$OUT/build.lock"
  flock 9
  if complete; then
    echo "$BIN"
    exit 0
  fi
  export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
}

#!/usr/bin/env bash
# System packages the tests need beyond Python, Go and make: tmux, the real terminal in which
# `runctl watch` is tested; runc, the CNI plugins, busybox-static and debootstrap, which the real
# node (runctl.devcluster.realnode) runs containers with and makes its images from. Installed
# with apt-get where it can be; otherwise says what to install.
set -euo pipefail
missing=()
command -v tmux >/dev/null || missing+=(tmux)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ "${#missing[@]}" -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; }; then
  echo "[deps] installing ${missing[*]}" >&2
  $sudo apt-get install -y -q "${missing[@]}" >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; }
else
  echo "[deps] please install: ${missing[*]}" >&2
  exit 1
fi

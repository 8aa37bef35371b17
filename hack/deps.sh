#!/usr/bin/env bash
# System packages the tests need beyond Python, Go and make: tmux, the real terminal in which
# `runctl watch` is tested. Installed with apt-get where it can be; otherwise says what to install.
set -euo pipefail
missing=()
command -v tmux >/dev/null || missing+=(tmux)
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

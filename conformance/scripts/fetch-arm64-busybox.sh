#!/usr/bin/env bash
# Fetches Debian's static arm64 busybox (busybox-static:arm64) once, for build contexts whose
# RUN steps execute under QEMU in the conformance suite. Prints the binary's path.
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kbx/arm64"
bin="$cache/busybox"
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq busybox-static:arm64 2>/dev/null)
dpkg-deb -x "$work"/busybox-static_*_arm64.deb "$work/x"
mkdir -p "$cache"
install -m 0755 "$work/x/bin/busybox" "$bin.tmp"
mv "$bin.tmp" "$bin"
echo "$bin"

#!/usr/bin/env bash
# Fetches Debian's arm64 containerd (the second, emulated node of the conformance suite's
# two-node `local` cluster runs it under QEMU user emulation), Debian's arm64 docker-registry
# (the arm64 image of the multi-platform registry test image) and an arm64 sysroot with the
# shared libraries they load (libc6:arm64, libseccomp2:arm64), the same Debian versions as the
# host's amd64 packages. Only `apt-get download` and `dpkg-deb -x`: nothing is installed for
# arm64. Run the binaries with QEMU_LD_PREFIX=<cache>/sysroot. The result is cached outside the
# repository:
#
#   ${KBX_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}/containerd-arm64/
#       bin/containerd   Debian's containerd for arm64 (dynamically linked)
#       bin/docker-registry  Debian's docker-registry for arm64 (dynamically linked)
#       sysroot/         lib/aarch64-linux-gnu/… and lib/ld-linux-aarch64.so.1
#       SHA256SUMS       checksums of bin/* and the sysroot's files
#       RECIPE           hash of the package versions and these steps
#
# The arm64 containerd-shim-runc-v2 and runc do not run under bookworm's QEMU 7.2 (the shim's
# prctl(PR_SET_CHILD_SUBREAPER) gets EINVAL; runc's init pipe breaks), so the node puts the
# host's amd64 shim and runc on this containerd's PATH; neither is fetched here.
#
# Usage: fetch-arm64-containerd.sh [--check]   (prints the cache directory)
set -euo pipefail

# Bump when the steps below change.
BUILD_REVISION=2
PACKAGES=(containerd docker-registry libc6 libseccomp2)

cache_root=${KBX_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}
dest="$cache_root/containerd-arm64"

log() { printf '[fetch-arm64-containerd] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The arm64 versions are the host's amd64 ones (multi-arch packages share versions).
versions() {
    local p
    for p in "${PACKAGES[@]}"; do
        printf '%s=%s\n' "$p" "$(dpkg-query -W -f '${Version}' "$p:amd64" 2>/dev/null || dpkg-query -W -f '${Version}' "$p")"
    done
}

recipe() {
    {
        versions
        echo "build revision $BUILD_REVISION"
    } | sha256sum | cut -d' ' -f1
}

# shellcheck source=cache-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache-lib.sh"

cache_is_valid() {
    [ -d "$dest/sysroot" ] || return 1
    cache_files_valid "$dest" "$(recipe)" bin/containerd bin/docker-registry || return 1
    [ -e "$dest/sysroot/lib/ld-linux-aarch64.so.1" ] || { log "sysroot lacks the arm64 loader"; return 1; }
}

if cache_is_valid; then
    log "reusing $dest"
    echo "$dest"
    exit 0
fi
[ "${1-}" = "--check" ] && exit 1

for p in "${PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || die "the host's $p is not installed (apt-get install $p)"
done
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    log "adding the arm64 dpkg architecture"
    dpkg --add-architecture arm64
    apt-get update -qq
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/containerd-arm64.XXXXXX")
trap 'rm -rf "$work"' EXIT
specs=()
while IFS= read -r line; do
    specs+=("${line%%=*}:arm64=${line#*=}")
done < <(versions)
log "apt-get download ${specs[*]}"
(cd "$work" && apt-get download -qq "${specs[@]}" >/dev/null 2>&1) ||
    { apt-get update -qq && (cd "$work" && apt-get download -qq "${specs[@]}"); } ||
    die "apt-get download failed"

staging="$dest.new"
rm -rf "$staging"
mkdir -p "$staging/bin" "$staging/sysroot"
dpkg-deb -x "$work"/containerd_*_arm64.deb "$work/containerd"
install -m 0755 "$work/containerd/usr/bin/containerd" "$staging/bin/containerd"
dpkg-deb -x "$work"/docker-registry_*_arm64.deb "$work/registry"
install -m 0755 "$work/registry/usr/bin/docker-registry" "$staging/bin/docker-registry"
for p in libc6 libseccomp2; do
    dpkg-deb -x "$work/${p}_"*_arm64.deb "$staging/sysroot"
done
# Only the libraries: no documentation, locales or gconv modules.
rm -rf "$staging/sysroot/usr/share" "$staging/sysroot/usr/lib/aarch64-linux-gnu/gconv" \
    "$staging/sysroot/etc"
for b in containerd docker-registry; do
    file -b "$staging/bin/$b" | grep -q 'ARM aarch64' || die "$b:arm64 is not an arm64 binary"
done
mapfile -t libs < <(cd "$staging" && find sysroot -type f | sort)
cache_seal "$staging" "$dest" "$(recipe)" bin/containerd bin/docker-registry "${libs[@]}"
cache_is_valid || die "freshly fetched cache does not validate"
log "cached in $dest"
echo "$dest"

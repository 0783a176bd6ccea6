#!/usr/bin/env bash
# Cross-builds the arm64 kubelet of the conformance suite's two-node `local` cluster (its second
# node runs under QEMU user emulation), from the same Debian bookworm `kubernetes` source package
# and patches as build-kubernetes.sh, offline, with Debian's Go, in GOPATH mode as the tree's own
# make does (`GOOS=linux GOARCH=arm64 CGO_ENABLED=0`; module mode fails with "updates to go.mod
# needed, disabled by -mod=vendor"). On top of the common patches it applies the arm64-only ones
# in k8s-patches/arm64/ (see there). The result is cached outside the repository:
#
#   ${KBX_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}/k8s-1.20.2-arm64/
#       bin/kubelet   a static linux/arm64 kubelet
#       SHA256SUMS    checksums of bin/*
#       RECIPE        hash of the versions, build revision and patches
#
# Usage: build-kubelet-arm64.sh [--check]
#   --check   only validate the cache; exit 1 when it is missing or stale.
#
# A cold build takes ~5 minutes on 2 idle cores; a warm check a second.
set -euo pipefail

VERSION=1.20.2
# Bump when the build steps below change in a way that changes the binary.
BUILD_REVISION=1
DEBIAN_VERSION=1.20.5+really1.20.2-1.1+deb12u1
BINARIES=(kubelet)
BUILD_DEPS=(golang-go rsync jq make gcc dpkg-dev golang-github-modern-go-reflect2-dev file)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
patches_dir="$here/k8s-patches"
cache_root=${KBX_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}
dest="$cache_root/k8s-$VERSION-arm64"

log() { printf '[build-kubelet-arm64] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

recipe() {
    {
        echo "kubernetes $DEBIAN_VERSION linux/arm64 GOPATH CGO_ENABLED=0"
        echo "binaries ${BINARIES[*]}"
        echo "build revision $BUILD_REVISION"
        for p in "$patches_dir"/*.patch "$patches_dir"/arm64/*.patch; do
            sha256sum "$p" | cut -d' ' -f1
        done
    } | sha256sum | cut -d' ' -f1
}

# shellcheck source=cache-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache-lib.sh"

cache_is_valid() {
    cache_files_valid "$dest" "$(recipe)" "${BINARIES[@]/#/bin/}" || return 1
    file -b "$dest/bin/kubelet" | grep -q 'ARM aarch64' || {
        log "cached kubelet is not an arm64 binary"
        return 1
    }
}

if cache_is_valid; then
    log "reusing $dest"
    exit 0
fi
if [ "${1-}" = "--check" ]; then
    exit 1
fi

apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

missing=()
for pkg in "${BUILD_DEPS[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The same deb-src entries as build-kubernetes.sh adds (it may have found its cache valid and
# added nothing).
if ! apt-cache showsrc kubernetes 2>/dev/null | grep -qx "Version: $DEBIAN_VERSION"; then
    log "adding deb-src entries for bookworm"
    cat >/etc/apt/sources.list.d/kbx-deb-src.sources <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt_get update -qq
    apt-cache showsrc kubernetes 2>/dev/null | grep -qx "Version: $DEBIAN_VERSION" ||
        die "apt does not offer source package kubernetes $DEBIAN_VERSION"
fi

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/build-$VERSION-arm64.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

log "fetching source package kubernetes $DEBIAN_VERSION"
apt-get source --download-only "kubernetes=$DEBIAN_VERSION" >/dev/null 2>&1 ||
    die "apt-get source kubernetes=$DEBIAN_VERSION failed"
dpkg-source --no-check -x "kubernetes_$DEBIAN_VERSION.dsc" src >/dev/null
cd src

log "applying patches"
for p in "$patches_dir"/*.patch "$patches_dir"/arm64/*.patch; do
    patch -p1 --quiet --forward <"$p" || die "patch $(basename "$p") does not apply"
done

log "replacing vendored reflect2 with Debian's"
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$reflect2_src/reflect2.go" ] || die "$reflect2_src is missing"
rm -rf vendor/github.com/modern-go/reflect2
mkdir -p vendor/github.com/modern-go/reflect2
cp "$reflect2_src"/*.go "$reflect2_src"/*.s vendor/github.com/modern-go/reflect2/
rm -f vendor/github.com/modern-go/reflect2/*_test.go
sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' \
    go.mod vendor/modules.txt staging/src/k8s.io/*/go.mod

# GOPATH mode, as hack/lib/golang.sh lays it out: _output/go/src/k8s.io/kubernetes -> the tree.
log "building kubelet for linux/arm64 with $(go version)"
start=$(date +%s)
gopath="$work/gopath"
mkdir -p "$gopath/src/k8s.io"
ln -s "$work/src" "$gopath/src/k8s.io/kubernetes"
(
    cd "$gopath/src/k8s.io/kubernetes"
    ldflags="-s -w -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitVersion=v$VERSION"
    ldflags+=" -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitMajor=1 -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitMinor=20"
    ldflags+=" -X k8s.io/kubernetes/vendor/k8s.io/component-base/version.gitTreeState=archive"
    ldflags+=" -X k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version.gitVersion=v$VERSION"
    env GOPATH="$gopath" GO111MODULE=off GOPROXY=off GOFLAGS= GOTOOLCHAIN=local \
        GOOS=linux GOARCH=arm64 CGO_ENABLED=0 GOCACHE="$work/gocache" \
        go build -trimpath -tags selinux -ldflags "$ldflags" -o "$work/kubelet" ./cmd/kubelet
) >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    die "go build failed"
}
log "built in $(($(date +%s) - start)) s"

staging="$dest.new"
rm -rf "$staging"
mkdir -p "$staging/bin"
install -m 0755 "$work/kubelet" "$staging/bin/kubelet"
cache_seal "$staging" "$dest" "$(recipe)" "${BINARIES[@]/#/bin/}"
cache_is_valid || die "freshly built cache does not validate"
log "cached in $dest"

#!/usr/bin/env bash
# Builds the Kubernetes 1.20.2 node and control-plane binaries that the conformance suite's
# `local` cluster runs, from Debian bookworm's own `kubernetes` source package, offline, with
# Debian's Go. The result is cached outside the repository and reused while it validates:
#
#   ${KBX_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}/k8s-1.20.2/
#       bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet}
#       SHA256SUMS   checksums of bin/*
#       RECIPE       hash of the versions, build revision and patches the binaries were built with
#
# Usage: build-kubernetes.sh [--check]
#   --check   only validate the cache; exit 1 when it is missing or stale.
#
# Needs root for apt (deb-src line, build dependencies) unless those are already present.
# A cold build takes ~12-15 minutes on 2 idle cores (33 minutes measured on 2 busy shared cores);
# a warm check (checksums of ~360 MB) takes a few seconds.
set -euo pipefail

VERSION=1.20.2
# Bump when the build steps below change in a way that changes the binaries.
BUILD_REVISION=1
DEBIAN_VERSION=1.20.5+really1.20.2-1.1+deb12u1
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
BUILD_DEPS=(golang-go rsync jq make gcc dpkg-dev golang-github-modern-go-reflect2-dev)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
patches_dir="$here/k8s-patches"
cache_root=${KBX_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}
dest="$cache_root/k8s-$VERSION"

log() { printf '[build-kubernetes] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

recipe() {
    {
        echo "kubernetes $DEBIAN_VERSION"
        echo "binaries ${BINARIES[*]}"
        echo "build revision $BUILD_REVISION"
        for p in "$patches_dir"/*.patch; do
            sha256sum "$p" | cut -d' ' -f1
        done
    } | sha256sum | cut -d' ' -f1
}

# shellcheck source=cache-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache-lib.sh"

cache_is_valid() {
    cache_files_valid "$dest" "$(recipe)" "${BINARIES[@]/#/bin/}" || return 1
    "$dest/bin/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes v$VERSION" || {
        log "cached kube-apiserver does not report v$VERSION"
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

ensure_build_deps() {
    local missing=()
    for pkg in "${BUILD_DEPS[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt_get update -qq
        apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

ensure_deb_src() {
    if apt-cache showsrc kubernetes 2>/dev/null | grep -qx "Version: $DEBIAN_VERSION"; then
        return
    fi
    log "adding deb-src entries for bookworm"
    cat >/etc/apt/sources.list.d/kbx-deb-src.sources <<'EOF'
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
EOF
    apt_get update -qq
    apt-cache showsrc kubernetes 2>/dev/null | grep -qx "Version: $DEBIAN_VERSION" ||
        die "apt does not offer source package kubernetes $DEBIAN_VERSION"
}

ensure_build_deps
ensure_deb_src

mkdir -p "$cache_root"
work=$(mktemp -d "$cache_root/build-$VERSION.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

log "fetching source package kubernetes $DEBIAN_VERSION"
apt-get source --download-only "kubernetes=$DEBIAN_VERSION" >/dev/null 2>&1 ||
    die "apt-get source kubernetes=$DEBIAN_VERSION failed"
dpkg-source --no-check -x "kubernetes_$DEBIAN_VERSION.dsc" src >/dev/null
cd src

log "applying patches"
for p in "$patches_dir"/*.patch; do
    patch -p1 --quiet --forward <"$p" || die "patch $(basename "$p") does not apply"
done

# The vendored reflect2 1.0.1 crashes at run time with Go >= 1.18; Debian's 1.0.2 has the same API.
log "replacing vendored reflect2 with Debian's"
reflect2_src=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$reflect2_src/reflect2.go" ] || die "$reflect2_src is missing"
rm -rf vendor/github.com/modern-go/reflect2
mkdir -p vendor/github.com/modern-go/reflect2
cp "$reflect2_src"/*.go "$reflect2_src"/*.s vendor/github.com/modern-go/reflect2/
rm -f vendor/github.com/modern-go/reflect2/*_test.go
sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' \
    go.mod vendor/modules.txt staging/src/k8s.io/*/go.mod

log "building ${BINARIES[*]} with $(go version)"
start=$(date +%s)
whats=()
for b in "${BINARIES[@]}"; do whats+=("cmd/$b"); done
env GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=on GOTOOLCHAIN=local \
    make WHAT="${whats[*]}" >"$work/make.log" 2>&1 || {
    tail -n 60 "$work/make.log" >&2
    die "make failed"
}
log "built in $(($(date +%s) - start)) s"

staging="$cache_root/k8s-$VERSION.new"
rm -rf "$staging"
mkdir -p "$staging/bin"
for b in "${BINARIES[@]}"; do
    install -m 0755 "_output/bin/$b" "$staging/bin/$b"
done
cache_seal "$staging" "$dest" "$(recipe)" "${BINARIES[@]/#/bin/}"
cache_is_valid || die "freshly built cache does not validate"
log "cached in $dest"

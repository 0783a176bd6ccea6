#!/usr/bin/env bash
# Builds BuildKit v0.13.2's `buildkitd` and `buildctl` from Debian trixie's `docker.io` source
# package (its orig-buildkit component carries the full BuildKit tree), offline, with Debian's Go
# and Debian's packaged Go libraries, inside a trixie chroot made with debootstrap. The host
# system is never upgraded. The result is cached outside the repository and reused while it
# validates:
#
#   ${KBX_BUILDKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}/buildkit-0.13.2/
#       bin/{buildkitd,buildctl}   static amd64 binaries
#       SHA256SUMS                 checksums of bin/*
#       RECIPE                     hash of the versions and build steps they were built with
#
# With `--arch arm64` the same source is cross-built for linux/arm64 (GOARCH=arm64, still
# static) into buildkit-0.13.2-arm64/ instead, for the arm64 builder image of the two-node local
# cluster; the version check then runs the binaries through qemu-aarch64-static.
#
# The chroot (~4 GB) stays in ${cache_root}/trixie-buildkit-chroot so that a rebuild after a
# recipe change skips debootstrap and the build dependencies; `--clean-chroot` removes it after
# a successful build.
#
# Usage: build-buildkit.sh [--check] [--clean-chroot] [--arch amd64|arm64]
#   --check   only validate the cache; exit 1 when it is missing or stale.
#
# Needs root (debootstrap, chroot, mounts). A cold build takes ~16 minutes on 2 idle cores;
# a warm check takes well under a second.
set -euo pipefail

VERSION=0.13.2
# Bump when the build steps below change in a way that changes the binaries.
BUILD_REVISION=1
DEBIAN_VERSION=26.1.5+dfsg1-9+deb13u1
SUITE=trixie
MIRROR=${KBX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${KBX_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
BINARIES=(buildkitd buildctl)

cache_root=${KBX_BUILDKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}
chroot_dir="$cache_root/trixie-buildkit-chroot"

log() { printf '[build-buildkit] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_only=false
clean_chroot=false
ARCH=amd64
while [ $# -gt 0 ]; do
    case "$1" in
        --check) check_only=true ;;
        --clean-chroot) clean_chroot=true ;;
        --arch)
            [ $# -ge 2 ] || die "--arch needs a value"
            ARCH=$2
            shift
            ;;
        *) die "unknown argument $1 (expected --check, --clean-chroot or --arch)" ;;
    esac
    shift
done
case "$ARCH" in
    amd64)
        dest="$cache_root/buildkit-$VERSION"
        out_dir=/build/out
        run=()
        ;;
    arm64)
        dest="$cache_root/buildkit-$VERSION-arm64"
        out_dir=/build/out-arm64
        command -v qemu-aarch64-static >/dev/null 2>&1 ||
            die "qemu-aarch64-static is missing (apt-get install qemu-user-static)"
        run=(qemu-aarch64-static)
        ;;
    *) die "unsupported --arch $ARCH (amd64 or arm64)" ;;
esac

recipe() {
    {
        echo "buildkit $VERSION from docker.io $DEBIAN_VERSION ($SUITE)"
        echo "binaries ${BINARIES[*]}"
        echo "build revision $BUILD_REVISION"
        # The amd64 recipe predates --arch and stays as it was.
        [ "$ARCH" = amd64 ] || echo "GOARCH $ARCH"
    } | sha256sum | cut -d' ' -f1
}

# shellcheck source=cache-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache-lib.sh"

cache_is_valid() {
    cache_files_valid "$dest" "$(recipe)" "${BINARIES[@]/#/bin/}" || return 1
    "${run[@]}" "$dest/bin/buildkitd" --version 2>/dev/null | grep -q " v$VERSION " || {
        log "cached buildkitd does not report v$VERSION"
        return 1
    }
    "${run[@]}" "$dest/bin/buildctl" --version 2>/dev/null | grep -q " v$VERSION " || {
        log "cached buildctl does not report v$VERSION"
        return 1
    }
}

if cache_is_valid; then
    log "reusing $dest"
    exit 0
fi
$check_only && exit 1

[ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot)"

apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}
if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

mounted=()
unmount_all() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -R -l "${mounted[$i]}" 2>/dev/null || true
    done
    mounted=()
}
trap unmount_all EXIT
mount_in_chroot() { # mount-args... target
    local target="$chroot_dir/${*: -1}"
    mkdir -p "$target"
    mount "${@:1:$#-1}" "$target" && mounted+=("$target")
}
in_chroot() {
    chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

mkdir -p "$cache_root"
if [ ! -f "$chroot_dir/.kbx-debootstrap-done" ]; then
    log "debootstrap $SUITE into $chroot_dir (a few minutes)"
    rm -rf "$chroot_dir"
    start=$(date +%s)
    debootstrap --variant=buildd "$SUITE" "$chroot_dir" "$MIRROR" >"$cache_root/debootstrap.log" 2>&1 || {
        tail -n 30 "$cache_root/debootstrap.log" >&2
        die "debootstrap failed"
    }
    touch "$chroot_dir/.kbx-debootstrap-done"
    log "debootstrap took $(($(date +%s) - start)) s"
fi

mount_in_chroot -t proc proc proc
mount_in_chroot -t sysfs sysfs sys
mount_in_chroot --rbind /dev dev
cp -L /etc/resolv.conf "$chroot_dir/etc/resolv.conf" 2>/dev/null || true

cat >"$chroot_dir/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb-src $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb-src $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
deb-src $SECURITY_MIRROR $SUITE-security main
EOF
rm -f "$chroot_dir/etc/apt/sources.list.d/"*.sources 2>/dev/null || true

if [ ! -f "$chroot_dir/.kbx-build-deps-$DEBIAN_VERSION" ]; then
    log "installing the build dependencies of docker.io $DEBIAN_VERSION in the chroot (several minutes)"
    start=$(date +%s)
    in_chroot apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
    in_chroot apt-get install -y -qq --no-install-recommends golang-go dh-golang dpkg-dev xz-utils \
        >"$cache_root/build-deps.log" 2>&1 || { tail -n 30 "$cache_root/build-deps.log" >&2; die "apt-get install failed"; }
    in_chroot apt-get build-dep -y -qq "docker.io=$DEBIAN_VERSION" \
        >>"$cache_root/build-deps.log" 2>&1 || { tail -n 30 "$cache_root/build-deps.log" >&2; die "apt-get build-dep failed"; }
    touch "$chroot_dir/.kbx-build-deps-$DEBIAN_VERSION"
    log "build dependencies took $(($(date +%s) - start)) s"
fi

src=/build/docker.io
if [ ! -f "$chroot_dir$src/.kbx-unpacked-$DEBIAN_VERSION" ]; then
    log "fetching and unpacking docker.io $DEBIAN_VERSION"
    rm -rf "${chroot_dir:?}/build"
    mkdir -p "$chroot_dir/build/dl"
    # The .dsc of this version may be missing on the mirror (apt exits 100 after the tarballs
    # are downloaded and hash-checked); the tarballs are what we need.
    in_chroot sh -c "cd /build/dl && apt-get source --download-only 'docker.io=$DEBIAN_VERSION'" \
        >"$cache_root/source.log" 2>&1 || true
    upstream=${DEBIAN_VERSION%-*}
    dl="$chroot_dir/build/dl"
    for f in "docker.io_$upstream.orig.tar.xz" "docker.io_$upstream.orig-buildkit.tar.xz" \
        "docker.io_$upstream.orig-cli.tar.xz" "docker.io_$DEBIAN_VERSION.debian.tar.xz"; do
        [ -s "$dl/$f" ] || { cat "$cache_root/source.log" >&2; die "source file $f was not downloaded"; }
    done
    mkdir -p "$chroot_dir$src"
    (
        # The main tarball holds ./<dir>/engine/…; the components hold ./buildkit/… and ./cli/….
        cd "$chroot_dir$src"
        mkdir buildkit cli
        tar -xJf "$dl/docker.io_$upstream.orig.tar.xz" --strip-components=2
        tar -xJf "$dl/docker.io_$upstream.orig-buildkit.tar.xz" -C buildkit --strip-components=2
        tar -xJf "$dl/docker.io_$upstream.orig-cli.tar.xz" -C cli --strip-components=2
        tar -xJf "$dl/docker.io_$DEBIAN_VERSION.debian.tar.xz"
    )
    [ -d "$chroot_dir$src/buildkit/cmd/buildkitd" ] || die "the buildkit component has no cmd/buildkitd"
    log "applying Debian's patches"
    in_chroot sh -c "cd $src && dpkg-source --before-build ." >"$cache_root/patches.log" 2>&1 || {
        tail -n 30 "$cache_root/patches.log" >&2
        die "dpkg-source --before-build failed"
    }
    touch "$chroot_dir$src/.kbx-unpacked-$DEBIAN_VERSION"
fi

log "building ${BINARIES[*]} for linux/$ARCH (several minutes)"
start=$(date +%s)
cat >"$chroot_dir/build/build.sh" <<EOF
#!/bin/sh
set -eu
cd $src
export GOPATH=$src/_build GO111MODULE=off GOPROXY=off CGO_ENABLED=0 GOTOOLCHAIN=local GOOS=linux GOARCH=$ARCH
export GOCACHE=/build/gocache
unset GOFLAGS
if [ ! -d _build/src/github.com/moby/buildkit ] || [ ! -f _build/.kbx-configured ]; then
    rm -rf _build
    DH_GOPKG=__IGNORE__ dh_auto_configure --buildsystem=golang --builddirectory=_build >/dev/null
    for pair in docker/cli:cli docker/docker:engine moby/buildkit:buildkit; do
        target=_build/src/github.com/\${pair%%:*}
        rm -rf "\$target"
        mkdir -p "\$(dirname "\$target")"
        cp -a "\${pair#*:}" "\$target"
    done
    touch _build/.kbx-configured
fi
cd _build/src/github.com/moby/buildkit
mkdir -p $out_dir
for b in ${BINARIES[*]}; do
    go build -trimpath -ldflags "-s -w -X github.com/moby/buildkit/version.Version=v$VERSION -X github.com/moby/buildkit/version.Revision=debian-$DEBIAN_VERSION" \
        -o $out_dir/\$b ./cmd/\$b
done
EOF
chmod +x "$chroot_dir/build/build.sh"
build_log="$cache_root/buildkit-build.log"
[ "$ARCH" = amd64 ] || build_log="$cache_root/buildkit-build-$ARCH.log"
in_chroot /build/build.sh >"$build_log" 2>&1 || {
    tail -n 60 "$build_log" >&2
    die "go build failed"
}
log "built in $(($(date +%s) - start)) s"

staging="$dest.new"
rm -rf "$staging"
mkdir -p "$staging/bin"
for b in "${BINARIES[@]}"; do
    install -m 0755 "$chroot_dir$out_dir/$b" "$staging/bin/$b"
done
cache_seal "$staging" "$dest" "$(recipe)" "${BINARIES[@]/#/bin/}"
cache_is_valid || die "freshly built cache does not validate"
unmount_all
if $clean_chroot; then
    log "removing $chroot_dir"
    rm -rf "$chroot_dir"
fi
log "cached in $dest"

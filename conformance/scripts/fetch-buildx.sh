#!/usr/bin/env bash
# Fetches the real Docker Buildx CLI (with its kubernetes driver) from Debian's `docker-buildx`
# binary packages, by name and exact version, through apt with a private configuration: the
# host's sources, lists, archive cache and installed packages are never touched or upgraded.
# Each package is unpacked with `dpkg-deb -x` and its binary cached outside the repository; the
# cache is reused while it validates:
#
#   ${KBX_BUILDX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}/buildx-<version>/
#       docker-buildx   the CLI plugin, which also runs standalone (`docker-buildx version`)
#       SHA256SUMS      checksum of docker-buildx
#       RECIPE          hash of the package, version and suite it came from
#       SOURCE          the package file and its SHA-256 (apt checked it against the signed lists)
#
# | version | Debian package                  | suite  |
# |---------|---------------------------------|--------|
# | 0.29.1  | docker-buildx 0.29.1+ds1-4      | sid    |
# | 0.13.1  | docker-buildx 0.13.1+ds1-3      | trixie |
#
# Usage: fetch-buildx.sh [--check]
#   --check   only validate the cache; exit 1 when it is missing or stale.
# Prints the path of each cached binary on standard output, one a line, in the order above.
#
# Needs network access to the mirror (KBX_DEBIAN_MIRROR, default http://deb.debian.org/debian)
# and Debian's archive keyring, not root. Cold: ~10 s (20 MB of package lists, 28 MB of
# packages); warm: a few tenths of a second (checksums of ~136 MB and `version` of each).
set -euo pipefail

# Bump when the steps below change in a way that changes the cached files.
FETCH_REVISION=1
MIRROR=${KBX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=${KBX_DEBIAN_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
PACKAGE=docker-buildx
PLUGIN_PATH=usr/libexec/docker/cli-plugins/docker-buildx
# version  Debian version  suite
RELEASES=(
    "0.29.1 0.29.1+ds1-4 sid"
    "0.13.1 0.13.1+ds1-3 trixie"
)

cache_root=${KBX_BUILDX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}

log() { printf '[fetch-buildx] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_only=false
for arg in "$@"; do
    case "$arg" in
        --check) check_only=true ;;
        *) die "unknown argument $arg (expected --check)" ;;
    esac
done

recipe() { # version debian-version suite
    {
        echo "$PACKAGE $2 from Debian $3 (amd64)"
        echo "binary $PLUGIN_PATH"
        echo "fetch revision $FETCH_REVISION"
    } | sha256sum | cut -d' ' -f1
}

# shellcheck source=cache-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/cache-lib.sh"

cache_is_valid() { # version debian-version suite
    local dest="$cache_root/buildx-$1"
    cache_files_valid "$dest" "$(recipe "$@")" docker-buildx || return 1
    # Prints `github.com/docker/buildx 0.29.1+ds1 0.29.1+ds1-4`.
    local printed
    printed=$("$dest/docker-buildx" version 2>/dev/null) || true
    case " $printed " in
        *" $1+"* | *" $1 "* | *" v$1 "*) ;;
        *) log "buildx-$1: cached docker-buildx prints '$printed', not $1"; return 1 ;;
    esac
}

# Validate every cached version (in parallel: two checksums of ~70 MB each).
pids=()
for release in "${RELEASES[@]}"; do
    # shellcheck disable=SC2086
    set -- $release
    cache_is_valid "$@" &
    pids+=("$!")
done
i=0
missing=()
for release in "${RELEASES[@]}"; do
    # shellcheck disable=SC2086
    set -- $release
    wait "${pids[$i]}" || missing+=("$release")
    i=$((i + 1))
done

if [ ${#missing[@]} -gt 0 ]; then
    $check_only && exit 1
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || die "needs apt-get and dpkg-deb"
    [ -r "$KEYRING" ] || die "Debian's archive keyring $KEYRING is missing (package debian-archive-keyring)"
    mkdir -p "$cache_root"
    work=$(mktemp -d "$cache_root/buildx-apt.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
    # apt downloads as the unprivileged `_apt` user when run as root.
    if [ "$(id -u)" = 0 ] && id _apt >/dev/null 2>&1; then
        chmod 755 "$work"
        chown -R _apt "$work/lists" "$work/cache" "$work/debs"
    fi
    suites=()
    for release in "${missing[@]}"; do
        # shellcheck disable=SC2086
        set -- $release
        case " ${suites[*]-} " in *" $3 "*) ;; *) suites+=("$3") ;; esac
    done
    for suite in "${suites[@]}"; do
        echo "deb [arch=amd64 target=Packages signed-by=$KEYRING] $MIRROR $suite main"
    done >"$work/sources.list"
    # A private apt: only these sources, lists and archives; sid's Release file counts as
    # expired on a machine whose clock is ahead of the mirror's last signature refresh.
    apt_opts=(
        -o "Dir::Etc::SourceList=$work/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$work/lists"
        -o "Dir::Cache=$work/cache"
        -o "Acquire::Check-Valid-Until=false"
        -o "Acquire::Languages=none"
        -o "APT::Architecture=amd64"
        -o "DPkg::Lock::Timeout=600"
        -q
    )
    log "reading the package lists of ${suites[*]} from $MIRROR"
    start=$(date +%s)
    apt-get "${apt_opts[@]}" update >"$work/update.log" 2>&1 || {
        tail -n 20 "$work/update.log" >&2
        die "apt-get update (private lists) failed"
    }
    wanted=()
    for release in "${missing[@]}"; do
        # shellcheck disable=SC2086
        set -- $release
        wanted+=("$PACKAGE=$2")
    done
    log "downloading ${wanted[*]}"
    (cd "$work/debs" && apt-get "${apt_opts[@]}" download "${wanted[@]}") >"$work/download.log" 2>&1 || {
        tail -n 20 "$work/download.log" >&2
        apt-cache "${apt_opts[@]}" madison "$PACKAGE" >&2 || true
        die "apt-get download failed (versions offered above)"
    }
    for release in "${missing[@]}"; do
        # shellcheck disable=SC2086
        set -- $release
        deb="$work/debs/${PACKAGE}_${2}_amd64.deb"
        # apt escapes ':' in file names only for epochs; these versions have none.
        [ -s "$deb" ] || die "apt-get download did not write $(basename "$deb")"
        dest="$cache_root/buildx-$1"
        staging="$dest.new"
        rm -rf "$staging"
        mkdir -p "$staging/root"
        dpkg-deb -x "$deb" "$staging/root"
        [ -f "$staging/root/$PLUGIN_PATH" ] || die "$(basename "$deb") has no $PLUGIN_PATH"
        install -m 0755 "$staging/root/$PLUGIN_PATH" "$staging/docker-buildx"
        rm -rf "$staging/root"
        printf '%s  %s\n' "$(sha256sum "$deb" | cut -d' ' -f1)" "$(basename "$deb")" >"$staging/SOURCE"
        cache_seal "$staging" "$dest" "$(recipe "$@")" docker-buildx
        cache_is_valid "$@" || die "freshly fetched buildx-$1 does not validate"
        log "cached $PACKAGE $2 ($3) in $dest"
    done
    log "fetched in $(($(date +%s) - start)) s"
else
    log "reusing $(for r in "${RELEASES[@]}"; do printf '%s ' "$cache_root/buildx-${r%% *}"; done)"
fi

for release in "${RELEASES[@]}"; do
    echo "$cache_root/buildx-${release%% *}/docker-buildx"
done

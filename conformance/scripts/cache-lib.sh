# Shared by the scripts that cache binaries outside the checkout (build-kubernetes.sh,
# build-buildkit.sh, fetch-buildx.sh). Source it after defining `log`.
#
# A cache directory holds the files, `SHA256SUMS` (their checksums) and `RECIPE` (a hash of what
# they were made from); it is valid while all three agree.

# cache_files_valid DIR RECIPE FILE... : the files (relative to DIR) are executable, their
# checksums match SHA256SUMS and RECIPE holds RECIPE. Logs why not.
cache_files_valid() {
    local dir=$1 want=$2 f
    shift 2
    [ -f "$dir/RECIPE" ] && [ -f "$dir/SHA256SUMS" ] || return 1
    [ "$(cat "$dir/RECIPE")" = "$want" ] || { log "$dir: cache recipe is stale"; return 1; }
    for f in "$@"; do
        [ -x "$dir/$f" ] || { log "$dir: cache lacks $f"; return 1; }
    done
    (cd "$dir" && sha256sum --quiet -c SHA256SUMS >/dev/null 2>&1) || {
        log "$dir: cache checksums do not match"
        return 1
    }
}

# cache_seal STAGING DIR RECIPE FILE... : writes SHA256SUMS of the files and RECIPE into
# STAGING, then replaces DIR with it.
cache_seal() {
    local staging=$1 dir=$2 recipe=$3
    shift 3
    (cd "$staging" && sha256sum "$@" >SHA256SUMS)
    printf '%s\n' "$recipe" >"$staging/RECIPE"
    rm -rf "$dir"
    mv "$staging" "$dir"
}

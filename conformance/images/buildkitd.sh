#!/bin/sh
# Entry point of the kbx test builder image. It stands where a standalone buildkitd would and
# runs Docker Engine, whose embedded BuildKit answers the `buildctl` of this image. buildkitd
# flags (for example --allow-insecure-entitlement) are accepted and ignored, except
# `--config FILE` (default /etc/buildkit/buildkitd.toml): its `[registry."HOST"]` sections
# with `http = true` or `insecure = true` become Docker's `--insecure-registry http://HOST`
# or `https://HOST` (the scheme tells Docker's BuildKit plain HTTP from unverified TLS), so
# pulls from such registries work as they would with buildkitd.
set -e
config=/etc/buildkit/buildkitd.toml
while [ $# -gt 0 ]; do
    case "$1" in
        --config) config="$2"; shift 2 || break ;;
        --config=*) config="${1#--config=}"; shift ;;
        *) shift ;;
    esac
done
insecure=""
if [ -f "$config" ]; then
    insecure=$(awk '
        /^[ \t]*\[registry\."/ {
            host = $0; sub(/^[^"]*"/, "", host); sub(/".*$/, "", host); next
        }
        /^[ \t]*\[/ { host = ""; next }
        host != "" && /^[ \t]*http[ \t]*=[ \t]*true/ {
            print "--insecure-registry=http://" host; host = ""
        }
        host != "" && /^[ \t]*insecure[ \t]*=[ \t]*true/ {
            print "--insecure-registry=https://" host; host = ""
        }' "$config")
fi
mkdir -p /var/lib/buildkit/docker /run/docker
# shellcheck disable=SC2086 # one flag per registry
exec /usr/bin/docker-init -- /usr/sbin/dockerd \
    --iptables=false --ip-masq=false --bridge=none \
    --host unix:///var/run/docker.sock \
    --data-root /var/lib/buildkit/docker \
    --exec-root /run/docker \
    --pidfile /run/docker.pid \
    $insecure

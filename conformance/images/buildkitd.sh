#!/bin/sh
# Entry point of the kbx test builder image. It stands where a standalone buildkitd would and
# runs Docker Engine, whose embedded BuildKit answers the `buildctl` of this image. buildkitd
# flags (for example --allow-insecure-entitlement) are accepted and ignored.
set -e
mkdir -p /var/lib/buildkit/docker /run/docker
exec /usr/bin/docker-init -- /usr/sbin/dockerd \
    --iptables=false --ip-masq=false --bridge=none \
    --host unix:///var/run/docker.sock \
    --data-root /var/lib/buildkit/docker \
    --exec-root /run/docker \
    --pidfile /run/docker.pid

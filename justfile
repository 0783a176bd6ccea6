# kbx — the commands people run. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# The whole test suite: unit, integration and doc tests of every crate.
test:
    cargo nextest run --workspace --all-targets --no-fail-fast
    cargo test --workspace --doc

# Formatting, clippy with warnings as errors, and docs with warnings as errors.
# `cargo doc` builds no dev-dependencies, so it names the Kubernetes API version k8s-openapi
# needs (libraries never pick one; keep it equal to what the binaries enable).
[doc('Formatting, clippy and docs, all with warnings as errors.')]
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    K8S_OPENAPI_ENABLED_VERSION=1.37 RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Check that the libraries build against the oldest and newest Kubernetes API that
# k8s-openapi supports (they must not depend on one version's field types).
[doc('Check the libraries against the oldest and newest Kubernetes API k8s-openapi supports.')]
check-k8s-versions:
    for v in 1.33 1.37; do K8S_OPENAPI_ENABLED_VERSION=$v cargo check -p kbx-manifest --target-dir target/k8s-$v; done

# Run every fuzz target for SECONDS each (needs cargo-fuzz; runs on stable via RUSTC_BOOTSTRAP).
# Seeds come from fixtures/fuzz/<crate>/<target>/; a crash is saved under the crate's
# fuzz/artifacts/ and must be copied to fixtures/fuzz/<crate>/<target>/ as a regression fixture.
[doc('Run every fuzz target for SECONDS each (needs cargo-fuzz).')]
fuzz SECONDS="30":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    export RUSTC_BOOTSTRAP=1
    for dir in crates/*/fuzz; do
        [ -d "$dir" ] || continue
        crate=$(basename "$(dirname "$dir")")
        for target in $(cd "$dir" && cargo fuzz list); do
            seeds="$PWD/fixtures/fuzz/$crate/$target"
            mkdir -p "$dir/corpus/$target"
            (cd "$dir" && cargo fuzz run --sanitizer none "$target" "corpus/$target" "$seeds" -- \
                -max_total_time={{SECONDS}} -max_len=4096)
        done
    done

# Every benchmark in the workspace.
bench:
    cargo bench --workspace

# The kbx-opts parser benchmark.
bench-opts:
    cargo bench -p kbx-opts

# The kbx-manifest renderer benchmark.
bench-manifest:
    cargo bench -p kbx-manifest

# The kbx-balance pod-choice benchmark: balance table (sticky vs rendezvous), then timings.
bench-balance:
    cargo bench -p kbx-balance

# kbx-buildkit context upload against a raw byte copy (needs root and docker.io).
bench-upload:
    cargo bench -p kbx-buildkit --bench upload

# Debian's docker-buildx packages, through a private apt configuration (the host is never upgraded).
# Fetch (or reuse from the cache) the real Docker Buildx 0.29.1 and 0.13.1; print their paths.
[doc('Fetch (or reuse) the real Docker Buildx 0.29.1 and 0.13.1; print their paths.')]
buildx:
    conformance/scripts/fetch-buildx.sh

# Raw `pods/exec`, kbx and the real Buildx 0.29.1 on one builder pod of the local cluster:
# context upload, export, `create --bootstrap`, RUNS alternating rounds, then kbx's peak RSS with
# a 1 GiB context; markdown tables for docs/benchmarks.md (needs root, ~10 min for 3 rounds).
[doc('kbx against raw exec and the real Buildx on the local cluster: upload, export, bootstrap.')]
bench-cluster RUNS="3" *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    conformance/scripts/build-kubernetes.sh
    conformance/scripts/build-buildkit.sh
    buildx=$(conformance/scripts/fetch-buildx.sh | sed -n 1p)
    cargo build --release -p kbx-cli --bin kbx -p kbx-conformance --bin kbx-bench-cluster --bin kbx-local-cluster
    status=0
    target/release/kbx-bench-cluster --runs {{RUNS}} --kbx target/release/kbx --buildx "$buildx" --write docs/benchmarks.md {{ARGS}} || status=$?
    target/release/kbx-local-cluster sweep
    exit $status

# Parity with the real Buildx 0.29.1 and 0.13.1: flag values, then every object option set.
parity:
    #!/usr/bin/env bash
    set -euo pipefail
    conformance/scripts/fetch-buildx.sh >/dev/null
    conformance/scripts/build-kubernetes.sh
    conformance/scripts/build-buildkit.sh
    cargo nextest run -p kbx-conformance --test parity
    status=0
    KBX_PARITY_ALL=1 KBX_SCENARIO_LIMIT=2400 cargo nextest run -p kbx-conformance --profile conformance -E 'test(parity)' || status=$?
    cargo run -q -p kbx-conformance --bin kbx-local-cluster -- sweep
    exit $status

# Churn on the local cluster: N `create --bootstrap` / `build` / `rm` cycles (Deployments and
# StatefulSets with claims), nothing may be left after any of them, time per cycle reported;
# then 10 concurrent builds on a two-replica and a rendezvous builder (CI runs 10 cycles).
[doc('N create/build/rm cycles on the local cluster, then 10 concurrent builds (root).')]
churn N="100":
    #!/usr/bin/env bash
    set -euo pipefail
    conformance/scripts/build-kubernetes.sh
    conformance/scripts/build-buildkit.sh
    status=0
    KBX_CHURN_CYCLES={{N}} KBX_SCENARIO_LIMIT=$(( {{N}} * 40 + 600 )) cargo nextest run -p kbx-conformance --profile conformance --no-capture -E 'test(kbx_churn)' || status=$?
    cargo run -q -p kbx-conformance --bin kbx-local-cluster -- sweep
    exit $status

# See kbx work for real on a machine with root and no cluster: boots the local conformance
# cluster (cached Kubernetes and BuildKit binaries, built on first use), then runs
# `create --bootstrap`, a `build` of fixtures/demo, `ls` and `rm`, printing each command, and tears
# the cluster down. Builders go to a temporary BUILDX_CONFIG, never to yours.
[doc('See kbx work: local cluster, create --bootstrap, build, ls, rm, teardown (root).')]
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    conformance/scripts/build-kubernetes.sh
    conformance/scripts/build-buildkit.sh
    cargo build -q -p kbx-cli --bin kbx -p kbx-conformance --bin kbx-local-cluster
    bin=${CARGO_TARGET_DIR:-target}/debug
    work=$(mktemp -d)
    export BUILDX_CONFIG=$work/buildx
    step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
    echo "booting the local cluster (about a minute)..."
    coproc CLUSTER { "$bin/kbx-local-cluster" up; }
    teardown() {
        echo; echo "tearing the cluster down..."
        echo >&"${CLUSTER[1]}" || true
        wait "$CLUSTER_PID" || true
        rm -rf "$work"
    }
    trap teardown EXIT
    read -r line <&"${CLUSTER[0]}" || { echo "the local cluster did not start" >&2; exit 1; }
    export KUBECONFIG=${line#KUBECONFIG=}
    echo "cluster up: KUBECONFIG=$KUBECONFIG"
    step "$bin/kbx" create --name demo --driver kubernetes --bootstrap
    step "$bin/kbx" build --builder demo --progress plain -o "type=local,dest=$work/out" fixtures/demo
    step cat "$work/out/hello.txt"
    step "$bin/kbx" ls
    step "$bin/kbx" rm demo

# Build (or reuse from the cache) the Kubernetes 1.20.2 binaries the local cluster runs.
k8s-binaries:
    conformance/scripts/build-kubernetes.sh

# Conformance scenarios on a real cluster. KBX_CONFORMANCE_CLUSTER=local (default, needs root),
# kind (KBX_CONFORMANCE_KIND_CONFIG=single|multi-node|multi-arch) or existing (KUBECONFIG).
# FILTER is a nextest filterset, e.g. 'test(kbx_churn)'.
[doc('Conformance scenarios on a real cluster (local by default, needs root; or kind, or KUBECONFIG), those matching FILTER.')]
conformance FILTER="all()":
    #!/usr/bin/env bash
    set -euo pipefail
    filter='{{FILTER}}'
    status=0
    run() { cargo nextest run -p kbx-conformance --profile conformance --no-tests=pass -E "$1" || status=$?; }
    if [ "${KBX_CONFORMANCE_CLUSTER:-local}" != local ]; then
        run "$filter"
        exit $status
    fi
    conformance/scripts/build-kubernetes.sh
    conformance/scripts/build-buildkit.sh
    # The arm64 node of the two-node scenarios (tests/two_node): kubelet, containerd and
    # BuildKit for arm64, run under QEMU user emulation.
    conformance/scripts/build-kubelet-arm64.sh
    conformance/scripts/build-buildkit.sh --arch arm64
    conformance/scripts/fetch-arm64-containerd.sh >/dev/null
    conformance/scripts/fetch-arm64-busybox.sh >/dev/null
    trap '{ echo >&3; } 2>/dev/null || true' EXIT
    # Runs the scenarios matching $2 with one local cluster of $1 nodes that every scenario
    # leaving it as it found it shares (the others boot their own). `kbx-local-cluster up`
    # keeps it until a line arrives on its standard input; its teardown must leave nothing.
    shared() {
        local nodes=$1 expr=$2 work up line started
        if [ "$(cargo nextest list -p kbx-conformance --profile conformance -E "$expr" \
            --message-format oneline 2>/dev/null | wc -l)" -eq 0 ]; then
            return 0
        fi
        work=$(mktemp -d)
        mkfifo "$work/ctl"
        KBX_CONFORMANCE_NODES=$nodes cargo run -q -p kbx-conformance --bin kbx-local-cluster -- up \
            <"$work/ctl" >"$work/up.out" 2>"$work/up.err" &
        up=$!
        exec 3>"$work/ctl"
        started=$SECONDS
        until grep -q '^KBX_CONFORMANCE_SHARED_DIR=' "$work/up.out" || ! kill -0 "$up" 2>/dev/null; do
            sleep 1
        done
        if line=$(grep -m1 '^KBX_CONFORMANCE_SHARED_DIR=' "$work/up.out"); then
            echo "shared $nodes-node cluster ready in $((SECONDS - started)) s: ${line#*=}"
            export KBX_CONFORMANCE_SHARED_DIR="${line#*=}"
            run "$expr"
            unset KBX_CONFORMANCE_SHARED_DIR
            echo >&3
            exec 3>&-
            if ! wait "$up"; then
                cat "$work/up.err" >&2
                echo "tearing down the shared $nodes-node cluster failed" >&2
                status=1
            fi
        else
            exec 3>&-
            cat "$work/up.err" >&2
            if [ "${CI:-}" = true ]; then
                echo "the shared $nodes-node local cluster did not boot" >&2
                status=1
                return 0
            fi
            echo "the shared $nodes-node local cluster did not boot: every scenario boots its own" >&2
            run "$expr"
        fi
        rm -rf "$work"
    }
    shared 1 "($filter) & not test(/^two_node::/)"
    shared 2 "($filter) & test(/^two_node::/)"
    cargo run -q -p kbx-conformance --bin kbx-local-cluster -- sweep
    exit $status

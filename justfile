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
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

# Run every fuzz target for SECONDS each (needs cargo-fuzz; runs on stable via RUSTC_BOOTSTRAP).
fuzz SECONDS="30":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    for dir in crates/*/fuzz; do
        [ -d "$dir" ] || continue
        (cd "$dir" && for target in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
            RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time={{SECONDS}}
        done)
    done

# Every benchmark in the workspace.
bench:
    cargo bench --workspace

# The kbx-opts parser benchmark.
bench-opts:
    cargo bench -p kbx-opts

# Build (or reuse from the cache) the Kubernetes 1.20.2 binaries the local cluster runs.
k8s-binaries:
    conformance/scripts/build-kubernetes.sh

# Conformance scenarios on a real cluster. KBX_CONFORMANCE_CLUSTER=local (default, needs root),
# kind (KBX_CONFORMANCE_KIND_CONFIG=single|multi-node|multi-arch) or existing (KUBECONFIG).
conformance:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "${KBX_CONFORMANCE_CLUSTER:-local}" = local ]; then
        conformance/scripts/build-kubernetes.sh
    fi
    status=0
    cargo nextest run -p kbx-conformance --profile conformance || status=$?
    cargo run -q -p kbx-conformance --bin kbx-local-cluster -- sweep
    exit $status

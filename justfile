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
# Seeds come from fixtures/fuzz/<crate>/<target>/; a crash is saved under the crate's
# fuzz/artifacts/ and must be copied to fixtures/fuzz/<crate>/<target>/ as a regression fixture.
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

# kbx-buildkit context upload against a raw byte copy (needs root and docker.io).
bench-upload:
    cargo bench -p kbx-buildkit --bench upload

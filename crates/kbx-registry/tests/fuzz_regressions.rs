//! Replays every fuzz regression input and seed (`fixtures/fuzz/kbx-registry/<target>/*`)
//! through the checks of every fuzz target.

#![allow(clippy::expect_used, missing_docs)]

mod fuzz_checks;
#[path = "../../../tests-support/fuzz_replay.rs"]
mod fuzz_replay;

#[test]
fn fuzz_regressions_stay_fixed() {
    fuzz_replay::replay("kbx-registry", fuzz_checks::TARGETS, fuzz_checks::run);
}

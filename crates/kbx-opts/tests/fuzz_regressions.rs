//! Replays every fuzz regression input (`fixtures/fuzz/kbx-opts/<target>/*`) and the fuzz
//! seed corpus through the checks of its fuzz target, and every input through all targets.

mod fuzz_checks;
#[path = "../../../tests-support/fuzz_replay.rs"]
mod fuzz_replay;

#[test]
fn fuzz_regressions_stay_fixed() {
    fuzz_replay::replay("kbx-opts", fuzz_checks::TARGETS, fuzz_checks::run);
}

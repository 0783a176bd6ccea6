//! Replays a crate's fuzz regression inputs and seeds (`fixtures/fuzz/<crate>/<target>/*`)
//! through the checks of every fuzz target of that crate.
//!
//! Each crate's `tests/fuzz_regressions.rs` includes this file with
//! `#[path = "../../../tests-support/fuzz_replay.rs"]` next to its own `fuzz_checks` module.

use std::{fs, path::PathBuf};

/// Runs every file under `fixtures/fuzz/<fixtures>/<target>/`, for each of `targets`, through
/// `run(t, text)` for every target `t`; panics when no file is found at all.
pub(crate) fn replay(fixtures: &str, targets: &[&str], run: fn(&str, &str)) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/fuzz")
        .join(fixtures);
    let mut replayed = 0;
    for target in targets {
        let Ok(entries) = fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable dir entry").path();
            let data = fs::read(&path).expect("readable fixture");
            let text = String::from_utf8_lossy(&data);
            for t in targets {
                run(t, &text);
            }
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "no fuzz fixtures found under {}",
        root.display()
    );
}

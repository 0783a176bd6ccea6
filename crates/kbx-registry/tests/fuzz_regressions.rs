//! Replays every fuzz regression input and seed (`fixtures/fuzz/kbx-registry/<target>/*`)
//! through the checks of every fuzz target.

#![allow(clippy::expect_used, missing_docs)]

mod fuzz_checks;

use std::{fs, path::PathBuf};

#[test]
fn fuzz_regressions_stay_fixed() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fuzz/kbx-registry");
    let mut replayed = 0;
    for target in fuzz_checks::TARGETS {
        let Ok(entries) = fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable dir entry").path();
            let data = fs::read(&path).expect("readable fixture");
            let text = String::from_utf8_lossy(&data);
            for t in fuzz_checks::TARGETS {
                fuzz_checks::run(t, &text);
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

//! The checks each fuzz target runs, shared by the cargo-fuzz targets in `fuzz/` and the
//! regression test that replays `fixtures/fuzz/kbx-buildkit/<target>/*`.

use kbx_buildkit::{Address, CacheEntry, NamedContext, Output, PatternMatcher, Secret, SshAgent};

/// Names of all targets, each a function below.
pub(crate) const TARGETS: &[&str] = &["flag_specs", "ignore_patterns"];

/// Runs the check of `target` on `text`.
pub(crate) fn run(target: &str, text: &str) {
    match target {
        "flag_specs" => flag_specs(text),
        "ignore_patterns" => ignore_patterns(text),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Whether an error's text names the flag and the value as given (`{:?}`-quoted).
fn names(err: &kbx_buildkit::Error, flag: &str, value: &str) -> bool {
    let text = err.to_string();
    text.contains(flag) && text.contains(&format!("{value:?}"))
}

/// Fuzz target `flag_specs`: every line goes through the parser of each flag value
/// (`--output`, `--cache-from/-to`, `--secret`, `--ssh`, `--build-context`, `--addr`,
/// `DOCKER_HOST`); none may panic, and every refusal names the flag and the value.
pub(crate) fn flag_specs(text: &str) {
    for line in text.lines() {
        if let Err(e) = Output::parse(line) {
            assert!(names(&e, "--output", line), "{e}");
        }
        if let Err(e) = CacheEntry::parse(line) {
            assert!(names(&e, "cache", line), "{e}");
        }
        if let Err(e) = Secret::parse(line) {
            assert!(names(&e, "--secret", line), "{e}");
        }
        if let Err(e) = SshAgent::parse(line) {
            assert!(names(&e, "--ssh", line), "{e}");
        }
        match NamedContext::parse(line) {
            Ok(c) => assert!(!c.name.is_empty(), "{line:?} gave an empty name"),
            Err(e) => assert!(names(&e, "--build-context", line), "{e}"),
        }
        for parsed in [Address::parse(line), Address::parse_docker_host(line)] {
            if let Err(e) = parsed {
                assert!(names(&e, "address", line), "{e}");
            }
        }
    }
}

/// Fuzz target `ignore_patterns`: the input is a `.dockerignore` (one pattern per line), the
/// last line also a path to match; compiling and matching never panic, and a compiled
/// matcher's answer is stable.
pub(crate) fn ignore_patterns(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    let path = lines.last().copied().unwrap_or_default();
    if let Ok(m) = PatternMatcher::new(&lines) {
        let first = m.matches(path);
        assert_eq!(first, m.matches(path), "matching {path:?} is not stable");
        for p in m.patterns() {
            let _ = p.is_match(path);
        }
    }
}

//! The checks each fuzz target runs, shared by the cargo-fuzz targets in `fuzz/` and the
//! regression test that replays `fixtures/fuzz/kbx-registry/<target>/*`.

use kbx_registry::Reference;

/// Names of all targets, each a function below.
pub(crate) const TARGETS: &[&str] = &["reference"];

/// Runs the check of `target` on `text`.
pub(crate) fn run(target: &str, text: &str) {
    match target {
        "reference" => reference(text),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Fuzz target `reference`: every line is parsed as an image reference; parsing never panics,
/// a refusal quotes the input, and what is accepted round-trips through its display form with
/// the same registry, repository, tag and digest.
pub(crate) fn reference(text: &str) {
    for line in text.lines() {
        match Reference::parse(line) {
            Ok(r) => {
                let shown = r.to_string();
                let again = Reference::parse(&shown)
                    .unwrap_or_else(|e| panic!("{line:?} shown as {shown:?} is refused: {e}"));
                assert_eq!(again, r, "{line:?} does not round-trip through {shown:?}");
                assert!(!r.repository().is_empty(), "{line:?}: empty repository");
                let _ = (r.api_host(), r.manifest_ref(), r.name());
            }
            Err(e) => assert!(
                e.to_string().contains(&format!("{line:?}")),
                "the error for {line:?} does not quote it: {e}"
            ),
        }
    }
}

//! Property tests for the `build` flag grammars: display → parse round trips (quoted fields
//! keep their commas and quotes), and no input makes a parser panic or refuse without naming
//! the flag and the value.

use std::collections::BTreeMap;

use kbx_opts::{BuildContext, CacheEntry, Error, ExportEntry, SecretSpec, SshSpec};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

/// Values with the characters that need CSV quoting.
fn value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,\"=:/._\\n-]{0,16}"
}

/// Attribute keys as buildx stores them (trimmed, lowercase), other than `type` and `dest`.
fn attrs() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map("[a-z][a-z0-9._-]{0,10}", value(), 0..5).prop_map(|m| {
        m.into_iter()
            .filter(|(k, _)| k != "type" && k != "dest")
            .collect()
    })
}

/// Whether a refusal names the flag and the value (`{:?}`-quoted).
fn names(err: &Error, flag: &str, spec: &str) -> bool {
    let text = err.to_string();
    text.starts_with(&format!("{flag} {spec:?}: ")) && text.len() > flag.len() + spec.len() + 4
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn outputs_round_trip(kind in "[a-z][a-z-]{0,8}", dest in option::of(value()), attrs in attrs()) {
        let e = ExportEntry { kind, dest, attrs };
        let text = e.to_string();
        prop_assert_eq!(ExportEntry::parse(&text).expect(&text), e);
    }

    #[test]
    fn caches_round_trip(kind in "[a-z][a-z0-9=,\" -]{0,8}", attrs in attrs()) {
        let e = CacheEntry { kind, attrs };
        let text = e.to_string();
        prop_assert_eq!(CacheEntry::parse(&text).expect(&text), e.clone());
        prop_assert_eq!(CacheEntry::parse_list(&text).expect(&text), vec![e]);
    }

    #[test]
    fn registry_reference_lists_split(refs in vec("[a-z0-9./:@-]{1,20}", 1..5)) {
        let text = refs.join(",");
        let got = CacheEntry::parse_list(&text).expect(&text);
        prop_assert_eq!(got, refs.into_iter().map(CacheEntry::registry).collect::<Vec<_>>());
    }

    #[test]
    fn secrets_round_trip(
        id in "[a-zA-Z0-9 ,\"=:/._-]{1,12}",
        src in option::of("[a-zA-Z0-9 ,\"=:/._-]{1,12}"),
        env in option::of("[a-zA-Z0-9_,]{1,12}"),
    ) {
        let s = SecretSpec { id, src, env };
        let text = s.to_string();
        prop_assert_eq!(SecretSpec::parse(&text).expect(&text), s);
    }

    #[test]
    fn ssh_specs_round_trip(id in "[a-zA-Z0-9_.-]{1,10}", paths in vec("[a-zA-Z0-9/._ -]{1,12}", 0..4)) {
        let s = SshSpec { id, paths };
        prop_assert_eq!(SshSpec::parse(&s.to_string()), s);
    }

    #[test]
    fn no_flag_parser_panics_and_refusals_name_the_flag(input in "[ -~\\n\\r\\t]{0,40}|\\PC{0,20}") {
        if let Err(e) = ExportEntry::parse(&input) {
            prop_assert!(names(&e, "--output", &input), "{e}");
        }
        if let Err(e) = CacheEntry::parse(&input) {
            prop_assert!(names(&e, "--cache-from/--cache-to", &input), "{e}");
        }
        if let Err(e) = CacheEntry::parse_list(&input) {
            prop_assert!(names(&e, "--cache-from/--cache-to", &input), "{e}");
        }
        if let Err(e) = SecretSpec::parse(&input) {
            prop_assert!(names(&e, "--secret", &input), "{e}");
        }
        match BuildContext::parse(&input) {
            Ok(c) => prop_assert!(!c.name.is_empty()),
            Err(e) => prop_assert!(names(&e, "--build-context", &input), "{e}"),
        }
        let _ = SshSpec::parse(&input).to_string();
    }
}

/// Buildx's documented multi-name output and the quoted forms issue reports name.
#[test]
fn quoted_fields_give_buildx_results() {
    let e =
        ExportEntry::parse(r#"type=image,"name=reg/app:1,reg/app:latest",push=true"#).expect("ok");
    assert_eq!(e.attrs["name"], "reg/app:1,reg/app:latest");
    let s = SecretSpec::parse(r#"id=a,"src=/path/with,comma""#).expect("ok");
    assert_eq!(s.src.as_deref(), Some("/path/with,comma"));
    // A quote inside a field is doubled.
    let s = SecretSpec::parse(r#"id=a,"src=/say ""hi"", ok""#).expect("ok");
    assert_eq!(s.src.as_deref(), Some(r#"/say "hi", ok"#));
}

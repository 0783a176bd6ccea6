//! Property tests: the parsers of user-given flags (`--output`, `--cache-from/-to`,
//! `--secret`, `--ssh`, `--build-context`, addresses, `.dockerignore` patterns) never panic,
//! and every error names the flag and the value as given.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use kbx_buildkit::{
    Address, CacheEntry, NamedContext, Output, PatternMatcher, Secret, SecretSource, SshAgent,
};
use proptest::prelude::*;

/// Strings shaped like flag values: key=value fields with commas, quotes, schemes and
/// unicode, plus fully arbitrary text.
fn spec() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just("type".to_owned()),
                Just("dest".to_owned()),
                Just("name".to_owned()),
                Just("push".to_owned()),
                Just("id".to_owned()),
                Just("src".to_owned()),
                Just("env".to_owned()),
                Just("ref".to_owned()),
                Just("docker-image://".to_owned()),
                Just("oci-layout://".to_owned()),
                Just("unix://".to_owned()),
                Just("tcp://".to_owned()),
                Just("docker-unix://".to_owned()),
                "[a-z]{0,6}",
                "[=,\"'/:@ .\\-]{1,3}",
                "\\PC{0,4}",
            ],
            0..10,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// `.dockerignore`-like patterns: wildcards, classes, escapes, `**`, `!` and separators.
fn pattern() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("*".to_owned()),
            Just("**".to_owned()),
            Just("?".to_owned()),
            Just("!".to_owned()),
            Just("/".to_owned()),
            Just("\\".to_owned()),
            Just("[".to_owned()),
            Just("]".to_owned()),
            Just("^".to_owned()),
            Just("-".to_owned()),
            Just("..".to_owned()),
            "[a-c]{1,3}",
            "\\PC{0,2}",
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof!["[a-c]{1,3}", Just("..".to_owned()), "\\PC{1,3}"],
        1..5,
    )
    .prop_map(|parts| parts.join("/"))
}

/// An error's text names the flag and the value (quoted as Rust's `{:?}` quotes it).
fn names(err: &kbx_buildkit::Error, flag: &str, value: &str) -> bool {
    let text = err.to_string();
    text.contains(flag) && text.contains(&format!("{value:?}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn output_never_panics_and_names_the_flag(s in spec()) {
        if let Err(e) = Output::parse(&s) {
            prop_assert!(names(&e, "--output", &s), "{e}");
        }
    }

    #[test]
    fn cache_entries_never_panic_and_name_the_value(s in spec()) {
        match CacheEntry::parse(&s) {
            Ok(e) => prop_assert!(!e.kind.is_empty() || s.contains("type=")),
            Err(e) => prop_assert!(names(&e, "cache", &s), "{e}"),
        }
    }

    #[test]
    fn secrets_never_panic_and_name_the_flag(s in spec()) {
        match Secret::parse(&s) {
            Ok(secret) => {
                // What is accepted has an id and a source that came from the spec.
                prop_assert!(!secret.id.is_empty());
                let from_spec = match &secret.source {
                    SecretSource::File(p) => s.contains(&*p.to_string_lossy()),
                    SecretSource::Env(v) => s.contains(v.as_str()),
                    other => panic!("a new secret source {other:?}: extend this test"),
                };
                prop_assert!(from_spec, "{s:?} gave {secret:?}");
            }
            Err(e) => prop_assert!(names(&e, "--secret", &s), "{e}"),
        }
    }

    #[test]
    fn ssh_specs_never_panic(s in spec()) {
        if let Err(e) = SshAgent::parse(&s) {
            prop_assert!(names(&e, "--ssh", &s), "{e}");
        }
    }

    #[test]
    fn named_contexts_never_panic_and_name_the_flag(s in spec()) {
        match NamedContext::parse(&s) {
            Ok(c) => prop_assert!(!c.name.is_empty()),
            Err(e) => prop_assert!(names(&e, "--build-context", &s), "{e}"),
        }
    }

    #[test]
    fn addresses_never_panic_and_name_the_address(s in spec()) {
        for parsed in [Address::parse(&s), Address::parse_docker_host(&s)] {
            if let Err(e) = parsed {
                prop_assert!(names(&e, "address", &s), "{e}");
            }
        }
    }

    #[test]
    fn patterns_never_panic(patterns in proptest::collection::vec(pattern(), 0..6), p in path()) {
        if let Ok(m) = PatternMatcher::new(&patterns) {
            let _ = m.matches(&p);
            for one in m.patterns() {
                let _ = one.is_match(&p);
            }
        }
    }

    #[test]
    fn a_literal_pattern_excludes_its_path_and_its_negation_brings_it_back(
        segments in proptest::collection::vec("[a-z0-9_]{1,6}", 1..4),
    ) {
        let p = segments.join("/");
        let excluded = PatternMatcher::new([p.as_str()]).unwrap();
        prop_assert!(excluded.matches(&p));
        let deeper = format!("{p}/inner");
        prop_assert!(excluded.matches(&deeper), "a directory pattern covers what is inside");
        let back = PatternMatcher::new([p.clone(), format!("!{p}")]).unwrap();
        prop_assert!(!back.matches(&p));
    }
}

//! Property tests: `Reference::parse` never panics, and what it accepts round-trips.

use kbx_registry::Reference;
use proptest::prelude::*;

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}"
}

fn reference() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop_oneof![
            Just("localhost".to_owned()),
            "[a-z][a-z0-9-]{0,10}[a-z0-9]\\.[a-z]{2,5}",
            "[a-z][a-z0-9]{0,10}\\.[a-z]{2,5}:[0-9]{1,5}",
            Just("127.0.0.1:5000".to_owned()),
            Just("[::1]:5000".to_owned()),
        ]),
        prop::collection::vec(component(), 1..4),
        prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        prop::option::of("[0-9a-f]{64}"),
    )
        .prop_map(|(host, path, tag, digest)| {
            let mut s = match host {
                Some(h) => format!("{h}/{}", path.join("/")),
                // Without a host, a first component with a '.' would name one.
                None => {
                    let mut path = path;
                    path[0] = path[0].replace('.', "-");
                    path.join("/")
                }
            };
            if let Some(t) = tag {
                s.push(':');
                s.push_str(&t);
            }
            if let Some(d) = digest {
                s.push_str("@sha256:");
                s.push_str(&d);
            }
            s
        })
}

proptest! {
    #[test]
    fn never_panics(s in "\\PC{0,80}") {
        let _ = Reference::parse(&s);
    }

    #[test]
    fn reference_like_text_round_trips_when_accepted(s in "[a-zA-Z0-9:/@._\\[\\]-]{0,60}") {
        if let Ok(r) = Reference::parse(&s) {
            let again = Reference::parse(&r.to_string());
            prop_assert_eq!(again.ok(), Some(r));
        }
    }

    #[test]
    fn generated_references_parse_and_round_trip(s in reference()) {
        let r = Reference::parse(&s);
        prop_assert!(r.is_ok(), "{} rejected: {:?}", s, r);
        let r = r.expect("checked");
        // The last path segment (with tag and digest) is kept as written.
        let last = s.rsplit('/').next().unwrap_or_default();
        let shown = r.to_string();
        prop_assert!(
            shown.ends_with(last) || shown.ends_with(&format!("{last}:latest")),
            "{} shown as {}", s, shown
        );
        let again = Reference::parse(&r.to_string());
        prop_assert_eq!(again.ok(), Some(r));
    }
}

//! Property tests for the single-value `build` flags (`--add-host`, `--allow`, `--annotation`,
//! `--shm-size`, `--ulimit`): display → parse round trips, and no input makes a parser panic or
//! refuse without naming the flag and the value.

use std::net::IpAddr;

use kbx_opts::{
    AnnotationKey, AnnotationType, Entitlement, Error, ExtraHost, HostIp, Platform, Ulimit,
    parse_annotation, parse_mem_bytes,
};
use proptest::option;
use proptest::prelude::*;

/// Whether a refusal names the flag and the value (`{:?}`-quoted).
fn names(err: &Error, flag: &str, spec: &str) -> bool {
    err.to_string().starts_with(&format!("{flag} {spec:?}: "))
}

fn ulimit() -> impl Strategy<Value = Ulimit> {
    let names = prop::sample::select(vec!["core", "nofile", "nproc", "stack", "rtprio"]);
    (names, -1i64..=i64::MAX, -1i64..=i64::MAX).prop_map(|(name, a, b)| {
        // Valid limits: an unlimited hard allows any soft; otherwise -1 < soft <= hard.
        let (soft, hard) = if b == -1 {
            (a, -1)
        } else if a == -1 {
            (b, b)
        } else {
            (a.min(b), a.max(b))
        };
        Ulimit {
            name: name.to_owned(),
            soft,
            hard,
        }
    })
}

fn annotation_type() -> impl Strategy<Value = AnnotationType> {
    prop::sample::select(vec![
        AnnotationType::Index,
        AnnotationType::IndexDescriptor,
        AnnotationType::Manifest,
        AnnotationType::ManifestDescriptor,
    ])
}

fn platform() -> impl Strategy<Value = Platform> {
    prop::sample::select(vec![
        Platform::new("linux", "amd64", ""),
        Platform::new("linux", "arm64", ""),
        Platform::new("linux", "arm", "v6"),
        Platform::new("windows", "amd64", ""),
    ])
}

/// The flag text of one typed annotation.
fn annotation_flag(key: &AnnotationKey, value: &str) -> String {
    match key.kind {
        None => format!("{}={value}", key.key),
        Some(kind) => {
            let platform = key
                .platform
                .as_ref()
                .map(|p| format!("[{p}]"))
                .unwrap_or_default();
            format!("{}{platform}:{}={value}", kind.as_str(), key.key)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hosts_round_trip(host in "[a-zA-Z0-9.-]{1,20}", ip in any::<IpAddr>(), colon in any::<bool>()) {
        let h = ExtraHost { host, ip: HostIp::Ip(ip) };
        prop_assert_eq!(ExtraHost::parse(&h.to_string()).unwrap(), h.clone());
        // The Docker form `HOST:IP` reads back the same (IPv6 in brackets).
        let docker = match ip {
            IpAddr::V6(v6) if colon => format!("{}:[{v6}]", h.host),
            _ if colon => format!("{}:{ip}", h.host),
            _ => h.to_string(),
        };
        prop_assert_eq!(ExtraHost::parse(&docker).unwrap(), h);
    }

    #[test]
    fn ulimits_round_trip(u in ulimit()) {
        prop_assert_eq!(Ulimit::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn sizes_round_trip(n in 0i64..(1 << 53), unit in prop::sample::select(vec![("", 0), ("b", 0), ("k", 10), ("KiB", 10), ("mb", 20), ("G", 30)])) {
        let (suffix, shift) = unit;
        let text = format!("{n}{suffix}");
        let bytes = n as f64 * (1u64 << shift) as f64;
        // Go's float → int64 conversion (amd64): out of range is the minimum.
        let want = if bytes >= 9_223_372_036_854_775_808.0 { i64::MIN } else { bytes as i64 };
        prop_assert_eq!(parse_mem_bytes("--shm-size", &text).unwrap(), want);
    }

    #[test]
    fn annotations_round_trip(
        kind in option::of(annotation_type()),
        platform in option::of(platform()),
        key in "[a-z0-9.-]{0,12}",
        value in "[ -~]{0,12}",
    ) {
        let key = AnnotationKey { platform: kind.and(platform), kind, key };
        let text = annotation_flag(&key, &value);
        prop_assert_eq!(parse_annotation(&text).unwrap(), vec![(key, value)]);
    }

    #[test]
    fn entitlements_round_trip(e in prop::sample::select(vec!["network.host", "security.insecure", "device", "device=gpu"])) {
        let e = Entitlement(e.to_owned());
        prop_assert_eq!(Entitlement::parse(&e.to_string()).unwrap(), e);
    }

    #[test]
    fn no_value_parser_panics_or_refuses_anonymously(input in "[ -~\\n\u{e9}\u{2028}]{0,24}") {
        for (flag, r) in [
            ("--add-host", ExtraHost::parse_flag(&input).map(drop)),
            ("--allow", Entitlement::parse_flag(&input).map(drop)),
            ("--annotation", parse_annotation(&input).map(drop)),
            ("--ulimit", Ulimit::parse(&input).map(drop)),
            ("--shm-size", parse_mem_bytes("--shm-size", &input).map(drop)),
        ] {
            if let Err(e) = r {
                // A string-slice flag names the entry; the others the whole value.
                let ok = names(&e, flag, &input) || matches!(&e, Error::BuildFlag { flag: f, .. } if *f == flag);
                prop_assert!(ok, "{}: {}", flag, e);
                prop_assert!(e.expected().is_some());
            }
        }
    }
}

//! Property tests: display → parse round trips, no panics on any input, and idempotent quantity
//! canonicalisation.

use kbx_opts::{
    BuildkitdConfig, DriverOpts, EnvVar, GoDuration, KeyValues, KubernetesEndpoint,
    KubernetesOptions, LoadBalance, Platform, Quantity, Resources, Toleration, buildkitd_args,
    parse_bool, split_shell_words,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

/// Quantity texts that follow the grammar (sign, digits, fraction, suffix or exponent).
fn quantity_text() -> impl Strategy<Value = String> {
    let suffix = prop_oneof![
        Just(String::new()),
        prop::sample::select(vec!["n", "u", "m", "k", "M", "G", "T", "P", "E"])
            .prop_map(String::from),
        prop::sample::select(vec!["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]).prop_map(String::from),
        (
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "+", "-"]),
            0u8..30
        )
            .prop_map(|(e, s, n)| format!("{e}{s}{n}")),
    ];
    (
        prop::sample::select(vec!["", "+", "-"]),
        "[0-9]{1,12}",
        option::of("[0-9]{0,12}"),
        suffix,
    )
        .prop_map(|(sign, int, frac, suffix)| match frac {
            Some(f) => format!("{sign}{int}.{f}{suffix}"),
            None => format!("{sign}{int}{suffix}"),
        })
}

fn quantity() -> impl Strategy<Value = Quantity> {
    quantity_text().prop_filter_map("valid quantity", |t| Quantity::parse(&t).ok())
}

fn resources() -> impl Strategy<Value = Resources> {
    (
        option::of(quantity()),
        option::of(quantity()),
        option::of(quantity()),
    )
        .prop_map(|(cpu, memory, ephemeral_storage)| Resources {
            cpu,
            memory,
            ephemeral_storage,
        })
}

/// `k=v` lists: no `,` or `=` inside, and no `"` at the ends (buildx strips them).
fn key_values() -> impl Strategy<Value = KeyValues> {
    btree_map("[a-z][a-z0-9./-]{0,20}", "[a-zA-Z0-9_. -]{0,12}", 0..4).prop_map(|m| {
        let mut kv = KeyValues::new();
        for (k, v) in m {
            kv.insert(k, v);
        }
        kv
    })
}

fn toleration() -> impl Strategy<Value = Toleration> {
    (
        "[a-z][a-z0-9./-]{0,15}",
        prop::sample::select(vec!["", "Equal", "Exists"]),
        "[a-z0-9]{0,8}",
        prop::sample::select(vec!["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
        option::of(any::<i64>()),
    )
        .prop_map(
            |(key, operator, value, effect, toleration_seconds)| Toleration {
                key,
                operator: operator.into(),
                value,
                effect: effect.into(),
                toleration_seconds,
            },
        )
}

/// Free-form strings, including CSV's special characters.
fn free_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:/@._, \"=;-]{1,30}"
}

fn options() -> impl Strategy<Value = KubernetesOptions> {
    let a = (
        free_text(),
        option::of("[a-z0-9-]{0,20}"),
        0i32..=i32::MAX,
        resources(),
        resources(),
        option::of(quantity()),
        option::of(quantity()),
        any::<bool>(),
        option::of(free_text()),
        option::of(free_text()),
    );
    let b = (
        key_values(),
        key_values(),
        key_values(),
        vec(toleration(), 0..3),
        prop::sample::select(vec![
            LoadBalance::Sticky,
            LoadBalance::Random,
            LoadBalance::Rendezvous,
        ]),
        any::<bool>(),
        free_text(),
        any::<bool>(),
        1i64..=i64::MAX,
        btree_map("[A-Z_][A-Z0-9_]{0,10}", "[ -~]{0,20}", 0..4),
        option::of(free_text()),
    );
    (a, b).prop_map(
        |(
            (image, namespace, replicas, requests, limits, pvc, memory, rootless, sched, sa),
            (
                node_selector,
                annotations,
                labels,
                tolerations,
                lb,
                qemu,
                qemu_image,
                load,
                ns,
                env,
                context,
            ),
        )| KubernetesOptions {
            image,
            namespace,
            context,
            replicas,
            requests,
            limits,
            persistent_volume_claim_storage: pvc,
            buildkit_root_volume_memory: memory,
            rootless,
            scheduler_name: sched,
            service_account: sa,
            node_selector,
            annotations,
            labels,
            tolerations,
            load_balance: lb,
            qemu_install: qemu,
            qemu_image,
            default_load: load,
            timeout: GoDuration::from_nanos(ns),
            env: env
                .into_iter()
                .map(|(name, value)| EnvVar { name, value })
                .collect(),
        },
    )
}

/// Inputs biased towards the grammars' alphabets, so parsers get past their first byte.
fn grammar_soup() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9=,;\"'\\\\ ./:?&%#+\\-\r\n\t]{0,60}",
        "[0-9.eEinumkKMGTP+\\-]{0,20}",
        "[0-9.hmsuµn+\\-]{0,20}",
        "(kubernetes:///)?[a-z%?&=/+]{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn options_display_parse_round_trip(o in options()) {
        let text = o.to_string();
        let back = if text.is_empty() {
            KubernetesOptions::default()
        } else {
            KubernetesOptions::parse([text.as_str()])
                .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?
        };
        prop_assert_eq!(back, o, "record: {}", text);
    }

    #[test]
    fn driver_opts_display_parse_round_trip(
        pairs in vec(("[a-z.=\" ,-]{1,12}", "[ -~]{0,20}"), 1..6)
    ) {
        // Keys never contain `=` after a parse (the first `=` splits), so drop those.
        let pairs: Vec<_> = pairs.into_iter().filter(|(k, _)| !k.contains('=')).collect();
        prop_assume!(!pairs.is_empty());
        let d = DriverOpts::from_pairs(pairs);
        let text = d.to_string();
        let back = DriverOpts::parse([text.as_str()]).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        let a: Vec<_> = d.iter().map(|o| (o.key(), o.value())).collect();
        let b: Vec<_> = back.iter().map(|o| (o.key(), o.value())).collect();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn quantity_canonicalisation_is_idempotent(text in quantity_text()) {
        if let Ok(q) = Quantity::parse(&text) {
            let canonical = q.canonical();
            let again = Quantity::parse(&canonical)
                .map_err(|e| TestCaseError::fail(format!("{text} -> {canonical}: {e}")))?;
            prop_assert_eq!(again.canonical(), canonical.clone(), "{} -> {}", text, canonical);
            prop_assert_eq!(again.as_nanos(), q.as_nanos());
            let serialized = q.serialized();
            let from_serialized = Quantity::parse(&serialized)
                .map_err(|e| TestCaseError::fail(format!("{text} -> {serialized}: {e}")))?;
            prop_assert_eq!(from_serialized.canonical(), canonical);
        }
    }

    #[test]
    fn durations_round_trip(nanos in any::<i64>()) {
        let d = GoDuration::from_nanos(nanos);
        prop_assert_eq!(GoDuration::parse(&d.to_string()).ok(), Some(d));
    }

    #[test]
    fn platforms_round_trip(p in prop::sample::select(vec![
        "linux/amd64", "linux/arm64", "linux/arm", "linux/arm/v6", "linux/386", "linux/riscv64",
        "linux/ppc64le", "linux/s390x", "windows/amd64", "darwin/arm64", "linux/amd64/v3",
    ])) {
        let local = Platform::local();
        let parsed = Platform::parse(p, &local).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = Platform::parse(&parsed.to_string(), &local).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(again, parsed);
    }

    #[test]
    fn endpoint_round_trip(builder in "[ -~]{0,20}", deployment in "[ -~]{0,20}", kubeconfig in "[ -~]{0,30}") {
        let ep = KubernetesEndpoint::new(&builder, &deployment, &kubeconfig);
        let text = ep.to_string();
        prop_assert_eq!(KubernetesEndpoint::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?, ep);
    }

    #[test]
    fn no_parser_panics(input in grammar_soup()) {
        let _ = DriverOpts::parse([input.as_str()]);
        let _ = DriverOpts::parse([input.as_str(), input.as_str()]);
        let _ = KubernetesOptions::parse([input.as_str()]);
        if let Ok(e) = KubernetesOptions::parse([input.as_str()]) {
            let _ = e.to_string();
        }
        if let Err(e) = KubernetesOptions::parse([input.as_str()]) {
            // Rendering errors must not panic either, nor produce empty messages.
            prop_assert!(!e.to_string().is_empty() || input.is_empty());
            let _ = miette::Report::new(e);
        }
        let _ = Quantity::parse(&input).map(|q| (q.canonical(), q.serialized(), q.as_nanos()));
        let _ = GoDuration::parse(&input).map(|d| d.to_string());
        let _ = parse_bool(&input);
        let _ = KeyValues::parse(&input);
        let _ = Toleration::parse_list(&input);
        let _ = Platform::parse(&input, &Platform::local());
        let _ = Platform::parse_list([input.as_str()], &Platform::local());
        let _ = split_shell_words(&input);
        let _ = buildkitd_args(Some(&input), None);
        let _ = BuildkitdConfig::parse(&input);
        let _ = KubernetesEndpoint::parse(&input);
    }
}

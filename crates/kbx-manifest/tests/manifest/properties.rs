//! Property tests: any valid node renders, passes our validation, reads back and is byte-stable;
//! nothing panics on arbitrary input.

use kbx_manifest::{ConfigFiles, Node, render};
use kbx_opts::{EnvVar, KeyValues, KubernetesOptions, Platform, Quantity, Toleration};
use proptest::prelude::*;
use proptest::sample::select;

use crate::common::read_back;

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?"
}

fn subdomain() -> impl Strategy<Value = String> {
    prop::collection::vec(dns_label(), 1..4).prop_map(|parts| parts.join("."))
}

fn name_part() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?"
}

fn qualified_key() -> impl Strategy<Value = String> {
    (prop::option::of(subdomain()), name_part()).prop_map(|(prefix, name)| match prefix {
        Some(p) => format!("{p}/{name}"),
        None => name,
    })
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), name_part()]
}

fn key_values(
    value: impl Strategy<Value = String>,
    reserved: &'static str,
) -> impl Strategy<Value = KeyValues> {
    prop::collection::vec((qualified_key(), value), 0..4).prop_map(move |pairs| {
        pairs
            .into_iter()
            .filter(|(k, _)| k != reserved)
            .collect::<KeyValues>()
    })
}

/// A positive quantity in one of the usual notations.
fn quantity() -> impl Strategy<Value = Quantity> {
    (
        1u32..5000,
        select(&["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "e3"][..]),
    )
        .prop_map(|(n, suffix)| Quantity::parse(&format!("{n}{suffix}")).expect("valid quantity"))
}

/// A request and a limit not below it (either may be missing).
fn request_limit() -> impl Strategy<Value = (Option<Quantity>, Option<Quantity>)> {
    (1u64..4000, 0u64..4000, 0u8..4).prop_map(|(req, extra, which)| {
        let q = |n: u64| Quantity::parse(&format!("{n}Mi")).expect("valid quantity");
        match which {
            0 => (None, None),
            1 => (Some(q(req)), None),
            2 => (None, Some(q(req))),
            _ => (Some(q(req)), Some(q(req + extra))),
        }
    })
}

fn toleration() -> impl Strategy<Value = Toleration> {
    (
        prop::option::of(qualified_key()),
        select(&["", "Equal", "Exists"][..]),
        label_value(),
        select(&["", "NoSchedule", "PreferNoSchedule", "NoExecute"][..]),
        prop::option::of(-100i64..100_000),
    )
        .prop_map(|(key, operator, value, effect, seconds)| {
            let key = key.unwrap_or_default();
            let operator = if key.is_empty() { "Exists" } else { operator };
            Toleration {
                value: if operator == "Exists" {
                    String::new()
                } else {
                    value
                },
                operator: operator.to_owned(),
                key,
                effect: effect.to_owned(),
                toleration_seconds: seconds.filter(|_| effect == "NoExecute"),
            }
        })
}

fn env() -> impl Strategy<Value = Vec<EnvVar>> {
    prop::collection::btree_map("[A-Za-z_][-._A-Za-z0-9 ]{0,12}", "\\PC{0,16}", 0..4).prop_map(
        |m| {
            m.into_iter()
                .map(|(name, value)| EnvVar { name, value })
                .collect()
        },
    )
}

fn files() -> impl Strategy<Value = ConfigFiles> {
    (
        prop::option::of("[ -~\n]{0,60}"),
        prop::collection::btree_map(
            (dns_label(), "[A-Za-z0-9_-][-._A-Za-z0-9]{0,10}"),
            prop::collection::vec(any::<u8>(), 0..40),
            0..4,
        ),
    )
        .prop_map(|(config, certs)| {
            let mut files = ConfigFiles::new();
            if let Some(c) = config {
                files.insert("buildkitd.toml", c);
            }
            for ((host, name), data) in certs {
                files.insert(format!("certs/{host}/{name}"), data);
            }
            files
        })
}

prop_compose! {
    fn options()(
        image in "[a-z0-9./:-]{1,30}",
        namespace in prop::option::of(dns_label()),
        replicas in 0i32..20,
        cpu in request_limit(),
        memory in request_limit(),
        storage in request_limit(),
        state in (any::<bool>(), prop::option::of(quantity())),
        rootless in any::<bool>(),
        scheduler_name in prop::option::of(subdomain()),
        service_account in prop::option::of(subdomain()),
        node_selector in key_values(label_value(), ""),
        annotations in key_values("\\PC{0,200}", "buildx.docker.com/platform"),
        labels in key_values(label_value(), "app"),
        tolerations in prop::collection::vec(toleration(), 0..4),
        qemu_install in any::<bool>(),
        qemu_image in "[a-z0-9./:-]{1,30}",
        env in env(),
    ) -> KubernetesOptions {
        let (stateful, size) = state;
        let mut o = KubernetesOptions {
            image,
            namespace,
            replicas,
            rootless,
            scheduler_name,
            service_account,
            node_selector,
            annotations,
            labels,
            tolerations,
            qemu_install,
            qemu_image,
            env,
            ..KubernetesOptions::default()
        };
        (o.requests.cpu, o.limits.cpu) = cpu;
        (o.requests.memory, o.limits.memory) = memory;
        (o.requests.ephemeral_storage, o.limits.ephemeral_storage) = storage;
        if stateful {
            o.persistent_volume_claim_storage = size;
        } else {
            o.buildkit_root_volume_memory = size;
        }
        o
    }
}

prop_compose! {
    fn node()(
        name in "[a-z][a-z0-9_-]{0,30}[a-z0-9]",
        platforms in prop::collection::vec(
            select(&["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/riscv64"][..]),
            0..3,
        ),
        flags in prop::collection::vec(prop_oneof!["\\PC{0,12}", "[ a-z\\n]{60,160}"], 0..4),
        files in files(),
        options in options(),
    ) -> Node {
        let local = Platform::new("linux", "amd64", "");
        let platforms = platforms
            .into_iter()
            .map(|p| Platform::parse(p, &local).expect("valid platform"))
            .collect();
        Node { name, platforms, flags, files, options }
    }
}

proptest! {
    #[test]
    fn valid_nodes_render_and_round_trip(node in node()) {
        let m = render(&node).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let yaml = m.to_yaml().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&yaml, &render(&node).expect("renders twice").to_yaml().expect("yaml"));
        let back = read_back(&m).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.to_yaml().expect("yaml"), yaml);
        prop_assert_eq!(
            m.workload.metadata().name.clone(),
            Some(node.name.replace('_', "-"))
        );
        prop_assert_eq!(m.workload.kind() == "StatefulSet", node.is_stateful());
        let dirs: std::collections::BTreeSet<&str> = node
            .files
            .iter()
            .map(|(p, _)| p.rsplit_once('/').map_or(".", |(d, _)| d))
            .collect();
        prop_assert_eq!(m.config_maps.len(), dirs.len());
    }

    #[test]
    fn arbitrary_driver_opts_never_panic(
        name in "\\PC{0,70}",
        records in prop::collection::vec("\\PC{0,60}", 1..4),
    ) {
        if let Ok(options) = KubernetesOptions::parse(&records) {
            let node = Node::new(name, options);
            if let Ok(m) = render(&node) {
                prop_assert!(m.to_yaml().is_ok());
            }
        }
    }

    #[test]
    fn arbitrary_option_values_never_panic(
        key in select(&[
            "labels", "annotations", "nodeselector", "tolerations", "namespace", "image",
            "serviceaccount", "schedulername", "requests.cpu", "limits.cpu",
            "buildkit-root-volume-memory", "persistent-volume-claim.requests.storage", "env.X",
        ][..]),
        value in "[ -~]{0,40}",
        rootless in any::<bool>(),
    ) {
        let record = format!("\"{key}={}\",rootless={rootless}", value.replace('"', "\"\""));
        if let Ok(options) = KubernetesOptions::parse([record]) {
            match render(&Node::new("b0", options)) {
                Ok(m) => prop_assert!(m.to_yaml().is_ok()),
                Err(e) => prop_assert!(e.is_validation()),
            }
        }
    }
}

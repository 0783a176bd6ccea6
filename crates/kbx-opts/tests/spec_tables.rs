//! Data tables from the buildx reference: §2.1 (CSV tokenising), §3 (option texts), §3.1
//! (tolerations), §9.3 (endpoints), §11.1 (`processDriverOpts` subtests) and §11.6
//! (`TestCsvToMap`, `TestParseBuildkitdFlags`). Expected texts are copied from the reference.

use kbx_opts::{
    BuildkitdConfig, DEFAULT_ENTITLEMENT_FLAG, DriverOpts, Error, KubernetesEndpoint,
    KubernetesOptions, LoadBalance, Toleration, buildkitd_args,
};
use std::time::Duration;

fn parse(records: &[&str]) -> Result<KubernetesOptions, Error> {
    KubernetesOptions::parse(records.iter().copied())
}

fn err(records: &[&str]) -> String {
    parse(records)
        .expect_err("input must be rejected")
        .to_string()
}

#[test]
fn csv_to_map() {
    // TestCsvToMap
    let d = DriverOpts::parse([
        "\"tolerations=key=foo,value=bar;key=foo2,value=bar2\",replicas=1",
        "namespace=default",
    ])
    .unwrap();
    let pairs: Vec<(&str, &str)> = d.iter().map(|o| (o.key(), o.value())).collect();
    assert_eq!(
        pairs,
        [
            ("tolerations", "key=foo,value=bar;key=foo2,value=bar2"),
            ("replicas", "1"),
            ("namespace", "default"),
        ]
    );
}

#[test]
fn csv_tokenising_table() {
    let table: &[(&[&str], &str)] = &[
        (
            &["nodeselector=\"a=b,c=d\""],
            "parse error on line 1, column 14: bare \" in non-quoted-field",
        ),
        (
            &["\"nodeselector=a=b,c=d"],
            "parse error on line 1, column 2: extraneous or missing \" in quoted-field",
        ),
        (&[""], "EOF"),
        (&["a=b,"], "invalid value \"\", expecting k=v"),
        (&["namespace"], "invalid value \"namespace\", expecting k=v"),
    ];
    for (records, want) in table {
        let got = DriverOpts::parse(records.iter().copied()).unwrap_err();
        assert_eq!(got.to_string(), *want, "{records:?}");
    }
    type Pairs = &'static [(&'static str, &'static str)];
    let ok: &[(&[&str], Pairs)] = &[
        (&["replicas=1,replicas=3"], &[("replicas", "3")]),
        (&["namespace=a", "namespace=b"], &[("namespace", "b")]),
        (&["=x"], &[("", "x")]),
        (&[" namespace=x"], &[(" namespace", "x")]),
        (
            &["nodeselector=a=b,c=d"],
            &[("nodeselector", "a=b"), ("c", "d")],
        ),
        (&["\"a=b,c\"\"d\""], &[("a", "b,c\"d")]),
        (&["namespace=a\n"], &[("namespace", "a")]),
        (&["namespace=a\r\n"], &[("namespace", "a")]),
    ];
    for (records, want) in ok {
        let d = DriverOpts::parse(records.iter().copied()).unwrap();
        let got: Vec<(&str, &str)> = d.iter().map(|o| (o.key(), o.value())).collect();
        assert_eq!(&got, want, "{records:?}");
    }
}

#[test]
fn process_driver_opts_valid_options() {
    let o = parse(&[
        "namespace=test-ns",
        "image=test:latest",
        "replicas=2",
        "timeout=300s",
        "requests.cpu=100m",
        "requests.memory=32Mi",
        "limits.cpu=200m",
        "limits.memory=64Mi",
        "rootless=true",
        "\"nodeselector=selector1=value1,selector2=value2\"",
        "\"tolerations=key=tolerationKey1,value=tolerationValue1,operator=Equal,effect=NoSchedule,tolerationSeconds=60;key=tolerationKey2,operator=Exists\"",
        "\"annotations=example.com/expires-after=annotation1,example.com/other=annotation2\"",
        "\"labels=example.com/owner=label1,example.com/other=label2\"",
        "loadbalance=random",
        "qemu.install=true",
        "qemu.image=qemu:latest",
        "default-load=true",
    ])
    .unwrap();
    assert_eq!(o.namespace.as_deref(), Some("test-ns"));
    assert_eq!(o.image, "test:latest", "an explicit image beats rootless");
    assert_eq!(o.replicas, 2);
    let q = |q: &Option<kbx_opts::Quantity>| q.as_ref().map(|q| q.as_str().to_owned());
    assert_eq!(q(&o.requests.cpu).as_deref(), Some("100m"));
    assert_eq!(q(&o.requests.memory).as_deref(), Some("32Mi"));
    assert_eq!(q(&o.limits.cpu).as_deref(), Some("200m"));
    assert_eq!(q(&o.limits.memory).as_deref(), Some("64Mi"));
    assert!(o.rootless);
    assert_eq!(o.node_selector.len(), 2);
    assert_eq!(o.node_selector.get("selector2"), Some("value2"));
    assert_eq!(
        o.tolerations,
        [
            Toleration {
                key: "tolerationKey1".into(),
                operator: "Equal".into(),
                value: "tolerationValue1".into(),
                effect: "NoSchedule".into(),
                toleration_seconds: Some(60),
            },
            Toleration {
                key: "tolerationKey2".into(),
                operator: "Exists".into(),
                ..Toleration::default()
            },
        ]
    );
    assert_eq!(
        o.annotations.get("example.com/expires-after"),
        Some("annotation1")
    );
    assert_eq!(o.labels.get("example.com/owner"), Some("label1"));
    assert_eq!(o.load_balance, LoadBalance::Random);
    assert!(o.qemu_install);
    assert_eq!(o.qemu_image, "qemu:latest");
    assert!(o.default_load);
    assert_eq!(o.timeout.to_std(), Some(Duration::from_secs(300)));
}

#[test]
fn process_driver_opts_defaults() {
    // NoOptions: no records at all.
    let o = KubernetesOptions::from_driver_opts(&DriverOpts::new()).unwrap();
    assert_eq!(o, KubernetesOptions::default());
    assert_eq!(o.namespace, None, "the kubeconfig namespace applies");
    assert_eq!(o.image, "moby/buildkit:buildx-stable-1");
    assert_eq!(o.replicas, 1);
    assert!(o.requests.is_empty() && o.limits.is_empty());
    assert!(!o.rootless);
    assert!(o.node_selector.is_empty() && o.annotations.is_empty() && o.labels.is_empty());
    assert!(o.tolerations.is_empty());
    assert_eq!(o.load_balance, LoadBalance::Sticky);
    assert!(!o.qemu_install);
    assert_eq!(o.qemu_image, "tonistiigi/binfmt:latest");
    assert!(!o.default_load);
    assert_eq!(o.timeout.to_std(), Some(Duration::from_secs(120)));
    assert!(o.env.is_empty());

    // RootlessOverride
    let o = parse(&["rootless=true,loadbalance=sticky"]).unwrap();
    assert_eq!(o.image, "moby/buildkit:buildx-stable-1-rootless");
    assert_eq!(o.load_balance, LoadBalance::Sticky);
    assert_eq!(
        KubernetesOptions {
            rootless: false,
            image: kbx_opts::DEFAULT_IMAGE.into(),
            ..o
        },
        KubernetesOptions::default()
    );
}

#[test]
fn process_driver_opts_error_texts() {
    let table: &[(&str, &str)] = &[
        // §11.1 subtests, with the texts of §3.
        (
            "replicas=invalid",
            "strconv.ParseInt: parsing \"invalid\": invalid syntax",
        ),
        (
            "rootless=invalid",
            "strconv.ParseBool: parsing \"invalid\": invalid syntax",
        ),
        (
            "\"tolerations=key=foo,value=bar,tolerationSeconds=invalid\"",
            "strconv.Atoi: parsing \"invalid\": invalid syntax",
        ),
        (
            "\"annotations=key,value\"",
            "cannot parse annotations: invalid key-value pair: key",
        ),
        (
            "labels=key=value=foo",
            "cannot parse labels: invalid key-value pair: key=value=foo",
        ),
        ("loadbalance=invalid", "invalid loadbalance \"invalid\""),
        (
            "qemu.install=invalid",
            "strconv.ParseBool: parsing \"invalid\": invalid syntax",
        ),
        (
            "invalid=foo",
            "invalid driver option invalid for driver kubernetes",
        ),
        (
            "timeout=invalid",
            "cannot parse timeout: time: invalid duration \"invalid\"",
        ),
        // §3 reference texts.
        (
            "replicas=3000000000",
            "strconv.ParseInt: parsing \"3000000000\": value out of range",
        ),
        (
            "replicas= 3",
            "strconv.ParseInt: parsing \" 3\": invalid syntax",
        ),
        (
            "limits.memory=1Gb",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        ("requests.cpu=1ki", "unable to parse quantity's suffix"),
        (
            "timeout=10",
            "cannot parse timeout: time: missing unit in duration \"10\"",
        ),
        (
            "env.=x",
            "invalid env option \"env.\", expecting env.FOO=bar",
        ),
        ("=x", "invalid driver option  for driver kubernetes"),
        (
            "allow-untrusted-image=true",
            "invalid driver option allow-untrusted-image for driver kubernetes",
        ),
        (
            "default-load=yes",
            "strconv.ParseBool: parsing \"yes\": invalid syntax",
        ),
        (
            "nodeselector=",
            "cannot parse node selector: invalid key-value pair: ",
        ),
        (
            "\"nodeselector=a=b,\"",
            "cannot parse node selector: invalid key-value pair: ",
        ),
        (
            "nodeselector=a=b=c",
            "cannot parse node selector: invalid key-value pair: a=b=c",
        ),
        // Deviations (docs/deviations.md O3, O5, O6).
        (
            "replicas=-1",
            "invalid replicas \"-1\": must not be negative",
        ),
        (
            "timeout=0s",
            "invalid timeout \"0s\": must be greater than zero",
        ),
        (
            "timeout=-1m",
            "invalid timeout \"-1m\": must be greater than zero",
        ),
        (
            "\"tolerations=key=foo,value=bar,invalid=foo2\"",
            "invalid toleration \"key=foo,value=bar,invalid=foo2\": unknown field \"invalid\", \
             expected key, operator, value, effect or tolerationSeconds",
        ),
        (
            "\"tolerations=key,operator=Exists\"",
            "invalid toleration \"key,operator=Exists\": \"key\" is not a key=value pair",
        ),
        (
            "tolerations=",
            "invalid toleration \"\": toleration #1 is empty",
        ),
    ];
    for (record, want) in table {
        assert_eq!(err(&[record]), *want, "{record}");
    }
}

#[test]
fn accepted_values_of_the_reference() {
    assert_eq!(parse(&["replicas=+3"]).unwrap().replicas, 3);
    assert_eq!(parse(&["replicas=0"]).unwrap().replicas, 0);
    for word in ["1", "t", "T", "TRUE", "true", "True"] {
        assert!(
            parse(&[&format!("qemu.install={word}")])
                .unwrap()
                .qemu_install,
            "{word}"
        );
    }
    for word in ["0", "f", "F", "FALSE", "false", "False"] {
        assert!(
            !parse(&[&format!("default-load={word}")])
                .unwrap()
                .default_load,
            "{word}"
        );
    }
    // Empty image / qemu.image keep the defaults; an empty namespace is kept verbatim.
    assert_eq!(parse(&["image="]).unwrap().image, kbx_opts::DEFAULT_IMAGE);
    assert_eq!(
        parse(&["qemu.image="]).unwrap().qemu_image,
        kbx_opts::DEFAULT_QEMU_IMAGE
    );
    assert_eq!(
        parse(&["namespace="]).unwrap().namespace.as_deref(),
        Some("")
    );
    // rootless: explicit image wins; `rootless=false` keeps the default (deviation O4).
    assert_eq!(parse(&["rootless=true,image=x"]).unwrap().image, "x");
    assert_eq!(
        parse(&["rootless=false"]).unwrap().image,
        kbx_opts::DEFAULT_IMAGE
    );
    assert_eq!(
        parse(&["rootless=true,image="]).unwrap().image,
        kbx_opts::DEFAULT_ROOTLESS_IMAGE
    );
    // env.* keeps input order.
    let o = parse(&["env.B=2,env.A=1,env.C=3"]).unwrap();
    let names: Vec<&str> = o.env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["B", "A", "C"]);
    // Tolerations keep order and the last of a repeated key within one toleration.
    let o = parse(&["\"tolerations=key=a,operator=Exists;key=b,value=1,value=2\""]).unwrap();
    assert_eq!(o.tolerations.len(), 2);
    assert_eq!(o.tolerations[1].value, "2");
}

#[test]
fn several_errors_in_input_order() {
    let e = parse(&["replicas=x,timeout=5", "foo=1"]).unwrap_err();
    let all: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(
        all,
        [
            "strconv.ParseInt: parsing \"x\": invalid syntax",
            "cannot parse timeout: time: missing unit in duration \"5\"",
            "invalid driver option foo for driver kubernetes",
        ]
    );
    let keys: Vec<Option<&str>> = e.iter().map(Error::key).collect();
    assert_eq!(keys, [Some("replicas"), Some("timeout"), Some("foo")]);
}

#[test]
fn parse_buildkitd_flags_table() {
    // TestParseBuildkitdFlags, the cases that concern the kubernetes driver.
    let cfg = |text: &str| BuildkitdConfig::parse(text);
    let host = cfg("insecure-entitlements = [\"network.host\", \"security.insecure\"]").unwrap();
    let unknown = cfg("[foo]\nbar = \"baz\"\n").unwrap();
    let table: &[(Option<&str>, Option<&BuildkitdConfig>, &[&str])] = &[
        (None, None, &[DEFAULT_ENTITLEMENT_FLAG]),
        (
            Some("--debug"),
            None,
            &["--debug", DEFAULT_ENTITLEMENT_FLAG],
        ),
        (
            Some("--allow-insecure-entitlement=security.insecure"),
            None,
            &["--allow-insecure-entitlement=security.insecure"],
        ),
        (
            Some("--allow-insecure-entitlement security.insecure"),
            None,
            &["--allow-insecure-entitlement", "security.insecure"],
        ),
        (None, Some(&host), &[]),
        (Some("--debug"), Some(&host), &["--debug"]),
        (None, Some(&unknown), &[DEFAULT_ENTITLEMENT_FLAG]),
    ];
    for (flags, config, want) in table {
        assert_eq!(
            buildkitd_args(*flags, *config).unwrap(),
            *want,
            "{flags:?} {config:?}"
        );
    }
    assert_eq!(
        buildkitd_args(Some("foo'"), None).unwrap_err().to_string(),
        "failed to parse buildkit flags: EOF found when expecting closing quote"
    );
    assert!(cfg("[worker.oci]\ngc = \"maybe\"\n").is_err());
    assert!(cfg("debug = \"yes\"\n").is_err());
    assert!(cfg("not toml at all [").is_err());
}

#[test]
fn endpoint_strings() {
    let table = [
        (
            KubernetesEndpoint::new(
                "my_builder",
                "buildkit-4c2ed3ed-970f-4f3d-a6df-a4fcbab4d5cf-d9d73",
                "",
            ),
            "kubernetes:///my_builder?deployment=buildkit-4c2ed3ed-970f-4f3d-a6df-a4fcbab4d5cf-d9d73&kubeconfig=",
        ),
        (
            KubernetesEndpoint::new("kube", "kube_amd64", "/home/ci/.kube/config"),
            "kubernetes:///kube?deployment=kube_amd64&kubeconfig=%2Fhome%2Fci%2F.kube%2Fconfig",
        ),
        (
            KubernetesEndpoint::new("we ird#x?", "a b", "c:d"),
            "kubernetes:///we%20ird%23x%3F?deployment=a+b&kubeconfig=c%3Ad",
        ),
    ];
    for (ep, text) in table {
        assert_eq!(ep.to_string(), text);
        assert_eq!(KubernetesEndpoint::parse(text).unwrap(), ep, "{text}");
    }
    // TestConfigFromEndpoint's endpoint: kubeconfig is read back.
    let ep = KubernetesEndpoint::parse(
        "kubernetes:///buildx-test-4c972a3f9d369614b40f28a281790c7e?deployment=buildkit-4c2ed3ed-970f-4f3d-a6df-a4fcbab4d5cf-d9d73&kubeconfig=.%2Ffixtures%2Fk3s-kubeconfig",
    )
    .unwrap();
    assert_eq!(ep.kubeconfig, "./fixtures/k3s-kubeconfig");
    assert!(KubernetesEndpoint::parse("tcp://x").is_err());
}

/// `context=` (kbx only): pins a kubeconfig context; empty means the current context.
#[test]
fn context_option_pins_a_kubeconfig_context() {
    let o = parse(&["context=prod-eu,namespace=ci"]).unwrap();
    assert_eq!(o.context.as_deref(), Some("prod-eu"));
    assert_eq!(o.to_string(), "namespace=ci,context=prod-eu");
    assert_eq!(parse(&[&o.to_string()]).unwrap(), o);
    assert_eq!(parse(&["context="]).unwrap().context, None);
    assert_eq!(KubernetesOptions::default().context, None);
}

//! Local validation: every error text, table-tested.

use kbx_manifest::{Error, Node, render};
use kbx_opts::{EnvVar, KubernetesOptions};

use crate::common::{BASE, Case, node};

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const NAME_PART: &str = "the name part (after any '/') must be 1 to 63 characters, must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE: &str = "a valid label value must be empty or must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// The error lines of rendering `node`.
fn errors(node: &Node) -> Vec<String> {
    match render(node) {
        Ok(_) => Vec::new(),
        Err(e) => {
            assert!(e.is_validation(), "{e}");
            e.errors().iter().map(ToString::to_string).collect()
        }
    }
}

fn case_errors(case: &Case) -> Vec<String> {
    errors(&node(case).unwrap_or_else(|e| panic!("{case:?}: {e}")))
}

fn with_opts(opts: &'static [&'static str]) -> Case {
    Case { opts, ..BASE }
}

#[test]
fn error_texts() {
    let long_name: &'static str = "n123456789-123456789-123456789-123456789-123456789-1234";
    let rows: Vec<(Case, Vec<String>)> = vec![
        (
            with_opts(&["labels=app=x"]),
            vec![r#"the label "app" is reserved and cannot be customized"#.into()],
        ),
        (
            with_opts(&["annotations=buildx.docker.com/platform=linux/amd64"]),
            vec![
                r#"the annotation "buildx.docker.com/platform" is reserved and cannot be customized"#
                    .into(),
            ],
        ),
        (
            Case {
                node: "Bad_Name",
                ..BASE
            },
            vec![format!(r#"invalid Deployment name "Bad-Name": {SUBDOMAIN}"#)],
        ),
        (
            Case {
                node: "x_",
                ..BASE
            },
            vec![format!(r#"invalid Deployment name "x-": {SUBDOMAIN}"#)],
        ),
        (
            Case {
                node: "n123456789_123456789_123456789_123456789_123456789_123456789_1234",
                ..BASE
            },
            vec![
                r#"invalid Deployment name "n123456789-123456789-123456789-123456789-123456789-123456789-1234": must be no more than 63 characters"#
                    .into(),
            ],
        ),
        (
            Case {
                node: long_name,
                opts: &["persistent-volume-claim.requests.storage=1Gi"],
                ..BASE
            },
            vec![format!(
                r#"invalid StatefulSet name "{long_name}": must be no more than 52 characters"#
            )],
        ),
        (
            // Past 63 characters the StatefulSet limit is still the one reported.
            Case {
                node: "n123456789_123456789_123456789_123456789_123456789_123456789_1234",
                opts: &["persistent-volume-claim.requests.storage=1Gi"],
                ..BASE
            },
            vec![
                r#"invalid StatefulSet name "n123456789-123456789-123456789-123456789-123456789-123456789-1234": must be no more than 52 characters"#
                    .into(),
            ],
        ),
        (
            Case {
                node: "a.b",
                opts: &["persistent-volume-claim.requests.storage=1Gi"],
                ..BASE
            },
            vec![format!(r#"invalid StatefulSet name "a.b": {LABEL}"#)],
        ),
        (
            with_opts(&["namespace=Build_Kit"]),
            vec![format!(r#"invalid namespace name "Build_Kit": {LABEL}"#)],
        ),
        (
            with_opts(&["namespace="]),
            vec![r#"invalid namespace name "": must not be empty"#.into()],
        ),
        (
            with_opts(&["serviceaccount=Build_SA"]),
            vec![format!(
                r#"invalid service account name "Build_SA": {SUBDOMAIN}"#
            )],
        ),
        (
            with_opts(&["schedulername=my scheduler"]),
            vec![format!(
                r#"invalid scheduler name "my scheduler": {SUBDOMAIN}"#
            )],
        ),
        (
            with_opts(&["labels=-team=ci"]),
            vec![format!(r#"invalid label key "-team": {NAME_PART}"#)],
        ),
        (
            with_opts(&["labels=Example.com/team=ci"]),
            vec![
                r#"invalid label key "Example.com/team": the prefix before '/' must be a lowercase RFC 1123 subdomain of at most 253 characters"#
                    .into(),
            ],
        ),
        (
            with_opts(&["labels=team=a/b"]),
            vec![format!(
                r#"invalid label value "a/b" for key "team": {LABEL_VALUE}"#
            )],
        ),
        (
            with_opts(&[
                "labels=team=v123456789012345678901234567890123456789012345678901234567890123",
            ]),
            vec![
                r#"invalid label value "v123456789012345678901234567890123456789012345678901234567890123" for key "team": must be no more than 63 characters"#
                    .into(),
            ],
        ),
        (
            with_opts(&["annotations=a/b/c=x"]),
            vec![format!(r#"invalid annotation key "a/b/c": {NAME_PART}"#)],
        ),
        (
            with_opts(&["nodeselector=kubernetes.io/arch=amd64 "]),
            vec![format!(
                r#"invalid node selector value "amd64 " for key "kubernetes.io/arch": {LABEL_VALUE}"#
            )],
        ),
        (
            with_opts(&["nodeselector==amd64"]),
            vec![r#"invalid node selector key "": must not be empty"#.into()],
        ),
        (
            with_opts(&[r#""tolerations=key=spot,operator=exists""#]),
            vec![
                r#"invalid toleration #1 (key=spot,operator=exists): operator "exists" is not supported, expected Equal or Exists"#
                    .into(),
            ],
        ),
        (
            // buildx's own unit-test input, which a real API server rejects.
            with_opts(&[
                r#""tolerations=key=tolerationKey1,value=tolerationValue1,operator=Equal,effect=NoSchedule,tolerationSeconds=60;key=tolerationKey2,operator=Exists""#,
            ]),
            vec![
                "invalid toleration #1 (key=tolerationKey1,operator=Equal,value=tolerationValue1,effect=NoSchedule,tolerationSeconds=60): tolerationSeconds is only allowed with effect NoExecute"
                    .into(),
            ],
        ),
        (
            with_opts(&[r#""tolerations=operator=Equal,value=x""#]),
            vec![
                "invalid toleration #1 (operator=Equal,value=x): operator must be Exists when key is empty (it matches all taints)"
                    .into(),
            ],
        ),
        (
            with_opts(&[r#""tolerations=key=a;key=b,operator=Exists,value=x""#]),
            vec![
                "invalid toleration #2 (key=b,operator=Exists,value=x): value must be empty when operator is Exists"
                    .into(),
            ],
        ),
        (
            with_opts(&[r#""tolerations=key=a,operator=Exists,effect=NoExec""#]),
            vec![
                r#"invalid toleration #1 (key=a,operator=Exists,effect=NoExec): effect "NoExec" is not supported, expected NoSchedule, PreferNoSchedule or NoExecute"#
                    .into(),
            ],
        ),
        (
            with_opts(&[r#""tolerations=key=a b,operator=Exists""#]),
            vec![format!(
                "invalid toleration #1 (key=a b,operator=Exists): key: {NAME_PART}"
            )],
        ),
        (
            with_opts(&[r#""tolerations=key=a,value=a/b""#]),
            vec![format!(
                "invalid toleration #1 (key=a,value=a/b): value: {LABEL_VALUE}"
            )],
        ),
        (
            with_opts(&["requests.cpu=-1"]),
            vec![r#"invalid requests.cpu "-1": must be greater than or equal to 0"#.into()],
        ),
        (
            with_opts(&["limits.memory=-1Gi"]),
            vec![r#"invalid limits.memory "-1Gi": must be greater than or equal to 0"#.into()],
        ),
        (
            with_opts(&["requests.cpu=2,limits.cpu=1500m"]),
            vec![
                r#"invalid requests.cpu "2": must be less than or equal to limits.cpu "1500m""#
                    .into(),
            ],
        ),
        (
            with_opts(&["requests.ephemeral-storage=20Gi,limits.ephemeral-storage=10Gi"]),
            vec![
                r#"invalid requests.ephemeral-storage "20Gi": must be less than or equal to limits.ephemeral-storage "10Gi""#
                    .into(),
            ],
        ),
        (
            with_opts(&["buildkit-root-volume-memory=0"]),
            vec![r#"invalid buildkit-root-volume-memory "0": must be greater than zero"#.into()],
        ),
        (
            with_opts(&["persistent-volume-claim.requests.storage=-1Gi"]),
            vec![
                r#"invalid persistent-volume-claim.requests.storage "-1Gi": must be greater than zero"#
                    .into(),
            ],
        ),
        (
            with_opts(&["persistent-volume-claim.requests.storage=1Gi,buildkit-root-volume-memory=1Gi"]),
            vec![
                "buildkit-root-volume-memory cannot be combined with persistent-volume-claim.requests.storage: both would hold BuildKit's state directory /var/lib/buildkit"
                    .into(),
            ],
        ),
        (
            with_opts(&[
                "persistent-volume-claim.requests.storage=1Gi,buildkit-root-volume-memory=1Gi,rootless=true",
            ]),
            vec![
                "buildkit-root-volume-memory cannot be combined with persistent-volume-claim.requests.storage: both would hold BuildKit's state directory /home/user/.local/share/buildkit"
                    .into(),
            ],
        ),
        (
            with_opts(&["env.NAMÉ=x,env.MY VAR=ok"]),
            vec![
                r#"invalid env name "NAMÉ": must be non-empty printable ASCII characters other than '='"#
                    .into(),
            ],
        ),
        (
            with_opts(&["image= moby/buildkit"]),
            vec![
                r#"invalid image " moby/buildkit": must be non-empty without leading or trailing whitespace"#
                    .into(),
            ],
        ),
        (
            with_opts(&["qemu.install=true,qemu.image=binfmt "]),
            vec![
                r#"invalid qemu.image "binfmt ": must be non-empty without leading or trailing whitespace"#
                    .into(),
            ],
        ),
        (
            // Every problem at once, in a fixed order: names, metadata, pod, resources.
            Case {
                node: "Bad",
                opts: &[r#"requests.cpu=-1,labels=app=x,namespace=NS,"tolerations=key=k,operator=In""#],
                ..BASE
            },
            vec![
                format!(r#"invalid Deployment name "Bad": {SUBDOMAIN}"#),
                format!(r#"invalid namespace name "NS": {LABEL}"#),
                r#"the label "app" is reserved and cannot be customized"#.into(),
                r#"invalid toleration #1 (key=k,operator=In): operator "In" is not supported, expected Equal or Exists"#.into(),
                r#"invalid requests.cpu "-1": must be greater than or equal to 0"#.into(),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (case, expected) in rows {
        let got = case_errors(&case);
        if got != expected {
            failures.push(format!(
                "{:?}\n  expected {expected:#?}\n  got {got:#?}",
                case.opts
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn valid_edge_cases_pass() {
    let ok = [
        // Dots are fine in a Deployment name (a subdomain), and 63 characters are.
        Case {
            node: "a.b",
            ..BASE
        },
        Case {
            node: "n123456789-123456789-123456789-123456789-123456789-123456789-12",
            ..BASE
        },
        // 52 characters for a StatefulSet.
        Case {
            node: "n123456789-123456789-123456789-123456789-123456789-1",
            opts: &["persistent-volume-claim.requests.storage=1Gi"],
            ..BASE
        },
        with_opts(&["requests.cpu=1,limits.cpu=1000m"]),
        with_opts(&["requests.cpu=0"]),
        with_opts(&["labels=empty="]),
        with_opts(&[r#""tolerations=operator=Exists""#]),
        with_opts(&[
            r#""tolerations=key=a,operator=Exists,effect=NoExecute,tolerationSeconds=-1""#,
        ]),
        with_opts(&[r#""tolerations=key=a,value=b""#]),
        with_opts(&["annotations=note=anything goes / here"]),
        with_opts(&[
            "rootless=true,annotations=container.apparmor.security.beta.kubernetes.io/buildkitd=runtime/default",
        ]),
    ];
    for case in ok {
        assert_eq!(case_errors(&case), Vec::<String>::new(), "{case:?}");
    }
}

fn default_node() -> Node {
    Node::new("b0", KubernetesOptions::default())
}

#[test]
fn errors_not_reachable_through_driver_opts() {
    let mut node = default_node();
    node.options.replicas = -1;
    assert_eq!(errors(&node), ["invalid replicas -1: must not be negative"]);

    let mut node = default_node();
    node.options.env = vec![
        EnvVar {
            name: String::new(),
            value: "x".into(),
        },
        EnvVar {
            name: "TAB\tNAME".into(),
            value: "x".into(),
        },
        EnvVar {
            name: "OK-name.1".into(),
            value: "x".into(),
        },
    ];
    assert_eq!(
        errors(&node),
        [
            r#"invalid env name "": must be non-empty printable ASCII characters other than '='"#,
            r#"invalid env name "TAB\tNAME": must be non-empty printable ASCII characters other than '='"#,
        ]
    );

    let mut node = default_node();
    node.options.image = String::new();
    assert_eq!(
        errors(&node),
        [r#"invalid image "": must be non-empty without leading or trailing whitespace"#]
    );

    let mut node = default_node();
    node.options
        .annotations
        .insert("big", "x".repeat(256 * 1024));
    assert_eq!(
        errors(&node),
        ["annotations are too long: 262147 bytes, the limit is 262144 bytes"]
    );
}

#[test]
fn config_file_errors() {
    let mut node = default_node();
    node.files.insert("buildkitd.toml", vec![b'#'; 1024 * 1024]);
    node.files.insert("certs/../evil", "x");
    node.files.insert("certs/r/ca .pem", "x");
    node.files.insert("/abs.pem", "x");
    assert_eq!(
        errors(&node),
        [
            r#"invalid config file path "/abs.pem": must be a relative path without empty, '.' or '..' components"#,
            r#"invalid config file path "certs/../evil": must be a relative path without empty, '.' or '..' components"#,
            r#"invalid config file path "certs/r/ca .pem": a valid ConfigMap key must consist of alphanumeric characters, '-', '_' or '.', and must not be '.' or '..' or start with '..'"#,
            r#"ConfigMap "b0-config" is too long: 1048590 bytes, the limit is 1048576 bytes"#,
        ]
    );
}

#[test]
fn io_errors_are_not_validation_errors() {
    let config = kbx_opts::BuildkitdConfig::parse("[registry.\"r\"]\nca = [\"/missing.pem\"]\n")
        .expect("valid config");
    let err = kbx_manifest::ConfigFiles::from_config(&config, |p| {
        std::fs::read(format!("/nonexistent-kbx-test-dir{p}"))
    })
    .expect_err("the file does not exist");
    assert!(!err.is_validation());
    assert_eq!(err.to_string(), "failed to read CA file: /missing.pem");
    assert!(matches!(err, Error::ReadConfigFile { kind: "CA", .. }));
}

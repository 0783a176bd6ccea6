//! One insta YAML snapshot per option combination, all through [`check`].

use crate::common::{BASE, Case, render_checked};

/// Renders `case` (byte-stable, round-tripping) and compares the YAML with the snapshot `name`.
fn check(name: &str, case: Case) {
    let (_, yaml) = render_checked(&case).unwrap_or_else(|e| panic!("{name}: {e}"));
    insta::assert_snapshot!(name, yaml);
}

/// Renders `case`, which must fail validation, and compares the error lines with the snapshot
/// `name`: for combinations kbx rejects on purpose, so the decision is reviewed like output.
fn check_error(name: &str, case: Case) {
    let node = crate::common::node(&case).unwrap_or_else(|e| panic!("{name}: {e}"));
    let err = kbx_manifest::render(&node).expect_err("the case must be rejected");
    assert!(err.is_validation(), "{name}: {err}");
    let lines: Vec<String> = err.errors().iter().map(ToString::to_string).collect();
    insta::assert_snapshot!(name, lines.join("\n"));
}

/// `--driver-opt` rows of the specification's full example (§5.6).
pub(crate) const SPEC_FULL_EXAMPLE: Case = Case {
    node: "kube_amd64",
    opts: &[
        "namespace=buildkit,replicas=2,requests.cpu=500m,requests.memory=1Gi,limits.cpu=2,limits.memory=4Gi",
        r#""nodeselector=kubernetes.io/arch=amd64","tolerations=key=dedicated,operator=Equal,value=ci,effect=NoSchedule;key=spot,operator=Exists""#,
        "annotations=team=platform,labels=owner=ci,serviceaccount=buildkit-sa,qemu.install=true,env.BUILDKIT_STEP_LOG_MAX_SIZE=10485760",
    ],
    platforms: &["linux/amd64"],
    flags: None,
    config: Some("buildkitd-debug.toml"),
};

#[test]
fn minimal() {
    check("minimal", BASE);
}

#[test]
fn spec_full_example() {
    check("spec_full_example", SPEC_FULL_EXAMPLE);
}

/// `timeout` sets how many failed runs the startup probe is allowed (one a second).
#[test]
fn timeout_ten_minutes() {
    check(
        "timeout_ten_minutes",
        Case {
            opts: &["timeout=10m"],
            ..BASE
        },
    );
}

#[test]
fn rootless() {
    check(
        "rootless",
        Case {
            opts: &["rootless=true"],
            ..BASE
        },
    );
}

#[test]
fn rootless_memory() {
    check(
        "rootless_memory",
        Case {
            opts: &["rootless=true,buildkit-root-volume-memory=1Gi"],
            ..BASE
        },
    );
}

#[test]
fn rootless_config() {
    check(
        "rootless_config",
        Case {
            opts: &["rootless=true"],
            config: Some("buildkitd-debug.toml"),
            ..BASE
        },
    );
}

#[test]
fn rootless_memory_config_ca_two_platforms() {
    check(
        "rootless_memory_config_ca_two_platforms",
        Case {
            node: "rl0",
            opts: &["rootless=true,buildkit-root-volume-memory=2Gi"],
            platforms: &["linux/amd64,linux/arm64"],
            config: Some("buildkitd-registry-ca.toml"),
            ..BASE
        },
    );
}

#[test]
fn rootless_user_config_flag() {
    check(
        "rootless_user_config_flag",
        Case {
            opts: &["rootless=true"],
            flags: Some("--config=/etc/buildkit/buildkitd.toml --debug"),
            config: Some("buildkitd-debug.toml"),
            ..BASE
        },
    );
}

#[test]
fn statefulset() {
    check(
        "statefulset",
        Case {
            opts: &["persistent-volume-claim.requests.storage=10Gi,replicas=3"],
            ..BASE
        },
    );
}

#[test]
fn statefulset_config() {
    check(
        "statefulset_config",
        Case {
            opts: &["persistent-volume-claim.requests.storage=10Gi"],
            config: Some("buildkitd-registry-ca.toml"),
            ..BASE
        },
    );
}

#[test]
fn statefulset_rootless() {
    check(
        "statefulset_rootless",
        Case {
            opts: &["persistent-volume-claim.requests.storage=10Gi,rootless=true"],
            ..BASE
        },
    );
}

#[test]
fn statefulset_rootless_config() {
    check(
        "statefulset_rootless_config",
        Case {
            opts: &["persistent-volume-claim.requests.storage=20G,rootless=true"],
            platforms: &["linux/arm64"],
            config: Some("buildkitd-registry-ca.toml"),
            ..BASE
        },
    );
}

/// buildx renders this and then leaves the memory volume unused; kbx rejects it (both would be
/// BuildKit's state directory).
#[test]
fn statefulset_memory() {
    check_error(
        "statefulset_memory",
        Case {
            opts: &[
                "persistent-volume-claim.requests.storage=10Gi,buildkit-root-volume-memory=2Gi",
            ],
            config: Some("buildkitd-debug.toml"),
            ..BASE
        },
    );
}

#[test]
fn statefulset_rootless_memory() {
    check_error(
        "statefulset_rootless_memory",
        Case {
            opts: &[
                "persistent-volume-claim.requests.storage=10Gi,buildkit-root-volume-memory=2Gi,rootless=true",
            ],
            ..BASE
        },
    );
}

#[test]
fn memory() {
    check(
        "memory",
        Case {
            opts: &["buildkit-root-volume-memory=2Gi"],
            ..BASE
        },
    );
}

#[test]
fn memory_config() {
    check(
        "memory_config",
        Case {
            opts: &["buildkit-root-volume-memory=512Mi"],
            config: Some("buildkitd-debug.toml"),
            ..BASE
        },
    );
}

#[test]
fn qemu() {
    check(
        "qemu",
        Case {
            opts: &["qemu.install=true"],
            ..BASE
        },
    );
}

#[test]
fn qemu_custom_image_rootless() {
    check(
        "qemu_custom_image_rootless",
        Case {
            opts: &["qemu.install=true,qemu.image=tonistiigi/binfmt:qemu-v9.2.2,rootless=true"],
            ..BASE
        },
    );
}

#[test]
fn requests_cpu() {
    check(
        "requests_cpu",
        Case {
            opts: &["requests.cpu=0.5"],
            ..BASE
        },
    );
}

#[test]
fn requests_memory() {
    check(
        "requests_memory",
        Case {
            opts: &["requests.memory=1024Mi"],
            ..BASE
        },
    );
}

#[test]
fn requests_ephemeral_storage() {
    check(
        "requests_ephemeral_storage",
        Case {
            opts: &["requests.ephemeral-storage=20Gi"],
            ..BASE
        },
    );
}

#[test]
fn limits_cpu() {
    check(
        "limits_cpu",
        Case {
            opts: &["limits.cpu=2"],
            ..BASE
        },
    );
}

#[test]
fn limits_memory() {
    check(
        "limits_memory",
        Case {
            opts: &["limits.memory=4Gi"],
            ..BASE
        },
    );
}

#[test]
fn limits_ephemeral_storage() {
    check(
        "limits_ephemeral_storage",
        Case {
            opts: &["limits.ephemeral-storage=50G"],
            ..BASE
        },
    );
}

#[test]
fn resources_all() {
    check(
        "resources_all",
        Case {
            opts: &[
                "requests.cpu=1,requests.memory=2Gi,requests.ephemeral-storage=10Gi,limits.cpu=4,limits.memory=8Gi,limits.ephemeral-storage=40Gi",
            ],
            ..BASE
        },
    );
}

#[test]
fn env_several() {
    check(
        "env_several",
        Case {
            opts: &[
                "env.http_proxy=http://proxy:3128,env.NO_PROXY=localhost,env.BUILDKIT_STEP_LOG_MAX_SIZE=-1,env.EMPTY=",
            ],
            ..BASE
        },
    );
}

#[test]
fn labels_annotations_dotted_prefixed() {
    check(
        "labels_annotations_dotted_prefixed",
        Case {
            opts: &[
                r#""labels=team=ci,example.com/owner=platform,app.kubernetes.io/part-of=kbx","annotations=karpenter.sh/do-not-disrupt=true,expire-after=2h,note.v1=a b c""#,
            ],
            platforms: &["linux/amd64,linux/arm/v7"],
            ..BASE
        },
    );
}

#[test]
fn nodeselector_several() {
    check(
        "nodeselector_several",
        Case {
            opts: &[
                r#""nodeselector=kubernetes.io/arch=arm64,node.kubernetes.io/instance-type=m7g.xlarge,pool=builders""#,
            ],
            ..BASE
        },
    );
}

#[test]
fn tolerations_three() {
    check(
        "tolerations_three",
        Case {
            opts: &[
                r#""tolerations=key=dedicated,operator=Equal,value=ci,effect=NoSchedule;key=spot,operator=Exists;key=node.kubernetes.io/unreachable,operator=Exists,effect=NoExecute,tolerationSeconds=30""#,
            ],
            ..BASE
        },
    );
}

#[test]
fn buildkitd_flags_user_entitlement() {
    check(
        "buildkitd_flags_user_entitlement",
        Case {
            flags: Some("--debug --allow-insecure-entitlement security.insecure"),
            ..BASE
        },
    );
}

#[test]
fn buildkitd_flags_debug() {
    check(
        "buildkitd_flags_debug",
        Case {
            flags: Some("--debug --debugaddr 0.0.0.0:6666"),
            ..BASE
        },
    );
}

#[test]
fn config_insecure_entitlements() {
    check(
        "config_insecure_entitlements",
        Case {
            config: Some("buildkitd-entitlements.toml"),
            ..BASE
        },
    );
}

#[test]
fn config_registries() {
    check(
        "config_registries",
        Case {
            config: Some("buildkitd-registries.toml"),
            ..BASE
        },
    );
}

#[test]
fn config_binary_ca() {
    check(
        "config_binary_ca",
        Case {
            config: Some("buildkitd-binary-ca.toml"),
            ..BASE
        },
    );
}

#[test]
fn serviceaccount_schedulername_namespace() {
    check(
        "serviceaccount_schedulername_namespace",
        Case {
            opts: &["namespace=ci,serviceaccount=buildkit,schedulername=bin-packing"],
            ..BASE
        },
    );
}

#[test]
fn image_and_replicas() {
    check(
        "image_and_replicas",
        Case {
            node: "my_builder_0",
            opts: &[
                "image=moby/buildkit:v0.29.0,replicas=0,loadbalance=random,default-load=true,timeout=5m",
            ],
            ..BASE
        },
    );
}

/// Long single-line values stay on one line (quoted when they end in a space), never folded.
#[test]
fn long_single_line_values() {
    check(
        "long_single_line_values",
        Case {
            opts: &[
                "annotations=note=a long annotation value that goes well beyond eighty characters in length  with two spaces and a trailing ",
                "env.BUILDKIT_STEP_LOG_MAX_SPEED=10485760 10485760 10485760 10485760 10485760 10485760 10485760 10485760",
            ],
            flags: Some(
                "--debug '--oci-worker-gc-keepstorage=10000000000000000000000000000000000000000000000000000000000000000000000'",
            ),
            ..BASE
        },
    );
}

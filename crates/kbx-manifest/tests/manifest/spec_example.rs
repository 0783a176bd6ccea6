//! The specification's rendered examples (§5.6): the full example object for object, and the
//! facts it lists for the minimal and the rootless create.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kbx_manifest::{APPARMOR_ANNOTATION, PLATFORM_ANNOTATION, Workload};

use crate::common::{BASE, Case, Result, fixtures, render_checked};
use crate::snapshots::SPEC_FULL_EXAMPLE;

#[test]
fn full_example_renders_the_same_objects() -> Result {
    let (ours, _) = render_checked(&SPEC_FULL_EXAMPLE)?;
    let text = std::fs::read_to_string(fixtures().join("spec-5.6-expected.yaml"))?;
    let docs: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(docs.len(), 2);
    let config_map: ConfigMap = serde_saphyr::from_str(docs[0])?;
    let deployment: Deployment = serde_saphyr::from_str(docs[1])?;
    assert_eq!(ours.config_maps, [config_map]);
    assert_eq!(ours.workload, Workload::Deployment(Box::new(deployment)));
    Ok(())
}

#[test]
fn minimal_create() -> Result {
    let (m, _) = render_checked(&BASE)?;
    assert!(m.config_maps.is_empty(), "no ConfigMap");
    let Workload::Deployment(d) = &m.workload else {
        panic!("expected a Deployment")
    };
    assert_eq!(d.metadata.name.as_deref(), Some("mybuilder0"));
    let app = [("app".to_owned(), "mybuilder0".to_owned())].into();
    assert_eq!(d.metadata.labels.as_ref(), Some(&app));
    assert_eq!(d.metadata.annotations, None);
    assert_eq!(d.metadata.namespace, None);
    let spec = m.workload.pod_spec().expect("pod spec");
    assert_eq!(spec.volumes, None);
    let c = m.workload.buildkitd().expect("buildkitd container");
    assert_eq!(c.image.as_deref(), Some("moby/buildkit:buildx-stable-1"));
    assert_eq!(
        c.args.as_deref(),
        Some(&["--allow-insecure-entitlement=network.host".to_owned()][..])
    );
    let sc = c.security_context.as_ref().expect("security context");
    assert_eq!(sc.privileged, Some(true));
    for probe in [&c.readiness_probe, &c.liveness_probe] {
        let p = probe.as_ref().expect("probe");
        let command = p.exec.as_ref().and_then(|e| e.command.clone());
        assert_eq!(
            command.unwrap_or_default(),
            ["buildctl", "debug", "workers"]
        );
        assert_eq!(
            (
                p.failure_threshold,
                p.initial_delay_seconds,
                p.period_seconds,
                p.success_threshold,
                p.timeout_seconds
            ),
            (Some(3), Some(5), Some(30), Some(1), Some(60))
        );
    }
    let yaml = m.to_yaml()?;
    assert!(yaml.contains("\n  replicas: 1\n"), "{yaml}");
    Ok(())
}

/// Rootless with two platforms, `buildkit-root-volume-memory=2Gi` and a config with one
/// registry CA. The listed facts hold except where kbx deviates on purpose: the AppArmor
/// annotation is only on the pod template, and `--config` points buildkitd at the config. The
/// specification's probe passed no daemon flags; here they come from `kbx create`, so the
/// default entitlement flag comes first.
#[test]
fn rootless_two_platforms_memory_and_registry_ca() -> Result {
    let case = Case {
        node: "rl0",
        opts: &["rootless=true,buildkit-root-volume-memory=2Gi"],
        platforms: &["linux/amd64,linux/arm64"],
        config: Some("buildkitd-registry-ca.toml"),
        ..BASE
    };
    let (m, _) = render_checked(&case)?;
    let platforms = Some("linux/amd64,linux/arm64");
    let template = m.workload.pod_template().expect("template");
    let pod_annotations = template
        .metadata
        .as_ref()
        .and_then(|md| md.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        pod_annotations.get(PLATFORM_ANNOTATION).map(String::as_str),
        platforms
    );
    assert_eq!(
        pod_annotations.get(APPARMOR_ANNOTATION).map(String::as_str),
        Some("unconfined")
    );
    let workload_annotations = m
        .workload
        .metadata()
        .annotations
        .clone()
        .unwrap_or_default();
    assert_eq!(
        workload_annotations
            .get(PLATFORM_ANNOTATION)
            .map(String::as_str),
        platforms
    );
    assert!(!workload_annotations.contains_key(APPARMOR_ANNOTATION));
    let names: Vec<_> = m
        .config_maps
        .iter()
        .map(|cm| cm.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["rl0-config", "rl0-config-1"]);
    for cm in &m.config_maps {
        let a = cm.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(a.get(PLATFORM_ANNOTATION).map(String::as_str), platforms);
        assert!(!a.contains_key(APPARMOR_ANNOTATION));
    }
    let ca = m.config_maps[1]
        .data
        .as_ref()
        .and_then(|d| d.get("reg-ca.pem"));
    assert!(ca.is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----")));

    let c = m.workload.buildkitd().expect("buildkitd");
    assert_eq!(
        c.args.clone().unwrap_or_default(),
        [
            "--allow-insecure-entitlement=network.host",
            "--config",
            "/etc/buildkit/buildkitd.toml",
            "--oci-worker-no-process-sandbox"
        ]
    );
    let sc = c.security_context.as_ref().expect("security context");
    assert_eq!(sc.privileged, None);
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("Unconfined")
    );
    let mounts: Vec<(&str, &str)> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("config", "/etc/buildkit"),
            ("config-1", "/etc/buildkit/certs/reg.io"),
            ("buildkitd", "/home/user/.local/share/buildkit"),
        ]
    );
    let volumes = m
        .workload
        .pod_spec()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    let vol_names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(vol_names, ["config", "config-1", "buildkitd"]);
    let empty_dir = volumes[2].empty_dir.as_ref().expect("emptyDir");
    assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
    assert_eq!(
        empty_dir.size_limit.as_ref().map(|q| q.0.as_str()),
        Some("2Gi")
    );
    Ok(())
}

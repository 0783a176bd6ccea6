//! The specification's rendered examples (§5.6): the full example object for object, and the
//! facts it lists for the minimal and the rootless create.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ExecAction, Probe};
use kbx_manifest::{APPARMOR_ANNOTATION, MaybeOption, Node, PLATFORM_ANNOTATION, Workload, render};
use kbx_opts::KubernetesOptions;

use crate::common::{BASE, Case, Result, fixtures, render_checked};
use crate::snapshots::SPEC_FULL_EXAMPLE;

/// The full example renders buildx's objects except for the documented probe deviation (a
/// startup probe, no readiness initial delay): undoing it gives the specification's objects.
#[test]
fn full_example_renders_the_same_objects() -> Result {
    let (ours, _) = render_checked(&SPEC_FULL_EXAMPLE)?;
    let text = std::fs::read_to_string(fixtures().join("spec-5.6-expected.yaml"))?;
    let docs: Vec<&str> = text.split("\n---\n").collect();
    assert_eq!(docs.len(), 2);
    let config_map: ConfigMap = serde_saphyr::from_str(docs[0])?;
    let deployment: Deployment = serde_saphyr::from_str(docs[1])?;
    assert_eq!(ours.config_maps, [config_map]);
    let Workload::Deployment(mut ours) = ours.workload else {
        panic!("expected a Deployment")
    };
    let c = MaybeOption::<DeploymentSpec>::as_option_mut(&mut ours.spec)
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|s| s.containers.first_mut())
        .expect("buildkitd container");
    assert_eq!(c.startup_probe, Some(startup_probe(120)));
    c.startup_probe = None;
    let readiness = c.readiness_probe.as_mut().expect("readiness probe");
    assert_eq!(readiness.initial_delay_seconds, None);
    readiness.initial_delay_seconds = Some(5);
    assert_eq!(*ours, deployment);
    Ok(())
}

/// `buildctl debug workers` with the given failure threshold, initial delay, period, success
/// threshold and timeout.
fn probe((failure, delay, period, success, timeout): (i32, Option<i32>, i32, i32, i32)) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(["buildctl", "debug", "workers"].map(str::to_owned).to_vec()),
        }),
        failure_threshold: Some(failure),
        initial_delay_seconds: delay,
        period_seconds: Some(period),
        success_threshold: Some(success),
        timeout_seconds: Some(timeout),
        ..Probe::default()
    }
}

/// buildx's readiness and liveness probe (v0.34).
fn buildx_probe() -> Probe {
    probe((3, Some(5), 30, 1, 60))
}

/// kbx's startup probe: every second, `failure` times, buildx's timeout.
fn startup_probe(failure: i32) -> Probe {
    probe((failure, None, 1, 1, 60))
}

/// The startup probe allows `ceil(timeout / 1 s)` failures, never fewer than the default
/// timeout's 120, so the kubelet does not restart BuildKit while bootstrap still waits.
#[test]
fn startup_probe_covers_the_timeout() -> Result {
    for (opts, failure) in [
        ("replicas=1", 120),
        ("timeout=120s", 120),
        ("timeout=10m", 600),
        ("timeout=200500ms", 201),
        ("timeout=1h30m", 5400),
        ("timeout=30s", 120),
        ("timeout=1ns", 120),
        ("timeout=2562047h", i32::MAX),
    ] {
        let node = Node::new("mybuilder0", KubernetesOptions::parse([opts])?);
        let m = render(&node)?;
        let c = m.workload.buildkitd().expect("buildkitd container");
        assert_eq!(c.startup_probe, Some(startup_probe(failure)), "{opts}");
        assert_eq!(c.liveness_probe, Some(buildx_probe()), "{opts}");
    }
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
    assert_eq!(c.liveness_probe, Some(buildx_probe()));
    assert_eq!(
        c.readiness_probe,
        Some(Probe {
            initial_delay_seconds: None,
            ..buildx_probe()
        })
    );
    assert_eq!(c.startup_probe, Some(startup_probe(120)));
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

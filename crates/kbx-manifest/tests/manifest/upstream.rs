//! buildx's `driver/kubernetes/manifest/manifest_test.go` (spec §11.2): base options namespace
//! `test-ns`, name `test`, image `moby/buildkit:latest`, one replica.

use k8s_openapi::api::core::v1::Volume;
use kbx_manifest::{Node, ROOTLESS_STATE_DIR, STATE_DIR, render};
use kbx_opts::KubernetesOptions;

use crate::common::Result;

fn base(extra: &str) -> Result<Node> {
    let records = [
        "namespace=test-ns,image=moby/buildkit:latest,replicas=1",
        extra,
    ];
    let opts = KubernetesOptions::parse(records.into_iter().filter(|r| !r.is_empty()))?;
    Ok(Node::new("test", opts))
}

/// (mount name at `path`, the volume of that name) of the buildkitd container.
fn volume_at(node: &Node, path: &str) -> Result<Option<(String, Volume)>> {
    let m = render(node)?;
    let c = m.workload.buildkitd().ok_or("no buildkitd container")?;
    let Some(mount) = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|v| v.mount_path == path)
    else {
        return Ok(None);
    };
    let volume = m
        .workload
        .pod_spec()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == mount.name))
        .ok_or("mount without a volume")?
        .clone();
    Ok(Some((mount.name.clone(), volume)))
}

fn has_volume(node: &Node, name: &str) -> Result<bool> {
    let m = render(node)?;
    Ok(m.workload
        .pod_spec()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| vs.iter().any(|v| v.name == name)))
}

#[test]
fn rootless_memory_volume() -> Result {
    let node = base("rootless=true,buildkit-root-volume-memory=1Gi")?;
    let (_, volume) = volume_at(&node, ROOTLESS_STATE_DIR)?.ok_or("no rootless state mount")?;
    let empty_dir = volume.empty_dir.ok_or("not an emptyDir")?;
    assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
    assert_eq!(empty_dir.size_limit.map(|q| q.0).as_deref(), Some("1Gi"));
    assert!(volume_at(&node, STATE_DIR)?.is_none());
    assert!(!has_volume(&node, "buildkit-memory")?);
    Ok(())
}

#[test]
fn rootless_no_memory_volume() -> Result {
    let node = base("rootless=true")?;
    let (_, volume) = volume_at(&node, ROOTLESS_STATE_DIR)?.ok_or("no rootless state mount")?;
    let empty_dir = volume.empty_dir.ok_or("not an emptyDir")?;
    assert_eq!(empty_dir.medium, None);
    assert_eq!(empty_dir.size_limit, None);
    Ok(())
}

#[test]
fn non_rootless_memory_volume() -> Result {
    let node = base("buildkit-root-volume-memory=2Gi")?;
    let (name, volume) = volume_at(&node, STATE_DIR)?.ok_or("no state mount")?;
    assert_eq!(name, "buildkit-memory");
    let empty_dir = volume.empty_dir.ok_or("not an emptyDir")?;
    assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
    assert_eq!(empty_dir.size_limit.map(|q| q.0).as_deref(), Some("2Gi"));
    Ok(())
}

#[test]
fn namespace_is_set_on_every_object() -> Result {
    let mut node = base("")?;
    node.files.insert("buildkitd.toml", "debug = true\n");
    let m = render(&node)?;
    assert_eq!(m.workload.metadata().namespace.as_deref(), Some("test-ns"));
    assert_eq!(
        m.config_maps[0].metadata.namespace.as_deref(),
        Some("test-ns")
    );
    assert_eq!(
        m.workload
            .buildkitd()
            .and_then(|c| c.image.clone())
            .as_deref(),
        Some("moby/buildkit:latest")
    );
    Ok(())
}

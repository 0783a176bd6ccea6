//! Building nodes from test rows, and the checks every rendered case goes through.

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kbx_manifest::{ConfigFiles, Manifests, Node, Workload, render};
use kbx_opts::{BuildkitdConfig, KubernetesOptions, Platform, buildkitd_args};

pub(crate) type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// `fixtures/manifest/` at the workspace root.
pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/manifest")
}

/// What a user passes to `kbx create` for one node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    /// The node name.
    pub(crate) node: &'static str,
    /// `--driver-opt` records.
    pub(crate) opts: &'static [&'static str],
    /// `--platform` values.
    pub(crate) platforms: &'static [&'static str],
    /// `--buildkitd-flags`.
    pub(crate) flags: Option<&'static str>,
    /// `--buildkitd-config`: a file name under `fixtures/manifest/`.
    pub(crate) config: Option<&'static str>,
}

/// `docker buildx create --name mybuilder --driver kubernetes`.
pub(crate) const BASE: Case = Case {
    node: "mybuilder0",
    opts: &[],
    platforms: &[],
    flags: None,
    config: None,
};

/// The node `kbx create` would record for `case` (certificate paths resolved against the
/// fixtures directory).
pub(crate) fn node(case: &Case) -> Result<Node> {
    let options = KubernetesOptions::parse(case.opts)?;
    let platforms = Platform::parse_list(case.platforms, &Platform::new("linux", "amd64", ""))?;
    let config = match case.config {
        Some(file) => Some(BuildkitdConfig::parse(&std::fs::read_to_string(
            fixtures().join(file),
        )?)?),
        None => None,
    };
    let mut node = Node::new(case.node, options);
    node.platforms = platforms;
    node.flags = buildkitd_args(case.flags, config.as_ref())?;
    if let Some(config) = &config {
        node.files = ConfigFiles::from_config(config, |p| std::fs::read(fixtures().join(p)))?;
    }
    Ok(node)
}

/// Renders `case`, checking that the output is byte-stable and that every object reads back
/// into its k8s-openapi type and writes out to the same YAML.
pub(crate) fn render_checked(case: &Case) -> Result<(Manifests, String)> {
    let node = node(case)?;
    let manifests = render(&node)?;
    let yaml = manifests.to_yaml()?;
    assert_eq!(
        yaml,
        render(&node.clone())?.to_yaml()?,
        "the same node must give the same bytes"
    );
    let back = read_back(&manifests)?;
    assert_eq!(back, manifests, "objects read back from YAML differ");
    assert_eq!(
        back.to_yaml()?,
        yaml,
        "YAML of the read-back objects differs"
    );
    Ok((manifests, yaml))
}

/// Parses the documents of `manifests` back into k8s-openapi objects.
pub(crate) fn read_back(manifests: &Manifests) -> Result<Manifests> {
    let docs = manifests.yaml_documents()?;
    let (workload_doc, cm_docs) = docs.split_last().ok_or("no documents")?;
    let config_maps = cm_docs
        .iter()
        .map(|d| serde_saphyr::from_str::<ConfigMap>(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let workload = match &manifests.workload {
        Workload::Deployment(_) => Workload::Deployment(Box::new(serde_saphyr::from_str::<
            Deployment,
        >(workload_doc)?)),
        Workload::StatefulSet(_) => Workload::StatefulSet(Box::new(serde_saphyr::from_str::<
            StatefulSet,
        >(workload_doc)?)),
    };
    Ok(Manifests {
        config_maps,
        workload,
    })
}

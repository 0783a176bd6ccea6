//! From a stored node to rendered objects and a cluster driver.

use std::collections::BTreeMap;
use std::time::Duration;

use kbx_kube::{ConfigRequest, NodeDriver};
use kbx_manifest::{ConfigFiles, Manifests};
use kbx_opts::{DriverOpts, KubernetesEndpoint, KubernetesOptions};
use kbx_store::Node;

use crate::error::Error;

/// The typed options of a stored node.
pub(crate) fn options(node: &Node) -> Result<KubernetesOptions, Error> {
    let map = node.driver_opts.clone().unwrap_or_default();
    Ok(KubernetesOptions::from_driver_opts(
        &DriverOpts::from_pairs(map),
    )?)
}

/// The objects a stored node runs as.
pub(crate) fn manifests(node: &Node) -> Result<Manifests, Error> {
    let mut m = kbx_manifest::Node::new(node.name.clone(), options(node)?);
    m.platforms = node.platforms.clone().unwrap_or_default();
    if let Some(flags) = &node.buildkitd_flags {
        m.flags = flags.clone();
    }
    let mut files = ConfigFiles::new();
    for (path, data) in node.files.iter().flatten() {
        files.insert(path.clone(), data.clone());
    }
    m.files = files;
    Ok(kbx_manifest::render(&m)?)
}

/// Config files as the store keeps them.
pub(crate) fn store_files(files: &ConfigFiles) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_vec()))
        .collect()
}

/// A driver for a stored node: kubeconfig from its endpoint, namespace from its options.
pub(crate) async fn driver(node: &Node) -> Result<NodeDriver, Error> {
    let options = options(node)?;
    let manifests = manifests(node)?;
    let endpoint = KubernetesEndpoint::parse(&node.endpoint).ok();
    let request = ConfigRequest {
        endpoint_kubeconfig: endpoint.map(|e| e.kubeconfig).unwrap_or_default(),
        context: options.context.clone(),
        namespace: options.namespace.clone(),
    };
    let resolved = kbx_kube::resolve(&request, |k| std::env::var_os(k)).await?;
    let client = kube::Client::try_from(resolved.config).map_err(kbx_kube::Error::Client)?;
    let timeout = options.timeout.to_std().unwrap_or(Duration::from_secs(120));
    Ok(NodeDriver::new(
        client,
        resolved.namespace,
        manifests,
        timeout,
    ))
}

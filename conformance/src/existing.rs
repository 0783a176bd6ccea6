//! The `existing` backend: the cluster of `KUBECONFIG` (or `~/.kube/config`, or the in-cluster
//! service account), with `KBX_CONFORMANCE_CONTEXT` choosing a context. The suite only deletes
//! what it created there (its own namespaces).

use crate::Error;

/// A client for the user's cluster.
pub async fn client() -> Result<kube::Client, Error> {
    let context = std::env::var("KBX_CONFORMANCE_CONTEXT")
        .ok()
        .filter(|c| !c.is_empty());
    let config = match context {
        Some(context) => {
            let options = kube::config::KubeConfigOptions {
                context: Some(context),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: Default::default(),
                    source,
                })?
        }
        None => kube::Config::infer().await.map_err(|e| {
            Error::Unexpected(format!(
                "no usable KUBECONFIG, ~/.kube/config or in-cluster config: {e}"
            ))
        })?,
    };
    kube::Client::try_from(config).map_err(|e| Error::kube("building a client", e))
}

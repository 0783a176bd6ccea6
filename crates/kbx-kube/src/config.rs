//! Which cluster, user and namespace a node talks to.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Error;

const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// What a node asks for: the endpoint's `kubeconfig=`, the `context=` and `namespace=` driver
/// options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRequest {
    /// `kubeconfig=` of the node's endpoint (`$KUBECONFIG` when the builder was created); may be
    /// a path list.
    pub endpoint_kubeconfig: String,
    /// A context to use instead of the kubeconfig's `current-context`.
    pub context: Option<String>,
    /// The `namespace` driver option.
    pub namespace: Option<String>,
}

/// Where the configuration came from (shown by `inspect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// These kubeconfig files, merged in order.
    Kubeconfig(Vec<PathBuf>),
    /// The pod's service account.
    InCluster,
}

/// A resolved client configuration.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    /// The kube client configuration.
    pub config: kube::Config,
    /// The namespace of the builder's objects.
    pub namespace: String,
    /// Where it came from.
    pub source: ConfigSource,
}

/// The kubeconfig files to load, following buildx's order: the endpoint's `kubeconfig=`, else
/// `$KUBECONFIG`, else `~/.kube/config`. Empty entries of a path list are skipped; an empty
/// result means "try the in-cluster configuration".
///
/// # Deviation
/// - A path list in the endpoint (`KUBECONFIG=a:b` at create time) is merged like `$KUBECONFIG`;
///   buildx treats it as one file name and always fails (buildx #437, #760).
/// - A missing file named by the endpoint is an error; buildx silently falls back to the
///   default kubeconfig and may target another cluster (buildx #1676, #1697).
pub fn kubeconfig_paths(
    request: &ConfigRequest,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<Vec<PathBuf>, Error> {
    let split = |value: &OsString| -> Vec<PathBuf> {
        std::env::split_paths(value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    };
    let check = |paths: Vec<PathBuf>, origin: &'static str| -> Result<Vec<PathBuf>, Error> {
        match paths.iter().find(|p| !p.exists()) {
            Some(missing) => Err(Error::KubeconfigMissing {
                path: missing.clone(),
                origin,
            }),
            None => Ok(paths),
        }
    };
    if !request.endpoint_kubeconfig.is_empty() {
        let paths = split(&OsString::from(&request.endpoint_kubeconfig));
        if !paths.is_empty() {
            return check(paths, "the builder's endpoint");
        }
    }
    if let Some(value) = env("KUBECONFIG") {
        let paths = split(&value);
        if !paths.is_empty() {
            return check(paths, "KUBECONFIG");
        }
    }
    let home = env("HOME").filter(|h| !h.is_empty());
    Ok(home
        .map(|h| Path::new(&h).join(".kube").join("config"))
        .filter(|p| p.exists())
        .into_iter()
        .collect())
}

/// Loads and merges kubeconfig files (the first file to set a value wins).
pub fn load_kubeconfig(paths: &[PathBuf]) -> Result<Kubeconfig, Error> {
    paths
        .iter()
        .try_fold(Kubeconfig::default(), |merged, path| {
            let next = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: path.clone(),
                source,
            })?;
            merged.merge(next).map_err(|source| Error::Kubeconfig {
                path: path.clone(),
                source,
            })
        })
}

/// Resolves the client configuration and namespace for a node, as buildx does: kubeconfig
/// (current context read at every call, or `context=`), else in-cluster. The namespace is the
/// `namespace` option, else the context's, else `default`.
pub async fn resolve(
    request: &ConfigRequest,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<ResolvedConfig, Error> {
    let paths = kubeconfig_paths(request, &env)?;
    let (config, source) = if paths.is_empty() {
        if env("KUBERNETES_SERVICE_HOST").is_none() {
            return Err(Error::NoApiAccess {
                tried: "KUBECONFIG and ~/.kube/config".to_owned(),
            });
        }
        let mut config = kube::Config::incluster().map_err(Error::InCluster)?;
        if let Ok(ns) = std::fs::read_to_string(IN_CLUSTER_NAMESPACE) {
            config.default_namespace = ns.trim().to_owned();
        }
        (config, ConfigSource::InCluster)
    } else {
        let kubeconfig = load_kubeconfig(&paths)?;
        let options = KubeConfigOptions {
            context: request.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|source| Error::ClientConfig {
                paths: paths.clone(),
                context: request.context.clone(),
                source,
            })?;
        (config, ConfigSource::Kubeconfig(paths))
    };
    let namespace = match &request.namespace {
        Some(ns) => ns.clone(),
        None if config.default_namespace.is_empty() => "default".to_owned(),
        None => config.default_namespace.clone(),
    };
    Ok(ResolvedConfig {
        config,
        namespace,
        source,
    })
}

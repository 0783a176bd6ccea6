//! Conformance suite for kbx on real Kubernetes clusters.
//!
//! A [`Cluster`] comes from one of three backends, chosen by `KBX_CONFORMANCE_CLUSTER`:
//!
//! - `local` (default): a real single-node Kubernetes 1.20 cluster booted on this machine from
//!   Debian packages and binaries built from Debian's `kubernetes` source package, everything on
//!   127.0.0.1, torn down afterwards ([`local`]). Needs root.
//! - `kind`: `kind create cluster --config kind-configs/<KBX_CONFORMANCE_KIND_CONFIG>.yaml`,
//!   deleted afterwards ([`kind`]).
//! - `existing`: the cluster of `KUBECONFIG` (and `KBX_CONFORMANCE_CONTEXT`); only what the
//!   suite created is deleted ([`existing`]).
//!
//! Scenarios (under `tests/`) drive the cluster through [`scenario`] helpers. On the local
//! backend the builder images ([`image`]) are `moby/buildkit:buildx-stable-1` and its rootless
//! variant, laid out as upstream's but made of the real `buildkitd` and `buildctl` v0.13.2 built
//! from Debian's source (`conformance/scripts/build-buildkit.sh`) and Debian's `runc`; they are
//! imported into the node's containerd, never pulled. [`workers`] reads a builder's workers back.
//! [`buildx`] runs the real Buildx CLI from Debian's packages, the oracle of the parity scenarios.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kbx_conformance::Error> {
//! use kbx_conformance::{Backend, Cluster};
//! let cluster = Cluster::start(Backend::from_env()?).await?;
//! let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(cluster.client().clone());
//! assert!(!nodes.list(&Default::default()).await.map_err(|e| kbx_conformance::Error::kube("listing nodes", e))?.items.is_empty());
//! let leftovers = cluster.teardown().await;
//! assert!(leftovers.is_empty(), "{leftovers}");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod buildx;
pub mod existing;
pub mod image;
pub mod kind;
pub mod local;
pub mod registry;
pub mod scenario;
pub mod workers;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use local::{Leftovers, LocalCluster, LocalOptions};

/// What can go wrong while booting, using or tearing down a test cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be made.
    #[error("making {what}")]
    Pki {
        /// Which certificate.
        what: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// A test image could not be built.
    #[error("building a test image: {0}")]
    Image(String),
    /// The local backend needs root (cgroups, mounts, network devices).
    #[error("the local cluster backend needs root")]
    NotRoot,
    /// A program the backend needs is missing.
    #[error("{program} is missing: {hint}")]
    MissingProgram {
        /// The program.
        program: String,
        /// How to get it.
        hint: String,
    },
    /// Something that must stay on the machine could leave it.
    #[error("egress guard: {0}")]
    Egress(String),
    /// The cluster did not boot; component logs are kept in `logs`.
    #[error("the cluster did not boot (component logs in {})", logs.display())]
    Boot {
        /// Why.
        #[source]
        source: Box<Error>,
        /// Where the component logs were saved.
        logs: PathBuf,
    },
    /// A component exited while the cluster was waiting for something.
    #[error("{component} exited while waiting for {waiting_for}")]
    ComponentExited {
        /// The component and its exit status.
        component: String,
        /// What was awaited.
        waiting_for: String,
    },
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// A watch used for waiting failed.
    #[error("waiting for {what}")]
    Wait {
        /// What was awaited.
        what: String,
        /// Why.
        #[source]
        source: kube::runtime::wait::Error,
    },
    /// A Kubernetes API call failed.
    #[error("{what}")]
    Kube {
        /// The call.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// A kubeconfig could not be loaded.
    #[error("loading kubeconfig {}", path.display())]
    Kubeconfig {
        /// The file (empty for `KUBECONFIG`/defaults).
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A command failed.
    #[error("{what} failed ({status}): {stderr}")]
    Command {
        /// The command.
        what: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// `KBX_CONFORMANCE_CLUSTER` names no backend.
    #[error("KBX_CONFORMANCE_CLUSTER={0:?}: expected local, kind or existing")]
    Backend(String),
    /// Listing a builder's workers through the cluster failed.
    #[error("listing BuildKit workers through the cluster")]
    Workers(#[from] workers::WorkersError),
    /// A scenario found the cluster in an unexpected state.
    #[error("{0}")]
    Unexpected(String),
}

impl Error {
    /// An [`Error::Io`].
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
    /// An [`Error::Kube`].
    pub fn kube(what: impl Into<String>, source: kube::Error) -> Error {
        Error::Kube {
            what: what.into(),
            source,
        }
    }
}

/// Which kind of cluster the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A single-node cluster booted on this machine.
    Local,
    /// A kind cluster.
    Kind,
    /// The user's cluster (`KUBECONFIG`).
    Existing,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "local" => Ok(Backend::Local),
            "kind" => Ok(Backend::Kind),
            "existing" => Ok(Backend::Existing),
            other => Err(Error::Backend(other.to_owned())),
        }
    }
}

impl Backend {
    /// The backend named by `KBX_CONFORMANCE_CLUSTER` (default `local`).
    pub fn from_env() -> Result<Backend, Error> {
        match std::env::var("KBX_CONFORMANCE_CLUSTER") {
            Ok(v) if !v.is_empty() => v.parse(),
            _ => Ok(Backend::Local),
        }
    }
}

/// Builds a client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    kube::Client::try_from(config).map_err(|e| Error::kube("building a client", e))
}

enum Handle {
    Local(Box<LocalCluster>),
    Kind(kind::KindCluster),
    Existing,
}

/// A cluster to run scenarios on.
pub struct Cluster {
    backend: Backend,
    client: kube::Client,
    handle: Handle,
    builder_image: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("backend", &self.backend)
            .field("builder_image", &self.builder_image)
            .finish()
    }
}

/// The image scenarios use for builder pods, unless `KBX_CONFORMANCE_IMAGE` names another:
/// buildx's default, which the local backend imports as [`image::BUILDER_IMAGE`].
pub const UPSTREAM_BUILDER_IMAGE: &str = "moby/buildkit:buildx-stable-1";

impl Cluster {
    /// Starts (or, for `existing`, connects to) a cluster. The local backend builds its images
    /// from the BuildKit binaries in [`local::buildkit_bin_dir`].
    pub async fn start(backend: Backend) -> Result<Cluster, Error> {
        let image_override = std::env::var("KBX_CONFORMANCE_IMAGE")
            .ok()
            .filter(|s| !s.is_empty());
        match backend {
            Backend::Local => {
                let local = LocalCluster::start(&LocalOptions::new()).await?;
                let client = local.client()?.clone();
                Ok(Cluster {
                    backend,
                    client,
                    handle: Handle::Local(Box::new(local)),
                    builder_image: image_override
                        .unwrap_or_else(|| UPSTREAM_BUILDER_IMAGE.to_owned()),
                })
            }
            Backend::Kind => {
                let kind = kind::KindCluster::create(&kind::KindOptions::from_env()).await?;
                let client = client_from_kubeconfig(&kind.kubeconfig()).await?;
                Ok(Cluster {
                    backend,
                    client,
                    handle: Handle::Kind(kind),
                    builder_image: image_override
                        .unwrap_or_else(|| UPSTREAM_BUILDER_IMAGE.to_owned()),
                })
            }
            Backend::Existing => {
                let client = existing::client().await?;
                Ok(Cluster {
                    backend,
                    client,
                    handle: Handle::Existing,
                    builder_image: image_override
                        .unwrap_or_else(|| UPSTREAM_BUILDER_IMAGE.to_owned()),
                })
            }
        }
    }

    /// A `local` cluster booted with `options` (for example a two-node cluster with
    /// [`LocalOptions::nodes`] = 2), whatever `KBX_CONFORMANCE_CLUSTER` says; the builder image
    /// is `KBX_CONFORMANCE_IMAGE` or [`UPSTREAM_BUILDER_IMAGE`].
    pub async fn start_local(options: &LocalOptions) -> Result<Cluster, Error> {
        let local = LocalCluster::start(options).await?;
        let client = local.client()?.clone();
        Ok(Cluster {
            backend: Backend::Local,
            client,
            handle: Handle::Local(Box::new(local)),
            builder_image: std::env::var("KBX_CONFORMANCE_IMAGE")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| UPSTREAM_BUILDER_IMAGE.to_owned()),
        })
    }

    /// Attaches to a local cluster another process booted and keeps running (its work
    /// directory, e.g. from `kbx-local-cluster up`), so that scenarios can share it.
    /// [`Cluster::teardown`] then leaves the cluster running; cleaning up what a scenario made
    /// is [`scenario::clean_own_objects`].
    pub async fn attach_local(dir: &Path) -> Result<Cluster, Error> {
        let image_override = std::env::var("KBX_CONFORMANCE_IMAGE")
            .ok()
            .filter(|s| !s.is_empty());
        let local = LocalCluster::attach(dir).await?;
        let client = local.client()?.clone();
        Ok(Cluster {
            backend: Backend::Local,
            client,
            handle: Handle::Local(Box::new(local)),
            builder_image: image_override.unwrap_or_else(|| UPSTREAM_BUILDER_IMAGE.to_owned()),
        })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// An admin client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The image builder pods use (present on the nodes, or pullable).
    pub fn builder_image(&self) -> &str {
        &self.builder_image
    }

    /// A kubeconfig file for an admin of the cluster (what `kbx` is run with).
    pub fn kubeconfig(&self) -> Option<PathBuf> {
        match &self.handle {
            Handle::Local(l) => Some(l.kubeconfig()),
            Handle::Kind(k) => Some(k.kubeconfig()),
            Handle::Existing => std::env::var_os("KUBECONFIG").map(PathBuf::from),
        }
    }

    /// The local cluster, when the backend is `local`.
    pub fn local(&self) -> Option<&LocalCluster> {
        match &self.handle {
            Handle::Local(l) => Some(l),
            _ => None,
        }
    }

    /// Tears the cluster down (local: everything; kind: deletes the kind cluster; existing:
    /// deletes the namespaces this process created, see
    /// [`scenario::delete_own_namespaces`]). Returns what the local backend left.
    pub async fn teardown(self) -> Leftovers {
        match self.handle {
            Handle::Local(local) => tokio::task::spawn_blocking(move || local.teardown())
                .await
                .unwrap_or_default(),
            Handle::Kind(kind) => {
                kind.delete().await;
                Leftovers::default()
            }
            Handle::Existing => {
                scenario::delete_own_namespaces(&self.client).await;
                Leftovers::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_by_name() {
        assert_eq!("local".parse::<Backend>().unwrap(), Backend::Local);
        assert_eq!("kind".parse::<Backend>().unwrap(), Backend::Kind);
        assert_eq!("existing".parse::<Backend>().unwrap(), Backend::Existing);
        let err = "k3s".parse::<Backend>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "KBX_CONFORMANCE_CLUSTER=\"k3s\": expected local, kind or existing"
        );
    }
}

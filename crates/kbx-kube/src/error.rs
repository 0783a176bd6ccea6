//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong talking to Kubernetes for a builder node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No kubeconfig and no in-cluster service account.
    #[error(
        "kubernetes driver requires kubernetes API access: no kubeconfig found ({tried}) and not running in a cluster"
    )]
    NoApiAccess {
        /// Where kbx looked.
        tried: String,
    },
    /// A kubeconfig file named by the endpoint or `KUBECONFIG` does not exist.
    #[error("kubeconfig {} (from {origin}) does not exist", path.display())]
    KubeconfigMissing {
        /// The file.
        path: PathBuf,
        /// `the builder's endpoint` or `KUBECONFIG`.
        origin: &'static str,
    },
    /// A kubeconfig file cannot be read or merged.
    #[error("cannot load kubeconfig {}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig does not give a usable client configuration (e.g. unknown context).
    #[error(
        "invalid kubeconfig {}{}",
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        context.as_ref().map(|c| format!(" for context {c:?}")).unwrap_or_default()
    )]
    ClientConfig {
        /// The kubeconfig files, merged in order.
        paths: Vec<PathBuf>,
        /// The context asked for with `context=`, if any.
        context: Option<String>,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The in-cluster configuration cannot be used.
    #[error("cannot use the in-cluster configuration")]
    InCluster(#[source] kube::config::InClusterError),
    /// Building the HTTP client failed.
    #[error("cannot create a Kubernetes client")]
    Client(#[source] kube::Error),
    /// Reading the workload during bootstrap failed (other than NotFound).
    #[error("error for bootstrap {name:?}")]
    Bootstrap {
        /// The workload name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Creating or updating an object failed.
    #[error("error while applying {kind} {name:?}")]
    Apply {
        /// `ConfigMap`, `Deployment` or `StatefulSet`.
        kind: &'static str,
        /// The object name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The pods did not become ready in time, or cannot start at all.
    #[error("expected {replicas} replicas to be ready, got {ready}{}", diagnosis_suffix(.diagnosis))]
    NotReady {
        /// Desired replicas.
        replicas: i32,
        /// Ready replicas at the end.
        ready: i32,
        /// What the pods are doing (one line per problem), empty when unknown.
        diagnosis: Vec<String>,
    },
    /// Watching the workload failed.
    #[error("error while waiting for {name:?} to be ready")]
    Watch {
        /// The workload name.
        name: String,
        /// The watch error.
        #[source]
        source: kube::runtime::watcher::Error,
    },
    /// Listing the builder's pods failed.
    #[error("cannot list the pods of {name:?}")]
    ListPods {
        /// The workload name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// No pod can serve a build.
    #[error("no running buildkit pods found")]
    NoRunningPods,
    /// Starting `buildctl dial-stdio` in a pod failed.
    #[error("cannot exec buildctl dial-stdio in pod {pod:?}")]
    Exec {
        /// The pod.
        pod: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an object failed (NotFound is not an error).
    #[error("error while deleting {kind} {name:?}")]
    Delete {
        /// The object kind.
        kind: &'static str,
        /// The object name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

fn diagnosis_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join("; "))
    }
}

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
        source: RequestError,
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
        source: RequestError,
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
        source: RequestError,
    },
    /// No pod can serve a build.
    #[error("no running buildkit pods found")]
    NoRunningPods,
    /// Starting `buildctl dial-stdio` in a pod failed.
    #[error("cannot exec buildctl dial-stdio in pod {pod:?}")]
    Exec {
        /// The pod.
        pod: String,
        /// The exec request and the API error.
        #[source]
        source: RequestError,
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
        source: RequestError,
    },
}

/// A failed request to the API server, named as Go's HTTP client names it in Buildx's errors:
/// `Get "https://127.0.0.1:6443/apis/apps/v1/namespaces/ns/deployments/x"` (the query is left
/// out). Its cause is the API server's answer, or, when no answer came, what stopped the
/// connection (`tcp connect error: Connection refused`) without the HTTP client's own
/// `ServiceError: client error (Connect)` wrappers.
#[derive(Debug)]
pub struct RequestError {
    method: &'static str,
    url: String,
    source: Box<kube::Error>,
    /// The API server's answer, when it gave one (`source` is `kube::Error::Api`).
    answer: Option<ApiAnswer>,
}

impl RequestError {
    /// `method` (`Get`, `Patch`, …) on `url` failed with `source`.
    pub fn new(method: &'static str, url: impl Into<String>, source: kube::Error) -> Self {
        let answer = match &source {
            kube::Error::Api(status) => Some(ApiAnswer(status.clone())),
            _ => None,
        };
        Self {
            method,
            url: url.into(),
            source: Box::new(source),
            answer,
        }
    }

    /// The same error with the API server's URL in front of a path-only URL.
    #[must_use]
    pub(crate) fn with_server(mut self, server: &str) -> Self {
        if self.url.starts_with('/') {
            self.url = format!("{}{}", server.trim_end_matches('/'), self.url);
        }
        self
    }

    /// The client's error.
    pub fn api_error(&self) -> &kube::Error {
        &self.source
    }

    /// Whether the API server answered 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        matches!(&*self.source, kube::Error::Api(s) if s.code == 404)
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.method, self.url)
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.source {
            // tower's box around hyper's `client error (Connect)`: its cause says what failed.
            kube::Error::Service(inner) => {
                let inner: &(dyn std::error::Error + 'static) = &**inner;
                match inner.source() {
                    Some(cause) if inner.to_string().starts_with("client error (") => Some(cause),
                    _ => Some(inner),
                }
            }
            // The API server's answer itself (`… is forbidden: User … cannot patch …`), not
            // kube's wrapper, which repeats it with a debug dump.
            kube::Error::Api(_) => self
                .answer
                .as_ref()
                .map(|a| a as &(dyn std::error::Error + 'static)),
            other => Some(other),
        }
    }
}

/// What the API server answered to a request it refused or could not serve, shown as
/// client-go shows it: the message alone (`deployments.apps "b0" is forbidden: User …`,
/// `error dialing backend: dial tcp …: connect: connection refused`), without kube's
/// `: REASON` suffix (empty for some answers, `Failed to parse error data` for a plain-text
/// body). The reason stands in for an empty message.
#[derive(Debug, Clone)]
pub struct ApiAnswer(Box<kube::core::Status>);

impl ApiAnswer {
    /// The answer as kube parsed it (code, reason, message).
    pub fn status(&self) -> &kube::core::Status {
        &self.0
    }
}

impl std::fmt::Display for ApiAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.0.message.trim();
        if message.is_empty() {
            f.write_str(&self.0.reason)
        } else {
            f.write_str(message)
        }
    }
}

impl std::error::Error for ApiAnswer {}

fn diagnosis_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's client error: its text repeats in its wrapper, its cause says what failed.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Hyper(#[source] std::io::Error);

    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(s) = next {
            out.push(s.to_string());
            next = s.source();
        }
        out
    }

    #[test]
    fn api_answers_read_as_the_server_gave_them() {
        let answer = |message: &str, reason: &str| {
            let e = RequestError::new(
                "Get",
                "https://127.0.0.1:1/api/v1/namespaces/ns/pods/p/exec",
                kube::Error::Api(kube::core::Status::failure(message, reason).boxed()),
            );
            chain(&e)
        };
        assert_eq!(
            answer(
                "error dialing backend: dial tcp 127.0.0.1:2: connect: connection refused",
                ""
            ),
            [
                "Get \"https://127.0.0.1:1/api/v1/namespaces/ns/pods/p/exec\"",
                "error dialing backend: dial tcp 127.0.0.1:2: connect: connection refused",
            ]
        );
        assert_eq!(
            answer("pod does not exist", "Failed to parse error data")[1],
            "pod does not exist"
        );
        assert_eq!(answer("", "NotFound")[1], "NotFound");
    }

    #[test]
    fn names_the_request_and_skips_the_client_wrappers() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::Apply {
            kind: "Deployment",
            name: "b0".into(),
            source: RequestError::new(
                "Get",
                "https://127.0.0.1:1/apis/apps/v1/namespaces/ns/deployments/b0",
                kube::Error::Service(Box::new(Hyper(refused))),
            ),
        };
        assert_eq!(
            chain(&e),
            [
                "error while applying Deployment \"b0\"",
                "Get \"https://127.0.0.1:1/apis/apps/v1/namespaces/ns/deployments/b0\"",
                "refused",
            ]
        );
    }
}

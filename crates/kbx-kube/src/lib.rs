//! Kubernetes side of a kbx builder node: client configuration, bootstrap and readiness,
//! status, pod listing, removal, and the `buildctl dial-stdio` exec stream BuildKit runs over.
//!
//! ```no_run
//! use std::time::Duration;
//! use kbx_kube::{ConfigRequest, NodeDriver, resolve};
//! use kbx_manifest::{Node, render};
//! use kbx_opts::KubernetesOptions;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = KubernetesOptions::parse(["namespace=buildkit,replicas=2"])?;
//! let manifests = render(&Node::new("kube0", options.clone()))?;
//! let request = ConfigRequest { namespace: options.namespace.clone(), ..ConfigRequest::default() };
//! let resolved = resolve(&request, |k| std::env::var_os(k)).await?;
//! let client = kube::Client::try_from(resolved.config)?;
//! let driver = NodeDriver::new(client, resolved.namespace, manifests, Duration::from_secs(120));
//! driver.bootstrap(&|event| eprintln!("{event:?}")).await?;
//! println!("{}", driver.status().await?.as_str());
//! # Ok(()) }
//! ```
//!
//! The crate does not pick a Kubernetes API version of `k8s-openapi`; the binary does.

#![forbid(unsafe_code)]

mod config;
mod driver;
mod error;
mod exec;

pub use config::{
    ConfigRequest, ConfigSource, ResolvedConfig, kubeconfig_paths, load_kubeconfig, resolve,
};
pub use driver::{
    BootstrapEvent, Change, FIELD_MANAGER, NOT_CREATED, NodeDriver, PodInfo, Status, pod_is_ready,
    selector_labels,
};
pub use error::{ApiAnswer, Error, RequestError};
pub use exec::{
    DIAL_STDIO, ExecStream, STDIN_BUFFER_MAX, STDIN_MESSAGE_MAX, with_retry, with_retry_while,
};

//! Renders a Kubernetes BuildKit builder node into the exact objects Docker Buildx's
//! `kubernetes` driver creates: ConfigMaps for `--buildkitd-config`, then a Deployment, or a
//! StatefulSet with a PersistentVolumeClaim template when
//! `persistent-volume-claim.requests.storage` is set. Objects are `k8s-openapi` types and can be
//! written as byte-stable YAML.
//!
//! ```
//! use kbx_manifest::{ConfigFiles, Node, render};
//! use kbx_opts::{BuildkitdConfig, KubernetesOptions, Platform, buildkitd_args};
//!
//! let options = KubernetesOptions::parse(["namespace=buildkit,replicas=2,requests.cpu=500m"])?;
//! let config = BuildkitdConfig::parse("debug = true\n")?;
//! let mut node = Node::new("kube_amd64", options);
//! node.platforms = vec![Platform::new("linux", "amd64", "")];
//! node.flags = buildkitd_args(None, Some(&config))?;
//! node.files = ConfigFiles::from_config(&config, |path| std::fs::read(path))?;
//!
//! let manifests = render(&node)?;
//! assert_eq!(manifests.workload.kind(), "Deployment");
//! assert_eq!(manifests.workload.metadata().name.as_deref(), Some("kube-amd64"));
//! assert_eq!(manifests.config_maps[0].metadata.name.as_deref(), Some("kube-amd64-config"));
//!
//! let yaml = manifests.to_yaml()?;
//! assert!(yaml.starts_with("apiVersion: v1\nkind: ConfigMap\n"));
//! assert!(yaml.contains("\n---\napiVersion: apps/v1\nkind: Deployment\n"));
//! assert_eq!(yaml, render(&node)?.to_yaml()?); // byte-stable
//!
//! // Problems the API server would reject are found locally, all at once.
//! let bad = Node::new("Bad_Name", KubernetesOptions::parse(["labels=app=x"])?);
//! let err = render(&bad).unwrap_err();
//! assert_eq!(err.errors().len(), 2);
//! assert_eq!(err.errors()[1].to_string(), r#"the label "app" is reserved and cannot be customized"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate does no IO and needs no async runtime: [`ConfigFiles::from_config`] takes the
//! function that reads certificate files (`|path| std::fs::read(path)`). It does not pick a Kubernetes API version of
//! `k8s-openapi`; the binary that uses it does.
//!
//! # Deviations from buildx
//! Each is documented on [`render`] and [`ConfigFiles::from_config`] and listed in
//! `docs/deviations.md`: `requests.ephemeral-storage` is a request, StatefulSet mode keeps the
//! config mounts, rootless mode honours `buildkitd.toml`, the AppArmor annotation stays on the
//! pod template, output is deterministic, binary files go to `binaryData`, everything the
//! API server would reject is reported before any API call, and a startup probe (with no
//! readiness initial delay) lets a pod be Ready about a second after BuildKit answers.

#![forbid(unsafe_code)]

mod compat;
pub use compat::MaybeOption;
mod error;
mod files;
mod render;
mod syntax;
mod validate;
mod yaml;

pub use error::{Error, Problem, QuantityProblem, TolerationProblem};
pub use files::{CONFIG_DIR, CONFIG_FILE, ConfigFiles};
pub use render::{
    APP_LABEL, APPARMOR_ANNOTATION, CONTAINER_NAME, Manifests, Node, PLATFORM_ANNOTATION,
    ROOTLESS_FLAG, ROOTLESS_STATE_DIR, SERVICE_NAME, STATE_DIR, Workload, render,
};

//! Parsers for everything a user types for a Kubernetes BuildKit builder, with Docker Buildx's
//! exact semantics and error texts.
//!
//! ```
//! use kbx_opts::{KubernetesOptions, Platform};
//!
//! // Each `--driver-opt` is one CSV record; quote a whole field to keep commas in it.
//! let opts = KubernetesOptions::parse([
//!     "namespace=buildkit,replicas=2,requests.cpu=500m,limits.memory=4Gi",
//!     r#""nodeselector=kubernetes.io/arch=amd64","tolerations=key=spot,operator=Exists""#,
//! ])?;
//! assert_eq!(opts.replicas, 2);
//! assert_eq!(opts.node_selector.get("kubernetes.io/arch"), Some("amd64"));
//! assert_eq!(opts.limits.memory.as_ref().map(|q| q.canonical()).as_deref(), Some("4Gi"));
//!
//! // Errors carry buildx's text (and the option, value and span as structured data).
//! let err = KubernetesOptions::parse(["replicas=three"]).unwrap_err();
//! assert_eq!(err.to_string(), r#"strconv.ParseInt: parsing "three": invalid syntax"#);
//! assert_eq!(err.key(), Some("replicas"));
//!
//! let platforms = Platform::parse_list(["linux/amd64,linux/arm"], &Platform::local())?;
//! assert_eq!(platforms[1].to_string(), "linux/arm/v7");
//! # Ok::<(), kbx_opts::Error>(())
//! ```
//!
//! Parsing happens in two steps, as in buildx: [`DriverOpts::parse`] turns the raw
//! `--driver-opt` records into one ordered key/value map, and
//! [`KubernetesOptions::from_driver_opts`] types and validates it. Each sub-grammar has its own
//! parser: [`Quantity`] (Kubernetes quantities), [`GoDuration`] (Go durations), [`parse_bool`]
//! (Go booleans), [`KeyValues`] (`k=v` lists), [`Toleration`], [`Platform`],
//! [`split_shell_words`] / [`buildkitd_args`] (`--buildkitd-flags`), [`BuildkitdConfig`] and
//! [`KubernetesEndpoint`]. The `build` flags have theirs: [`ExportEntry`], [`CacheEntry`],
//! [`SecretSpec`], [`SshSpec`], [`BuildContext`] (CSV records) and [`ExtraHost`],
//! [`Entitlement`], [`parse_annotation`], [`parse_mem_bytes`], [`Ulimit`] (single values).
//!
//! This crate does no IO and needs no async runtime.
//!
//! # Deviations from buildx
//! Each is documented on the item that implements it and listed in `docs/deviations.md`:
//! deterministic (input) order everywhere, all errors reported at once, strict tolerations,
//! `rootless=false` keeps the default image, negative `replicas` and non-positive `timeout`
//! rejected, and the new `loadbalance=rendezvous`.

#![forbid(unsafe_code)]

mod build_flags;
mod build_values;
mod buildkitd;
mod csv;
mod driver_opts;
mod duration;
mod endpoint;
mod error;
mod kubernetes;
mod kv;
mod platform;
mod quantity;
mod quote;
mod scalar;
mod toleration;

pub use build_flags::{
    BuildContext, CacheEntry, ContextSource, ExportEntry, SecretFrom, SecretSpec, SshSpec,
    is_digest,
};
pub use build_values::{
    AnnotationKey, AnnotationType, Entitlement, ExtraHost, HostIp, Ulimit, annotation_attrs,
    parse_annotation, parse_mem_bytes,
};
pub use buildkitd::{
    BuildkitdConfig, DEFAULT_ENTITLEMENT_FLAG, RegistryFiles, buildkitd_args, split_shell_words,
};
pub use driver_opts::{DriverOpt, DriverOpts};
pub use duration::{GoDuration, human_duration};
pub use endpoint::KubernetesEndpoint;
pub use error::{
    BuildFlagProblem, CsvErrorKind, DurationErrorKind, Error, IntErrorKind, IntFunc,
    PlatformErrorKind, QuantityErrorKind, TolerationProblem,
};
pub use kubernetes::{
    DEFAULT_IMAGE, DEFAULT_QEMU_IMAGE, DEFAULT_ROOTLESS_IMAGE, DEFAULT_TIMEOUT, EnvVar,
    KubernetesOptions, LoadBalance, Resources, is_kbx_only_option,
};
pub use kv::KeyValues;
pub use platform::Platform;
pub use quantity::{Quantity, QuantityFormat};
pub use scalar::parse_bool;
pub use toleration::Toleration;

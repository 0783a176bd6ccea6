//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder or node name that buildx would reject.
    #[error(
        "invalid name {0}, name needs to start with a letter and may not contain symbols, except ._-"
    )]
    InvalidName(String),
    /// No builder with this name is stored.
    #[error("no builder {0:?} found")]
    NotFound(String),
    /// Reading, writing or locking a store file failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, e.g. `cannot write`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A stored record is not valid JSON of the expected shape.
    #[error("invalid builder record {}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The activity file does not hold an RFC 3339 time.
    #[error("invalid activity time in {}", path.display())]
    Activity {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: jiff::Error,
    },
    /// Neither `BUILDX_CONFIG`, `DOCKER_CONFIG` nor a home directory is available.
    #[error("cannot find the buildx config directory: set BUILDX_CONFIG, DOCKER_CONFIG or HOME")]
    NoConfigDir,
    /// Two nodes of one builder would share an endpoint.
    #[error("invalid duplicate endpoint {0}")]
    DuplicateEndpoint(String),
    /// `--node` names a node that does not exist and `--append` was not given.
    #[error("node {0} not found, did you mean to append?")]
    NodeNotFoundForUpdate(String),
    /// `--leave` names a node that does not exist.
    #[error("node {node:?} not found for {builder}")]
    NodeNotFoundForLeave {
        /// The node name.
        node: String,
        /// The builder name.
        builder: String,
    },
    /// `--leave` on the only node.
    #[error("can not leave last node, do you want to rm instance instead?")]
    LeaveLastNode,
    /// Update or Leave on a builder that is expanded at run time.
    #[error("dynamic node group does not support {0}")]
    Dynamic(&'static str),
    /// A `--platform` value does not parse.
    #[error(transparent)]
    Platform(#[from] kbx_opts::Error),
}

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

//! The crate's error type.

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The source error of a failed connection or transfer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference could not be parsed.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry refused the request: credentials are missing or wrong.
    #[error(
        "registry {registry} refused access{}: {detail}",
        if *credentials_sent { " with the credentials sent" } else { " (no credentials were sent)" }
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// Whether credentials were sent.
        credentials_sent: bool,
        /// The registry's own words (error body or status).
        detail: String,
    },
    /// The registry could not be reached (connection refused, DNS, TLS, timeout).
    #[error("registry {registry} is unreachable")]
    Unreachable {
        /// The registry host.
        registry: String,
        /// The connection error.
        #[source]
        source: BoxError,
    },
    /// The manifest or blob does not exist.
    #[error("{reference}: not found")]
    NotFound {
        /// What was asked for (reference or `repository@digest`).
        reference: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry} answered {status} to {method} {path}: {detail}")]
    Registry {
        /// The registry host.
        registry: String,
        /// Request method.
        method: String,
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The registry's error codes and messages, or the body.
        detail: String,
    },
    /// Content did not match its digest or size.
    #[error("{what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// Expected digest or size.
        expected: String,
        /// Actual digest or size.
        actual: String,
    },
    /// A manifest, index or config could not be decoded.
    #[error("cannot decode {what}")]
    Decode {
        /// What was decoded.
        what: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The content cannot be used as asked (e.g. a schema1 manifest in an index).
    #[error("{0}")]
    Unsupported(String),
    /// Reading a stream that was being uploaded failed.
    #[error("reading the content to upload failed")]
    Body {
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

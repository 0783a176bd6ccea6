//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong talking to BuildKit.
///
/// Messages are lowercase fragments that read well after "failed to …"; the cause chain is
/// available through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The daemon address could not be understood.
    #[error("invalid BuildKit address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening the byte stream to the daemon failed.
    #[error("connect to {addr}")]
    Connect {
        /// Where we tried to connect.
        addr: String,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The Docker Engine refused the `Upgrade: h2c` hijack.
    #[error(
        "upgrade {path} on the Docker Engine: expected 101 Switching Protocols, got {status:?}"
    )]
    Upgrade {
        /// `/grpc` or `/session`.
        path: String,
        /// The status line the daemon answered with.
        status: String,
    },
    /// TLS material could not be loaded or used.
    #[error("TLS: {what}")]
    Tls {
        /// What failed, e.g. `read CA certificate /etc/ca.pem`.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The gRPC channel could not be established.
    #[error("open gRPC channel to {addr}")]
    Transport {
        /// Where we tried to connect.
        addr: String,
        /// tonic's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A Control API call failed.
    #[error("call {call}: {}", .status.message())]
    Rpc {
        /// The method, e.g. `ListWorkers`.
        call: &'static str,
        /// The gRPC status.
        #[source]
        status: Box<tonic::Status>,
    },
    /// The daemon cannot do what was asked; detected before the solve.
    #[error("{what} is not supported by {daemon}")]
    Unsupported {
        /// The feature, e.g. `exporter "image"`.
        what: String,
        /// The daemon, e.g. `Docker's embedded BuildKit v0.8`.
        daemon: String,
    },
    /// Several outputs for one build on a daemon that takes only one exporter (before BuildKit
    /// v0.13); buildx's text. Detected before the solve.
    #[error(
        "multiple outputs currently unsupported by the current BuildKit daemon, please upgrade to version v0.13+ or use a single output"
    )]
    MultipleOutputsUnsupported {
        /// The daemon, e.g. `Docker 20.10.24's embedded BuildKit v0.8`.
        daemon: String,
    },
    /// Invalid build options (caught before anything is sent).
    #[error("invalid build options: {0}")]
    InvalidOptions(String),
    /// A build flag value did not parse (`--output`, `--cache-from`, `--cache-to`, `--secret`,
    /// `--build-context`); the inner error names the flag and the value and carries buildx's
    /// text. The inner error is part of the message, not a separate cause, so that a printed
    /// cause chain shows it once.
    #[error("invalid build options: {0}")]
    Flag(kbx_opts::Error),
    /// A path pattern did not compile.
    #[error("invalid pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A local file operation failed.
    #[error("{op} {}", .path.display())]
    Io {
        /// What we were doing (`read`, `create`, `walk`, …).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A passphrase-protected `--ssh` key file whose passphrase could not be obtained.
    #[error("--ssh key {}: the key is passphrase-protected and no passphrase was read", .path.display())]
    SshPassphrase {
        /// The key file.
        path: PathBuf,
        /// Why the passphrase callback failed.
        #[source]
        source: io::Error,
    },
    /// The daemon sent a path that would escape the output directory, or a malformed stream.
    #[error("unsafe or malformed path {path:?} from the daemon: {reason}")]
    UnsafePath {
        /// The path as sent.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// The session stream broke or the peer violated the protocol.
    #[error("session: {0}")]
    Session(String),
    /// The Docker Engine refused an API call or answered one with an error (for example a
    /// push the registry rejected).
    #[error("docker engine {call}: {message}")]
    Engine {
        /// The call, e.g. `push localhost:5000/app:1`.
        call: String,
        /// The Engine's error message.
        message: String,
    },
    /// Loading a docker archive into a Docker Engine (`docker load`, what `--load` does on
    /// BuildKit daemons other than the Engine's own) failed; the source says why: the Engine
    /// cannot be reached ([`Error::Connect`]), refused the archive ([`Error::Engine`] with its
    /// text), or the archive broke off.
    #[error("load the image into the Docker Engine at {addr}")]
    EngineLoad {
        /// The Engine's address, e.g. `docker-unix:///var/run/docker.sock`.
        addr: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// The build failed. Carries the failing step and its last log lines when known.
    #[error("{message}{}{}", vertex_suffix(.vertex.as_deref()), location_suffix(.location.as_ref()))]
    Solve {
        /// BuildKit's error message (with the Dockerfile line when the frontend gives one).
        message: String,
        /// The name of the failing step, e.g. `[2/3] RUN false`.
        vertex: Option<String>,
        /// The last lines the failing step printed.
        logs: Vec<String>,
        /// The Dockerfile location, when the daemon attached one (BuildKit v0.9+; Docker 20.10
        /// attaches none, its message names the line instead).
        location: Option<crate::SourceLocation>,
        /// The gRPC status. Not a cause: its text is `message` again.
        status: Box<tonic::Status>,
    },
}

fn vertex_suffix(vertex: Option<&str>) -> String {
    match vertex {
        Some(v) => format!(" (in step {v})"),
        None => String::new(),
    }
}

fn location_suffix(loc: Option<&crate::SourceLocation>) -> String {
    match loc {
        Some(l) => format!(" at {}:{}", l.file, l.line),
        None => String::new(),
    }
}

impl From<kbx_opts::Error> for Error {
    fn from(e: kbx_opts::Error) -> Self {
        Error::Flag(e)
    }
}

impl Error {
    /// For a failed step, buildx's block naming it with its last log lines:
    /// `------\n > STEP:\nLINE…\n------\n`; `None` for other errors.
    ///
    /// ```
    /// # use kbx_buildkit::Error;
    /// let e = Error::Solve {
    ///     message: "exit code: 1".into(),
    ///     vertex: Some("[2/2] RUN false".into()),
    ///     logs: vec!["#5 0.1 no".into()],
    ///     location: None,
    ///     status: Box::new(tonic::Status::unknown("exit code: 1")),
    /// };
    /// assert_eq!(e.failed_step().unwrap(), "------\n > [2/2] RUN false:\n#5 0.1 no\n------\n");
    /// // The status repeats the message, so it is not printed again as a cause.
    /// assert!(std::error::Error::source(&e).is_none());
    /// ```
    pub fn failed_step(&self) -> Option<String> {
        let Error::Solve {
            vertex: Some(v),
            logs,
            ..
        } = self
        else {
            return None;
        };
        let mut text = format!("------\n > {v}:\n");
        for l in logs {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str("------\n");
        Some(text)
    }

    pub(crate) fn rpc(call: &'static str, status: tonic::Status) -> Self {
        Error::Rpc {
            call,
            status: Box::new(status),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The gRPC status code behind this error, when it came from the daemon.
    pub fn grpc_code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { status, .. } | Error::Solve { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Whether the connection to the daemon broke (the call failed on this side of the wire:
    /// the stream ended or was reset), rather than the daemon answering with an error.
    ///
    /// ```
    /// # use kbx_buildkit::Error;
    /// let cut = tonic::Status::from_error(Box::new(std::io::Error::from(
    ///     std::io::ErrorKind::BrokenPipe,
    /// )));
    /// assert!(Error::Rpc { call: "Solve", status: Box::new(cut) }.is_connection_lost());
    /// let answered = tonic::Status::unknown("failed to compute cache key");
    /// assert!(!Error::Rpc { call: "Solve", status: Box::new(answered) }.is_connection_lost());
    /// ```
    pub fn is_connection_lost(&self) -> bool {
        match self {
            // A status decoded from the daemon's answer has no source; one made from a local
            // transport failure keeps it.
            Error::Rpc { status, .. } | Error::Solve { status, .. } => {
                status.code() == tonic::Code::Unavailable
                    || std::error::Error::source(status.as_ref()).is_some()
            }
            _ => false,
        }
    }
}

/// An error and its causes on one line, `: `-separated (for progress lines).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

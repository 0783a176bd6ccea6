//! A BuildKit client that builds a Dockerfile from a local context: transports (unix, TCP, TLS,
//! Docker Engine, any spawned process' stdio), the Control API, a session server with a
//! streaming FileSync sender, `dockerfile.v0` solves with `moby` / `local` / `tar` / `image` /
//! `oci` / `docker` exports (a `docker` archive can stream straight into a Docker Engine, as
//! buildx's `--load` does: [`Output::DockerLoad`]), a session content store for `type=local`
//! caches, `oci-layout://` named contexts and OCI layout exports (`oci`/`docker` with
//! `tar=false`), several outputs in one build on BuildKit v0.13+
//! ([`BuildOptions::extra_outputs`]: each exporter's files come back on their own stream),
//! attestations, and progress events with a plain renderer.
//!
//! ```no_run
//! use kbx_buildkit::{BuildOptions, Client, Output, PlainRenderer};
//!
//! # async fn demo() -> Result<(), kbx_buildkit::Error> {
//! // `docker` = the Engine named by DOCKER_HOST; also unix://…, tcp://…, docker-unix://…
//! let client = Client::connect("docker").await?;
//! let opts = BuildOptions {
//!     context: "app".into(),
//!     target: Some("release".into()),
//!     output: Some(Output::parse("type=local,dest=out")?),
//!     ..BuildOptions::default()
//! };
//! let mut plain = PlainRenderer::new(std::io::stderr());
//! let result = client.build(&opts, |ev| { let _ = plain.render(ev); }).await?;
//! println!("{:?}", result.exporter_response);
//! # Ok(()) }
//! ```
//!
//! The pieces that need no daemon are usable on their own, e.g. Docker's pattern semantics:
//!
//! ```
//! use kbx_buildkit::PatternMatcher;
//! let ignore = PatternMatcher::new(["**/*.tmp", "target", "!target/keep"])?;
//! assert!(ignore.matches("a/b/c.tmp"));
//! assert!(ignore.matches("target/debug/x"));
//! assert!(!ignore.matches("target/keep"));
//! # Ok::<(), kbx_buildkit::Error>(())
//! ```
//!
//! The daemon's build history: [`Client::history`], [`Client::delete_history`],
//! [`Client::history_logs`] (a recorded build's progress replayed) and [`Client::read_blob`].
//!
//! Modules: [`transport`] (byte streams → tonic channels), [`Client`] (Control API,
//! capabilities, [`Client::build`]), [`progress`] (events, the daemon's messages as
//! [`SolveStatus`], and the plain renderer), [`engine`] (the Docker Engine API calls a build
//! needs: push, load, ping).
//!
//! # Deviations from buildx
//! - Extended attributes of context files are not sent (buildx sends them); see
//!   `docs/deviations.md`.
//! - Exporter capabilities of a Docker Engine are assumed, not queried
//!   ([`Client::capabilities`]).

#![forbid(unsafe_code)]

mod attachables;
mod client;
mod content;
mod contexts;
pub mod engine;
mod errdetails;
mod error;
mod fsutil;
mod history;
mod inputs;
mod metadata;
mod patterns;
pub mod progress;
mod service;
mod session;
mod solve;
mod sshkeys;
pub mod transport;

pub use attachables::{
    Credential, DockerCredentials, Secret, SecretSource, SshAgent, SshKeys, SshSource,
};
pub use client::{Backend, CacheRecord, Capabilities, Client, DaemonInfo, PruneOptions, Worker};
pub use contexts::{NamedContext, NamedContextSource};
pub use errdetails::SourceLocation;
pub use error::{Error, Result};
pub use history::{BlobDescriptor, HistoryRecord, RecordResult};
pub use metadata::MetadataProvenance;
pub use patterns::{Pattern, PatternMatcher};
pub use progress::{PlainRenderer, ProgressEvent, ProgressTracker, SolveStatus};
pub use solve::{BuildOptions, BuildResult, CacheEntry, Export, Output, parse_attests};
pub use transport::Address;

/// Measurement helpers for the upload benchmark (not a stable API).
#[doc(hidden)]
pub mod bench {
    pub use crate::fsutil::loopback::{Transfer, loopback_transfer};
}

//! A small, streaming client for OCI distribution registries, and buildx's `imagetools`
//! (`create` combines images into one multi-platform index, `inspect` describes one).
//!
//! ```
//! use kbx_registry::{Client, ClientOptions, Reference};
//!
//! // References are normalised as Docker does.
//! let r = Reference::parse("busybox")?;
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! let pinned = r.with_digest(&kbx_registry::sha256_digest(b"{}"));
//! assert!(pinned.to_string().ends_with("@sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"));
//!
//! // Loopback registries are spoken to over plain HTTP, others over HTTPS.
//! let client = Client::new(ClientOptions::default());
//! assert!(client.is_plain_http("127.0.0.1:5000"));
//! assert!(!client.is_plain_http("registry.example:5000"));
//! # Ok::<(), kbx_registry::Error>(())
//! ```
//!
//! Talking to a registry (needs one running):
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use kbx_registry::{Client, ClientOptions, Reference};
//!
//! # async fn run() -> Result<(), kbx_registry::Error> {
//! let client = Client::new(ClientOptions::default());
//! let amd64 = Reference::parse("localhost:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")?;
//! let arm64 = Reference::parse("localhost:5000/app@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210")?;
//! let tag = Reference::parse("localhost:5000/app:1.0")?;
//! let index = client.create_index(&[amd64, arm64], &[tag.clone()], &BTreeMap::new(), false).await?;
//! println!("{}", index.descriptor.digest);
//! print!("{}", client.inspect(&tag).await?);
//! # Ok(()) }
//! ```
//!
//! HTTP is hyper 1 with rustls (system roots). Authentication answers `Basic` and `Bearer`
//! challenges with credentials from a caller-supplied [`CredentialFn`]; bearer tokens are
//! cached per scope. Blobs stream in both directions and are checked against their digests;
//! only manifests and image configs (at most [`MAX_MANIFEST_SIZE`]) are read into memory.

#![forbid(unsafe_code)]

mod auth;
mod client;
mod error;
mod index;
mod reference;
mod types;

pub use auth::{Credential, CredentialFn};
pub use client::{BlobStream, Client, ClientOptions, MAX_MANIFEST_SIZE};
pub use error::{BoxError, Error, Result};
pub use index::{CreatedIndex, InspectedManifest, Inspection};
pub use reference::{DOCKER_HUB, DOCKER_HUB_API, Reference};
pub use types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, Descriptor, MANIFEST_ACCEPT, OCI_INDEX,
    OCI_MANIFEST, Platform, is_image_manifest, is_index, sha256_digest,
};

//! Builder records on disk, shared with Docker Buildx.
//!
//! kbx reads and writes the same store as `docker buildx` (`~/.docker/buildx` by default):
//! the same directory layout, the same JSON byte for byte, the same `flock` on `.lock`. A
//! builder created by one tool is listed, used and removed by the other.
//!
//! ```
//! use kbx_store::{NodeGroup, NodeUpdate, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let txn = store.txn()?; // holds the store lock until dropped
//!
//! let mut ng = NodeGroup::new("kube", "kubernetes");
//! ng.update(NodeUpdate {
//!     endpoint: "kubernetes:///kube?deployment=kube0&kubeconfig=".into(),
//!     platforms: vec!["linux/amd64".into()],
//!     driver_opts: Some([("namespace".to_owned(), "buildkit".to_owned())].into()),
//!     ..NodeUpdate::default()
//! })?;
//! txn.save(&ng)?;
//! txn.set_current("default", "kube", false, false)?;
//!
//! let current = txn.current("default")?.expect("a current builder");
//! assert_eq!(current.nodes()[0].name, "kube0");
//! assert!(current.to_json().contains(r#""DriverOpts":{"namespace":"buildkit"}"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Layout (under [`config_dir`]): `instances/<lower-cased name>` holds a [`NodeGroup`] as JSON,
//! `activity/<name>` its last-activity time, `current` the current builder per endpoint key,
//! `defaults/<hash>` per-key defaults, `refs/<name>/` local build state.

#![forbid(unsafe_code)]

mod error;
mod json;
mod localstate;
mod name;
mod nodegroup;
mod store;

pub use error::Error;
pub use localstate::BuildState;
pub use name::validate_name;
pub use nodegroup::{Node, NodeGroup, NodeUpdate};
pub use store::{Record, Store, Txn, config_dir};

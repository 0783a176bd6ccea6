//! Choosing the BuildKit pod a build goes to, as Docker Buildx's `kubernetes` driver does, plus
//! a better-balanced strategy.
//!
//! ```
//! use kbx_balance::{LoadBalance, Pod, PodChooser, PodPhase};
//!
//! let mut leaving = Pod::running("buildkit-2");
//! leaving.terminating = true;
//! let pods = [
//!     Pod::running("buildkit-0"),
//!     Pod::running("buildkit-1"),
//!     leaving,
//!     Pod::with_phase("buildkit-3", PodPhase::Pending),
//! ];
//!
//! // The same key always goes to the same pod; terminating and pending pods are never chosen.
//! let chooser = PodChooser::new(LoadBalance::Rendezvous);
//! let first = chooser.choose("/home/user/project", &pods)?;
//! assert_eq!(chooser.choose("/home/user/project", &pods)?, first);
//! assert!(first.name == "buildkit-0" || first.name == "buildkit-1");
//!
//! // buildx's `sticky` ring, bit for bit (a test vector checked against the real Buildx).
//! let pods = [Pod::running("p0-0"), Pod::running("p0-1"), Pod::running("p0-2")];
//! let sticky = PodChooser::new(LoadBalance::Sticky);
//! assert_eq!(sticky.choose("/home/user/project", &pods)?.name, "p0-1");
//!
//! // Nothing to choose from: buildx's error text.
//! let err = PodChooser::new(LoadBalance::Random).choose("", &[]).unwrap_err();
//! assert_eq!(err.to_string(), "no running buildkit pods found");
//! # Ok::<(), kbx_balance::Error>(())
//! ```
//!
//! The caller lists the pods of a builder node (with the label selector of its Deployment or
//! StatefulSet), describes each as a [`Pod`] and calls [`PodChooser::choose`]. [`candidates`]
//! is the filtering step on its own. The strategies are the values of the `loadbalance` driver
//! option, [`LoadBalance`] (from `kbx-opts`): `sticky` (buildx's default), `random`, and
//! `rendezvous` (kbx only).
//!
//! This crate does no IO and needs no async runtime. The only thing it asks the operating
//! system for is the seed of the `random` strategy's generator, once per process.
//!
//! # Deviations from buildx
//! Each is documented on the item that implements it and listed in `docs/deviations.md`:
//! unready pods are skipped when a ready one exists ([`candidates`]), and the new
//! `rendezvous` strategy ([`PodChooser`]).

#![forbid(unsafe_code)]

mod chooser;
mod error;
mod pod;
mod random;
mod rendezvous;
mod sticky;

pub use chooser::PodChooser;
pub use error::Error;
pub use kbx_opts::LoadBalance;
pub use pod::{Pod, PodPhase, candidates};

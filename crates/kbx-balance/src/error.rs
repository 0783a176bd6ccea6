//! The one error type of this crate.

/// Why no pod could be chosen.
///
/// `Display` gives buildx's exact text, so scripts that match on it keep working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No pod is a candidate: every listed pod is terminating or not `Running` (or the list is
    /// empty).
    #[error("no running buildkit pods found")]
    NoRunningPods {
        /// How many pods were listed before filtering (all of them were dropped).
        listed: usize,
    },
}

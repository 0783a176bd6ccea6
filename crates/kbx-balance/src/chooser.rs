//! [`PodChooser`]: one strategy, one entry point.

use kbx_opts::LoadBalance;

use crate::error::Error;
use crate::pod::{Pod, candidates};
use crate::random::Source;
use crate::{rendezvous, sticky};

/// Chooses the pod of a builder node that a connection goes to.
///
/// The strategy is buildx's `loadbalance` driver option ([`LoadBalance`], re-exported from
/// `kbx-opts`). Every call first narrows the pods down to [`candidates`], then:
///
/// - [`LoadBalance::Sticky`] (default): buildx's consistent-hash ring, bit for bit: 40 points
///   per pod, each MD5 digest of `<name>-<j>` (`j` in `0..40`) giving three little-endian 32-bit
///   positions, and the key goes to the first position strictly greater than the first four
///   bytes of its own MD5 (little-endian), wrapping around. The same key and the same candidates
///   give the same pod as buildx (checked against the real Buildx 0.29.1 on a cluster).
/// - [`LoadBalance::Random`]: a uniform choice among the candidates, new on every call, from a
///   generator seeded once per process by the operating system (the key is ignored).
/// - [`LoadBalance::Rendezvous`]: highest-random-weight hashing (XXH3 weights, defined exactly
///   under "Rendezvous weights" below). Keys spread evenly over pods, and when pods come or go only
///   the keys that must move do.
///
/// The key is what buildx passes: the absolute path of the build context for `build`, the
/// working directory for `bake` and `dial-stdio`, and `""` for `ls`, `inspect`, `create` and
/// `rm`. It is used raw, not hashed first.
///
/// ```
/// use kbx_balance::{LoadBalance, Pod, PodChooser};
///
/// let pods = [Pod::running("pod-b"), Pod::running("pod-c")];
/// let chosen = PodChooser::new(LoadBalance::Sticky).choose("some-context-path-hash", &pods)?;
/// assert_eq!(chosen.name, "pod-b"); // the same pod buildx picks
/// # Ok::<(), kbx_balance::Error>(())
/// ```
///
/// # Rendezvous weights
/// For a key `k` and a pod named `n`, with XXH3 as specified by the xxHash project:
/// `weight = XXH3_64_withSeed(d, seed = XXH3_64(n))`, where `d` is `XXH3_128(k)` as 16 bytes
/// (`low64` then `high64`, each little-endian).
/// The pod with the highest weight wins; on equal weights, the one whose name sorts first.
///
/// # Deviation
/// - Pods whose `Ready` condition is false are skipped when a ready pod exists (see
///   [`candidates`]); buildx ignores readiness.
/// - [`LoadBalance::Rendezvous`] does not exist in buildx.
/// - With no candidate, `sticky` returns [`Error::NoRunningPods`] directly; buildx first logs
///   `no pod found for key "<key>"` and then fails with the same error from its random chooser.
///   The error text is the same.
#[derive(Debug)]
pub struct PodChooser {
    strategy: LoadBalance,
    rng: Source,
}

impl Default for PodChooser {
    /// A `sticky` chooser, buildx's default.
    fn default() -> Self {
        PodChooser::new(LoadBalance::default())
    }
}

impl PodChooser {
    /// A chooser for `strategy`; `random` draws from the process-wide generator.
    pub fn new(strategy: LoadBalance) -> Self {
        PodChooser {
            strategy,
            rng: Source::Process,
        }
    }

    /// A chooser whose `random` choices come from its own generator seeded with `seed`, so a
    /// sequence of choices can be replayed. The other strategies ignore the seed.
    pub fn with_seed(strategy: LoadBalance, seed: u64) -> Self {
        PodChooser {
            strategy,
            rng: Source::seeded(seed),
        }
    }

    /// The strategy this chooser applies.
    pub fn strategy(&self) -> LoadBalance {
        self.strategy
    }

    /// Chooses one of `pods` for `key`.
    ///
    /// The key is taken as bytes, so a path that is not UTF-8 (possible on Unix) hashes exactly
    /// as in buildx: pass `path.as_os_str().as_encoded_bytes()`. A `&str` works as is.
    ///
    /// # Errors
    /// [`Error::NoRunningPods`] (`no running buildkit pods found`) when no pod is a candidate.
    pub fn choose<'p>(&self, key: impl AsRef<[u8]>, pods: &'p [Pod]) -> Result<&'p Pod, Error> {
        let key = key.as_ref();
        let candidates = candidates(pods);
        let names: Vec<&str> = candidates.iter().map(|p| p.name.as_str()).collect();
        let index = match self.strategy {
            LoadBalance::Sticky => sticky::choose(key, &names),
            LoadBalance::Rendezvous => rendezvous::choose(key, &names),
            LoadBalance::Random => (!names.is_empty()).then(|| self.rng.index(names.len())),
        };
        index
            .and_then(|i| candidates.get(i).copied())
            .ok_or(Error::NoRunningPods { listed: pods.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooser_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>(_: &T) {}
        let chooser = PodChooser::with_seed(LoadBalance::Random, 3);
        shareable(&chooser);
        let pods = [Pod::running("a"), Pod::running("b")];
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        assert!(chooser.choose("", &pods).is_ok());
                    }
                });
            }
        });
    }
}

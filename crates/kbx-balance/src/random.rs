//! The `random` strategy's generator: seeded once per process from the operating system.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::{StdRng, SysRng};
use rand::{RngExt, SeedableRng};

/// Where random choices come from.
#[derive(Debug)]
pub(crate) enum Source {
    /// The generator shared by the whole process.
    Process,
    /// A generator owned by one chooser, seeded by the caller (reproducible).
    Seeded(Box<Mutex<StdRng>>),
}

impl Source {
    pub(crate) fn seeded(seed: u64) -> Self {
        Source::Seeded(Box::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    /// A uniform index in `0..len`; `len` must be at least 1.
    pub(crate) fn index(&self, len: usize) -> usize {
        let rng = match self {
            Source::Process => process_rng(),
            Source::Seeded(rng) => rng,
        };
        // A panic while holding the lock cannot leave the generator in a bad state: keep going.
        let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
        rng.random_range(0..len)
    }
}

/// The process-wide generator, seeded on first use.
fn process_rng() -> &'static Mutex<StdRng> {
    static RNG: OnceLock<Mutex<StdRng>> = OnceLock::new();
    RNG.get_or_init(|| Mutex::new(seed_once()))
}

/// Seeds from the operating system's generator. Should that fail (very early boot, exotic
/// sandboxes), falls back to std's per-process random hasher keys mixed with the clock, which
/// still differs between processes and calls.
fn seed_once() -> StdRng {
    StdRng::try_from_rng(&mut SysRng).unwrap_or_else(|_| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = RandomState::new().hash_one((nanos, std::process::id()));
        StdRng::seed_from_u64(seed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a = Source::seeded(7);
        let b = Source::seeded(7);
        let xs: Vec<usize> = (0..32).map(|_| a.index(1000)).collect();
        let ys: Vec<usize> = (0..32).map(|_| b.index(1000)).collect();
        assert_eq!(xs, ys);
        assert!(
            xs.iter().any(|&x| x != xs[0]),
            "a generator that repeats itself: {xs:?}"
        );
    }

    #[test]
    fn process_generator_is_shared_and_advances() {
        assert!(std::ptr::eq(process_rng(), process_rng()));
        let xs: Vec<usize> = (0..64).map(|_| Source::Process.index(1 << 20)).collect();
        let mut distinct = xs.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 60, "too many repeats: {xs:?}");
    }

    #[test]
    fn index_stays_in_range() {
        let s = Source::seeded(1);
        assert!((0..1000).all(|_| s.index(3) < 3));
        assert!((0..100).all(|_| s.index(1) == 0));
    }
}

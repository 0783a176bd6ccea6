//! The `rendezvous` strategy: highest-random-weight (HRW) hashing.
//!
//! Each pod gets a weight for the key, and the pod with the highest weight wins. Weights are
//! independent per pod, so every pod is equally likely to win any key (an even spread), and
//! adding or removing a pod only changes the winner of the keys that the pod wins or won (the
//! least possible movement).
//!
//! The weight is defined exactly, so that every kbx process, on any machine and in any version,
//! maps a key to the same pod:
//!
//! ```text
//! digest(key)      = XXH3-128(key bytes) as 16 bytes: low64 then high64, each little-endian
//! seed(pod)        = XXH3-64(pod name bytes)
//! weight(key, pod) = XXH3-64-with-seed(digest(key), seed(pod))
//! ```
//!
//! Ties (equal weights, practically only for equal names) go to the pod that comes first in the
//! name-sorted candidate list.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed, xxh3_128};

/// The 16-byte digest of a key, computed once per choice.
pub(crate) fn key_digest(key: &[u8]) -> [u8; 16] {
    xxh3_128(key).to_le_bytes()
}

/// The weight of the pod called `name` for the key with digest `digest`.
pub(crate) fn weight(digest: &[u8; 16], name: &str) -> u64 {
    xxh3_64_with_seed(digest, xxh3_64(name.as_bytes()))
}

/// The index in `names` of the pod with the highest weight for `key`, or `None` when `names` is
/// empty. Among equal weights the first index wins.
pub(crate) fn choose<S: AsRef<str>>(key: &[u8], names: &[S]) -> Option<usize> {
    let digest = key_digest(key);
    let mut best: Option<(u64, usize)> = None;
    for (i, name) in names.iter().enumerate() {
        let w = weight(&digest, name.as_ref());
        if best.is_none_or(|(bw, _)| w > bw) {
            best = Some((w, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_pinned() {
        // Changing the weight function would remap every key of every user: pin it.
        let d = key_digest(b"/home/user/project");
        let pinned = [
            weight(&d, "buildkit-0"),
            weight(&d, "buildkit-1"),
            weight(&d, ""),
        ];
        assert_eq!(pinned, PINNED);
    }

    /// Computed independently with the xxHash reference C library (libxxhash 0.8.1):
    /// `XXH3_64bits_withSeed(digest, 16, XXH3_64bits(name))`, where `digest` is `XXH3_128bits(key)`
    /// with `low64` in bytes 0..8 and `high64` in bytes 8..16, both little-endian.
    const PINNED: [u64; 3] = [
        53_703_039_117_539_781,
        5_080_524_666_673_205_331,
        9_056_865_187_189_987_326,
    ];

    #[test]
    fn highest_weight_wins() {
        let names = ["a", "b", "c", "d", "e"];
        for key in [&b""[..], b"k", b"/work/app", b"/"] {
            let d = key_digest(key);
            let i = choose(key, &names).expect("non-empty");
            assert!(names.iter().all(|n| weight(&d, n) <= weight(&d, names[i])));
        }
    }

    #[test]
    fn ties_go_to_the_first() {
        assert_eq!(choose(b"k", &["same", "same", "same"]), Some(0));
        assert_eq!(choose::<&str>(b"k", &[]), None);
    }
}

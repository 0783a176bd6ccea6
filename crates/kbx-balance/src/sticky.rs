//! buildx's `sticky` strategy: a consistent-hash ring with one MD5 point per pod.
//!
//! The ring is the one of the Go library buildx uses (`serialx/hashring`, weight 1 per node):
//! - each node gets one point, the MD5 digest of `<name>-0`;
//! - a digest is read as two little-endian **signed** 64-bit integers `(high, low)`
//!   (bytes 0..8 and 8..16) and points are ordered by `(high, low)`;
//! - a key's position is the digest of its raw bytes, and it belongs to the first point
//!   strictly greater than it, wrapping to the smallest point.

use md5::{Digest, Md5};

/// A position on the ring: an MD5 digest read as `(high, low)` little-endian signed integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RingKey {
    high: i64,
    low: i64,
}

impl RingKey {
    /// The ring position of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> Self {
        let digest: [u8; 16] = Md5::digest(bytes).into();
        let (h, l) = digest.split_at(8);
        RingKey {
            high: i64::from_le_bytes(le8(h)),
            low: i64::from_le_bytes(le8(l)),
        }
    }

    /// The ring position of a node's single point (`<name>-0`).
    pub(crate) fn of_node(name: &str) -> Self {
        let mut point = Vec::with_capacity(name.len() + 2);
        point.extend_from_slice(name.as_bytes());
        point.extend_from_slice(b"-0");
        Self::of(&point)
    }
}

fn le8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0; 8];
    out.copy_from_slice(bytes);
    out
}

/// The index in `names` of the node that owns `key`, or `None` when `names` is empty.
///
/// Nodes with equal names share one point; the first of them in `names` is returned. When two
/// different names hash to the same point (an MD5 collision), the one that sorts first by name
/// owns it.
pub(crate) fn choose<S: AsRef<str>>(key: &[u8], names: &[S]) -> Option<usize> {
    let mut ring: Vec<(RingKey, &str, usize)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (RingKey::of_node(n.as_ref()), n.as_ref(), i))
        .collect();
    ring.sort_unstable();
    let key = RingKey::of(key);
    let pos = ring.partition_point(|(point, _, _)| *point <= key);
    ring.get(pos).or_else(|| ring.first()).map(|&(_, _, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_key_reads_md5_as_little_endian_signed_pair() {
        // md5("pod-a-0") = f6d4053ad70fd618c63622ecf27c33fa
        assert_eq!(
            RingKey::of_node("pod-a"),
            RingKey {
                high: 1_789_635_318_992_196_854,
                low: -417_852_957_629_729_082
            }
        );
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(
            RingKey::of(b""),
            RingKey {
                high: 338_333_539_836_370_388,
                low: 9_098_107_892_288_553_193
            }
        );
    }

    #[test]
    fn ordering_is_signed_high_then_low() {
        let neg = RingKey { high: -1, low: 0 };
        let pos = RingKey {
            high: 1,
            low: i64::MIN,
        };
        assert!(neg < pos);
        assert!(RingKey { high: 1, low: -5 } < RingKey { high: 1, low: 3 });
    }

    #[test]
    fn key_equal_to_a_point_goes_to_the_next_point() {
        // The key "pod-a-0" sits exactly on pod-a's point, so it belongs to the next point.
        let names = ["pod-a", "pod-b", "pod-c"];
        let mut points: Vec<(RingKey, usize)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (RingKey::of_node(n), i))
            .collect();
        points.sort();
        let a = points
            .iter()
            .position(|&(_, i)| i == 0)
            .expect("pod-a is on the ring");
        let next = points[(a + 1) % points.len()].1;
        assert_eq!(choose(b"pod-a-0", &names), Some(next));
        assert_ne!(next, 0);
    }

    #[test]
    fn a_removed_nodes_keys_go_to_its_ring_successor() {
        let names: Vec<String> = (0..6).map(|i| format!("buildkit-{i}")).collect();
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.sort_by_key(|&i| RingKey::of_node(&names[i]));
        for removed in 0..names.len() {
            let at = order
                .iter()
                .position(|&i| i == removed)
                .expect("on the ring");
            let successor = &names[order[(at + 1) % order.len()]];
            let rest: Vec<&String> = names.iter().filter(|n| **n != names[removed]).collect();
            for k in 0..2000 {
                let key = format!("/home/dev/project-{k}");
                let before = choose(key.as_bytes(), &names).expect("non-empty");
                let after = rest[choose(key.as_bytes(), &rest).expect("non-empty")];
                if before == removed {
                    assert_eq!(after, successor, "{key}");
                } else {
                    assert_eq!(*after, names[before], "{key}");
                }
            }
        }
    }

    #[test]
    fn empty_ring_owns_nothing() {
        assert_eq!(choose::<&str>(b"key", &[]), None);
    }

    #[test]
    fn duplicate_names_resolve_to_the_first() {
        assert_eq!(choose(b"key", &["x", "x"]), Some(0));
    }
}

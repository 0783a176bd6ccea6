//! buildx's `sticky` strategy: the consistent-hash ring of `serialx/hashring` as buildx vendors
//! it (`v0.0.0-20200727003509-22c0c7ab6b1b`), every node with weight 1.
//!
//! - Each node gets `floor(40 × nodes × weight / total weight)` = 40 points: for `j` in `0..40`,
//!   the MD5 digest of `<name>-<j>` gives three 32-bit points, its bytes `0..4`, `4..8` and
//!   `8..12` read little-endian (the last four bytes are unused).
//! - The nodes are added in the order given (buildx: running pods sorted by name); when two
//!   points are equal, the node added last owns it (a Go map assignment).
//! - A key's position is the first four bytes of the MD5 digest of its raw bytes, read
//!   little-endian; it belongs to the first point strictly greater than it, wrapping to the
//!   smallest point.
//!
//! The real Buildx 0.29.1 picks the same pod for every one of 30 context paths on a 3-replica
//! builder (`conformance/tests/kbx_cli/interop.rs`).

use md5::{Digest, Md5};

/// Points per node: `floor(40 × n × 1 / n)` for `n` nodes of weight 1.
const POINTS_PER_NODE: usize = 40;

/// 32-bit ring positions taken from one MD5 digest.
const POSITIONS_PER_POINT: usize = 3;

/// A 32-bit ring position: four digest bytes read little-endian.
fn position(bytes: &[u8]) -> u32 {
    let mut le = [0; 4];
    le.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(le)
}

/// The ring position of a key: the first four bytes of its MD5 digest.
pub(crate) fn key_position(key: &[u8]) -> u32 {
    position(&Md5::digest(key))
}

/// Every point of node `name`, in the order the library adds them.
pub(crate) fn node_positions(name: &str) -> impl Iterator<Item = u32> + '_ {
    let mut point = Vec::with_capacity(name.len() + 3);
    (0..POINTS_PER_NODE).flat_map(move |j| {
        point.clear();
        point.extend_from_slice(name.as_bytes());
        point.push(b'-');
        point.extend_from_slice(j.to_string().as_bytes());
        let digest: [u8; 16] = Md5::digest(&point).into();
        (0..POSITIONS_PER_POINT).map(move |i| position(&digest[i * 4..i * 4 + 4]))
    })
}

/// A built ring: positions sorted, each with the index of the node that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ring {
    names: Vec<String>,
    /// `(position, owner)`, sorted; one entry per distinct position.
    points: Vec<(u32, usize)>,
}

impl Ring {
    fn new<S: AsRef<str>>(names: &[S]) -> Self {
        // (position, insertion order): sorting puts the last writer of a position last.
        let mut all: Vec<(u32, usize)> = names
            .iter()
            .enumerate()
            .flat_map(|(i, n)| node_positions(n.as_ref()).map(move |p| (p, i)))
            .collect();
        all.sort_unstable();
        let mut points: Vec<(u32, usize)> = Vec::with_capacity(all.len());
        for (p, i) in all {
            match points.last_mut() {
                Some(last) if last.0 == p => last.1 = i,
                _ => points.push((p, i)),
            }
        }
        // Equal names are one node: report the first of them.
        for point in &mut points {
            let name = names[point.1].as_ref();
            point.1 = names
                .iter()
                .position(|n| n.as_ref() == name)
                .unwrap_or(point.1);
        }
        Ring {
            names: names.iter().map(|n| n.as_ref().to_owned()).collect(),
            points,
        }
    }

    fn owner(&self, key: &[u8]) -> Option<usize> {
        let key = key_position(key);
        let at = self.points.partition_point(|&(p, _)| p <= key);
        self.points
            .get(at)
            .or_else(|| self.points.first())
            .map(|&(_, i)| i)
    }

    fn is_for<S: AsRef<str>>(&self, names: &[S]) -> bool {
        self.names.len() == names.len()
            && self.names.iter().zip(names).all(|(a, b)| a == b.as_ref())
    }
}

thread_local! {
    /// The last ring built on this thread: choices for many keys over the same pods (a bake of
    /// many targets, the balance tests) hash the pods once.
    static LAST: std::cell::RefCell<Option<Ring>> = const { std::cell::RefCell::new(None) };
}

/// The index in `names` of the node that owns `key`, or `None` when `names` is empty.
///
/// Equal names are one node; the first of them in `names` is returned.
pub(crate) fn choose<S: AsRef<str>>(key: &[u8], names: &[S]) -> Option<usize> {
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if !last.as_ref().is_some_and(|r| r.is_for(names)) {
            *last = Some(Ring::new(names));
        }
        last.as_ref().and_then(|r| r.owner(key))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_little_endian_words_of_md5() {
        // md5("pod-a-0") = f6d4053a d70fd618 c63622ec f27c33fa
        let first: Vec<u32> = node_positions("pod-a").take(3).collect();
        assert_eq!(first, [0x3a05_d4f6, 0x18d6_0fd7, 0xec22_36c6]);
        // md5("") = d41d8cd9 8f00b204 e9800998 ecf8427e
        assert_eq!(key_position(b""), 0xd98c_1dd4);
        assert_eq!(node_positions("x").count(), 120);
    }

    #[test]
    fn a_key_goes_to_the_first_point_strictly_above_it() {
        let names = ["pod-a", "pod-b", "pod-c"];
        let mut ring: Vec<(u32, usize)> = names
            .iter()
            .enumerate()
            .flat_map(|(i, n)| node_positions(n).map(move |p| (p, i)))
            .collect();
        ring.sort_unstable();
        // "pod-b-0"'s first word is a point of pod-b; a key sitting on it belongs to the next.
        for k in 0..500 {
            let key = format!("/srv/ctx-{k}");
            let at = key_position(key.as_bytes());
            let next = ring.iter().find(|&&(p, _)| p > at).unwrap_or(&ring[0]).1;
            assert_eq!(choose(key.as_bytes(), &names), Some(next), "{key}");
        }
    }

    #[test]
    fn a_removed_nodes_keys_move_and_the_others_stay() {
        let names: Vec<String> = (0..6).map(|i| format!("buildkit-{i}")).collect();
        for removed in 0..names.len() {
            let rest: Vec<&String> = names.iter().filter(|n| **n != names[removed]).collect();
            let (full, part) = (Ring::new(&names), Ring::new(&rest));
            for k in 0..2000 {
                let key = format!("/home/dev/project-{k}");
                let before = full.owner(key.as_bytes()).expect("non-empty");
                let after = rest[part.owner(key.as_bytes()).expect("non-empty")];
                if before != removed {
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

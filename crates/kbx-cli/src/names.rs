//! Random builder names (`adjective_surname`), tried up to 6 times like buildx.

use rand::seq::IndexedRandom as _;

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "bright", "calm", "clever", "cool", "eager", "fast", "gentle",
    "happy", "keen", "kind", "lucid", "merry", "modest", "nimble", "patient", "quick", "quiet",
    "sharp", "steady", "sunny", "swift", "tender", "tidy", "vivid", "wise", "witty", "zealous",
];

const SURNAMES: &[&str] = &[
    "babbage", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler", "faraday", "fermi",
    "gauss", "hamilton", "hopper", "kepler", "knuth", "lamport", "liskov", "lovelace", "maxwell",
    "meitner", "newton", "noether", "pascal", "ritchie", "shannon", "tesla", "thompson", "turing",
    "wozniak", "yonath", "zuse",
];

/// A random `adjective_surname` name; from the 2nd attempt on a digit is appended.
pub(crate) fn random_name(attempt: usize) -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("eager");
    let surname = SURNAMES.choose(&mut rng).copied().unwrap_or("turing");
    if attempt == 0 {
        format!("{adjective}_{surname}")
    } else {
        format!("{adjective}_{surname}{}", rand::random_range(0..10u8))
    }
}

/// `buildkit-<uuid4>-<5 hex>`: the unique `deployment=` value of an endpoint when `--node` is
/// not given (never used as a name).
pub(crate) fn unique_deployment_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let tail: [u8; 3] = rand::random();
    let tail: String = tail.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "buildkit-{}-{}-4{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32],
        &tail[..5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_builder_names() {
        for attempt in 0..6 {
            let name = random_name(attempt);
            assert!(kbx_store::validate_name(&name).is_ok(), "{name}");
        }
        let id = unique_deployment_id();
        assert!(
            id.starts_with("buildkit-") && id.len() == "buildkit-".len() + 36 + 6,
            "{id}"
        );
    }
}

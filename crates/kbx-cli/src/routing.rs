//! Which node of a builder builds which requested platform.
//!
//! As buildx: a platform goes to the first node (in the builder's order) whose fixed
//! `--platform`s include it, an exact match before a compatible variant; a platform no node
//! claims goes to the first node whose BuildKit workers report it (native or through QEMU);
//! failing that, to the first node, where BuildKit reports what it cannot build.

use kbx_opts::Platform;

/// What routing knows of one node.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodePlatforms {
    /// The node's fixed platforms (`create --platform`).
    pub(crate) fixed: Vec<Platform>,
    /// The platforms its workers report, when they were asked.
    pub(crate) detected: Option<Vec<Platform>>,
}

/// One node's share of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Share {
    /// Index of the node in the builder.
    pub(crate) node: usize,
    /// The platforms it builds, in the order they were requested (empty: the node's default).
    pub(crate) platforms: Vec<Platform>,
    /// Platforms that went to this node only because no node claims or reports them.
    pub(crate) unclaimed: Vec<Platform>,
}

/// The numeric level of a variant (`v7` → 7), for architectures whose variants are ordered.
fn level(variant: &str) -> Option<u32> {
    variant.strip_prefix('v')?.parse().ok()
}

/// Whether a node that runs `have` can build `want`: same OS and architecture, and a variant
/// at least as capable (`linux/arm/v7` builds `linux/arm/v6`; `linux/amd64/v3` builds
/// `linux/amd64/v2`; a missing variant matches any).
pub(crate) fn compatible(have: &Platform, want: &Platform) -> bool {
    if have.os != want.os || have.architecture != want.architecture {
        return false;
    }
    if have.variant == want.variant || want.variant.is_empty() || have.variant.is_empty() {
        return true;
    }
    matches!((level(&have.variant), level(&want.variant)), (Some(h), Some(w)) if h >= w)
}

fn exact(list: &[Platform], want: &Platform) -> bool {
    list.iter().any(|p| p == want)
}

fn loose(list: &[Platform], want: &Platform) -> bool {
    list.iter().any(|p| compatible(p, want))
}

/// The node claiming `want` through its fixed platforms, if any.
fn by_fixed(nodes: &[NodePlatforms], want: &Platform) -> Option<usize> {
    nodes
        .iter()
        .position(|n| exact(&n.fixed, want))
        .or_else(|| nodes.iter().position(|n| loose(&n.fixed, want)))
}

/// Whether routing `requested` needs the workers' platforms of some node (a platform that no
/// node's fixed platforms claim).
pub(crate) fn needs_detection(requested: &[Platform], nodes: &[NodePlatforms]) -> bool {
    nodes.len() > 1 && requested.iter().any(|p| by_fixed(nodes, p).is_none())
}

/// Splits `requested` among `nodes` (at least one). Shares come in node order; a request
/// without platforms builds on the first node with the daemon's default platform.
pub(crate) fn route(requested: &[Platform], nodes: &[NodePlatforms]) -> Vec<Share> {
    let mut shares: Vec<Share> = Vec::new();
    let mut add = |node: usize, p: &Platform, unclaimed: bool| {
        let i = match shares.iter().position(|s| s.node == node) {
            Some(i) => i,
            None => {
                shares.push(Share {
                    node,
                    platforms: Vec::new(),
                    unclaimed: Vec::new(),
                });
                shares.len() - 1
            }
        };
        if !shares[i].platforms.contains(p) {
            shares[i].platforms.push(p.clone());
            if unclaimed {
                shares[i].unclaimed.push(p.clone());
            }
        }
    };
    for want in requested {
        let detected = |n: &NodePlatforms, strict: bool| {
            n.detected.as_deref().is_some_and(|d| {
                if strict {
                    exact(d, want)
                } else {
                    loose(d, want)
                }
            })
        };
        if nodes.len() <= 1 {
            add(0, want, false);
            continue;
        }
        let chosen = by_fixed(nodes, want)
            .map(|i| (i, false))
            .or_else(|| {
                nodes
                    .iter()
                    .position(|n| detected(n, true))
                    .map(|i| (i, false))
            })
            .or_else(|| {
                nodes
                    .iter()
                    .position(|n| detected(n, false))
                    .map(|i| (i, false))
            })
            .unwrap_or((0, true));
        add(chosen.0, want, chosen.1);
    }
    if shares.is_empty() {
        // No platform asked for: the first node, with the daemon's default platform.
        shares.push(Share {
            node: 0,
            platforms: Vec::new(),
            unclaimed: Vec::new(),
        });
    }
    shares.sort_by_key(|s| s.node);
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Platform {
        Platform::parse(text, &Platform::local()).unwrap()
    }

    fn ps(text: &str) -> Vec<Platform> {
        if text.is_empty() {
            return Vec::new();
        }
        text.split(',').map(p).collect()
    }

    fn node(fixed: &str, detected: Option<&str>) -> NodePlatforms {
        NodePlatforms {
            fixed: ps(fixed),
            detected: detected.map(ps),
        }
    }

    fn shown(shares: &[Share]) -> Vec<(usize, String)> {
        shares
            .iter()
            .map(|s| {
                let list: Vec<String> = s.platforms.iter().map(ToString::to_string).collect();
                (s.node, list.join(","))
            })
            .collect()
    }

    #[test]
    fn fixed_platforms_route_each_platform_to_its_node() {
        let nodes = [node("linux/amd64", None), node("linux/arm64", None)];
        let shares = route(&ps("linux/arm64,linux/amd64"), &nodes);
        assert_eq!(
            shown(&shares),
            [(0, "linux/amd64".into()), (1, "linux/arm64".into())]
        );
        assert!(!needs_detection(&ps("linux/arm64,linux/amd64"), &nodes));
    }

    #[test]
    fn exact_match_wins_over_an_earlier_compatible_node() {
        let nodes = [node("linux/arm/v7", None), node("linux/arm/v6", None)];
        let shares = route(&ps("linux/arm/v6"), &nodes);
        assert_eq!(shown(&shares), [(1, "linux/arm/v6".into())]);
        // No exact match: the first compatible node.
        let shares = route(&ps("linux/arm/v5"), &nodes);
        assert_eq!(shown(&shares), [(0, "linux/arm/v5".into())]);
    }

    #[test]
    fn first_node_in_order_wins_among_equal_claims() {
        let nodes = [node("linux/amd64", None), node("linux/amd64", None)];
        assert_eq!(
            shown(&route(&ps("linux/amd64"), &nodes)),
            [(0, "linux/amd64".into())]
        );
    }

    #[test]
    fn unclaimed_platforms_go_to_a_node_whose_workers_report_them() {
        let nodes = [
            node("linux/amd64", Some("linux/amd64,linux/386")),
            node("", Some("linux/arm64,linux/riscv64")),
        ];
        let want = ps("linux/amd64,linux/riscv64");
        assert!(needs_detection(&want, &nodes));
        assert_eq!(
            shown(&route(&want, &nodes)),
            [(0, "linux/amd64".into()), (1, "linux/riscv64".into())]
        );
    }

    #[test]
    fn platforms_nobody_reports_fall_back_to_the_first_node() {
        let nodes = [
            node("linux/amd64", Some("linux/amd64")),
            node("linux/arm64", Some("linux/arm64")),
        ];
        let shares = route(&ps("linux/s390x,linux/arm64"), &nodes);
        assert_eq!(
            shown(&shares),
            [(0, "linux/s390x".into()), (1, "linux/arm64".into())]
        );
        assert_eq!(shares[0].unclaimed, ps("linux/s390x"));
        assert!(shares[1].unclaimed.is_empty());
    }

    #[test]
    fn one_node_or_no_platform_builds_everything_on_the_first_node() {
        let one = [node("linux/arm64", None)];
        assert_eq!(
            shown(&route(&ps("linux/amd64,linux/arm64,linux/amd64"), &one)),
            [(0, "linux/amd64,linux/arm64".into())]
        );
        let two = [node("linux/amd64", None), node("linux/arm64", None)];
        assert_eq!(shown(&route(&[], &two)), [(0, String::new())]);
        assert!(!needs_detection(&[], &two));
    }

    #[test]
    fn variants_are_ordered_only_within_an_architecture() {
        assert!(compatible(&p("linux/arm/v7"), &p("linux/arm/v6")));
        assert!(!compatible(&p("linux/arm/v6"), &p("linux/arm/v7")));
        assert!(compatible(&p("linux/amd64/v3"), &p("linux/amd64/v2")));
        assert!(compatible(&p("linux/amd64"), &p("linux/amd64/v2")));
        assert!(!compatible(&p("linux/arm64"), &p("linux/arm/v7")));
        assert!(!compatible(&p("windows/amd64"), &p("linux/amd64")));
    }
}

//! The PLATFORMS column of `ls`: a node's fixed platforms (marked `*`) then the detected ones,
//! and buildx's truncation to four groups in table mode.

use std::collections::BTreeMap;

use kbx_kube::Status;
use kbx_opts::Platform;
use kbx_store::Node;

use crate::driver::NodeStatus;

/// `os/arch` groups shown first, in this order, when truncating.
const MAJOR: [&str; 7] = [
    "linux/amd64",
    "linux/arm64",
    "linux/arm",
    "linux/ppc64le",
    "linux/s390x",
    "linux/riscv64",
    "linux/mips64",
];

/// Every platform once: the fixed ones first with a `*`, then the detected ones not already
/// listed.
pub(crate) fn in_groups(fixed: &[Platform], detected: &[Platform]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (mark, group) in [("*", fixed), ("", detected)] {
        for p in group {
            let text = p.clone().normalized().to_string();
            if seen.insert(text.clone()) {
                out.push(format!("{text}{mark}"));
            }
        }
    }
    out
}

/// The `os/arch` of a formatted platform (`*` mark ignored), or `None` if it does not parse.
fn os_arch(text: &str) -> Option<String> {
    let p = Platform::parse(text.trim_end_matches('*'), &Platform::local()).ok()?;
    Some(format!("{}/{}", p.os, p.architecture))
}

/// buildx's table-mode truncation: at most `max` groups, each one platform or
/// `os/arch[*] (+N)` for N variants, major architectures first, then `(N more)` for the
/// platforms not shown.
pub(crate) fn truncate(platforms: &[String], max: usize) -> String {
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for major in MAJOR {
        for p in platforms {
            if groups.len() >= max {
                break;
            }
            if os_arch(p).as_deref() == Some(major) {
                groups.entry(major.to_owned()).or_default().push(p);
            }
        }
    }
    if groups.len() < max {
        let mut rest: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for p in platforms {
            if let Some(key) = os_arch(p)
                && !groups.contains_key(&key)
            {
                rest.entry(key).or_default().push(p);
            }
        }
        groups.extend(rest);
    }

    let mut out = Vec::new();
    let mut shown = 0;
    let mut show = |key: &str, members: &[&str], out: &mut Vec<String>| {
        if let [one] = members {
            out.push((*one).to_owned());
        } else {
            let mark = if members.iter().any(|m| m.ends_with('*')) {
                "*"
            } else {
                ""
            };
            out.push(format!("{key}{mark} (+{})", members.len()));
        }
        shown += members.len();
    };
    for major in MAJOR {
        if let Some(members) = groups.get(major) {
            show(major, members, &mut out);
        }
    }
    for (key, members) in &groups {
        if out.len() >= max {
            break;
        }
        if !MAJOR.contains(&key.as_str()) {
            show(key, members, &mut out);
        }
    }
    if platforms.len() > shown {
        out.push(format!("({} more)", platforms.len() - shown));
    }
    out.join(", ")
}

/// The PLATFORMS of one row: the node's fixed platforms, then those `detected`.
pub(crate) fn node_platforms(n: &Node, detected: &[Platform]) -> Vec<String> {
    let fixed = n.platforms.clone().unwrap_or_default();
    in_groups(&fixed, detected)
}

/// The platforms the node's workers report (Docker engine, remote daemon).
pub(crate) fn reported(status: &NodeStatus) -> Vec<Platform> {
    status
        .platforms
        .iter()
        .filter_map(|p| Platform::parse(p, &Platform::local()).ok())
        .collect()
}

/// Every platform any pod of the node, or its workers, report.
pub(crate) fn detected(status: &NodeStatus) -> Vec<Platform> {
    let mut out = match &status.status {
        Ok(Status::Running(pods)) => pods.iter().flat_map(|p| p.platforms.clone()).collect(),
        _ => Vec::new(),
    };
    out.extend(reported(status));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Vec<String> {
        text.split(", ").map(str::to_owned).collect()
    }

    fn platforms(text: &str) -> Vec<Platform> {
        text.split(',')
            .map(|p| Platform::parse(p, &Platform::local()).unwrap())
            .collect()
    }

    #[test]
    fn fixed_platforms_come_first_marked_and_are_not_repeated() {
        let fixed = platforms("linux/arm64");
        let detected = platforms("linux/amd64,linux/arm64,linux/386");
        assert_eq!(
            in_groups(&fixed, &detected),
            ["linux/arm64*", "linux/amd64", "linux/386"]
        );
        assert!(in_groups(&[], &[]).is_empty());
    }

    #[test]
    fn variants_collapse_and_majors_go_first() {
        // The rendering of spec §10.1.
        let all = list(
            "linux/amd64, linux/amd64/v2, linux/amd64/v3, linux/arm64, linux/riscv64, linux/386",
        );
        assert_eq!(
            truncate(&all, 4),
            "linux/amd64 (+3), linux/arm64, linux/riscv64, linux/386"
        );
    }

    #[test]
    fn platforms_past_four_groups_are_counted() {
        let all = list(
            "linux/amd64, linux/arm64, linux/riscv64, linux/ppc64le, linux/s390x, linux/386, linux/mips64le, linux/arm/v7, linux/arm/v6",
        );
        assert_eq!(
            truncate(&all, 4),
            "linux/amd64, linux/arm64, linux/arm (+2), linux/ppc64le, (4 more)"
        );
    }

    #[test]
    fn a_fixed_member_marks_its_group() {
        let all = list("linux/amd64/v2*, linux/amd64, linux/arm64");
        assert_eq!(truncate(&all, 4), "linux/amd64* (+2), linux/arm64");
    }

    #[test]
    fn short_lists_are_unchanged() {
        assert_eq!(truncate(&list("linux/amd64*"), 4), "linux/amd64*");
        assert_eq!(truncate(&[], 4), "");
    }

    #[test]
    fn non_major_groups_follow_in_name_order() {
        let all = list("windows/amd64, linux/386, freebsd/amd64");
        assert_eq!(truncate(&all, 4), "freebsd/amd64, linux/386, windows/amd64");
    }
}

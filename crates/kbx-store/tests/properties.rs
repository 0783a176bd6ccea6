//! Any record kbx writes reads back equal, and the config directory follows buildx's rules.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use kbx_opts::Platform;
use kbx_store::{Node, NodeGroup, config_dir};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

fn node() -> impl Strategy<Value = Node> {
    (
        "[a-z][a-z0-9._-]{0,10}",
        any::<String>(),
        option::of(vec(
            prop::sample::select(vec![
                "linux/amd64",
                "linux/arm64",
                "linux/arm/v7",
                "windows/amd64",
            ]),
            0..3,
        )),
        option::of(btree_map(any::<String>(), any::<String>(), 0..4)),
        option::of(vec(any::<String>(), 0..3)),
        option::of(btree_map(any::<String>(), vec(any::<u8>(), 0..40), 0..3)),
    )
        .prop_map(
            |(name, endpoint, platforms, driver_opts, flags, files)| Node {
                name,
                endpoint,
                platforms: platforms.map(|ps| {
                    ps.into_iter()
                        .map(|p| Platform::parse(p, &Platform::local()).expect("valid platform"))
                        .collect()
                }),
                driver_opts,
                buildkitd_flags: flags,
                files,
            },
        )
}

proptest! {
    #[test]
    fn records_round_trip(name in "[a-zA-Z][a-zA-Z0-9._-]{0,12}", driver in any::<String>(),
                          nodes in option::of(vec(node(), 0..3)), dynamic in any::<bool>()) {
        let ng = NodeGroup { name, driver, nodes, dynamic, last_activity: None };
        let json = ng.to_json();
        prop_assert!(!json.contains('<') && !json.contains('>') && !json.contains('&'));
        prop_assert_eq!(NodeGroup::from_json(json.as_bytes()).unwrap(), ng);
    }

    #[test]
    fn bad_json_never_panics(data in vec(any::<u8>(), 0..200)) {
        let _ = NodeGroup::from_json(&data);
    }
}

#[test]
fn config_dir_resolution() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            let map: BTreeMap<&str, &str> = pairs.iter().copied().collect();
            map.get(k).map(OsString::from)
        }
    };
    assert_eq!(
        config_dir(env(&[
            ("BUILDX_CONFIG", "/b"),
            ("DOCKER_CONFIG", "/d"),
            ("HOME", "/h")
        ])),
        Some(PathBuf::from("/b"))
    );
    assert_eq!(
        config_dir(env(&[("DOCKER_CONFIG", "/d"), ("HOME", "/h")])),
        Some(PathBuf::from("/d/buildx"))
    );
    assert_eq!(
        config_dir(env(&[("HOME", "/h")])),
        Some(PathBuf::from("/h/.docker/buildx"))
    );
    assert_eq!(
        config_dir(env(&[("BUILDX_CONFIG", ""), ("HOME", "/h")])),
        Some(PathBuf::from("/h/.docker/buildx"))
    );
    assert_eq!(config_dir(env(&[])), None);
}

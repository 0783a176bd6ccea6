//! The store against buildx's own tests (`store_test.go`, `nodegroup_test.go`) and the exact
//! record of the reference (§9.2).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use kbx_store::{Error, NodeGroup, NodeUpdate, Store};

fn buildx_record() -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/store/buildx-kube.json");
    fs::read(path).expect("fixture")
}

#[test]
fn buildx_record_round_trips_byte_for_byte() {
    let data = buildx_record();
    let ng = NodeGroup::from_json(&data).unwrap();
    assert_eq!(ng.name, "kube");
    assert_eq!(ng.nodes().len(), 2);
    let n0 = &ng.nodes()[0];
    assert_eq!(
        n0.endpoint,
        "kubernetes:///kube?deployment=buildkit-4c2ed3ed-970f-4f3d-a6df-a4fcbab4d5cf-d9d73&kubeconfig="
    );
    assert_eq!(
        n0.files.as_ref().unwrap()["buildkitd.toml"],
        b"debug = true\n\n[worker]\n[worker.oci]\nmax-parallelism = 4\n"
    );
    assert_eq!(ng.nodes()[1].platforms.as_ref().unwrap()[1].variant, "v7");
    assert_eq!(ng.nodes()[1].files, None);
    assert_eq!(ng.to_json().as_bytes(), &data[..]);
}

#[test]
fn a_buildx_store_loads_and_kbx_writes_what_buildx_reads() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("instances")).unwrap();
    fs::write(dir.path().join("instances/kube"), buildx_record()).unwrap();
    fs::create_dir_all(dir.path().join("activity")).unwrap();
    fs::write(dir.path().join("activity/kube"), "2026-11-01T10:00:00Z").unwrap();
    fs::write(
        dir.path().join("current"),
        r#"{"Key":"default","Name":"kube","Global":false}"#,
    )
    .unwrap();

    let store = Store::open(dir.path()).unwrap();
    let txn = store.txn().unwrap();
    let ng = txn.current("default").unwrap().expect("current builder");
    assert_eq!(ng.name, "kube");
    assert_eq!(
        ng.last_activity.unwrap().to_string(),
        "2026-11-01T10:00:00Z"
    );
    txn.save(&ng).unwrap();
    assert_eq!(
        fs::read(dir.path().join("instances/kube")).unwrap(),
        buildx_record()
    );
    let activity = fs::read_to_string(dir.path().join("activity/kube")).unwrap();
    assert!(
        activity.ends_with('Z') && activity.len() == 20,
        "{activity}"
    );
}

#[test]
fn empty_startup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.txn().unwrap().current("foo").unwrap().is_none());
    for sub in ["instances", "defaults", "activity"] {
        let mode = fs::metadata(dir.path().join(sub))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{sub}");
    }
}

#[test]
fn transactions_are_serialised_by_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let txn = store.txn().unwrap();
    assert!(store.try_txn().unwrap().is_none(), "lock must be held");

    let (tx, rx) = mpsc::channel();
    let other = store.clone();
    let waiter = std::thread::spawn(move || {
        let _txn = other.txn().unwrap();
        tx.send(()).unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "should have waited"
    );
    drop(txn);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("should have completed");
    waiter.join().unwrap();
    assert!(store.try_txn().unwrap().is_some());
}

#[test]
fn node_management() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let txn = store.txn().unwrap();

    let err = txn.save(&NodeGroup::new("foo/bar", "driver")).unwrap_err();
    assert!(err.to_string().contains("invalid name"), "{err}");

    txn.save(&NodeGroup::new("mybuild", "mydriver")).unwrap();
    let ng = txn.node_group("mybuild").unwrap();
    assert_eq!(
        (ng.name.as_str(), ng.driver.as_str()),
        ("mybuild", "mydriver")
    );
    assert!(ng.last_activity.is_some());
    assert!(matches!(
        txn.node_group("mybuild2"),
        Err(Error::NotFound(_))
    ));

    txn.save(&NodeGroup::new("mybuild2", "mydriver2")).unwrap();
    assert_eq!(txn.node_group("mybuild2").unwrap().driver, "mydriver2");
    txn.save(&NodeGroup::new("mybuild", "mydriver-mod"))
        .unwrap();
    assert_eq!(txn.node_group("mybuild").unwrap().driver, "mydriver-mod");
    assert_eq!(txn.list().unwrap().len(), 2);

    let current = |key: &str| txn.current(key).unwrap().map(|ng| ng.name);
    txn.set_current("foo", "mybuild", false, false).unwrap();
    assert_eq!(current("foo").as_deref(), Some("mybuild"));
    assert_eq!(current("foo").as_deref(), Some("mybuild"));
    assert_eq!(current("bar"), None);
    assert_eq!(
        current("foo"),
        None,
        "asking for another key resets current"
    );

    txn.set_current("foo", "mybuild", false, true).unwrap();
    assert_eq!(current("foo").as_deref(), Some("mybuild"));
    assert_eq!(current("bar"), None);
    assert_eq!(
        current("foo").as_deref(),
        Some("mybuild"),
        "the default survives"
    );

    txn.set_current("foo", "mybuild2", false, true).unwrap();
    assert_eq!(current("foo").as_deref(), Some("mybuild2"));
    txn.set_current("bar", "mybuild", false, false).unwrap();
    assert_eq!(current("bar").as_deref(), Some("mybuild"));
    assert_eq!(current("foo").as_deref(), Some("mybuild2"));

    txn.set_current("foo", "mybuild2", true, false).unwrap();
    assert_eq!(current("foo").as_deref(), Some("mybuild2"));
    assert_eq!(
        current("bar").as_deref(),
        Some("mybuild2"),
        "global applies to every key"
    );
    txn.set_current("bar", "mybuild", false, false).unwrap();
    assert_eq!(current("bar").as_deref(), Some("mybuild"));
    assert_eq!(current("foo"), None);

    txn.set_current("bar", "mybuild", false, true).unwrap();
    txn.set_current("foo", "mybuild2", false, false).unwrap();
    fs::create_dir_all(dir.path().join("refs/mybuild2/node")).unwrap();
    txn.remove("mybuild2").unwrap();
    assert!(matches!(
        txn.node_group("mybuild2"),
        Err(Error::NotFound(_))
    ));
    assert!(!dir.path().join("refs/mybuild2").exists());
    assert!(!dir.path().join("activity/mybuild2").exists());
    assert_eq!(current("foo"), None);
    assert_eq!(current("bar").as_deref(), Some("mybuild"));
}

#[test]
fn invalid_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let txn = store.txn().unwrap();
    for bad in ["123builder", "foo/bar", "", "a b", "é"] {
        assert!(
            matches!(txn.node_group(bad), Err(Error::InvalidName(_))),
            "{bad}"
        );
        assert!(
            matches!(
                txn.save(&NodeGroup::new(bad, "d")),
                Err(Error::InvalidName(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn file_names_are_lower_cased_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let txn = store.txn().unwrap();
    txn.save(&NodeGroup::new("MyBuilder", "kubernetes"))
        .unwrap();
    let path = dir.path().join("instances/mybuilder");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ng = txn.node_group("mybuilder").unwrap();
    assert_eq!(ng.name, "MyBuilder", "the JSON keeps the name as typed");
    assert!(
        dir.path().join("activity/MyBuilder").exists(),
        "activity is keyed as typed"
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("instances"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["mybuilder"], "no temporary files left behind");
}

#[test]
fn list_is_sorted_and_reports_corrupt_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let txn = store.txn().unwrap();
    txn.save(&NodeGroup::new("b", "kubernetes")).unwrap();
    txn.save(&NodeGroup::new("a", "kubernetes")).unwrap();
    let names: Vec<String> = txn.list().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["a", "b"]);
    fs::write(dir.path().join("instances/broken"), "{not json").unwrap();
    assert!(
        matches!(txn.list(), Err(Error::Corrupt { .. })),
        "corrupt records are reported"
    );
}

#[test]
fn node_group_update_like_buildx() {
    // TestNodeGroupUpdate
    let mut ng = NodeGroup::default();
    let upd = |name: &str, ep: &str, platforms: &[&str], append: bool, flags: Option<&[&str]>| {
        NodeUpdate {
            name: name.into(),
            endpoint: ep.into(),
            platforms: platforms.iter().map(|s| s.to_string()).collect(),
            set_endpoint: true,
            append,
            buildkitd_flags: flags.map(|f| f.iter().map(|s| s.to_string()).collect()),
            ..NodeUpdate::default()
        }
    };
    ng.update(upd(
        "foo",
        "foo0",
        &["linux/amd64"],
        false,
        Some(&["--debug"]),
    ))
    .unwrap();
    ng.update(upd(
        "foo1",
        "foo1",
        &["linux/arm64", "linux/arm/v7"],
        true,
        None,
    ))
    .unwrap();
    assert_eq!(ng.nodes().len(), 2);

    ng.update(upd(
        "foo",
        "foo2",
        &["linux/amd64", "linux/arm"],
        false,
        None,
    ))
    .unwrap();
    assert_eq!(ng.nodes().len(), 2);
    let fmt = |i: usize| -> Vec<String> {
        ng.nodes()[i]
            .platforms
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(fmt(0), ["linux/amd64", "linux/arm/v7"]);
    assert_eq!(fmt(1), ["linux/arm64"]);
    assert_eq!(ng.nodes()[0].endpoint, "foo2");
    assert_eq!(
        ng.nodes()[0].buildkitd_flags.as_deref(),
        Some(&["--debug".to_owned()][..])
    );
    assert_eq!(ng.nodes()[1].buildkitd_flags, None);

    let err = ng
        .update(upd("foo1", "foo2", &[], false, None))
        .unwrap_err();
    assert!(err.to_string().contains("duplicate endpoint"), "{err}");

    ng.leave("foo").unwrap();
    assert_eq!(ng.nodes().len(), 1);
    let fmt = |i: usize| -> Vec<String> {
        ng.nodes()[i]
            .platforms
            .iter()
            .flatten()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(fmt(0), ["linux/arm64"]);
}

#[test]
fn update_and_leave_errors() {
    let mut ng = NodeGroup::new("kube", "kubernetes");
    ng.update(NodeUpdate {
        endpoint: "a".into(),
        ..NodeUpdate::default()
    })
    .unwrap();
    assert_eq!(ng.nodes()[0].name, "kube0");
    ng.update(NodeUpdate {
        endpoint: "b".into(),
        append: true,
        ..NodeUpdate::default()
    })
    .unwrap();
    assert_eq!(ng.nodes()[1].name, "kube1");
    ng.update(NodeUpdate {
        name: "Kube_AMD64".into(),
        endpoint: "c".into(),
        append: true,
        ..NodeUpdate::default()
    })
    .unwrap();
    assert_eq!(
        ng.nodes()[2].name,
        "kube_amd64",
        "new node names are lower-cased"
    );

    let err = ng
        .update(NodeUpdate {
            name: "nope".into(),
            ..NodeUpdate::default()
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "node nope not found, did you mean to append?"
    );
    let err = ng.leave("nope").unwrap_err();
    assert_eq!(err.to_string(), "node \"nope\" not found for kube");
    let err = ng
        .update(NodeUpdate {
            name: "9x".into(),
            append: true,
            ..NodeUpdate::default()
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidName(_)));

    let mut single = NodeGroup::new("one", "kubernetes");
    single
        .update(NodeUpdate {
            endpoint: "a".into(),
            ..NodeUpdate::default()
        })
        .unwrap();
    assert_eq!(
        single.leave("one0").unwrap_err().to_string(),
        "can not leave last node, do you want to rm instance instead?"
    );
}

#[test]
fn config_files_merge_into_a_node_without_files() {
    // buildx panics here (nil map); kbx creates the map (docs/deviations.md).
    let mut ng = NodeGroup::new("kube", "kubernetes");
    ng.update(NodeUpdate {
        name: "n".into(),
        endpoint: "a".into(),
        ..NodeUpdate::default()
    })
    .unwrap();
    let files = [("buildkitd.toml".to_owned(), b"debug = true\n".to_vec())].into();
    ng.update(NodeUpdate {
        name: "n".into(),
        files: Some(files),
        ..NodeUpdate::default()
    })
    .unwrap();
    assert_eq!(
        ng.nodes()[0].files.as_ref().unwrap()["buildkitd.toml"],
        b"debug = true\n"
    );
    assert_eq!(
        ng.nodes()[0].endpoint,
        "a",
        "kubernetes does not replace the endpoint"
    );
}

#[test]
fn json_escapes_like_go() {
    let mut ng = NodeGroup::new("x", "kubernetes");
    ng.update(NodeUpdate {
        endpoint: "kubernetes:///x?deployment=a&kubeconfig=<b>\u{2028}".into(),
        ..NodeUpdate::default()
    })
    .unwrap();
    let json = ng.to_json();
    assert!(
        json.contains(r#"a\u0026kubeconfig=\u003cb\u003e\u2028"#),
        "{json}"
    );
    assert_eq!(NodeGroup::from_json(json.as_bytes()).unwrap(), ng);
    assert_eq!(
        NodeGroup::new("n", "d").to_json(),
        r#"{"Name":"n","Driver":"d","Nodes":null,"Dynamic":false}"#
    );
}

/// Records written by older and newer buildx releases leave fields out; Go reads them as zero
/// values, and so does kbx. One unreadable record does not hide the others.
#[test]
fn records_with_missing_fields_load_and_a_corrupt_one_does_not_hide_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let instances = dir.path().join("instances");
    fs::write(
        instances.join("old"),
        r#"{"Name":"old","Driver":"kubernetes","Nodes":[{"Name":"old0","Endpoint":"kubernetes:///old?deployment=old0&kubeconfig=","Platforms":[{"os":"linux"}],"Flags":null}]}"#,
    )
    .unwrap();
    fs::write(instances.join("bare"), r#"{"Name":"bare"}"#).unwrap();
    fs::write(instances.join("bad"), r#"{"Name":"bad", garbage"#).unwrap();
    let txn = store.txn().unwrap();

    let old = txn.node_group("old").unwrap();
    let node = &old.nodes()[0];
    assert_eq!(node.files, None);
    assert_eq!(node.driver_opts, None);
    assert_eq!(node.platforms.as_ref().unwrap()[0].architecture, "");
    assert_eq!(node.platforms.as_ref().unwrap()[0].os, "linux");
    assert!(!old.dynamic);
    let bare = txn.node_group("bare").unwrap();
    assert_eq!((bare.driver.as_str(), bare.nodes()), ("", &[][..]));

    let records = txn.records().unwrap();
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["bad", "bare", "old"]);
    assert!(
        matches!(&records[0].builder, Err(Error::Corrupt { path, .. }) if path.ends_with("instances/bad"))
    );
    assert!(records[1].builder.is_ok() && records[2].builder.is_ok());
    assert!(matches!(txn.list(), Err(Error::Corrupt { .. })));
}

/// kbx's own options (`context=`, `loadbalance=rendezvous`) go under `KbxDriverOpts`, which
/// Buildx does not read, and come back merged; records without them stay Buildx's.
#[test]
fn kbx_only_options_are_kept_where_buildx_does_not_read_them() {
    let mut ng = NodeGroup::from_json(&buildx_record()).unwrap();
    assert!(!ng.to_json().contains("KbxDriverOpts"));
    let opts = ng.nodes.as_mut().unwrap()[0]
        .driver_opts
        .get_or_insert_with(Default::default);
    opts.insert("context".into(), "kind-prod".into());
    opts.insert("loadbalance".into(), "rendezvous".into());
    opts.insert("namespace".into(), "ci".into());
    let json = ng.to_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let node = &v["Nodes"][0];
    assert_eq!(node["DriverOpts"]["namespace"], "ci");
    assert!(node["DriverOpts"].get("context").is_none(), "{json}");
    assert!(node["DriverOpts"].get("loadbalance").is_none(), "{json}");
    assert_eq!(node["KbxDriverOpts"]["context"], "kind-prod");
    assert_eq!(node["KbxDriverOpts"]["loadbalance"], "rendezvous");
    assert!(v["Nodes"][1].get("KbxDriverOpts").is_none());
    let back = NodeGroup::from_json(json.as_bytes()).unwrap();
    assert_eq!(back, ng);
    // `loadbalance=random` is Buildx's own and stays in DriverOpts.
    ng.nodes.as_mut().unwrap()[0]
        .driver_opts
        .as_mut()
        .unwrap()
        .insert("loadbalance".into(), "random".into());
    let v: serde_json::Value = serde_json::from_str(&ng.to_json()).unwrap();
    assert_eq!(v["Nodes"][0]["DriverOpts"]["loadbalance"], "random");
}

//! The crate stays pure and leaves the Kubernetes API version to the binary.

use crate::common::Result;

fn manifest(path: &str) -> Result<toml::Table> {
    Ok(std::fs::read_to_string(path)?.parse()?)
}

/// The features a dependency entry enables (none when it is a bare version string).
fn features(entry: &toml::Value) -> Vec<String> {
    entry
        .get("features")
        .and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn library_picks_no_kubernetes_version_and_no_runtime() -> Result {
    let crate_toml = manifest(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))?;
    let workspace_toml = manifest(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))?;
    let deps = crate_toml["dependencies"]
        .as_table()
        .ok_or("no [dependencies]")?;
    let k8s = deps.get("k8s-openapi").ok_or("no k8s-openapi dependency")?;
    let workspace_k8s = &workspace_toml["workspace"]["dependencies"]["k8s-openapi"];
    let is_version = |f: &String| f.starts_with("v1_") || f == "latest" || f == "earliest";
    for (what, entry) in [("crate", k8s), ("workspace", workspace_k8s)] {
        let picked: Vec<String> = features(entry).into_iter().filter(is_version).collect();
        assert!(picked.is_empty(), "{what} enables {picked:?}");
    }
    for io in ["tokio", "kube", "reqwest", "hyper"] {
        assert!(
            !deps.contains_key(io),
            "{io} is a dependency of a pure crate"
        );
    }
    Ok(())
}

//! Client configuration resolution against real kubeconfig files.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use kbx_kube::{ConfigRequest, ConfigSource, Error, kubeconfig_paths, resolve};

fn kubeconfig(
    dir: &Path,
    file: &str,
    server: &str,
    context: &str,
    namespace: Option<&str>,
) -> String {
    let ns = namespace
        .map(|n| format!("\n    namespace: {n}"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: v1
kind: Config
current-context: {context}
clusters:
- name: {context}-cluster
  cluster:
    server: {server}
contexts:
- name: {context}
  context:
    cluster: {context}-cluster
    user: {context}-user{ns}
users:
- name: {context}-user
  user:
    token: secret-{context}
"
    );
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write kubeconfig");
    path.to_string_lossy().into_owned()
}

fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<OsString> {
    let map: BTreeMap<&str, String> = pairs.into_iter().collect();
    move |k| map.get(k).map(OsString::from)
}

#[tokio::test]
async fn endpoint_kubeconfig_beats_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let a = kubeconfig(dir.path(), "a", "https://127.0.0.1:6443", "a", Some("ns-a"));
    let b = kubeconfig(dir.path(), "b", "https://127.0.0.2:6443", "b", None);
    let request = ConfigRequest {
        endpoint_kubeconfig: a.clone(),
        ..ConfigRequest::default()
    };
    let r = resolve(&request, env(vec![("KUBECONFIG", b)]))
        .await
        .unwrap();
    assert_eq!(r.config.cluster_url.to_string(), "https://127.0.0.1:6443/");
    assert_eq!(r.namespace, "ns-a");
    assert_eq!(r.source, ConfigSource::Kubeconfig(vec![a.into()]));
}

#[tokio::test]
async fn kubeconfig_env_is_merged_and_first_current_context_wins() {
    let dir = tempfile::tempdir().unwrap();
    let a = kubeconfig(dir.path(), "a", "https://127.0.0.1:6443", "a", None);
    let b = kubeconfig(dir.path(), "b", "https://127.0.0.2:6443", "b", Some("ns-b"));
    let list = format!("{b}:{a}");
    let r = resolve(
        &ConfigRequest::default(),
        env(vec![("KUBECONFIG", list.clone())]),
    )
    .await
    .unwrap();
    assert_eq!(r.config.cluster_url.to_string(), "https://127.0.0.2:6443/");
    assert_eq!(r.namespace, "ns-b");

    // A path list stored in the endpoint is merged too (buildx fails on it).
    let request = ConfigRequest {
        endpoint_kubeconfig: list,
        context: Some("a".into()),
        ..ConfigRequest::default()
    };
    let r = resolve(&request, env(vec![])).await.unwrap();
    assert_eq!(
        r.config.cluster_url.to_string(),
        "https://127.0.0.1:6443/",
        "context= pins a context"
    );
    assert_eq!(r.namespace, "default");
}

#[tokio::test]
async fn namespace_option_wins() {
    let dir = tempfile::tempdir().unwrap();
    let a = kubeconfig(dir.path(), "a", "https://127.0.0.1:6443", "a", Some("ns-a"));
    let request = ConfigRequest {
        namespace: Some("buildkit".into()),
        ..ConfigRequest::default()
    };
    let r = resolve(&request, env(vec![("KUBECONFIG", a)]))
        .await
        .unwrap();
    assert_eq!(r.namespace, "buildkit");
}

#[tokio::test]
async fn home_kubeconfig_is_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".kube")).unwrap();
    kubeconfig(
        &dir.path().join(".kube"),
        "config",
        "https://127.0.0.3:6443",
        "home",
        None,
    );
    let home = dir.path().to_string_lossy().into_owned();
    let r = resolve(
        &ConfigRequest::default(),
        env(vec![("HOME", home.clone()), ("KUBECONFIG", String::new())]),
    )
    .await
    .unwrap();
    assert_eq!(r.config.cluster_url.to_string(), "https://127.0.0.3:6443/");
}

#[tokio::test]
async fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope").to_string_lossy().into_owned();
    let request = ConfigRequest {
        endpoint_kubeconfig: missing.clone(),
        ..ConfigRequest::default()
    };
    let err = kubeconfig_paths(&request, env(vec![])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("kubeconfig {missing} (from the builder's endpoint) does not exist")
    );

    let err = resolve(
        &ConfigRequest::default(),
        env(vec![("HOME", dir.path().to_string_lossy().into_owned())]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::NoApiAccess { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("kubernetes driver requires kubernetes API access")
    );

    let a = kubeconfig(dir.path(), "a", "https://127.0.0.1:6443", "a", None);
    let request = ConfigRequest {
        context: Some("other".into()),
        ..ConfigRequest::default()
    };
    let err = resolve(&request, env(vec![("KUBECONFIG", a.clone())]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid kubeconfig {a} for context \"other\"")
    );

    std::fs::write(dir.path().join("bad"), "{{{ not yaml").unwrap();
    let bad = dir.path().join("bad").to_string_lossy().into_owned();
    let err = resolve(
        &ConfigRequest::default(),
        env(vec![("KUBECONFIG", bad.clone())]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), format!("cannot load kubeconfig {bad}"));
}

//! Dynamic shell completion: the shell asks `kbx` itself (`COMPLETE=SHELL kbx -- ARGS…`) for
//! the values of an argument, so builder names come from the store at the time of asking.

use clap_complete::CompletionCandidate;

/// The stored builders and the implicit `default`, sorted; none when the store cannot be read
/// (a completion never fails).
pub(crate) fn builder_names() -> Vec<CompletionCandidate> {
    let mut names = vec!["default".to_owned()];
    if let Ok(store) = kbx_store::Store::open_default()
        && let Ok(txn) = store.txn()
        && let Ok(records) = txn.records()
    {
        names.extend(records.into_iter().map(|r| match r.builder {
            Ok(b) => b.name,
            Err(_) => r.name,
        }));
    }
    names.sort();
    names.dedup();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// The drivers `create --driver` accepts.
pub(crate) fn driver_names() -> Vec<CompletionCandidate> {
    [
        (
            "kubernetes",
            "BuildKit pods in a Kubernetes cluster (the default)",
        ),
        ("remote", "a BuildKit daemon you run yourself"),
    ]
    .into_iter()
    .map(|(name, help)| CompletionCandidate::new(name).help(Some(help.into())))
    .collect()
}

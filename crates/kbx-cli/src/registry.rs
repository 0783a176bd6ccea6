//! Registry clients as kbx uses them: credentials from the Docker CLI's configuration and
//! helpers, and plain HTTP to the registries a builder's `buildkitd.toml` marks `http = true`.

use std::sync::Arc;

use kbx_registry::{Client, ClientOptions, CredentialFn};

use crate::error::Error;

/// Registries the builder's nodes reach over plain HTTP (`http = true` in their
/// `buildkitd.toml`); kbx talks to them the same way, as buildx's imagetools do.
pub(crate) fn plain_http_hosts(ng: &kbx_store::NodeGroup) -> Vec<String> {
    let mut hosts = Vec::new();
    for n in ng.nodes() {
        let config = n
            .files
            .as_ref()
            .and_then(|f| f.get(kbx_manifest::CONFIG_FILE))
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| kbx_opts::BuildkitdConfig::parse(t).ok());
        for h in config
            .map(|c| c.plain_http_registries())
            .unwrap_or_default()
        {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// The selected builder's plain-HTTP registries; none when no builder can be read.
pub(crate) fn current_builder_plain_http_hosts(builder: Option<&str>) -> Vec<String> {
    let Ok(store) = kbx_store::Store::open_default() else {
        return Vec::new();
    };
    let Ok(txn) = store.txn() else {
        return Vec::new();
    };
    crate::builders::find_builder(&txn, builder)
        .map(|ng| plain_http_hosts(&ng))
        .unwrap_or_default()
}

/// A client whose credentials come from the Docker CLI configuration and its helpers, and
/// that also speaks plain HTTP to `plain_http_hosts`.
pub(crate) fn client_with(plain_http_hosts: Vec<String>) -> Result<Client, Error> {
    let creds = kbx_buildkit::DockerCredentials::load().map_err(Error::Credentials)?;
    let creds = Arc::new(creds);
    let callback: CredentialFn = Arc::new(move |host: &str| {
        let creds = creds.clone();
        let host = host.to_owned();
        Box::pin(async move {
            let c = creds.get(&host).await.ok()?;
            match (c.username.is_empty(), c.secret.is_empty()) {
                (_, true) => None,
                (true, false) => Some(kbx_registry::Credential::new("<token>", c.secret)),
                (false, false) => Some(kbx_registry::Credential::new(c.username, c.secret)),
            }
        })
    });
    Ok(Client::new(ClientOptions {
        credentials: Some(callback),
        plain_http_hosts,
        ..ClientOptions::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn plain_http_hosts_come_from_every_nodes_buildkitd_config() {
        let mut ng = kbx_store::NodeGroup::new("b", "kubernetes");
        let files = |text: &str| {
            Some(BTreeMap::from([(
                kbx_manifest::CONFIG_FILE.to_owned(),
                text.as_bytes().to_vec(),
            )]))
        };
        for (name, config) in [
            (
                "n1",
                files(
                    "[registry.\"10.0.0.5:5000\"]\nhttp = true\n[registry.\"secure.io\"]\nca = [\"/c.pem\"]\n",
                ),
            ),
            (
                "n2",
                files(
                    "[registry.\"10.0.0.5:5000\"]\nhttp = true\n[registry.\"reg.lan\"]\nhttp = true\n",
                ),
            ),
            ("n3", None),
        ] {
            ng.update(kbx_store::NodeUpdate {
                name: name.into(),
                endpoint: format!("kubernetes:///b?deployment={name}"),
                append: name != "n1",
                files: config,
                ..Default::default()
            })
            .unwrap();
        }
        assert_eq!(plain_http_hosts(&ng), ["10.0.0.5:5000", "reg.lan"]);
        assert!(plain_http_hosts(&kbx_store::NodeGroup::new("c", "kubernetes")).is_empty());
    }
}

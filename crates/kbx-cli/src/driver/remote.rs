//! The `remote` driver: a buildkitd at an address. Its endpoint and driver options are checked
//! as buildx checks them, and turn into TLS settings.
//!
//! # Deviation
//! buildx accepts `docker-container://`, `kube-pod://`, `npipe://` and `ssh://` endpoints too;
//! kbx connects to `tcp://` and `unix://` endpoints only (with or without TLS) and refuses the
//! other schemes in `kbx create` with a clear error.

use std::collections::BTreeMap;

use kbx_buildkit::Client;
use kbx_buildkit::transport::TlsOptions;
use kbx_kube::Status;
use kbx_store::Node;

use super::{ATTEMPTS, FIRST_BACKOFF, Loaded, answers, daemon_status};
use crate::error::{Error, chain};

/// Schemes buildx's remote driver accepts (sorted, as upstream keeps them).
const BUILDX_SCHEMES: &[&str] = &[
    "docker-container",
    "kube-pod",
    "npipe",
    "ssh",
    "tcp",
    "unix",
];

/// Schemes kbx can connect to.
const KBX_SCHEMES: &[&str] = &["tcp", "unix"];

/// Options that turn TLS on.
const TLS_KEYS: &[&str] = &["cacert", "cert", "key", "servername"];

/// The scheme of a URL as Go's `url.Parse` finds it (lower-cased), or `""`.
fn scheme(url: &str) -> String {
    let Some((head, _)) = url.split_once(':') else {
        return String::new();
    };
    let mut chars = head.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if valid {
        head.to_ascii_lowercase()
    } else {
        String::new()
    }
}

/// Checks a remote endpoint: buildx's scheme list first (same error text), then what kbx can
/// reach. Returns the endpoint as it is stored.
pub(crate) fn validate_endpoint(endpoint: &str) -> Result<String, Error> {
    let scheme = scheme(endpoint);
    if !BUILDX_SCHEMES.contains(&scheme.as_str()) {
        return Err(Error::msg(format!("unrecognized url scheme {scheme}")));
    }
    if !KBX_SCHEMES.contains(&scheme.as_str()) {
        return Err(Error::msg(format!(
            "remote endpoint scheme {scheme:?} is not supported by kbx (supported: tcp, unix)"
        )));
    }
    kbx_buildkit::Address::parse(endpoint)?;
    Ok(endpoint.to_owned())
}

/// Checks a remote node's driver options as buildx's remote driver does when it loads a node.
pub(crate) fn validate_options(opts: &BTreeMap<String, String>) -> Result<(), Error> {
    let mut tls = false;
    for (k, v) in opts {
        match k.as_str() {
            "servername" => tls = true,
            "cacert" | "cert" | "key" => {
                if !std::path::Path::new(v).is_absolute() {
                    return Err(Error::msg(format!(
                        "non-absolute path '{v}' provided for {k}"
                    )));
                }
                tls = true;
            }
            _ => {
                return Err(Error::msg(format!(
                    "invalid driver option {k} for remote driver"
                )));
            }
        }
    }
    if tls {
        let has = |k: &str| opts.get(k).is_some_and(|v| !v.is_empty());
        let mut missing = Vec::new();
        if !has("cacert") {
            missing.push("cacert");
        }
        if has("cert") && !has("key") {
            missing.push("key");
        }
        if has("key") && !has("cert") {
            missing.push("cert");
        }
        if !missing.is_empty() {
            return Err(Error::msg(format!(
                "tls enabled, but missing keys {}",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// The host part of `tcp://HOST:PORT` (brackets of an IPv6 literal removed), as Go's
/// `url.Hostname`; empty for `unix://`.
fn hostname(endpoint: &str) -> String {
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return String::new();
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.to_owned()
}

/// Checks a stored remote node and returns its TLS settings, if its options ask for TLS.
/// `servername` defaults to the endpoint's host, as in buildx.
pub(crate) fn connection(n: &Node) -> Result<Option<TlsOptions>, Error> {
    let opts = n.driver_opts.clone().unwrap_or_default();
    validate_options(&opts)?;
    validate_endpoint(&n.endpoint)?;
    if !TLS_KEYS.iter().any(|k| opts.contains_key(*k)) {
        return Ok(None);
    }
    let server_name = opts
        .get("servername")
        .cloned()
        .unwrap_or_else(|| hostname(&n.endpoint));
    if server_name.is_empty() {
        return Err(Error::msg(format!(
            "TLS to {} needs the servername driver option",
            n.endpoint
        )));
    }
    Ok(Some(TlsOptions {
        ca_cert: opts.get("cacert").cloned().unwrap_or_default().into(),
        cert: opts.get("cert").map(Into::into),
        key: opts.get("key").map(Into::into),
        server_name,
    }))
}

/// A remote node's buildkitd (over TLS when its options say so), retried like a pod (buildx
/// waits up to 20 s for a remote builder to answer).
pub(super) async fn client(n: &Node) -> Result<Client, Error> {
    let tls = connection(n)?;
    if let Some(t) = &tls {
        // Bad TLS files fail at once, not after every retry.
        kbx_buildkit::transport::tls_connector(t)?;
    }
    let endpoint = n.endpoint.clone();
    kbx_kube::with_retry(ATTEMPTS, FIRST_BACKOFF, |_| {
        let endpoint = endpoint.clone();
        let tls = tls.clone();
        async move {
            let client = connect(&endpoint, tls.as_ref()).await.map_err(|source| {
                Error::BuildkitUnreachable {
                    what: format!("cannot connect to BuildKit at {endpoint}"),
                    source: Box::new(source),
                }
            })?;
            answers(&client).await?;
            Ok(client)
        }
    })
    .await
}

async fn connect(endpoint: &str, tls: Option<&TlsOptions>) -> Result<Client, kbx_buildkit::Error> {
    match tls {
        Some(t) => Client::connect_tls(endpoint, t).await,
        None => Client::connect(endpoint).await,
    }
}

/// A byte stream to a remote node's buildkitd (`unix://` or `tcp://`, without TLS).
pub(super) async fn raw_stream(n: &Node) -> Result<Box<dyn super::Duplex>, Error> {
    if connection(n)?.is_some() {
        return Err(Error::msg(format!(
            "dial-stdio to {} is not supported: the node uses TLS",
            n.endpoint
        )));
    }
    let unreachable = |source: std::io::Error| Error::Io {
        what: format!("cannot connect to BuildKit at {}", n.endpoint),
        source,
    };
    if let Some(path) = n.endpoint.strip_prefix("unix://") {
        let s = tokio::net::UnixStream::connect(path)
            .await
            .map_err(unreachable)?;
        Ok(Box::new(s))
    } else if let Some(addr) = n.endpoint.strip_prefix("tcp://") {
        let s = tokio::net::TcpStream::connect(addr.trim_end_matches('/'))
            .await
            .map_err(unreachable)?;
        Ok(Box::new(s))
    } else {
        Err(Error::msg(format!(
            "dial-stdio to {} is not supported",
            n.endpoint
        )))
    }
}

/// The status of a remote node: `inactive` (with the reason) when the daemon does not answer.
pub(super) async fn status(n: &Node) -> Result<Loaded, Error> {
    let tls = connection(n)?;
    let connected = async {
        let client = connect(&n.endpoint, tls.as_ref()).await?;
        client.list_workers().await?;
        Ok::<_, kbx_buildkit::Error>(client)
    }
    .await;
    match connected {
        Ok(client) => daemon_status(&client, false).await,
        Err(e) => Ok((Status::Inactive(chain(&e)), None, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn err(r: Result<impl std::fmt::Debug, Error>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn endpoints_follow_buildx_then_kbx() {
        assert_eq!(
            validate_endpoint("tcp://127.0.0.1:1234").expect("ok"),
            "tcp://127.0.0.1:1234"
        );
        assert!(validate_endpoint("unix:///run/buildkit/buildkitd.sock").is_ok());
        assert_eq!(
            err(validate_endpoint("ftp://x")),
            "unrecognized url scheme ftp"
        );
        assert_eq!(
            err(validate_endpoint("1.2.3.4:1234")),
            "unrecognized url scheme "
        );
        assert_eq!(
            err(validate_endpoint("ssh://me@host")),
            "remote endpoint scheme \"ssh\" is not supported by kbx (supported: tcp, unix)"
        );
        assert!(
            validate_endpoint("TCP://h:1").is_err(),
            "kbx's parser wants lower case"
        );
    }

    #[test]
    fn driver_options_like_buildx() {
        assert!(validate_options(&opts(&[])).is_ok());
        assert_eq!(
            err(validate_options(&opts(&[("foo", "1")]))),
            "invalid driver option foo for remote driver"
        );
        assert_eq!(
            err(validate_options(&opts(&[("cacert", "ca.pem")]))),
            "non-absolute path 'ca.pem' provided for cacert"
        );
        assert_eq!(
            err(validate_options(&opts(&[("servername", "x")]))),
            "tls enabled, but missing keys cacert"
        );
        assert_eq!(
            err(validate_options(&opts(&[("cert", "/c.pem")]))),
            "tls enabled, but missing keys cacert, key"
        );
        assert_eq!(
            err(validate_options(&opts(&[
                ("cacert", "/ca.pem"),
                ("key", "/k.pem")
            ]))),
            "tls enabled, but missing keys cert"
        );
        assert!(validate_options(&opts(&[("cacert", "/ca.pem")])).is_ok());
    }

    #[test]
    fn tls_settings_default_the_server_name_to_the_host() {
        let node = |endpoint: &str, pairs: &[(&str, &str)]| Node {
            name: "n".into(),
            endpoint: endpoint.into(),
            platforms: None,
            driver_opts: Some(opts(pairs)),
            buildkitd_flags: None,
            files: None,
        };
        assert_eq!(connection(&node("tcp://h:1", &[])).expect("ok"), None);
        let tls = connection(&node("tcp://build.example:1234", &[("cacert", "/ca.pem")]))
            .expect("ok")
            .expect("tls");
        assert_eq!(tls.server_name, "build.example");
        assert_eq!(tls.ca_cert, std::path::PathBuf::from("/ca.pem"));
        assert_eq!(tls.cert, None);
        assert_eq!(hostname("tcp://[::1]:1234"), "::1");
        assert_eq!(
            err(connection(&node(
                "unix:///s.sock",
                &[("cacert", "/ca.pem")]
            ))),
            "TLS to unix:///s.sock needs the servername driver option"
        );
        let tls = connection(&node(
            "unix:///s.sock",
            &[
                ("cacert", "/ca.pem"),
                ("servername", "bk"),
                ("cert", "/c"),
                ("key", "/k"),
            ],
        ))
        .expect("ok")
        .expect("tls");
        assert_eq!((tls.server_name.as_str(), tls.key.is_some()), ("bk", true));
    }
}

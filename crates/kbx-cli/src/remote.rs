//! The `remote` driver's endpoint and driver options, checked as buildx checks them.
//!
//! # Deviation
//! buildx accepts `docker-container://`, `kube-pod://`, `npipe://` and `ssh://` endpoints and
//! speaks TLS when `cacert`, `cert`, `key` or `servername` is set. kbx connects to `tcp://` and
//! `unix://` endpoints without TLS only: other schemes are refused by `kbx create` with a clear
//! error, and a node with TLS options is stored (so buildx can use it) but kbx reports that it
//! cannot connect to it.

use std::collections::BTreeMap;

use kbx_store::Node;

use crate::error::Error;

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
    kbx_buildkit::Address::parse(endpoint).map_err(|e| Error::msg(e.to_string()))?;
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

/// Fails for a node kbx cannot connect to (TLS options, a scheme kbx does not speak).
pub(crate) fn check_supported(n: &Node) -> Result<(), Error> {
    let opts = n.driver_opts.clone().unwrap_or_default();
    validate_options(&opts)?;
    if TLS_KEYS.iter().any(|k| opts.contains_key(*k)) {
        return Err(Error::msg(format!(
            "cannot connect to {}: TLS (driver options cacert, cert, key, servername) is not supported by kbx's remote driver",
            n.endpoint
        )));
    }
    validate_endpoint(&n.endpoint).map(|_| ())
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
}

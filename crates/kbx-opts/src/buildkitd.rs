//! `--buildkitd-flags` and the parts of `buildkitd.toml` that decide the daemon's arguments.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::Error;

/// The entitlement buildx grants by default to Kubernetes (and docker-container) builders.
pub const DEFAULT_ENTITLEMENT_FLAG: &str = "--allow-insecure-entitlement=network.host";

/// Splits `--buildkitd-flags` into words like `google/shlex` (what buildx uses): whitespace
/// separates words, `'…'` is literal, `"…"` allows `\` escapes, `\` escapes outside quotes,
/// `#` at the start of a word starts a comment.
///
/// ```
/// let words = kbx_opts::split_shell_words("--debug --debugaddr 0.0.0.0:6666 --x 'a b'")?;
/// assert_eq!(words, ["--debug", "--debugaddr", "0.0.0.0:6666", "--x", "a b"]);
/// # Ok::<(), kbx_opts::Error>(())
/// ```
pub fn split_shell_words(input: &str) -> Result<Vec<String>, Error> {
    let fail = |reason: &str| Error::BuildkitdFlags {
        reason: reason.to_owned(),
    };
    let mut words = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        // Skip separators and comments.
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '#' {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.next() {
                    Some(n) => word.push(n),
                    None => return Err(fail("EOF found after escape character")),
                },
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => word.push(n),
                        None => return Err(fail("EOF found when expecting closing quote")),
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n) => word.push(n),
                            None => return Err(fail("EOF found after escape character")),
                        },
                        Some(n) => word.push(n),
                        None => return Err(fail("EOF found when expecting closing quote")),
                    }
                },
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

/// The daemon arguments for a Kubernetes node, as buildx computes them: the split
/// `--buildkitd-flags`, plus [`DEFAULT_ENTITLEMENT_FLAG`] unless the user passed any
/// `--allow-insecure-entitlement` flag or the config already lists `network.host` in
/// `insecure-entitlements`.
///
/// ```
/// let flags = kbx_opts::buildkitd_args(Some("--debug"), None)?;
/// assert_eq!(flags, ["--debug", "--allow-insecure-entitlement=network.host"]);
/// let flags = kbx_opts::buildkitd_args(Some("--allow-insecure-entitlement security.insecure"), None)?;
/// assert_eq!(flags, ["--allow-insecure-entitlement", "security.insecure"]);
/// # Ok::<(), kbx_opts::Error>(())
/// ```
pub fn buildkitd_args(
    flags: Option<&str>,
    config: Option<&BuildkitdConfig>,
) -> Result<Vec<String>, Error> {
    let mut args = match flags {
        Some(f) => split_shell_words(f)?,
        None => Vec::new(),
    };
    let user_entitlement = args.iter().any(|a| {
        a == "--allow-insecure-entitlement" || a.starts_with("--allow-insecure-entitlement=")
    });
    let config_has_host = config.is_some_and(|c| {
        c.insecure_entitlements()
            .iter()
            .any(|e| e == "network.host")
    });
    if !user_entitlement && !config_has_host {
        args.push(DEFAULT_ENTITLEMENT_FLAG.to_owned());
    }
    Ok(args)
}

/// A `buildkitd.toml`, type-checked like BuildKit's config loader: known keys must have the right
/// types, unknown keys are accepted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildkitdConfig {
    parsed: ConfigFile,
    text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct ConfigFile {
    root: Option<String>,
    debug: Option<bool>,
    trace: Option<bool>,
    #[serde(rename = "insecure-entitlements")]
    insecure_entitlements: Vec<String>,
    entitlements: Vec<String>,
    grpc: Option<Grpc>,
    worker: Option<Workers>,
    registry: BTreeMap<String, Registry>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Grpc {
    address: Vec<String>,
    #[serde(rename = "debugAddress")]
    debug_address: Option<String>,
    uid: Option<i64>,
    gid: Option<i64>,
    tls: Option<Tls>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Tls {
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Workers {
    oci: Option<Worker>,
    containerd: Option<Worker>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Worker {
    enabled: Option<bool>,
    platforms: Vec<String>,
    snapshotter: Option<String>,
    rootless: Option<bool>,
    #[serde(rename = "noProcessSandbox")]
    no_process_sandbox: Option<bool>,
    gc: Option<bool>,
    #[serde(rename = "max-parallelism")]
    max_parallelism: Option<i64>,
    labels: BTreeMap<String, String>,
    namespace: Option<String>,
    address: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Registry {
    mirrors: Vec<String>,
    http: Option<bool>,
    insecure: Option<bool>,
    ca: Vec<String>,
    keypair: Vec<KeyPair>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
struct KeyPair {
    key: String,
    cert: String,
}

/// Files a registry section of the config refers to (CA certificates and client key pairs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryFiles {
    /// The registry host as written in `[registry."<host>"]`.
    pub host: String,
    /// `ca = [...]` paths.
    pub ca: Vec<String>,
    /// `keypair = [{key, cert}]` paths, key first.
    pub keypairs: Vec<(String, String)>,
}

impl BuildkitdConfig {
    /// Parses and type-checks a config file's text.
    ///
    /// ```
    /// let c = kbx_opts::BuildkitdConfig::parse("insecure-entitlements = [\"network.host\"]")?;
    /// assert_eq!(c.insecure_entitlements(), ["network.host"]);
    /// assert!(kbx_opts::BuildkitdConfig::parse("[worker.oci]\ngc = \"maybe\"").is_err());
    /// # Ok::<(), kbx_opts::Error>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, Error> {
        let parsed: ConfigFile = toml::from_str(text).map_err(|e| Error::BuildkitdConfig {
            message: format!("failed to parse buildkitd config: {}", e.message()),
        })?;
        Ok(Self {
            parsed,
            text: text.to_owned(),
        })
    }

    /// The text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// `insecure-entitlements`.
    pub fn insecure_entitlements(&self) -> &[String] {
        &self.parsed.insecure_entitlements
    }

    /// Registries reached over plain HTTP (`[registry."<host>"]` with `http = true`), in host
    /// order. Clients that talk to the same registries (pushing a manifest list) use it too.
    ///
    /// ```
    /// let c = kbx_opts::BuildkitdConfig::parse(
    ///     "[registry.\"10.0.0.5:5000\"]\nhttp = true\n[registry.\"docker.io\"]\nmirrors = [\"m\"]",
    /// )?;
    /// assert_eq!(c.plain_http_registries(), ["10.0.0.5:5000"]);
    /// # Ok::<(), kbx_opts::Error>(())
    /// ```
    pub fn plain_http_registries(&self) -> Vec<String> {
        self.parsed
            .registry
            .iter()
            .filter(|(_, r)| r.http == Some(true))
            .map(|(host, _)| host.clone())
            .collect()
    }

    /// The registries that refer to certificate files, in host order.
    pub fn registry_files(&self) -> Vec<RegistryFiles> {
        self.parsed
            .registry
            .iter()
            .filter(|(_, r)| !r.ca.is_empty() || !r.keypair.is_empty())
            .map(|(host, r)| RegistryFiles {
                host: host.clone(),
                ca: r.ca.clone(),
                keypairs: r
                    .keypair
                    .iter()
                    .map(|k| (k.key.clone(), k.cert.clone()))
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_buildkitd_flags_cases() {
        // TestParseBuildkitdFlags, kubernetes cases.
        assert_eq!(
            buildkitd_args(None, None).unwrap(),
            [DEFAULT_ENTITLEMENT_FLAG]
        );
        assert_eq!(
            buildkitd_args(Some(""), None).unwrap(),
            [DEFAULT_ENTITLEMENT_FLAG]
        );
        assert_eq!(
            buildkitd_args(Some("--allow-insecure-entitlement=security.insecure"), None).unwrap(),
            ["--allow-insecure-entitlement=security.insecure"]
        );
        assert_eq!(
            buildkitd_args(Some("--allow-insecure-entitlement=network.host"), None).unwrap(),
            [DEFAULT_ENTITLEMENT_FLAG]
        );
        let cfg = BuildkitdConfig::parse(
            "insecure-entitlements = [\"network.host\", \"security.insecure\"]",
        )
        .unwrap();
        assert!(buildkitd_args(None, Some(&cfg)).unwrap().is_empty());
        assert_eq!(
            buildkitd_args(Some("foo'"), None).unwrap_err().to_string(),
            "failed to parse buildkit flags: EOF found when expecting closing quote"
        );
        assert!(BuildkitdConfig::parse("[worker.oci]\n  gc = \"maybe\"\n").is_err());
        let unknown = BuildkitdConfig::parse("foo = \"bar\"\n").unwrap();
        assert_eq!(
            buildkitd_args(None, Some(&unknown)).unwrap(),
            [DEFAULT_ENTITLEMENT_FLAG]
        );
    }

    #[test]
    fn shell_words() {
        let w = |s| split_shell_words(s).map_err(|e| e.to_string());
        assert_eq!(
            w("--debug --debugaddr 0.0.0.0:6666").unwrap(),
            ["--debug", "--debugaddr", "0.0.0.0:6666"]
        );
        assert_eq!(
            w(r#"a"b c"d 'e\f' g\ h"#).unwrap(),
            ["ab cd", r"e\f", "g h"]
        );
        assert_eq!(w(r#""a\"b""#).unwrap(), [r#"a"b"#]);
        assert_eq!(w("  \t\n").unwrap(), Vec::<String>::new());
        assert_eq!(w("a # comment\nb").unwrap(), ["a", "b"]);
        assert_eq!(w("a#b").unwrap(), ["a#b"]);
        assert_eq!(w("''").unwrap(), [""]);
        assert!(
            w("a\\")
                .unwrap_err()
                .contains("EOF found after escape character")
        );
        assert!(
            w("\"abc")
                .unwrap_err()
                .contains("EOF found when expecting closing quote")
        );
    }

    #[test]
    fn registry_files() {
        let cfg = BuildkitdConfig::parse(
            "[registry.\"myregistry.io\"]\nca = [\"/etc/certs/ca.pem\"]\n[[registry.\"myregistry.io\".keypair]]\nkey = \"/k.pem\"\ncert = \"/c.pem\"\n[registry.\"docker.io\"]\nmirrors = [\"m\"]\n",
        )
        .unwrap();
        assert_eq!(
            cfg.registry_files(),
            [RegistryFiles {
                host: "myregistry.io".into(),
                ca: vec!["/etc/certs/ca.pem".into()],
                keypairs: vec![("/k.pem".into(), "/c.pem".into())],
            }]
        );
    }
}

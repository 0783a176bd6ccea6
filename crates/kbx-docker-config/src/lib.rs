//! Registry credentials as the Docker CLI keeps them: the `config.json` file (inline `auths`,
//! `credHelpers`, `credsStore`), credential helpers, and Docker Hub's three names.
//!
//! ```
//! use kbx_docker_config::{Credential, DockerConfig, registry_host, server_address};
//!
//! // Docker's normalisation: no registry in the name means Docker Hub, whose credentials are
//! // stored under its v1 index URL.
//! let host = registry_host("busybox:1");
//! assert_eq!(host, "docker.io");
//! assert_eq!(server_address(host), "https://index.docker.io/v1/");
//! assert_eq!(server_address("localhost:5000"), "localhost:5000");
//!
//! // A missing config.json means no credentials at all.
//! let config = DockerConfig::from_file(std::path::Path::new("/nonexistent/config.json"))?;
//! assert_eq!(config, DockerConfig::default());
//!
//! // Identity tokens are stored with the user name `<token>` (or none).
//! assert!(Credential::new("<token>", "refresh").is_identity_token());
//! # Ok::<(), kbx_docker_config::Error>(())
//! ```
//!
//! Looking a credential up may run a helper, so it is async:
//!
//! ```no_run
//! # async fn demo() -> Result<(), kbx_docker_config::Error> {
//! let config = kbx_docker_config::DockerConfig::load()?;
//! let cred = config.get("registry-1.docker.io").await?;
//! println!("logged in as {:?}", cred.username);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use tokio::io::AsyncWriteExt as _;

/// The registry Docker Hub references name (`docker.io`).
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// The server address Docker Hub's credentials are stored and sent under.
pub const DOCKER_HUB_INDEX: &str = "https://index.docker.io/v1/";

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file exists but cannot be read.
    #[error("read {}", .path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not JSON.
    #[error("parse {}", .path.display())]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A credential helper could not be run, or answered something other than JSON.
    #[error("run credential helper {}", .program.display())]
    Helper {
        /// The helper program (`docker-credential-<name>`).
        program: PathBuf,
        /// The IO error (`InvalidData` for an answer that is not JSON).
        #[source]
        source: std::io::Error,
    },
}

/// The registry host of an image name, as Docker normalises it: the first path component when
/// it has a `.` or `:` or is `localhost`, otherwise `docker.io`.
///
/// ```
/// use kbx_docker_config::registry_host;
/// assert_eq!(registry_host("localhost:5000/app:1"), "localhost:5000");
/// assert_eq!(registry_host("library/busybox"), "docker.io");
/// assert_eq!(registry_host("busybox:1"), "docker.io");
/// ```
pub fn registry_host(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => DOCKER_HUB,
    }
}

/// The server address Docker stores and sends a registry host's credentials under: Docker
/// Hub's hosts (`docker.io`, `registry-1.docker.io`, `index.docker.io`) become
/// `https://index.docker.io/v1/`; any other host is its own address.
///
/// ```
/// use kbx_docker_config::server_address;
/// assert_eq!(server_address("registry-1.docker.io"), "https://index.docker.io/v1/");
/// assert_eq!(server_address("ghcr.io"), "ghcr.io");
/// ```
pub fn server_address(host: &str) -> &str {
    match host {
        DOCKER_HUB | DOCKER_HUB_API | "index.docker.io" => DOCKER_HUB_INDEX,
        h => h,
    }
}

/// A user name and a secret (password or identity token) for a registry. Docker stores
/// identity tokens with the user name `<token>` (or an empty one); such a credential is sent
/// to a token server as an OAuth2 refresh token instead of as a password. The secret never
/// shows in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credential {
    /// The user name (`<token>` or empty for an identity token).
    pub username: String,
    /// The password or identity token.
    pub secret: String,
}

impl Credential {
    /// A user name and secret.
    pub fn new(username: impl Into<String>, secret: impl Into<String>) -> Self {
        Credential {
            username: username.into(),
            secret: secret.into(),
        }
    }

    /// Whether this is an identity (refresh) token rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username.is_empty() || self.username == "<token>"
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Registry credentials from the Docker CLI configuration (`$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`): inline `auths` entries, `credHelpers` and `credsStore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerConfig {
    config: serde_json::Value,
    helper_dir: Option<PathBuf>,
}

impl DockerConfig {
    /// Loads the Docker CLI configuration; a missing file means no credentials.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Parse`] when the file exists but cannot be read or parsed.
    pub fn load() -> Result<Self, Error> {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        match dir {
            Some(d) => Self::from_file(&d.join("config.json")),
            None => Ok(Self::default()),
        }
    }

    /// Loads a given `config.json`; a missing file means no credentials.
    ///
    /// # Errors
    /// [`Error::Read`] or [`Error::Parse`] when the file exists but cannot be read or parsed.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(Error::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let config = serde_json::from_str(&text).map_err(|source| Error::Parse {
            path: path.to_owned(),
            source,
        })?;
        Ok(DockerConfig {
            config,
            helper_dir: None,
        })
    }

    /// Looks credential helpers (`docker-credential-<name>`) up in `dir` instead of `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dir = Some(dir.into());
        self
    }

    /// The credential for registry `host` (`registry-1.docker.io` and `docker.io` map to
    /// Docker Hub's `https://index.docker.io/v1/` entry, see [`server_address`]); anonymous
    /// (the default credential) when none is configured. A credential from an inline
    /// `identitytoken` or a helper's `<token>` user has an empty user name.
    ///
    /// # Errors
    /// [`Error::Helper`] when a credential helper cannot be run or answers garbage.
    pub async fn get(&self, host: &str) -> Result<Credential, Error> {
        let key = server_address(host);
        let helper = self
            .config
            .get("credHelpers")
            .and_then(|h| h.get(key))
            .and_then(|v| v.as_str())
            .or_else(|| self.config.get("credsStore").and_then(|v| v.as_str()));
        if let Some(helper) = helper.filter(|h| !h.is_empty()) {
            return run_helper(self.helper_dir.as_deref(), helper, key).await;
        }
        let auths = self.config.get("auths");
        let entry = auths.and_then(|a| {
            a.get(key).or_else(|| {
                // Entries are sometimes stored as URLs: https://host or https://host/v1/.
                a.as_object().and_then(|m| {
                    m.iter()
                        .find(|(k, _)| {
                            k.trim_start_matches("https://")
                                .trim_start_matches("http://")
                                .split('/')
                                .next()
                                == Some(key)
                        })
                        .map(|(_, v)| v)
                })
            })
        });
        let Some(entry) = entry else {
            return Ok(Credential::default());
        };
        if let Some(token) = entry.get("identitytoken").and_then(|v| v.as_str())
            && !token.is_empty()
        {
            return Ok(Credential::new("", token));
        }
        if let Some(auth) = entry.get("auth").and_then(|v| v.as_str()) {
            let decoded = decode_base64(auth).unwrap_or_default();
            let text = String::from_utf8_lossy(&decoded);
            if let Some((u, p)) = text.split_once(':') {
                return Ok(Credential::new(u, p));
            }
        }
        let field = |k: &str| {
            entry
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Credential::new(field("username"), field("password")))
    }
}

/// Standard base64 as the `auth` entries of `config.json` are read: `=` padding optional (and
/// ignored wherever it stands), stray low bits of the last character ignored; `None` on a
/// character outside the alphabet or a length no encoder produces.
///
/// ```
/// use kbx_docker_config::decode_base64;
/// assert_eq!(decode_base64("dXNlcjpwYXNz").as_deref(), Some(&b"user:pass"[..]));
/// assert_eq!(decode_base64("YQ").as_deref(), Some(&b"a"[..]));
/// assert_eq!(decode_base64("!!"), None);
/// ```
pub fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let lenient = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let engine = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    engine.decode(s.replace('=', "")).ok()
}

/// Asks `docker-credential-<helper>` (in `dir`, else on `PATH`) for `server`'s credential; a
/// helper that fails ("credentials not found in native keychain") means anonymous.
async fn run_helper(dir: Option<&Path>, helper: &str, server: &str) -> Result<Credential, Error> {
    let name = format!("docker-credential-{helper}");
    let program = match dir {
        Some(d) => d.join(&name),
        None => PathBuf::from(&name),
    };
    let err = |source: std::io::Error| Error::Helper {
        program: program.clone(),
        source,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(server.as_bytes()).await.map_err(err)?;
    }
    let out = child.wait_with_output().await.map_err(err)?;
    if !out.status.success() {
        return Ok(Credential::default());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let username = s("Username");
    Ok(if username == "<token>" {
        Credential::new("", s("Secret"))
    } else {
        Credential::new(username, s("Secret"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names() {
        assert_eq!(registry_host("reg.example.com/a/b"), "reg.example.com");
        assert_eq!(registry_host("localhost/a"), "localhost");
        assert_eq!(registry_host("user/app"), DOCKER_HUB);
        for hub in ["docker.io", "registry-1.docker.io", "index.docker.io"] {
            assert_eq!(server_address(hub), DOCKER_HUB_INDEX);
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Credential::new("u", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.is_identity_token());
        assert!(Credential::new("", "t").is_identity_token());
    }

    #[test]
    fn auth_entries_decode_with_or_without_padding() {
        let cfg = |auth: &str| DockerConfig {
            config: serde_json::json!({ "auths": { "r.example": { "auth": auth } } }),
            helper_dir: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for auth in ["dXNlcjpwYXNz", "YTpi", "YTpiYw==", "YTpiYw"] {
            let c = rt.block_on(cfg(auth).get("r.example")).expect("get");
            assert!(c.username == "user" || c.username == "a", "{auth}: {c:?}");
        }
        let c = rt.block_on(cfg("!!").get("r.example")).expect("get");
        assert_eq!(c, Credential::default());
    }

    #[tokio::test]
    async fn unreadable_config_names_the_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let cfg = d.path().join("config.json");
        std::fs::write(&cfg, "{not json").expect("write");
        let e = DockerConfig::from_file(&cfg).expect_err("not json");
        assert_eq!(e.to_string(), format!("parse {}", cfg.display()));
        assert!(DockerConfig::from_file(d.path()).is_err(), "a directory");
    }
}

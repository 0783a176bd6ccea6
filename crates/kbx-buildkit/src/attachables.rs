//! What else a session offers the daemon: secrets (`--secret`), SSH agent forwarding
//! (`--ssh`) and registry credentials from the Docker CLI configuration.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::Secrets;
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard_buildkit_proto::moby::filesync::v1::auth_server::Auth;
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::Ssh;
use bollard_buildkit_proto::moby::sshforward::v1::{
    BytesMessage as SshBytes, CheckAgentRequest, CheckAgentResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{Error, Result};

/// Where a secret's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource {
    /// A local file, read when the daemon asks.
    File(PathBuf),
    /// An environment variable of this process.
    Env(String),
}

/// One `--secret` for `RUN --mount=type=secret,id=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    /// The ID the Dockerfile refers to.
    pub id: String,
    /// Where the value comes from.
    pub source: SecretSource,
}

impl Secret {
    /// Parses buildx's `--secret` syntax (one CSV record, read by [`kbx_opts::SecretSpec`]):
    /// `id=ID,src=PATH` (also `source=`), `id=ID,env=VAR`, with optional `type=file|env`
    /// (`type=env` reads the variable named by `src`). With neither `src` nor `env`, the
    /// variable `ID` is read if it is set, else the file `ID`, as BuildKit's client does.
    ///
    /// ```
    /// use kbx_buildkit::{Secret, SecretSource};
    /// let s = Secret::parse("id=npm,src=/home/me/.npmrc")?;
    /// assert_eq!(s.source, SecretSource::File("/home/me/.npmrc".into()));
    /// let s = Secret::parse("id=tok,type=env,src=GH_TOKEN")?;
    /// assert_eq!(s.source, SecretSource::Env("GH_TOKEN".into()));
    /// let s = Secret::parse(r#"id=a,"src=/path/with,comma""#)?;
    /// assert_eq!(s.source, SecretSource::File("/path/with,comma".into()));
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Flag`] for a CSV error, unknown keys or types, or a missing `id`.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = kbx_opts::SecretSpec::parse(spec)?;
        let source = match spec.resolve(|id| std::env::var_os(id).is_some()) {
            kbx_opts::SecretFrom::File(p) => SecretSource::File(p.into()),
            kbx_opts::SecretFrom::Env(v) => SecretSource::Env(v),
        };
        Ok(Secret {
            id: spec.id,
            source,
        })
    }
}

/// Serves `GetSecret`; unknown IDs answer NotFound, which the daemon reports as "secret not
/// found".
pub(crate) struct SecretStore {
    pub(crate) secrets: Arc<HashMap<String, SecretSource>>,
}

#[tonic::async_trait]
impl Secrets for SecretStore {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        let Some(src) = self.secrets.get(&id) else {
            return Err(Status::not_found(format!("secret {id} not found")));
        };
        let data = match src {
            SecretSource::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| Status::not_found(format!("secret {id}: {}: {e}", p.display())))?,
            SecretSource::Env(v) => std::env::var_os(v)
                .map(|s| s.into_encoded_bytes())
                .ok_or_else(|| Status::not_found(format!("secret {id}: ${v} is not set")))?,
        };
        Ok(Response::new(GetSecretResponse { data }))
    }
}

/// What an `--ssh` entry forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SshSource {
    /// A running agent's unix socket.
    Socket(PathBuf),
    /// Private key files, loaded into an agent inside this process when the build starts
    /// (passphrase-protected ones then fail; see [`SshAgent::load_keys`]).
    Keys(Vec<PathBuf>),
    /// Private key files already loaded by [`SshAgent::load_keys`].
    Loaded(SshKeys),
}

/// Private keys read from files, ready to be served by the in-process agent.
#[derive(Clone)]
pub struct SshKeys {
    paths: Vec<PathBuf>,
    keys: Arc<Vec<crate::sshkeys::Key>>,
}

impl SshKeys {
    /// The files the keys were read from.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

impl std::fmt::Debug for SshKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshKeys")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// Equal when read from the same files and holding the same public keys.
impl PartialEq for SshKeys {
    fn eq(&self, other: &Self) -> bool {
        self.paths == other.paths
            && self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .zip(other.keys.iter())
                .all(|(a, b)| a.blob == b.blob)
    }
}

impl Eq for SshKeys {}

/// One `--ssh` entry: `default` (from `SSH_AUTH_SOCK`), `ID=SOCKET` or `ID=KEY[,KEY…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAgent {
    /// The ID `RUN --mount=type=ssh,id=…` refers to (`default` when omitted there).
    pub id: String,
    /// The agent socket or key files.
    pub source: SshSource,
}

impl SshAgent {
    /// Parses buildx's `--ssh` syntax: `default` or `ID` (both take `SSH_AUTH_SOCK`),
    /// `ID=PATH[,PATH…]`. A single path that is a unix socket is an agent; anything else is a
    /// list of private key files, loaded into an in-process agent when the build starts.
    ///
    /// ```
    /// use kbx_buildkit::{SshAgent, SshSource};
    /// let a = SshAgent::parse("git=/home/me/.ssh/id_ed25519,/home/me/.ssh/id_rsa")?;
    /// assert_eq!(a.id, "git");
    /// assert_eq!(a.source, SshSource::Keys(vec![
    ///     "/home/me/.ssh/id_ed25519".into(), "/home/me/.ssh/id_rsa".into()
    /// ]));
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    ///
    /// Key files are read when the build starts, or earlier with [`SshAgent::load_keys`]
    /// (which is how passphrases are supplied).
    ///
    /// # Deviation
    /// A single path that does not exist is taken as a socket (the error comes when the daemon
    /// asks for it); buildx fails at once. See [`SshAgent::load_keys`] for key formats.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] when no path is given and `SSH_AUTH_SOCK` is unset.
    pub fn parse(spec: &str) -> Result<Self> {
        let kbx_opts::SshSpec { id, paths } = kbx_opts::SshSpec::parse(spec);
        let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
        let source = match paths.as_slice() {
            [] => SshSource::Socket(
                std::env::var_os("SSH_AUTH_SOCK")
                    .map(PathBuf::from)
                    .ok_or_else(|| {
                        Error::InvalidOptions(format!(
                            "--ssh {spec:?}: SSH_AUTH_SOCK is not set and no socket was given"
                        ))
                    })?,
            ),
            [one] if crate::sshkeys::is_socket(one) || !one.exists() => {
                SshSource::Socket(one.clone())
            }
            _ => SshSource::Keys(paths),
        };
        Ok(SshAgent { id, source })
    }

    /// Reads the key files of an [`SshSource::Keys`] entry now, turning it into
    /// [`SshSource::Loaded`]; other entries are left alone. `passphrase(path)` is called for
    /// each passphrase-protected key and may prompt the user (the library never reads the
    /// terminal itself).
    ///
    /// Formats are those Go's `x/crypto/ssh` reads for buildx: OpenSSH
    /// (`BEGIN OPENSSH PRIVATE KEY`, plain or passphrase-protected with the bcrypt KDF and
    /// AES-CTR, AES-CBC or `aes256-gcm@openssh.com`), PEM PKCS#1 (`RSA PRIVATE KEY`), SEC1
    /// (`EC PRIVATE KEY`) and PKCS#8 (`PRIVATE KEY`), plain or with legacy PEM encryption
    /// (`Proc-Type: 4,ENCRYPTED`, AES-CBC).
    ///
    /// ```
    /// use kbx_buildkit::{SshAgent, SshSource};
    /// let dir = tempfile::tempdir()?;
    /// let key = dir.path().join("id");
    /// std::fs::write(&key, "not a key")?;
    /// let mut a = SshAgent::parse(&format!("git={}", key.display()))?;
    /// let err = a.load_keys(|_| Ok(String::new())).unwrap_err();
    /// assert!(err.to_string().contains("not a private key file"), "{err}");
    /// assert!(matches!(a.source, SshSource::Keys(_)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Deviation
    /// Key types are Ed25519, ECDSA P-256/P-384 and RSA (signing with SHA-2 only); buildx also
    /// takes ECDSA P-521 and DSA keys, and DES-encrypted PEM files. Encrypted OpenSSH keys may
    /// use more ciphers here than in buildx (which takes `aes256-ctr` and `aes256-cbc`).
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] naming the file and what is wrong with it (not a key,
    /// malformed, unsupported type or curve, wrong passphrase), [`Error::Io`] when a file cannot
    /// be read, and [`Error::SshPassphrase`] when `passphrase` fails.
    pub fn load_keys<F>(&mut self, mut passphrase: F) -> Result<()>
    where
        F: FnMut(&Path) -> std::io::Result<String>,
    {
        if let SshSource::Keys(paths) = &self.source {
            let keys = crate::sshkeys::load(paths, &mut passphrase)?;
            self.source = SshSource::Loaded(SshKeys {
                paths: paths.clone(),
                keys: Arc::new(keys),
            });
        }
        Ok(())
    }
}

/// Where a forwarded agent stream goes.
#[derive(Debug, Clone)]
pub(crate) enum AgentTarget {
    /// A local agent socket.
    Socket(PathBuf),
    /// Keys served by [`crate::sshkeys::serve`].
    Keys(Arc<Vec<crate::sshkeys::Key>>),
}

impl AgentTarget {
    /// Loads key files; sockets are only opened when the daemon asks.
    pub(crate) fn from_source(src: &SshSource) -> Result<Self> {
        Ok(match src {
            SshSource::Socket(p) => AgentTarget::Socket(p.clone()),
            SshSource::Keys(paths) => {
                AgentTarget::Keys(Arc::new(crate::sshkeys::load(paths, &mut |_| {
                    Err(std::io::Error::other(
                        "no passphrase was supplied (SshAgent::load_keys takes one)",
                    ))
                })?))
            }
            SshSource::Loaded(k) => AgentTarget::Keys(k.keys.clone()),
        })
    }
}

/// Forwards `ForwardAgent` streams to local agent sockets or the in-process key agent.
pub(crate) struct SshForwarder {
    pub(crate) agents: Arc<HashMap<String, AgentTarget>>,
}

#[tonic::async_trait]
impl Ssh for SshForwarder {
    async fn check_agent(
        &self,
        request: Request<CheckAgentRequest>,
    ) -> Result<Response<CheckAgentResponse>, Status> {
        let id = agent_id(&request.get_ref().id);
        if self.agents.contains_key(&id) {
            Ok(Response::new(CheckAgentResponse {}))
        } else {
            Err(Status::not_found(format!("unset ssh forward key {id}")))
        }
    }

    type ForwardAgentStream = ReceiverStream<Result<SshBytes, Status>>;

    async fn forward_agent(
        &self,
        request: Request<Streaming<SshBytes>>,
    ) -> Result<Response<Self::ForwardAgentStream>, Status> {
        let id = agent_id(
            request
                .metadata()
                .get("buildkit.ssh.id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        let Some(target) = self.agents.get(&id).cloned() else {
            return Err(Status::not_found(format!("unset ssh forward key {id}")));
        };
        let conn: Box<dyn AgentIo> = match target {
            AgentTarget::Socket(sock) => {
                Box::new(tokio::net::UnixStream::connect(&sock).await.map_err(|e| {
                    Status::unavailable(format!("ssh agent {}: {e}", sock.display()))
                })?)
            }
            AgentTarget::Keys(keys) => {
                let (ours, theirs) = tokio::io::duplex(64 * 1024);
                tokio::spawn(async move {
                    let _ = crate::sshkeys::serve(&keys, theirs).await;
                });
                Box::new(ours)
            }
        };
        let (mut rd, mut wr) = tokio::io::split(conn);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if wr.write_all(&m.data).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let msg = SshBytes {
                            data: buf[..n].to_vec(),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A byte stream to an agent.
trait AgentIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> AgentIo for T {}

fn agent_id(id: &str) -> String {
    if id.is_empty() {
        "default".to_owned()
    } else {
        id.to_owned()
    }
}

pub use kbx_docker_config::Credential;

/// Registry credentials from the Docker CLI configuration (`$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`): inline `auths` entries, `credHelpers` and `credsStore`; a
/// [`kbx_docker_config::DockerConfig`] whose errors are this crate's [`Error::Io`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerCredentials(kbx_docker_config::DockerConfig);

impl DockerCredentials {
    /// Loads the Docker CLI configuration; a missing file means no credentials.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read or parsed.
    pub fn load() -> Result<Self> {
        kbx_docker_config::DockerConfig::load()
            .map(Self)
            .map_err(config_error)
    }

    /// Loads a given `config.json`; a missing file means no credentials.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read or parsed.
    pub fn from_file(path: &Path) -> Result<Self> {
        kbx_docker_config::DockerConfig::from_file(path)
            .map(Self)
            .map_err(config_error)
    }

    /// Looks credential helpers (`docker-credential-<name>`) up in `dir` instead of `PATH`.
    pub fn with_helper_dir(self, dir: impl Into<PathBuf>) -> Self {
        Self(self.0.with_helper_dir(dir))
    }

    /// The credential for registry `host` (`registry-1.docker.io` and `docker.io` map to
    /// Docker Hub's `https://index.docker.io/v1/` entry); anonymous when none is configured.
    ///
    /// # Errors
    /// [`Error::Io`] when a credential helper cannot be run or answers garbage.
    pub async fn get(&self, host: &str) -> Result<Credential> {
        self.0.get(host).await.map_err(config_error)
    }
}

/// The error a Docker CLI configuration gives, as this crate has always reported it.
fn config_error(e: kbx_docker_config::Error) -> Error {
    use kbx_docker_config::Error as E;
    match e {
        E::Read { path, source } => Error::io("read", path, source),
        E::Parse { path, source } => Error::io(
            "parse",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, source),
        ),
        E::Helper { program, source } => Error::io("run credential helper", program, source),
    }
}

/// Standard base64 (padding optional); `None` on invalid input.
pub(crate) use kbx_docker_config::decode_base64 as base64_decode;

/// Answers `Credentials` from [`DockerCredentials`]; the token methods are left unimplemented,
/// which the daemon takes as "fetch tokens yourself".
pub(crate) struct AuthProvider {
    pub(crate) creds: Arc<DockerCredentials>,
}

#[tonic::async_trait]
impl Auth for AuthProvider {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let c = self
            .creds
            .get(&host)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(CredentialsResponse {
            username: c.username,
            secret: c.secret,
        }))
    }

    async fn fetch_token(
        &self,
        _request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented("fetch token is not served"))
    }

    async fn get_token_authority(
        &self,
        _request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("token authority is not served"))
    }

    async fn verify_token_authority(
        &self,
        _request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("token authority is not served"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_specs() {
        assert_eq!(
            Secret::parse("id=a,src=/x/y").expect("ok"),
            Secret {
                id: "a".into(),
                source: SecretSource::File("/x/y".into())
            }
        );
        // As buildx: an ID is required; with neither src nor env, the variable ID if set,
        // else the file ID; env wins over src.
        assert_eq!(
            Secret::parse("src=/x/token").unwrap_err().to_string(),
            r#"invalid build options: --secret "src=/x/token": secret missing ID"#
        );
        assert_eq!(
            Secret::parse("id=a,env=HOME").expect("ok").source,
            SecretSource::Env("HOME".into())
        );
        assert_eq!(
            Secret::parse("id=PATH").expect("ok").source,
            SecretSource::Env("PATH".into())
        );
        assert_eq!(
            Secret::parse("id=kbx-no-such-variable").expect("ok").source,
            SecretSource::File("kbx-no-such-variable".into())
        );
        assert_eq!(
            Secret::parse("id=a,src=x,env=y").expect("ok").source,
            SecretSource::Env("y".into())
        );
        assert!(Secret::parse("id=a,type=s3,src=x").is_err());
        assert!(Secret::parse("id=a,bogus=1").is_err());
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").expect("ok"), b"user:pass");
        assert_eq!(base64_decode("YQ==").expect("ok"), b"a");
        assert!(base64_decode("!!").is_none());
    }

    #[tokio::test]
    async fn credentials_from_config_and_helper() {
        let d = tempfile::tempdir().expect("tempdir");
        // A credential helper script on PATH for one host.
        let bin = d.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let helper = bin.join("docker-credential-kbxtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread host\necho \"{\\\"ServerURL\\\":\\\"$host\\\",\\\"Username\\\":\\\"helper-user\\\",\\\"Secret\\\":\\\"s3cret-for-$host\\\"}\"\n",
        )
        .expect("write helper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let cfg = d.path().join("config.json");
        std::fs::write(
            &cfg,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
                "tok.example":{"identitytoken":"idtok"},
                "https://url.example/v1/":{"auth":"YTpi"}},
               "credHelpers":{"helped.example":"kbxtest"}}"#,
        )
        .expect("write config");
        let creds = DockerCredentials::from_file(&cfg).expect("load");
        let hub = creds.get("registry-1.docker.io").await.expect("hub");
        assert_eq!(
            (hub.username.as_str(), hub.secret.as_str()),
            ("user", "pass")
        );
        let tok = creds.get("tok.example").await.expect("token");
        assert_eq!((tok.username.as_str(), tok.secret.as_str()), ("", "idtok"));
        let url = creds.get("url.example").await.expect("url form");
        assert_eq!((url.username.as_str(), url.secret.as_str()), ("a", "b"));
        assert_eq!(
            creds.get("unknown.example").await.expect("anon"),
            Credential::default()
        );
        let helped = creds
            .with_helper_dir(&bin)
            .get("helped.example")
            .await
            .expect("helper");
        assert_eq!(helped.username, "helper-user");
        assert_eq!(helped.secret, "s3cret-for-helped.example");
        assert!(DockerCredentials::from_file(&d.path().join("missing.json")).is_ok());
    }
}

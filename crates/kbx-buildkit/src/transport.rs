//! Byte streams to a BuildKit daemon, each turned into one tonic [`Channel`].
//!
//! Every transport is "something that yields an `AsyncRead + AsyncWrite`": a unix or TCP socket
//! to a standalone buildkitd, the Docker Engine's `/grpc` endpoint after an `Upgrade: h2c`
//! hijack, or the stdin/stdout of a spawned process (what `buildctl dial-stdio` gives; the
//! Kubernetes driver plugs a pod exec stream into the same seam via [`connect_with`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{Error, Result};

/// Where the daemon listens, parsed from an address string.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// `unix:///run/buildkit/buildkitd.sock`: a standalone buildkitd.
    Unix(String),
    /// `tcp://host:port`: a standalone buildkitd without TLS.
    Tcp(String),
    /// `docker-unix:///var/run/docker.sock`: the Docker Engine's embedded BuildKit.
    DockerUnix(String),
    /// `docker-tcp://host:port`: the Docker Engine over TCP without TLS.
    DockerTcp(String),
}

impl Address {
    /// Parses `unix://PATH`, `tcp://HOST:PORT`, `docker-unix://PATH`, `docker-tcp://HOST:PORT`,
    /// or `docker`, which means the Docker Engine named by `DOCKER_HOST` (default
    /// `unix:///var/run/docker.sock`).
    ///
    /// ```
    /// use kbx_buildkit::Address;
    /// assert_eq!(
    ///     Address::parse("unix:///run/buildkit/buildkitd.sock")?,
    ///     Address::Unix("/run/buildkit/buildkitd.sock".into())
    /// );
    /// assert_eq!(Address::parse("tcp://127.0.0.1:1234")?, Address::Tcp("127.0.0.1:1234".into()));
    /// assert!(Address::parse("ftp://x").is_err());
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for an unknown scheme or an empty path/host.
    pub fn parse(addr: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidAddress {
            addr: addr.to_owned(),
            reason: reason.to_owned(),
        };
        if addr == "docker" {
            let host = std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
            return Self::parse_docker_host(&host).map_err(|e| match e {
                Error::InvalidAddress { reason, .. } => Error::InvalidAddress {
                    addr: format!("DOCKER_HOST={host}"),
                    reason,
                },
                other => other,
            });
        }
        let (scheme, rest) = addr
            .split_once("://")
            .ok_or_else(|| bad("expected SCHEME://…"))?;
        if rest.is_empty() {
            return Err(bad("empty path or host"));
        }
        match scheme {
            "unix" => Ok(Address::Unix(rest.to_owned())),
            "tcp" => Ok(Address::Tcp(rest.trim_end_matches('/').to_owned())),
            "docker-unix" => Ok(Address::DockerUnix(rest.to_owned())),
            "docker-tcp" => Ok(Address::DockerTcp(rest.trim_end_matches('/').to_owned())),
            _ => Err(bad(
                "unknown scheme (expected unix, tcp, docker-unix, docker-tcp or docker)",
            )),
        }
    }

    /// Parses a `DOCKER_HOST` value (`unix://…` or `tcp://…`) as a Docker Engine address.
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for other schemes (`ssh://`, `npipe://`, …).
    pub fn parse_docker_host(host: &str) -> Result<Self> {
        match Self::parse(host)? {
            Address::Unix(p) => Ok(Address::DockerUnix(p)),
            Address::Tcp(h) => Ok(Address::DockerTcp(h)),
            other => Ok(other),
        }
    }

    /// Whether this is a Docker Engine (as opposed to a standalone buildkitd).
    pub fn is_docker(&self) -> bool {
        matches!(self, Address::DockerUnix(_) | Address::DockerTcp(_))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix://{p}"),
            Address::Tcp(h) => write!(f, "tcp://{h}"),
            Address::DockerUnix(p) => write!(f, "docker-unix://{p}"),
            Address::DockerTcp(h) => write!(f, "docker-tcp://{h}"),
        }
    }
}

/// An `AsyncRead + AsyncWrite` byte stream that can carry HTTP/2.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// Opens a fresh byte stream to `addr`, already past the Docker `/grpc` upgrade when needed.
///
/// # Errors
/// [`Error::Connect`] when the socket cannot be opened; [`Error::Upgrade`] when Docker refuses.
pub async fn dial(addr: &Address) -> Result<BoxIo> {
    let connect_err = |source| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    Ok(match addr {
        Address::Unix(p) => Box::new(UnixStream::connect(p).await.map_err(connect_err)?),
        Address::Tcp(h) => Box::new(TcpStream::connect(h).await.map_err(connect_err)?),
        Address::DockerUnix(p) => {
            let s = UnixStream::connect(p).await.map_err(connect_err)?;
            Box::new(docker_upgrade(s, "/grpc", &[]).await?)
        }
        Address::DockerTcp(h) => {
            let s = TcpStream::connect(h).await.map_err(connect_err)?;
            Box::new(docker_upgrade(s, "/grpc", &[]).await?)
        }
    })
}

/// Sends `POST <path>` with `Connection: Upgrade` / `Upgrade: h2c` (plus `headers`) and waits
/// for `101 Switching Protocols`, reading nothing past the response head (the daemon discards
/// its buffered reader, so nothing may be pipelined either).
///
/// # Errors
/// [`Error::Upgrade`] when the answer is not 101; [`Error::Connect`] on IO failure.
pub async fn docker_upgrade<S>(mut io: S, path: &str, headers: &[(String, String)]) -> Result<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io_err = |source| Error::Connect {
        addr: format!("docker {path}"),
        source,
    };
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes()).await.map_err(io_err)?;
    io.flush().await.map_err(io_err)?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 {
            return Err(Error::Upgrade {
                path: path.to_owned(),
                status: "response head too large".to_owned(),
            });
        }
        let n = io.read(&mut byte).await.map_err(io_err)?;
        if n == 0 {
            return Err(Error::Upgrade {
                path: path.to_owned(),
                status: format!(
                    "connection closed after {:?}",
                    String::from_utf8_lossy(&head)
                ),
            });
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.lines().next().unwrap_or_default().to_owned();
    let code = status.split_whitespace().nth(1);
    if code != Some("101") {
        return Err(Error::Upgrade {
            path: path.to_owned(),
            status,
        });
    }
    Ok(io)
}

/// Builds a tonic channel whose connections come from `dial` (called again on reconnect).
/// `name` is only used in error messages.
///
/// ```no_run
/// # async fn demo() -> Result<(), kbx_buildkit::Error> {
/// use kbx_buildkit::transport::connect_with;
/// // Any byte stream works, e.g. a unix socket to buildkitd:
/// let channel = connect_with("my-buildkitd", || async {
///     tokio::net::UnixStream::connect("/run/buildkit/buildkitd.sock").await
/// })
/// .await?;
/// # let _ = channel; Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Transport`] when the first connection or the HTTP/2 handshake fails.
pub async fn connect_with<F, Fut, S>(name: &str, dial: F) -> Result<Channel>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let connector = tower::service_fn(move |_: Uri| {
        let dial = dial.clone();
        async move { dial().await.map(TokioIo::new) }
    });
    endpoint()
        .connect_with_connector(connector)
        .await
        .map_err(|source| Error::Transport {
            addr: name.to_owned(),
            source,
        })
}

/// The endpoint settings shared by every transport: no keepalive pings (daemons answer
/// frequent pings with GOAWAY), larger HTTP/2 windows for big transfers.
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://buildkitd")
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(4 << 20))
        .tcp_nodelay(true)
}

/// A tonic channel to `addr`.
///
/// # Errors
/// See [`dial`] and [`connect_with`].
pub async fn connect(addr: &Address) -> Result<Channel> {
    let a = addr.clone();
    connect_with(&addr.to_string(), move || {
        let a = a.clone();
        async move { dial(&a).await.map_err(io::Error::other) }
    })
    .await
}

/// TLS to a standalone buildkitd, as `buildctl --tlscacert --tlscert --tlskey
/// --tlsservername` (and buildx's remote driver) speak it: the daemon's certificate must chain to
/// `ca_cert` and name `server_name`; `cert` and `key` are the client's, for daemons that ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA(s) that sign the daemon's certificate.
    pub ca_cert: std::path::PathBuf,
    /// PEM client certificate chain (with `key`).
    pub cert: Option<std::path::PathBuf>,
    /// PEM client private key (with `cert`).
    pub key: Option<std::path::PathBuf>,
    /// The name the daemon's certificate must carry (a DNS name or an IP address).
    pub server_name: String,
}

fn tls_err(what: String) -> impl FnOnce(rustls_pki_types::pem::Error) -> Error {
    move |e| Error::Tls {
        what,
        source: Box::new(e),
    }
}

/// A TLS connector for `opts`: ring crypto, TLS 1.2/1.3, ALPN `h2` (gRPC servers require it).
///
/// # Errors
/// [`Error::Tls`] when a file cannot be read or parsed, or the name is invalid.
pub fn tls_connector(
    opts: &TlsOptions,
) -> Result<(
    tokio_rustls::TlsConnector,
    rustls_pki_types::ServerName<'static>,
)> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;

    let mut roots = rustls::RootCertStore::empty();
    let ca = &opts.ca_cert;
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(tls_err(format!("read CA certificate {}", ca.display())))?
    {
        let cert = cert.map_err(tls_err(format!("parse CA certificate {}", ca.display())))?;
        roots.add(cert).map_err(|e| Error::Tls {
            what: format!("use CA certificate {}", ca.display()),
            source: Box::new(e),
        })?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls {
            what: "choose protocol versions".to_owned(),
            source: Box::new(e),
        })?
        .with_root_certificates(roots);
    let mut config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(tls_err(format!("read certificate {}", cert.display())))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(tls_err(format!("parse certificate {}", cert.display())))?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(tls_err(format!("read key {}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| Error::Tls {
                    what: format!(
                        "use certificate {} with key {}",
                        cert.display(),
                        key.display()
                    ),
                    source: Box::new(e),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(opts.server_name.clone()).map_err(|e| Error::Tls {
        what: format!("server name {:?}", opts.server_name),
        source: Box::new(e),
    })?;
    Ok((
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        name,
    ))
}

/// A tonic channel to a standalone buildkitd at `addr` (`unix://` or `tcp://`) over TLS.
///
/// # Errors
/// [`Error::Tls`] for bad TLS material, [`Error::InvalidAddress`] for a Docker address, and
/// see [`connect_with`]; a failed handshake is a connect error.
pub async fn connect_tls(addr: &Address, opts: &TlsOptions) -> Result<Channel> {
    if addr.is_docker() {
        return Err(Error::InvalidAddress {
            addr: addr.to_string(),
            reason: "TLS is for a standalone buildkitd (unix:// or tcp://)".to_owned(),
        });
    }
    let (connector, name) = tls_connector(opts)?;
    let a = addr.clone();
    connect_with(&addr.to_string(), move || {
        let a = a.clone();
        let connector = connector.clone();
        let name = name.clone();
        async move {
            let raw = dial(&a).await.map_err(io::Error::other)?;
            connector.connect(name, raw).await
        }
    })
    .await
}

/// The stdin/stdout of a spawned process as one byte stream (`buildctl dial-stdio`,
/// `kubectl exec -i … buildctl dial-stdio`, `docker exec -i …`). The process is killed when the
/// stream is dropped; its stderr goes to ours.
#[derive(Debug)]
pub struct ProcessIo {
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl ProcessIo {
    /// Spawns `program args…` with piped stdin/stdout.
    ///
    /// # Errors
    /// The spawn error.
    pub fn spawn(program: &str, args: &[String]) -> io::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("child has no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("child has no stdout"))?;
        Ok(ProcessIo {
            _child: child,
            stdin,
            stdout,
        })
    }
}

impl AsyncRead for ProcessIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProcessIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stdin).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stdin).poll_shutdown(cx)
    }
}

/// A tonic channel over a spawned process' stdin/stdout, one process per connection.
///
/// # Errors
/// See [`connect_with`].
pub async fn connect_process(program: &str, args: &[String]) -> Result<Channel> {
    let program = program.to_owned();
    let args = args.to_vec();
    let name = format!("process {program}");
    connect_with(&name, move || {
        let r = ProcessIo::spawn(&program, &args);
        async move { r }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("docker-unix:///var/run/docker.sock").expect("ok"),
            Address::DockerUnix("/var/run/docker.sock".into())
        );
        assert!(Address::parse("docker-unix:///x").expect("ok").is_docker());
        assert!(!Address::parse("unix:///x").expect("ok").is_docker());
        assert!(Address::parse("unix://").is_err());
        assert!(Address::parse("/just/a/path").is_err());
        assert_eq!(
            Address::parse_docker_host("tcp://127.0.0.1:2375").expect("ok"),
            Address::DockerTcp("127.0.0.1:2375".into())
        );
        assert!(Address::parse_docker_host("ssh://me@host").is_err());
        let a = Address::parse("docker-tcp://127.0.0.1:2375").expect("ok");
        assert_eq!(Address::parse(&a.to_string()).expect("ok"), a);
    }

    #[tokio::test]
    async fn tls_material_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("kbx-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let opts = |ca: &std::path::Path| TlsOptions {
            ca_cert: ca.to_path_buf(),
            cert: None,
            key: None,
            server_name: "buildkitd".into(),
        };
        let missing = dir.join("missing.pem");
        let Err(err) = tls_connector(&opts(&missing)) else {
            panic!("a missing CA file is an error")
        };
        assert!(
            err.to_string()
                .starts_with(&format!("TLS: read CA certificate {}", missing.display())),
            "{err}"
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        // No certificate in the file: an empty root store, refused when connecting, not here.
        let mut bad = opts(&empty);
        bad.server_name = "not a name!".into();
        let Err(err) = tls_connector(&bad) else {
            panic!("an invalid server name is an error")
        };
        assert_eq!(err.to_string(), "TLS: server name \"not a name!\"");
        let docker = Address::DockerUnix("/x.sock".into());
        let err = connect_tls(&docker, &opts(&empty))
            .await
            .expect_err("docker");
        assert!(err.to_string().contains("standalone buildkitd"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn upgrade_checks_status_and_reads_only_the_head() {
        let (mut server, client) = tokio::io::duplex(4096);
        let srv = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = server.read(&mut buf).await.expect("read");
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            server
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\nPRI-bytes")
                .await
                .expect("write");
            req
        });
        let mut io = docker_upgrade(client, "/grpc", &[("X-A".into(), "1".into())])
            .await
            .expect("upgrade");
        let req = srv.await.expect("join");
        assert!(req.starts_with("POST /grpc HTTP/1.1\r\n"));
        assert!(req.contains("Upgrade: h2c\r\n") && req.contains("X-A: 1\r\n"));
        let mut rest = [0u8; 9];
        io.read_exact(&mut rest).await.expect("rest");
        assert_eq!(&rest, b"PRI-bytes");

        let (mut server, client) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let _ = server.read(&mut buf).await;
            let _ = server
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let err = docker_upgrade(client, "/grpc", &[]).await.expect_err("404");
        assert!(err.to_string().contains("404 Not Found"), "{err}");
    }
}

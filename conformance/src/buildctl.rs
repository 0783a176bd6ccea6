//! The `buildctl` of the test builder image.
//!
//! The buildx Kubernetes driver talks to its pods through exactly two `buildctl` calls: the
//! readiness and liveness probes run `buildctl debug workers`, and every connection runs
//! `buildctl dial-stdio` through `pods/exec`. The test image runs Docker Engine's embedded
//! BuildKit instead of a standalone `buildkitd`, so this small program answers those two calls
//! against the Docker socket:
//!
//! - `dial-stdio` sends `POST /grpc` with `Upgrade: h2c`, waits for `101 Switching Protocols`,
//!   then copies stdin to the socket and the socket to stdout. The peer on the other end of
//!   stdio sees plain HTTP/2 with prior knowledge, as it would from a standalone `buildkitd`.
//! - `debug workers` makes the same upgrade, calls `moby.buildkit.v1.Control/ListWorkers`,
//!   prints one line per worker and exits 0 when BuildKit answered.
//!
//! # Deviation
//! Upstream `buildctl` defaults to `unix:///run/buildkit/buildkitd.sock` and speaks gRPC to it
//! directly; this one defaults to `unix:///var/run/docker.sock` and makes the Docker `/grpc`
//! upgrade first. Only `--addr`, `--timeout`, `dial-stdio` and `debug workers` exist.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The address used when neither `--addr` nor `BUILDKIT_HOST` is given.
pub const DEFAULT_ADDR: &str = "unix:///var/run/docker.sock";

/// What can go wrong in `buildctl`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildctlError {
    /// The command line could not be understood.
    #[error("{0}")]
    Usage(String),
    /// The address is not a `unix://` address.
    #[error("address {0:?}: expected unix://")]
    Address(String),
    /// Connecting to the daemon socket failed or timed out.
    #[error("failed to connect to {addr}")]
    Connect {
        /// The socket address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("i/o on the daemon connection")]
    Io(#[source] std::io::Error),
    /// The daemon did not switch protocols on `POST /grpc`.
    #[error("daemon refused the /grpc upgrade: {0}")]
    Upgrade(String),
    /// The HTTP/2 layer failed.
    #[error("http/2 with the daemon")]
    Http2(#[source] h2::Error),
    /// The gRPC call returned an error status or a malformed answer.
    #[error("grpc {method}: {message}")]
    Grpc {
        /// The full method path.
        method: &'static str,
        /// Status code and message, or what was malformed.
        message: String,
    },
    /// The gRPC answer could not be decoded.
    #[error("decoding the answer of {method}")]
    Decode {
        /// The full method path.
        method: &'static str,
        /// Why.
        #[source]
        source: prost::DecodeError,
    },
}

/// The subcommand to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subcommand {
    /// `dial-stdio`: bridge stdio to the BuildKit gRPC connection.
    DialStdio,
    /// `debug workers`: list the workers; success means BuildKit answers.
    DebugWorkers,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The daemon socket path (the `unix://` prefix removed).
    pub socket: String,
    /// The dial timeout.
    pub timeout: Duration,
    /// What to do.
    pub subcommand: Subcommand,
}

/// Parses `buildctl`'s arguments (without the program name). `buildkit_host` is the value of the
/// `BUILDKIT_HOST` environment variable, used when `--addr` is absent.
///
/// ```
/// use kbx_conformance::buildctl::{parse_args, Subcommand};
/// let inv = parse_args(["--addr", "unix:///tmp/d.sock", "debug", "workers"], None).unwrap();
/// assert_eq!(inv.socket, "/tmp/d.sock");
/// assert_eq!(inv.subcommand, Subcommand::DebugWorkers);
/// ```
pub fn parse_args<I, S>(args: I, buildkit_host: Option<String>) -> Result<Invocation, BuildctlError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut addr = buildkit_host.filter(|a| !a.is_empty());
    let mut timeout = Duration::from_secs(5);
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        match flag.as_str() {
            "--addr" | "--timeout" => {
                let value = match inline {
                    Some(v) => v,
                    None => it.next().ok_or_else(|| {
                        BuildctlError::Usage(format!("flag needs an argument: {flag}"))
                    })?,
                };
                if flag == "--addr" {
                    addr = Some(value);
                } else {
                    let secs: u64 = value.parse().map_err(|_| {
                        BuildctlError::Usage(format!("invalid value {value:?} for flag --timeout"))
                    })?;
                    timeout = Duration::from_secs(secs);
                }
            }
            "--debug" => {}
            _ if flag.starts_with('-') && rest.is_empty() => {
                return Err(BuildctlError::Usage(format!(
                    "flag provided but not defined: {flag}"
                )));
            }
            _ => rest.push(arg),
        }
    }
    let subcommand = match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dial-stdio"] => Subcommand::DialStdio,
        ["debug", "workers"] => Subcommand::DebugWorkers,
        [] => {
            return Err(BuildctlError::Usage(
                "no command given; try dial-stdio or debug workers".into(),
            ));
        }
        other => {
            return Err(BuildctlError::Usage(format!(
                "unknown command {:?}",
                other.join(" ")
            )));
        }
    };
    let addr = addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let socket = addr
        .strip_prefix("unix://")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| BuildctlError::Address(addr.clone()))?
        .to_owned();
    Ok(Invocation {
        socket,
        timeout,
        subcommand,
    })
}

/// Connects to a Docker socket and performs the `POST /grpc` upgrade. The returned stream
/// speaks HTTP/2 with prior knowledge to the embedded BuildKit.
pub async fn connect_grpc(
    socket: &str,
    timeout: Duration,
) -> Result<tokio::net::UnixStream, BuildctlError> {
    let connect = tokio::net::UnixStream::connect(socket);
    let mut stream = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(BuildctlError::Connect {
                addr: socket.to_owned(),
                source,
            });
        }
        Err(_) => {
            return Err(BuildctlError::Connect {
                addr: socket.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "dial timed out"),
            });
        }
    };
    match tokio::time::timeout(timeout, upgrade(&mut stream)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(BuildctlError::Upgrade(
                "no answer within the dial timeout".into(),
            ));
        }
    }
    Ok(stream)
}

/// Sends the `/grpc` upgrade request on `io` and reads the answer up to the end of its header,
/// byte by byte so that no HTTP/2 byte that follows is consumed.
pub async fn upgrade<IO>(io: &mut IO) -> Result<(), BuildctlError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(
        b"POST /grpc HTTP/1.1\r\nHost: buildkit\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
    )
    .await
    .map_err(BuildctlError::Io)?;
    io.flush().await.map_err(BuildctlError::Io)?;
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(BuildctlError::Upgrade(
                "answer header longer than 16 KiB".into(),
            ));
        }
        let n = io.read(&mut byte).await.map_err(BuildctlError::Io)?;
        if n == 0 {
            return Err(BuildctlError::Upgrade(
                "connection closed during the upgrade".into(),
            ));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let (version, code) = (parts.next(), parts.next());
    if !matches!(version, Some(v) if v.starts_with("HTTP/1.")) || code != Some("101") {
        return Err(BuildctlError::Upgrade(status_line.to_owned()));
    }
    Ok(())
}

/// A BuildKit worker as `ListWorkers` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The worker ID (`moby` for Docker's embedded BuildKit).
    pub id: String,
    /// Platforms as `os/arch[/variant]`.
    pub platforms: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListWorkersRequest {
    #[prost(string, repeated, tag = "1")]
    filter: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListWorkersResponse {
    #[prost(message, repeated, tag = "1")]
    record: Vec<WorkerRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WorkerRecord {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(map = "string, string", tag = "2")]
    labels: HashMap<String, String>,
    #[prost(message, repeated, tag = "3")]
    platforms: Vec<Platform>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Platform {
    #[prost(string, tag = "1")]
    architecture: String,
    #[prost(string, tag = "2")]
    os: String,
    #[prost(string, tag = "3")]
    variant: String,
}

const LIST_WORKERS: &str = "/moby.buildkit.v1.Control/ListWorkers";

/// Calls `Control/ListWorkers` over `io`, which must already speak HTTP/2 with prior knowledge
/// to BuildKit (an upgraded Docker socket, or the stdio of `buildctl dial-stdio`).
pub async fn list_workers<IO>(io: IO) -> Result<Vec<Worker>, BuildctlError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = h2::client::handshake(io)
        .await
        .map_err(BuildctlError::Http2)?;
    let driver = tokio::spawn(connection);
    let result = call_list_workers(client).await;
    driver.abort();
    result
}

async fn call_list_workers(
    client: h2::client::SendRequest<Bytes>,
) -> Result<Vec<Worker>, BuildctlError> {
    let mut client = client.ready().await.map_err(BuildctlError::Http2)?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://buildkit{LIST_WORKERS}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .map_err(|e| BuildctlError::Grpc {
            method: LIST_WORKERS,
            message: e.to_string(),
        })?;
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(BuildctlError::Http2)?;
    send.send_data(
        grpc_frame(&prost::Message::encode_to_vec(
            &ListWorkersRequest::default(),
        )),
        true,
    )
    .map_err(BuildctlError::Http2)?;
    let response = response.await.map_err(BuildctlError::Http2)?;
    let (parts, mut body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(BuildctlError::Grpc {
            method: LIST_WORKERS,
            message: format!("http status {}", parts.status),
        });
    }
    grpc_status(&parts.headers)?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(BuildctlError::Http2)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
    }
    if let Some(trailers) = body.trailers().await.map_err(BuildctlError::Http2)? {
        grpc_status(&trailers)?;
    } else if !parts.headers.contains_key("grpc-status") {
        return Err(BuildctlError::Grpc {
            method: LIST_WORKERS,
            message: "no grpc-status in the answer".into(),
        });
    }
    let message = grpc_unframe(buf.freeze())?;
    let decoded: ListWorkersResponse =
        prost::Message::decode(message).map_err(|source| BuildctlError::Decode {
            method: LIST_WORKERS,
            source,
        })?;
    Ok(decoded
        .record
        .into_iter()
        .map(|r| Worker {
            id: r.id,
            platforms: r
                .platforms
                .into_iter()
                .map(|p| {
                    let mut s = format!("{}/{}", p.os, p.architecture);
                    if !p.variant.is_empty() {
                        s.push('/');
                        s.push_str(&p.variant);
                    }
                    s
                })
                .collect(),
        })
        .collect())
}

fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.put_slice(message);
    frame.freeze()
}

fn grpc_unframe(mut body: Bytes) -> Result<Bytes, BuildctlError> {
    let malformed = |m: &str| BuildctlError::Grpc {
        method: LIST_WORKERS,
        message: m.to_owned(),
    };
    if body.len() < 5 {
        return Err(malformed("answer shorter than a grpc frame header"));
    }
    if body.get_u8() != 0 {
        return Err(malformed("compressed answers are not supported"));
    }
    let len = body.get_u32() as usize;
    if body.len() != len {
        return Err(malformed("grpc frame length does not match the body"));
    }
    Ok(body)
}

fn grpc_status(headers: &http::HeaderMap) -> Result<(), BuildctlError> {
    let Some(status) = headers.get("grpc-status") else {
        return Ok(());
    };
    let code = status.to_str().unwrap_or("?");
    if code == "0" {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("");
    Err(BuildctlError::Grpc {
        method: LIST_WORKERS,
        message: format!("status {code}: {message}"),
    })
}

/// Formats workers as `buildctl debug workers` prints them: a header, then one line per worker.
pub fn format_workers(workers: &[Worker]) -> String {
    let width = workers.iter().map(|w| w.id.len()).max().unwrap_or(0).max(2) + 2;
    let mut out = format!("{:<width$}PLATFORMS\n", "ID");
    for w in workers {
        out.push_str(&format!("{:<width$}{}\n", w.id, w.platforms.join(",")));
    }
    out
}

/// Copies stdin to `io` and `io` to stdout until the daemon closes its side. When stdin ends
/// first, the write side of `io` is shut down and output is still awaited.
pub async fn bridge<IO, I, O>(io: IO, mut stdin: I, mut stdout: O) -> Result<(), BuildctlError>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin,
{
    let (mut read_half, mut write_half) = tokio::io::split(io);
    let upstream = tokio::spawn(async move {
        let copied = tokio::io::copy(&mut stdin, &mut write_half).await;
        let _ = write_half.shutdown().await;
        copied
    });
    let result = tokio::io::copy(&mut read_half, &mut stdout).await;
    let _ = stdout.flush().await;
    upstream.abort();
    match result {
        Ok(_) => Ok(()),
        // The reader of our stdout went away: nobody is left to serve.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(BuildctlError::Io(e)),
    }
}

/// Runs a parsed invocation with the process's stdio. Returns what to print on stdout for
/// `debug workers` (nothing for `dial-stdio`, which streams).
pub async fn run(invocation: &Invocation) -> Result<Option<String>, BuildctlError> {
    let stream = connect_grpc(&invocation.socket, invocation.timeout).await?;
    match invocation.subcommand {
        Subcommand::DialStdio => {
            bridge(stream, tokio::io::stdin(), tokio::io::stdout()).await?;
            Ok(None)
        }
        Subcommand::DebugWorkers => {
            let workers = list_workers(stream).await?;
            Ok(Some(format_workers(&workers)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_before_the_subcommand() {
        let inv = parse_args(
            ["--addr=unix:///x.sock", "--timeout", "9", "dial-stdio"],
            None,
        )
        .unwrap();
        assert_eq!(
            inv,
            Invocation {
                socket: "/x.sock".into(),
                timeout: Duration::from_secs(9),
                subcommand: Subcommand::DialStdio
            }
        );
    }

    #[test]
    fn buildkit_host_is_the_fallback_and_addr_wins() {
        let inv = parse_args(["debug", "workers"], Some("unix:///env.sock".into())).unwrap();
        assert_eq!(inv.socket, "/env.sock");
        let inv = parse_args(
            ["--addr", "unix:///flag.sock", "debug", "workers"],
            Some("unix:///env.sock".into()),
        )
        .unwrap();
        assert_eq!(inv.socket, "/flag.sock");
        let inv = parse_args(["debug", "workers"], None).unwrap();
        assert_eq!(inv.socket, "/var/run/docker.sock");
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert!(matches!(
            parse_args(["tcp://x"; 0], None),
            Err(BuildctlError::Usage(_))
        ));
        assert!(matches!(
            parse_args(["build"], None),
            Err(BuildctlError::Usage(_))
        ));
        assert!(matches!(
            parse_args(["--nope", "dial-stdio"], None),
            Err(BuildctlError::Usage(_))
        ));
        assert!(matches!(
            parse_args(["--addr"], None),
            Err(BuildctlError::Usage(_))
        ));
        assert!(matches!(
            parse_args(["--timeout", "soon", "dial-stdio"], None),
            Err(BuildctlError::Usage(_))
        ));
        let err = parse_args(["--addr", "tcp://127.0.0.1:1234", "dial-stdio"], None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "address \"tcp://127.0.0.1:1234\": expected unix://"
        );
    }

    #[test]
    fn grpc_frames_round_trip_and_reject_bad_lengths() {
        let framed = grpc_frame(b"abc");
        assert_eq!(&framed[..], &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(&grpc_unframe(framed).unwrap()[..], b"abc");
        assert!(grpc_unframe(Bytes::from_static(&[0, 0, 0, 0, 9, 1])).is_err());
        assert!(grpc_unframe(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
    }

    #[test]
    fn formats_a_worker_table() {
        let table = format_workers(&[Worker {
            id: "moby".into(),
            platforms: vec!["linux/amd64".into(), "linux/386".into()],
        }]);
        assert_eq!(table, "ID    PLATFORMS\nmoby  linux/amd64,linux/386\n");
    }

    /// A daemon double for the transport: it checks the upgrade request, switches protocols and
    /// answers ListWorkers with a real HTTP/2 server. The real daemon is exercised by the
    /// integration tests.
    async fn fake_daemon(listener: tokio::net::UnixListener, status: &'static str) {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("POST /grpc HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("Upgrade: h2c\r\n"), "{head}");
        conn.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        )
        .await
        .unwrap();
        let mut h2 = h2::server::handshake(conn).await.unwrap();
        if let Some(Ok((request, mut respond))) = h2.accept().await {
            assert_eq!(request.uri().path(), LIST_WORKERS);
            let response = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut send = respond.send_response(response, false).unwrap();
            let body = ListWorkersResponse {
                record: vec![WorkerRecord {
                    id: "moby".into(),
                    labels: HashMap::new(),
                    platforms: vec![Platform {
                        architecture: "arm".into(),
                        os: "linux".into(),
                        variant: "v7".into(),
                    }],
                }],
            };
            send.send_data(grpc_frame(&prost::Message::encode_to_vec(&body)), false)
                .unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", status.parse().unwrap());
            trailers.insert("grpc-message", "boom".parse().unwrap());
            send.send_trailers(trailers).unwrap();
            let _ = futures::future::poll_fn(|cx| h2.poll_closed(cx)).await;
        }
    }

    #[tokio::test]
    async fn lists_workers_through_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(fake_daemon(listener, "0"));
        let stream = connect_grpc(sock.to_str().unwrap(), Duration::from_secs(5))
            .await
            .unwrap();
        let workers = list_workers(stream).await.unwrap();
        assert_eq!(
            workers,
            vec![Worker {
                id: "moby".into(),
                platforms: vec!["linux/arm/v7".into()]
            }]
        );
        server.abort();
    }

    #[tokio::test]
    async fn reports_a_grpc_error_status() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(fake_daemon(listener, "12"));
        let stream = connect_grpc(sock.to_str().unwrap(), Duration::from_secs(5))
            .await
            .unwrap();
        let err = list_workers(stream).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("grpc {LIST_WORKERS}: status 12: boom")
        );
        server.abort();
    }

    #[tokio::test]
    async fn refuses_a_daemon_that_does_not_switch() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let answer = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let _ = server.read(&mut buf).await.unwrap();
            server
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            server
        });
        let err = upgrade(&mut client).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "daemon refused the /grpc upgrade: HTTP/1.1 404 Not Found"
        );
        drop(answer.await);
    }

    #[tokio::test]
    async fn bridge_half_closes_and_waits_for_the_daemon() {
        let (ours, mut daemon) = tokio::io::duplex(1024);
        let echo = tokio::spawn(async move {
            let mut all = Vec::new();
            daemon.read_to_end(&mut all).await.unwrap();
            daemon.write_all(&all).await.unwrap();
            daemon.write_all(b"!").await.unwrap();
        });
        let mut out = Vec::new();
        bridge(ours, &b"hello"[..], &mut out).await.unwrap();
        echo.await.unwrap();
        assert_eq!(out, b"hello!");
    }
}

//! Docker Engine API calls a build needs besides BuildKit itself.
//!
//! Docker's `moby` exporter stores the image in the Engine; pushing it is the Engine's job
//! (`POST /images/{name}/push`), exactly as buildx's docker driver does after the solve. Builds
//! on other daemons load their `docker` export into the Engine (`POST /images/load`, what
//! `docker load` does), as buildx's `--load` does: see [`load_image`] and
//! [`crate::Output::DockerLoad`].
//!
//! ```no_run
//! use kbx_buildkit::{engine, Address, Credential};
//!
//! # async fn demo() -> Result<(), kbx_buildkit::Error> {
//! let docker = Address::parse("docker")?;
//! let pushed = engine::push_image(&docker, "localhost:5000/app:1", &Credential::default(), |m| {
//!     eprintln!("{}: {}", m.id.as_deref().unwrap_or("-"), m.status);
//! })
//! .await?;
//! println!("{:?}", pushed.digest);
//! # Ok(()) }
//! ```

use std::time::Duration;

use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::transport::{Address, BoxIo};
use crate::{Credential, Error, Result};

pub use kbx_docker_config::registry_host;

/// One message of the Engine's push stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushMessage {
    /// The layer (short digest) the message is about, if any.
    pub id: Option<String>,
    /// The status text (`Preparing`, `Pushing`, `Pushed`, `Layer already exists`, …).
    pub status: String,
    /// Bytes done and total, while a layer uploads.
    pub progress: Option<(u64, u64)>,
}

/// What a finished push reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    /// The manifest digest the registry stored (`sha256:…`), from the Engine's last message.
    pub digest: Option<String>,
    /// The manifest size in bytes.
    pub size: Option<u64>,
}

/// Splits `name` into the repository and the tag the Engine's push call takes: `a/b:1` →
/// (`a/b`, `1`); no tag means `latest`. A digest reference cannot be pushed.
///
/// ```
/// use kbx_buildkit::engine::split_tag;
/// assert_eq!(split_tag("localhost:5000/app:1"), Some(("localhost:5000/app", "1")));
/// assert_eq!(split_tag("localhost:5000/app"), Some(("localhost:5000/app", "latest")));
/// assert_eq!(split_tag("app@sha256:00"), None);
/// ```
pub fn split_tag(name: &str) -> Option<(&str, &str)> {
    if name.contains('@') || name.is_empty() {
        return None;
    }
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => {
            let (repo, tag) = (&name[..slash + i], &name[slash + i + 1..]);
            (!repo.is_empty() && !tag.is_empty()).then_some((repo, tag))
        }
        None => Some((name, "latest")),
    }
}

/// The `X-Registry-Auth` value: URL-safe base64 of the credential as JSON (`{}` when
/// anonymous). Docker Hub's entry is named `https://index.docker.io/v1/`.
pub fn registry_auth_header(host: &str, cred: &Credential) -> String {
    let server = kbx_docker_config::server_address(host);
    let json = if cred.username.is_empty() && cred.secret.is_empty() {
        serde_json::json!({})
    } else if cred.username.is_empty() {
        serde_json::json!({ "identitytoken": cred.secret, "serveraddress": server })
    } else {
        serde_json::json!({
            "username": cred.username,
            "password": cred.secret,
            "serveraddress": server,
        })
    };
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE, json.to_string())
}

/// Connects to the Docker Engine at `addr` (`docker-unix://…` or `docker-tcp://…`).
pub(crate) async fn dial(addr: &Address) -> Result<BoxIo> {
    let io_err = |source| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let io: BoxIo = match addr {
        Address::DockerUnix(p) => {
            Box::new(tokio::net::UnixStream::connect(p).await.map_err(io_err)?)
        }
        Address::DockerTcp(h) => Box::new(tokio::net::TcpStream::connect(h).await.map_err(io_err)?),
        _ => {
            return Err(Error::InvalidAddress {
                addr: addr.to_string(),
                reason: "not a Docker Engine".to_owned(),
            });
        }
    };
    Ok(io)
}

/// Pushes image `name` (`repo[:tag]`) from the Engine at `addr` to its registry with `cred`,
/// calling `on_message` for every progress message. The Engine reports a registry refusal
/// (wrong password, registry down, unknown image) inside its stream; that becomes
/// [`Error::Engine`] with the Engine's text.
///
/// # Errors
/// [`Error::InvalidAddress`] when `addr` is not a Docker Engine, [`Error::Connect`] when it
/// cannot be reached, [`Error::InvalidOptions`] for a digest or empty name, [`Error::Engine`] for
/// refusals.
pub async fn push_image(
    addr: &Address,
    name: &str,
    cred: &Credential,
    mut on_message: impl FnMut(&PushMessage),
) -> Result<Pushed> {
    let (repo, tag) = split_tag(name).ok_or_else(|| {
        Error::InvalidOptions(format!(
            "cannot push {name:?}: expected an image name with an optional tag"
        ))
    })?;
    let call = format!("push {name}");
    let engine = |message: String| Error::Engine {
        call: call.clone(),
        message,
    };
    let io = dial(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| engine(format!("HTTP handshake: {e}")))?;
    let conn = tokio::spawn(conn);
    let uri = format!(
        "/images/{}/push?tag={}",
        percent_path(repo),
        percent_query(tag)
    );
    let req = http::Request::post(uri)
        .header(http::header::HOST, "docker")
        .header(
            "X-Registry-Auth",
            registry_auth_header(registry_host(name), cred),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| engine(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| engine(format!("request: {e}")))?;
    let mut pushed = Pushed::default();
    let mut failure: Option<String> = None;
    let read = json_lines(resp, &engine, |line| {
        handle_line(line, &mut on_message, &mut pushed, &mut failure);
    })
    .await;
    conn.abort();
    read?;
    match failure {
        Some(message) => Err(engine(message)),
        None => Ok(pushed),
    }
}

/// Reads the Engine's answer to a streaming call: newline-separated JSON messages, each given to
/// `on_line`, within 10 minutes of silence. An HTTP error status becomes `engine(STATUS: the
/// Engine's message)`.
async fn json_lines(
    resp: http::Response<Incoming>,
    engine: &impl Fn(String) -> Error,
    mut on_line: impl FnMut(&[u8]),
) -> Result<()> {
    let status = resp.status();
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::time::timeout(ANSWER_IDLE, body.frame()).await;
        let frame = match frame {
            Err(_) => return Err(engine("no answer from the Engine for 10 minutes".into())),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(engine(format!("reading the answer: {e}"))),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if !status.is_success() {
            if buf.len() > 1 << 20 {
                break;
            }
            continue;
        }
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            on_line(&line);
        }
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&buf);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        return Err(engine(format!("{status}: {message}")));
    }
    if !buf.is_empty() {
        on_line(&buf);
    }
    Ok(())
}

/// How long the Engine may stay silent while it answers a streaming call.
const ANSWER_IDLE: Duration = Duration::from_secs(600);

/// One message of the Engine's answer to a load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadMessage {
    /// The layer the message is about (`Loading layer` messages), if any.
    pub id: Option<String>,
    /// A status (`Loading layer`) or an output line (`Loaded image: app:1`), trimmed.
    pub text: String,
    /// Bytes done and total, while a layer loads.
    pub progress: Option<(u64, u64)>,
}

/// What a finished load reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The images the Engine names in its answer: each tag of the archive (`Loaded image:
    /// app:1`), or the image ID (`Loaded image ID: sha256:…`) for an archive that names none.
    pub images: Vec<String>,
}

/// Bytes per chunk of the archive sent to the Engine (what Go's `io.Copy` moves at once).
pub(crate) const LOAD_CHUNK: usize = 32 * 1024;

/// Checks that a Docker Engine answers at `addr` (`GET /_ping`) within 10 seconds.
///
/// ```no_run
/// # async fn demo() -> Result<(), kbx_buildkit::Error> {
/// kbx_buildkit::engine::ping(&kbx_buildkit::Address::parse("docker")?).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidAddress`] when `addr` is not a Docker Engine, [`Error::Connect`] when it
/// cannot be reached in time, [`Error::Engine`] when it answers with anything but `OK`.
pub async fn ping(addr: &Address) -> Result<()> {
    let engine = |message: String| Error::Engine {
        call: "ping".to_owned(),
        message,
    };
    let work = async {
        let io = dial(addr).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| engine(format!("HTTP handshake: {e}")))?;
        let conn = tokio::spawn(conn);
        let req = http::Request::get("/_ping")
            .header(http::header::HOST, "docker")
            .body(Empty::<Bytes>::new())
            .map_err(|e| engine(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| engine(format!("request: {e}")));
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                conn.abort();
                return Err(e);
            }
        };
        let status = resp.status();
        let body = resp.into_body().collect().await;
        conn.abort();
        let body = body.map_err(|e| engine(format!("reading the answer: {e}")))?;
        let text = String::from_utf8_lossy(&body.to_bytes()).trim().to_owned();
        if status.is_success() {
            Ok(())
        } else {
            Err(engine(format!("{status}: {text}")))
        }
    };
    match tokio::time::timeout(PING_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(Error::Connect {
            addr: addr.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer to /_ping within {PING_TIMEOUT:?}"),
            ),
        }),
    }
}

const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads a docker archive (the `docker save` format the `docker` exporter writes) read from
/// `archive` into the Engine at `addr`, as `docker load` does (`POST /images/load`). The archive
/// streams into the request body in 32 KiB chunks as it is read; it is never held in memory.
/// `on_message` sees every message of the Engine's answer (`Loading layer` progress, `Loaded
/// image: …` lines).
///
/// ```no_run
/// # async fn demo() -> Result<(), kbx_buildkit::Error> {
/// use kbx_buildkit::{engine, Address};
/// let archive = tokio::fs::File::open("app.tar").await.map_err(|e| {
///     kbx_buildkit::Error::Session(e.to_string())
/// })?;
/// let loaded = engine::load_image(&Address::parse("docker")?, archive, |m| {
///     eprintln!("{}", m.text);
/// })
/// .await?;
/// println!("{:?}", loaded.images);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::EngineLoad`], whose source says why: [`Error::InvalidAddress`] when `addr` is not a
/// Docker Engine, [`Error::Connect`] when it cannot be reached, [`Error::Io`] when `archive`
/// cannot be read, [`Error::Engine`] with the Engine's text when it refuses the archive.
pub async fn load_image<R>(
    addr: &Address,
    mut archive: R,
    mut on_message: impl FnMut(&LoadMessage),
) -> Result<Loaded>
where
    R: tokio::io::AsyncRead + Send + Unpin,
{
    let mut load = LoadRequest::start(addr).await?;
    let mut buf = vec![0u8; LOAD_CHUNK];
    loop {
        match archive.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if !load.send(Bytes::copy_from_slice(&buf[..n])).await {
                    break;
                }
            }
            Err(e) => return Err(load.abort(Error::io("read", "the archive", e))),
        }
    }
    load.finish(&mut on_message).await
}

/// A `POST /images/load` in flight: its body is fed chunk by chunk ([`LoadRequest::send`])
/// through a two-chunk channel, so a slow Engine slows the sender down instead of filling
/// memory; [`LoadRequest::finish`] ends the body and reads the Engine's answer.
pub(crate) struct LoadRequest {
    addr: Address,
    body: mpsc::Sender<std::io::Result<Frame<Bytes>>>,
    answer: JoinHandle<std::result::Result<http::Response<Incoming>, hyper::Error>>,
    conn: JoinHandle<()>,
}

impl LoadRequest {
    /// Connects to the Engine at `addr` and starts the request.
    pub(crate) async fn start(addr: &Address) -> Result<Self> {
        let fail = |source: Error| load_error(addr, source);
        let io = dial(addr).await.map_err(fail)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| fail(load_engine(format!("HTTP handshake: {e}"))))?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let (body, rx) = mpsc::channel(2);
        let req = http::Request::post("/images/load?quiet=0")
            .header(http::header::HOST, "docker")
            .header(http::header::CONTENT_TYPE, "application/x-tar")
            .body(StreamBody::new(ReceiverStream::new(rx)))
            .map_err(|e| fail(load_engine(e.to_string())))?;
        let answer = tokio::spawn(async move { sender.send_request(req).await });
        Ok(LoadRequest {
            addr: addr.clone(),
            body,
            answer,
            conn,
        })
    }

    /// Sends the next chunk of the archive; `false` when the Engine stopped reading (its answer,
    /// from [`LoadRequest::finish`], says why).
    pub(crate) async fn send(&mut self, data: Bytes) -> bool {
        let sent = tokio::time::timeout(ANSWER_IDLE, self.body.send(Ok(Frame::data(data)))).await;
        matches!(sent, Ok(Ok(())))
    }

    /// Abandons the request (the archive broke off): the connection is dropped, so the Engine
    /// loads nothing. Returns `reason` as the load's error.
    pub(crate) fn abort(self, reason: Error) -> Error {
        self.answer.abort();
        self.conn.abort();
        load_error(&self.addr, reason)
    }

    /// Ends the archive and reads the Engine's answer, calling `on_message` for each message.
    pub(crate) async fn finish(self, on_message: &mut impl FnMut(&LoadMessage)) -> Result<Loaded> {
        let LoadRequest {
            addr,
            body,
            answer,
            conn,
        } = self;
        drop(body);
        let fail = |source: Error| load_error(&addr, source);
        let resp = match tokio::time::timeout(ANSWER_IDLE, answer).await {
            Err(_) => {
                conn.abort();
                return Err(fail(load_engine(
                    "no answer from the Engine for 10 minutes".to_owned(),
                )));
            }
            Ok(Err(e)) => Err(load_engine(format!("request: {e}"))),
            Ok(Ok(Err(e))) => Err(load_engine(format!("request: {e}"))),
            Ok(Ok(Ok(r))) => Ok(r),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                conn.abort();
                return Err(fail(e));
            }
        };
        let mut loaded = Loaded::default();
        let mut failure: Option<String> = None;
        let read = json_lines(resp, &load_engine, |line| {
            load_line(line, on_message, &mut loaded, &mut failure);
        })
        .await;
        conn.abort();
        read.map_err(fail)?;
        match failure {
            Some(message) => Err(fail(load_engine(message))),
            None => Ok(loaded),
        }
    }
}

fn load_engine(message: String) -> Error {
    Error::Engine {
        call: "load".to_owned(),
        message,
    }
}

/// Wraps why a load into the Engine at `addr` failed.
pub(crate) fn load_error(addr: &Address, source: Error) -> Error {
    Error::EngineLoad {
        addr: addr.to_string(),
        source: Box::new(source),
    }
}

fn load_line(
    line: &[u8],
    on_message: &mut impl FnMut(&LoadMessage),
    loaded: &mut Loaded,
    failure: &mut Option<String>,
) {
    let text = String::from_utf8_lossy(line);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim()) else {
        return;
    };
    let str_of =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
    if let Some(detail) = v.get("errorDetail") {
        let message = str_of(detail, "message")
            .or_else(|| str_of(&v, "error"))
            .unwrap_or_else(|| detail.to_string());
        failure.get_or_insert(message);
        return;
    }
    if let Some(message) = str_of(&v, "error") {
        failure.get_or_insert(message);
        return;
    }
    if let Some(out) = str_of(&v, "stream") {
        for l in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(name) = l
                .strip_prefix("Loaded image: ")
                .or_else(|| l.strip_prefix("Loaded image ID: "))
            {
                loaded.images.push(name.trim().to_owned());
            }
            on_message(&LoadMessage {
                id: None,
                text: l.to_owned(),
                progress: None,
            });
        }
        return;
    }
    if let Some(status) = str_of(&v, "status") {
        let progress = v.get("progressDetail").and_then(|p| {
            let cur = p.get("current")?.as_u64()?;
            let total = p
                .get("total")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            Some((cur, total))
        });
        on_message(&LoadMessage {
            id: str_of(&v, "id"),
            text: status,
            progress,
        });
    }
}

fn handle_line(
    line: &[u8],
    on_message: &mut impl FnMut(&PushMessage),
    pushed: &mut Pushed,
    failure: &mut Option<String>,
) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let str_of =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
    if let Some(detail) = v.get("errorDetail") {
        let message = str_of(detail, "message")
            .or_else(|| str_of(&v, "error"))
            .unwrap_or_else(|| detail.to_string());
        failure.get_or_insert(message);
        return;
    }
    if let Some(message) = str_of(&v, "error") {
        failure.get_or_insert(message);
        return;
    }
    if let Some(aux) = v.get("aux") {
        if let Some(d) = str_of(aux, "Digest") {
            pushed.digest = Some(d);
        }
        pushed.size = aux.get("Size").and_then(serde_json::Value::as_u64);
    }
    let progress = v.get("progressDetail").and_then(|p| {
        let cur = p.get("current")?.as_u64()?;
        let total = p
            .get("total")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        Some((cur, total))
    });
    if let Some(status) = str_of(&v, "status") {
        on_message(&PushMessage {
            id: str_of(&v, "id"),
            status,
            progress,
        });
    }
}

fn percent_path(s: &str) -> String {
    percent(s, |c| c.is_ascii_alphanumeric() || "-._~/:".contains(c))
}

fn percent_query(s: &str) -> String {
    percent(s, |c| c.is_ascii_alphanumeric() || "-._~".contains(c))
}

fn percent(s: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if keep(c) {
            out.push(c);
        } else {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(split_tag("a/b:1"), Some(("a/b", "1")));
        assert_eq!(split_tag("host:5000/a"), Some(("host:5000/a", "latest")));
        assert_eq!(split_tag("host:5000/a:v2"), Some(("host:5000/a", "v2")));
        assert_eq!(split_tag(":1"), None);
        assert_eq!(split_tag("a:"), None);
        assert_eq!(split_tag(""), None);
    }

    #[test]
    fn registry_hosts_follow_docker_normalisation() {
        assert_eq!(registry_host("reg.example.com/a/b"), "reg.example.com");
        assert_eq!(registry_host("localhost/a"), "localhost");
        assert_eq!(registry_host("user/app"), "docker.io");
    }

    #[test]
    fn auth_header_is_url_safe_base64_json() {
        assert_eq!(registry_auth_header("x", &Credential::default()), "e30=");
        let h = registry_auth_header(
            "docker.io",
            &Credential {
                username: "u".into(),
                secret: "p?>".into(),
            },
        );
        assert!(!h.contains('+') && !h.contains('/'), "{h}");
        // Decode with the standard alphabet after mapping back, and compare the JSON.
        let std: String = h
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        let bytes = crate::attachables::base64_decode(&std).expect("base64");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["username"], "u");
        assert_eq!(v["password"], "p?>");
        assert_eq!(v["serveraddress"], "https://index.docker.io/v1/");
    }

    #[test]
    fn stream_lines_give_progress_digest_and_errors() {
        let mut seen = Vec::new();
        let mut pushed = Pushed::default();
        let mut failure = None;
        for line in [
            r#"{"status":"The push refers to repository [localhost:5000/a]"}"#,
            r#"{"status":"Pushing","progressDetail":{"current":512,"total":1024},"id":"abc"}"#,
            r#"{"status":"1: digest: sha256:aa size: 528"}"#,
            r#"{"progressDetail":{},"aux":{"Tag":"1","Digest":"sha256:aa","Size":528}}"#,
            "not json",
        ] {
            handle_line(
                line.as_bytes(),
                &mut |m: &PushMessage| seen.push(m.clone()),
                &mut pushed,
                &mut failure,
            );
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].id.as_deref(), Some("abc"));
        assert_eq!(seen[1].progress, Some((512, 1024)));
        assert_eq!(pushed.digest.as_deref(), Some("sha256:aa"));
        assert_eq!(pushed.size, Some(528));
        assert!(failure.is_none());
        handle_line(
            br#"{"errorDetail":{"message":"unauthorized: authentication required"},"error":"x"}"#,
            &mut |_: &PushMessage| {},
            &mut pushed,
            &mut failure,
        );
        assert_eq!(
            failure.as_deref(),
            Some("unauthorized: authentication required")
        );
    }

    #[test]
    fn load_answers_give_images_progress_and_errors() {
        let mut seen = Vec::new();
        let mut loaded = Loaded::default();
        let mut failure = None;
        for line in [
            r#"{"status":"Loading layer","progressDetail":{"current":32768,"total":65536},"id":"ab12"}"#,
            r#"{"stream":"Loaded image: kbx/loaded:1\n"}"#,
            r#"{"stream":"Loaded image ID: sha256:cc\n"}"#,
            "garbage",
        ] {
            load_line(
                line.as_bytes(),
                &mut |m: &LoadMessage| seen.push(m.clone()),
                &mut loaded,
                &mut failure,
            );
        }
        assert_eq!(loaded.images, ["kbx/loaded:1", "sha256:cc"]);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].id.as_deref(), Some("ab12"));
        assert_eq!(seen[0].progress, Some((32768, 65536)));
        assert_eq!(seen[1].text, "Loaded image: kbx/loaded:1");
        assert!(failure.is_none());
        load_line(
            br#"{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}"#,
            &mut |_: &LoadMessage| {},
            &mut loaded,
            &mut failure,
        );
        assert_eq!(failure.as_deref(), Some("unexpected EOF"));
    }

    #[test]
    fn paths_and_queries_are_escaped() {
        assert_eq!(percent_path("localhost:5000/a b"), "localhost:5000/a%20b");
        assert_eq!(percent_query("v1+x"), "v1%2Bx");
    }
}

//! Docker Engine API calls a build on Docker's embedded BuildKit needs besides BuildKit itself.
//!
//! Docker's `moby` exporter stores the image in the Engine; pushing it is the Engine's job
//! (`POST /images/{name}/push`), exactly as buildx's docker driver does after the solve.
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

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::transport::{Address, BoxIo};
use crate::{Credential, Error, Result};

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

/// The registry host of an image name, as Docker normalises it: the first path component when
/// it has a `.` or `:` or is `localhost`, otherwise `docker.io`.
///
/// ```
/// use kbx_buildkit::engine::registry_host;
/// assert_eq!(registry_host("localhost:5000/app:1"), "localhost:5000");
/// assert_eq!(registry_host("library/busybox"), "docker.io");
/// assert_eq!(registry_host("busybox:1"), "docker.io");
/// ```
pub fn registry_host(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The `X-Registry-Auth` value: URL-safe base64 of the credential as JSON (`{}` when
/// anonymous). Docker Hub's entry is named `https://index.docker.io/v1/`.
pub fn registry_auth_header(host: &str, cred: &Credential) -> String {
    let server = match host {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => "https://index.docker.io/v1/",
        h => h,
    };
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
    base64_url(json.to_string().as_bytes())
}

fn base64_url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, c) in chars.iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[*c as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
    let status = resp.status();
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut pushed = Pushed::default();
    let mut failure: Option<String> = None;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(600), body.frame()).await;
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
            handle_line(&line, &mut on_message, &mut pushed, &mut failure);
        }
    }
    conn.abort();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&buf);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        return Err(engine(format!("{status}: {message}")));
    }
    if !buf.is_empty() {
        let rest = std::mem::take(&mut buf);
        handle_line(&rest, &mut on_message, &mut pushed, &mut failure);
    }
    match failure {
        Some(message) => Err(engine(message)),
        None => Ok(pushed),
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
    fn paths_and_queries_are_escaped() {
        assert_eq!(percent_path("localhost:5000/a b"), "localhost:5000/a%20b");
        assert_eq!(percent_query("v1+x"), "v1%2Bx");
    }
}

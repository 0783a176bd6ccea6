//! The Bearer token flow against a minimal in-test registry + token server (hyper), which
//! records every request so the test can check their shape.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kbx_registry::{Client, ClientOptions, Credential, CredentialFn, Error, Reference};

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    body: String,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `/v2/kbx/app/manifests/v1` to `Bearer good-token` only, and `/token` to
/// `Basic kbx:pw` (GET) or refresh token `rt` (POST).
async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(handle(addr, req, &seen).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server { addr, seen, task }
}

async fn handle(
    addr: SocketAddr,
    req: Request<Incoming>,
    seen: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
        .unwrap_or_default();
    seen.lock().expect("lock").push(Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("kbx:pw")
    );
    let reply = |status: StatusCode, body: &'static [u8]| {
        Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body)))
            .expect("response")
    };
    if path == "/token" {
        let ok = (method == "GET" && authorization.as_deref() == Some(basic.as_str()))
            || (method == "POST" && body.contains("refresh_token=rt"));
        return if ok {
            reply(StatusCode::OK, br#"{"token":"good-token"}"#)
        } else {
            reply(
                StatusCode::UNAUTHORIZED,
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
            )
        };
    }
    if path == "/v2/kbx/app/manifests/v1" {
        if authorization.as_deref() == Some("Bearer good-token") {
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(Full::new(Bytes::from_static(MANIFEST)))
                .expect("response");
        }
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(
                "www-authenticate",
                format!(
                    r#"Bearer realm="http://{addr}/token",service="kbx-test",scope="repository:kbx/app:pull""#
                ),
            )
            .body(Full::new(Bytes::from_static(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )))
            .expect("response");
    }
    reply(StatusCode::NOT_FOUND, b"")
}

fn client(cred: Option<Credential>) -> Client {
    let credentials = cred.map(|c| {
        let f: CredentialFn = Arc::new(move |_host: &str| {
            let c = c.clone();
            Box::pin(async move { Some(c) })
        });
        f
    });
    Client::new(ClientOptions {
        credentials,
        ..ClientOptions::default()
    })
}

#[tokio::test]
async fn bearer_token_is_fetched_with_basic_credentials_and_cached_per_scope() {
    let server = start().await;
    let c = client(Some(Credential::new("kbx", "pw")));
    let r = Reference::parse(&format!("{}/kbx/app:v1", server.addr)).expect("ref");
    let (desc, body) = c.manifest(&r).await.expect("manifest");
    assert_eq!(body.as_ref(), MANIFEST);
    assert_eq!(
        desc.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );
    c.manifest(&r).await.expect("second manifest");

    let seen = server.seen.lock().expect("lock").clone();
    let tokens: Vec<_> = seen.iter().filter(|s| s.path == "/token").collect();
    assert_eq!(tokens.len(), 1, "token cached: {seen:#?}");
    let t = tokens[0];
    assert_eq!(t.method, "GET");
    assert_eq!(
        t.query,
        "service=kbx%2Dtest&scope=repository%3Akbx%2Fapp%3Apull"
    );
    assert!(
        t.authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    );
    // 401, token, retry with the token, then the cached token straight away.
    let manifests: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/v2/"))
        .map(|s| s.authorization.clone())
        .collect();
    assert_eq!(
        manifests,
        vec![
            None,
            Some("Bearer good-token".to_owned()),
            Some("Bearer good-token".to_owned())
        ]
    );
}

#[tokio::test]
async fn identity_token_is_sent_as_a_refresh_token() {
    let server = start().await;
    let c = client(Some(Credential::new("<token>", "rt")));
    let r = Reference::parse(&format!("{}/kbx/app:v1", server.addr)).expect("ref");
    c.manifest(&r).await.expect("manifest");
    let seen = server.seen.lock().expect("lock").clone();
    let t = seen
        .iter()
        .find(|s| s.path == "/token")
        .expect("token request");
    assert_eq!(t.method, "POST");
    assert!(t.body.contains("grant_type=refresh_token"), "{}", t.body);
    assert!(t.body.contains("service=kbx%2Dtest"), "{}", t.body);
    assert!(t.authorization.is_none());
}

#[tokio::test]
async fn refused_token_is_unauthorized_and_names_the_registry() {
    let server = start().await;
    let r = Reference::parse(&format!("{}/kbx/app:v1", server.addr)).expect("ref");
    for (cred, sent) in [(Some(Credential::new("kbx", "nope")), true), (None, false)] {
        let err = client(cred).manifest(&r).await.expect_err("refused");
        match &err {
            Error::Unauthorized {
                registry,
                credentials_sent,
                detail,
            } => {
                assert_eq!(registry, &server.addr.to_string());
                assert_eq!(*credentials_sent, sent);
                assert!(detail.contains("UNAUTHORIZED"), "{detail}");
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }
}

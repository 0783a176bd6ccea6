//! The HTTP client: requests, authentication, manifests and blobs.

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, BodyStream, Empty, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest as _, Sha256};

use crate::auth::{Challenge, Credential, CredentialFn, parse_challenge};
use crate::error::{BoxError, Error, Result};
use crate::reference::Reference;
use crate::types::{
    DOCKER_SCHEMA1, Descriptor, ImageManifest, Index, MANIFEST_ACCEPT, detect_media_type,
    hex_digest, is_image_manifest, is_index,
};

type Body = UnsyncBoxBody<Bytes, BoxError>;
type Http = HyperClient<HttpsConnector<HttpConnector>, Body>;

/// The largest manifest or config this client reads into memory (4 MiB, as containerd).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;
const MAX_ERROR_BODY: usize = 64 << 10;

/// A stream of blob bytes.
pub type BlobStream = BoxStream<'static, Result<Bytes>>;

/// How a [`Client`] connects and authenticates.
#[derive(Clone)]
pub struct ClientOptions {
    /// Credentials per registry host; `None` means anonymous everywhere.
    pub credentials: Option<CredentialFn>,
    /// Registries (`host` or `host:port`) spoken to over plain HTTP. `localhost`,
    /// `127.0.0.0/8` and `::1` always are, as Docker treats them.
    pub plain_http_hosts: Vec<String>,
    /// Deadline for each request to answer (headers; bodies stream without one).
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: None,
            plain_http_hosts: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<callback>"),
            )
            .field("plain_http_hosts", &self.plain_http_hosts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Per-registry authentication state.
#[derive(Default)]
struct HostAuth {
    basic: Option<String>,
    bearer: Option<(String, Option<String>)>,
    tokens: HashMap<String, String>,
}

struct Inner {
    http: Http,
    options: ClientOptions,
    auth: Mutex<HashMap<String, HostAuth>>,
}

/// A registry client. Cheap to clone; clones share connections and cached tokens.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// The access a request needs, as token scopes.
#[derive(Debug, Clone)]
pub(crate) struct Scopes(Vec<String>);

impl Scopes {
    pub(crate) fn pull(r: &Reference) -> Self {
        Scopes(vec![format!("repository:{}:pull", r.repository())])
    }
    pub(crate) fn push(r: &Reference) -> Self {
        Scopes(vec![format!("repository:{}:pull,push", r.repository())])
    }
    fn and_pull(mut self, repository: &str) -> Self {
        self.0.push(format!("repository:{repository}:pull"));
        self
    }
    fn key(&self) -> String {
        self.0.join(" ")
    }
}

impl Client {
    /// A client with `options`. HTTPS uses the system's root certificates.
    pub fn new(options: ClientOptions) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider.clone())
        {
            Ok(b) => b,
            // No system roots: HTTPS registries then fail with a TLS error (Unreachable).
            Err(_) => {
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config.expect("ring supports the default TLS versions"))
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        let http = HyperClient::builder(TokioExecutor::new()).build(connector);
        Client {
            inner: Arc::new(Inner {
                http,
                options,
                auth: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Whether `host` is spoken to over plain HTTP.
    pub fn is_plain_http(&self, host: &str) -> bool {
        if self
            .inner
            .options
            .plain_http_hosts
            .iter()
            .any(|h| h == host || host.rsplit_once(':').is_some_and(|(name, _)| name == h))
        {
            return true;
        }
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default()
        } else {
            host.rsplit_once(':').map_or(host, |(n, _)| n)
        };
        name == "localhost"
            || name == "::1"
            || name
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    fn base(&self, r: &Reference) -> String {
        let scheme = if self.is_plain_http(r.registry()) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", r.api_host())
    }

    async fn credential(&self, registry: &str) -> Option<Credential> {
        match &self.inner.options.credentials {
            Some(f) => f(registry).await,
            None => None,
        }
    }

    fn auth_header(&self, registry: &str, scopes: &Scopes) -> Option<HeaderValue> {
        let map = self.inner.auth.lock().unwrap_or_else(|e| e.into_inner());
        let state = map.get(registry)?;
        if let Some(token) = state.tokens.get(&scopes.key()) {
            return HeaderValue::from_str(&format!("Bearer {token}")).ok();
        }
        state
            .basic
            .as_ref()
            .and_then(|b| HeaderValue::from_str(&format!("Basic {b}")).ok())
    }

    fn unreachable(r: &Reference, e: impl Into<BoxError>) -> Error {
        Error::Unreachable {
            registry: r.registry().to_owned(),
            source: e.into(),
        }
    }

    async fn raw_send(&self, r: &Reference, req: Request<Body>) -> Result<Response<Incoming>> {
        match tokio::time::timeout(self.inner.options.timeout, self.inner.http.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(Self::unreachable(r, e)),
            Err(e) => Err(Self::unreachable(r, e)),
        }
    }

    fn build(
        &self,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        auth: Option<HeaderValue>,
        body: Body,
    ) -> Result<Request<Body>> {
        let mut req = Request::builder().method(method.clone()).uri(url);
        if let Some(h) = req.headers_mut() {
            h.extend(headers.clone());
            if let Some(a) = auth {
                h.insert(header::AUTHORIZATION, a);
            }
        }
        req.body(body)
            .map_err(|e| Error::Unsupported(format!("bad request URL {url}: {e}")))
    }

    /// Sends a request with a replayable body, answering one authentication challenge.
    async fn send(
        &self,
        r: &Reference,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Bytes,
        scopes: &Scopes,
    ) -> Result<Response<Incoming>> {
        let registry = r.registry();
        let mut sent = false;
        for attempt in 0..2 {
            let auth = self.auth_header(registry, scopes);
            sent |= auth.is_some();
            let req_body = if body.is_empty() {
                Empty::new().map_err(|e| match e {}).boxed_unsync()
            } else {
                Full::new(body.clone())
                    .map_err(|e| match e {})
                    .boxed_unsync()
            };
            let req = self.build(&method, url, &headers, auth, req_body)?;
            let resp = self.raw_send(r, req).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let detail = error_detail(resp).await;
            if attempt == 1 || challenge.is_none() {
                return Err(Error::Unauthorized {
                    registry: registry.to_owned(),
                    credentials_sent: sent,
                    detail,
                });
            }
            let cred = self.credential(registry).await;
            match challenge {
                Some(Challenge::Basic) => {
                    let Some(c) = cred else {
                        return Err(Error::Unauthorized {
                            registry: registry.to_owned(),
                            credentials_sent: false,
                            detail,
                        });
                    };
                    let b = base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.username, c.secret));
                    let mut map = self.inner.auth.lock().unwrap_or_else(|e| e.into_inner());
                    map.entry(registry.to_owned()).or_default().basic = Some(b);
                }
                Some(Challenge::Bearer { realm, service }) => {
                    let token = self
                        .fetch_token(r, &realm, service.as_deref(), scopes, cred)
                        .await?;
                    let mut map = self.inner.auth.lock().unwrap_or_else(|e| e.into_inner());
                    let state = map.entry(registry.to_owned()).or_default();
                    state.bearer = Some((realm, service));
                    state.tokens.insert(scopes.key(), token);
                }
                None => {}
            }
        }
        // The second attempt returns above; this only keeps the compiler content.
        Err(Error::Unauthorized {
            registry: registry.to_owned(),
            credentials_sent: sent,
            detail: "authentication did not succeed".into(),
        })
    }

    /// Sends a request, first fetching a token for `scopes` if the registry is known to want
    /// one, so that a one-shot (streaming) body is not spent on a challenge.
    async fn prepare_auth(&self, r: &Reference, scopes: &Scopes) -> Result<()> {
        let pending = {
            let map = self.inner.auth.lock().unwrap_or_else(|e| e.into_inner());
            map.get(r.registry()).and_then(|s| match &s.bearer {
                Some(b) if !s.tokens.contains_key(&scopes.key()) => Some(b.clone()),
                _ => None,
            })
        };
        if let Some((realm, service)) = pending {
            let cred = self.credential(r.registry()).await;
            let token = self
                .fetch_token(r, &realm, service.as_deref(), scopes, cred)
                .await?;
            let mut map = self.inner.auth.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(r.registry().to_owned())
                .or_default()
                .tokens
                .insert(scopes.key(), token);
        }
        Ok(())
    }

    async fn fetch_token(
        &self,
        r: &Reference,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
        cred: Option<Credential>,
    ) -> Result<String> {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let mut headers = HeaderMap::new();
        let sent = cred.is_some();
        let (method, url, body) = match &cred {
            Some(c) if c.is_identity_token() => {
                let mut form = format!(
                    "grant_type=refresh_token&client_id=kbx&refresh_token={}",
                    enc(&c.secret)
                );
                if let Some(s) = service {
                    form.push_str(&format!("&service={}", enc(s)));
                }
                form.push_str(&format!("&scope={}", enc(&scopes.key())));
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                (Method::POST, realm.to_owned(), Bytes::from(form))
            }
            _ => {
                let mut q = Vec::new();
                if let Some(s) = service {
                    q.push(format!("service={}", enc(s)));
                }
                for s in &scopes.0 {
                    q.push(format!("scope={}", enc(s)));
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                if let Some(c) = &cred {
                    let b = base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.username, c.secret));
                    if let Ok(v) = HeaderValue::from_str(&format!("Basic {b}")) {
                        headers.insert(header::AUTHORIZATION, v);
                    }
                }
                (
                    Method::GET,
                    format!("{realm}{sep}{}", q.join("&")),
                    Bytes::new(),
                )
            }
        };
        let req = self.build(
            &method,
            &url,
            &headers,
            None,
            Full::new(body).map_err(|e| match e {}).boxed_unsync(),
        )?;
        let resp = self.raw_send(r, req).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                registry: r.registry().to_owned(),
                credentials_sent: sent,
                detail: error_detail(resp).await,
            });
        }
        if !status.is_success() {
            return Err(Error::Registry {
                registry: r.registry().to_owned(),
                method: method.to_string(),
                path: realm.to_owned(),
                status: status.as_u16(),
                detail: error_detail(resp).await,
            });
        }
        let body = read_limited(r, resp, MAX_ERROR_BODY).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|source| Error::Decode {
            what: format!("the token from {realm}"),
            source,
        })?;
        t.token
            .filter(|t| !t.is_empty())
            .or(t.access_token)
            .ok_or_else(|| Error::Unauthorized {
                registry: r.registry().to_owned(),
                credentials_sent: sent,
                detail: format!("the token server {realm} returned no token"),
            })
    }

    fn manifest_url(&self, r: &Reference, reference: &str) -> String {
        format!(
            "{}/v2/{}/manifests/{reference}",
            self.base(r),
            r.repository()
        )
    }

    fn blob_url(&self, r: &Reference, digest: &str) -> String {
        format!("{}/v2/{}/blobs/{digest}", self.base(r), r.repository())
    }

    async fn unexpected(
        r: &Reference,
        method: &Method,
        url: &str,
        resp: Response<Incoming>,
    ) -> Error {
        let status = resp.status().as_u16();
        let path = url
            .split_once("://")
            .map_or(url, |(_, rest)| rest.find('/').map_or(rest, |i| &rest[i..]));
        let path = path.split('?').next().unwrap_or(path);
        Error::Registry {
            registry: r.registry().to_owned(),
            method: method.to_string(),
            path: path.to_owned(),
            status,
            detail: error_detail(resp).await,
        }
    }

    /// Resolves a reference to its manifest descriptor (HEAD, falling back to GET when the
    /// registry sends no digest).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Unauthorized`], [`Error::Unreachable`], [`Error::Registry`].
    pub async fn resolve(&self, r: &Reference) -> Result<Descriptor> {
        let resp = self.request_manifest(r, Method::HEAD).await?;
        let h = resp.headers();
        let digest = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let media_type = content_type(h);
        let size = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        match (digest, media_type, size) {
            (Some(digest), Some(media_type), Some(size)) => Ok(Descriptor {
                media_type,
                digest,
                size,
                urls: None,
                annotations: None,
                platform: None,
                artifact_type: None,
            }),
            _ => Ok(self.manifest(r).await?.0),
        }
    }

    /// Sends `method` (`HEAD` or `GET`) for `r`'s manifest and returns the successful
    /// response; 404 becomes [`Error::NotFound`].
    async fn request_manifest(&self, r: &Reference, method: Method) -> Result<Response<Incoming>> {
        let url = self.manifest_url(r, r.manifest_ref());
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let resp = self
            .send(
                r,
                method.clone(),
                &url,
                headers,
                Bytes::new(),
                &Scopes::pull(r),
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(Error::NotFound {
                reference: r.to_string(),
            }),
            s if s.is_success() => Ok(resp),
            _ => Err(Self::unexpected(r, &method, &url, resp).await),
        }
    }

    /// Fetches a manifest (at most [`MAX_MANIFEST_SIZE`] bytes) and its descriptor; a
    /// digest in the reference is verified.
    ///
    /// # Errors
    /// As [`Client::resolve`], plus [`Error::DigestMismatch`].
    pub async fn manifest(&self, r: &Reference) -> Result<(Descriptor, Bytes)> {
        let resp = self.request_manifest(r, Method::GET).await?;
        let media_type = content_type(resp.headers());
        let body = read_limited(r, resp, MAX_MANIFEST_SIZE).await?;
        let media_type = match media_type {
            Some(m) if m != "application/json" && m != "text/plain" => m,
            _ => detect_media_type(&body),
        };
        let desc = Descriptor::of(&media_type, &body);
        if let Some(want) = r.digest()
            && want.starts_with("sha256:")
            && want != desc.digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest {r}"),
                expected: want.to_owned(),
                actual: desc.digest,
            });
        }
        Ok((desc, body))
    }

    /// Streams a blob of `r`'s repository; the stream ends with [`Error::DigestMismatch`]
    /// if the bytes do not hash to `digest`.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub async fn blob(&self, r: &Reference, digest: &str) -> Result<BlobStream> {
        let url = self.blob_url(r, digest);
        let resp = self
            .send(
                r,
                Method::GET,
                &url,
                HeaderMap::new(),
                Bytes::new(),
                &Scopes::pull(r),
            )
            .await?;
        let resp = match resp.status() {
            StatusCode::NOT_FOUND => {
                return Err(Error::NotFound {
                    reference: format!("{}@{digest}", r.name()),
                });
            }
            s if s.is_redirection() => {
                let Some(loc) = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| absolute(&self.base(r), l))
                else {
                    return Err(Self::unexpected(r, &Method::GET, &url, resp).await);
                };
                let req = self.build(
                    &Method::GET,
                    &loc,
                    &HeaderMap::new(),
                    None,
                    Empty::new().map_err(|e| match e {}).boxed_unsync(),
                )?;
                let resp = self.raw_send(r, req).await?;
                if !resp.status().is_success() {
                    return Err(Self::unexpected(r, &Method::GET, &loc, resp).await);
                }
                resp
            }
            s if s.is_success() => resp,
            _ => return Err(Self::unexpected(r, &Method::GET, &url, resp).await),
        };
        let inner = BodyStream::new(resp.into_body())
            .try_filter_map(|f| async move { Ok(f.into_data().ok()) })
            .map_err(move |e| -> BoxError { Box::new(e) })
            .boxed();
        let what = format!("blob {}@{digest}", r.name());
        Ok(Verified::new(inner, digest, None, what, None).boxed())
    }

    async fn exists(
        &self,
        r: &Reference,
        url: &str,
        scopes: &Scopes,
        accept: bool,
    ) -> Result<bool> {
        let mut headers = HeaderMap::new();
        if accept {
            headers.insert(header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        }
        let resp = self
            .send(r, Method::HEAD, url, headers, Bytes::new(), scopes)
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(Self::unexpected(r, &Method::HEAD, url, resp).await),
        }
    }

    /// Whether the blob `digest` exists in `r`'s repository.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub async fn blob_exists(&self, r: &Reference, digest: &str) -> Result<bool> {
        let url = self.blob_url(r, digest);
        self.exists(r, &url, &Scopes::pull(r), false).await
    }

    /// Whether the manifest `digest` exists in `r`'s repository.
    ///
    /// # Errors
    /// As [`Client::resolve`].
    pub async fn manifest_exists(&self, r: &Reference, digest: &str) -> Result<bool> {
        let url = self.manifest_url(r, digest);
        self.exists(r, &url, &Scopes::pull(r), true).await
    }

    /// Starts an upload into `r`'s repository, mounting `digest` from `from` (a repository
    /// of the same registry) when given. `None` means the blob was mounted; otherwise the
    /// upload URL to `PUT` the bytes to.
    async fn start_upload(
        &self,
        r: &Reference,
        mount: Option<(&str, &str)>,
    ) -> Result<Option<String>> {
        let mut url = format!("{}/v2/{}/blobs/uploads/", self.base(r), r.repository());
        let mut scopes = Scopes::push(r);
        if let Some((digest, from)) = mount {
            url.push_str(&format!(
                "?mount={}&from={}",
                utf8_percent_encode(digest, NON_ALPHANUMERIC),
                utf8_percent_encode(from, NON_ALPHANUMERIC)
            ));
            scopes = scopes.and_pull(from);
        }
        let resp = self
            .send(
                r,
                Method::POST,
                &url,
                HeaderMap::new(),
                Bytes::new(),
                &scopes,
            )
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(None),
            StatusCode::ACCEPTED => {
                let loc = resp
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| absolute(&self.base(r), l));
                match loc {
                    Some(l) => Ok(Some(l)),
                    None => Err(Error::Registry {
                        registry: r.registry().to_owned(),
                        method: "POST".into(),
                        path: format!("/v2/{}/blobs/uploads/", r.repository()),
                        status: 202,
                        detail: "no Location header for the upload".into(),
                    }),
                }
            }
            _ => Err(Self::unexpected(r, &Method::POST, &url, resp).await),
        }
    }

    async fn finish_upload(
        &self,
        r: &Reference,
        location: &str,
        desc: &Descriptor,
        data: BoxStream<'static, std::result::Result<Bytes, BoxError>>,
    ) -> Result<()> {
        let scopes = Scopes::push(r);
        self.prepare_auth(r, &scopes).await?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!(
            "{location}{sep}digest={}",
            utf8_percent_encode(&desc.digest, NON_ALPHANUMERIC)
        );
        let failure = Arc::new(Mutex::new(None));
        let verified = Verified::new(
            data,
            &desc.digest,
            Some(desc.size),
            format!("blob {desc_digest} to push", desc_digest = desc.digest),
            Some(failure.clone()),
        );
        let body = StreamBody::new(verified.map(|item| match item {
            Ok(b) => Ok(Frame::data(b)),
            Err(e) => Err(Box::new(e) as BoxError),
        }))
        .boxed_unsync();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(desc.size));
        let auth = self.auth_header(r.registry(), &scopes);
        let sent = auth.is_some();
        let req = self.build(&Method::PUT, &url, &headers, auth, body)?;
        let result = self.raw_send(r, req).await;
        if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        let resp = result?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => Ok(()),
            StatusCode::UNAUTHORIZED => Err(Error::Unauthorized {
                registry: r.registry().to_owned(),
                credentials_sent: sent,
                detail: error_detail(resp).await,
            }),
            _ => Err(Self::unexpected(r, &Method::PUT, &url, resp).await),
        }
    }

    /// Uploads a blob into `r`'s repository from a stream (POST, then one streaming PUT),
    /// verifying that the bytes match `desc`'s digest and size. Does nothing if the blob
    /// already exists.
    ///
    /// # Errors
    /// As [`Client::resolve`], plus [`Error::DigestMismatch`] and [`Error::Body`].
    pub async fn push_blob<S, E>(&self, r: &Reference, desc: &Descriptor, data: S) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        if self.blob_exists(r, &desc.digest).await? {
            return Ok(());
        }
        let Some(loc) = self.start_upload(r, None).await? else {
            return Ok(());
        };
        self.finish_upload(r, &loc, desc, data.map_err(Into::into).boxed())
            .await
    }

    /// Makes blob `desc` of `from` available in `to`'s repository: nothing if it is there,
    /// a cross-repository mount on the same registry, otherwise a streamed copy.
    ///
    /// # Errors
    /// As [`Client::push_blob`].
    pub async fn copy_blob(
        &self,
        from: &Reference,
        to: &Reference,
        desc: &Descriptor,
    ) -> Result<()> {
        if self.blob_exists(to, &desc.digest).await? {
            return Ok(());
        }
        let same_registry = from.registry() == to.registry();
        let mount = same_registry.then_some((desc.digest.as_str(), from.repository()));
        let Some(loc) = self.start_upload(to, mount).await? else {
            return Ok(());
        };
        let data = self
            .blob(from, &desc.digest)
            .await?
            .map_err(|e| Box::new(e) as BoxError)
            .boxed();
        self.finish_upload(to, &loc, desc, data).await
    }

    /// Stores a manifest under `r`'s tag (or digest) and returns its descriptor.
    ///
    /// # Errors
    /// As [`Client::resolve`], plus [`Error::DigestMismatch`] when the registry computed a
    /// different digest.
    pub async fn put_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        body: Bytes,
    ) -> Result<Descriptor> {
        let desc = Descriptor::of(media_type, &body);
        let target = r.tag().unwrap_or(&desc.digest).to_owned();
        self.put_manifest_at(r, &target, desc, body).await
    }

    async fn put_manifest_at(
        &self,
        r: &Reference,
        target: &str,
        desc: Descriptor,
        body: Bytes,
    ) -> Result<Descriptor> {
        let url = self.manifest_url(r, target);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&desc.media_type).map_err(|_| {
                Error::Unsupported(format!("invalid media type {:?}", desc.media_type))
            })?,
        );
        let resp = self
            .send(r, Method::PUT, &url, headers, body, &Scopes::push(r))
            .await?;
        if !resp.status().is_success() {
            return Err(Self::unexpected(r, &Method::PUT, &url, resp).await);
        }
        if let Some(got) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && got != desc.digest
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest pushed to {r}"),
                expected: desc.digest,
                actual: got.to_owned(),
            });
        }
        Ok(desc)
    }

    /// Makes manifest `desc` of `from` (and everything it references) available in `to`'s
    /// repository by digest.
    pub(crate) async fn copy_manifest(
        &self,
        from: &Reference,
        to: &Reference,
        desc: &Descriptor,
    ) -> Result<()> {
        if from.registry() == to.registry() && from.repository() == to.repository() {
            return Ok(());
        }
        if self.manifest_exists(to, &desc.digest).await? {
            return Ok(());
        }
        let src = from.with_digest(&desc.digest);
        let (got, body) = self.manifest(&src).await?;
        let media_type = if desc.media_type.is_empty() {
            got.media_type.clone()
        } else {
            desc.media_type.clone()
        };
        if is_index(&media_type) {
            let idx: Index = serde_json::from_slice(&body).map_err(|source| Error::Decode {
                what: format!("index {src}"),
                source,
            })?;
            for child in &idx.manifests {
                Box::pin(self.copy_manifest(from, to, child)).await?;
            }
        } else if DOCKER_SCHEMA1.contains(&media_type.as_str()) {
            return Err(Error::Unsupported(format!(
                "{src}: schema1 manifests cannot be copied"
            )));
        } else {
            let m: ImageManifest =
                serde_json::from_slice(&body).map_err(|source| Error::Decode {
                    what: format!("manifest {src}"),
                    source,
                })?;
            self.copy_blob(from, to, &m.config).await?;
            for layer in &m.layers {
                self.copy_blob(from, to, layer).await?;
            }
        }
        let mut d = Descriptor::of(&media_type, &body);
        d.media_type = media_type;
        let digest = d.digest.clone();
        self.put_manifest_at(to, &digest, d, body).await?;
        Ok(())
    }

    /// Reads a small JSON document (a config) from a blob.
    pub(crate) async fn small_blob(&self, r: &Reference, desc: &Descriptor) -> Result<Bytes> {
        if desc.size > MAX_MANIFEST_SIZE as u64 {
            return Err(Error::Unsupported(format!(
                "{}@{} is {} bytes, more than the {MAX_MANIFEST_SIZE} read for a config",
                r.name(),
                desc.digest,
                desc.size
            )));
        }
        let mut s = self.blob(r, &desc.digest).await?;
        let mut buf = Vec::with_capacity(desc.size as usize);
        while let Some(chunk) = s.next().await {
            buf.extend_from_slice(&chunk?);
            if buf.len() > MAX_MANIFEST_SIZE {
                return Err(Error::Unsupported(format!(
                    "{}@{} is larger than {MAX_MANIFEST_SIZE} bytes",
                    r.name(),
                    desc.digest
                )));
            }
        }
        Ok(Bytes::from(buf))
    }

    /// Whether `media_type` may be listed in an index.
    pub(crate) fn check_indexable(r: &Reference, media_type: &str) -> Result<()> {
        if DOCKER_SCHEMA1.contains(&media_type) {
            return Err(Error::Unsupported(format!(
                "{r}: schema1 manifests are not allowed in manifest lists"
            )));
        }
        if !is_index(media_type) && !is_image_manifest(media_type) {
            return Err(Error::Unsupported(format!(
                "{r}: unsupported manifest media type {media_type}"
            )));
        }
        Ok(())
    }
}

/// A stream that hashes what passes through and fails at its end on a digest or size
/// mismatch (only `sha256` digests are checked).
struct Verified {
    inner: BoxStream<'static, std::result::Result<Bytes, BoxError>>,
    hasher: Option<Sha256>,
    expected: String,
    size: Option<u64>,
    seen: u64,
    what: String,
    failure: Option<Arc<Mutex<Option<Error>>>>,
    done: bool,
}

impl Verified {
    fn new(
        inner: BoxStream<'static, std::result::Result<Bytes, BoxError>>,
        digest: &str,
        size: Option<u64>,
        what: String,
        failure: Option<Arc<Mutex<Option<Error>>>>,
    ) -> Self {
        Verified {
            inner,
            hasher: digest.starts_with("sha256:").then(Sha256::new),
            expected: digest.to_owned(),
            size,
            seen: 0,
            what,
            failure,
            done: false,
        }
    }

    /// Finishes the hash (once) and returns the mismatch, if any.
    fn check_digest(&mut self) -> Option<Error> {
        let got = hex_digest(self.hasher.take()?.finalize().as_slice());
        (got != self.expected).then(|| Error::DigestMismatch {
            what: self.what.clone(),
            expected: self.expected.clone(),
            actual: got,
        })
    }

    fn fail(&mut self, e: Error) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        match &self.failure {
            Some(slot) => {
                let msg = e.to_string();
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                Poll::Ready(Some(Err(Error::Unsupported(msg))))
            }
            None => Poll::Ready(Some(Err(e))),
        }
    }
}

impl Stream for Verified {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(b))) => {
                if let Some(h) = &mut this.hasher {
                    h.update(&b);
                }
                this.seen += b.len() as u64;
                if let Some(size) = this.size
                    && this.seen > size
                {
                    let e = Error::DigestMismatch {
                        what: format!("size of {}", this.what),
                        expected: size.to_string(),
                        actual: format!("more than {size}"),
                    };
                    return this.fail(e);
                }
                // A sender that knows the length stops polling at it: check now.
                if this.size == Some(this.seen)
                    && let Some(e) = this.check_digest()
                {
                    return this.fail(e);
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(source))) => this.fail(Error::Body { source }),
            Poll::Ready(None) => {
                this.done = true;
                if let Some(size) = this.size
                    && this.seen != size
                {
                    let e = Error::DigestMismatch {
                        what: format!("size of {}", this.what),
                        expected: size.to_string(),
                        actual: this.seen.to_string(),
                    };
                    return this.fail(e);
                }
                match this.check_digest() {
                    Some(e) => this.fail(e),
                    None => Poll::Ready(None),
                }
            }
        }
    }
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

fn content_type(h: &HeaderMap) -> Option<String> {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty())
}

async fn read_limited(r: &Reference, resp: Response<Incoming>, limit: usize) -> Result<Bytes> {
    match Limited::new(resp.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(Client::unreachable(r, e)),
    }
}

/// The registry's error list (`CODE: message`), or the body text, or the status.
async fn error_detail(resp: Response<Incoming>) -> String {
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&body)
        && !e.errors.is_empty()
    {
        return e
            .errors
            .iter()
            .map(|i| format!("{}: {}", i.code, i.message))
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {}", text.chars().take(500).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_for_loopback_and_listed_hosts() {
        let c = Client::new(ClientOptions {
            plain_http_hosts: vec!["registry.lan".into(), "other:5000".into()],
            ..ClientOptions::default()
        });
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.1.2.3:443",
            "[::1]:5000",
            "registry.lan:8080",
            "other:5000",
        ] {
            assert!(c.is_plain_http(host), "{host}");
        }
        for host in [
            "docker.io",
            "10.0.0.1:5000",
            "other:5001",
            "localhost.example",
            "[::2]:5000",
        ] {
            assert!(!c.is_plain_http(host), "{host}");
        }
    }

    #[test]
    fn relative_locations_are_made_absolute() {
        assert_eq!(
            absolute("http://h:1", "/v2/a/blobs/uploads/x"),
            "http://h:1/v2/a/blobs/uploads/x"
        );
        assert_eq!(absolute("http://h:1", "https://s3/x"), "https://s3/x");
    }
}

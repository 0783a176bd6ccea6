//! The session: a reversed gRPC connection on which the daemon calls us back for health checks,
//! the build context (FileSync) and exporter output (FileSend).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
    health_check_response::ServingStatus,
};
use bollard_buildkit_proto::moby::buildkit::v1::BytesMessage as ControlBytes;
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{
    StatusResponse, Vertex, VertexLog, VertexStatus as ProtoVertexStatus,
};
use bollard_buildkit_proto::moby::filesync::v1::BytesMessage as FileBytes;
use bollard_buildkit_proto::moby::filesync::v1::file_send_server::{
    FileSend as BytesFileSend, FileSendServer as BytesFileSendServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::SecretsServer;
use bollard_buildkit_proto::moby::filesync::v1::auth_server::AuthServer;
use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::SshServer;
use bollard_buildkit_proto::moby::upload::v1::BytesMessage as UploadBytes;
use bollard_buildkit_proto::moby::upload::v1::upload_server::{Upload, UploadServer};

use crate::attachables::{AuthProvider, SecretStore, SshForwarder};
use crate::fsutil::wire::{DiffCopy, DiffCopyServer, FileSendRoute, FileSyncRoute, Packet};
use crate::fsutil::{Filter, receive, send};
use crate::service::{BoxFut, HttpResponse, Routes, Served};
use crate::transport::{Address, docker_upgrade};
use crate::{Error, Result};

/// Largest message we accept on the session (the daemon's own limit is 4 or 16 MiB).
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

/// Where exporter output that comes back through the session goes.
#[derive(Debug, Clone)]
pub(crate) enum ExportTarget {
    /// `local`: an fsutil tree written under this directory.
    Dir(PathBuf),
    /// `tar`, `oci`, `docker`: a byte stream to this file, or stdout when `None`.
    Bytes(Option<PathBuf>),
    /// `docker` into a Docker Engine: the archive streams into `POST /images/load`.
    Engine(EngineExport),
}

/// A `docker` export loaded into a Docker Engine as it arrives, with the load's progress
/// reported as an `importing to docker` step (what buildx shows).
#[derive(Debug, Clone)]
pub(crate) struct EngineExport {
    /// The Engine.
    pub(crate) addr: Address,
    /// Where the step's progress goes (merged into the build's status stream).
    pub(crate) progress: mpsc::UnboundedSender<StatusResponse>,
    /// The images the Engine names in its answer, once it has answered.
    pub(crate) loaded: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Everything the session serves.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionConfig {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) shared_key: String,
    pub(crate) dirs: HashMap<String, PathBuf>,
    /// Where each exporter's output goes, by exporter ID (its index in
    /// `SolveRequest.Exporters`), which the daemon names in `buildkit-attachable-exporter-id`.
    pub(crate) exports: BTreeMap<usize, ExportTarget>,
    pub(crate) secrets: HashMap<String, crate::attachables::SecretSource>,
    pub(crate) ssh: HashMap<String, crate::attachables::AgentTarget>,
    pub(crate) credentials: Option<crate::attachables::DockerCredentials>,
    /// Readers served once each by `Upload.Pull`, keyed by the URL path's ID.
    pub(crate) uploads: HashMap<String, crate::inputs::UploadSlot>,
    /// Content stores (`--cache-from`/`--cache-to type=local`, `oci-layout://` contexts).
    pub(crate) content: crate::content::Stores,
}

/// A running session; [`RunningSession::close`] ends it.
pub(crate) struct RunningSession {
    up: Option<JoinHandle<()>>,
    down: Option<JoinHandle<()>>,
    server: JoinHandle<()>,
    export_done: mpsc::UnboundedReceiver<Result<()>>,
}

impl RunningSession {
    /// Half-closes our side, waits briefly for the daemon to close its side, and stops serving.
    /// Returns the outcome of the export transfers, if any happened: the first that failed, or
    /// success.
    pub(crate) async fn close(mut self) -> Option<Result<()>> {
        if let Some(up) = &self.up {
            up.abort();
        }
        if let Some(down) = self.down.as_mut() {
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut *down).await;
            down.abort();
        }
        self.server.abort();
        let mut outcome = None;
        while let Ok(r) = self.export_done.try_recv() {
            match (&outcome, r) {
                (Some(Err(_)), _) => {}
                (_, r) => outcome = Some(r),
            }
        }
        outcome
    }
}

/// Opens `Control.Session` and serves the session over it.
pub(crate) async fn start(
    control: &mut ControlClient<Channel>,
    cfg: SessionConfig,
) -> Result<RunningSession> {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (methods, router) = services(&cfg, done_tx);

    let (server_io, tunnel_io) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        let incoming = tokio_stream::once(Ok::<_, std::io::Error>(server_io));
        let _ = router.serve_with_incoming(incoming).await;
    });
    let (mut rd, mut wr) = tokio::io::split(tunnel_io);
    let (tx, rx) = mpsc::channel::<ControlBytes>(8);
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let msg = ControlBytes {
                        data: buf[..n].to_vec(),
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
            }
        }
    });

    let mut req = Request::new(ReceiverStream::new(rx));
    add_session_headers(req.metadata_mut(), &cfg, &methods)?;
    let resp = match control.session(req).await {
        Ok(r) => r,
        Err(status) => {
            up.abort();
            server.abort();
            return Err(Error::rpc("Session", status));
        }
    };
    let mut inbound = resp.into_inner();
    let down = tokio::spawn(async move {
        while let Ok(Some(m)) = inbound.message().await {
            if wr.write_all(&m.data).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    Ok(RunningSession {
        up: Some(up),
        down: Some(down),
        server,
        export_done: done_rx,
    })
}

/// Opens the session through the Docker Engine's `POST /session` hijack (what buildx's docker
/// driver does) and serves it directly on that connection.
pub(crate) async fn start_docker(addr: &Address, cfg: SessionConfig) -> Result<RunningSession> {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (methods, router) = services(&cfg, done_tx);
    let mut headers = vec![
        ("X-Docker-Expose-Session-Uuid".to_owned(), cfg.id.clone()),
        ("X-Docker-Expose-Session-Name".to_owned(), cfg.name.clone()),
        (
            "X-Docker-Expose-Session-Sharedkey".to_owned(),
            cfg.shared_key.clone(),
        ),
    ];
    for m in &methods {
        headers.push((
            "X-Docker-Expose-Session-Grpc-Method".to_owned(),
            (*m).to_owned(),
        ));
    }
    let connect_err = |source| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let server = match addr {
        Address::DockerUnix(p) => {
            let s = tokio::net::UnixStream::connect(p)
                .await
                .map_err(connect_err)?;
            let s = docker_upgrade(s, "/session", &headers).await?;
            tokio::spawn(async move {
                let _ = router
                    .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(s)))
                    .await;
            })
        }
        Address::DockerTcp(h) => {
            let s = tokio::net::TcpStream::connect(h)
                .await
                .map_err(connect_err)?;
            let s = docker_upgrade(s, "/session", &headers).await?;
            tokio::spawn(async move {
                let _ = router
                    .serve_with_incoming(tokio_stream::once(Ok::<_, std::io::Error>(s)))
                    .await;
            })
        }
        other => {
            return Err(Error::InvalidAddress {
                addr: other.to_string(),
                reason: "the /session route needs a Docker Engine".to_owned(),
            });
        }
    };
    Ok(RunningSession {
        up: None,
        down: None,
        server,
        export_done: done_rx,
    })
}

fn add_session_headers(md: &mut MetadataMap, cfg: &SessionConfig, methods: &[&str]) -> Result<()> {
    let val = |s: &str| {
        MetadataValue::try_from(s)
            .map_err(|_| Error::InvalidOptions(format!("{s:?} is not a valid header value")))
    };
    md.insert("x-docker-expose-session-uuid", val(&cfg.id)?);
    md.insert("x-docker-expose-session-name", val(&cfg.name)?);
    md.insert("x-docker-expose-session-sharedkey", val(&cfg.shared_key)?);
    for m in methods {
        md.append("x-docker-expose-session-grpc-method", val(m)?);
    }
    Ok(())
}

pub(crate) fn services(
    cfg: &SessionConfig,
    done: mpsc::UnboundedSender<Result<()>>,
) -> (Vec<&'static str>, tonic::transport::server::Router) {
    let mut methods = vec!["/grpc.health.v1.Health/Check"];
    let mut builder = Server::builder()
        .initial_stream_window_size(Some(1 << 20))
        .initial_connection_window_size(Some(4 << 20));
    let health = HealthServer::new(HealthService);
    let mut router = builder.add_service(health);
    if !cfg.dirs.is_empty() {
        methods.push("/moby.filesync.v1.FileSync/DiffCopy");
        methods.push("/moby.filesync.v1.FileSync/TarStream");
        let svc = DiffCopyServer::<FileSyncRoute, _>::new(
            FileSyncService {
                dirs: Arc::new(cfg.dirs.clone()),
            },
            MAX_MESSAGE,
        );
        router = router.add_service(Served(svc));
    }
    if let Some(creds) = &cfg.credentials {
        methods.push("/moby.filesync.v1.Auth/Credentials");
        methods.push("/moby.filesync.v1.Auth/FetchToken");
        methods.push("/moby.filesync.v1.Auth/GetTokenAuthority");
        methods.push("/moby.filesync.v1.Auth/VerifyTokenAuthority");
        router = router.add_service(AuthServer::new(AuthProvider {
            creds: Arc::new(creds.clone()),
        }));
    }
    if !cfg.secrets.is_empty() {
        methods.push("/moby.buildkit.secrets.v1.Secrets/GetSecret");
        router = router.add_service(SecretsServer::new(SecretStore {
            secrets: Arc::new(cfg.secrets.clone()),
        }));
    }
    if !cfg.ssh.is_empty() {
        methods.push("/moby.sshforward.v1.SSH/CheckAgent");
        methods.push("/moby.sshforward.v1.SSH/ForwardAgent");
        router = router.add_service(
            SshServer::new(SshForwarder {
                agents: Arc::new(cfg.ssh.clone()),
            })
            .max_decoding_message_size(MAX_MESSAGE),
        );
    }
    if !cfg.content.dirs.is_empty() {
        methods.push("/containerd.services.content.v1.Content/Info");
        methods.push("/containerd.services.content.v1.Content/Read");
        if !cfg.content.writable.is_empty() {
            methods.push("/containerd.services.content.v1.Content/Write");
            methods.push("/containerd.services.content.v1.Content/Status");
            methods.push("/containerd.services.content.v1.Content/Abort");
        }
        let svc = crate::content::ContentServer::new(cfg.content.clone());
        router = router.add_service(Served(svc));
    }
    if !cfg.uploads.is_empty() {
        methods.push("/moby.upload.v1.Upload/Pull");
        router = router.add_service(UploadServer::new(UploadService {
            uploads: Arc::new(cfg.uploads.clone()),
        }));
    }
    if !cfg.exports.is_empty() {
        methods.push("/moby.filesync.v1.FileSend/DiffCopy");
        router = router.add_service(Served(FileSendRouter::new(&cfg.exports, &done)));
    }
    (methods, router)
}

/// Answers every health check with SERVING.
struct HealthService;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("health list is not served"))
    }

    type WatchStream = ReceiverStream<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("health watch is not served"))
    }
}

/// Serves named local directories to `FileSync.DiffCopy`.
struct FileSyncService {
    dirs: Arc<HashMap<String, PathBuf>>,
}

impl DiffCopy for FileSyncService {
    fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<mpsc::Receiver<Result<Packet, Status>>, Status> {
        let md = request.metadata();
        let name = metadata_values(md, "dir-name")
            .into_iter()
            .next()
            .unwrap_or_default();
        let Some(root) = self.dirs.get(&name).cloned() else {
            return Err(Status::not_found(format!(
                "no access allowed to dir \"{name}\""
            )));
        };
        let include = metadata_values(md, "include-patterns");
        let exclude = metadata_values(md, "exclude-patterns");
        let follow = metadata_values(md, "followpaths");
        let filter = Filter::new(&root, &include, &exclude, &follow)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(send::start(root, filter, request.into_inner()))
    }
}

/// Streams an uploaded context (an archive read from `-`) to the daemon's `Upload.Pull`, in
/// 32 KiB messages through a one-message channel, so memory stays flat.
struct UploadService {
    uploads: Arc<HashMap<String, crate::inputs::UploadSlot>>,
}

/// Bytes per `Upload.Pull` message (what buildx's `io.Copy` sends).
const UPLOAD_CHUNK: usize = 32 * 1024;

#[tonic::async_trait]
impl Upload for UploadService {
    type PullStream = ReceiverStream<Result<UploadBytes, Status>>;

    async fn pull(
        &self,
        request: Request<Streaming<UploadBytes>>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let path = metadata_values(request.metadata(), "urlpath")
            .into_iter()
            .next()
            .unwrap_or_default();
        let id = path.trim_start_matches('/');
        let Some(mut reader) = self.uploads.get(id).and_then(|s| s.take()) else {
            return Err(Status::not_found(format!(
                "no http response from session for {id}"
            )));
        };
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        let msg = UploadBytes {
                            data: buf[..n].to_vec(),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::aborted(format!("read the context: {e}"))))
                            .await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Receives a `local` export.
#[derive(Clone)]
struct TreeReceiver {
    dest: PathBuf,
    done: mpsc::UnboundedSender<Result<()>>,
}

impl DiffCopy for TreeReceiver {
    fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> Result<mpsc::Receiver<Result<Packet, Status>>, Status> {
        Ok(receive::start(
            self.dest.clone(),
            request.into_inner(),
            self.done.clone(),
        ))
    }
}

/// Receives a `tar` / `oci` / `docker` export as bytes.
#[derive(Clone)]
struct ByteReceiver {
    sink: ByteSink,
    done: mpsc::UnboundedSender<Result<()>>,
}

/// Where a byte export goes.
#[derive(Clone)]
enum ByteSink {
    /// This file, or stdout when `None`.
    File(Option<PathBuf>),
    /// A Docker Engine's `docker load`.
    Engine(EngineExport),
}

/// The gRPC metadata key in which the daemon names the exporter a `FileSend.DiffCopy` call
/// belongs to (BuildKit v0.13+; older daemons send none, which means exporter 0).
const EXPORTER_ID: &str = "buildkit-attachable-exporter-id";

/// `FileSend`, served for every exporter that sends files back: each `DiffCopy` call goes to
/// the receiver of the exporter its `buildkit-attachable-exporter-id` names (0 when the
/// daemon sends none or a value that is not a number, as the Go client reads it), so that
/// several outputs of one solve each get their own stream.
#[derive(Clone)]
struct FileSendRouter {
    targets: Arc<BTreeMap<usize, Receiver>>,
}

/// One exporter's receiver: an fsutil tree (`local`) or a byte stream (`tar`, `oci`,
/// `docker`, a load into the Engine). The two speak different messages on one method.
#[derive(Clone)]
enum Receiver {
    Tree(DiffCopyServer<FileSendRoute, TreeReceiver>),
    Bytes(BytesFileSendServer<ByteReceiver>),
}

impl FileSendRouter {
    fn new(
        exports: &BTreeMap<usize, ExportTarget>,
        done: &mpsc::UnboundedSender<Result<()>>,
    ) -> Self {
        let targets = exports
            .iter()
            .map(|(id, target)| {
                let bytes = |sink| {
                    Receiver::Bytes(
                        BytesFileSendServer::new(ByteReceiver {
                            sink,
                            done: done.clone(),
                        })
                        .max_decoding_message_size(MAX_MESSAGE),
                    )
                };
                let r = match target {
                    ExportTarget::Dir(dest) => Receiver::Tree(DiffCopyServer::new(
                        TreeReceiver {
                            dest: dest.clone(),
                            done: done.clone(),
                        },
                        MAX_MESSAGE,
                    )),
                    ExportTarget::Bytes(dest) => bytes(ByteSink::File(dest.clone())),
                    ExportTarget::Engine(export) => bytes(ByteSink::Engine(export.clone())),
                };
                (*id, r)
            })
            .collect();
        FileSendRouter {
            targets: Arc::new(targets),
        }
    }
}

/// The exporter ID a `FileSend` call names: the first `buildkit-attachable-exporter-id`
/// value as a decimal number; 0 when there is none or it does not parse.
fn exporter_id(headers: &http::HeaderMap) -> usize {
    headers
        .get(EXPORTER_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl Routes for FileSendRouter {
    const NAME: &'static str = "moby.filesync.v1.FileSend";

    fn route<B>(&self, path: &str, req: http::Request<B>) -> BoxFut<HttpResponse>
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        let id = exporter_id(req.headers());
        match self.targets.get(&id) {
            Some(Receiver::Tree(svc)) => svc.route(path, req),
            Some(Receiver::Bytes(svc)) => {
                let svc = svc.clone();
                Box::pin(async move { tower::ServiceExt::oneshot(svc, req).await })
            }
            None => {
                let status = Status::unknown(format!("exporter {id} not found"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[tonic::async_trait]
impl BytesFileSend for ByteReceiver {
    type DiffCopyStream = ReceiverStream<Result<FileBytes, Status>>;

    async fn diff_copy(
        &self,
        request: Request<Streaming<FileBytes>>,
    ) -> Result<Response<Self::DiffCopyStream>, Status> {
        let (tx, rx) = mpsc::channel(1);
        let sink = self.sink.clone();
        let done = self.done.clone();
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            let result = match sink {
                ByteSink::File(dest) => copy_bytes(dest, &mut inbound).await,
                ByteSink::Engine(export) => load_into_engine(&export, &mut inbound).await,
            };
            // The outcome is recorded before the daemon hears of a failure, so that it is
            // there when the solve returns.
            let failure = result.as_ref().err().map(|e| crate::error::chain(e));
            let _ = done.send(result);
            if let Some(message) = failure {
                let _ = tx.send(Err(Status::aborted(message))).await;
            }
            drop(tx);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn copy_bytes(dest: Option<PathBuf>, inbound: &mut Streaming<FileBytes>) -> Result<()> {
    let label = dest.clone().unwrap_or_else(|| PathBuf::from("<stdout>"));
    let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &dest {
        Some(p) => Box::new(
            tokio::fs::File::create(p)
                .await
                .map_err(|e| Error::io("create", p, e))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    loop {
        match inbound.message().await {
            Ok(Some(m)) => sink
                .write_all(&m.data)
                .await
                .map_err(|e| Error::io("write", &label, e))?,
            Ok(None) => break,
            Err(status) => return Err(Error::Session(format!("export stream: {status}"))),
        }
    }
    sink.flush()
        .await
        .map_err(|e| Error::io("write", &label, e))?;
    if let Some(p) = &dest {
        // Make the bytes durable before the build reports success.
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .await
            .map_err(|e| Error::io("open", p, e))?;
        f.sync_all().await.map_err(|e| Error::io("sync", p, e))?;
    }
    Ok(())
}

/// Streams the export into the Engine's `POST /images/load` as it arrives (never more than a
/// few messages in memory), then reports the Engine's answer as the `importing to docker` step.
async fn load_into_engine(export: &EngineExport, inbound: &mut Streaming<FileBytes>) -> Result<()> {
    let mut load = crate::engine::LoadRequest::start(&export.addr).await?;
    loop {
        match inbound.message().await {
            Ok(Some(m)) => {
                if !load.send(m.data.into()).await {
                    // The Engine stopped reading; its answer says why.
                    break;
                }
            }
            Ok(None) => break,
            Err(status) => {
                return Err(load.abort(Error::Session(format!("export stream: {status}"))));
            }
        }
    }
    let mut step = ImportStep::start(export.progress.clone());
    let result = load.finish(&mut |m| step.message(m)).await;
    step.complete(result.as_ref().err());
    let loaded = result?;
    if let Ok(mut images) = export.loaded.lock() {
        *images = loaded.images;
    }
    Ok(())
}

/// The `importing to docker` step buildx shows while the Engine loads the archive: one vertex,
/// a `loading layer ID` item per layer (updated at most every 2 seconds, as buildx does), and
/// the Engine's output lines (`Loaded image: …`) as the step's log.
struct ImportStep {
    out: mpsc::UnboundedSender<StatusResponse>,
    vertex: Vertex,
    layers: Vec<(ProtoVertexStatus, std::time::Instant)>,
}

/// The least time between two updates of one layer's item.
const LAYER_UPDATE: Duration = Duration::from_secs(2);

impl ImportStep {
    fn start(out: mpsc::UnboundedSender<StatusResponse>) -> Self {
        let id = crate::solve::random_id();
        let hex: String = ring::digest::digest(&ring::digest::SHA256, id.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let vertex = Vertex {
            digest: format!("sha256:{hex}"),
            name: "importing to docker".to_owned(),
            started: Some(now()),
            ..Vertex::default()
        };
        let _ = out.send(StatusResponse {
            vertexes: vec![vertex.clone()],
            ..StatusResponse::default()
        });
        ImportStep {
            out,
            vertex,
            layers: Vec::new(),
        }
    }

    fn message(&mut self, m: &crate::engine::LoadMessage) {
        let mut resp = StatusResponse::default();
        match (&m.id, m.progress) {
            (Some(layer), Some((current, total))) => {
                let id = format!("loading layer {layer}");
                let at = std::time::Instant::now();
                let pos = self.layers.iter().position(|(s, _)| s.id == id);
                let (st, last) = match pos {
                    Some(i) => &mut self.layers[i],
                    None => {
                        self.layers.push((
                            ProtoVertexStatus {
                                id,
                                vertex: self.vertex.digest.clone(),
                                started: Some(now()),
                                ..ProtoVertexStatus::default()
                            },
                            at.checked_sub(LAYER_UPDATE).unwrap_or(at),
                        ));
                        let last = self.layers.len() - 1;
                        &mut self.layers[last]
                    }
                };
                st.current = i64::try_from(current).unwrap_or(i64::MAX);
                st.total = i64::try_from(total).unwrap_or(i64::MAX);
                if at.duration_since(*last) < LAYER_UPDATE {
                    return;
                }
                *last = at;
                st.timestamp = Some(now());
                resp.statuses.push(st.clone());
            }
            (None, None) if !m.text.is_empty() => resp.logs.push(VertexLog {
                vertex: self.vertex.digest.clone(),
                timestamp: Some(now()),
                stream: 1,
                msg: format!("{}\n", m.text).into_bytes(),
            }),
            _ => return,
        }
        let _ = self.out.send(resp);
    }

    fn complete(self, failure: Option<&Error>) {
        let end = now();
        let mut resp = StatusResponse::default();
        for (mut st, _) in self.layers {
            st.timestamp = Some(end);
            st.completed = Some(end);
            resp.statuses.push(st);
        }
        resp.vertexes.push(Vertex {
            completed: Some(end),
            error: failure.map(|e| crate::error::chain(e)).unwrap_or_default(),
            ..self.vertex
        });
        let _ = self.out.send(resp);
    }
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// All values of a metadata key, URL-unescaped when the daemon flagged them `<key>-encoded`.
fn metadata_values(md: &MetadataMap, key: &str) -> Vec<String> {
    let encoded = md
        .get(format!("{key}-encoded").as_str())
        .and_then(|v| v.to_str().ok())
        == Some("1");
    md.get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|s| {
            if encoded {
                query_unescape(s)
            } else {
                s.to_owned()
            }
        })
        .collect()
}

/// Go's `url.QueryUnescape` (invalid escapes are kept as they are).
pub(crate) fn query_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::health::health_client::HealthClient;
    use bollard_buildkit_proto::moby::buildkit::secrets::v1::GetSecretRequest;
    use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_client::SecretsClient;
    use bollard_buildkit_proto::moby::sshforward::v1::ssh_client::SshClient;
    use bollard_buildkit_proto::moby::sshforward::v1::{
        BytesMessage as SshBytes, CheckAgentRequest,
    };

    /// Serves the session services on one end of an in-memory pipe and returns a channel
    /// connected to the other end, the way the daemon reaches them.
    async fn serve(cfg: SessionConfig) -> Channel {
        let (done, _) = mpsc::unbounded_channel();
        let (_, router) = services(&cfg, done);
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let incoming = tokio_stream::once(Ok::<_, std::io::Error>(server_io));
            let _ = router.serve_with_incoming(incoming).await;
        });
        let slot = Arc::new(std::sync::Mutex::new(Some(client_io)));
        crate::transport::connect_with("in-memory", move || {
            let io = slot.lock().ok().and_then(|mut s| s.take());
            async move { io.ok_or_else(|| std::io::Error::other("used")) }
        })
        .await
        .expect("channel")
    }

    /// The unix and TCP transports carry gRPC (checked against our own health service).
    #[tokio::test]
    async fn unix_and_tcp_transports_carry_grpc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.sock");
        let ul = tokio::net::UnixListener::bind(&path).expect("bind unix");
        let tl = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tcp");
        let port = tl.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(HealthServer::new(HealthService))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(ul))
                .await;
        });
        tokio::spawn(async move {
            let _ = Server::builder()
                .add_service(HealthServer::new(HealthService))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(tl))
                .await;
        });
        for addr in [
            format!("unix://{}", path.display()),
            format!("tcp://127.0.0.1:{port}"),
        ] {
            let a = crate::Address::parse(&addr).expect("address");
            let ch = crate::transport::connect(&a).await.expect("connect");
            let r = HealthClient::new(ch)
                .check(HealthCheckRequest::default())
                .await
                .expect("check");
            assert_eq!(
                r.into_inner().status,
                ServingStatus::Serving as i32,
                "{addr}"
            );
        }
    }

    #[tokio::test]
    async fn health_secrets_and_ssh_forwarding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent_path = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&agent_path).expect("bind");
        // A fake agent: answers each read with the bytes reversed.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut r = buf[..n].to_vec();
                        r.reverse();
                        if s.write_all(&r).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let secret_file = dir.path().join("s.txt");
        std::fs::write(&secret_file, b"file-secret").expect("write");
        let cfg = SessionConfig {
            secrets: HashMap::from([(
                "f".to_owned(),
                crate::SecretSource::File(secret_file.clone()),
            )]),
            ssh: HashMap::from([(
                "default".to_owned(),
                crate::attachables::AgentTarget::Socket(agent_path.clone()),
            )]),
            ..SessionConfig::default()
        };
        let ch = serve(cfg).await;

        let h = HealthClient::new(ch.clone())
            .check(HealthCheckRequest::default())
            .await
            .expect("health");
        assert_eq!(h.into_inner().status, ServingStatus::Serving as i32);

        let mut sec = SecretsClient::new(ch.clone());
        let got = sec
            .get_secret(GetSecretRequest {
                id: "f".into(),
                ..GetSecretRequest::default()
            })
            .await
            .expect("secret");
        assert_eq!(got.into_inner().data, b"file-secret");
        let missing = sec
            .get_secret(GetSecretRequest {
                id: "nope".into(),
                ..GetSecretRequest::default()
            })
            .await
            .expect_err("unknown id");
        assert_eq!(missing.code(), tonic::Code::NotFound);

        let mut ssh = SshClient::new(ch.clone());
        ssh.check_agent(CheckAgentRequest { id: String::new() })
            .await
            .expect("default agent");
        let e = ssh
            .check_agent(CheckAgentRequest { id: "other".into() })
            .await
            .expect_err("unknown agent");
        assert_eq!(e.code(), tonic::Code::NotFound);
        let (tx, rx) = mpsc::channel(1);
        tx.send(SshBytes {
            data: b"hello".to_vec(),
        })
        .await
        .expect("send");
        let mut req = Request::new(ReceiverStream::new(rx));
        req.metadata_mut()
            .insert("buildkit.ssh.id", MetadataValue::from_static("default"));
        let mut back = ssh.forward_agent(req).await.expect("forward").into_inner();
        let first = back.message().await.expect("recv").expect("a message");
        assert_eq!(first.data, b"olleh");
    }

    /// Reads a blob from the session content store: `Info`, then ranged `Read`s.
    #[tokio::test]
    async fn content_store_info_and_ranged_reads() {
        use crate::content::{
            InfoRequest, InfoResponse, ProstCodec, ReadContentRequest, ReadContentResponse, Stores,
        };
        let d = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let hex = "cd".repeat(32);
        std::fs::create_dir_all(d.path().join("blobs/sha256")).expect("mkdir");
        std::fs::write(d.path().join("blobs/sha256").join(&hex), &data).expect("write");
        let cfg = SessionConfig {
            content: Stores {
                dirs: HashMap::from([("local:c".to_owned(), d.path().to_path_buf())]),
                ..Stores::default()
            },
            ..SessionConfig::default()
        };
        let ch = serve(cfg).await;
        let mut grpc = tonic::client::Grpc::new(ch);
        let digest = format!("sha256:{hex}");
        fn with_store<T>(msg: T) -> Request<T> {
            let mut r = Request::new(msg);
            r.metadata_mut().insert(
                "buildkit-attachable-store-id",
                MetadataValue::from_static("local:c"),
            );
            r
        }
        grpc.ready().await.expect("ready");
        let info: InfoResponse = grpc
            .unary(
                with_store(InfoRequest {
                    digest: digest.clone(),
                }),
                "/containerd.services.content.v1.Content/Info"
                    .parse()
                    .expect("path"),
                ProstCodec::<InfoRequest, InfoResponse>::default(),
            )
            .await
            .expect("info")
            .into_inner();
        assert_eq!(info.info.expect("info").size, data.len() as i64);

        for (offset, size) in [(0i64, 0i64), (1000, 300_000), (599_990, 100)] {
            grpc.ready().await.expect("ready");
            let mut stream = grpc
                .server_streaming(
                    with_store(ReadContentRequest {
                        digest: digest.clone(),
                        offset,
                        size,
                    }),
                    "/containerd.services.content.v1.Content/Read"
                        .parse()
                        .expect("path"),
                    ProstCodec::<ReadContentRequest, ReadContentResponse>::default(),
                )
                .await
                .expect("read")
                .into_inner();
            let mut got = Vec::new();
            while let Some(m) = stream.message().await.expect("message") {
                assert_eq!(m.offset, offset + got.len() as i64);
                got.extend_from_slice(&m.data);
            }
            let end = if size == 0 {
                data.len()
            } else {
                (offset + size).min(data.len() as i64) as usize
            };
            assert_eq!(got, &data[offset as usize..end], "{offset}+{size}");
        }

        grpc.ready().await.expect("ready");
        let missing = grpc
            .unary(
                with_store(InfoRequest {
                    digest: format!("sha256:{}", "ee".repeat(32)),
                }),
                "/containerd.services.content.v1.Content/Info"
                    .parse()
                    .expect("path"),
                ProstCodec::<InfoRequest, InfoResponse>::default(),
            )
            .await
            .expect_err("missing blob");
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }

    /// Writes blobs into a writable session content store as containerd's proxy writer does:
    /// `STAT`, `WRITE`s, `COMMIT`; a second write of the same digest is refused with
    /// AlreadyExists, a wrong digest fails, and read-only stores refuse writes.
    #[tokio::test]
    async fn content_store_writes_commit_verified_blobs() {
        use crate::content::{
            ProstCodec, RefRequest, Stores, WriteContentRequest, WriteContentResponse,
        };
        let d = tempfile::tempdir().expect("tempdir");
        let ro = tempfile::tempdir().expect("tempdir");
        let cfg = SessionConfig {
            content: Stores {
                dirs: HashMap::from([
                    ("local:w".to_owned(), d.path().to_path_buf()),
                    ("local:r".to_owned(), ro.path().to_path_buf()),
                ]),
                writable: ["local:w".to_owned()].into(),
            },
            ..SessionConfig::default()
        };
        let ch = serve(cfg).await;
        let mut grpc = tonic::client::Grpc::new(ch);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let hex: String = ring::digest::digest(&ring::digest::SHA256, &data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let digest = format!("sha256:{hex}");
        let write = |store: &'static str, msgs: Vec<WriteContentRequest>| {
            let mut r = Request::new(tokio_stream::iter(msgs));
            r.metadata_mut().insert(
                "buildkit-attachable-store-id",
                MetadataValue::from_static(store),
            );
            r
        };
        let path = || {
            "/containerd.services.content.v1.Content/Write"
                .parse()
                .expect("path")
        };
        let mut msgs = vec![WriteContentRequest {
            action: 0,
            r#ref: "ref-1".into(),
            total: data.len() as i64,
            expected: digest.clone(),
            ..WriteContentRequest::default()
        }];
        for (i, chunk) in data.chunks(100_000).enumerate() {
            msgs.push(WriteContentRequest {
                action: 1,
                r#ref: "ref-1".into(),
                offset: (i * 100_000) as i64,
                data: chunk.to_vec(),
                ..WriteContentRequest::default()
            });
        }
        msgs.push(WriteContentRequest {
            action: 2,
            r#ref: "ref-1".into(),
            total: data.len() as i64,
            offset: data.len() as i64,
            expected: digest.clone(),
            ..WriteContentRequest::default()
        });
        grpc.ready().await.expect("ready");
        let mut stream = grpc
            .streaming(
                write("local:w", msgs.clone()),
                path(),
                ProstCodec::<WriteContentRequest, WriteContentResponse>::default(),
            )
            .await
            .expect("write")
            .into_inner();
        let mut last = None;
        while let Some(m) = stream.message().await.expect("response") {
            last = Some(m);
        }
        let last = last.expect("a commit response");
        assert_eq!((last.action, last.offset), (2, data.len() as i64));
        assert_eq!(last.digest, digest);
        let blob = d.path().join("blobs/sha256").join(&hex);
        assert_eq!(std::fs::read(&blob).expect("blob"), data);
        assert_eq!(
            std::fs::read_dir(d.path().join("ingest"))
                .expect("ingest")
                .count(),
            0,
            "no temporary file is left"
        );

        // The same digest again: AlreadyExists right after the STAT.
        grpc.ready().await.expect("ready");
        let again = grpc
            .streaming(
                write("local:w", msgs[..1].to_vec()),
                path(),
                ProstCodec::<WriteContentRequest, WriteContentResponse>::default(),
            )
            .await;
        let code = match again {
            Err(s) => s.code(),
            Ok(r) => r.into_inner().message().await.expect_err("refused").code(),
        };
        assert_eq!(code, tonic::Code::AlreadyExists);

        // A wrong expected digest fails the commit and leaves nothing behind.
        let wrong = format!("sha256:{}", "0".repeat(64));
        let bad = vec![
            WriteContentRequest {
                action: 1,
                r#ref: "ref-2".into(),
                data: b"abc".to_vec(),
                ..WriteContentRequest::default()
            },
            WriteContentRequest {
                action: 2,
                r#ref: "ref-2".into(),
                offset: 3,
                expected: wrong.clone(),
                ..WriteContentRequest::default()
            },
        ];
        grpc.ready().await.expect("ready");
        let mut stream = grpc
            .streaming(
                write("local:w", bad.clone()),
                path(),
                ProstCodec::<WriteContentRequest, WriteContentResponse>::default(),
            )
            .await
            .expect("write")
            .into_inner();
        let err = loop {
            match stream.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the commit succeeded"),
                Err(s) => break s,
            }
        };
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(!d.path().join("blobs/sha256").join("0".repeat(64)).exists());

        // Read-only stores refuse writes; Status and Abort of an unknown ref are NotFound.
        grpc.ready().await.expect("ready");
        let ro_err = grpc
            .streaming(
                write("local:r", bad),
                path(),
                ProstCodec::<WriteContentRequest, WriteContentResponse>::default(),
            )
            .await
            .expect_err("read-only");
        assert_eq!(ro_err.code(), tonic::Code::PermissionDenied);
        for method in ["Status", "Abort"] {
            let mut r = Request::new(RefRequest {
                r#ref: "nope".into(),
            });
            r.metadata_mut().insert(
                "buildkit-attachable-store-id",
                MetadataValue::from_static("local:w"),
            );
            grpc.ready().await.expect("ready");
            let e = grpc
                .unary(
                    r,
                    format!("/containerd.services.content.v1.Content/{method}")
                        .parse()
                        .expect("path"),
                    ProstCodec::<RefRequest, ()>::default(),
                )
                .await
                .expect_err("unknown ref");
            assert_eq!(e.code(), tonic::Code::NotFound, "{method}");
        }
    }

    /// Each `FileSend.DiffCopy` call reaches the receiver of the exporter its
    /// `buildkit-attachable-exporter-id` names; no ID (or one that is not a number) is exporter
    /// 0, as for daemons before v0.13; an unknown ID is refused with the Go client's text.
    #[tokio::test]
    async fn file_send_calls_are_routed_by_exporter_id() {
        use bollard_buildkit_proto::moby::filesync::v1::file_send_client::FileSendClient;
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b) = (d.path().join("a.tar"), d.path().join("b.tar"));
        let cfg = SessionConfig {
            exports: BTreeMap::from([
                (0, ExportTarget::Bytes(Some(a.clone()))),
                (2, ExportTarget::Bytes(Some(b.clone()))),
                (3, ExportTarget::Dir(d.path().join("tree"))),
            ]),
            ..SessionConfig::default()
        };
        let (methods, _) = services(&cfg, mpsc::unbounded_channel().0);
        assert_eq!(
            methods
                .iter()
                .filter(|m| **m == "/moby.filesync.v1.FileSend/DiffCopy")
                .count(),
            1,
            "one advertised method for every exporter"
        );
        let ch = serve(cfg).await;
        let send = |id: Option<&'static str>, data: &'static [u8]| {
            let mut c = FileSendClient::new(ch.clone());
            async move {
                let mut req = Request::new(tokio_stream::iter(vec![FileBytes {
                    data: data.to_vec(),
                }]));
                if let Some(id) = id {
                    req.metadata_mut()
                        .insert(EXPORTER_ID, MetadataValue::from_static(id));
                }
                let mut back = c.diff_copy(req).await?.into_inner();
                while back.message().await?.is_some() {}
                Ok::<_, Status>(())
            }
        };
        send(Some("2"), b"second").await.expect("exporter 2");
        send(None, b"first").await.expect("exporter 0");
        assert_eq!(std::fs::read(&b).expect("b"), b"second");
        assert_eq!(std::fs::read(&a).expect("a"), b"first");
        send(Some("x"), b"again").await.expect("not a number: 0");
        assert_eq!(std::fs::read(&a).expect("a"), b"again");
        let e = send(Some("1"), b"lost").await.expect_err("no exporter 1");
        assert_eq!(e.message(), "exporter 1 not found");
        // A tree receiver answers fsutil packets, not bytes: the byte message is no packet
        // of a transfer it can finish, so the call fails rather than writing bytes somewhere.
        assert!(send(Some("3"), b"\x08\x09").await.is_err());
    }

    #[test]
    fn unescape() {
        assert_eq!(query_unescape("a%2Fb+c%C3%A9"), "a/b cé");
        assert_eq!(query_unescape("100%"), "100%");
        assert_eq!(query_unescape("%zz"), "%zz");
        assert_eq!(query_unescape("%41"), "A");
    }
}

//! The Control API client: workers, daemon info, disk usage, capabilities.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::buildkit::v1::{
    DiskUsageRequest, InfoRequest, ListWorkersRequest, PruneRequest, UsageRecord,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

use crate::session::MAX_MESSAGE;
use crate::transport::{self, Address};
use crate::{Error, Result};

/// Which kind of daemon is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// A standalone buildkitd (unix socket, TCP, `buildctl dial-stdio`, a pod).
    Buildkitd,
    /// The BuildKit embedded in the Docker Engine (reached through `/grpc`).
    Docker,
}

/// A connection to one BuildKit daemon. Cheap to clone; clones share the HTTP/2 connection, so
/// several builds can run at once.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) control: ControlClient<Channel>,
    /// The channel itself, for the daemon's other services (containerd's content store).
    pub(crate) channel: Channel,
    backend: Backend,
    docker: Option<Address>,
    docker_session_route: bool,
}

/// One BuildKit worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    /// The worker ID (`moby` on Docker).
    pub id: String,
    /// Platforms it can build for, as `os/arch[/variant]`.
    pub platforms: Vec<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The BuildKit version it reports (v0.11+ only).
    pub buildkit_version: Option<String>,
}

/// What the daemon says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// BuildKit version, e.g. `v0.29.0`; for old daemons without the `Info` call, the best
    /// guess (`v0.8` for Docker 20.10) or `None`.
    pub buildkit_version: Option<String>,
    /// The BuildKit package (`github.com/moby/buildkit`) when `Info` answered.
    pub package: Option<String>,
    /// The Docker Engine version, when the daemon is a Docker Engine.
    pub docker_version: Option<String>,
    /// Whether the daemon implements `Control.Info` (BuildKit v0.11+).
    pub has_info_api: bool,
}

/// One cache record from `DiskUsage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord {
    /// Record ID.
    pub id: String,
    /// Size in bytes.
    pub size: i64,
    /// Whether it is in use.
    pub in_use: bool,
    /// Whether it is mutable.
    pub mutable: bool,
    /// Record type, e.g. `regular`, `source.local`.
    pub record_type: String,
    /// Description, e.g. `local source for context`.
    pub description: String,
    /// IDs of the records this one is built on (the deprecated single `parent` included).
    pub parents: Vec<String>,
    /// When the record was created.
    pub created_at: Option<SystemTime>,
    /// When the record was last used.
    pub last_used_at: Option<SystemTime>,
    /// How many times it was used.
    pub usage_count: i64,
    /// Whether its data is shared with other records or images.
    pub shared: bool,
}

fn system_time(ts: Option<Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    match u64::try_from(ts.seconds) {
        Ok(secs) => UNIX_EPOCH.checked_add(Duration::new(secs, nanos)),
        Err(_) => UNIX_EPOCH
            .checked_sub(Duration::from_secs(ts.seconds.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos))),
    }
}

impl From<UsageRecord> for CacheRecord {
    #[allow(
        deprecated,
        reason = "BuildKit before v0.12 (Docker 20.10) only fills the single `parent`"
    )]
    fn from(r: UsageRecord) -> Self {
        let mut parents = r.parents;
        if parents.is_empty() && !r.parent.is_empty() {
            parents.push(r.parent);
        }
        CacheRecord {
            id: r.id,
            size: r.size,
            in_use: r.in_use,
            mutable: r.mutable,
            record_type: r.record_type,
            description: r.description,
            parents,
            created_at: system_time(r.created_at),
            last_used_at: system_time(r.last_used_at),
            usage_count: r.usage_count,
            shared: r.shared,
        }
    }
}

/// What `Prune` removes (BuildKit's `PruneRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Everything unused, not only what BuildKit deems reclaimable (internal and frontend
    /// images included).
    pub all: bool,
    /// Keep records used more recently than this.
    pub keep_duration: Option<Duration>,
    /// Bytes of cache always kept (`--reserved-space`, formerly `--keep-storage`).
    pub reserved_space: i64,
    /// BuildKit filter expressions, e.g. `type==regular,description~=context`.
    pub filters: Vec<String>,
}

/// What a daemon can do; decides which exporters and request fields a build uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Docker or buildkitd.
    pub backend: Backend,
    /// Version information.
    pub info: DaemonInfo,
    /// Exporter types the daemon has.
    pub exporters: Vec<&'static str>,
    /// Whether `SolveRequest.Exporters` (field 13, several exporters) is understood (v0.13+).
    pub multiple_exporters: bool,
    /// Cache export types (`--cache-to`).
    pub cache_exporters: Vec<&'static str>,
    /// Cache import types (`--cache-from`).
    pub cache_importers: Vec<&'static str>,
    /// Whether the built-in Dockerfile frontend resolves named contexts (`context:<name>`
    /// attributes, `--build-context`): BuildKit v0.10+ (Docker 23+). Older frontends ignore the
    /// attributes silently, so builds with named contexts are refused there.
    pub named_contexts: bool,
    /// Whether `oci-layout://` named contexts work (the Dockerfile frontend of BuildKit v0.11+,
    /// which reads them through the session content store).
    pub oci_layout_contexts: bool,
    /// Whether the daemon can attach attestations (provenance, SBOM) to images: a standalone
    /// BuildKit v0.11+. A Docker Engine is assumed not to (that needs its containerd image
    /// store).
    pub attestations: bool,
}

impl Capabilities {
    /// Whether the daemon has exporter `kind`.
    pub fn supports_exporter(&self, kind: &str) -> bool {
        self.exporters.contains(&kind)
    }

    /// A short name for error messages.
    pub fn daemon_name(&self) -> String {
        let v = match self.info.buildkit_version.as_deref() {
            Some(v) => format!(" {v}"),
            None => String::new(),
        };
        match (&self.backend, &self.info.docker_version) {
            (Backend::Docker, Some(d)) => format!("Docker {d}'s embedded BuildKit{v}"),
            (Backend::Docker, None) => format!("Docker's embedded BuildKit{v}"),
            _ if v.is_empty() => "buildkitd (version unknown)".to_owned(),
            _ => format!("buildkitd{v}"),
        }
    }
}

/// Named contexts arrived with the Dockerfile frontend 1.4 in BuildKit v0.10 (Docker 23.0).
/// A known BuildKit version decides; otherwise a Docker Engine's own version does, and a
/// buildkitd of unknown version (no `Info`, so before v0.11) is given the benefit of the doubt.
pub(crate) fn named_contexts_supported(backend: Backend, info: &DaemonInfo) -> bool {
    if let Some(v) = info.buildkit_version.as_deref().and_then(parse_version) {
        return v >= (0, 10);
    }
    match backend {
        Backend::Docker => info
            .docker_version
            .as_deref()
            .and_then(|d| d.split('.').next())
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|major| major >= 23),
        Backend::Buildkitd => true,
    }
}

/// Docker's embedded BuildKit has exactly one worker, with the ID `moby`.
pub(crate) fn is_docker_worker_set(workers: &[Worker]) -> bool {
    !workers.is_empty() && workers.iter().all(|w| w.id == "moby")
}

/// `(major, minor)` of a version like `v0.13.2` or `0.8`.
pub(crate) fn parse_version(v: &str) -> Option<(u32, u32)> {
    let v = v.trim_start_matches('v');
    let mut it = v.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

impl Client {
    /// Connects to `addr` (see [`Address::parse`]).
    ///
    /// # Errors
    /// Address, connect, upgrade and HTTP/2 errors.
    pub async fn connect(addr: &str) -> Result<Self> {
        let addr = Address::parse(addr)?;
        let channel = transport::connect(&addr).await?;
        let mut c = Client::new(
            channel,
            if addr.is_docker() {
                Backend::Docker
            } else {
                Backend::Buildkitd
            },
        );
        if addr.is_docker() {
            c.docker = Some(addr);
            c.docker_session_route = true;
        }
        Ok(c)
    }

    /// Connects to a standalone buildkitd at `addr` (`unix://…` or `tcp://…`) over TLS.
    ///
    /// # Errors
    /// See [`transport::connect_tls`].
    pub async fn connect_tls(addr: &str, tls: &transport::TlsOptions) -> Result<Self> {
        let addr = Address::parse(addr)?;
        let channel = transport::connect_tls(&addr, tls).await?;
        Ok(Client::new(channel, Backend::Buildkitd))
    }

    /// Wraps an existing channel (from [`transport::connect_with`] for instance).
    pub fn new(channel: Channel, backend: Backend) -> Self {
        Client {
            control: ControlClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            channel,
            backend,
            docker: None,
            docker_session_route: false,
        }
    }

    /// On a Docker Engine, open build sessions with `POST /session` (as buildx's docker driver
    /// does; the default after [`Client::connect`] to a Docker address, and about 30 % faster
    /// for uploads) or, with `false`, tunnel them through `Control.Session`. No effect on other
    /// daemons, which only have `Control.Session`.
    pub fn with_docker_session_route(mut self, yes: bool) -> Self {
        self.docker_session_route = yes;
        self
    }

    /// The Docker address when sessions should use the `/session` route.
    pub(crate) fn session_route(&self) -> Option<&Address> {
        self.docker.as_ref().filter(|_| self.docker_session_route)
    }

    /// The kind of daemon.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The daemon's workers (`ListWorkers`).
    ///
    /// # Errors
    /// [`Error::Rpc`].
    pub async fn list_workers(&self) -> Result<Vec<Worker>> {
        let resp = self
            .control
            .clone()
            .list_workers(ListWorkersRequest::default())
            .await
            .map_err(|s| Error::rpc("ListWorkers", s))?
            .into_inner();
        Ok(resp
            .record
            .into_iter()
            .map(|w| Worker {
                id: w.id,
                platforms: w
                    .platforms
                    .into_iter()
                    .map(|p| {
                        let mut s = format!("{}/{}", p.os, p.architecture);
                        if !p.variant.is_empty() {
                            s = format!("{s}/{}", p.variant);
                        }
                        s
                    })
                    .collect(),
                labels: w.labels.into_iter().collect(),
                buildkit_version: w.buildkit_version.map(|v| v.version),
            })
            .collect())
    }

    /// Version information. Uses `Control.Info`; when the daemon answers Unimplemented (BuildKit
    /// before v0.11, e.g. Docker 20.10's v0.8) falls back to the workers' versions and, on
    /// Docker, to the Engine's `GET /version`.
    ///
    /// # Errors
    /// [`Error::Rpc`] for failures other than Unimplemented.
    pub async fn info(&self) -> Result<DaemonInfo> {
        let docker_version = match (&self.backend, &self.docker) {
            (Backend::Docker, Some(addr)) => docker_engine_version(addr).await.ok(),
            _ => None,
        };
        match self.control.clone().info(InfoRequest {}).await {
            Ok(resp) => {
                let v = resp.into_inner().buildkit_version;
                Ok(DaemonInfo {
                    buildkit_version: v.as_ref().map(|v| v.version.clone()),
                    package: v.map(|v| v.package),
                    docker_version,
                    has_info_api: true,
                })
            }
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                let from_workers = self
                    .list_workers()
                    .await?
                    .into_iter()
                    .find_map(|w| w.buildkit_version);
                let guess = from_workers.or_else(|| match docker_version.as_deref() {
                    Some(d) if d.starts_with("20.10") => Some("v0.8".to_owned()),
                    _ if self.backend == Backend::Docker => None,
                    _ => None,
                });
                Ok(DaemonInfo {
                    buildkit_version: guess,
                    package: None,
                    docker_version,
                    has_info_api: false,
                })
            }
            Err(s) => Err(Error::rpc("Info", s)),
        }
    }

    /// Build cache records (`DiskUsage`).
    ///
    /// # Errors
    /// [`Error::Rpc`].
    pub async fn disk_usage(&self) -> Result<Vec<CacheRecord>> {
        self.disk_usage_filtered(&[]).await
    }

    /// Build cache records matching BuildKit filter expressions (`DiskUsage` with `filter`),
    /// e.g. `["type==regular"]`; every record for an empty list.
    ///
    /// # Errors
    /// [`Error::Rpc`].
    pub async fn disk_usage_filtered(&self, filters: &[String]) -> Result<Vec<CacheRecord>> {
        let resp = self
            .control
            .clone()
            .disk_usage(DiskUsageRequest {
                filter: filters.to_vec(),
                ..DiskUsageRequest::default()
            })
            .await
            .map_err(|s| Error::rpc("DiskUsage", s))?
            .into_inner();
        Ok(resp.record.into_iter().map(CacheRecord::from).collect())
    }

    /// Removes build cache (`Prune`): everything unused when `all`, otherwise what BuildKit
    /// deems reclaimable; `keep_duration` keeps records used more recently than that. Returns
    /// the removed records.
    ///
    /// # Errors
    /// [`Error::Rpc`].
    pub async fn prune(
        &self,
        all: bool,
        keep_duration: Option<Duration>,
    ) -> Result<Vec<CacheRecord>> {
        self.prune_with(
            &PruneOptions {
                all,
                keep_duration,
                ..PruneOptions::default()
            },
            |_| {},
        )
        .await
    }

    /// Removes build cache as `opts` says, calling `on_removed` for each record as the daemon
    /// reports it; returns the removed records.
    ///
    /// # Errors
    /// [`Error::Rpc`].
    pub async fn prune_with(
        &self,
        opts: &PruneOptions,
        mut on_removed: impl FnMut(&CacheRecord),
    ) -> Result<Vec<CacheRecord>> {
        let req = PruneRequest {
            filter: opts.filters.clone(),
            all: opts.all,
            keep_duration: opts
                .keep_duration
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0),
            reserved_space: opts.reserved_space,
            ..PruneRequest::default()
        };
        let mut stream = self
            .control
            .clone()
            .prune(req)
            .await
            .map_err(|s| Error::rpc("Prune", s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(r) = stream.message().await.map_err(|s| Error::rpc("Prune", s))? {
            let record = CacheRecord::from(r);
            on_removed(&record);
            out.push(record);
        }
        Ok(out)
    }

    /// What the daemon can do.
    ///
    /// # Deviation
    /// buildx asks the Docker Engine for its features; kbx assumes a Docker Engine offers only
    /// the `moby`, `local` and `tar` exporters (true for every Engine without the containerd
    /// image store), and a standalone buildkitd `image`, `oci`, `docker`, `local` and `tar`.
    /// A standalone buildkitd gets every cache type (`local` goes through the session content
    /// store); a Docker Engine gets cache export `inline` and import `registry` and `local`
    /// (what Docker 20.10's BuildKit v0.8 can do).
    ///
    /// # Errors
    /// See [`Client::info`].
    pub async fn capabilities(&self) -> Result<Capabilities> {
        let info = self.info().await?;
        let backend = self.effective_backend(&info).await?;
        let exporters = match backend {
            Backend::Docker => vec!["moby", "local", "tar"],
            Backend::Buildkitd => vec!["image", "oci", "docker", "local", "tar"],
        };
        let multiple_exporters = info
            .buildkit_version
            .as_deref()
            .and_then(parse_version)
            .is_some_and(|v| v >= (0, 13));
        // `local` caches go through the session content store (read and write sides).
        let (cache_exporters, cache_importers) = match backend {
            Backend::Docker => (vec!["inline"], vec!["registry", "local"]),
            Backend::Buildkitd => (
                vec!["inline", "registry", "local", "gha", "s3", "azblob"],
                vec!["registry", "local", "gha", "s3", "azblob"],
            ),
        };
        let named_contexts = named_contexts_supported(backend, &info);
        let v0_11 = info
            .buildkit_version
            .as_deref()
            .and_then(parse_version)
            .is_some_and(|v| v >= (0, 11));
        Ok(Capabilities {
            oci_layout_contexts: named_contexts && v0_11,
            attestations: backend == Backend::Buildkitd && v0_11,
            backend,
            info,
            exporters,
            multiple_exporters,
            cache_exporters,
            cache_importers,
            named_contexts,
        })
    }

    /// What answers behind the transport. A daemon reached as a plain buildkitd (a socket or
    /// `buildctl dial-stdio`) that has no `Info` API and whose only worker is Docker's `moby`
    /// worker is a Docker Engine's embedded BuildKit behind a proxy: it has Docker's exporters
    /// (`moby`, `local`, `tar`), not buildkitd's.
    async fn effective_backend(&self, info: &DaemonInfo) -> Result<Backend> {
        if self.backend == Backend::Docker || info.has_info_api {
            return Ok(self.backend);
        }
        let workers = self.list_workers().await?;
        Ok(if is_docker_worker_set(&workers) {
            Backend::Docker
        } else {
            self.backend
        })
    }

    /// The Docker Engine address, when connected to one with [`Client::connect`].
    pub fn docker_address(&self) -> Option<&Address> {
        self.docker.as_ref()
    }
}

/// `GET /version` on the Docker Engine; returns its `Version`.
async fn docker_engine_version(addr: &Address) -> Result<String> {
    let io_err = |source| Error::Connect {
        addr: addr.to_string(),
        source,
    };
    let mut io = crate::engine::dial(addr).await?;
    let fut = async {
        io.write_all(b"GET /version HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        io.take(1 << 20).read_to_end(&mut body).await?;
        Ok::<_, std::io::Error>(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| io_err(std::io::ErrorKind::TimedOut.into()))?
        .map_err(io_err)?;
    let text = String::from_utf8_lossy(&body);
    let key = "\"Version\":\"";
    let start = text.find(key).map(|i| i + key.len());
    match start.and_then(|s| text[s..].find('"').map(|e| text[s..s + e].to_owned())) {
        Some(v) => Ok(v),
        None => Err(Error::Session(
            "no Version in Docker's /version answer".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(deprecated, reason = "the old field is what old daemons send")]
    fn usage_records_keep_times_and_the_old_parent_field() {
        let r = CacheRecord::from(UsageRecord {
            id: "x".into(),
            parent: "p".into(),
            created_at: Some(Timestamp {
                seconds: 10,
                nanos: 5,
            }),
            last_used_at: Some(Timestamp {
                seconds: -1,
                nanos: 0,
            }),
            usage_count: 3,
            shared: true,
            ..UsageRecord::default()
        });
        assert_eq!(r.parents, vec!["p".to_owned()]);
        assert_eq!(r.created_at, Some(UNIX_EPOCH + Duration::new(10, 5)));
        assert_eq!(r.last_used_at, Some(UNIX_EPOCH - Duration::from_secs(1)));
        assert_eq!((r.usage_count, r.shared), (3, true));
        let none = CacheRecord::from(UsageRecord::default());
        assert!(none.parents.is_empty() && none.created_at.is_none());
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("v0.13.2"), Some((0, 13)));
        assert_eq!(parse_version("0.8"), Some((0, 8)));
        assert_eq!(parse_version("v0.29.0-rc1"), Some((0, 29)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn named_contexts_need_buildkit_0_10() {
        let info = |bk: Option<&str>, docker: Option<&str>| DaemonInfo {
            buildkit_version: bk.map(str::to_owned),
            package: None,
            docker_version: docker.map(str::to_owned),
            has_info_api: false,
        };
        let yes = named_contexts_supported;
        assert!(!yes(Backend::Docker, &info(Some("v0.8"), Some("20.10.24"))));
        let worker = |id: &str| Worker {
            id: id.to_owned(),
            platforms: vec![],
            labels: BTreeMap::new(),
            buildkit_version: None,
        };
        assert!(is_docker_worker_set(&[worker("moby")]));
        assert!(!is_docker_worker_set(&[worker("x1y2z3")]));
        assert!(!is_docker_worker_set(&[worker("moby"), worker("x1y2z3")]));
        assert!(!is_docker_worker_set(&[]));
        assert!(!yes(Backend::Docker, &info(None, Some("20.10.24"))));
        assert!(yes(Backend::Docker, &info(None, Some("23.0.6"))));
        assert!(yes(Backend::Docker, &info(Some("v0.12.5"), Some("25.0.3"))));
        assert!(!yes(Backend::Docker, &info(None, None)));
        assert!(!yes(Backend::Buildkitd, &info(Some("v0.9.3"), None)));
        assert!(yes(Backend::Buildkitd, &info(Some("v0.10.0"), None)));
        assert!(yes(Backend::Buildkitd, &info(None, None)));
    }
}

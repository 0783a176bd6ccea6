//! Reaching a builder node's BuildKit, whatever its driver: the one place `build`, `du`,
//! `prune`, `ls` and `inspect` get a [`Client`] or a status from.
//!
//! - `kubernetes`: `buildctl dial-stdio` in a pod chosen by the node's load-balance mode,
//!   through `pods/exec`, retried while BuildKit starts.
//! - `docker`: the BuildKit embedded in the Docker Engine named by `DOCKER_HOST` (the implicit
//!   `default` builder).
//! - `remote`: a buildkitd listening on the node's `unix://` or `tcp://` endpoint, with TLS
//!   when the node's driver options name certificates.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use kbx_balance::{Pod, PodChooser, PodPhase};
use kbx_buildkit::{Backend, Client};
use kbx_kube::{NodeDriver, Status};
use kbx_store::{Node, NodeGroup, Txn};

use crate::error::{Error, chain};
use crate::progress::Mode;
use crate::{context, create, node, remote};

/// The Kubernetes driver.
pub(crate) const KUBERNETES: &str = "kubernetes";
/// The Docker Engine's embedded BuildKit.
pub(crate) const DOCKER: &str = "docker";
/// A buildkitd reached at an address.
pub(crate) const REMOTE: &str = "remote";
/// The name of the implicit Docker builder.
pub(crate) const DEFAULT_BUILDER: &str = "default";

/// Connection attempts before giving up (buildx: 5, 500 ms doubling).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The implicit builder of the Docker Engine, as buildx shows the `default` context: one node
/// named `default` whose endpoint is the context name. Never saved in the store.
///
/// # Deviation
/// buildx has one such builder per Docker context and reaches the engine of the current
/// context; kbx has only `default`, reaching `DOCKER_HOST` (or the default socket), and `ls`
/// lists it only when that engine answers (buildx lists it with an error).
pub(crate) fn default_builder() -> NodeGroup {
    let mut ng = NodeGroup::new(DEFAULT_BUILDER, DOCKER);
    ng.nodes = Some(vec![Node {
        name: DEFAULT_BUILDER.to_owned(),
        endpoint: DEFAULT_BUILDER.to_owned(),
        platforms: None,
        driver_opts: None,
        buildkitd_flags: None,
        files: None,
    }]);
    ng
}

/// The builder called `name`, or the current one, falling back to the implicit `default`
/// (Docker) builder as buildx does.
pub(crate) fn find_builder(txn: &Txn<'_>, name: Option<&str>) -> Result<NodeGroup, Error> {
    match name {
        Some(n) => match txn.node_group(n) {
            Ok(ng) => Ok(ng),
            Err(kbx_store::Error::NotFound(_)) if n == DEFAULT_BUILDER => {
                default_with_activity(txn)
            }
            Err(e) => Err(e.into()),
        },
        None => {
            let key = context::current_key(|k| std::env::var_os(k));
            match txn.current(&key)? {
                Some(ng) => Ok(ng),
                None => default_with_activity(txn),
            }
        }
    }
}

/// [`default_builder`] with its last activity from the store, as buildx loads it.
pub(crate) fn default_with_activity(txn: &Txn<'_>) -> Result<NodeGroup, Error> {
    let mut ng = default_builder();
    ng.last_activity = txn.last_activity(DEFAULT_BUILDER)?;
    Ok(ng)
}

/// The Docker host kbx talks to: `DOCKER_HOST` or the default socket.
pub(crate) fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// A BuildKit connection and what it is connected to (for progress lines).
pub(crate) struct Connected {
    pub(crate) client: Client,
    /// E.g. `kube0 (kube pod kube0-5d9f-abcde)`, `default (docker)`.
    pub(crate) description: String,
}

/// Connects to node `n` of builder `ng`. `key` picks the pod on Kubernetes (buildx: the
/// absolute context path for builds, empty otherwise); `boot` starts a Kubernetes node that is
/// not running first, showing progress in that mode.
pub(crate) async fn connect(
    ng: &NodeGroup,
    n: &Node,
    key: &[u8],
    boot: Option<Mode>,
) -> Result<Connected, Error> {
    match ng.driver.as_str() {
        KUBERNETES => kubernetes(ng, n, key, boot).await,
        DOCKER => Ok(Connected {
            client: docker().await?,
            description: format!("{} ({DOCKER})", n.name),
        }),
        REMOTE => Ok(Connected {
            client: remote_client(n).await?,
            description: format!("{} ({REMOTE} {})", n.name, n.endpoint),
        }),
        other => Err(Error::msg(format!("failed to find driver {other:?}"))),
    }
}

async fn kubernetes(
    ng: &NodeGroup,
    n: &Node,
    key: &[u8],
    boot: Option<Mode>,
) -> Result<Connected, Error> {
    let driver = node::driver(n).await?;
    if let Some(mode) = boot
        && !matches!(driver.status().await?, Status::Running(_))
    {
        create::bootstrap(ng, mode).await?;
    }
    let (pod, client) = pod_for(n, &driver, key).await?;
    Ok(Connected {
        client,
        description: format!("{} ({} pod {pod})", n.name, ng.name),
    })
}

/// The pod of node `n` that `key` chooses with the node's `loadbalance` strategy, and a
/// client connected to its BuildKit.
async fn pod_for(n: &Node, driver: &NodeDriver, key: &[u8]) -> Result<(String, Client), Error> {
    let options = node::options(n)?;
    let pods: Vec<Pod> = driver
        .running_pods()
        .await?
        .into_iter()
        .map(|p| Pod {
            name: p.name,
            phase: PodPhase::from_api(&p.phase),
            ready: p.ready,
            terminating: p.terminating,
        })
        .collect();
    let pod = PodChooser::new(options.load_balance)
        .choose(key, &pods)?
        .name
        .clone();
    let client = pod_client(driver, &pod).await?;
    Ok((pod, client))
}

/// Exec + HTTP/2 handshake + a first call, retried: a pod whose BuildKit is not answering yet
/// (e.g. `tls: internal error`, connection refused) is retried with backoff.
async fn pod_client(driver: &NodeDriver, pod: &str) -> Result<Client, Error> {
    let stderr: Arc<dyn Fn(&str) + Send + Sync> = {
        let pod = pod.to_owned();
        Arc::new(move |line: &str| eprintln!("[{pod}] {line}"))
    };
    kbx_kube::with_retry(ATTEMPTS, FIRST_BACKOFF, |_| {
        let driver = driver.clone();
        let pod = pod.to_owned();
        let stderr = stderr.clone();
        async move {
            let dial = move || {
                let driver = driver.clone();
                let pod = pod.clone();
                let stderr = stderr.clone();
                async move { driver.dial(&pod, stderr).await.map_err(io::Error::other) }
            };
            let channel = kbx_buildkit::transport::connect_with("buildkit pod", dial)
                .await
                .map_err(|source| Error::BuildkitUnreachable {
                    what: "cannot connect to BuildKit".to_owned(),
                    source,
                })?;
            let client = Client::new(channel, Backend::Buildkitd);
            answers(&client).await?;
            Ok(client)
        }
    })
    .await
}

async fn answers(client: &Client) -> Result<(), Error> {
    client
        .list_workers()
        .await
        .map(|_| ())
        .map_err(|source| Error::BuildkitUnreachable {
            what: "BuildKit does not answer".to_owned(),
            source,
        })
}

/// The Docker Engine's BuildKit. An engine that cannot be reached gets the Docker CLI's
/// message.
pub(crate) async fn docker() -> Result<Client, Error> {
    match Client::connect("docker").await {
        Ok(c) => Ok(c),
        Err(
            source @ (kbx_buildkit::Error::Connect { .. } | kbx_buildkit::Error::Transport { .. }),
        ) => Err(Error::DockerUnreachable {
            host: docker_host(),
            denied: false,
            source,
        }),
        Err(e) => Err(e.into()),
    }
}

/// A remote node's buildkitd (over TLS when its options say so), retried like a pod (buildx
/// waits up to 20 s for a remote builder to answer).
async fn remote_client(n: &Node) -> Result<Client, Error> {
    let tls = remote::connection(n)?;
    if let Some(t) = &tls {
        // Bad TLS files fail at once, not after every retry.
        kbx_buildkit::transport::tls_connector(t)?;
    }
    let endpoint = n.endpoint.clone();
    kbx_kube::with_retry(ATTEMPTS, FIRST_BACKOFF, |_| {
        let endpoint = endpoint.clone();
        let tls = tls.clone();
        async move {
            let client = remote_connect(&endpoint, tls.as_ref())
                .await
                .map_err(|source| Error::BuildkitUnreachable {
                    what: format!("cannot connect to BuildKit at {endpoint}"),
                    source,
                })?;
            answers(&client).await?;
            Ok(client)
        }
    })
    .await
}

async fn remote_connect(
    endpoint: &str,
    tls: Option<&kbx_buildkit::transport::TlsOptions>,
) -> Result<Client, kbx_buildkit::Error> {
    match tls {
        Some(t) => Client::connect_tls(endpoint, t).await,
        None => Client::connect(endpoint).await,
    }
}

/// A node's status, or why it could not be read, with what the daemon says about itself.
pub(crate) struct NodeStatus {
    pub(crate) status: Result<Status, String>,
    /// BuildKit version (the `BUILDKIT` column), when known.
    pub(crate) version: Option<String>,
    /// Platforms the daemon's workers report (docker and remote drivers).
    pub(crate) platforms: Vec<String>,
}

impl NodeStatus {
    pub(crate) fn word(&self) -> &'static str {
        match &self.status {
            Ok(s) => s.as_str(),
            Err(_) => "error",
        }
    }

    pub(crate) fn running(&self) -> bool {
        matches!(self.status, Ok(Status::Running(_)))
    }
}

/// Loads the status of node `n` of a builder with driver `driver`, within `timeout`.
///
/// A remote node that does not answer is `inactive` (as buildx); a Docker Engine that does not
/// answer is an error.
pub(crate) async fn status_of(driver: &str, n: &Node, timeout: Duration) -> NodeStatus {
    let work = async {
        match driver {
            KUBERNETES => {
                let d = node::driver(n).await?;
                let status = d.status().await?;
                if !matches!(status, Status::Running(_)) {
                    return Ok((status, None, Vec::new()));
                }
                // As buildx: one pod (key ""), its BuildKit version and workers' platforms;
                // fixed platforms (the pod annotation) replace the workers' list.
                let (_, client) = pod_for(n, &d, b"").await?;
                let (_, version, platforms) = daemon_status(&client, false).await?;
                let fixed = n.platforms.as_ref().is_some_and(|p| !p.is_empty());
                Ok((status, version, if fixed { Vec::new() } else { platforms }))
            }
            DOCKER => {
                let client = docker().await?;
                daemon_status(&client, true).await
            }
            REMOTE => {
                let tls = remote::connection(n)?;
                let connected = async {
                    let client = remote_connect(&n.endpoint, tls.as_ref()).await?;
                    client.list_workers().await?;
                    Ok::<_, kbx_buildkit::Error>(client)
                }
                .await;
                match connected {
                    Ok(client) => daemon_status(&client, false).await,
                    Err(e) => Ok((Status::Inactive(chain(&e)), None, Vec::new())),
                }
            }
            other => Err(Error::msg(format!("failed to find driver {other:?}"))),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok((status, version, platforms))) => NodeStatus {
            status: Ok(status),
            version,
            platforms,
        },
        Ok(Err(e)) => NodeStatus {
            status: Err(chain(&e)),
            version: None,
            platforms: Vec::new(),
        },
        Err(_) => NodeStatus {
            status: Err(format!(
                "timed out after {}",
                kbx_opts::GoDuration::from_nanos(
                    i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX)
                )
            )),
            version: None,
            platforms: Vec::new(),
        },
    }
}

/// Workers and version of a daemon that answers. Without the Info API (BuildKit before v0.11)
/// buildx shows the Docker Engine's version for the docker driver and nothing for remote.
async fn daemon_status(
    client: &Client,
    docker: bool,
) -> Result<(Status, Option<String>, Vec<String>), Error> {
    let workers = client.list_workers().await?;
    let info = client.info().await?;
    let version = if info.has_info_api {
        info.buildkit_version
    } else if docker {
        info.docker_version
    } else {
        None
    };
    let mut platforms: Vec<String> = Vec::new();
    for p in workers.into_iter().flat_map(|w| w.platforms) {
        if !platforms.contains(&p) {
            platforms.push(p);
        }
    }
    Ok((Status::Running(Vec::new()), version, platforms))
}

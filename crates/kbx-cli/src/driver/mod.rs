//! Reaching a builder node's BuildKit, whatever its driver: the one place `build`, `du`,
//! `prune`, `ls`, `inspect` and `rm` get a [`Client`] or a status from.
//!
//! - [`kubernetes`]: `buildctl dial-stdio` in a pod chosen by the node's load-balance mode,
//!   through `pods/exec`, retried while BuildKit starts; the node's cluster objects.
//! - [`docker`]: the BuildKit embedded in the Docker Engine named by `DOCKER_HOST` (the implicit
//!   `default` builder).
//! - [`remote`]: a buildkitd listening on the node's `unix://` or `tcp://` endpoint, with TLS
//!   when the node's driver options name certificates.
//!
//! The store keeps a builder's driver as a name; [`Driver::of`] parses it where a command
//! starts to use the builder.

pub(crate) mod docker;
pub(crate) mod kubernetes;
pub(crate) mod remote;

use std::fmt;
use std::time::Duration;

use kbx_buildkit::Client;
use kbx_kube::Status;
use kbx_store::{Node, NodeGroup};

use crate::error::{Error, chain};
use crate::progress::Mode;

/// Connection attempts before giving up (buildx: 5, 500 ms doubling).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The drivers kbx implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// BuildKit pods on Kubernetes.
    Kubernetes,
    /// The Docker Engine's embedded BuildKit.
    Docker,
    /// A buildkitd reached at an address.
    Remote,
}

impl Driver {
    /// The name the store and buildx use.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Driver::Kubernetes => "kubernetes",
            Driver::Docker => "docker",
            Driver::Remote => "remote",
        }
    }

    /// The driver called `name`, if kbx implements it.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [Driver::Kubernetes, Driver::Docker, Driver::Remote]
            .into_iter()
            .find(|d| d.name() == name)
    }

    /// The driver called `name`, or buildx's error for a driver it does not know.
    pub(crate) fn parse(name: &str) -> Result<Self, Error> {
        Self::from_name(name).ok_or_else(|| Error::msg(format!("failed to find driver {name:?}")))
    }

    /// The driver of a stored builder.
    pub(crate) fn of(ng: &NodeGroup) -> Result<Self, Error> {
        Self::parse(&ng.driver)
    }
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A BuildKit connection and what it is connected to (for progress lines).
pub(crate) struct Connected {
    /// The connected client.
    pub(crate) client: Client,
    /// E.g. `kube0 (kube pod kube0-5d9f-abcde)`, `default (docker)`.
    pub(crate) description: String,
    /// On Kubernetes: the node's driver and the pod the client speaks to.
    pub(crate) pod: Option<(kbx_kube::NodeDriver, String)>,
}

impl Connected {
    /// [`Error::PodLost`] for a build error when the pod the build ran on has gone away or
    /// stopped serving, or when the connection to it broke (then saying whether the pod can be
    /// reached again); otherwise (and on other drivers) the error back.
    pub(crate) async fn pod_lost(
        &self,
        err: kbx_buildkit::Error,
    ) -> Result<Error, kbx_buildkit::Error> {
        let Some((driver, pod)) = &self.pod else {
            return Err(err);
        };
        let (fate, cut_off) = match driver.pod_fate(pod).await {
            Some(fate) => (fate, false),
            // The pod looks fine to the API server but the stream to it broke: the path through
            // the API server and the node's kubelet may be down.
            None if err.is_connection_lost() => match driver.pod_unreachable(pod).await {
                Some(why) => (why, true),
                None => ("lost its connection to kbx".to_owned(), true),
            },
            None => return Err(err),
        };
        Ok(Error::PodLost {
            pod: pod.clone(),
            fate,
            cut_off,
            source: Box::new(err),
        })
    }
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
    match Driver::of(ng)? {
        Driver::Kubernetes => kubernetes::connect(ng, n, key, boot).await,
        Driver::Docker => Ok(Connected {
            client: docker::client().await?,
            description: format!("{} ({})", n.name, Driver::Docker),
            pod: None,
        }),
        Driver::Remote => Ok(Connected {
            client: remote::client(n).await?,
            description: format!("{} ({} {})", n.name, Driver::Remote, n.endpoint),
            pod: None,
        }),
    }
}

/// A bidirectional byte stream (what `dial-stdio` proxies).
pub(crate) trait Duplex:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

/// A raw byte stream to node `n`'s BuildKit, over which a client speaks gRPC (buildx's
/// `dial-stdio`). `key` picks the pod on Kubernetes; a node that does not run is booted in
/// `boot` mode first.
///
/// # Deviation
/// Buildx also dials the docker driver's Engine and remote nodes over TLS; kbx refuses both
/// (the Engine's BuildKit is reached through its own API, and TLS would have to end in kbx).
pub(crate) async fn raw_stream(
    ng: &NodeGroup,
    n: &Node,
    key: &[u8],
    boot: Mode,
) -> Result<Box<dyn Duplex>, Error> {
    match Driver::of(ng)? {
        Driver::Kubernetes => Ok(Box::new(kubernetes::raw_stream(ng, n, key, boot).await?)),
        Driver::Remote => remote::raw_stream(n).await,
        Driver::Docker => Err(Error::msg(
            "dial-stdio is not supported by the docker driver",
        )),
    }
}

/// A node's status, or why it could not be read, with what the daemon says about itself.
pub(crate) struct NodeStatus {
    /// The status, or the error (with its causes) that kept it from being read.
    pub(crate) status: Result<Status, String>,
    /// BuildKit version (the `BUILDKIT` column), when known.
    pub(crate) version: Option<String>,
    /// Platforms the daemon's workers report (docker and remote drivers).
    pub(crate) platforms: Vec<String>,
}

impl NodeStatus {
    /// The status word of `ls` and `inspect`.
    pub(crate) fn word(&self) -> &'static str {
        match &self.status {
            Ok(s) => s.as_str(),
            Err(_) => "error",
        }
    }

    /// Whether the node runs.
    pub(crate) fn running(&self) -> bool {
        matches!(self.status, Ok(Status::Running(_)))
    }
}

/// A status, the daemon's BuildKit version and its workers' platforms.
type Loaded = (Status, Option<String>, Vec<String>);

/// Loads the status of node `n` of builder `ng`, within `timeout`.
///
/// A remote node that does not answer is `inactive` (as buildx); a Docker Engine that does not
/// answer is an error.
pub(crate) async fn status_of(ng: &NodeGroup, n: &Node, timeout: Duration) -> NodeStatus {
    let work = async {
        match Driver::of(ng)? {
            Driver::Kubernetes => kubernetes::status(n).await,
            Driver::Docker => docker::status().await,
            Driver::Remote => remote::status(n).await,
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

/// Whether a connected daemon answers a first call.
async fn answers(client: &Client) -> Result<(), Error> {
    client
        .list_workers()
        .await
        .map(|_| ())
        .map_err(|source| Error::BuildkitUnreachable {
            what: "BuildKit does not answer".to_owned(),
            source: Box::new(source),
        })
}

/// Workers and version of a daemon that answers. Without the Info API (BuildKit before v0.11)
/// buildx shows the Docker Engine's version for the docker driver and nothing for remote.
async fn daemon_status(client: &Client, docker: bool) -> Result<Loaded, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_names_round_trip_and_unknown_ones_keep_buildx_text() {
        for d in [Driver::Kubernetes, Driver::Docker, Driver::Remote] {
            assert_eq!(Driver::parse(d.name()).ok(), Some(d));
            assert_eq!(d.to_string(), d.name());
        }
        assert_eq!(Driver::from_name("docker-container"), None);
        let err = Driver::parse("nope").expect_err("unknown driver");
        assert_eq!(err.to_string(), "failed to find driver \"nope\"");
    }
}

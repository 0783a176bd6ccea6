//! The `kubernetes` driver: from a stored node to its rendered objects and a cluster driver,
//! booting the objects, choosing a pod and reaching its BuildKit through `pods/exec`.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use kbx_balance::{Pod, PodChooser, PodPhase};
use kbx_buildkit::{Backend, Client};
use kbx_kube::{BootstrapEvent, Change, ConfigRequest, NodeDriver, Status};
use kbx_manifest::{ConfigFiles, Manifests};
use kbx_opts::{DriverOpts, KubernetesEndpoint, KubernetesOptions};
use kbx_store::{Node, NodeGroup};

use super::{ATTEMPTS, Connected, FIRST_BACKOFF, Loaded, answers, daemon_status};
use crate::error::Error;
use crate::progress::{Mode, Step, Steps};

/// The typed options of a stored node.
pub(crate) fn options(node: &Node) -> Result<KubernetesOptions, Error> {
    let map = node.driver_opts.clone().unwrap_or_default();
    Ok(KubernetesOptions::from_driver_opts(
        &DriverOpts::from_pairs(map),
    )?)
}

/// The objects a stored node runs as.
pub(crate) fn manifests(node: &Node) -> Result<Manifests, Error> {
    let mut m = kbx_manifest::Node::new(node.name.clone(), options(node)?);
    m.platforms = node.platforms.clone().unwrap_or_default();
    if let Some(flags) = &node.buildkitd_flags {
        m.flags = flags.clone();
    }
    let mut files = ConfigFiles::new();
    for (path, data) in node.files.iter().flatten() {
        files.insert(path.clone(), data.clone());
    }
    m.files = files;
    Ok(kbx_manifest::render(&m)?)
}

/// Config files as the store keeps them.
pub(crate) fn store_files(files: &ConfigFiles) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_vec()))
        .collect()
}

/// A cluster driver for a stored node: kubeconfig from its endpoint, namespace from its
/// options.
pub(crate) async fn node_driver(node: &Node) -> Result<NodeDriver, Error> {
    let options = options(node)?;
    let manifests = manifests(node)?;
    let endpoint = KubernetesEndpoint::parse(&node.endpoint).ok();
    let request = ConfigRequest {
        endpoint_kubeconfig: endpoint.map(|e| e.kubeconfig).unwrap_or_default(),
        context: options.context.clone(),
        namespace: options.namespace.clone(),
    };
    let resolved = kbx_kube::resolve(&request, |k| std::env::var_os(k)).await?;
    let server = resolved.config.cluster_url.to_string();
    let client = kube::Client::try_from(resolved.config).map_err(kbx_kube::Error::Client)?;
    let timeout = options.timeout.to_std().unwrap_or(Duration::from_secs(120));
    Ok(NodeDriver::new(client, resolved.namespace, manifests, timeout).with_server(server))
}

/// Deletes a node's cluster objects (its volume claims too, unless `keep_state`).
pub(crate) async fn remove(node: &Node, keep_state: bool) -> Result<(), Error> {
    node_driver(node).await?.remove(keep_state).await?;
    Ok(())
}

/// Connects to a pod of node `n`, booting the builder first (in `boot` mode) when the node
/// does not run.
pub(super) async fn connect(
    ng: &NodeGroup,
    n: &Node,
    key: &[u8],
    boot: Option<Mode>,
) -> Result<Connected, Error> {
    let driver = node_driver(n).await?;
    if let Some(mode) = boot
        && !matches!(driver.status().await?, Status::Running(_))
    {
        bootstrap(ng, mode).await?;
    }
    let (pod, client) = pod_for(n, &driver, key).await?;
    Ok(Connected {
        client,
        description: format!("{} ({} pod {pod})", n.name, ng.name),
        pod: Some((driver, pod)),
    })
}

/// The status of node `n`: its workload's, and for a running node one pod's BuildKit version
/// and workers' platforms.
pub(super) async fn status(n: &Node) -> Result<Loaded, Error> {
    let d = node_driver(n).await?;
    let status = d.status().await?;
    if !matches!(status, Status::Running(_)) {
        return Ok((status, None, Vec::new()));
    }
    // As buildx: one pod (key ""), its BuildKit version and workers' platforms; fixed
    // platforms (the pod annotation) replace the workers' list.
    let (_, client) = pod_for(n, &d, b"").await?;
    let (_, version, platforms) = daemon_status(&client, false).await?;
    let fixed = n.platforms.as_ref().is_some_and(|p| !p.is_empty());
    Ok((status, version, if fixed { Vec::new() } else { platforms }))
}

/// The pod of node `n` that `key` chooses with the node's `loadbalance` strategy, and a
/// client connected to its BuildKit.
async fn pod_for(n: &Node, driver: &NodeDriver, key: &[u8]) -> Result<(String, Client), Error> {
    let pod = choose_pod(n, driver, key).await?;
    let client = pod_client(driver, &pod).await?;
    Ok((pod, client))
}

/// The pod of node `n` that `key` chooses with the node's `loadbalance` strategy.
async fn choose_pod(n: &Node, driver: &NodeDriver, key: &[u8]) -> Result<String, Error> {
    let options = options(n)?;
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
    Ok(PodChooser::new(options.load_balance)
        .choose(key, &pods)?
        .name
        .clone())
}

/// A byte stream to the BuildKit of the pod `key` chooses (`buildctl dial-stdio` in it),
/// booting the builder first (in `boot` mode) when the node does not run.
pub(super) async fn raw_stream(
    ng: &NodeGroup,
    n: &Node,
    key: &[u8],
    boot: Mode,
) -> Result<kbx_kube::ExecStream, Error> {
    let driver = node_driver(n).await?;
    if !matches!(driver.status().await?, Status::Running(_)) {
        bootstrap(ng, boot).await?;
    }
    let pod = choose_pod(n, &driver, key).await?;
    let stderr: Arc<dyn Fn(&str) + Send + Sync> = {
        let pod = pod.clone();
        Arc::new(move |line: &str| eprintln!("[{pod}] {line}"))
    };
    Ok(driver.dial(&pod, stderr).await?)
}

/// Exec + HTTP/2 handshake + a first call, retried: a pod whose BuildKit is not answering yet
/// (e.g. `tls: internal error`, connection refused) is retried with backoff.
async fn pod_client(driver: &NodeDriver, pod: &str) -> Result<Client, Error> {
    let stderr: Arc<dyn Fn(&str) + Send + Sync> = {
        let pod = pod.to_owned();
        Arc::new(move |line: &str| eprintln!("[{pod}] {line}"))
    };
    // A refused exec (RBAC) is not retried: waiting does not change it.
    kbx_kube::with_retry_while(
        ATTEMPTS,
        FIRST_BACKOFF,
        |e| !crate::error::forbidden_anywhere(e),
        |_| {
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
                        source: Box::new(source),
                    })?;
                let client = Client::new(channel, Backend::Buildkitd);
                answers(&client).await?;
                Ok(client)
            }
        },
    )
    .await
}

/// Boots every node in parallel, printing progress on stderr in `mode`: one
/// `[internal] booting buildkit` step per node (`[NODE internal] …` when there are several).
pub(crate) async fn bootstrap(ng: &NodeGroup, mode: Mode) -> Result<(), Error> {
    let prefix = ng.nodes().len() > 1;
    let steps = Steps::new(mode);
    let mut tasks = Vec::new();
    for n in ng.nodes().iter().cloned() {
        let builder = ng.name.clone();
        let steps = steps.clone();
        tasks.push(tokio::spawn(async move {
            let name = if prefix {
                format!("[{} internal] booting buildkit", n.name)
            } else {
                "[internal] booting buildkit".to_owned()
            };
            let step = steps.start(&name);
            let result = boot_node(&builder, &n, &step).await;
            let error = result.as_ref().err().map(|e| crate::error::chain(e));
            step.done(error.as_deref());
            result
        }));
    }
    let mut first_error = None;
    for t in tasks {
        let result = t.await.map_err(Error::Task);
        match result {
            Ok(Err(e)) | Err(e) => {
                first_error.get_or_insert(e);
            }
            Ok(Ok(())) => {}
        }
    }
    steps.finish();
    first_error.map_or(Ok(()), Err)
}

/// Boots one node, logging each bootstrap event as a line of `step`.
async fn boot_node(builder: &str, n: &Node, step: &Step) -> Result<(), Error> {
    let driver = node_driver(n).await?;
    let log = step.clone();
    let on_event = move |event: BootstrapEvent| match event {
        BootstrapEvent::Applied { kind, name, change } => {
            let what = match change {
                Change::Created => "created",
                Change::Updated => "updated (it differed from the options)",
                Change::Unchanged => "unchanged",
            };
            log.log(&format!("{kind} {name} {what}"));
        }
        BootstrapEvent::Waiting { replicas, timeout } => {
            log.begin(&format!(
                "waiting for {replicas} pods to be ready, timeout: {timeout}"
            ));
        }
        BootstrapEvent::Ready { ready, replicas } => {
            log.log(&format!("{ready}/{replicas} pods ready"));
        }
    };
    driver.bootstrap(&on_event).await.map_err(|e| Error::Node {
        builder: builder.to_owned(),
        node: n.name.clone(),
        source: Box::new(e.into()),
    })
}

//! Conformance scenarios on a real cluster (backend from `KBX_CONFORMANCE_CLUSTER`, default
//! `local`). Each scenario runs under a deadline. With the local backend, a scenario boots its
//! own cluster and always tears it down, unless `KBX_CONFORMANCE_SHARED_DIR` names the work
//! directory of a running local cluster (`just conformance` boots one with `kbx-local-cluster
//! up`): then the scenarios that leave the cluster as they found it share that one, and each
//! must leave nothing behind (its namespaces and volumes gone, every node Ready with the taints
//! it had). Scenarios that stop components or check the boot and teardown ([`scenario_own`])
//! always boot their own.
//! Run them with `cargo nextest run -p kbx-conformance --profile conformance` (`just conformance`).
//!
//! Under `CI=true` a cluster that cannot boot is a failure. Elsewhere the local backend is
//! skipped, with a message, when not root or when the Kubernetes binaries are not built.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::Node;
use kbx_conformance::local::config::CLOSED_PROXY;
use kbx_conformance::local::{Binaries, host};
use kbx_conformance::scenario::{
    TestNamespace, builder_deployment, create_deployment, exec_capture, exec_stream, running_pods,
    wait_deployment_ready,
};
use kbx_conformance::workers::list_workers;
use kbx_conformance::{Backend, Cluster};
use kube::Api;

/// The most one scenario may take, boot and teardown excluded.
const SCENARIO_LIMIT: Duration = Duration::from_secs(360);

/// [`SCENARIO_LIMIT`], or `KBX_SCENARIO_LIMIT` seconds for long runs (`just parity` runs every
/// option set with both Buildx versions in one scenario).
fn scenario_limit() -> Duration {
    std::env::var("KBX_SCENARIO_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(SCENARIO_LIMIT, Duration::from_secs)
}
/// How long a builder Deployment may take to become Ready (its probe period is 30 s).
const READY_LIMIT: Duration = Duration::from_secs(240);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn note(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Boots the cluster, or returns `None` (skip) outside CI when the local backend cannot run here.
async fn start() -> anyhow::Result<Option<Cluster>> {
    let backend = Backend::from_env()?;
    if backend == Backend::Local && !in_ci() {
        if !nix::unistd::geteuid().is_root() {
            note("skipping: the local cluster backend needs root (CI=true makes this a failure)");
            return Ok(None);
        }
        if let Err(e) = Binaries::find() {
            note(&format!("skipping: {e} (CI=true makes this a failure)"));
            return Ok(None);
        }
    }
    let started = Instant::now();
    let cluster = Cluster::start(backend)
        .await
        .context("starting the cluster")?;
    note(&format!(
        "cluster ({backend:?}) ready in {:.1?}",
        started.elapsed()
    ));
    if let Some(local) = cluster.local() {
        note(&format!("boot timings: {:?}", local.timings()));
    }
    Ok(Some(cluster))
}

/// The variable naming a running local cluster's work directory that scenarios share.
const SHARED_DIR: &str = "KBX_CONFORMANCE_SHARED_DIR";

/// The shared local cluster ([`SHARED_DIR`]), if one is named and the backend is `local`.
async fn attach_shared() -> anyhow::Result<Option<Cluster>> {
    let Some(dir) = std::env::var_os(SHARED_DIR).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    if Backend::from_env()? != Backend::Local {
        return Ok(None);
    }
    let cluster = Cluster::attach_local(std::path::Path::new(&dir))
        .await
        .with_context(|| format!("attaching to the shared cluster {}", dir.to_string_lossy()))?;
    Ok(Some(cluster))
}

/// `(node name, Ready, taints as JSON)` of every node: what a scenario on a shared cluster
/// must leave as it found it. The node lifecycle controller's own taints
/// (`node.kubernetes.io/…`, e.g. `not-ready` for a moment after a node turns Ready) are not
/// the scenario's doing and are left out.
async fn node_states(client: &kube::Client) -> anyhow::Result<Vec<(String, bool, String)>> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await
        .context("listing nodes")?;
    Ok(nodes
        .items
        .iter()
        .map(|n| {
            let taints: Vec<_> = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| !t.key.starts_with("node.kubernetes.io/"))
                .collect();
            (
                n.metadata.name.clone().unwrap_or_default(),
                kbx_conformance::local::node_is_ready(Some(n)),
                serde_json::to_string(&taints).unwrap_or_default(),
            )
        })
        .collect())
}

/// Runs `body` under [`SCENARIO_LIMIT`] on the shared cluster when there is one, else on a
/// fresh cluster that is then torn down (failing if the local backend left anything behind).
async fn scenario<F>(body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Cluster) -> anyhow::Result<()>,
{
    scenario_within(scenario_limit(), body).await
}

/// [`scenario`] with its own limit (long runs such as churn).
async fn scenario_within<F>(limit: Duration, body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Cluster) -> anyhow::Result<()>,
{
    let Some(cluster) = attach_shared().await? else {
        return own_cluster_within(limit, body).await;
    };
    on_shared(&cluster, limit, body).await
}

/// Runs `body` on the shared `cluster` under `limit`, then removes what it made and checks that
/// it left the cluster as it found it.
async fn on_shared<F>(cluster: &Cluster, limit: Duration, body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Cluster) -> anyhow::Result<()>,
{
    note("on the shared cluster");
    let client = cluster.client().clone();
    let before = node_states(&client).await?;
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, body(cluster)).await;
    note(&format!("scenario body took {:.1?}", started.elapsed()));
    let cleaned = Instant::now();
    let left = kbx_conformance::scenario::clean_own_objects(&client, CLEAN_LIMIT).await;
    note(&format!("cleaning up took {:.1?}", cleaned.elapsed()));
    outcome.map_err(|_| anyhow::anyhow!("scenario exceeded {limit:?}"))??;
    ensure!(
        left.is_empty(),
        "{CLEAN_LIMIT:?} after the scenario, the shared cluster still has {left:?}"
    );
    let after = node_states(&client).await?;
    ensure!(
        before == after,
        "the scenario changed the shared cluster's nodes: before {before:?}, after {after:?}"
    );
    Ok(())
}

/// How long the namespaces a scenario made on the shared cluster may take to go.
const CLEAN_LIMIT: Duration = Duration::from_secs(120);

/// Runs `body` on a cluster of its own (it stops components, or checks boot or teardown), under
/// [`SCENARIO_LIMIT`], then tears it down and fails if the local backend left anything.
async fn scenario_own<F>(body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Cluster) -> anyhow::Result<()>,
{
    own_cluster_within(scenario_limit(), body).await
}

async fn own_cluster_within<F>(limit: Duration, body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Cluster) -> anyhow::Result<()>,
{
    let Some(cluster) = start().await? else {
        return Ok(());
    };
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, body(&cluster)).await;
    note(&format!("scenario body took {:.1?}", started.elapsed()));
    let torn = Instant::now();
    let left = cluster.teardown().await;
    note(&format!("teardown took {:.1?}", torn.elapsed()));
    outcome.map_err(|_| anyhow::anyhow!("scenario exceeded {limit:?}"))??;
    ensure!(left.is_empty(), "teardown left {left}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_boots_and_node_is_ready() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let nodes = Api::<Node>::all(cluster.client().clone())
            .list(&Default::default())
            .await?;
        ensure!(!nodes.items.is_empty(), "no nodes");
        for node in &nodes.items {
            ensure!(
                kbx_conformance::local::node_is_ready(Some(node)),
                "node {:?} is not Ready",
                node.metadata.name
            );
        }
        if cluster.local().is_some() {
            let node = &nodes.items[0];
            let status = node.status.as_ref().context("node status")?;
            let addresses = status.addresses.as_ref().context("node addresses")?;
            ensure!(
                addresses
                    .iter()
                    .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"),
                "node InternalIP is not 127.0.0.1: {addresses:?}"
            );
            let version = &status
                .node_info
                .as_ref()
                .context("node info")?
                .kubelet_version;
            ensure!(version == "v1.20.2", "kubelet version {version}");
        }
        Ok(())
    })
    .await
}

/// `(local address, inode)` of every TCP socket in LISTEN state.
fn listening_sockets() -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9
                && f[3] == "0A"
                && let Ok(inode) = f[9].parse()
            {
                out.push((f[1].to_owned(), inode));
            }
        }
    }
    out
}

fn socket_inodes(pid: u32) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                && let Ok(i) = inode.parse()
            {
                inodes.insert(i);
            }
        }
    }
    inodes
}

fn is_loopback_hex(addr: &str) -> bool {
    let ip = addr.split(':').next().unwrap_or("");
    // IPv4 127.0.0.0/8 is stored little-endian (last byte 7F); IPv6 ::1 and ::ffff:127.x also count.
    (ip.len() == 8 && ip.ends_with("7F"))
        || ip == "00000000000000000000000001000000"
        || (ip.len() == 32 && ip.starts_with("0000000000000000FFFF0000") && ip.ends_with("7F"))
}

/// Every one of `components` (name, pid) runs with the egress guard in its environment
/// (`AWS_EC2_METADATA_DISABLED`, both proxies at the closed port) and listens on loopback only.
fn components_have_no_way_off_the_machine(components: &[(&str, u32)]) -> anyhow::Result<()> {
    let listening = listening_sockets();
    for &(name, pid) in components {
        let environ = std::fs::read(format!("/proc/{pid}/environ"))
            .with_context(|| format!("reading {name}'s environment"))?;
        let vars: Vec<String> = environ
            .split(|b| *b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        for expected in [
            "AWS_EC2_METADATA_DISABLED=true".to_owned(),
            format!("HTTP_PROXY={CLOSED_PROXY}"),
            format!("HTTPS_PROXY={CLOSED_PROXY}"),
        ] {
            ensure!(
                vars.contains(&expected),
                "{name} (pid {pid}) lacks {expected}: {vars:?}"
            );
        }
        let inodes = socket_inodes(pid);
        for (addr, inode) in &listening {
            if inodes.contains(inode) {
                ensure!(
                    is_loopback_hex(addr),
                    "{name} listens on {addr}, not on loopback"
                );
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_run_without_a_way_off_the_machine() -> anyhow::Result<()> {
    scenario_own(async |cluster| {
        let Some(local) = cluster.local() else {
            note("not the local backend: the component environment is not ours to check");
            return Ok(());
        };
        let components = local.component_pids();
        ensure!(
            components.len() == 6,
            "expected six components, got {components:?}"
        );
        components_have_no_way_off_the_machine(&components)?;
        let closed =
            std::net::TcpStream::connect_timeout(&"127.0.0.1:9".parse()?, Duration::from_secs(2));
        ensure!(
            closed.is_err(),
            "the proxy port 127.0.0.1:9 accepts connections"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_deployment_becomes_ready() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let client = cluster.client();
        let ns = TestNamespace::create(client, "ready").await?;
        let started = Instant::now();
        create_deployment(
            client,
            ns.name(),
            &builder_deployment("builder0", cluster.builder_image(), 1),
        )
        .await?;
        wait_deployment_ready(client, ns.name(), "builder0", 1, READY_LIMIT).await?;
        note(&format!("deployment Ready after {:.1?}", started.elapsed()));
        let pods = running_pods(client, ns.name(), "builder0").await?;
        ensure!(
            pods.len() == 1,
            "expected one running pod, got {}",
            pods.len()
        );
        ns.delete().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rendered_for_the_default_options_becomes_ready() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let client = cluster.client();
        let ns = TestNamespace::create(client, "manifest").await?;
        // What `kbx create --driver-opt image=<test image>` renders: the default options otherwise.
        let options = kbx_opts::KubernetesOptions::parse([format!(
            "namespace={},image={}",
            ns.name(),
            cluster.builder_image()
        )])?;
        let mut node = kbx_manifest::Node::new("builder0", options);
        node.flags = kbx_opts::buildkitd_args(None, None)?;
        let manifests = kbx_manifest::render(&node)?;
        ensure!(
            manifests.config_maps.is_empty(),
            "default options render no ConfigMap"
        );
        let kbx_manifest::Workload::Deployment(deployment) = manifests.workload else {
            bail!("default options must render a Deployment");
        };
        let name = deployment
            .metadata
            .name
            .clone()
            .context("rendered Deployment has no name")?;
        let started = Instant::now();
        create_deployment(client, ns.name(), &deployment).await?;
        wait_deployment_ready(client, ns.name(), &name, 1, READY_LIMIT).await?;
        note(&format!(
            "rendered deployment Ready after {:.1?}",
            started.elapsed()
        ));
        let pods = running_pods(client, ns.name(), &name).await?;
        let pod = pods
            .first()
            .and_then(|p| p.metadata.name.clone())
            .context("no running pod")?;
        let (stream, attached) = exec_stream(
            client,
            ns.name(),
            &pod,
            "buildkitd",
            &["buildctl", "dial-stdio"],
        )
        .await?;
        let workers = tokio::time::timeout(Duration::from_secs(60), list_workers(stream))
            .await
            .context("ListWorkers timed out")??;
        attached.abort();
        ensure!(!workers.is_empty(), "no workers");
        ns.delete().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_into_the_builder_pod_reaches_buildkit() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let client = cluster.client();
        let ns = TestNamespace::create(client, "exec").await?;
        create_deployment(
            client,
            ns.name(),
            &builder_deployment("builder0", cluster.builder_image(), 1),
        )
        .await?;
        wait_deployment_ready(client, ns.name(), "builder0", 1, READY_LIMIT).await?;
        let pods = running_pods(client, ns.name(), "builder0").await?;
        let pod = pods
            .first()
            .and_then(|p| p.metadata.name.clone())
            .context("no running pod")?;

        // What the readiness probe runs.
        let out = exec_capture(
            client,
            ns.name(),
            &pod,
            "buildkitd",
            &["buildctl", "debug", "workers"],
            Duration::from_secs(60),
        )
        .await?;
        ensure!(out.success, "buildctl debug workers failed: {}", out.stderr);
        ensure!(
            out.stdout.contains("linux/amd64") || out.stdout.contains("linux/arm64"),
            "workers: {}",
            out.stdout
        );

        // What the driver's connection runs: HTTP/2 to BuildKit through the exec stream.
        let started = Instant::now();
        let (stream, attached) = exec_stream(
            client,
            ns.name(),
            &pod,
            "buildkitd",
            &["buildctl", "dial-stdio"],
        )
        .await?;
        let workers = tokio::time::timeout(Duration::from_secs(60), list_workers(stream))
            .await
            .context("ListWorkers timed out")??;
        attached.abort();
        note(&format!(
            "ListWorkers over exec + dial-stdio took {:.2?}: {workers:?}",
            started.elapsed()
        ));
        ensure!(!workers.is_empty(), "no workers");
        ensure!(
            workers.iter().all(|w| !w.platforms.is_empty()),
            "a worker without platforms: {workers:?}"
        );

        // A command that fails must be reported as failed.
        let out = exec_capture(
            client,
            ns.name(),
            &pod,
            "buildkitd",
            &["buildctl", "no-such-command"],
            Duration::from_secs(60),
        )
        .await?;
        ensure!(!out.success, "an unknown buildctl command succeeded");
        ns.delete().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_pods_of_a_two_replica_deployment_serve() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let client = cluster.client();
        let ns = TestNamespace::create(client, "replicas").await?;
        create_deployment(
            client,
            ns.name(),
            &builder_deployment("builder0", cluster.builder_image(), 2),
        )
        .await?;
        wait_deployment_ready(client, ns.name(), "builder0", 2, READY_LIMIT).await?;
        let pods = running_pods(client, ns.name(), "builder0").await?;
        ensure!(
            pods.len() == 2,
            "expected two running pods, got {}",
            pods.len()
        );
        let mut seen_ips = HashSet::new();
        for pod in &pods {
            let name = pod.metadata.name.clone().context("pod name")?;
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default();
            ensure!(seen_ips.insert(ip.clone()), "two pods share IP {ip}");
            let (stream, attached) = exec_stream(
                client,
                ns.name(),
                &name,
                "buildkitd",
                &["buildctl", "dial-stdio"],
            )
            .await?;
            let workers = tokio::time::timeout(Duration::from_secs(60), list_workers(stream))
                .await
                .context("ListWorkers timed out")??;
            attached.abort();
            ensure!(!workers.is_empty(), "pod {name} has no workers");
        }
        ns.delete().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_leaves_nothing_behind() -> anyhow::Result<()> {
    let Some(cluster) = start().await? else {
        return Ok(());
    };
    let Some(local) = cluster.local() else {
        note("not the local backend: nothing of ours on this host to check");
        cluster.teardown().await;
        return Ok(());
    };
    let layout = local.layout().clone();
    let body = async {
        let client = cluster.client();
        let ns = TestNamespace::create(client, "teardown").await?;
        create_deployment(
            client,
            ns.name(),
            &builder_deployment("builder0", cluster.builder_image(), 1),
        )
        .await?;
        wait_deployment_ready(client, ns.name(), "builder0", 1, READY_LIMIT).await?;
        anyhow::Ok(())
    };
    let outcome = tokio::time::timeout(scenario_limit(), body).await;
    // With a pod running, every kind of trace must be visible, or the check below proves nothing.
    let before = host::leftovers(&layout);
    let left = cluster.teardown().await;
    outcome.map_err(|_| anyhow::anyhow!("scenario exceeded {:?}", scenario_limit()))??;
    if before.processes.is_empty()
        || before.mounts.is_empty()
        || before.links.len() < 2
        || before.cgroups.is_empty()
    {
        bail!("a running cluster showed too few traces to check teardown: {before}");
    }
    ensure!(left.is_empty(), "teardown left {left}");
    ensure!(
        host::leftovers(&layout).is_empty(),
        "traces reappeared after teardown"
    );
    ensure!(
        !layout.dir.exists(),
        "work directory {} still exists",
        layout.dir.display()
    );
    Ok(())
}

mod kbx_cli;
mod two_node;

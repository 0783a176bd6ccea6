//! Scenarios on a two-node local cluster: one amd64 node, and one arm64 node (arm64 kubelet and
//! containerd under QEMU user emulation; see `kbx_conformance::local::arm64_node`). They boot
//! their own cluster with `LocalOptions::nodes = 2`, whatever `KBX_CONFORMANCE_NODES` says, and
//! run on the `local` backend only.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::{Node, Pod};
use kbx_conformance::local::arm64_node::Arm64Binaries;
use kbx_conformance::local::{Binaries, LocalOptions};
use kbx_conformance::registry::{ANY_MANIFEST, Registry};
use kbx_conformance::scenario::{TestNamespace, exec_capture, wait_nodes_ready};
use kbx_conformance::{Backend, Cluster};
use kube::Api;
use kube::api::ListParams;

use super::kbx_cli::{Run, User, arm64_busybox};
use super::{attach_shared, in_ci, note, on_shared, scenario_limit};

/// How long a two-node cluster may take to boot (the arm64 node is emulated).
const TWO_NODE_BOOT: Duration = Duration::from_secs(300);

/// Boots a two-node local cluster, or returns `None` (skip) outside CI when it cannot run here.
async fn start_two_nodes() -> anyhow::Result<Option<Cluster>> {
    if Backend::from_env()? != Backend::Local {
        note("skipping: two-node scenarios boot their own local cluster (local backend only)");
        return Ok(None);
    }
    if !in_ci() {
        if !nix::unistd::geteuid().is_root() {
            note("skipping: the local cluster backend needs root (CI=true makes this a failure)");
            return Ok(None);
        }
        if let Err(e) = Binaries::find().and_then(|_| Arm64Binaries::find()) {
            note(&format!("skipping: {e} (CI=true makes this a failure)"));
            return Ok(None);
        }
    }
    let mut options = LocalOptions::new();
    options.nodes = 2;
    options.boot_timeout = TWO_NODE_BOOT;
    let started = Instant::now();
    let cluster = Cluster::start_local(&options)
        .await
        .context("starting the two-node cluster")?;
    note(&format!(
        "two-node cluster ready in {:.1?}",
        started.elapsed()
    ));
    if let Some(local) = cluster.local() {
        note(&format!("boot timings: {:?}", local.timings()));
    }
    Ok(Some(cluster))
}

/// The two-node variant of `scenario`: on the shared cluster when `just conformance` booted a
/// two-node one (`KBX_CONFORMANCE_SHARED_DIR`, `KBX_CONFORMANCE_NODES=2`), with the same
/// clean-up and checks as the other shared scenarios; else as [`two_node_scenario_own`].
async fn two_node_scenario<F>(body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Cluster, &Nodes) -> anyhow::Result<()>,
{
    if let Some(cluster) = attach_shared().await? {
        let nodes = Api::<Node>::all(cluster.client().clone())
            .list(&Default::default())
            .await?;
        if nodes.items.len() == 2 {
            return on_shared(&cluster, scenario_limit(), async |cluster| {
                let nodes = Nodes::read(cluster).await?;
                body(cluster, &nodes).await
            })
            .await;
        }
        note("the shared cluster has one node: booting a two-node cluster");
    }
    two_node_scenario_own(body).await
}

/// Boots a two-node cluster, runs `body` under the scenario limit, tears down and fails if
/// anything was left behind.
async fn two_node_scenario_own<F>(body: F) -> anyhow::Result<()>
where
    F: AsyncFnOnce(&Cluster, &Nodes) -> anyhow::Result<()>,
{
    let Some(cluster) = start_two_nodes().await? else {
        return Ok(());
    };
    let limit = scenario_limit();
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, async {
        let nodes = Nodes::read(&cluster).await?;
        body(&cluster, &nodes).await
    })
    .await;
    note(&format!("scenario body took {:.1?}", started.elapsed()));
    let torn = Instant::now();
    let left = cluster.teardown().await;
    note(&format!("teardown took {:.1?}", torn.elapsed()));
    outcome.map_err(|_| anyhow::anyhow!("scenario exceeded {limit:?}"))??;
    ensure!(left.is_empty(), "teardown left {left}");
    Ok(())
}

/// The names of the two Kubernetes nodes, by architecture, checked on the way: both Ready,
/// InternalIP 127.0.0.1, kubelet v1.20.2, the label `kubernetes.io/arch` and
/// `status.nodeInfo.architecture` agreeing.
struct Nodes {
    amd64: String,
    arm64: String,
}

impl Nodes {
    async fn read(cluster: &Cluster) -> anyhow::Result<Nodes> {
        let list = Api::<Node>::all(cluster.client().clone())
            .list(&Default::default())
            .await?;
        let mut by_arch = BTreeMap::new();
        for node in &list.items {
            let name = node.metadata.name.clone().unwrap_or_default();
            ensure!(
                kbx_conformance::local::node_is_ready(Some(node)),
                "node {name} is not Ready"
            );
            let status = node.status.as_ref().context("node status")?;
            let info = status.node_info.as_ref().context("node info")?;
            let label = node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/arch"))
                .cloned()
                .unwrap_or_default();
            ensure!(
                label == info.architecture,
                "node {name}: label kubernetes.io/arch={label}, nodeInfo.architecture={}",
                info.architecture
            );
            ensure!(
                info.kubelet_version == "v1.20.2",
                "node {name}: kubelet {}",
                info.kubelet_version
            );
            ensure!(
                status
                    .addresses
                    .iter()
                    .flatten()
                    .any(|a| a.type_ == "InternalIP" && a.address == "127.0.0.1"),
                "node {name}: InternalIP is not 127.0.0.1"
            );
            let cidr = node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.clone())
                .unwrap_or_default();
            let want = if label == "arm64" {
                "10.244.0.128/25"
            } else {
                "10.244.0.0/25"
            };
            ensure!(cidr == want, "node {name}: podCIDR {cidr:?}, not {want}");
            note(&format!(
                "node {name}: arch {label}, kubelet {}, runtime {}, podCIDR {cidr}",
                info.kubelet_version, info.container_runtime_version
            ));
            by_arch.insert(label, name);
        }
        ensure!(list.items.len() == 2, "{} nodes, not 2", list.items.len());
        Ok(Nodes {
            amd64: by_arch.remove("amd64").context("no amd64 node")?,
            arm64: by_arch.remove("arm64").context("no arm64 node")?,
        })
    }
}

/// `kbx ARGS…` as `user`, for a command that bootstraps (`create … --bootstrap`), which must
/// succeed.
///
/// qemu-user 7.2 sometimes leaves the emulated arm64 `buildkitd` hanging in a forked child
/// before `exec` (about 1 start in 15; see the README), so the pod never gets ready. When the
/// command fails while a pod of `ns` on the arm64 node is not ready, those pods are deleted
/// and `inspect --bootstrap NAME` runs once more, with a note: the scenario checks kbx, not
/// the emulator. Any other failure fails at once.
async fn bootstrap(
    user: &User,
    args: &[&str],
    client: &kube::Client,
    ns: &str,
    arm64: &str,
) -> anyhow::Result<Run> {
    let run = user.run(args).await?;
    if run.out.status.success() {
        return Ok(run);
    }
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let stuck: Vec<String> = pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(arm64)
                && !kbx_kube::pod_is_ready(p, k8s_openapi::jiff::Timestamp::now())
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let name = args
        .iter()
        .position(|a| *a == "--name")
        .and_then(|i| args.get(i + 1))
        .context("a bootstrap without --name")?;
    if stuck.is_empty() || !run.stderr.contains("not ready") && !run.stderr.contains("ready, got") {
        return run.ok();
    }
    note(&format!(
        "the emulated buildkitd of {stuck:?} did not get ready (the qemu-user fork hang): deleting the pods and bootstrapping {name} once more"
    ));
    for pod in &stuck {
        pods.delete(pod, &kube::api::DeleteParams::default().grace_period(0))
            .await?;
    }
    user.run(&["inspect", "--bootstrap", name]).await?.ok()
}

/// Buildx's documented multi-arch builder `multi` (as [`bootstrap`]): a `linux/amd64` node
/// pinned with `nodeselector=kubernetes.io/arch=amd64` and made current, then a `linux/arm64`
/// node appended with `nodeselector=kubernetes.io/arch=arm64`; `extra` goes to both `create`s.
async fn create_multi(
    user: &User,
    client: &kube::Client,
    ns: &str,
    nodes: &Nodes,
    extra: &[&str],
) -> anyhow::Result<()> {
    for (append, platform, arch) in [
        (false, "linux/amd64", "amd64"),
        (true, "linux/arm64", "arm64"),
    ] {
        let selector = format!("nodeselector=kubernetes.io/arch={arch}");
        let mut args = vec!["create"];
        if append {
            args.push("--append");
        }
        args.extend([
            "--name",
            "multi",
            "--driver",
            "kubernetes",
            "--platform",
            platform,
        ]);
        args.extend(["--driver-opt", &selector]);
        args.extend_from_slice(extra);
        args.push("--bootstrap");
        if !append {
            args.push("--use");
        }
        bootstrap(user, &args, client, ns, &nodes.arm64).await?;
    }
    Ok(())
}

/// The options every builder of these scenarios gets besides the documented ones: its
/// namespace, the test image, a bootstrap timeout that allows for the emulated node (an arm64
/// pod is ready in 10–30 s) and still leaves time for [`bootstrap`]'s second try.
fn base_opts(cluster: &Cluster, ns: &TestNamespace) -> String {
    format!(
        "namespace={},image={},timeout=60s",
        ns.name(),
        cluster.builder_image()
    )
}

/// The pods of builder node `node` (label `app=<node>`) as `(pod, Kubernetes node)`.
async fn pods_of(
    client: &kube::Client,
    ns: &str,
    node: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={node}")))
        .await?;
    Ok(pods
        .items
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
            )
        })
        .collect())
}

/// In the pods of `multi0` (amd64 node) and `multi1` (arm64 node): busybox's `uname -m` is
/// the node's machine (the arm64 node ran the arm64 image of the multi-platform builder image),
/// the daemon's first worker platform is the node's, and each pod reaches the other across
/// the nodes (ping; both sit on one bridge in disjoint halves of one /24).
async fn check_pods_across_nodes(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let mut pods = Vec::new();
    for (builder_node, machine, platform) in [
        ("multi0", "x86_64", "linux/amd64"),
        ("multi1", "aarch64", "linux/arm64"),
    ] {
        let (pod, _) = pods_of(client, ns, builder_node)
            .await?
            .into_iter()
            .next()
            .context("no pod")?;
        let ip = api
            .get(&pod)
            .await?
            .status
            .and_then(|s| s.pod_ip)
            .with_context(|| format!("pod {pod} has no IP"))?;
        let limit = Duration::from_secs(60);
        let out = exec_capture(
            client,
            ns,
            &pod,
            "buildkitd",
            &["busybox", "uname", "-m"],
            limit,
        )
        .await?;
        ensure!(
            out.stdout.trim() == machine,
            "{pod}: uname -m printed {:?}, not {machine}",
            out.stdout
        );
        let out = exec_capture(
            client,
            ns,
            &pod,
            "buildkitd",
            &["buildctl", "debug", "workers"],
            limit,
        )
        .await?;
        let first = out
            .stdout
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_owned();
        ensure!(
            first.starts_with(platform),
            "{pod}: the worker's platforms start with {first:?}, not {platform}:\n{}",
            out.stdout
        );
        note(&format!(
            "{pod} ({ip}): uname -m {machine}, worker platforms {first}"
        ));
        pods.push((pod, ip));
    }
    for (from, to) in [(0, 1), (1, 0)] {
        let (pod, _) = &pods[from];
        let (_, ip) = &pods[to];
        let out = exec_capture(
            client,
            ns,
            pod,
            "buildkitd",
            &["busybox", "ping", "-c", "1", "-W", "5", ip],
            Duration::from_secs(30),
        )
        .await?;
        ensure!(
            out.success && out.stdout.contains(" 0% packet loss"),
            "{pod} does not reach {ip}:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
    Ok(())
}

/// A context whose `RUN uname -m > /arch` runs the target platform's busybox (as `/bin/sh` and
/// `/bin/uname`): Debian's amd64 one and its arm64 one.
fn uname_context(dir: &Path) -> anyhow::Result<()> {
    let arm64 = arm64_busybox();
    ensure!(
        arm64.exists(),
        "{} is missing: run conformance/scripts/fetch-arm64-busybox.sh",
        arm64.display()
    );
    std::fs::copy("/bin/busybox", dir.join("busybox-amd64"))?;
    std::fs::copy(&arm64, dir.join("busybox-arm64"))?;
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\n\
         COPY busybox-$TARGETARCH /bin/sh\nCOPY busybox-$TARGETARCH /bin/uname\n\
         RUN uname -m > /arch\n",
    )?;
    Ok(())
}

/// Buildx's documented multi-arch set-up, word for word: a builder node per architecture, each
/// pinned by `nodeselector=kubernetes.io/arch=…` to the Kubernetes node of that architecture;
/// `--platform linux/amd64,linux/arm64` builds each platform on its own node, and `uname -m`
/// in `RUN` says `x86_64` and `aarch64`. Times each platform alone (`--no-cache`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_multi_arch_builder_runs_each_platform_on_its_node() -> anyhow::Result<()> {
    two_node_scenario(async |cluster, nodes| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "twonode").await?;
        let base = base_opts(cluster, &ns);
        bootstrap(
            &user,
            &[
            "create",
            "--name",
            "multi",
            "--driver",
            "kubernetes",
            "--platform",
            "linux/amd64",
            "--driver-opt",
            "nodeselector=kubernetes.io/arch=amd64",
            "--driver-opt",
            &base,
            "--bootstrap",
            "--use",
        ],
            client,
            ns.name(),
            &nodes.arm64,
        )
        .await?;
        bootstrap(
            &user,
            &[
            "create",
            "--append",
            "--name",
            "multi",
            "--platform",
            "linux/arm64",
            "--driver-opt",
            "nodeselector=kubernetes.io/arch=arm64",
            "--driver-opt",
            &base,
            "--bootstrap",
        ],
            client,
            ns.name(),
            &nodes.arm64,
        )
        .await?;
        for (builder_node, want) in [("multi0", &nodes.amd64), ("multi1", &nodes.arm64)] {
            let pods = pods_of(client, ns.name(), builder_node).await?;
            ensure!(!pods.is_empty(), "builder node {builder_node} has no pod");
            for (pod, on) in &pods {
                ensure!(
                    on == want,
                    "pod {pod} of {builder_node} runs on {on}, not {want}"
                );
            }
        }
        check_pods_across_nodes(client, ns.name()).await?;
        let run = user.run(&["ls"]).await?.ok()?;
        for (builder_node, platform) in [("multi0", "linux/amd64*"), ("multi1", "linux/arm64*")] {
            ensure!(
                run.stdout.lines().any(|l| l.contains(builder_node)
                    && l.contains(" running ")
                    && l.contains(platform)),
                "ls does not show {builder_node} running with {platform}:\n{}",
                run.stdout
            );
        }

        let ctx = tempfile::tempdir()?;
        uname_context(ctx.path())?;
        let dest = user.home().join("both");
        let run = user
            .build(
                ctx.path(),
                &[
                    "--platform",
                    "linux/amd64,linux/arm64",
                    "--network",
                    "none",
                    "-o",
                    &format!("type=local,dest={}", dest.display()),
                ],
            )
            .await?
            .ok()?;
        for (platform, builder_node) in [("linux/amd64", "multi0"), ("linux/arm64", "multi1")] {
            ensure!(
                run.stderr
                    .contains(&format!("#0 building {platform} on {builder_node} ")),
                "{platform} was not built on {builder_node}:\n{}",
                run.stderr
            );
        }
        for (dir, want) in [("linux_amd64", "x86_64\n"), ("linux_arm64", "aarch64\n")] {
            let arch = std::fs::read_to_string(dest.join(dir).join("arch"))
                .with_context(|| format!("reading {dir}/arch"))?;
            ensure!(arch == want, "{dir}: uname -m printed {arch:?}");
        }

        // How much slower the emulated node is: each platform alone, uncached, for the small
        // context above and for a RUN step that loops in the shell.
        let busy = tempfile::tempdir()?;
        uname_context(busy.path())?;
        std::fs::write(
            busy.path().join("Dockerfile"),
            "FROM scratch\nARG TARGETARCH\n\
             COPY busybox-$TARGETARCH /bin/sh\nCOPY busybox-$TARGETARCH /bin/uname\n\
             RUN i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; uname -m > /arch\n",
        )?;
        for (what, dir) in [("uname", ctx.path()), ("100000-step shell loop", busy.path())] {
            let mut took = Vec::new();
            for platform in ["linux/amd64", "linux/arm64"] {
                let dest = user.home().join(format!("{what}-{}", platform.replace('/', "_")));
                let run = user
                    .build(
                        dir,
                        &[
                            "--platform",
                            platform,
                            "--network",
                            "none",
                            "--no-cache",
                            "-o",
                            &format!("type=local,dest={}", dest.display()),
                        ],
                    )
                    .await?
                    .ok()?;
                took.push(run.took);
            }
            note(&format!(
                "uncached single-platform build ({what}): linux/amd64 {:.1?}, linux/arm64 {:.1?} ({:.1}x)",
                took[0],
                took[1],
                took[1].as_secs_f64() / took[0].as_secs_f64().max(0.001)
            ));
        }

        user.run(&["rm", "multi"]).await?.ok()?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// A `replicas=2` builder without a node selector: both pods run (the images are
/// multi-platform, so either node can run them). kbx offers no pod anti-affinity through its
/// driver options, so where the scheduler puts them is recorded, not required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_replicas_without_node_selector_run_on_either_node() -> anyhow::Result<()> {
    two_node_scenario(async |cluster, nodes| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "spread").await?;
        let opts = format!("{},replicas=2", base_opts(cluster, &ns));
        bootstrap(
            &user,
            &[
                "create",
                "--name",
                "spread",
                "--driver",
                "kubernetes",
                "--driver-opt",
                &opts,
                "--bootstrap",
            ],
            client,
            ns.name(),
            &nodes.arm64,
        )
        .await?;
        let pods = pods_of(client, ns.name(), "spread0").await?;
        ensure!(pods.len() == 2, "{} pods, not 2: {pods:?}", pods.len());
        for (pod, on) in &pods {
            ensure!(
                on == &nodes.amd64 || on == &nodes.arm64,
                "pod {pod} runs on {on}"
            );
        }
        let spread = pods[0].1 != pods[1].1;
        note(&format!(
            "replicas=2 without a node selector: {pods:?} ({})",
            if spread {
                "one pod per node"
            } else {
                "both on one node"
            }
        ));
        user.run(&["rm", "spread"]).await?.ok()?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// An unprivileged pod of the (multi-platform) pause image, pinned to `node`, runs: on the
/// arm64 node this needs the arm64 kubelet's patch that gives the sandbox no seccomp profile.
async fn unprivileged_pod_runs_on(
    client: &kube::Client,
    ns: &str,
    node: &str,
) -> anyhow::Result<()> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let name = format!("plain-{}", node.rsplit('-').next().unwrap_or("node"));
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "spec": {
            "nodeName": node,
            // Created right after its namespace, before the default service account's token.
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "pause",
                "image": kbx_conformance::image::PAUSE_IMAGE,
                "imagePullPolicy": "IfNotPresent",
            }],
        },
    }))?;
    api.create(&Default::default(), &pod).await?;
    let running = kube::runtime::wait::await_condition(
        api.clone(),
        &name,
        kube::runtime::conditions::is_pod_running(),
    );
    tokio::time::timeout(Duration::from_secs(90), running)
        .await
        .with_context(|| {
            format!("the unprivileged pod {name} on {node} is not Running after 90 s")
        })??;
    note(&format!("the unprivileged pod {name} runs on {node}"));
    Ok(())
}

/// Every component of the two-node cluster, the arm64 node's emulated containerd and kubelet
/// included, runs with the egress guard in its environment and listens on loopback only.
fn components_have_no_way_off_the_machine(cluster: &Cluster) -> anyhow::Result<()> {
    let local = cluster.local().context("not a local cluster")?;
    let components = local.component_pids();
    let names: Vec<&str> = components.iter().map(|(n, _)| *n).collect();
    for name in ["containerd-arm64", "kubelet-arm64"] {
        ensure!(names.contains(&name), "no {name} among {names:?}");
    }
    ensure!(
        components.len() == 8,
        "expected eight components, got {names:?}"
    );
    super::components_have_no_way_off_the_machine(&components)
}

/// A node selector that no node matches fails the bootstrap fast, with the scheduler's
/// `0/2 nodes are available: …`. (A toleration cannot make a pod unschedulable, and neither
/// node is tainted, so there is no toleration case.) Before that: an unprivileged pod runs on
/// each node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_selector_matching_no_node_fails_the_bootstrap_fast() -> anyhow::Result<()> {
    two_node_scenario(async |cluster, nodes| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "nowhere").await?;
        for node in [&nodes.amd64, &nodes.arm64] {
            unprivileged_pod_runs_on(client, ns.name(), node).await?;
        }
        let opts = format!(
            "{},nodeselector=kubernetes.io/arch=s390x",
            base_opts(cluster, &ns)
        );
        let run = user
            .run(&[
                "create",
                "--name",
                "nowhere",
                "--driver",
                "kubernetes",
                "--driver-opt",
                &opts,
                "--bootstrap",
            ])
            .await?;
        ensure!(!run.out.status.success(), "the bootstrap succeeded");
        ensure!(
            run.stderr.contains("0/2 nodes are available: "),
            "no scheduler message naming both nodes:\n{}",
            run.stderr
        );
        ensure!(
            run.took < Duration::from_secs(60),
            "the bootstrap took {:.1?} to fail",
            run.took
        );
        let _ = user.run(&["rm", "nowhere"]).await?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// Starts a registry pod on `node` (the registry image is multi-platform) and
/// returns `podIP:5000` once it answers from this host, which reaches the pod through the
/// address [`HOST_ADDRESS`] given to the bridge and a host route.
async fn registry_pod_on(
    cluster: &Cluster,
    ns: &TestNamespace,
    node: &str,
) -> anyhow::Result<String> {
    let client = cluster.client();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "registry", "labels": { "app": "registry" } },
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "registry",
                "image": kbx_conformance::image::REGISTRY_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "ports": [{ "containerPort": 5000 }],
            }],
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
        },
    }))?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    pods.create(&Default::default(), &pod).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let ip = loop {
        let p = pods.get("registry").await?;
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if let Some(ip) = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|_| running)
        {
            break ip;
        }
        ensure!(
            Instant::now() < deadline,
            "registry pod not running: {:?}",
            p.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // kbx merges the nodes' pushes into one manifest list from this host, as buildx does from
    // the user's machine: the host needs a way to the registry pod. The bridge gets the pod
    // subnet's first address, outside both nodes' ranges, as a /32, and the host a route to
    // the registry pod alone through it: more specific than any /24 another local cluster's
    // bridge may carry (the shared cluster of `just conformance` keeps one). Both go with the
    // bridge at teardown.
    let bridge = cluster.local().context("local cluster")?.layout().bridge();
    let pod_route = format!("{ip}/32");
    for args in [
        vec!["addr", "add", HOST_ON_BRIDGE, "dev", &bridge],
        vec![
            "route",
            "add",
            &pod_route,
            "dev",
            &bridge,
            "src",
            HOST_ADDRESS,
        ],
    ] {
        let status = std::process::Command::new("ip").args(&args).status()?;
        ensure!(status.success(), "ip {} failed", args.join(" "));
    }
    let host = format!("{ip}:5000");
    loop {
        let probe = Registry::new(&host, None);
        if let Ok(a) = tokio::task::block_in_place(|| probe.get("/v2/", "*/*"))
            && a.status == 200
        {
            return Ok(host);
        }
        ensure!(
            Instant::now() < deadline,
            "the registry pod at {host} does not answer"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The address this host takes on the pod bridge to reach a registry pod.
const HOST_ADDRESS: &str = "10.244.0.1";
/// [`HOST_ADDRESS`] as `ip addr add` takes it: alone, no subnet route.
const HOST_ON_BRIDGE: &str = "10.244.0.1/32";

/// For each platform of the index `repo:reference` (attestations left out): the image
/// config's architecture.
fn pushed_architectures(
    reg: &Registry,
    repo: &str,
    reference: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let index = reg.get(&format!("/v2/{repo}/manifests/{reference}"), ANY_MANIFEST)?;
    ensure!(
        index.status == 200,
        "{repo}:{reference}: HTTP {}",
        index.status
    );
    let index = index.json()?;
    let mut out = BTreeMap::new();
    for m in index["manifests"].as_array().context("not an index")? {
        let platform = format!(
            "{}/{}",
            m["platform"]["os"].as_str().unwrap_or_default(),
            m["platform"]["architecture"].as_str().unwrap_or_default()
        );
        if platform == "unknown/unknown" {
            continue;
        }
        let digest = m["digest"].as_str().context("digest")?;
        let manifest = reg
            .get(&format!("/v2/{repo}/manifests/{digest}"), ANY_MANIFEST)?
            .json()?;
        let config_digest = manifest["config"]["digest"].as_str().context("config")?;
        let config = reg
            .get(&format!("/v2/{repo}/blobs/{config_digest}"), "*/*")?
            .json()?;
        out.insert(
            platform,
            config["architecture"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    Ok(out)
}

/// Buildx's documented multi-arch set-up pushes one manifest list: each node builds and pushes
/// its platform to a registry pod (the registry image's arm64 variant, on the arm64 node), and
/// kbx merges them into one index under the tag, whose
/// images have the config architectures `amd64` and `arm64` (each built natively by the node of
/// that architecture).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_multi_arch_builder_pushes_one_manifest_list() -> anyhow::Result<()> {
    two_node_scenario(async |cluster, nodes| {
        let client = cluster.client();
        let ns = TestNamespace::create(client, "twopush").await?;
        // On the arm64 node: the arm64 image of the registry, run under QEMU, serves both.
        let host = registry_pod_on(cluster, &ns, &nodes.arm64).await?;
        let user = User::new(cluster)?;
        let config = user.home().join("buildkitd.toml");
        std::fs::write(&config, format!("[registry.\"{host}\"]\n  http = true\n"))?;
        let config = config.to_str().context("path")?.to_owned();
        let base = base_opts(cluster, &ns);
        create_multi(
            &user,
            client,
            ns.name(),
            nodes,
            &["--driver-opt", &base, "--buildkitd-config", &config],
        )
        .await?;
        let ctx = tempfile::tempdir()?;
        uname_context(ctx.path())?;
        let tag = format!("{host}/kbx/two-node:1");
        let run = user
            .build(
                ctx.path(),
                &[
                    "--platform",
                    "linux/amd64,linux/arm64",
                    "--network",
                    "none",
                    "--push",
                    "-t",
                    &tag,
                ],
            )
            .await?
            .ok()?;
        for (platform, builder_node) in [("linux/amd64", "multi0"), ("linux/arm64", "multi1")] {
            ensure!(
                run.stderr
                    .contains(&format!("#0 building {platform} on {builder_node} ")),
                "{platform} was not built on {builder_node}:\n{}",
                run.stderr
            );
        }
        let reg = Registry::new(&host, None);
        let archs =
            tokio::task::block_in_place(|| pushed_architectures(&reg, "kbx/two-node", "1"))?;
        ensure!(
            archs
                == BTreeMap::from([
                    ("linux/amd64".to_owned(), "amd64".to_owned()),
                    ("linux/arm64".to_owned(), "arm64".to_owned()),
                ]),
            "the pushed index has {archs:?}"
        );
        note(&format!("{tag}: one index with {archs:?}"));
        user.run(&["rm", "multi"]).await?.ok()?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// With the arm64 node's kubelet stopped (the exec streams to its pods run through it), a
/// two-platform build on buildx's multi-arch set-up fails, naming that node's pod, while an
/// amd64-only build still works on the other node; once the node is NotReady, a two-replica
/// builder's builds go to its pod on the other node (see [`after_missed_heartbeats`]); once the
/// kubelet is back and the node Ready, the two-platform build works again on the same pods. On
/// a cluster of its own, which first shows every component, the emulated ones included, with
/// the egress guard in its environment and listening on loopback only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_build_fails_clearly_while_the_arm64_kubelet_is_down() -> anyhow::Result<()> {
    two_node_scenario_own(async |cluster, nodes| {
        let local = cluster.local().context("local cluster")?;
        let client = cluster.client();
        components_have_no_way_off_the_machine(cluster)?;
        let ns = TestNamespace::create(client, "twodown").await?;
        let user = User::new(cluster)?;
        let base = base_opts(cluster, &ns);
        create_multi(&user, client, ns.name(), nodes, &["--driver-opt", &base]).await?;
        let spread_opts = format!("{base},replicas=2");
        bootstrap(
            &user,
            &[
                "create",
                "--name",
                "spread",
                "--driver",
                "kubernetes",
                "--driver-opt",
                &spread_opts,
                "--bootstrap",
            ],
            client,
            ns.name(),
            &nodes.arm64,
        )
        .await?;
        let spread_arm = pods_of(client, ns.name(), "spread0")
            .await?
            .into_iter()
            .find(|(_, on)| *on == nodes.arm64)
            .map(|(pod, _)| pod);
        let (arm_pod, on) = pods_of(client, ns.name(), "multi1")
            .await?
            .into_iter()
            .next()
            .context("multi1 has no pod")?;
        ensure!(on == nodes.arm64, "{arm_pod} runs on {on}");
        let ctx = tempfile::tempdir()?;
        uname_context(ctx.path())?;
        let both = |dest: &Path| {
            vec![
                "--platform".to_owned(),
                "linux/amd64,linux/arm64".to_owned(),
                "--network".to_owned(),
                "none".to_owned(),
                "-o".to_owned(),
                format!("type=local,dest={}", dest.display()),
            ]
        };

        local.stop_component("kubelet-arm64")?;
        let dest = user.home().join("down");
        let args = both(&dest);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = user.build(ctx.path(), &args).await;
        let amd = user
            .build(
                ctx.path(),
                &[
                    "--platform",
                    "linux/amd64",
                    "--network",
                    "none",
                    "-o",
                    &format!("type=local,dest={}", user.home().join("amd").display()),
                ],
            )
            .await;
        let not_ready = after_missed_heartbeats(cluster, &user, nodes, &spread_arm).await;
        local.start_component("kubelet-arm64")?;
        not_ready?;
        let run = run?;
        note(&format!(
            "two-platform build with the arm64 kubelet stopped: {} after {:.1?}",
            run.out.status, run.took
        ));
        ensure!(
            run.out.status.code() == Some(1),
            "the build did not fail: {}",
            run.stderr
        );
        ensure!(
            run.took <= Duration::from_secs(60),
            "it failed only after {:.1?}",
            run.took
        );
        ensure!(
            run.stderr.contains(&arm_pod),
            "the error does not name the arm64 node's pod {arm_pod}:\n{}",
            run.stderr
        );
        let amd = amd?.ok()?;
        ensure!(
            std::fs::read_to_string(user.home().join("amd/arch"))? == "x86_64\n",
            "the amd64 build wrote no x86_64:\n{}",
            amd.stderr
        );

        wait_nodes_ready(client, Duration::from_secs(180)).await?;
        // A restarted kubelet refuses exec into a pod (`pod does not exist`) until it has
        // synced the pod again, which takes the emulated one several seconds more.
        let back = Instant::now();
        loop {
            let probe = exec_capture(
                client,
                ns.name(),
                &arm_pod,
                "buildkitd",
                &["buildctl", "debug", "workers"],
                Duration::from_secs(30),
            )
            .await;
            if probe.as_ref().is_ok_and(|o| o.success) {
                break;
            }
            ensure!(
                back.elapsed() < Duration::from_secs(120),
                "exec into {arm_pod} still fails 120 s after the kubelet's restart: {probe:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        note(&format!(
            "exec into {arm_pod} works {:.1?} after the node is Ready again",
            back.elapsed()
        ));
        let dest = user.home().join("back");
        let args = both(&dest);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = user.build(ctx.path(), &args).await?.ok()?;
        ensure!(
            run.stderr.contains(&format!("(multi pod {arm_pod})")),
            "the arm64 platform was not built on {arm_pod} again:\n{}",
            run.stderr
        );
        for (dir, want) in [("linux_amd64", "x86_64\n"), ("linux_arm64", "aarch64\n")] {
            let arch = std::fs::read_to_string(dest.join(dir).join("arch"))?;
            ensure!(arch == want, "{dir}: uname -m printed {arch:?}");
        }
        user.run(&["rm", "multi", "spread"]).await?.ok()?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// With the arm64 kubelet stopped: once the node has missed its heartbeats (40 s), the node
/// controller marks it and its pods NotReady. Builds on the two-replica builder `spread` then
/// all go to its Ready pod on the amd64 node (when the scheduler put one pod on each node:
/// `spread_arm`).
async fn after_missed_heartbeats(
    cluster: &Cluster,
    user: &User,
    nodes: &Nodes,
    spread_arm: &Option<String>,
) -> anyhow::Result<()> {
    let client = cluster.client();
    let stopped = Instant::now();
    loop {
        let node = Api::<Node>::all(client.clone()).get(&nodes.arm64).await?;
        if !kbx_conformance::local::node_is_ready(Some(&node)) {
            break;
        }
        ensure!(
            stopped.elapsed() < Duration::from_secs(150),
            "{} is still Ready 150 s after its kubelet stopped",
            nodes.arm64
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    note(&format!(
        "{} NotReady {:.1?} after its kubelet stopped",
        nodes.arm64,
        stopped.elapsed()
    ));
    // The node controller marks the node's pods NotReady right after.
    tokio::time::sleep(Duration::from_secs(5)).await;
    match spread_arm {
        Some(arm) => {
            for i in 0..4 {
                let ctx = tempfile::tempdir()?;
                std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY . /\n")?;
                std::fs::write(ctx.path().join("n"), format!("{i}\n"))?;
                let run = user
                    .build(ctx.path(), &["--builder", "spread"])
                    .await?
                    .ok()?;
                ensure!(
                    !run.stderr.contains(arm.as_str()),
                    "a build went to {arm} on the NotReady node:\n{}",
                    run.stderr
                );
            }
        }
        None => note("both spread pods run on the amd64 node: nothing to steer away from"),
    }
    Ok(())
}

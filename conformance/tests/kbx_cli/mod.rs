//! Scenarios that drive the `kbx` binary against the cluster, as a user would: every step is a
//! `kbx` command run with its own store and the cluster's kubeconfig, and every check reads the
//! cluster (or the exported files) back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kbx_balance::{LoadBalance, PodChooser};
use kbx_conformance::Cluster;
use kbx_conformance::local::config::CLOSED_PROXY;
use kbx_conformance::scenario::{TestNamespace, running_pods, wait_deployment_ready};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

use super::{note, scenario, scenario_within};

mod buildkit;
mod faults;
mod interop;
mod parity;
mod registry;

/// How long a builder may take to become ready after a pod was lost.
const READY_AGAIN: Duration = Duration::from_secs(240);

/// The `kbx` binary of this workspace, built if needed.
fn kbx_binary() -> anyhow::Result<PathBuf> {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "kbx-cli", "--bin", "kbx"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("running cargo build -p kbx-cli")?;
    ensure!(status.success(), "cannot build kbx");
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test binary has no profile directory")?;
    Ok(profile_dir.join("kbx"))
}

/// A user of `kbx`: the binary, a home with its own builder store, and a kubeconfig.
pub(crate) struct User {
    bin: PathBuf,
    home: tempfile::TempDir,
    pub(crate) kubeconfig: PathBuf,
}

/// What one `kbx` command printed, and how long it took.
pub(crate) struct Run {
    pub(crate) out: Output,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) took: Duration,
}

impl Run {
    pub(crate) fn ok(self) -> anyhow::Result<Run> {
        ensure!(
            self.out.status.success(),
            "kbx failed ({}): {}",
            self.out.status,
            self.stderr
        );
        Ok(self)
    }

    /// The pod `kbx build` said it builds on (`#0 building on NODE (BUILDER pod POD)`).
    pub(crate) fn build_pod(&self) -> anyhow::Result<String> {
        Run::pod_of(&self.stderr)
    }

    /// The pod named by the `#0 building on …` line of a build's `stderr`.
    fn pod_of(stderr: &str) -> anyhow::Result<String> {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("#0 building on "))
            .and_then(|l| l.rsplit_once(" pod "))
            .map(|(_, pod)| pod.trim_end_matches(')').to_owned())
            .with_context(|| format!("no pod named in the build output:\n{stderr}"))
    }
}

impl User {
    pub(crate) fn new(cluster: &Cluster) -> anyhow::Result<User> {
        Ok(User {
            bin: kbx_binary()?,
            home: tempfile::tempdir()?,
            kubeconfig: cluster
                .kubeconfig()
                .context("the cluster has no kubeconfig")?,
        })
    }

    pub(crate) fn home(&self) -> &Path {
        self.home.path()
    }

    pub(crate) async fn run(&self, args: &[&str]) -> anyhow::Result<Run> {
        self.run_with(args, &[]).await
    }

    /// `kbx ARGS…` in this user's environment, not started.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home())
            .env("BUILDX_CONFIG", self.home().join("buildx"))
            .env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// [`User::run`] with extra environment variables (e.g. `DOCKER_HOST`).
    async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Run> {
        let started = Instant::now();
        let out = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .await
            .with_context(|| format!("running kbx {args:?}"))?;
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        note(&format!(
            "$ kbx {} ({took:.1?}, {})\n{stdout}{stderr}",
            args.join(" "),
            out.status
        ));
        Ok(Run {
            out,
            stdout,
            stderr,
            took,
        })
    }

    /// `kbx create --name NAME --driver kubernetes --driver-opt OPTS [flags…]`.
    async fn create(&self, name: &str, opts: &str, flags: &[&str]) -> anyhow::Result<Run> {
        let mut args = vec![
            "create",
            "--name",
            name,
            "--driver",
            "kubernetes",
            "--driver-opt",
            opts,
        ];
        args.extend_from_slice(flags);
        self.run(&args).await
    }

    /// `kbx build --progress plain [extra…] DIR`.
    pub(crate) async fn build(&self, dir: &Path, extra: &[&str]) -> anyhow::Result<Run> {
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(extra);
        args.push(dir.to_str().context("context path is not UTF-8")?);
        self.run(&args).await
    }
}

/// Every regular file under `root` with its bytes, by relative path.
fn tree(root: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}

/// Every regular file in a tar archive with its bytes, by path.
fn tar_tree(archive: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(archive)?);
    for entry in tar.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let path = entry.path()?.to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes)?;
            out.insert(path.trim_start_matches("./").to_owned(), bytes);
        }
    }
    Ok(out)
}

/// A small build context: `FROM scratch` + `COPY . /` and a few files, one of them `tag`.
fn context(dir: &Path, tag: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("a/b/c"))?;
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY . /\n")?;
    std::fs::write(dir.join("a/b/c/deep.txt"), "deep\n")?;
    std::fs::write(dir.join("a/empty"), "")?;
    std::fs::write(dir.join("tag"), tag)?;
    Ok(())
}

/// `--driver-opt` for a builder of the test image in `ns`, plus `extra`.
fn driver_opts(cluster: &Cluster, ns: &TestNamespace, extra: &str) -> String {
    let mut opts = format!(
        "namespace={},image={},timeout=240s",
        ns.name(),
        cluster.builder_image()
    );
    if !extra.is_empty() {
        opts.push(',');
        opts.push_str(extra);
    }
    opts
}

/// Every object in `ns` that belongs to builder node `node`: by label `app=<node>` or by a
/// name starting with the node name (ConfigMaps, claims, ReplicaSets).
async fn objects_of(client: &kube::Client, ns: &str, node: &str) -> anyhow::Result<Vec<String>> {
    fn mine(kind: &str, meta: &kube::api::ObjectMeta, node: &str, out: &mut Vec<String>) {
        let name = meta.name.clone().unwrap_or_default();
        let labelled = meta
            .labels
            .as_ref()
            .is_some_and(|l| l.get("app").is_some_and(|a| a == node));
        if labelled || name.starts_with(node) || name.contains(&format!("-{node}-")) {
            out.push(format!("{kind}/{name}"));
        }
    }
    let lp = ListParams::default();
    let mut out = Vec::new();
    for d in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        mine("deployment", &d.metadata, node, &mut out);
    }
    for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        mine("statefulset", &s.metadata, node, &mut out);
    }
    for r in Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        mine("replicaset", &r.metadata, node, &mut out);
    }
    for p in Api::<Pod>::namespaced(client.clone(), ns).list(&lp).await? {
        mine("pod", &p.metadata, node, &mut out);
    }
    for c in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        mine("configmap", &c.metadata, node, &mut out);
    }
    for c in Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        mine("persistentvolumeclaim", &c.metadata, node, &mut out);
    }
    Ok(out)
}

/// A 2 GiB static hostPath volume at `dir` for one claim of the scenario's namespace (the local
/// cluster has no provisioner). Returns the API and the volume's name, to delete it afterwards.
async fn static_volume(
    client: &kube::Client,
    ns: &TestNamespace,
    dir: &Path,
) -> anyhow::Result<(Api<PersistentVolume>, String)> {
    let pv_name = format!("{}-pv", ns.name());
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": pv_name,
            "labels": { "app.kubernetes.io/managed-by": "kbx-conformance" },
        },
        "spec": {
            "capacity": { "storage": "2Gi" },
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": { "path": dir, "type": "Directory" },
        },
    }))?;
    let pvs = Api::<PersistentVolume>::all(client.clone());
    pvs.create(&PostParams::default(), &pv).await?;
    Ok((pvs, pv_name))
}

/// Waits until nothing of builder node `node` is left in `ns` (the garbage collector removes
/// ReplicaSets and pods after the Deployment).
async fn wait_nothing_left(client: &kube::Client, ns: &str, node: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = objects_of(client, ns, node).await?;
        if left.is_empty() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "2 minutes after rm, {node} still has {left:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_create_bootstrap_ls_build_and_rm() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "kbx").await?;
        // 25 s: a Kubernetes 1.20 kubelet marks a pod Ready on its readiness probe's 30 s ticker,
        // so this bootstrap only succeeds because kbx counts pods whose startup probe (the same
        // check) passed (deviation K17).
        let opts = driver_opts(cluster, &ns, "replicas=2,timeout=25s");

        // create --bootstrap: both pods become ready.
        let started = std::time::Instant::now();
        let run = user
            .create("kbxtest", &opts, &["--bootstrap", "--use"])
            .await?
            .ok()?;
        eprintln!(
            "create --bootstrap of 2 replicas took {:?}",
            started.elapsed()
        );
        ensure!(run.stdout == "kbxtest\n", "create prints the name");
        ensure!(
            run.stderr.contains("Deployment kbxtest0 created"),
            "{}",
            run.stderr
        );
        ensure!(
            run.stderr
                .contains("waiting for 2 pods to be ready, timeout: 25 seconds"),
            "{}",
            run.stderr
        );
        let pods = running_pods(client, ns.name(), "kbxtest0").await?;
        ensure!(
            pods.len() == 2,
            "expected two running pods, got {}",
            pods.len()
        );
        // Right after bootstrap, before the readiness ticker: ls lists the builder as running.
        let run = user.run(&["ls"]).await?.ok()?;
        ensure!(
            run.stdout
                .lines()
                .filter(|l| l.contains(" running "))
                .count()
                == 2,
            "{}",
            run.stdout
        );

        // Bootstrapping again changes nothing.
        let run = user.run(&["inspect", "--bootstrap"]).await?.ok()?;
        ensure!(
            run.stderr.contains("Deployment kbxtest0 unchanged"),
            "{}",
            run.stderr
        );
        ensure!(run.stdout.contains("Status:                running"));

        // ls: the builder, current, one row per running pod.
        let run = user.run(&["ls"]).await?.ok()?;
        ensure!(
            run.stdout.lines().any(|l| l.starts_with("kbxtest*")),
            "{}",
            run.stdout
        );
        ensure!(
            run.stdout
                .lines()
                .filter(|l| l.contains(" running "))
                .count()
                == 2,
            "{}",
            run.stdout
        );

        // build: FROM scratch + COPY, exported locally, identical to the source tree.
        let ctx = tempfile::tempdir()?;
        context(ctx.path(), "first")?;
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(ctx.path().join("a/big.bin"), &big)?;
        let dest = user.home().join("out");
        let local = format!("type=local,dest={}", dest.display());
        user.build(ctx.path(), &["-o", &local]).await?.ok()?;
        ensure!(
            tree(&dest)? == tree(ctx.path())?,
            "exported tree differs from the source"
        );

        // A failing step names the step and its output.
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY missing-file /\n",
        )?;
        let run = user.build(ctx.path(), &["-o", &local]).await?;
        ensure!(
            run.out.status.code() == Some(1),
            "a broken Dockerfile must fail the build"
        );
        ensure!(run.stderr.contains("missing-file"));

        // dial-stdio: its standard input and output reach BuildKit's gRPC server in a pod (an
        // HTTP/2 preface and an empty SETTINGS frame are answered with the server's SETTINGS).
        {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut child = user
                .command(&["dial-stdio"])
                .current_dir(ctx.path())
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let mut stdin = child.stdin.take().context("stdin")?;
            let mut stdout = child.stdout.take().context("stdout")?;
            stdin
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await?;
            let mut frame = [0u8; 9];
            tokio::time::timeout(Duration::from_secs(60), stdout.read_exact(&mut frame))
                .await
                .context("no answer through dial-stdio")??;
            ensure!(frame[3] == 0x04, "not a SETTINGS frame: {frame:?}");
            drop(stdin);
            let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .context("dial-stdio did not exit when its input ended")??;
            ensure!(status.success(), "dial-stdio exited with {status}");
        }

        // rm: nothing of the builder is left in the namespace.
        user.run(&["rm", "kbxtest"]).await?.ok()?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
        ensure!(
            deployments.get_opt("kbxtest0").await?.is_none(),
            "the Deployment is left"
        );
        wait_nothing_left(client, ns.name(), "kbxtest0").await?;
        ensure!(
            !user.home().join("buildx/instances/kbxtest").exists(),
            "the store record is left"
        );
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// `sticky` sends a context to the pod buildx would choose, always the same one, and different
/// contexts to different pods; a deleted pod is never chosen; `random` spreads one context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_build_pod_choice_sticky_random_and_lost_pod() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "spread").await?;
        let opts = driver_opts(cluster, &ns, "replicas=2");
        user.create(
            "spread",
            &opts,
            &["--node", "spread0", "--bootstrap", "--use"],
        )
        .await?
        .ok()?;
        let names: Vec<String> = running_pods(client, ns.name(), "spread0")
            .await?
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        ensure!(names.len() == 2, "two running pods expected: {names:?}");
        let pods: Vec<kbx_balance::Pod> = names
            .iter()
            .map(|n| kbx_balance::Pod::running(n.as_str()))
            .collect();

        // One context directory per pod, found with buildx's own sticky choice. The ring has one
        // point per pod, so one pod may own only a sliver of it: with two pods, N keys all land
        // on the same pod with probability 2/(N+1). Looking through 2^20 keys makes that about
        // 2e-6; it costs only MD5s, and in practice the loop ends after a few keys.
        let base = tempfile::tempdir()?;
        let sticky = PodChooser::new(LoadBalance::Sticky);
        let mut per_pod: BTreeMap<String, PathBuf> = BTreeMap::new();
        for i in 0..(1u32 << 20) {
            let dir = base.path().join(format!("ctx{i}"));
            let key = std::path::absolute(&dir)?;
            let pod = sticky.choose(key.as_os_str().as_encoded_bytes(), &pods)?;
            per_pod.entry(pod.name.clone()).or_insert(dir);
            if per_pod.len() == pods.len() {
                break;
            }
        }
        ensure!(
            per_pod.len() == 2,
            "no context maps to each pod: {per_pod:?}"
        );
        for (pod, dir) in &per_pod {
            context(dir, pod)?;
            for _ in 0..2 {
                let chosen = user.build(dir, &[]).await?.ok()?.build_pod()?;
                ensure!(
                    &chosen == pod,
                    "sticky: {} built on {chosen}, buildx chooses {pod}",
                    dir.display()
                );
            }
        }

        // The pod of the first context is deleted: the next build goes elsewhere and works.
        let (lost, dir) = per_pod.iter().next().context("a pod")?;
        Api::<Pod>::namespaced(client.clone(), ns.name())
            .delete(lost, &DeleteParams::default())
            .await?;
        let out = user
            .build(
                dir,
                &[
                    "-o",
                    &format!(
                        "type=local,dest={}",
                        user.home().join("after-loss").display()
                    ),
                ],
            )
            .await?
            .ok()?;
        let chosen = out.build_pod()?;
        ensure!(&chosen != lost, "built on the deleted pod {lost}");
        ensure!(tree(&user.home().join("after-loss"))? == tree(dir)?);

        // random: once both pods are ready again, one context lands on both.
        wait_deployment_ready(client, ns.name(), "spread0", 2, READY_AGAIN).await?;
        let opts = driver_opts(cluster, &ns, "replicas=2,loadbalance=random");
        let run = user
            .create("spread", &opts, &["--node", "spread0"])
            .await?
            .ok()?;
        ensure!(run.stdout == "spread\n", "{}", run.stdout);
        let mut seen = BTreeSet::new();
        // Both pods are seen within 24 builds unless random is broken (chance 2^-23).
        for _ in 0..24 {
            seen.insert(user.build(dir, &[]).await?.ok()?.build_pod()?);
            if seen.len() == 2 {
                break;
            }
        }
        ensure!(seen.len() == 2, "random chose only {seen:?} in 24 builds");

        user.run(&["rm", "spread"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "spread0").await?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// Options reach the cluster (labels, annotations, node selector, tolerations, resources, a
/// pinned kubeconfig context), a tar export equals the source, a pull failure is reported
/// before the timeout, and `rm` leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_create_options_reach_the_cluster_and_rm_leaves_nothing() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let mut user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "opts").await?;
        let node = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find_map(|n| n.metadata.name)
            .context("no node")?;

        // A kubeconfig whose current context points at a closed port: only `context=` works.
        let mut config = kube::config::Kubeconfig::read_from(&user.kubeconfig)?;
        let real = config
            .current_context
            .clone()
            .context("the kubeconfig has no current context")?;
        let mut nowhere_cluster = config.clusters.first().cloned().context("no cluster")?;
        nowhere_cluster.name = "nowhere".to_owned();
        if let Some(c) = nowhere_cluster.cluster.as_mut() {
            c.server = Some(CLOSED_PROXY.replace("http://", "https://"));
        }
        config.clusters.push(nowhere_cluster);
        let mut nowhere_context = config.contexts.first().cloned().context("no context")?;
        nowhere_context.name = "nowhere".to_owned();
        if let Some(c) = nowhere_context.context.as_mut() {
            c.cluster = "nowhere".to_owned();
        }
        config.contexts.push(nowhere_context);
        config.current_context = Some("nowhere".to_owned());
        let pinned = user.home().join("kubeconfig");
        std::fs::write(&pinned, serde_json::to_vec(&config)?)?;
        user.kubeconfig = pinned;

        let extra = format!(
            "context={real},\"labels=team=build,tier=ci\",annotations=kbx.test/owner=conformance,\
             nodeselector=kubernetes.io/hostname={node},\
             \"tolerations=key=dedicated,value=builds,effect=NoSchedule\",\
             requests.cpu=100m,requests.memory=64Mi,limits.memory=3Gi"
        );
        let opts = driver_opts(cluster, &ns, &extra);
        user.create("opts", &opts, &["--bootstrap"]).await?.ok()?;
        let d = Api::<Deployment>::namespaced(client.clone(), ns.name())
            .get("opts0")
            .await?;
        let template = &d.spec.template;
        let meta = template.metadata.as_ref().context("no template metadata")?;
        let labels = meta.labels.clone().unwrap_or_default();
        ensure!(
            labels.get("team").map(String::as_str) == Some("build")
                && labels.get("tier").map(String::as_str) == Some("ci")
                && labels.get("app").map(String::as_str) == Some("opts0"),
            "pod labels {labels:?}"
        );
        let annotations = meta.annotations.clone().unwrap_or_default();
        ensure!(
            annotations.get("kbx.test/owner").map(String::as_str) == Some("conformance"),
            "pod annotations {annotations:?}"
        );
        let spec = template.spec.as_ref().context("no pod spec")?;
        ensure!(
            spec.node_selector
                .as_ref()
                .and_then(|s| s.get("kubernetes.io/hostname"))
                == Some(&node),
            "node selector {:?}",
            spec.node_selector
        );
        let tolerations = spec.tolerations.clone().unwrap_or_default();
        ensure!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("dedicated")
                    && t.value.as_deref() == Some("builds")
                    && t.effect.as_deref() == Some("NoSchedule")),
            "tolerations {tolerations:?}"
        );
        let resources = spec.containers[0]
            .resources
            .clone()
            .context("no resources")?;
        let q =
            |m: &Option<
                BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
            >,
             k: &str| { m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone()) };
        ensure!(
            q(&resources.requests, "cpu").as_deref() == Some("100m")
                && q(&resources.requests, "memory").as_deref() == Some("64Mi")
                && q(&resources.limits, "memory").as_deref() == Some("3Gi"),
            "resources {resources:?}"
        );
        let pods = running_pods(client, ns.name(), "opts0").await?;
        ensure!(
            pods.len() == 1
                && pods[0].spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(&node),
            "the pod runs on {node}"
        );

        // ls and inspect reach the cluster through the pinned context too.
        let run = user.run(&["ls"]).await?.ok()?;
        ensure!(
            run.stdout.lines().any(|l| l.contains(" running ")),
            "{}",
            run.stdout
        );

        // A tar export equals the source tree.
        let ctx = tempfile::tempdir()?;
        context(ctx.path(), "tar")?;
        let archive = user.home().join("out.tar");
        user.build(
            ctx.path(),
            &[
                "--builder",
                "opts",
                "-o",
                &format!("type=tar,dest={}", archive.display()),
            ],
        )
        .await?
        .ok()?;
        ensure!(
            tar_tree(&archive)? == tree(ctx.path())?,
            "the tar export differs from the source"
        );

        // An image that cannot be pulled fails the bootstrap long before its timeout.
        let opts = format!(
            "namespace={},image=registry.invalid/kbx/none:1,context={real},timeout=300s",
            ns.name()
        );
        let started = Instant::now();
        let run = user.create("nopull", &opts, &["--bootstrap"]).await?;
        ensure!(
            !run.out.status.success(),
            "bootstrap of an unpullable image succeeded"
        );
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the pull failure was only reported at the timeout"
        );
        ensure!(
            run.stderr.contains("ImagePullBackOff") || run.stderr.contains("ErrImagePull"),
            "the error does not name the pull failure: {}",
            run.stderr
        );

        // rm leaves nothing of either builder.
        user.run(&["rm", "opts"]).await?.ok()?;
        user.run(&["rm", "nopull"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "opts0").await?;
        wait_nothing_left(client, ns.name(), "nopull0").await?;
        let run = user.run(&["ls"]).await?.ok()?;
        ensure!(
            !run.stdout.contains("opts") && !run.stdout.contains("nopull"),
            "{}",
            run.stdout
        );
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// A claim-backed StatefulSet (bound to a static hostPath volume: the local cluster has no
/// provisioner) builds, and `rm` deletes its claims unless `--keep-state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_statefulset_with_claims_builds_and_rm_deletes_claims() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "state").await?;
        let volume_dir = tempfile::tempdir()?;
        let (pvs, pv_name) = static_volume(client, &ns, volume_dir.path()).await?;

        let opts = driver_opts(cluster, &ns, "persistent-volume-claim.requests.storage=1Gi");
        let run = user
            .create("state", &opts, &["--bootstrap", "--use"])
            .await?
            .ok()?;
        ensure!(
            run.stderr.contains("StatefulSet state0 created"),
            "{}",
            run.stderr
        );
        let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns.name())
            .list(&ListParams::default())
            .await?;
        ensure!(
            claims.items.len() == 1
                && claims.items[0]
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_ref())
                    == Some(&pv_name),
            "the claim is not bound to the volume"
        );

        let ctx = tempfile::tempdir()?;
        context(ctx.path(), "state")?;
        let dest = user.home().join("out");
        user.build(
            ctx.path(),
            &["-o", &format!("type=local,dest={}", dest.display())],
        )
        .await?
        .ok()?;
        ensure!(tree(&dest)? == tree(ctx.path())?);
        // BuildKit's state lives on the claim's volume.
        ensure!(
            std::fs::read_dir(volume_dir.path())?.next().is_some(),
            "nothing was written to the claim's volume"
        );

        user.run(&["rm", "state"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "state0").await?;
        pvs.delete(&pv_name, &DeleteParams::default()).await?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// Two nodes of one builder, one declared `linux/arm64`: a two-platform build runs on both,
/// each node building its own platform, and a local export has one directory per platform;
/// exports that would need merging are refused; `--leave` removes the node's objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_multi_node_builder_routes_platforms_to_their_nodes() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "multi").await?;
        let opts = driver_opts(cluster, &ns, "");
        user.create(
            "multi",
            &opts,
            &[
                "--node",
                "multi-amd",
                "--platform",
                "linux/amd64",
                "--bootstrap",
                "--use",
            ],
        )
        .await?
        .ok()?;
        user.create(
            "multi",
            &opts,
            &[
                "--append",
                "--node",
                "multi-arm",
                "--platform",
                "linux/arm64",
                "--bootstrap",
            ],
        )
        .await?
        .ok()?;
        let run = user.run(&["ls"]).await?.ok()?;
        for (node, platform) in [("multi-amd", "linux/amd64*"), ("multi-arm", "linux/arm64*")] {
            ensure!(
                run.stdout
                    .lines()
                    .any(|l| l.contains(node) && l.contains(" running ") && l.ends_with(platform)),
                "ls does not show {node} running with {platform}:\n{}",
                run.stdout
            );
        }

        let ctx = tempfile::tempdir()?;
        context(ctx.path(), "multi")?;
        let source = tree(ctx.path())?;
        let both = "linux/amd64,linux/arm64";

        // Each platform on its node, one directory per platform.
        let dest = user.home().join("both");
        let local = format!("type=local,dest={}", dest.display());
        let run = user
            .build(ctx.path(), &["--platform", both, "-o", &local])
            .await?
            .ok()?;
        for (platform, node) in [("linux/amd64", "multi-amd"), ("linux/arm64", "multi-arm")] {
            ensure!(
                run.stderr
                    .contains(&format!("#0 building {platform} on {node} (multi pod ")),
                "{platform} was not built on {node}:\n{}",
                run.stderr
            );
        }
        ensure!(
            tree(&dest.join("linux_amd64"))? == source,
            "linux_amd64 differs"
        );
        ensure!(
            tree(&dest.join("linux_arm64"))? == source,
            "linux_arm64 differs"
        );

        // One platform: only its node, a flat export.
        let dest = user.home().join("arm");
        let run = user
            .build(
                ctx.path(),
                &[
                    "--platform",
                    "linux/arm64",
                    "-o",
                    &format!("type=local,dest={}", dest.display()),
                ],
            )
            .await?
            .ok()?;
        ensure!(
            run.stderr.contains("#0 building linux/arm64 on multi-arm ")
                && !run.stderr.contains("on multi-amd "),
            "{}",
            run.stderr
        );
        ensure!(tree(&dest)? == source, "the arm64 export differs");

        // Refused before any solve: --load of two platforms (buildx's text), a split tar.
        let run = user
            .build(ctx.path(), &["--platform", both, "--load"])
            .await?;
        ensure!(
            run.out.status.code() == Some(1)
                && run.stderr.contains(
                    "docker exporter does not currently support exporting manifest lists"
                ),
            "{}",
            run.stderr
        );
        let run = user
            .build(ctx.path(), &["--platform", both, "-o", "type=tar,dest=-"])
            .await?;
        ensure!(
            run.out.status.code() == Some(1)
                && run
                    .stderr
                    .contains("tar for multi-node builds currently not supported"),
            "{}",
            run.stderr
        );

        // --leave deletes the node's objects; rm the rest.
        user.run(&[
            "create",
            "--name",
            "multi",
            "--leave",
            "--node",
            "multi-arm",
        ])
        .await?
        .ok()?;
        wait_nothing_left(client, ns.name(), "multi-arm").await?;
        ensure!(
            !running_pods(client, ns.name(), "multi-amd")
                .await?
                .is_empty(),
            "--leave touched the other node"
        );
        user.run(&["rm", "multi"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "multi-amd").await?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// The kernel's binfmt_misc directory on the host, mounted for as long as this lives if it
/// was not mounted already.
struct BinfmtMisc {
    mounted_here: bool,
}

impl BinfmtMisc {
    const DIR: &str = "/proc/sys/fs/binfmt_misc";
    /// The handler the binfmt image registers.
    const HANDLER: &str = "/proc/sys/fs/binfmt_misc/kbx-qemu-aarch64";

    fn open() -> anyhow::Result<BinfmtMisc> {
        let register = Path::new(Self::DIR).join("register");
        if register.exists() {
            return Ok(BinfmtMisc {
                mounted_here: false,
            });
        }
        nix::mount::mount(
            Some("binfmt_misc"),
            Self::DIR,
            Some("binfmt_misc"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .context("mounting binfmt_misc")?;
        Ok(BinfmtMisc { mounted_here: true })
    }

    /// Removes the handler the binfmt image registers, if present.
    fn remove_handler(&self) -> anyhow::Result<()> {
        if Path::new(Self::HANDLER).exists() {
            std::fs::write(Self::HANDLER, "-1").context("removing the binfmt handler")?;
        }
        Ok(())
    }
}

impl Drop for BinfmtMisc {
    fn drop(&mut self) {
        let _ = self.remove_handler();
        if self.mounted_here {
            let _ = nix::mount::umount(Self::DIR);
        }
    }
}

/// The cached arm64 busybox and the host's binfmt_misc with the arm64 handler removed, so
/// that `qemu.install=true` has to register it again.
fn arm64_emulation_prerequisites() -> anyhow::Result<(PathBuf, BinfmtMisc)> {
    let arm64 = arm64_busybox();
    ensure!(
        arm64.exists(),
        "{} is missing: run conformance/scripts/fetch-arm64-busybox.sh",
        arm64.display()
    );
    let binfmt = BinfmtMisc::open()?;
    binfmt.remove_handler()?;
    Ok((arm64, binfmt))
}

/// The driver options that install the test binfmt image's arm64 emulator.
fn qemu_install_opts() -> String {
    format!(
        "qemu.install=true,qemu.image={}",
        kbx_conformance::image::BINFMT_IMAGE
    )
}

/// Builds `ctx` (whose Dockerfile writes `uname -m` to `/arch`) for `linux/amd64,linux/arm64`
/// without network into `dest`, and checks each platform's directory names its machine.
async fn build_both_platforms_and_check_arch(
    user: &User,
    ctx: &Path,
    dest: &Path,
) -> anyhow::Result<()> {
    user.build(
        ctx,
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
    for (dir, want) in [("linux_amd64", "x86_64\n"), ("linux_arm64", "aarch64\n")] {
        let arch = std::fs::read_to_string(dest.join(dir).join("arch"))?;
        ensure!(arch == want, "{dir}: uname -m printed {arch:?}");
    }
    Ok(())
}

/// The arm64 busybox that `conformance/scripts/fetch-arm64-busybox.sh` caches.
pub(crate) fn arm64_busybox() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("kbx/arm64/busybox")
}

/// `qemu.install=true` registers an arm64 emulator on the node through the init container;
/// the node's workers then report `linux/arm64`, and arm64 `RUN` steps really execute (under
/// QEMU), alone and next to amd64 in one two-platform build on that single node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_qemu_install_runs_arm64_steps() -> anyhow::Result<()> {
    scenario(async |cluster| {
        if cluster.local().is_none() {
            note("skipping: the QEMU scenario changes the host's binfmt_misc (local backend only)");
            return Ok(());
        }
        let (arm64, binfmt) = arm64_emulation_prerequisites()?;
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "qemu").await?;
        let opts = driver_opts(cluster, &ns, &qemu_install_opts());
        user.create("qemu", &opts, &["--bootstrap", "--use"])
            .await?
            .ok()?;
        let handler = std::fs::read_to_string(BinfmtMisc::HANDLER)
            .context("qemu.install=true registered no arm64 handler")?;
        ensure!(
            handler.starts_with("enabled") && handler.contains("flags: F"),
            "{handler}"
        );
        let run = user.run(&["ls", "--no-trunc"]).await?.ok()?;
        ensure!(
            run.stdout
                .lines()
                .any(|l| l.contains(" running ") && l.contains("linux/arm64")),
            "the workers do not report linux/arm64:\n{}",
            run.stdout
        );

        // Each platform's busybox runs `uname -m`; the arm64 one needs QEMU.
        let ctx = tempfile::tempdir()?;
        std::fs::copy("/bin/busybox", ctx.path().join("busybox-amd64"))?;
        std::fs::copy(&arm64, ctx.path().join("busybox-arm64"))?;
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nARG TARGETARCH\nCOPY busybox-$TARGETARCH /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /arch\"]\n",
        )?;
        let dest = user.home().join("arm");
        user.build(
            ctx.path(),
            &[
                "--platform",
                "linux/arm64",
                "--network",
                "none",
                "-o",
                &format!("type=local,dest={}", dest.display()),
            ],
        )
        .await?
        .ok()?;
        let arch = std::fs::read_to_string(dest.join("arch"))?;
        ensure!(arch == "aarch64\n", "uname -m printed {arch:?}");

        build_both_platforms_and_check_arch(&user, ctx.path(), &user.home().join("both")).await?;

        user.run(&["rm", "qemu"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "qemu0").await?;
        ns.delete().await?;
        binfmt.remove_handler()?;
        ensure!(
            !Path::new(BinfmtMisc::HANDLER).exists(),
            "the arm64 handler is still registered"
        );
        drop(binfmt);
        Ok(())
    })
    .await
}

//! Faults a user meets on a real cluster: bootstraps that cannot succeed fail with the pod's
//! reason, early where the reason cannot change, and `rm` afterwards leaves nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::Node;
use kbx_conformance::image::PAUSE_IMAGE;
use kbx_conformance::scenario::{TestNamespace, wait_nodes_ready};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

use super::{User, note, objects_of, scenario};

/// The taint the scenario puts on the node for the toleration case.
const TAINT_KEY: &str = "kbx-conformance/fault";

/// One bootstrap that must fail.
struct Case {
    /// Builder name.
    name: &'static str,
    /// The image, when not the builder image.
    image: Option<&'static str>,
    /// Extra `--driver-opt` entries.
    opts: String,
    /// Extra `create` flags.
    flags: Vec<&'static str>,
    /// Texts the error must hold (besides the pod's name).
    expect: Vec<String>,
    /// The error must come within this time.
    limit: Duration,
    /// Taint the node (`TAINT_KEY=yes:NoSchedule`) while the case runs.
    taint: bool,
}

/// Sets or clears the scenario's taint on `node`, keeping every other taint.
async fn set_taint(client: &kube::Client, node: &str, on: bool) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let current = api.get(node).await?;
    let mut taints: Vec<serde_json::Value> = current
        .spec
        .and_then(|s| s.taints)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != TAINT_KEY)
        .map(|t| serde_json::to_value(t).unwrap_or_default())
        .collect();
    if on {
        taints
            .push(serde_json::json!({ "key": TAINT_KEY, "value": "yes", "effect": "NoSchedule" }));
    }
    api.patch(
        node,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": { "taints": taints } })),
    )
    .await?;
    Ok(())
}

/// Bootstraps that cannot succeed: a node selector no node matches and a taint the pod does
/// not tolerate fail within seconds with the scheduler's words (deviation K4; Buildx waits
/// for the whole timeout), a crash-looping daemon fails on `CrashLoopBackOff`, and a pod whose
/// probe never passes fails at `timeout=` saying so. Each time the pod is named, and `rm`
/// afterwards leaves no object and no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_bootstrap_failures_name_the_pods_reason() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "faults").await?;
        let all_nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let nodes = all_nodes.len();
        let node = all_nodes
            .into_iter()
            .find_map(|n| n.metadata.name)
            .context("no node")?;
        let cases = [
            Case {
                name: "nosel",
                image: None,
                opts: "nodeselector=kubernetes.io/arch=s390x,timeout=180s".to_owned(),
                flags: vec![],
                expect: vec![
                    format!("Unschedulable: 0/{nodes} nodes are available"),
                    // "node selector" or, on Kubernetes 1.20, "Pod's node affinity".
                    "didn't match".to_owned(),
                ],
                limit: Duration::from_secs(60),
                taint: false,
            },
            Case {
                name: "taint",
                image: None,
                opts: "timeout=180s".to_owned(),
                flags: vec![],
                expect: vec![format!("had taint {{{TAINT_KEY}: yes}}")],
                limit: Duration::from_secs(60),
                taint: true,
            },
            Case {
                name: "crash",
                image: None,
                opts: "timeout=180s".to_owned(),
                flags: vec!["--buildkitd-flags", "--no-such-flag"],
                // The error lines of the container's log follow (buildkitd prints its usage
                // after the bad flag, so a plain tail would miss the cause).
                expect: vec![
                    "CrashLoopBackOff".to_owned(),
                    "flag provided but not defined: -no-such-flag".to_owned(),
                ],
                limit: Duration::from_secs(120),
                taint: false,
            },
            Case {
                name: "noready",
                image: Some(PAUSE_IMAGE),
                opts: "timeout=20s".to_owned(),
                flags: vec![],
                expect: vec!["expected 1 replicas to be ready, got 0".to_owned()],
                limit: Duration::from_secs(60),
                taint: false,
            },
        ];
        for case in cases {
            let image = case.image.unwrap_or(cluster.builder_image());
            let opts = format!("namespace={},image={image},{}", ns.name(), case.opts);
            if case.taint {
                set_taint(client, &node, true).await?;
            }
            let mut args = vec!["--bootstrap"];
            args.extend(case.flags.iter().copied());
            let started = Instant::now();
            let run = user.create(case.name, &opts, &args).await;
            if case.taint {
                set_taint(client, &node, false).await?;
            }
            let run = run?;
            let took = started.elapsed();
            note(&format!(
                "{}: failed after {took:.1?}: {}",
                case.name,
                run.stderr.trim()
            ));
            ensure!(
                run.out.status.code() == Some(1),
                "{}: create --bootstrap must fail: {}",
                case.name,
                run.stderr
            );
            ensure!(
                took <= case.limit,
                "{}: failed after {took:?}, more than {:?}",
                case.name,
                case.limit
            );
            ensure!(
                run.stderr.contains(&format!("pod {}0-", case.name)),
                "{}: the error does not name the pod: {}",
                case.name,
                run.stderr
            );
            for text in &case.expect {
                ensure!(
                    run.stderr.contains(text.as_str()),
                    "{}: the error does not say {text:?}: {}",
                    case.name,
                    run.stderr
                );
            }
            // rm removes what the failed bootstrap made, and the record.
            user.run(&["rm", case.name]).await?.ok()?;
            super::wait_nothing_left(client, ns.name(), &format!("{}0", case.name)).await?;
            ensure!(
                !user
                    .home()
                    .join("buildx/instances")
                    .join(case.name)
                    .exists(),
                "{}: the store record is left",
                case.name
            );
        }
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// Writes a Dockerfile (`FROM scratch`, `COPY . /`) and 300 MB of incompressible bytes into
/// `dir`: an upload of several seconds through exec on any machine.
fn big_context(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY . /\n")?;
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("big"))?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..300 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&block)?;
    }
    f.flush()?;
    Ok(())
}

/// A `kbx build --progress plain` of a large context, started and sending its context.
struct Upload {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    stderr: String,
    /// The pod the build said it builds on.
    pod: String,
}

impl Upload {
    /// Starts the build of `dir` and returns once its progress shows the context on its way.
    async fn start(user: &User, dir: &std::path::Path) -> anyhow::Result<Upload> {
        use tokio::io::AsyncBufReadExt as _;
        let dir = dir.to_str().context("context path is not UTF-8")?;
        let mut child = user
            .command(&["build", "--progress", "plain", dir])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
        let mut stderr = String::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .context("no progress from kbx build")??
                .context("kbx build ended before sending its context")?;
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("load build context") {
                let pod = super::Run::pod_of(&stderr)?;
                return Ok(Upload {
                    child,
                    lines,
                    stderr,
                    pod,
                });
            }
        }
    }

    /// Reads the output until a line contains `text` (at most 120 s).
    async fn wait_for(&mut self, text: &str) -> anyhow::Result<()> {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
                .await
                .with_context(|| format!("no {text:?} from kbx build"))??
                .with_context(|| format!("kbx build ended before printing {text:?}"))?;
            self.stderr.push_str(&line);
            self.stderr.push('\n');
            if line.contains(text) {
                return Ok(());
            }
        }
    }

    /// Reads the rest of the output and waits for the exit, at most 60 s after `what`
    /// happened. Returns the exit status, the whole standard error and the text after `ERROR:`.
    async fn finish(
        mut self,
        what: &str,
    ) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
        let status = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = self.lines.next_line().await? {
                self.stderr.push_str(&line);
                self.stderr.push('\n');
            }
            self.child.wait().await
        })
        .await
        .with_context(|| format!("kbx build still runs 60 s after {what}"))??;
        let error = self
            .stderr
            .split_once("ERROR:")
            .map(|(_, e)| e.to_owned())
            .unwrap_or_default();
        Ok((status, self.stderr, error))
    }
}

/// Checks a build that lost its pod (`what` happened `took` before it ended): exit status 1
/// within 30 s, and an error that names `pod`.
fn failed_clearly(
    what: &str,
    pod: &str,
    took: Duration,
    (status, stderr, error): (std::process::ExitStatus, String, String),
) -> anyhow::Result<()> {
    note(&format!(
        "build with {what}: exit {status} after {took:.1?}; error:{error}"
    ));
    ensure!(status.code() == Some(1), "exit status {status}: {stderr}");
    ensure!(
        took <= Duration::from_secs(30),
        "failed only after {took:?}"
    );
    ensure!(
        error.contains(pod),
        "the error does not name the pod {pod}: {stderr}"
    );
    Ok(())
}

/// The builder's pod is deleted while `kbx build` uploads a large context: the build fails
/// within 30 s naming the pod (not a bare transport error), never hangs; the Deployment
/// replaces the pod and the next build works. With two replicas, the pod is deleted while a
/// `RUN` step runs: the build fails the same way, and a build started right after goes to the
/// other pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_build_fails_clearly_when_its_pod_is_killed_mid_upload() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "killed").await?;
        let opts = super::driver_opts(cluster, &ns, "replicas=1");
        user.create("killed", &opts, &["--bootstrap", "--use"])
            .await?
            .ok()?;

        let ctx = tempfile::tempdir()?;
        big_context(ctx.path())?;
        let upload = Upload::start(&user, ctx.path()).await?;
        let pod = upload.pod.clone();
        tokio::time::sleep(Duration::from_secs(2)).await;
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns.name())
            .delete(&pod, &kube::api::DeleteParams::default().grace_period(0))
            .await?;
        let killed = Instant::now();
        let ended = upload.finish("its pod was deleted").await?;
        failed_clearly("its pod deleted mid-upload", &pod, killed.elapsed(), ended)?;

        // The Deployment replaces the pod; once it is ready, the next build works.
        user.run(&["inspect", "--bootstrap"]).await?.ok()?;
        std::fs::remove_file(ctx.path().join("big"))?;
        std::fs::write(ctx.path().join("small"), "after the loss\n")?;
        let dest = user.home().join("out");
        let out = format!("type=local,dest={}", dest.display());
        let run = user.build(ctx.path(), &["-o", &out]).await?.ok()?;
        ensure!(run.build_pod()? != pod, "built on the deleted pod");
        ensure!(std::fs::read_to_string(dest.join("small"))? == "after the loss\n");

        user.run(&["rm", "killed"]).await?.ok()?;

        // Two replicas; the pod is deleted while a RUN step runs. The build fails naming it,
        // and a build started right after goes to the other, Ready pod.
        let opts = super::driver_opts(cluster, &ns, "replicas=2");
        user.create("killed2", &opts, &["--bootstrap", "--use"])
            .await?
            .ok()?;
        let run_ctx = tempfile::tempdir()?;
        std::fs::copy("/bin/busybox", run_ctx.path().join("busybox"))?;
        std::fs::write(
            run_ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo step-started; /bin/busybox sleep 60\"]\n",
        )?;
        let mut running = Upload::start(&user, run_ctx.path()).await?;
        let pod = running.pod.clone();
        running.wait_for("step-started").await?;
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns.name())
            .delete(&pod, &kube::api::DeleteParams::default().grace_period(0))
            .await?;
        let killed = Instant::now();
        let ended = running.finish("its pod was deleted").await?;
        failed_clearly("its pod deleted during RUN", &pod, killed.elapsed(), ended)?;
        // No waiting for the replacement: the other pod is Ready and takes the build.
        std::fs::write(
            run_ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n",
        )?;
        let run = user.build(run_ctx.path(), &[]).await?.ok()?;
        ensure!(run.build_pod()? != pod, "the next build went to the deleted pod {pod}");
        user.run(&["rm", "killed2"]).await?.ok()?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// A kubeconfig for service account `name` of `ns` (its token from the token controller's
/// Secret), on the cluster of `base`.
async fn service_account_kubeconfig(
    client: &kube::Client,
    ns: &str,
    name: &str,
    base: &std::path::Path,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    accounts
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(serde_json::json!({ "metadata": { "name": name } }))?,
        )
        .await?;
    // Kubernetes 1.20's token controller writes a token Secret for every service account.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        let found = secrets
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find(|s| {
                s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                    && s.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("kubernetes.io/service-account.name"))
                        .is_some_and(|n| n == name)
            })
            .and_then(|s| s.data?.get("token").cloned());
        if let Some(token) = found {
            break String::from_utf8(token.0)?;
        }
        ensure!(
            Instant::now() < deadline,
            "no token Secret for service account {name}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut config = kube::config::Kubeconfig::read_from(base)?;
    for auth in &mut config.auth_infos {
        auth.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..kube::config::AuthInfo::default()
        });
    }
    std::fs::write(out, serde_json::to_vec(&config)?)?;
    Ok(())
}

/// Grants service account `name` of `ns` `verbs` on `resources` (core and apps groups).
async fn grant(
    client: &kube::Client,
    ns: &str,
    name: &str,
    rules: serde_json::Value,
) -> anyhow::Result<()> {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let pp = kube::api::PostParams::default();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": { "name": name },
                "rules": rules,
            }))?,
        )
        .await?;
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &serde_json::from_value(serde_json::json!({
                "metadata": { "name": name },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
                "subjects": [{ "kind": "ServiceAccount", "name": name, "namespace": ns }],
            }))?,
        )
        .await?;
    Ok(())
}

/// A user whose service account may read but not create Deployments cannot bootstrap, and one
/// without `pods/exec` cannot build: both errors name the verb, the resource and the namespace
/// that were refused, and the hint says which rules kbx needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_refused_by_rbac_names_the_verb_resource_and_namespace() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let mut user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "rbac").await?;
        let base = user.kubeconfig.clone();
        let opts = format!(
            "namespace={},image={},timeout=120s",
            ns.name(),
            cluster.builder_image()
        );

        // Read-only on the builder's objects: create --bootstrap is refused.
        let readonly = user.home().join("readonly.kubeconfig");
        service_account_kubeconfig(client, ns.name(), "readonly", &base, &readonly).await?;
        grant(
            client,
            ns.name(),
            "readonly",
            serde_json::json!([
                { "apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "list", "watch"] },
                { "apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["get", "list", "watch"] },
            ]),
        )
        .await?;
        user.kubeconfig = readonly;
        let started = Instant::now();
        let run = user.create("ro", &opts, &["--bootstrap"]).await?;
        note(&format!(
            "read-only account: failed after {:.1?}: {}",
            started.elapsed(),
            run.stderr.trim()
        ));
        ensure!(run.out.status.code() == Some(1), "{}", run.stderr);
        ensure!(
            // kbx applies objects server-side: the refused verb is `patch`.
            run.stderr.contains("cannot patch resource \"deployments\" in API group \"apps\"")
                && run.stderr.contains(&format!("in the namespace \"{}\"", ns.name()))
                && run.stderr.contains("system:serviceaccount:"),
            "the error does not name the verb, resource and namespace: {}",
            run.stderr
        );
        ensure!(
            run.stderr.contains("hint: the Kubernetes user lacks a permission"),
            "no hint: {}",
            run.stderr
        );
        ensure!(
            run.stderr.matches("cannot patch resource").count() <= 2,
            "the API server's answer is repeated: {}",
            run.stderr
        );
        // rm with the same account is refused too, and keeps the record (deviation K6);
        // `--keep-daemon` forgets it (there is nothing to delete).
        let run = user.run(&["rm", "ro"]).await?;
        ensure!(
            run.out.status.code() == Some(1)
                && run.stderr.contains("cannot delete resource \"deployments\""),
            "{}",
            run.stderr
        );
        ensure!(user.home().join("buildx/instances/ro").exists(), "the record is gone");
        user.run(&["rm", "--keep-daemon", "ro"]).await?.ok()?;
        ensure!(objects_of(client, ns.name(), "ro0").await?.is_empty());
        user.kubeconfig = base.clone();

        // Everything but pods/exec: the bootstrap works, the build is refused.
        let noexec = user.home().join("noexec.kubeconfig");
        service_account_kubeconfig(client, ns.name(), "noexec", &base, &noexec).await?;
        grant(
            client,
            ns.name(),
            "noexec",
            serde_json::json!([
                { "apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["*"] },
                { "apiGroups": [""], "resources": ["pods", "configmaps", "persistentvolumeclaims"], "verbs": ["*"] },
            ]),
        )
        .await?;
        user.kubeconfig = noexec;
        user.create("nx", &opts, &["--bootstrap", "--use"])
            .await?
            .ok()?;
        let ctx = tempfile::tempdir()?;
        super::context(ctx.path(), "rbac")?;
        let started = Instant::now();
        let run = user.build(ctx.path(), &[]).await?;
        note(&format!(
            "account without pods/exec: failed after {:.1?}: {}",
            started.elapsed(),
            run.stderr.trim()
        ));
        ensure!(run.out.status.code() == Some(1), "{}", run.stderr);
        ensure!(
            run.stderr.contains("pods/exec") && run.stderr.contains(ns.name()),
            "the error does not name pods/exec and the namespace: {}",
            run.stderr
        );
        ensure!(
            run.stderr.contains("hint: the Kubernetes user lacks a permission"),
            "no hint: {}",
            run.stderr
        );
        ensure!(
            started.elapsed() < Duration::from_secs(5),
            "a refused exec must not be retried"
        );
        user.run(&["rm", "nx"]).await?.ok()?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// How many churn cycles [`kbx_churn_then_concurrent_builds`] runs: `KBX_CHURN_CYCLES`, else 10
/// (`just churn N` runs more).
fn churn_cycles() -> usize {
    std::env::var("KBX_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// Churn: `create --bootstrap` / `build` / `rm` cycles of Deployments (one or two replicas,
/// sticky or random) and, every fifth cycle, a StatefulSet with a claim; after each cycle no object,
/// claim or record is left. Time per cycle is reported, not asserted. Then load: 10
/// concurrent `kbx build` processes with different contexts on a two-replica builder and on a
/// `rendezvous` one all succeed with correct outputs; how they spread over the pods is
/// reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_churn_then_concurrent_builds() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    // A StatefulSet's pod and claim take up to a minute and a half to go on this cluster.
    let limit = Duration::from_secs(300 + 45 * churn_cycles() as u64);
    super::scenario_within(limit, async |cluster| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "churn").await?;
        let ctx = tempfile::tempdir()?;
        super::context(ctx.path(), "churn")?;
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns.name());
        let volumes = tempfile::tempdir()?;

        let cycles = churn_cycles();
        let mut times = Vec::with_capacity(cycles);
        for i in 0..cycles {
            let started = Instant::now();
            let name = format!("churn{i}");
            let stateful = i % 5 == 1;
            let extra = if stateful {
                "persistent-volume-claim.requests.storage=1Gi".to_owned()
            } else if i % 4 == 0 {
                "replicas=1".to_owned()
            } else {
                "replicas=2,loadbalance=random".to_owned()
            };
            // A fresh volume per StatefulSet: a retained volume does not bind twice.
            let pv_name = format!("{}-pv{i}", ns.name());
            if stateful {
                let dir = volumes.path().join(format!("v{i}"));
                std::fs::create_dir_all(&dir)?;
                pvs.create(
                    &kube::api::PostParams::default(),
                    &serde_json::from_value(serde_json::json!({
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
                    }))?,
                )
                .await?;
            }
            let opts = format!(
                "namespace={},image={},timeout=120s,{extra}",
                ns.name(),
                cluster.builder_image()
            );
            user.create(&name, &opts, &["--bootstrap"]).await?.ok()?;
            let dest = user.home().join(format!("out{i}"));
            user.build(
                ctx.path(),
                &[
                    "--builder",
                    &name,
                    "-o",
                    &format!("type=local,dest={}", dest.display()),
                ],
            )
            .await?
            .ok()?;
            ensure!(
                super::tree(&dest)? == super::tree(ctx.path())?,
                "cycle {i}: the export differs from the context"
            );
            user.run(&["rm", &name]).await?.ok()?;
            let node = format!("{name}0");
            let deadline = Instant::now() + Duration::from_secs(150);
            loop {
                let left = objects_of(client, ns.name(), &node).await?;
                let claims_left = claims.list(&ListParams::default()).await?.items.len();
                if left.is_empty() && claims_left == 0 {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "cycle {i}: left after rm: {left:?}, {claims_left} claims"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            ensure!(
                !user.home().join("buildx/instances").join(&name).exists(),
                "cycle {i}: the store record is left"
            );
            if stateful {
                pvs.delete(&pv_name, &kube::api::DeleteParams::default())
                    .await?;
            }
            times.push(started.elapsed().as_secs_f64());
        }
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        note(&format!(
            "churn: {cycles} cycles, median {:.1} s, min {:.1} s, max {:.1} s per cycle; 0 objects and 0 records left",
            sorted[sorted.len() / 2],
            sorted[0],
            sorted[sorted.len() - 1]
        ));

        // Load: 10 concurrent builds with different contexts.
        for (name, extra) in [
            ("load", "replicas=2"),
            ("rdv", "replicas=2,loadbalance=rendezvous"),
        ] {
            let opts = format!(
                "namespace={},image={},timeout=120s,{extra}",
                ns.name(),
                cluster.builder_image()
            );
            user.create(name, &opts, &["--bootstrap"]).await?.ok()?;
            let base = tempfile::tempdir()?;
            let mut builds = Vec::new();
            for i in 0..10 {
                let dir = base.path().join(format!("ctx{i}"));
                super::context(&dir, &format!("{name}-{i}"))?;
                let dest = base.path().join(format!("out{i}"));
                let out = format!("type=local,dest={}", dest.display());
                let args = [
                    "build".to_owned(),
                    "--progress".to_owned(),
                    "plain".to_owned(),
                    "--builder".to_owned(),
                    name.to_owned(),
                    "-o".to_owned(),
                    out,
                    dir.to_str().context("path")?.to_owned(),
                ];
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                builds.push((dir, dest, args.join(" ")));
            }
            let started = Instant::now();
            let mut children = Vec::new();
            for (_, _, args) in &builds {
                let args: Vec<&str> = args.split(' ').collect();
                children.push(
                    user.command(&args)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped())
                        .kill_on_drop(true)
                        .spawn()?
                        .wait_with_output(),
                );
            }
            let outputs = futures::future::join_all(children).await;
            let took = started.elapsed();
            let mut spread: std::collections::BTreeMap<String, usize> = Default::default();
            for ((dir, dest, _), out) in builds.iter().zip(outputs) {
                let out = out?;
                let stderr = String::from_utf8_lossy(&out.stderr);
                ensure!(
                    out.status.success(),
                    "{name}: a concurrent build failed: {stderr}"
                );
                ensure!(
                    super::tree(dest)? == super::tree(dir)?,
                    "{name}: an export differs from its context"
                );
                *spread.entry(super::Run::pod_of(&stderr)?).or_default() += 1;
            }
            note(&format!(
                "load: 10 concurrent builds on {name} ({extra}) in {took:.1?}, spread {:?}",
                spread.values().collect::<Vec<_>>()
            ));
            user.run(&["rm", name]).await?.ok()?;
        }
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// Waits until the API server answers `/readyz` again.
async fn wait_api_ready(client: &kube::Client, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let request = http::Request::get("/readyz").body(Vec::new())?;
        let ok = tokio::time::timeout(Duration::from_secs(5), client.request_text(request))
            .await
            .is_ok_and(|r| r.is_ok_and(|t| t.trim() == "ok"));
        if ok {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the API server is not ready {limit:?} after its start"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The outages a remote builder's user meets, on a cluster of the scenario's own:
/// - the node's kubelet stops while a build uploads its context (the exec stream runs through
///   it): the build fails within 30 s naming the pod and the cause; once the kubelet is back,
///   the next build works on the same pod;
/// - the API server is down: `ls`, `build`, `create --bootstrap` and `rm` each fail within
///   seconds naming the server's URL, with a hint; `rm` keeps the record; once the server is
///   back, the same commands work and `rm` leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_fails_clearly_while_the_kubelet_or_the_api_server_is_down() -> anyhow::Result<()> {
    crate::scenario_own(async |cluster| {
        let Some(local) = cluster.local() else {
            note("not the local backend: its components are not ours to stop");
            return Ok(());
        };
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "outage").await?;
        let opts = super::driver_opts(cluster, &ns, "replicas=1");
        user.create("outage", &opts, &["--bootstrap", "--use"])
            .await?
            .ok()?;

        // The kubelet stops mid-upload.
        let ctx = tempfile::tempdir()?;
        big_context(ctx.path())?;
        let upload = Upload::start(&user, ctx.path()).await?;
        let pod = upload.pod.clone();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stopped = Instant::now();
        local.stop_component("kubelet")?;
        let finished = upload.finish("the kubelet stopped").await;
        let took = stopped.elapsed();
        local.start_component("kubelet")?;
        failed_clearly("the kubelet stopped mid-upload", &pod, took, finished?)?;
        wait_nodes_ready(client, Duration::from_secs(120)).await?;
        let restarted = Instant::now();
        std::fs::remove_file(ctx.path().join("big"))?;
        std::fs::write(ctx.path().join("small"), "after the kubelet came back\n")?;
        let dest = user.home().join("out");
        let out = format!("type=local,dest={}", dest.display());
        let run = user.build(ctx.path(), &["-o", &out]).await?.ok()?;
        note(&format!(
            "build after the kubelet's restart: {:.1?}",
            restarted.elapsed()
        ));
        ensure!(
            run.build_pod()? == pod,
            "the pod was replaced although only the kubelet stopped"
        );
        ensure!(std::fs::read_to_string(dest.join("small"))? == "after the kubelet came back\n");

        // The API server is down.
        let server = kube::config::Kubeconfig::read_from(&user.kubeconfig)?
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref()?.server.clone())
            .context("the kubeconfig names no server")?;
        local.stop_component("kube-apiserver")?;
        let ctx_str = ctx.path().to_str().context("path")?.to_owned();
        let down_opts = format!(
            "namespace={},image={},timeout=60s",
            ns.name(),
            cluster.builder_image()
        );
        let commands: [(&str, Vec<&str>); 4] = [
            ("ls", vec!["ls"]),
            ("build", vec!["build", "--progress", "plain", &ctx_str]),
            (
                "create --bootstrap",
                vec![
                    "create",
                    "--name",
                    "later",
                    "--driver",
                    "kubernetes",
                    "--driver-opt",
                    &down_opts,
                    "--bootstrap",
                ],
            ),
            ("rm", vec!["rm", "outage"]),
        ];
        let mut outcomes = Vec::new();
        for (what, args) in &commands {
            let started = Instant::now();
            let run = user.run(args).await?;
            outcomes.push((*what, started.elapsed(), run));
        }
        local.start_component("kube-apiserver")?;
        for (what, took, run) in &outcomes {
            note(&format!(
                "{what} with the API server down: {} after {took:.1?}",
                run.out.status
            ));
        }
        for (what, took, run) in &outcomes {
            let text = format!("{}{}", run.stdout, run.stderr);
            ensure!(
                *took <= Duration::from_secs(30),
                "{what} took {took:?} with the API server down"
            );
            ensure!(
                text.contains(&server),
                "{what} does not name the API server {server}: {text}"
            );
            if *what != "ls" {
                ensure!(!run.out.status.success(), "{what} succeeded: {text}");
                ensure!(text.contains("hint:"), "{what} gives no hint: {text}");
            }
        }
        ensure!(
            user.home().join("buildx/instances/outage").exists(),
            "rm dropped the record although it could not delete the builder"
        );

        // The server is back: the same commands work, and rm leaves nothing.
        wait_api_ready(client, Duration::from_secs(60)).await?;
        let ls = user.run(&["ls"]).await?.ok()?;
        ensure!(
            ls.stdout.contains("running"),
            "ls after the restart: {}",
            ls.stdout
        );
        user.build(ctx.path(), &["-o", &out]).await?.ok()?;
        if user.home().join("buildx/instances/later").exists() {
            user.run(&["inspect", "--bootstrap", "later"]).await?.ok()?;
        } else {
            user.create("later", &down_opts, &["--bootstrap"])
                .await?
                .ok()?;
        }
        for name in ["outage", "later"] {
            user.run(&["rm", name]).await?.ok()?;
            super::wait_nothing_left(client, ns.name(), &format!("{name}0")).await?;
            ensure!(
                !user.home().join("buildx/instances").join(name).exists(),
                "{name}: the store record is left"
            );
        }
        ns.delete().await?;
        Ok(())
    })
    .await
}

//! Faults a user meets on a real cluster: bootstraps that cannot succeed fail with the pod's
//! reason, early where the reason cannot change, and `rm` afterwards leaves nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::Node;
use kbx_conformance::image::PAUSE_IMAGE;
use kbx_conformance::scenario::TestNamespace;
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
        let node = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .find_map(|n| n.metadata.name)
            .context("no node")?;
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await?
            .items
            .len();
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
                // The container's last log lines name the cause.
                expect: vec!["CrashLoopBackOff".to_owned(), "no-such-flag".to_owned()],
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
            let node_name = format!("{}0", case.name);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = objects_of(client, ns.name(), &node_name).await?;
                if left.is_empty() {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "{}: left after rm: {left:?}",
                    case.name
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
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

/// The builder's pod is deleted while `kbx build` uploads a large context: the build fails
/// within 30 s naming the pod (not a bare transport error), never hangs; the Deployment
/// replaces the pod and the next build works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_build_fails_clearly_when_its_pod_is_killed_mid_upload() -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt as _;
    scenario(async |cluster| {
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "killed").await?;
        let opts = format!(
            "namespace={},image={},replicas=1,timeout=240s",
            ns.name(),
            cluster.builder_image()
        );
        user.create("killed", &opts, &["--bootstrap", "--use"])
            .await?
            .ok()?;

        // 300 MB of incompressible bytes: several seconds through exec on any machine.
        let ctx = tempfile::tempdir()?;
        std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY . /\n")?;
        {
            use std::io::Write as _;
            let mut f = std::io::BufWriter::new(std::fs::File::create(ctx.path().join("big"))?);
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
        }
        let ctx_str = ctx.path().to_str().context("path")?.to_owned();
        let mut child = user
            .command(&["build", "--progress", "plain", &ctx_str])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
        let mut stderr = String::new();
        // Wait until the context is on its way.
        let pod = loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .context("no progress from kbx build")??
                .context("kbx build ended before sending its context")?;
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("load build context") {
                break super::Run::pod_of(&stderr)?;
            }
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns.name())
            .delete(&pod, &kube::api::DeleteParams::default().grace_period(0))
            .await?;
        let killed = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                stderr.push_str(&line);
                stderr.push('\n');
            }
            child.wait().await
        })
        .await
        .context("kbx build still runs 60 s after its pod was deleted")??;
        let took = killed.elapsed();
        let error = stderr
            .split_once("ERROR:")
            .map(|(_, e)| e.to_owned())
            .unwrap_or_default();
        note(&format!(
            "build with its pod deleted mid-upload: exit {status} after {took:.1?}; error:{error}"
        ));
        ensure!(status.code() == Some(1), "exit status {status}: {stderr}");
        ensure!(
            took <= Duration::from_secs(30),
            "failed only after {took:?}"
        );
        ensure!(
            error.contains(&pod),
            "the error does not name the pod {pod}: {stderr}"
        );

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
        ns.delete().await?;
        Ok(())
    })
    .await
}

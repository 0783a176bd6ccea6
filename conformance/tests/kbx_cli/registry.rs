//! A real registry inside the cluster (Debian's `docker-registry` as a pod, with and without
//! htpasswd basic auth): builder pods pull multi-platform bases from it by platform, `kbx
//! imagetools create` writes the index they pull, credentials travel through kbx's session
//! for pulls and pushes, neither a `--secret` nor the registry password is written anywhere
//! kbx writes, and refusals and a registry that is gone give clear
//! errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kbx_conformance::Cluster;
use kbx_conformance::image::REGISTRY_IMAGE;
use kbx_conformance::registry::{ANY_MANIFEST, Registry, base_image_layer};
use kbx_conformance::scenario::TestNamespace;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use super::{
    User, arm64_emulation_prerequisites, build_both_platforms_and_check_arch, driver_opts, note,
    qemu_install_opts, scenario, wait_nothing_left,
};

/// Applets the base images link to busybox.
const APPLETS: &[&str] = &["sh", "uname", "cat", "echo"];

/// A registry pod: builder pods reach it at `pod` (`podIP:5000`); this host, whose pod bridge
/// has no address, reaches it at `local` (`127.0.0.1:PORT`), a port-forward through the API
/// server that lives as long as this value.
pub(super) struct RegistryPod {
    pub(super) pod: String,
    pub(super) local: String,
    forward: tokio::task::JoinHandle<()>,
}

impl Drop for RegistryPod {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// Accepts connections on a loopback port and carries each through a port-forward to port
/// 5000 of pod `name`.
async fn forward(
    pods: Api<Pod>,
    name: &str,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?.to_string();
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let pods = pods.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let Ok(mut pf) = pods.portforward(&name, &[5000]).await else {
                    return;
                };
                if let Some(mut upstream) = pf.take_stream(5000) {
                    let _ = tokio::io::copy_bidirectional(&mut sock, &mut upstream).await;
                }
                drop(pf);
            });
        }
    });
    Ok((local, task))
}

/// Runs blocking registry reads and writes off the async workers.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Starts a registry pod named `name` in `ns` (basic auth from `htpasswd` when given) and
/// waits until its API answers through the port-forward.
pub(super) async fn registry_pod(
    client: &kube::Client,
    ns: &TestNamespace,
    name: &str,
    htpasswd: Option<&str>,
) -> anyhow::Result<RegistryPod> {
    let mut env = Vec::new();
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(entry) = htpasswd {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("{name}-auth") },
            "data": { "htpasswd": entry },
        }))?;
        Api::<ConfigMap>::namespaced(client.clone(), ns.name())
            .create(&PostParams::default(), &cm)
            .await?;
        env = vec![
            serde_json::json!({ "name": "REGISTRY_AUTH", "value": "htpasswd" }),
            serde_json::json!({ "name": "REGISTRY_AUTH_HTPASSWD_REALM", "value": "kbx" }),
            serde_json::json!({ "name": "REGISTRY_AUTH_HTPASSWD_PATH", "value": "/auth/htpasswd" }),
        ];
        volumes = vec![serde_json::json!({
            "name": "auth", "configMap": { "name": format!("{name}-auth") }
        })];
        mounts = vec![serde_json::json!({ "name": "auth", "mountPath": "/auth" })];
    }
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "containers": [{
                "name": "registry",
                "image": REGISTRY_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "env": env,
                "ports": [{ "containerPort": 5000 }],
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
        },
    }))?;
    let pods = Api::<Pod>::namespaced(client.clone(), ns.name());
    pods.create(&PostParams::default(), &pod).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let ip = loop {
        let p = pods.get(name).await?;
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
            "registry pod {name} not running: {:?}",
            p.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (local, forward) = forward(pods, name).await?;
    let reg = RegistryPod {
        pod: format!("{ip}:5000"),
        local,
        forward,
    };
    loop {
        let probe = Registry::new(&reg.local, None);
        if let Ok(a) = blocking(|| probe.get("/v2/", "*/*"))
            && (a.status == 200 || a.status == 401)
        {
            note(&format!(
                "registry {name} at {} answers on {}",
                reg.pod, reg.local
            ));
            return Ok(reg);
        }
        ensure!(
            Instant::now() < deadline,
            "registry pod {name} does not answer"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An htpasswd line (bcrypt) for `user`:`password`, from Debian's `htpasswd`.
fn htpasswd(user: &str, password: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", user, password])
        .output()
        .context("running htpasswd (install apache2-utils)")?;
    ensure!(out.status.success(), "htpasswd failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned() + "\n")
}

/// Seeds `repo:amd64` and `repo:arm64` (busybox bases from Debian's busybox-static for each
/// architecture) into `reg`.
pub(super) fn seed_bases(reg: &Registry, repo: &str, arm64: &Path) -> anyhow::Result<()> {
    let amd = base_image_layer("/bin/busybox", APPLETS)?;
    let arm = base_image_layer(arm64, APPLETS)?;
    reg.push_image(repo, "amd64", &amd, "amd64")?;
    reg.push_image(repo, "arm64", &arm, "arm64")?;
    Ok(())
}

/// Writes `~/.docker/config.json` of `user` with `auths` for both addresses of `reg`.
fn docker_login(user: &User, reg: &RegistryPod, name: &str, password: &str) -> anyhow::Result<()> {
    let dir = user.home().join(".docker");
    std::fs::create_dir_all(&dir)?;
    let auth = kbx_conformance::registry::base64(format!("{name}:{password}").as_bytes());
    std::fs::write(
        dir.join("config.json"),
        serde_json::json!({ "auths": {
            reg.pod.as_str(): { "auth": auth },
            reg.local.as_str(): { "auth": auth },
        } })
        .to_string(),
    )?;
    Ok(())
}

/// Platforms of an index read straight from the registry: `os/arch` → manifest digest.
pub(super) fn index_platforms(
    reg: &Registry,
    path: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let a = reg.get(path, ANY_MANIFEST)?;
    ensure!(a.status == 200, "GET {path}: HTTP {}", a.status);
    let index = a.json()?;
    let mut out = BTreeMap::new();
    for m in index["manifests"].as_array().context("no manifests")? {
        let p = &m["platform"];
        out.insert(
            format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            ),
            m["digest"].as_str().unwrap_or_default().to_owned(),
        );
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_registry_in_cluster_bases_auth_and_refusals() -> anyhow::Result<()> {
    scenario(async |cluster: &Cluster| {
        if cluster.local().is_none() {
            note("skipping: the registry scenario uses the local backend's images");
            return Ok(());
        }
        let (arm64, binfmt) = arm64_emulation_prerequisites()?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "registry").await?;
        let open_pod = registry_pod(client, &ns, "registry-open", None).await?;
        let locked_pod = registry_pod(
            client,
            &ns,
            "registry-locked",
            Some(&htpasswd("kbx", "s3cret")?),
        )
        .await?;
        let open = Registry::new(&open_pod.local, None);
        let locked = Registry::new(&locked_pod.local, Some(("kbx", "s3cret")));
        let anonymous = Registry::new(&locked_pod.local, None);
        ensure!(
            blocking(|| anonymous.get("/v2/", "*/*"))?.status == 401,
            "the locked registry answers without credentials"
        );
        blocking(|| seed_bases(&open, "kbx/base", &arm64))?;
        blocking(|| seed_bases(&locked, "kbx/base", &arm64))?;

        let user = User::new(cluster)?;
        // One index per registry, written by `kbx imagetools create` and read back raw.
        docker_login(&user, &locked_pod, "kbx", "s3cret")?;
        for reg in [&open, &locked] {
            let host = reg.host();
            user.run(&[
                "imagetools",
                "create",
                "-t",
                &format!("{host}/kbx/base:multi"),
                &format!("{host}/kbx/base:amd64"),
                &format!("{host}/kbx/base:arm64"),
            ])
            .await?
            .ok()?;
            let platforms = blocking(|| index_platforms(reg, "/v2/kbx/base/manifests/multi"))?;
            let digest = |tag: &str| {
                blocking(|| reg.get(&format!("/v2/kbx/base/manifests/{tag}"), ANY_MANIFEST))
                    .map(|a| a.header("docker-content-digest"))
            };
            let (amd, arm) = (digest("amd64")?, digest("arm64")?);
            ensure!(
                platforms.get("linux/amd64") == amd.as_ref()
                    && platforms.get("linux/arm64") == arm.as_ref()
                    && platforms.len() == 2,
                "index on {host}: {platforms:?} (amd64 {amd:?}, arm64 {arm:?})"
            );
        }
        std::fs::remove_dir_all(user.home().join(".docker"))?;

        // A builder that may pull over plain HTTP from both registries and runs arm64 steps
        // under QEMU.
        let config = user.home().join("buildkitd.toml");
        std::fs::write(
            &config,
            format!(
                "[registry.\"{}\"]\n  http = true\n\n[registry.\"{}\"]\n  http = true\n",
                open_pod.pod, locked_pod.pod
            ),
        )?;
        let opts = driver_opts(cluster, &ns, &qemu_install_opts());
        user.create(
            "reg",
            &opts,
            &[
                "--buildkitd-config",
                config.to_str().context("path")?,
                "--bootstrap",
                "--use",
            ],
        )
        .await?
        .ok()?;

        // The multi-platform base resolves per platform: each RUN sees its own machine.
        let ctx = tempfile::tempdir()?;
        let dockerfile = |host: &str| {
            format!(
                "FROM {host}/kbx/base:multi\nARG PROBE\nRUN echo \"$PROBE\" > /probe && uname -m > /arch\n"
            )
        };
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile(&open_pod.pod))?;
        build_both_platforms_and_check_arch(&user, ctx.path(), &user.home().join("open")).await?;

        // Basic auth: credentials reach the builder through kbx's session.
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile(&locked_pod.pod))?;
        let locked_dest = user.home().join("locked");
        let local = format!("type=local,dest={}", locked_dest.display());
        let ctx_dir = ctx.path().to_path_buf();
        let locked_build = async |probe: &str| {
            user.build(
                &ctx_dir,
                &[
                    "--platform",
                    "linux/arm64",
                    "--network",
                    "none",
                    "--build-arg",
                    &format!("PROBE={probe}"),
                    "-o",
                    &local,
                ],
            )
            .await
        };
        let refused = |run: &super::Run| {
            run.out.status.code() == Some(1)
                && (run.stderr.contains("401") || run.stderr.contains("nauthorized"))
        };
        let run = locked_build("anonymous").await?;
        ensure!(refused(&run), "an anonymous pull: {}", run.stderr);
        docker_login(&user, &locked_pod, "kbx", "wrong")?;
        let run = locked_build("wrong").await?;
        ensure!(refused(&run), "a wrong password: {}", run.stderr);
        docker_login(&user, &locked_pod, "kbx", "s3cret")?;
        locked_build("right").await?.ok()?;
        ensure!(
            std::fs::read_to_string(locked_dest.join("arch"))? == "aarch64\n",
            "the locked base did not run as arm64"
        );
        // The same credentials let the builder push there.
        user.build(
            &ctx_dir,
            &[
                "--platform",
                "linux/arm64",
                "--build-arg",
                "PROBE=right",
                "--push",
                "-t",
                &format!("{}/kbx/app:pushed", locked_pod.pod),
            ],
        )
        .await?
        .ok()?;
        ensure!(
            blocking(|| locked.get("/v2/kbx/app/manifests/pushed", ANY_MANIFEST))?.status == 200,
            "the push with credentials left no tag"
        );

        // Secrets stay secret: a `--secret` value and the registry password reach the build,
        // and neither appears in the store, in the builder's objects, in plain or rawjson
        // progress or in the `--debug` log.
        let secret_value = format!(
            "kbx-secret-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos()
        );
        let secret_ctx = tempfile::tempdir()?;
        std::fs::write(
            secret_ctx.path().join("Dockerfile"),
            format!(
                "FROM {}/kbx/base:multi\nRUN --mount=type=secret,id=tok cat /run/secrets/tok > /tok\n",
                locked_pod.pod
            ),
        )?;
        let secret_dest = user.home().join("secret");
        let secret_out = format!("type=local,dest={}", secret_dest.display());
        let mut printed = String::new();
        for progress in ["plain", "rawjson"] {
            let run = user
                .run_with(
                    &[
                        "--debug",
                        "build",
                        "--progress",
                        progress,
                        "--no-cache",
                        "--platform",
                        "linux/amd64",
                        "--network",
                        "none",
                        "--secret",
                        "id=tok,env=KBX_TEST_TOKEN",
                        "-o",
                        &secret_out,
                        secret_ctx.path().to_str().context("path")?,
                    ],
                    &[("KBX_TEST_TOKEN", &secret_value)],
                )
                .await?
                .ok()?;
            ensure!(
                std::fs::read_to_string(secret_dest.join("tok"))? == secret_value,
                "the secret did not reach the RUN step"
            );
            ensure!(
                run.stderr.contains("debug:"),
                "--debug printed no debug lines: {}",
                run.stderr
            );
            printed.push_str(&run.stdout);
            printed.push_str(&run.stderr);
        }
        let mut places = vec![("the progress output and debug log".to_owned(), printed)];
        for (path, text) in files_under(&user.home().join("buildx"))? {
            places.push((format!("store file {}", path.display()), text));
        }
        for text in builder_objects_json(client, ns.name()).await? {
            places.push(("an object in the builder's namespace".to_owned(), text));
        }
        let needles = [
            secret_value.clone(),
            "s3cret".to_owned(),
            kbx_conformance::registry::base64(b"kbx:s3cret"),
        ];
        for (place, text) in &places {
            for needle in &needles {
                ensure!(!text.contains(needle.as_str()), "{place} holds {needle:?}");
            }
        }
        note(&format!(
            "secrets: none of {} places holds the secret or the password",
            places.len()
        ));

        // The registry goes away: a clear error, no hang.
        Api::<Pod>::namespaced(client.clone(), ns.name())
            .delete("registry-open", &DeleteParams::default().grace_period(0))
            .await?;
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile(&open_pod.pod))?;
        let started = Instant::now();
        let run = user
            .build(
                ctx.path(),
                &[
                    "--no-cache",
                    "--platform",
                    "linux/amd64",
                    "--network",
                    "none",
                    "--build-arg",
                    "PROBE=down",
                ],
            )
            .await?;
        ensure!(
            run.out.status.code() == Some(1)
                && run.stderr.contains(&open_pod.pod)
                && run.stderr.contains("hint: the registry is not reachable"),
            "a build from a registry that is gone: {}",
            run.stderr
        );
        note(&format!(
            "the build against the missing registry failed after {:.1?}",
            started.elapsed()
        ));

        user.run(&["rm", "reg"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "reg0").await?;
        drop((open_pod, locked_pod));
        ns.delete().await?;
        binfmt.remove_handler()?;
        drop(binfmt);
        Ok(())
    })
    .await
}

/// Every regular file under `dir` (recursively) with its text, lossily decoded.
fn files_under(dir: &Path) -> anyhow::Result<Vec<(std::path::PathBuf, String)>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path())?;
                out.push((entry.path(), String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    Ok(out)
}

/// The Deployments, StatefulSets, Pods and ConfigMaps of `ns` as JSON, ConfigMaps' data
/// included.
async fn builder_objects_json(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<String>> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    let lp = kube::api::ListParams::default();
    let mut out = Vec::new();
    for d in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        out.push(serde_json::to_string(&d)?);
    }
    for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        out.push(serde_json::to_string(&s)?);
    }
    for p in Api::<Pod>::namespaced(client.clone(), ns).list(&lp).await? {
        out.push(serde_json::to_string(&p)?);
    }
    for c in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        out.push(serde_json::to_string(&c)?);
    }
    Ok(out)
}

/// `-o type=image,name=POD:5000/…,push=true,registry.insecure=true` pushes over plain HTTP to
/// a registry pod, an address that is not on loopback and that no `buildkitd.toml` marks as
/// `http`: kbx passes the exporter attribute to the daemon as Buildx does. The same push
/// without it fails, the daemon speaking HTTPS to the registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_push_with_registry_insecure_to_a_plain_http_registry_pod() -> anyhow::Result<()> {
    scenario(async |cluster: &Cluster| {
        if cluster.local().is_none() {
            note("skipping: the registry scenario uses the local backend's images");
            return Ok(());
        }
        let client = cluster.client();
        let ns = TestNamespace::create(client, "insecure").await?;
        let reg_pod = registry_pod(client, &ns, "registry-plain", None).await?;
        let reg = Registry::new(&reg_pod.local, None);
        ensure!(
            !reg_pod.pod.starts_with("127."),
            "the registry pod is on loopback: {}",
            reg_pod.pod
        );
        let user = User::new(cluster)?;
        user.create(
            "plainhttp",
            &driver_opts(cluster, &ns, ""),
            &["--bootstrap", "--use"],
        )
        .await?
        .ok()?;
        let ctx = tempfile::tempdir()?;
        super::context(ctx.path(), "insecure")?;
        let name = format!("{}/kbx/insecure:1", reg_pod.pod);

        let run = user
            .build(
                ctx.path(),
                &["-o", &format!("type=image,name={name},push=true")],
            )
            .await?;
        ensure!(
            run.out.status.code() == Some(1)
                && run
                    .stderr
                    .contains("server gave HTTP response to HTTPS client"),
            "a push over HTTPS to the plain-HTTP registry: {}",
            run.stderr
        );
        ensure!(
            blocking(|| reg.get("/v2/kbx/insecure/manifests/1", ANY_MANIFEST))?.status == 404,
            "the refused push left a tag"
        );

        user.build(
            ctx.path(),
            &[
                "-o",
                &format!("type=image,name={name},push=true,registry.insecure=true"),
            ],
        )
        .await?
        .ok()?;
        let manifest = blocking(|| reg.get("/v2/kbx/insecure/manifests/1", ANY_MANIFEST))?;
        ensure!(
            manifest.status == 200,
            "no tag after the insecure push: {} {}",
            manifest.status,
            String::from_utf8_lossy(&manifest.body)
        );
        // What was pushed is the build: the index names the image (and its provenance), and
        // the image's one layer is in the registry.
        let index = manifest.json()?;
        let image = index["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter()
                    .find(|m| m["platform"]["architecture"] != "unknown")
                    .and_then(|m| m["digest"].as_str())
            })
            .with_context(|| format!("no image in the index: {index}"))?
            .to_owned();
        let m = blocking(|| reg.get(&format!("/v2/kbx/insecure/manifests/{image}"), ANY_MANIFEST))?
            .json()?;
        let layers = m["layers"].as_array().cloned().unwrap_or_default();
        ensure!(layers.len() == 1, "one layer expected: {m}");
        let digest = layers[0]["digest"]
            .as_str()
            .context("layer digest")?
            .to_owned();
        let blob = blocking(|| reg.get(&format!("/v2/kbx/insecure/blobs/{digest}"), "*/*"))?;
        ensure!(
            blob.status == 200 && kbx_conformance::registry::sha256(&blob.body) == digest,
            "layer {digest}: {}",
            blob.status
        );

        user.run(&["rm", "plainhttp"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "plainhttp0").await?;
        drop(reg_pod);
        ns.delete().await?;
        Ok(())
    })
    .await
}

//! Differential scenarios on shared builders: the real Buildx (Debian's `docker-buildx` 0.29.1,
//! see [`kbx_conformance::buildx`]) and kbx use one builder store and one cluster.
//!
//! - **Store both ways.** A builder made by either tool is listed, inspected, built on and
//!   removed by the other; both `ls` outputs agree on every row of it; `rm` by either leaves no
//!   object behind.
//! - **Pod choice.** On a 3-replica `sticky` builder, each of 30 context paths is built by both
//!   tools; which pod served each build is read from the pods' own BuildKit history
//!   (`buildctl debug histories`), not from either tool's output, and must be the same pod.
//! - **Same build, same result.** One context (a symlink, file modes, a `.dockerignore`, a
//!   multi-stage Dockerfile with `ARG`s) built by each tool: the `type=local` trees are equal in
//!   content, modes and link targets.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use kbx_conformance::Cluster;
use kbx_conformance::buildx::{Buildx, VERSIONS};
use kbx_conformance::scenario::{TestNamespace, exec_capture, running_pods, wait_deployment_ready};

use super::{User, driver_opts, note, scenario, wait_nothing_left};

/// How long one Buildx command may run.
const BUILDX_LIMIT: Duration = Duration::from_secs(240);

/// What one Buildx command printed.
struct BxRun {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the newest Buildx with `user`'s store and kubeconfig.
async fn buildx(
    bx: &Buildx,
    user: &User,
    args: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<BxRun> {
    let mut cmd = tokio::process::Command::from(bx.command(user.home()));
    cmd.env("KUBECONFIG", &user.kubeconfig)
        .envs(env.iter().copied())
        .args(args)
        .kill_on_drop(true);
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(BUILDX_LIMIT, cmd.output())
        .await
        .with_context(|| format!("docker-buildx {args:?} still runs after {BUILDX_LIMIT:?}"))?
        .with_context(|| format!("running docker-buildx {args:?}"))?;
    let run = BxRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    note(&format!(
        "$ docker-buildx {} ({:.1?}, {})\n{}{}",
        args.join(" "),
        started.elapsed(),
        out.status,
        run.stdout,
        run.stderr
    ));
    Ok(run)
}

impl BxRun {
    fn ok(self) -> anyhow::Result<BxRun> {
        ensure!(self.ok, "docker-buildx failed: {}", self.stderr);
        Ok(self)
    }
}

/// `build --progress plain ARGS… -o OUT CONTEXT` with Buildx (to `outs[0]`), then with kbx (to
/// `outs[1]`), both with `env`; either failing fails the scenario.
async fn build_both(
    bx: &Buildx,
    user: &User,
    args: &[&str],
    outs: [&str; 2],
    context: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    for (i, out) in outs.into_iter().enumerate() {
        let mut all = vec!["build", "--progress", "plain"];
        all.extend_from_slice(args);
        all.extend(["-o", out, context]);
        if i == 0 {
            buildx(bx, user, &all, env).await?.ok()?;
        } else {
            user.run_with(&all, env).await?.ok()?;
        }
    }
    Ok(())
}

/// The rows `ls` prints for builder `name` (its own row and its node rows), each split into
/// words, with the `*` of the current builder dropped. Column widths depend on the other
/// builders listed, so only the words are compared.
fn ls_rows(ls: &str, name: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut inside = false;
    for line in ls.lines() {
        if line.starts_with(' ') {
            if inside {
                rows.push(line.split_whitespace().map(str::to_owned).collect());
            }
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        inside = first.trim_end_matches('*') == name;
        if inside {
            let mut words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
            words[0] = name.to_owned();
            rows.push(words);
        }
    }
    rows
}

/// The builder's node rows from both tools' `ls`, which must agree word for word.
async fn same_ls(bx: &Buildx, user: &User, name: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let theirs = buildx(bx, user, &["ls"], &[]).await?;
    let ours = user.run(&["ls"]).await?;
    let (mut theirs, mut ours) = (ls_rows(&theirs.stdout, name), ls_rows(&ours.stdout, name));
    if bx.version != VERSIONS[0] {
        // Buildx 0.13.1 lists every platform; 0.29.1 (and kbx) abbreviate `A (+4), B` (V4).
        for row in theirs.iter_mut().chain(ours.iter_mut()) {
            row.truncate(6);
        }
    }
    ensure!(!theirs.is_empty(), "docker-buildx ls does not list {name}");
    ensure!(
        theirs == ours,
        "ls rows of {name} differ:\nbuildx {theirs:?}\nkbx    {ours:?}"
    );
    Ok(ours)
}

/// Which pod's BuildKit recorded a build with `--build-arg PARITY=<value>`, by value.
async fn served_by(
    client: &kube::Client,
    ns: &str,
    app: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    const KEY: &str = "\"build-arg:PARITY\":\"";
    let mut out = BTreeMap::new();
    for pod in running_pods(client, ns, app).await? {
        let pod = pod.metadata.name.unwrap_or_default();
        let run = exec_capture(
            client,
            ns,
            &pod,
            kbx_manifest::CONTAINER_NAME,
            &["buildctl", "debug", "histories", "--format", "{{json .}}"],
            Duration::from_secs(60),
        )
        .await?;
        ensure!(
            run.success,
            "buildctl debug histories in {pod}: {}",
            run.stderr
        );
        for line in run.stdout.lines() {
            if let Some((_, rest)) = line.split_once(KEY)
                && let Some((value, _)) = rest.split_once('"')
                && let Some(other) = out.insert(value.to_owned(), pod.clone())
            {
                ensure!(other == pod, "{value} was built on {other} and {pod}");
            }
        }
    }
    Ok(out)
}

/// Every entry under `root`: regular files with mode and content, links with their target,
/// directories with their mode.
fn full_tree(root: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path)?.display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else {
                let data = std::fs::read(&path)?;
                format!("file {mode:o} {}", String::from_utf8_lossy(&data))
            };
            out.insert(rel, what);
        }
    }
    Ok(out)
}

/// A context with symlinks, modes, a `.dockerignore` and a three-stage Dockerfile with `ARG`s
/// and a `RUN` on the named context `base`.
fn rich_context(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir.join("src/sub"))?;
    std::fs::write(
        dir.join("Dockerfile"),
        "ARG FIRST=one\nFROM scratch AS stage\nARG FIRST\nARG SECOND=two\nCOPY src/ /src/\n\
         COPY --chmod=0750 tool /bin/tool\nFROM base AS run\nARG SECOND=two\n\
         COPY --from=stage /src /src\n\
         RUN mkdir /r && echo \"second=$SECOND\" > /r/arg && sha256sum /src/a.txt > /r/sum\n\
         FROM scratch\nCOPY --from=stage /src /out/src\n\
         COPY --from=stage /bin/tool /out/tool\nCOPY --from=run /r /out/run\nCOPY keep.txt /out/\n",
    )?;
    std::fs::write(dir.join(".dockerignore"), "src/ignored.txt\n**/*.log\n")?;
    std::fs::write(dir.join("src/a.txt"), "a\n")?;
    std::fs::write(dir.join("src/ignored.txt"), "must not be copied\n")?;
    std::fs::write(dir.join("src/debug.log"), "must not be copied\n")?;
    std::fs::write(dir.join("src/sub/exec.sh"), "#!/bin/sh\necho hi\n")?;
    std::fs::set_permissions(
        dir.join("src/sub/exec.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::fs::write(dir.join("src/sub/private"), "secret-ish\n")?;
    std::fs::set_permissions(
        dir.join("src/sub/private"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    std::os::unix::fs::symlink("a.txt", dir.join("src/link-to-a"))?;
    std::os::unix::fs::symlink("../missing", dir.join("src/sub/dangling"))?;
    std::fs::write(dir.join("tool"), "tool\n")?;
    std::fs::write(dir.join("keep.txt"), "keep\n")?;
    Ok(())
}

/// The images of an OCI archive: for every image manifest (attestation manifests skipped), its
/// config as JSON and its layer digests.
fn oci_images(archive: &Path) -> anyhow::Result<Vec<(serde_json::Value, Vec<String>)>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut tar = tar::Archive::new(std::fs::File::open(archive)?);
    for entry in tar.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let path = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes)?;
            files.insert(path, bytes);
        }
    }
    let blob = |digest: &str| -> anyhow::Result<serde_json::Value> {
        let path = format!("blobs/{}", digest.replacen(':', "/", 1));
        let bytes = files
            .get(&path)
            .with_context(|| format!("{path} not in the archive"))?;
        Ok(serde_json::from_slice(bytes)?)
    };
    let mut images = Vec::new();
    let mut stack: Vec<serde_json::Value> = vec![serde_json::from_slice(
        files.get("index.json").context("no index.json")?,
    )?];
    while let Some(doc) = stack.pop() {
        if let Some(list) = doc["manifests"].as_array() {
            for d in list {
                let attestation =
                    d["annotations"]["vnd.docker.reference.type"] == "attestation-manifest";
                if !attestation {
                    stack.push(blob(d["digest"].as_str().unwrap_or_default())?);
                }
            }
        } else if doc["config"].is_object() {
            let config = blob(doc["config"]["digest"].as_str().unwrap_or_default())?;
            let layers = doc["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| l["digest"].as_str().unwrap_or_default().to_owned())
                .collect();
            images.push((config, layers));
        }
    }
    Ok(images)
}

/// A busybox base image as an OCI layout, built by kbx from the host's static busybox; returns
/// the `--build-context base=oci-layout://…@DIGEST` value.
async fn base_layout(user: &User) -> anyhow::Result<String> {
    let ctx = user.home().join("base-ctx");
    std::fs::create_dir_all(ctx.join("rootfs/bin"))?;
    std::fs::copy("/bin/busybox", ctx.join("rootfs/bin/busybox"))
        .context("copying /bin/busybox (install busybox-static)")?;
    for applet in ["sh", "mkdir", "echo", "sha256sum"] {
        std::os::unix::fs::symlink("busybox", ctx.join("rootfs/bin").join(applet))?;
    }
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n")?;
    let layout = user.home().join("base-layout");
    let out = format!("type=oci,tar=false,dest={}", layout.display());
    user.build(&ctx, &["--builder", "ours", "-o", &out])
        .await?
        .ok()?;
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .context("the base layout names no image")?;
    Ok(format!("base=oci-layout://{}@{digest}", layout.display()))
}

/// A small context whose path is the sticky key; the content is the same for all.
fn small_context(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY f /f\n")?;
    std::fs::write(dir.join("f"), "f\n")?;
    Ok(())
}

/// How many context paths the pod-choice check builds with each tool.
const PATHS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_store_both_ways_pod_choice_and_same_build() -> anyhow::Result<()> {
    scenario(async |cluster: &Cluster| {
        let bx = Buildx::find(VERSIONS[0])?;
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "interop").await?;

        // A kbx builder, used by Buildx.
        let opts = driver_opts(cluster, &ns, "replicas=3");
        user.create("ours", &opts, &["--bootstrap"]).await?.ok()?;
        // Right after bootstrap every pod is a candidate for both tools: Buildx takes every
        // running pod, kbx every pod whose startup probe passed (K17).

        // Pod choice: each path built by both tools lands on the same pod.
        let root = user.home().join("paths");
        for i in 0..PATHS {
            let dir = root.join(format!("ctx-{i:02}"));
            small_context(&dir)?;
            let dir = dir.to_str().context("UTF-8 path")?;
            let (theirs, ours) = (format!("PARITY=bx-{i:02}"), format!("PARITY=kbx-{i:02}"));
            let dest_bx = user.home().join(format!("out/bx-{i:02}"));
            let dest_kbx = user.home().join(format!("out/kbx-{i:02}"));
            let (out_bx, out_kbx) = (
                format!("type=local,dest={}", dest_bx.display()),
                format!("type=local,dest={}", dest_kbx.display()),
            );
            buildx(
                &bx,
                &user,
                &[
                    "build",
                    "--builder",
                    "ours",
                    "--progress",
                    "plain",
                    "--build-arg",
                    &theirs,
                    "-o",
                    &out_bx,
                    dir,
                ],
                &[],
            )
            .await?
            .ok()?;
            user.build(
                Path::new(dir),
                &["--builder", "ours", "--build-arg", &ours, "-o", &out_kbx],
            )
            .await?
            .ok()?;
        }
        let served = served_by(client, ns.name(), "ours0").await?;
        let mut pods_used = std::collections::BTreeSet::new();
        let mut differ = Vec::new();
        for i in 0..PATHS {
            let theirs = served.get(&format!("bx-{i:02}"));
            let ours = served.get(&format!("kbx-{i:02}"));
            if theirs.is_none() || theirs != ours {
                differ.push(format!("ctx-{i:02}: buildx {theirs:?}, kbx {ours:?}"));
            }
            pods_used.extend(ours.cloned());
        }
        ensure!(
            differ.is_empty(),
            "pods differ for {} of {PATHS} context paths under {}:\n{}",
            differ.len(),
            root.display(),
            differ.join("\n")
        );
        note(&format!(
            "{PATHS} context paths spread over pods {pods_used:?}"
        ));
        ensure!(
            pods_used.len() > 1,
            "every path went to one pod; the check would not tell tools apart"
        );

        // Same build, same result: one context, both tools, on the kbx builder.
        let rich = user.home().join("rich");
        rich_context(&rich)?;
        let base = base_layout(&user).await?;
        let rich_str = rich.to_str().context("UTF-8 path")?;
        let (tree_bx, tree_kbx) = (user.home().join("rich-bx"), user.home().join("rich-kbx"));
        let out_bx = format!("type=local,dest={}", tree_bx.display());
        let out_kbx = format!("type=local,dest={}", tree_kbx.display());
        let rich_args = [
            "--builder",
            "ours",
            "--build-arg",
            "SECOND=2",
            "--build-context",
            &base,
        ];
        build_both(&bx, &user, &rich_args, [&out_bx, &out_kbx], rich_str, &[]).await?;
        let (a, b) = (full_tree(&tree_bx)?, full_tree(&tree_kbx)?);
        ensure!(!a.is_empty(), "Buildx exported nothing");
        ensure!(
            !a.keys()
                .any(|k| k.contains("ignored") || k.ends_with(".log")),
            ".dockerignore not honoured: {a:?}"
        );
        ensure!(
            a.get("out/run/arg").map(String::as_str) == Some("file 644 second=2\n"),
            "the RUN step on the named base gave {:?}",
            a.get("out/run/arg")
        );
        ensure!(a == b, "local trees differ:\nbuildx {a:#?}\nkbx    {b:#?}");

        // The same context as OCI archives with SOURCE_DATE_EPOCH in the environment and
        // rewritten timestamps: the same layers and the same image config.
        let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
        let (oci_bx, oci_kbx) = (
            user.home().join("rich-bx.tar"),
            user.home().join("rich-kbx.tar"),
        );
        let out_bx = format!("type=oci,dest={},rewrite-timestamp=true", oci_bx.display());
        let out_kbx = format!("type=oci,dest={},rewrite-timestamp=true", oci_kbx.display());
        let oci_args = ["--builder", "ours", "--build-context", &base];
        build_both(&bx, &user, &oci_args, [&out_bx, &out_kbx], rich_str, &epoch).await?;
        let (images_bx, images_kbx) = (oci_images(&oci_bx)?, oci_images(&oci_kbx)?);
        ensure!(
            images_bx.len() == 1,
            "one image expected from Buildx: {images_bx:?}"
        );
        ensure!(
            images_bx[0].1 == images_kbx.first().map(|i| i.1.clone()).unwrap_or_default(),
            "layer digests differ:\nbuildx {:?}\nkbx    {:?}",
            images_bx[0].1,
            images_kbx.iter().map(|i| &i.1).collect::<Vec<_>>()
        );
        ensure!(
            images_bx[0].0 == images_kbx[0].0,
            "image configs differ:\nbuildx {:#}\nkbx    {:#}",
            images_bx[0].0,
            images_kbx[0].0
        );
        ensure!(
            images_bx[0].0["created"] == "2023-11-14T22:13:20Z",
            "SOURCE_DATE_EPOCH not applied: {:#}",
            images_bx[0].0
        );

        // ls and inspect once every pod is Ready by its condition: Buildx says `running` only
        // with a ready replica, which a 1.20 kubelet marks on its 30 s readiness ticker.
        let waited = std::time::Instant::now();
        wait_deployment_ready(client, ns.name(), "ours0", 3, Duration::from_secs(120)).await?;
        note(&format!("ours0 ready after {:?} more", waited.elapsed()));
        let rows = same_ls(&bx, &user, "ours").await?;
        ensure!(
            rows.iter()
                .filter(|r| r.contains(&"running".to_owned()))
                .count()
                == 3,
            "three running rows expected: {rows:?}"
        );
        let inspect = buildx(&bx, &user, &["inspect", "ours"], &[]).await?.ok()?;
        ensure!(
            inspect.stdout.contains("running") && inspect.stdout.contains("kubernetes"),
            "{}",
            inspect.stdout
        );

        // Buildx removes the kbx builder: nothing is left, kbx no longer lists it.
        buildx(&bx, &user, &["rm", "ours"], &[]).await?.ok()?;
        let ls = user.run(&["ls"]).await?.ok()?;
        ensure!(ls_rows(&ls.stdout, "ours").is_empty(), "{}", ls.stdout);

        // A Buildx builder, used by kbx.
        buildx(
            &bx,
            &user,
            &[
                "create",
                "--name",
                "theirs",
                "--driver",
                "kubernetes",
                "--driver-opt",
                &opts,
                "--bootstrap",
            ],
            &[],
        )
        .await?
        .ok()?;
        let dest = user.home().join("theirs-out");
        user.build(
            &rich,
            &[
                "--builder",
                "theirs",
                "--build-arg",
                "SECOND=2",
                "--build-context",
                &base,
                "-o",
                &format!("type=local,dest={}", dest.display()),
            ],
        )
        .await?
        .ok()?;
        ensure!(
            full_tree(&dest)? == a,
            "kbx's build on the Buildx builder differs"
        );
        wait_deployment_ready(client, ns.name(), "theirs0", 3, Duration::from_secs(120)).await?;
        same_ls(&bx, &user, "theirs").await?;
        let inspect = user.run(&["inspect", "theirs"]).await?.ok()?;
        ensure!(inspect.stdout.contains("running"), "{}", inspect.stdout);
        user.run(&["rm", "theirs"]).await?.ok()?;
        // Both removals at once: each waits for its pods to finish terminating.
        let waited = std::time::Instant::now();
        tokio::try_join!(
            wait_nothing_left(client, ns.name(), "ours0"),
            wait_nothing_left(client, ns.name(), "theirs0")
        )?;
        note(&format!("nothing left after {:?}", waited.elapsed()));
        let ls = buildx(&bx, &user, &["ls"], &[]).await?;
        ensure!(ls_rows(&ls.stdout, "theirs").is_empty(), "{}", ls.stdout);
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// The store both ways with Buildx 0.13.1: a kbx builder (only options 0.13.1 knows) is listed,
/// inspected, built on and removed by it, and a builder it made by kbx; each leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_store_both_ways_with_buildx_0_13() -> anyhow::Result<()> {
    scenario(async |cluster: &Cluster| {
        let bx = Buildx::find(VERSIONS[1])?;
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "interop13").await?;
        // No `timeout`: 0.13.1 refuses options it does not know.
        let opts = format!("namespace={},image={}", ns.name(), cluster.builder_image());
        let ctx = user.home().join("ctx");
        small_context(&ctx)?;
        let ctx_str = ctx.to_str().context("UTF-8 path")?;
        let out = |who: &str| format!("type=local,dest={}", user.home().join(who).display());

        user.create("ours", &opts, &["--bootstrap"]).await?.ok()?;
        wait_deployment_ready(client, ns.name(), "ours0", 1, Duration::from_secs(120)).await?;
        same_ls(&bx, &user, "ours").await?;
        let inspect = buildx(&bx, &user, &["inspect", "ours"], &[]).await?.ok()?;
        ensure!(inspect.stdout.contains("running"), "{}", inspect.stdout);
        let args = ["--builder", "ours"];
        build_both(&bx, &user, &args, [&out("bx"), &out("kbx")], ctx_str, &[]).await?;
        ensure!(
            full_tree(&user.home().join("bx"))? == full_tree(&user.home().join("kbx"))?,
            "the trees differ"
        );
        buildx(&bx, &user, &["rm", "ours"], &[]).await?.ok()?;
        let ls = user.run(&["ls"]).await?.ok()?;
        ensure!(ls_rows(&ls.stdout, "ours").is_empty(), "{}", ls.stdout);

        buildx(
            &bx,
            &user,
            &[
                "create",
                "--name",
                "theirs",
                "--driver",
                "kubernetes",
                "--driver-opt",
                &opts,
                "--bootstrap",
            ],
            &[],
        )
        .await?
        .ok()?;
        wait_deployment_ready(client, ns.name(), "theirs0", 1, Duration::from_secs(120)).await?;
        same_ls(&bx, &user, "theirs").await?;
        let inspect = user.run(&["inspect", "theirs"]).await?.ok()?;
        ensure!(inspect.stdout.contains("running"), "{}", inspect.stdout);
        user.build(&ctx, &["--builder", "theirs", "-o", &out("kbx-theirs")])
            .await?
            .ok()?;
        ensure!(
            full_tree(&user.home().join("kbx-theirs"))? == full_tree(&user.home().join("bx"))?,
            "kbx's build on the Buildx builder differs"
        );
        user.run(&["rm", "theirs"]).await?.ok()?;
        let ls = buildx(&bx, &user, &["ls"], &[]).await?;
        ensure!(ls_rows(&ls.stdout, "theirs").is_empty(), "{}", ls.stdout);
        tokio::try_join!(
            wait_nothing_left(client, ns.name(), "ours0"),
            wait_nothing_left(client, ns.name(), "theirs0")
        )?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

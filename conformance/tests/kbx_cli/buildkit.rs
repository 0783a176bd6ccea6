//! What the real BuildKit v0.13.2 in `moby/buildkit`-shaped builder pods gives a kbx user:
//! multi-platform pushes from a two-node builder and from one node under QEMU, the `oci`,
//! `docker`, `tar` and unpushed `image` exports, `--load` into a Docker Engine, the Info API's
//! version in `ls` and `inspect`, and rootless builders. Results are read back with the suite's own registry client and by
//! unpacking the archives, never through kbx.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use anyhow::{Context, ensure};
use kbx_conformance::Cluster;
use kbx_conformance::image::ROOTLESS_BUILDER_IMAGE;
use kbx_conformance::registry::{ANY_MANIFEST, Registry, base_image_layer};
use kbx_conformance::scenario::TestNamespace;
use kube::api::DeleteParams;

use super::registry::{blocking, index_platforms, registry_pod, seed_bases};

// The private-dockerd helper shared with kbx-buildkit's and kbx-cli's tests: `--load` goes
// into a Docker Engine of the test's own.
#[path = "../../../crates/kbx-buildkit/tests/support/mod.rs"]
mod support;
use super::{
    User, arm64_emulation_prerequisites, context, driver_opts, note, qemu_install_opts, scenario,
    static_volume, tar_tree, tree, wait_nothing_left,
};

/// The version the builder image's BuildKit reports.
const BUILDKIT_VERSION: &str = "v0.13.2";

/// A Dockerfile whose base is the registry's busybox of the target architecture and whose one
/// `RUN` step records the machine it ran on.
fn arch_dockerfile(registry: &str) -> String {
    format!("FROM {registry}/kbx/base:${{TARGETARCH}}\nRUN uname -m > /arch\n")
}

/// For each platform of the index at `repo:reference`: the image config's architecture and the
/// digest of the manifest's last layer (the `RUN` step's).
fn pushed_images(
    reg: &Registry,
    repo: &str,
    reference: &str,
) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let mut out = BTreeMap::new();
    for (platform, digest) in index_platforms(reg, &format!("/v2/{repo}/manifests/{reference}"))? {
        if platform == "unknown/unknown" {
            continue; // an attestation manifest
        }
        let manifest = reg.get(&format!("/v2/{repo}/manifests/{digest}"), ANY_MANIFEST)?;
        ensure!(
            manifest.status == 200,
            "manifest {digest}: HTTP {}",
            manifest.status
        );
        let manifest = manifest.json()?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .context("config digest")?;
        let config = reg.get(&format!("/v2/{repo}/blobs/{config_digest}"), "*/*")?;
        ensure!(
            config.status == 200,
            "config {config_digest}: HTTP {}",
            config.status
        );
        let arch = config.json()?["architecture"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let last_layer = manifest["layers"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|l| l["digest"].as_str())
            .unwrap_or_default()
            .to_owned();
        out.insert(platform, (arch, last_layer));
    }
    Ok(out)
}

/// Checks a two-platform image pushed under `repo:reference`.
fn check_two_platform_push(reg: &Registry, repo: &str, reference: &str) -> anyhow::Result<()> {
    let images = pushed_images(reg, repo, reference)?;
    let amd = images.get("linux/amd64").context("no linux/amd64 image")?;
    let arm = images.get("linux/arm64").context("no linux/arm64 image")?;
    ensure!(images.len() == 2, "{repo}:{reference}: {images:?}");
    ensure!(
        amd.0 == "amd64" && arm.0 == "arm64",
        "config architectures: {images:?}"
    );
    ensure!(
        amd.1 != arm.1 && !amd.1.is_empty(),
        "the RUN layers of both platforms are the same: {images:?}"
    );
    Ok(())
}

/// The regular files of a tar archive on disk, by name.
fn archive_files(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(path)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let name = entry.path()?.display().to_string();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            out.insert(name, bytes);
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_real_buildkit_pushes_multi_platform_images_and_exports() -> anyhow::Result<()> {
    scenario(async |cluster: &Cluster| {
        if cluster.local().is_none() {
            note("skipping: this scenario uses the local backend's images");
            return Ok(());
        }
        let (arm64, binfmt) = arm64_emulation_prerequisites()?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "realbk").await?;
        let reg_pod = registry_pod(client, &ns, "registry", None).await?;
        // kbx merges the nodes' pushes into one manifest list from this host, as buildx does
        // from the user's machine: the host needs a way to the registry pod. The bridge gets
        // the pod subnet's reserved first address (no route out is added; it goes with the
        // bridge at teardown). The bridge exists once the first pod runs.
        let bridge = cluster.local().context("local cluster")?.layout().bridge();
        let status = std::process::Command::new("ip")
            .args(["addr", "add", "10.244.0.1/24", "dev", &bridge])
            .status()?;
        ensure!(status.success(), "cannot give {bridge} a host address");
        let reg = Registry::new(&reg_pod.local, None);
        blocking(|| seed_bases(&reg, "kbx/base", &arm64))?;
        let host = reg_pod.pod.clone();

        let user = User::new(cluster)?;
        let config = user.home().join("buildkitd.toml");
        std::fs::write(&config, format!("[registry.\"{host}\"]\n  http = true\n"))?;
        let config = config.to_str().context("path")?.to_owned();

        // Buildx's documented multi-arch set-up: one node per platform, appended.
        let plain = driver_opts(cluster, &ns, "");
        let qemu = driver_opts(cluster, &ns, &qemu_install_opts());
        user.create(
            "multi",
            &plain,
            &[
                "--node",
                "multi-amd",
                "--platform",
                "linux/amd64",
                "--buildkitd-config",
                &config,
                "--bootstrap",
                "--use",
            ],
        )
        .await?
        .ok()?;
        user.create(
            "multi",
            &qemu,
            &[
                "--append",
                "--node",
                "multi-arm",
                "--platform",
                "linux/arm64",
                "--buildkitd-config",
                &config,
                "--bootstrap",
            ],
        )
        .await?
        .ok()?;

        // The Info API's version in ls and inspect, for each node.
        let ls = user.run(&["ls"]).await?.ok()?;
        for node in ["multi-amd", "multi-arm"] {
            ensure!(
                ls.stdout.lines().any(|l| l.contains(node)
                    && l.contains(" running ")
                    && l.contains(BUILDKIT_VERSION)),
                "ls does not show {node} running BuildKit {BUILDKIT_VERSION}:\n{}",
                ls.stdout
            );
        }
        let inspect = user.run(&["inspect", "multi"]).await?.ok()?;
        ensure!(
            inspect
                .stdout
                .matches(&format!("BuildKit version:      {BUILDKIT_VERSION}"))
                .count()
                == 2,
            "inspect does not show both nodes' version:\n{}",
            inspect.stdout
        );

        // Each node pushes its platform by digest; kbx writes one index under every tag.
        let ctx = tempfile::tempdir()?;
        std::fs::write(ctx.path().join("Dockerfile"), arch_dockerfile(&host))?;
        let both = "linux/amd64,linux/arm64";
        let run = user
            .build(
                ctx.path(),
                &[
                    "--platform",
                    both,
                    "--push",
                    "-t",
                    &format!("{host}/kbx/app:1"),
                    "-t",
                    &format!("{host}/kbx/app:latest"),
                ],
            )
            .await?
            .ok()?;
        for (platform, node) in [("linux/amd64", "multi-amd"), ("linux/arm64", "multi-arm")] {
            ensure!(
                run.stderr
                    .contains(&format!("#0 building {platform} on {node} (")),
                "{platform} was not built on {node}:\n{}",
                run.stderr
            );
        }
        blocking(|| check_two_platform_push(&reg, "kbx/app", "1"))?;
        blocking(|| check_two_platform_push(&reg, "kbx/app", "latest"))?;
        let digest = |tag: &str| {
            blocking(|| reg.get(&format!("/v2/kbx/app/manifests/{tag}"), ANY_MANIFEST))
                .map(|a| a.header("docker-content-digest"))
        };
        ensure!(
            digest("1")? == digest("latest")?,
            "the two tags name different indexes"
        );

        // One node with QEMU builds and pushes both platforms itself.
        user.create(
            "one",
            &qemu,
            &["--buildkitd-config", &config, "--bootstrap"],
        )
        .await?
        .ok()?;
        user.build(
            ctx.path(),
            &[
                "--builder",
                "one",
                "--platform",
                both,
                "--push",
                "-t",
                &format!("{host}/kbx/one:1"),
            ],
        )
        .await?
        .ok()?;
        blocking(|| check_two_platform_push(&reg, "kbx/one", "1"))?;

        // Exports of one platform: an OCI layout archive, a docker archive, a tar of the root
        // file system, and an image that is not pushed.
        let out = user.home().join("exports");
        std::fs::create_dir_all(&out)?;
        let amd = ["--builder", "one", "--platform", "linux/amd64"];
        let oci = out.join("oci.tar");
        user.build(
            ctx.path(),
            &[
                &amd[..],
                &["-o", &format!("type=oci,dest={}", oci.display())],
            ]
            .concat(),
        )
        .await?
        .ok()?;
        let files = archive_files(&oci)?;
        ensure!(
            files.contains_key("oci-layout"),
            "no oci-layout in {:?}",
            files.keys()
        );
        let index: serde_json::Value =
            serde_json::from_slice(files.get("index.json").context("no index.json")?)?;
        let top = index["manifests"][0]["digest"]
            .as_str()
            .context("no manifest")?;
        let blob = |digest: &str| files.get(&format!("blobs/{}", digest.replace(':', "/")));
        ensure!(
            blob(top).is_some(),
            "index.json names {top}, which is not in the archive"
        );

        let docker = out.join("docker.tar");
        user.build(
            ctx.path(),
            &[
                &amd[..],
                &[
                    "-o",
                    &format!("type=docker,name=kbx/app:docker,dest={}", docker.display()),
                ],
            ]
            .concat(),
        )
        .await?
        .ok()?;
        let files = archive_files(&docker)?;
        let manifest: serde_json::Value =
            serde_json::from_slice(files.get("manifest.json").context("no manifest.json")?)?;
        let tags = manifest[0]["RepoTags"].to_string();
        ensure!(
            tags.contains("kbx/app:docker"),
            "docker archive tags: {tags}"
        );
        let config_name = manifest[0]["Config"].as_str().context("no Config")?;
        let image_config: serde_json::Value =
            serde_json::from_slice(files.get(config_name).context("config missing")?)?;
        ensure!(image_config["architecture"] == "amd64", "{image_config}");

        let rootfs = out.join("rootfs.tar");
        user.build(
            ctx.path(),
            &[
                &amd[..],
                &["-o", &format!("type=tar,dest={}", rootfs.display())],
            ]
            .concat(),
        )
        .await?
        .ok()?;
        let files = tar_tree(&rootfs)?;
        ensure!(
            files.get("arch").map(Vec::as_slice) == Some(b"x86_64\n".as_slice()),
            "the tar export's /arch: {:?}",
            files
                .get("arch")
                .map(|b| String::from_utf8_lossy(b).into_owned())
        );

        user.build(
            ctx.path(),
            &[
                &amd[..],
                &["-o", &format!("type=image,name={host}/kbx/kept:1")],
            ]
            .concat(),
        )
        .await?
        .ok()?;
        ensure!(
            blocking(|| reg.get("/v2/kbx/kept/manifests/1", ANY_MANIFEST))?.status == 404,
            "an image export without push=true reached the registry"
        );

        // --load: the docker archive streams into a private Docker Engine, where it runs.
        let dockerd = support::Dockerd::start().context("no dockerd (install docker.io)")?;
        let docker_host = format!("unix://{}", dockerd.sock.display());
        let run = user
            .run_with(
                &[
                    "build",
                    "--progress",
                    "plain",
                    "--builder",
                    "one",
                    "--platform",
                    "linux/amd64",
                    "--load",
                    "-t",
                    "kbx/loaded:1",
                    ctx.path().to_str().context("path")?,
                ],
                &[("DOCKER_HOST", &docker_host)],
            )
            .await?
            .ok()?;
        ensure!(run.stderr.contains("importing to docker"), "{}", run.stderr);
        let (ran, stdout, stderr) = blocking(|| {
            dockerd.docker(&[
                "run",
                "--rm",
                "--network",
                "none",
                "kbx/loaded:1",
                "cat",
                "/arch",
            ])
        });
        ensure!(
            ran && stdout == "x86_64\n",
            "the loaded image: {stdout:?} {stderr}"
        );
        drop(dockerd);

        for name in ["multi", "one"] {
            user.run(&["rm", name]).await?.ok()?;
        }
        for node in ["multi-amd", "multi-arm", "one0"] {
            wait_nothing_left(client, ns.name(), node).await?;
        }
        drop(reg_pod);
        ns.delete().await?;
        binfmt.remove_handler()?;
        drop(binfmt);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_rootless_builders_bootstrap_and_build() -> anyhow::Result<()> {
    scenario(async |cluster: &Cluster| {
        if cluster.local().is_none() {
            note("skipping: this scenario uses the local backend's images");
            return Ok(());
        }
        let user = User::new(cluster)?;
        let client = cluster.client();
        let ns = TestNamespace::create(client, "rootless").await?;
        // A static volume for the StatefulSet's claim, writable by the rootless user.
        let volume_dir = tempfile::tempdir()?;
        std::fs::set_permissions(
            volume_dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )?;
        let (pvs, pv_name) = static_volume(client, &ns, volume_dir.path()).await?;

        // `rootless=true` without `image=`: buildx's rootless default image.
        let base = format!("namespace={},timeout=240s,rootless=true", ns.name());
        let ctx = tempfile::tempdir()?;
        context(ctx.path(), "rootless")?;
        let source = tree(ctx.path())?;
        for (name, extra) in [
            ("rl", ""),
            ("rlstate", ",persistent-volume-claim.requests.storage=1Gi"),
        ] {
            let run = user
                .create(name, &format!("{base}{extra}"), &["--bootstrap"])
                .await?
                .ok()?;
            note(&run.stderr);
            let pods =
                kbx_conformance::scenario::running_pods(client, ns.name(), &format!("{name}0"))
                    .await?;
            let pod = pods.first().context("no running pod")?;
            let spec = pod.spec.as_ref().context("pod spec")?;
            ensure!(
                spec.containers[0].image.as_deref() == Some(ROOTLESS_BUILDER_IMAGE),
                "{name}: image {:?}",
                spec.containers[0].image
            );
            let dest = user.home().join(name);
            user.build(
                ctx.path(),
                &[
                    "--builder",
                    name,
                    "-o",
                    &format!("type=local,dest={}", dest.display()),
                ],
            )
            .await?
            .ok()?;
            ensure!(
                tree(&dest)? == source,
                "{name}: the export differs from the source"
            );
            let inspect = user.run(&["inspect", name]).await?.ok()?;
            ensure!(
                inspect
                    .stdout
                    .contains(&format!("BuildKit version:      {BUILDKIT_VERSION}")),
                "{name}: {}",
                inspect.stdout
            );
        }
        ensure!(
            std::fs::read_dir(volume_dir.path())?.next().is_some(),
            "the rootless StatefulSet wrote nothing to its claim's volume"
        );
        for name in ["rl", "rlstate"] {
            user.run(&["rm", name]).await?.ok()?;
            wait_nothing_left(client, ns.name(), &format!("{name}0")).await?;
        }
        pvs.delete(&pv_name, &DeleteParams::default()).await?;
        ns.delete().await?;
        Ok(())
    })
    .await
}

/// The vertex lines of a plain progress log whose name contains `step` and that are `CACHED`.
fn cached(stderr: &str, step: &str) -> bool {
    let ids: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(step))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    stderr
        .lines()
        .any(|l| l.ends_with(" CACHED") && ids.iter().any(|id| l.starts_with(&format!("{id} "))))
}

/// The manifest (or index) a tag names: its media type and, for an index, the entries'
/// `vnd.docker.reference.type` annotations.
fn tag_kind(reg: &Registry, repo: &str, tag: &str) -> anyhow::Result<(String, Vec<String>)> {
    let a = reg.get(&format!("/v2/{repo}/manifests/{tag}"), ANY_MANIFEST)?;
    ensure!(a.status == 200, "{repo}:{tag}: HTTP {}", a.status);
    let doc = a.json()?;
    let media_type = a
        .header("content-type")
        .unwrap_or_else(|| doc["mediaType"].as_str().unwrap_or_default().to_owned());
    let kinds = doc["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["annotations"]["vnd.docker.reference.type"].as_str())
        .map(str::to_owned)
        .collect();
    Ok((media_type, kinds))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kbx_real_buildkit_caches_named_contexts_attestations_and_mounts() -> anyhow::Result<()> {
    scenario(async |cluster: &Cluster| {
        if cluster.local().is_none() {
            note("skipping: this scenario uses the local backend's images");
            return Ok(());
        }
        let client = cluster.client();
        let ns = TestNamespace::create(client, "bkfeat").await?;
        let reg_pod = registry_pod(client, &ns, "registry", None).await?;
        let reg = Registry::new(&reg_pod.local, None);
        let host = reg_pod.pod.clone();
        let tools = base_image_layer("/bin/busybox", &["sh", "cat", "echo", "test", "wc", "ls"])?;
        blocking(|| reg.push_image("kbx/tools", "1", &tools, "amd64"))?;

        let user = User::new(cluster)?;
        let config = user.home().join("buildkitd.toml");
        std::fs::write(&config, format!("[registry.\"{host}\"]\n  http = true\n"))?;
        let config = config.to_str().context("path")?.to_owned();
        let opts = driver_opts(cluster, &ns, "");
        let create = async |name: &str| {
            user.create(name, &opts, &["--buildkitd-config", &config, "--bootstrap", "--use"])
                .await?
                .ok()
        };
        create("feat").await?;

        // Attestations: buildx's default provenance (mode=min) rides in the pushed index;
        // --provenance=false pushes a plain manifest.
        let ctx = tempfile::tempdir()?;
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!("FROM {host}/kbx/tools:1\nARG PROBE\nRUN echo \"$PROBE\" > /probe\n"),
        )?;
        for (tag, extra) in [("attested", None), ("plain", Some("--provenance=false"))] {
            let mut args = vec!["--push", "-t"];
            let name = format!("{host}/kbx/att:{tag}");
            args.push(&name);
            args.extend(extra);
            user.build(ctx.path(), &args).await?.ok()?;
        }
        let (media, kinds) = blocking(|| tag_kind(&reg, "kbx/att", "attested"))?;
        ensure!(
            (media.contains("index") || media.contains("list"))
                && kinds == ["attestation-manifest"],
            "default push: {media} {kinds:?}"
        );
        let (media, kinds) = blocking(|| tag_kind(&reg, "kbx/att", "plain"))?;
        ensure!(
            !media.contains("index") && !media.contains("list") && kinds.is_empty(),
            "--provenance=false push: {media} {kinds:?}"
        );

        // Caches: local (mode=max) and registry exported in one build, then imported on a
        // fresh builder, and after a prune of that builder.
        let cache_dir = user.home().join("cache");
        let cache_ref = format!("{host}/kbx/cache:1");
        let build_arg = ["--build-arg", "PROBE=cached"];
        user.build(
            ctx.path(),
            &[
                &build_arg[..],
                &[
                    "--cache-to",
                    &format!("type=local,dest={},mode=max", cache_dir.display()),
                    "--cache-to",
                    &format!("type=registry,ref={cache_ref},mode=max"),
                ],
            ]
            .concat(),
        )
        .await?
        .ok()?;
        ensure!(cache_dir.join("index.json").is_file(), "no local cache index");
        user.run(&["rm", "feat"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "feat0").await?;
        create("fresh").await?;
        let from_local = format!("type=local,src={}", cache_dir.display());
        let run = user
            .build(ctx.path(), &[&build_arg[..], &["--cache-from", &from_local]].concat())
            .await?
            .ok()?;
        ensure!(cached(&run.stderr, "RUN echo"), "local cache not used:\n{}", run.stderr);
        user.run(&["prune", "--all", "--force"]).await?.ok()?;
        let from_registry = format!("type=registry,ref={cache_ref}");
        let run = user
            .build(ctx.path(), &[&build_arg[..], &["--cache-from", &from_registry]].concat())
            .await?
            .ok()?;
        ensure!(cached(&run.stderr, "RUN echo"), "registry cache not used:\n{}", run.stderr);
        // Inline: the cache travels in the pushed image's config.
        let inline = format!("{host}/kbx/inline:1");
        user.build(
            ctx.path(),
            &["--build-arg", "PROBE=inline", "--cache-to", "type=inline", "--push", "-t", &inline],
        )
        .await?
        .ok()?;
        user.run(&["prune", "--all", "--force"]).await?.ok()?;
        let run = user
            .build(ctx.path(), &["--build-arg", "PROBE=inline", "--cache-from", &inline])
            .await?
            .ok()?;
        ensure!(cached(&run.stderr, "RUN echo"), "inline cache not used:\n{}", run.stderr);

        // Named contexts: a directory, an image in the registry, and an OCI layout by digest.
        let layout = user.home().join("layout");
        user.build(
            ctx.path(),
            &[
                "--build-arg",
                "PROBE=layout",
                "-o",
                &format!("type=oci,tar=false,dest={}", layout.display()),
            ],
        )
        .await?
        .ok()?;
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .context("the layout's index names no image")?
            .to_owned();
        let extra = tempfile::tempdir()?;
        std::fs::write(extra.path().join("note"), "from a named directory\n")?;
        let named = tempfile::tempdir()?;
        std::fs::write(
            named.path().join("Dockerfile"),
            "FROM tools AS t\nFROM layout\nCOPY --from=extra note /note\nCOPY --from=t /bin/busybox /tools-busybox\nRUN cat /probe /note > /both\n",
        )?;
        let out = user.home().join("named");
        user.build(
            named.path(),
            &[
                "--build-context",
                &format!("extra={}", extra.path().display()),
                "--build-context",
                &format!("tools=docker-image://{host}/kbx/tools:1"),
                "--build-context",
                &format!("layout=oci-layout://{}@{digest}", layout.display()),
                "-o",
                &format!("type=local,dest={}", out.display()),
            ],
        )
        .await?
        .ok()?;
        ensure!(
            std::fs::read_to_string(out.join("both"))? == "layout\nfrom a named directory\n",
            "named contexts: {:?}",
            std::fs::read_to_string(out.join("both"))
        );
        ensure!(out.join("tools-busybox").is_file(), "the docker-image context gave nothing");

        // RUN mounts through the daemon: a cache mount that persists between builds, a
        // secret, and an SSH agent socket.
        let secret = user.home().join("token");
        std::fs::write(&secret, "s3cret-token\n")?;
        let key = user.home().join("id_ed25519");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .context("running ssh-keygen (install openssh-client)")?;
        ensure!(status.success(), "ssh-keygen failed");
        let mounts = tempfile::tempdir()?;
        std::fs::write(
            mounts.path().join("Dockerfile"),
            format!(
                "FROM {host}/kbx/tools:1\nARG ROUND\nRUN --mount=type=cache,target=/c echo \"$ROUND\" >> /c/log && wc -l < /c/log > /count\nRUN --mount=type=secret,id=tok cat /run/secrets/tok > /tok\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo agent > /ssh\n"
            ),
        )?;
        for round in ["1", "2"] {
            let out = user.home().join(format!("mounts{round}"));
            user.build(
                mounts.path(),
                &[
                    "--build-arg",
                    &format!("ROUND={round}"),
                    "--secret",
                    &format!("id=tok,src={}", secret.display()),
                    "--ssh",
                    &format!("default={}", key.display()),
                    "-o",
                    &format!("type=local,dest={}", out.display()),
                ],
            )
            .await?
            .ok()?;
            ensure!(
                std::fs::read_to_string(out.join("count"))?.trim() == round,
                "round {round}: the cache mount holds {:?} lines",
                std::fs::read_to_string(out.join("count"))
            );
            ensure!(std::fs::read_to_string(out.join("tok"))? == "s3cret-token\n");
            ensure!(std::fs::read_to_string(out.join("ssh"))? == "agent\n");
        }

        user.run(&["rm", "fresh"]).await?.ok()?;
        wait_nothing_left(client, ns.name(), "fresh0").await?;
        drop(reg_pod);
        ns.delete().await?;
        Ok(())
    })
    .await
}

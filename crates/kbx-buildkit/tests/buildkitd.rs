//! Builds through a real standalone buildkitd v0.13.2 (built from Debian's source by
//! `conformance/scripts/build-buildkit.sh`), with Debian's runc and `docker-registry`.
//!
//! Each test starts its own daemon (see `support::Buildkitd`) and, where it pushes, its own
//! registry on 127.0.0.1. Results are read back with independent means: the exported files, tar
//! archives read with the `tar` crate and `gzip`, OCI layouts whose blobs are checked against
//! their digests with `sha2`, and plain HTTP GETs on the registry — never kbx's output alone.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use kbx_buildkit::{
    Backend, BuildOptions, CacheEntry, Client, Error, NamedContext, Output, PlainRenderer,
};
use sha2::Digest as _;
use support::registry::Registry;
use support::{Buildkitd, busybox_rootfs, snapshot, write};

async fn client(d: &Buildkitd) -> Client {
    Client::connect(&d.addr())
        .await
        .expect("connect to buildkitd")
}

/// Builds and returns the plain progress text as well.
async fn build(
    c: &Client,
    opts: &BuildOptions,
) -> (Result<kbx_buildkit::BuildResult, Error>, String) {
    let mut plain = PlainRenderer::new(Vec::new());
    let r = c.build(opts, |ev| plain.render(ev).expect("render")).await;
    let text = String::from_utf8(plain.into_inner()).expect("utf8");
    eprintln!("{text}");
    (r, text)
}

/// Options every build here shares: no credentials from the host, the context `ctx`.
fn opts(ctx: &Path) -> BuildOptions {
    BuildOptions {
        context: ctx.into(),
        credentials: Some(kbx_buildkit::DockerCredentials::default()),
        ..BuildOptions::default()
    }
}

fn sha256(data: &[u8]) -> String {
    let hex: String = sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A blob of an OCI layout, checked against its digest.
fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap();
    let data = std::fs::read(layout.join("blobs").join(alg).join(hex))
        .unwrap_or_else(|e| panic!("blob {digest} in {}: {e}", layout.display()));
    assert_eq!(sha256(&data), digest, "blob content matches its digest");
    data
}

fn json(data: &[u8]) -> serde_json::Value {
    serde_json::from_slice(data)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(data)))
}

/// Regular files of an uncompressed tar stream: path → content.
fn tar_files(data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let path = entry.path().unwrap().display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            out.insert(path.trim_start_matches("./").to_owned(), content);
        }
    }
    out
}

/// Regular files of a gzip-compressed layer (decompressed by the system's gzip).
fn layer_files(data: &[u8]) -> BTreeMap<String, Vec<u8>> {
    use std::io::Write as _;
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "gzip -dc failed");
    tar_files(&out.stdout)
}

/// An OCI image layout's manifests for `index` (an image index or manifest), flattened:
/// (descriptor, manifest JSON) for each image manifest.
fn image_manifests(
    layout: &Path,
    desc: &serde_json::Value,
) -> Vec<(serde_json::Value, serde_json::Value)> {
    let m = json(&blob(layout, desc["digest"].as_str().unwrap()));
    if m["manifests"].is_array() {
        m["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| image_manifests(layout, d))
            .collect()
    } else {
        vec![(desc.clone(), m)]
    }
}

/// The regular files of [`scratch_context`]: path → content.
fn scratch_files() -> BTreeMap<String, Vec<u8>> {
    [
        (
            "Dockerfile",
            &b"FROM scratch\nCOPY . /\nLABEL kbx.test=yes\n"[..],
        ),
        ("a.txt", b"alpha\n"),
        ("bin/run.sh", b"#!/bin/sh\necho hi\n"),
        ("deep/er/leaf.bin", &[0u8, 1, 2, 255]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_vec()))
    .collect()
}

/// A context with a few files and a `FROM scratch` Dockerfile that copies them.
fn scratch_context(root: &Path) {
    write(
        root,
        "Dockerfile",
        b"FROM scratch\nCOPY . /\nLABEL kbx.test=yes\n",
        0o644,
    );
    write(root, "a.txt", b"alpha\n", 0o644);
    write(root, "bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write(root, "deep/er/leaf.bin", &[0u8, 1, 2, 255], 0o640);
}

/// Builds a busybox base image (`FROM scratch` + a static busybox) into the OCI layout `dir`
/// with `type=oci,tar=false`; `None` when busybox is missing (skip).
async fn busybox_layout(c: &Client, dir: &Path) -> Option<PathBuf> {
    let ctx = tempfile::tempdir().unwrap();
    busybox_rootfs(ctx.path())?;
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY rootfs/ /\n",
        0o644,
    );
    let layout = dir.join("base-layout");
    let o = BuildOptions {
        output: Some(Output::OciDir {
            dest: layout.clone(),
            names: vec![],
        }),
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    let (r, _) = build(c, &o).await;
    r.expect("build the busybox base layout");
    Some(layout)
}

fn base_context(layout: &Path) -> NamedContext {
    NamedContext::parse(&format!("base=oci-layout://{}", layout.display())).unwrap()
}

/// The digest of the `type=oci,tar=false` image: `index.json` names it `latest`.
fn latest_in(layout: &Path) -> serde_json::Value {
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "latest")
        .cloned()
        .unwrap_or_else(|| panic!("no latest in {index}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_workers_and_capabilities_of_a_real_buildkitd() {
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let info = c.info().await.unwrap();
    assert_eq!(info.buildkit_version.as_deref(), Some("v0.13.2"));
    assert_eq!(info.package.as_deref(), Some("github.com/moby/buildkit"));
    assert!(info.has_info_api);
    let workers = c.list_workers().await.unwrap();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert!(
        workers[0].platforms.iter().any(|p| p == "linux/amd64"),
        "{workers:?}"
    );
    assert_eq!(
        workers[0]
            .labels
            .get("org.mobyproject.buildkit.worker.executor")
            .map(String::as_str),
        Some("oci")
    );
    // Recognised as a standalone buildkitd (not a Docker Engine behind a proxy): its
    // exporters, every cache type, named contexts, oci-layout contexts and attestations.
    let caps = c.capabilities().await.unwrap();
    assert_eq!(caps.backend, Backend::Buildkitd);
    assert_eq!(caps.daemon_name(), "buildkitd v0.13.2");
    for e in ["image", "oci", "docker", "local", "tar"] {
        assert!(caps.supports_exporter(e), "{e}");
    }
    assert!(caps.cache_exporters.contains(&"local"));
    assert!(caps.cache_importers.contains(&"local"));
    assert!(caps.multiple_exporters);
    assert!(caps.named_contexts && caps.oci_layout_contexts && caps.attestations);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_tar_oci_and_docker_exports_read_back_independently() {
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    scratch_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let want: BTreeMap<String, Vec<u8>> = [
        (
            "Dockerfile",
            &b"FROM scratch\nCOPY . /\nLABEL kbx.test=yes\n"[..],
        ),
        ("a.txt", b"alpha\n"),
        ("bin/run.sh", b"#!/bin/sh\necho hi\n"),
        ("deep/er/leaf.bin", &[0u8, 1, 2, 255]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_vec()))
    .collect();

    // local: the tree itself, modes included; no provenance file (inline-only default).
    let o = BuildOptions {
        output: Some(Output::Local {
            dest: out.path().join("local"),
        }),
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("local export");
    assert_eq!(snapshot(&out.path().join("local")), snapshot(ctx.path()));

    // tar: the same files.
    let tar_path = out.path().join("out.tar");
    let o = BuildOptions {
        output: Some(Output::Tar {
            dest: Some(tar_path.clone()),
        }),
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("tar export");
    assert_eq!(tar_files(&std::fs::read(&tar_path).unwrap()), want);

    // oci (tarball): index → manifest → config with the label, one layer with the files.
    let oci_tar = out.path().join("oci.tar");
    let o = BuildOptions {
        output: Some(Output::Oci {
            dest: Some(oci_tar.clone()),
            names: vec![],
        }),
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    let res = build(&c, &o).await.0.expect("oci export");
    let layout = out.path().join("oci");
    std::fs::create_dir(&layout).unwrap();
    tar::Archive::new(std::fs::File::open(&oci_tar).unwrap())
        .unpack(&layout)
        .unwrap();
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    let top = &index["manifests"][0];
    assert_eq!(res.image_digest(), top["digest"].as_str());
    let images = image_manifests(&layout, top);
    assert_eq!(images.len(), 1);
    let manifest = &images[0].1;
    let config = json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["Labels"]["kbx.test"], "yes");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let files = layer_files(&blob(&layout, layers[0]["digest"].as_str().unwrap()));
    assert_eq!(files, want);

    // oci with tar=false: a layout directory written through the session content store,
    // index.json naming the image `latest`; the same image as the tarball.
    let dir = out.path().join("oci-dir");
    let o = BuildOptions {
        output: Some(Output::OciDir {
            dest: dir.clone(),
            names: vec![],
        }),
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    let res2 = build(&c, &o).await.0.expect("oci directory export");
    assert_eq!(
        std::fs::read_to_string(dir.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let latest = latest_in(&dir);
    assert_eq!(res2.image_digest(), latest["digest"].as_str());
    let images2 = image_manifests(&dir, &latest);
    assert_eq!(images2[0].1, *manifest, "same manifest as the tarball's");
    assert_eq!(
        layer_files(&blob(&dir, layers[0]["digest"].as_str().unwrap())),
        want
    );
    // As Buildx's layouts: an empty `ingest/`.
    assert_eq!(std::fs::read_dir(dir.join("ingest")).unwrap().count(), 0);
    assert!(!dir.join("index.json.lock").exists());

    // docker: manifest.json with the tag, a config with the label, the layer's files.
    let docker_tar = out.path().join("docker.tar");
    let o = BuildOptions {
        output: Some(Output::Docker {
            dest: Some(docker_tar.clone()),
            names: vec!["kbx/test:1".to_owned()],
        }),
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("docker export");
    let docker = tar_files(&std::fs::read(&docker_tar).unwrap());
    let manifest = json(&docker["manifest.json"]);
    assert_eq!(manifest[0]["RepoTags"][0], "kbx/test:1");
    let config = json(&docker[manifest[0]["Config"].as_str().unwrap()]);
    assert_eq!(config["config"]["Labels"]["kbx.test"], "yes");
    let layer = &docker[manifest[0]["Layers"][0].as_str().unwrap()];
    let files = if layer.starts_with(&[0x1f, 0x8b]) {
        layer_files(layer)
    } else {
        tar_files(layer)
    };
    assert_eq!(files, want);
}

/// Several outputs of one solve (BuildKit v0.13's list of exporters): each exporter's files
/// come back on their own `FileSend` stream, named by `buildkit-attachable-exporter-id`, and
/// land at their own destination. `local` + `tar` (fsutil packets and a byte stream), `oci`
/// archive + `local`, and `docker,tar=false` (a layout directory written through the session
/// content store) + `tar`, each read back on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_outputs_in_one_build_each_reach_their_own_destination() {
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    assert!(c.capabilities().await.unwrap().multiple_exporters);
    let ctx = tempfile::tempdir().unwrap();
    scratch_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let want = scratch_files();

    // local + tar.
    let local = out.path().join("local");
    let tar_path = out.path().join("out.tar");
    let o = BuildOptions {
        output: Some(Output::Local {
            dest: local.clone(),
        }),
        extra_outputs: vec![
            Output::Tar {
                dest: Some(tar_path.clone()),
            }
            .into(),
        ],
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("local + tar");
    assert_eq!(snapshot(&local), snapshot(ctx.path()));
    assert_eq!(tar_files(&std::fs::read(&tar_path).unwrap()), want);

    // oci archive (named) + local: the image and the tree.
    let oci_tar = out.path().join("oci.tar");
    let local2 = out.path().join("local2");
    let o = BuildOptions {
        output: Some(Output::Oci {
            dest: Some(oci_tar.clone()),
            names: vec!["kbx/multi:1".to_owned()],
        }),
        extra_outputs: vec![
            Output::Local {
                dest: local2.clone(),
            }
            .into(),
        ],
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    let res = build(&c, &o).await.0.expect("oci + local");
    assert_eq!(snapshot(&local2), snapshot(ctx.path()));
    let layout = out.path().join("oci");
    std::fs::create_dir(&layout).unwrap();
    tar::Archive::new(std::fs::File::open(&oci_tar).unwrap())
        .unpack(&layout)
        .unwrap();
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    let top = &index["manifests"][0];
    assert_eq!(res.image_digest(), top["digest"].as_str());
    assert_eq!(
        top["annotations"]["io.containerd.image.name"],
        "docker.io/kbx/multi:1"
    );
    let images = image_manifests(&layout, top);
    assert_eq!(images.len(), 1);
    let layers = images[0].1["layers"].as_array().unwrap().clone();
    assert_eq!(
        layer_files(&blob(&layout, layers[0]["digest"].as_str().unwrap())),
        want
    );

    // docker with tar=false (a layout directory with Docker media types) + tar.
    let dir = out.path().join("docker-dir");
    let tar2 = out.path().join("out2.tar");
    let o = BuildOptions {
        output: Some(Output::DockerDir {
            dest: dir.clone(),
            names: vec!["kbx/multi:2".to_owned()],
        }),
        extra_outputs: vec![
            Output::Tar {
                dest: Some(tar2.clone()),
            }
            .into(),
        ],
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    let res = build(&c, &o).await.0.expect("docker,tar=false + tar");
    assert_eq!(tar_files(&std::fs::read(&tar2).unwrap()), want);
    assert_eq!(
        std::fs::read_to_string(dir.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index = json(&std::fs::read(dir.join("index.json")).unwrap());
    let named: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["io.containerd.image.name"] == "docker.io/kbx/multi:2")
        .collect();
    assert_eq!(named.len(), 1, "{index}");
    assert_eq!(
        named[0]["annotations"]["org.opencontainers.image.ref.name"],
        "2"
    );
    assert_eq!(res.image_digest(), named[0]["digest"].as_str());
    // Every blob the image refers to is there and matches its digest.
    let images = image_manifests(&dir, named[0]);
    assert_eq!(images.len(), 1);
    let (desc, manifest) = &images[0];
    assert_eq!(
        manifest["mediaType"]
            .as_str()
            .or(desc["mediaType"].as_str()),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );
    let config = json(&blob(&dir, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["Labels"]["kbx.test"], "yes");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layer_files(&blob(&dir, layers[0]["digest"].as_str().unwrap())),
        want
    );
    // As Buildx's layouts: an empty `ingest/`.
    assert_eq!(std::fs::read_dir(dir.join("ingest")).unwrap().count(), 0);

    // A docker layout given before an oci archive: the layout still names its own image (the
    // Docker manifest, whose blob is in the layout), the archive its OCI one.
    let dir2 = out.path().join("docker-dir2");
    let oci2 = out.path().join("oci2.tar");
    let o = BuildOptions {
        output: Some(Output::DockerDir {
            dest: dir2.clone(),
            names: vec![],
        }),
        extra_outputs: vec![
            Output::Oci {
                dest: Some(oci2.clone()),
                names: vec![],
            }
            .into(),
        ],
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("docker,tar=false + oci");
    let latest = latest_in(&dir2);
    let images = image_manifests(&dir2, &latest);
    assert_eq!(
        images[0].1["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(
        tar_files(&std::fs::read(&oci2).unwrap()).contains_key("index.json"),
        "the archive is there too"
    );
}

fn http_config(reg: &Registry) -> String {
    format!("[registry.\"{}\"]\n  http = true\n", reg.host())
}

/// What a tag of the registry names, read with every manifest type accepted: the index (or
/// manifest) and its digest, computed from the bytes.
fn pushed(reg: &Registry, repo: &str, tag: &str) -> (serde_json::Value, String) {
    let r = reg.get(
        &format!("/v2/{repo}/manifests/{tag}"),
        Some("application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let digest = sha256(&r.body);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    (r.json(), digest)
}

/// The index (or manifest) a tag names.
fn pushed_index(reg: &Registry, repo: &str, tag: &str) -> serde_json::Value {
    pushed(reg, repo, tag).0
}

fn registry_blob(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let r = reg.get(&format!("/v2/{repo}/blobs/{digest}"), None);
    assert_eq!(r.status, 200, "{digest}: {}", r.text());
    assert_eq!(sha256(&r.body), digest);
    r.body
}

fn attestation_manifests(index: &serde_json::Value) -> Vec<serde_json::Value> {
    index["manifests"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_platform_push_to_the_loopback_registry_without_qemu() {
    let reg = Registry::start();
    let Some(d) = Buildkitd::start_with_config(Some(&http_config(&reg))) else {
        return;
    };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nARG TARGETARCH\nCOPY ${TARGETARCH}.txt /arch.txt\n",
        0o644,
    );
    write(ctx.path(), "amd64.txt", b"built for amd64\n", 0o644);
    write(ctx.path(), "arm64.txt", b"built for arm64\n", 0o644);
    let name = format!("{}/app:multi", reg.host());
    let o = BuildOptions {
        platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        output: Some(Output::Image {
            names: vec![name],
            push: true,
        }),
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    let res = build(&c, &o).await.0.expect("multi-platform push");
    let (index, digest) = pushed(&reg, "app", "multi");
    assert_eq!(res.image_digest(), Some(digest.as_str()));
    let list = index["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{index}");
    for m in list {
        let arch = m["platform"]["architecture"].as_str().unwrap();
        let manifest = json(&registry_blob_manifest(&reg, m["digest"].as_str().unwrap()));
        let config = json(&registry_blob(
            &reg,
            "app",
            manifest["config"]["digest"].as_str().unwrap(),
        ));
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["os"], "linux");
        let layer = registry_blob(
            &reg,
            "app",
            manifest["layers"][0]["digest"].as_str().unwrap(),
        );
        assert_eq!(
            layer_files(&layer)["arch.txt"],
            format!("built for {arch}\n").into_bytes()
        );
    }
    let mut archs: Vec<&str> = list
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    archs.sort_unstable();
    assert_eq!(archs, ["amd64", "arm64"]);
}

fn registry_blob_manifest(reg: &Registry, digest: &str) -> Vec<u8> {
    let r = reg.get(
        &format!("/v2/app/manifests/{digest}"),
        Some("application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(sha256(&r.body), digest);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_attestations_follow_buildx_defaults_and_flags() {
    let reg = Registry::start();
    let Some(d) = Buildkitd::start_with_config(Some(&http_config(&reg))) else {
        return;
    };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    scratch_context(ctx.path());
    let push = |tag: &str| {
        Some(Output::Image {
            names: vec![format!("{}/app:{tag}", reg.host())],
            push: true,
        })
    };
    // buildx's default: provenance mode=min, attached to the pushed image.
    let o = BuildOptions {
        output: push("default"),
        ..opts(ctx.path())
    };
    build(&c, &o)
        .await
        .0
        .expect("push with the default provenance");
    let index = pushed_index(&reg, "app", "default");
    let att = attestation_manifests(&index);
    assert_eq!(att.len(), 1, "{index}");
    assert_eq!(att[0]["platform"]["architecture"], "unknown");
    let statement = |att: &serde_json::Value| {
        let m = json(&registry_blob_manifest(
            &reg,
            att["digest"].as_str().unwrap(),
        ));
        let layer = &m["layers"][0];
        assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
        assert_eq!(
            layer["annotations"]["in-toto.io/predicate-type"],
            "https://slsa.dev/provenance/v0.2"
        );
        json(&registry_blob(
            &reg,
            "app",
            layer["digest"].as_str().unwrap(),
        ))
    };
    let min = statement(&att[0]);
    assert_eq!(min["predicateType"], "https://slsa.dev/provenance/v0.2");
    assert!(
        min["predicate"]["buildConfig"].is_null(),
        "mode=min has no build config"
    );

    // --provenance=mode=max: the build config (LLB steps) is in the statement.
    let o = BuildOptions {
        output: push("max"),
        attests: kbx_buildkit::parse_attests(&[], Some("mode=max"), None).unwrap(),
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("push with mode=max");
    let index = pushed_index(&reg, "app", "max");
    let att = attestation_manifests(&index);
    assert_eq!(att.len(), 1, "{index}");
    let max = statement(&att[0]);
    assert!(
        max["predicate"]["buildConfig"].is_object(),
        "mode=max has the build config: {max}"
    );

    // --provenance=false: a plain image manifest, no index and no attestation.
    let o = BuildOptions {
        output: push("none"),
        attests: kbx_buildkit::parse_attests(&[], Some("false"), None).unwrap(),
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("push without provenance");
    let m = pushed_index(&reg, "app", "none");
    assert!(m["manifests"].is_null(), "a single manifest: {m}");
    assert!(m["config"].is_object());

    // Explicit attestations with the docker exporter are refused before the solve, as buildx.
    let o = BuildOptions {
        output: Some(Output::Docker {
            dest: Some(ctx.path().join("x.tar")),
            names: vec![],
        }),
        attests: kbx_buildkit::parse_attests(&[], Some("true"), None).unwrap(),
        ..opts(ctx.path())
    };
    let e = c
        .build(&o, |_| {})
        .await
        .expect_err("docker + attestations");
    assert!(e.to_string().contains("manifest lists"), "{e}");
}

/// Whether the plain progress shows the step whose name contains `needle` as `CACHED`.
fn step_cached(text: &str, needle: &str) -> bool {
    let Some(n) = text.lines().find_map(|l| {
        let (num, name) = l.split_once(' ')?;
        (num.starts_with('#') && name.contains(needle)).then(|| num.to_owned())
    }) else {
        return false;
    };
    text.lines().any(|l| l == format!("{n} CACHED"))
}

/// A `RUN` step that records a unique stamp: a cache hit gives back the first build's stamp.
const STAMP_DOCKERFILE: &[u8] = b"FROM base AS work\n\
RUN cat /proc/sys/kernel/random/uuid > /stamp\n\
FROM scratch\nCOPY --from=work /stamp /stamp\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_steps_on_an_oci_layout_base_with_cache_secret_and_ssh_mounts() {
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let keep = tempfile::tempdir().unwrap();
    let Some(layout) = busybox_layout(&c, keep.path()).await else {
        return;
    };
    // The base layout is a real OCI layout: the manifest's layer holds busybox.
    let images = image_manifests(&layout, &latest_in(&layout));
    let layer = blob(
        &layout,
        images[0].1["layers"][0]["digest"].as_str().unwrap(),
    );
    let files = layer_files(&layer);
    assert_eq!(
        files["bin/busybox"],
        std::fs::read(
            ["/bin/busybox", "/usr/bin/busybox"]
                .into_iter()
                .find(|p| Path::new(p).is_file())
                .unwrap()
        )
        .unwrap()
    );

    let ctx = tempfile::tempdir().unwrap();
    let secret_file = keep.path().join("token.txt");
    std::fs::write(&secret_file, b"s3cr3t-from-file").unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM base AS work\n\
          ARG ROUND\n\
          RUN --mount=type=cache,target=/cache,id=kbx-c1 \
              echo \"$ROUND\" >> /cache/log && wc -l < /cache/log > /count\n\
          RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen.txt\n\
          RUN --mount=type=ssh,id=deploy,required=true [ -S \"$SSH_AUTH_SOCK\" ] && \
              echo \"$SSH_AUTH_SOCK\" > /sock.txt\n\
          RUN ip -o link | wc -l > /links.txt\n\
          FROM scratch\nCOPY --from=work /count /seen.txt /sock.txt /links.txt /\n",
        0o644,
    );
    let agent_keys = tempfile::tempdir().unwrap();
    let key = agent_keys.path().join("id_ed25519");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-f"])
        .arg(&key)
        .status();
    let Ok(st) = keygen else {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "openssh-client is needed (CI=true, so this is a failure)"
        );
        eprintln!("SKIP: ssh-keygen not installed");
        return;
    };
    assert!(st.success());
    let out = tempfile::tempdir().unwrap();
    let mut o = BuildOptions {
        build_args: [("ROUND".to_owned(), "1".to_owned())].into(),
        named_contexts: vec![base_context(&layout)],
        network: Some("none".into()),
        secrets: vec![
            kbx_buildkit::Secret::parse(&format!("id=tok,src={}", secret_file.display())).unwrap(),
        ],
        ssh: vec![kbx_buildkit::SshAgent::parse(&format!("deploy={}", key.display())).unwrap()],
        output: Some(Output::Local {
            dest: out.path().join("1"),
        }),
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("RUN steps with mounts");
    let read = |run: &str, f: &str| std::fs::read_to_string(out.path().join(run).join(f)).unwrap();
    assert_eq!(read("1", "count").trim(), "1");
    assert_eq!(read("1", "seen.txt"), "s3cr3t-from-file");
    assert!(read("1", "sock.txt").trim().starts_with('/'));
    // RUN --network=none (via --network none): only the loopback interface.
    assert_eq!(read("1", "links.txt").trim(), "1");

    // Again with another ROUND, which reruns the step: the cache mount kept its content, so
    // two lines now.
    o.build_args.insert("ROUND".to_owned(), "2".to_owned());
    o.output = Some(Output::Local {
        dest: out.path().join("2"),
    });
    build(&c, &o).await.0.expect("rebuild");
    assert_eq!(read("2", "count").trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cache_export_then_import_on_a_fresh_daemon_shows_cached_steps() {
    let keep = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", STAMP_DOCKERFILE, 0o644);
    let cache = keep.path().join("cache");
    let out = keep.path().join("out");
    let layout;
    {
        let Some(d) = Buildkitd::start() else { return };
        let c = client(&d).await;
        let Some(l) = busybox_layout(&c, keep.path()).await else {
            return;
        };
        layout = l;
        let o = BuildOptions {
            named_contexts: vec![base_context(&layout)],
            cache_to: vec![
                CacheEntry::parse(&format!("type=local,dest={},mode=max", cache.display()))
                    .unwrap(),
            ],
            output: Some(Output::Local {
                dest: out.join("first"),
            }),
            ..opts(ctx.path())
        };
        let (r, _) = build(&c, &o).await;
        r.expect("build exporting a local cache");
    }
    // The cache directory is an OCI layout: index.json tags the cache index `latest`, and
    // every blob it reaches is there with the right digest.
    let latest = latest_in(&cache);
    let cache_index = json(&blob(&cache, latest["digest"].as_str().unwrap()));
    let layers = cache_index["manifests"].as_array().unwrap();
    assert!(!layers.is_empty(), "{cache_index}");
    for l in layers {
        blob(&cache, l["digest"].as_str().unwrap());
    }
    assert_eq!(std::fs::read_dir(cache.join("ingest")).unwrap().count(), 0);

    // A fresh daemon importing it: the RUN step is CACHED and its output is the first one's.
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let o = BuildOptions {
        named_contexts: vec![base_context(&layout)],
        cache_from: vec![
            CacheEntry::parse(&format!("type=local,src={}", cache.display())).unwrap(),
        ],
        output: Some(Output::Local {
            dest: out.join("second"),
        }),
        ..opts(ctx.path())
    };
    let (r, text) = build(&c, &o).await;
    r.expect("build importing the local cache");
    assert!(
        step_cached(&text, "RUN cat /proc/sys/kernel/random/uuid"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(out.join("second/stamp")).unwrap(),
        std::fs::read(out.join("first/stamp")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_registry_caches_round_trip_through_the_loopback_registry() {
    let reg = Registry::start();
    let config = http_config(&reg);
    let keep = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", STAMP_DOCKERFILE, 0o644);
    let out = keep.path().join("out");
    let image = format!("{}/stamp:1", reg.host());
    let cache_ref = format!("{}/cache:1", reg.host());
    let layout;
    {
        let Some(d) = Buildkitd::start_with_config(Some(&config)) else {
            return;
        };
        let c = client(&d).await;
        let Some(l) = busybox_layout(&c, keep.path()).await else {
            return;
        };
        layout = l;
        let o = BuildOptions {
            named_contexts: vec![base_context(&layout)],
            cache_to: vec![
                CacheEntry::parse("type=inline").unwrap(),
                CacheEntry::parse(&format!(
                    "type=registry,ref={cache_ref},mode=max,registry.insecure=true"
                ))
                .unwrap(),
            ],
            output: Some(Output::Image {
                names: vec![image.clone()],
                push: true,
            }),
            no_default_attestations: true,
            ..opts(ctx.path())
        };
        build(&c, &o)
            .await
            .0
            .expect("push with inline and registry caches");
    }
    // The image config carries the inline cache; the cache manifest is in the registry.
    let m = pushed_index(&reg, "stamp", "1");
    let config_blob = json(&registry_blob(
        &reg,
        "stamp",
        m["config"]["digest"].as_str().unwrap(),
    ));
    assert!(
        config_blob["moby.buildkit.cache.v0"].is_string(),
        "inline cache metadata in the config"
    );
    let cache_manifest = pushed_index(&reg, "cache", "1");
    assert!(!cache_manifest["manifests"].as_array().unwrap().is_empty());
    let first_stamp = {
        let layer = registry_blob(
            &reg,
            "stamp",
            m["layers"].as_array().unwrap().last().unwrap()["digest"]
                .as_str()
                .unwrap(),
        );
        layer_files(&layer)["stamp"].clone()
    };

    for (what, from) in [
        ("inline", format!("type=registry,ref={image}")),
        ("registry", format!("type=registry,ref={cache_ref}")),
    ] {
        // A fresh daemon for each source.
        let Some(d) = Buildkitd::start_with_config(Some(&config)) else {
            return;
        };
        let c = client(&d).await;
        let dest = out.join(what);
        let o = BuildOptions {
            named_contexts: vec![base_context(&layout)],
            cache_from: vec![CacheEntry::parse(&from).unwrap()],
            output: Some(Output::Local { dest: dest.clone() }),
            ..opts(ctx.path())
        };
        let (r, text) = build(&c, &o).await;
        r.unwrap_or_else(|e| panic!("build importing the {what} cache: {e}"));
        assert!(
            step_cached(&text, "RUN cat /proc/sys/kernel/random/uuid"),
            "{what}: {text}"
        );
        assert_eq!(
            std::fs::read(dest.join("stamp")).unwrap(),
            first_stamp,
            "{what}"
        );
    }
}

/// Unpacks the OCI layout tarball at `tar` into `dir` and returns its single image manifest
/// (descriptor, manifest).
fn unpacked_manifest(tar: &Path, dir: &Path) -> (serde_json::Value, serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    tar::Archive::new(std::fs::File::open(tar).unwrap())
        .unpack(dir)
        .unwrap();
    let index = json(&std::fs::read(dir.join("index.json")).unwrap());
    let mut images = image_manifests(dir, &index["manifests"][0]);
    assert_eq!(images.len(), 1);
    images.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_attributes_pass_through_and_cacheonly_exports_nothing() {
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    scratch_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let with = |spec: &str| {
        let e = kbx_buildkit::Export::parse(spec).unwrap();
        BuildOptions {
            output: Some(e.output),
            export_attrs: e.attrs,
            no_default_attestations: true,
            ..opts(ctx.path())
        }
    };

    // compression and annotations reach the oci exporter.
    let zstd = out.path().join("zstd.tar");
    let spec = format!(
        "type=oci,dest={},compression=zstd,force-compression=true,annotation.org.example=v",
        zstd.display()
    );
    build(&c, &with(&spec)).await.0.expect("zstd oci export");
    let (_, manifest) = unpacked_manifest(&zstd, &out.path().join("zstd"));
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(manifest["annotations"]["org.example"], "v");

    // oci-mediatypes=false gives Docker media types; the default, OCI ones.
    let docker_types = out.path().join("docker-types.tar");
    let spec = format!(
        "type=oci,dest={},oci-mediatypes=false",
        docker_types.display()
    );
    build(&c, &with(&spec))
        .await
        .0
        .expect("oci export, docker types");
    let (desc, _) = unpacked_manifest(&docker_types, &out.path().join("docker-types"));
    assert_eq!(
        desc["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let oci_types = out.path().join("oci-types.tar");
    let spec = format!("type=oci,dest={},oci-mediatypes=true", oci_types.display());
    build(&c, &with(&spec))
        .await
        .0
        .expect("oci export, oci types");
    let (desc, _) = unpacked_manifest(&oci_types, &out.path().join("oci-types"));
    assert_eq!(
        desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    // cacheonly: the build runs, nothing is exported.
    let before = std::fs::read_dir(out.path()).unwrap().count();
    let res = build(&c, &with("type=cacheonly"))
        .await
        .0
        .expect("cacheonly build");
    assert_eq!(res.image_digest(), None);
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), before);
}

/// A `RUN` step on the busybox base that records what the container sees: `/etc/hosts`, the
/// open-files limit and the size of `/dev/shm`.
const SEES_DOCKERFILE: &[u8] = b"FROM base AS work\n\
RUN cat /etc/hosts > /hosts.txt && ulimit -n > /nofile.txt && ulimit -Hn > /nofile-hard.txt && \
    df -k /dev/shm | tail -n 1 > /shm.txt\n\
FROM scratch\nCOPY --from=work /hosts.txt /nofile.txt /nofile-hard.txt /shm.txt /\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_host_ulimit_and_shm_size_reach_the_run_container() {
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let keep = tempfile::tempdir().unwrap();
    let Some(layout) = busybox_layout(&c, keep.path()).await else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", SEES_DOCKERFILE, 0o644);
    let out = tempfile::tempdir().unwrap();
    // The flag values go through kbx-opts' grammars, as `kbx build` sends them.
    let mut hosts: Vec<String> =
        kbx_opts::ExtraHost::parse_flag("db.internal:10.1.2.3,v6=[fd00::7]")
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
    hosts.extend(
        kbx_opts::ExtraHost::parse_flag("cache:10.9.9.9")
            .unwrap()
            .iter()
            .map(ToString::to_string),
    );
    let ulimits = kbx_opts::Ulimit::parse_all(&["nofile=1024:2048"]).unwrap();
    let o = BuildOptions {
        named_contexts: vec![base_context(&layout)],
        add_hosts: hosts,
        ulimits: ulimits.iter().map(ToString::to_string).collect(),
        shm_size: kbx_opts::parse_mem_bytes("--shm-size", "96m").unwrap(),
        output: Some(Output::Local {
            dest: out.path().join("set"),
        }),
        ..opts(ctx.path())
    };
    build(&c, &o)
        .await
        .0
        .expect("RUN with hosts, ulimit, shm-size");
    let read = |run: &str, f: &str| std::fs::read_to_string(out.path().join(run).join(f)).unwrap();
    let hosts = read("set", "hosts.txt");
    for line in ["10.1.2.3\tdb.internal", "fd00::7\tv6", "10.9.9.9\tcache"] {
        assert!(hosts.lines().any(|l| l == line), "{line:?} in:\n{hosts}");
    }
    assert_eq!(read("set", "nofile.txt").trim(), "1024");
    assert_eq!(read("set", "nofile-hard.txt").trim(), "2048");
    // df -k: the second column is the size in KiB.
    let shm = read("set", "shm.txt");
    assert_eq!(shm.split_whitespace().nth(1), Some("98304"), "{shm}");

    // Without the flags: none of the hosts, the daemon's limits and its 64 MiB /dev/shm.
    let o = BuildOptions {
        named_contexts: vec![base_context(&layout)],
        output: Some(Output::Local {
            dest: out.path().join("unset"),
        }),
        ..opts(ctx.path())
    };
    build(&c, &o).await.0.expect("RUN without the flags");
    assert!(!read("unset", "hosts.txt").contains("db.internal"));
    assert_ne!(read("unset", "nofile.txt").trim(), "1024");
    let shm = read("unset", "shm.txt");
    assert_eq!(shm.split_whitespace().nth(1), Some("65536"), "{shm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_filter_reruns_only_the_named_stage() {
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let keep = tempfile::tempdir().unwrap();
    let Some(layout) = busybox_layout(&c, keep.path()).await else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM base AS one\nRUN cat /proc/sys/kernel/random/uuid > /one\n\
          FROM base AS two\nRUN cat /proc/sys/kernel/random/uuid > /two\n\
          FROM scratch\nCOPY --from=one /one /\nCOPY --from=two /two /\n",
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let run = |dir: &str, filter: &[&str]| BuildOptions {
        named_contexts: vec![base_context(&layout)],
        no_cache_filter: filter.iter().map(|s| (*s).to_owned()).collect(),
        output: Some(Output::Local {
            dest: out.path().join(dir),
        }),
        ..opts(ctx.path())
    };
    build(&c, &run("1", &[])).await.0.expect("first build");
    let (r, text) = build(&c, &run("2", &["two"])).await;
    r.expect("build with --no-cache-filter two");
    let read = |dir: &str, f: &str| std::fs::read_to_string(out.path().join(dir).join(f)).unwrap();
    assert_eq!(
        read("1", "one"),
        read("2", "one"),
        "stage one came from the cache"
    );
    assert_ne!(read("1", "two"), read("2", "two"), "stage two ran again");
    assert!(step_cached(&text, "> /one"), "{text}");
    assert!(!step_cached(&text, "> /two"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_metadata_and_image_id_of_a_real_oci_export() {
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    scratch_context(ctx.path());
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("img.tar");
    let e = kbx_buildkit::Export::parse(&format!("type=oci,dest={}", tar.display())).unwrap();
    let mut export_attrs = e.attrs;
    export_attrs.extend(
        kbx_opts::annotation_attrs(&["org.example.plain=p", "manifest:org.example.typed=t"])
            .unwrap(),
    );
    let o = BuildOptions {
        output: Some(e.output),
        export_attrs,
        platforms: vec!["linux/amd64".into()],
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    let res = build(&c, &o).await.0.expect("oci export with annotations");
    let (desc, manifest) = unpacked_manifest(&tar, &out.path().join("img"));
    assert_eq!(manifest["annotations"]["org.example.plain"], "p");
    assert_eq!(manifest["annotations"]["org.example.typed"], "t");

    // The image ID is the config digest of the exported image.
    let config = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(res.image_id(), Some(config));
    assert_eq!(res.image_digest(), desc["digest"].as_str());

    // The metadata file: buildx's keys, the descriptor decoded, two-space indentation.
    let text = res.metadata("bk", "bk0");
    let md = json(text.as_bytes());
    let keys: Vec<&str> = md.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "buildx.build.ref",
            "containerimage.config.digest",
            "containerimage.descriptor",
            "containerimage.digest"
        ],
        "{text}"
    );
    assert_eq!(md["buildx.build.ref"], format!("bk/bk0/{}", res.build_ref));
    assert_eq!(md["containerimage.config.digest"], config);
    assert_eq!(md["containerimage.descriptor"]["digest"], desc["digest"]);
    assert_eq!(md["containerimage.descriptor"]["size"], desc["size"]);
    assert!(
        text.starts_with("{\n  \"buildx.build.ref\": \"bk/bk0/"),
        "{text}"
    );
    assert!(
        text.contains("\n  \"containerimage.descriptor\": {\n    \"mediaType\": "),
        "{text}"
    );
    assert!(!text.ends_with('\n'));

    // Per-platform annotations land on that platform's manifest of a multi-platform image.
    let tar2 = out.path().join("multi.tar");
    let e = kbx_buildkit::Export::parse(&format!("type=oci,dest={}", tar2.display())).unwrap();
    let mut export_attrs = e.attrs;
    export_attrs.extend(
        kbx_opts::annotation_attrs(&[
            "manifest[linux/amd64]:org.example.amd=a",
            "manifest[linux/arm64]:org.example.arm=b",
            "index:org.example.index=i",
        ])
        .unwrap(),
    );
    let o = BuildOptions {
        output: Some(e.output),
        export_attrs,
        platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        no_default_attestations: true,
        ..opts(ctx.path())
    };
    build(&c, &o)
        .await
        .0
        .expect("multi-platform oci export with annotations");
    let dir = out.path().join("multi");
    std::fs::create_dir_all(&dir).unwrap();
    tar::Archive::new(std::fs::File::open(&tar2).unwrap())
        .unpack(&dir)
        .unwrap();
    let index_desc = json(&std::fs::read(dir.join("index.json")).unwrap())["manifests"][0].clone();
    let index = json(&blob(&dir, index_desc["digest"].as_str().unwrap()));
    assert_eq!(index["annotations"]["org.example.index"], "i");
    for (desc, m) in image_manifests(&dir, &index_desc) {
        let (want, other) = match desc["platform"]["architecture"].as_str() {
            Some("amd64") => (("org.example.amd", "a"), "org.example.arm"),
            _ => (("org.example.arm", "b"), "org.example.amd"),
        };
        assert_eq!(m["annotations"][want.0], want.1, "{m}");
        assert!(m["annotations"][other].is_null(), "{m}");
    }

    // An image export names the image: `image.name` joins the keys.
    // With the build record's provenance, as buildx's default: `min` leaves out buildConfig
    // and metadata.
    let o = BuildOptions {
        output: Some(Output::Image {
            names: vec!["kbx.test/meta:1".into()],
            push: false,
        }),
        no_default_attestations: true,
        metadata_provenance: Some(kbx_buildkit::MetadataProvenance::Min),
        ..opts(ctx.path())
    };
    let res = build(&c, &o).await.0.expect("image export");
    let md = json(res.metadata("bk", "bk0").as_bytes());
    assert_eq!(md["image.name"], "kbx.test/meta:1");
    let provenance = &md["buildx.build.provenance"];
    assert_eq!(
        provenance["buildType"], "https://mobyproject.org/buildkit@v1",
        "{md}"
    );
    assert_eq!(
        provenance["invocation"]["parameters"]["frontend"],
        "dockerfile.v0"
    );
    assert!(provenance["buildConfig"].is_null() && provenance["metadata"].is_null());
    let max = BuildOptions {
        metadata_provenance: Some(kbx_buildkit::MetadataProvenance::Max),
        ..o
    };
    let res = build(&c, &max)
        .await
        .0
        .expect("image export, max provenance");
    let md = json(res.metadata("bk", "bk0").as_bytes());
    let provenance = &md["buildx.build.provenance"];
    assert!(
        provenance["buildConfig"]["llbDefinition"].is_array(),
        "{md}"
    );
    assert!(
        provenance["metadata"]["buildInvocationID"].is_string(),
        "{md}"
    );
    assert_eq!(md["containerimage.config.digest"], res.image_id().unwrap());
    assert!(md["containerimage.descriptor"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_network_host_is_an_entitlement_the_daemon_must_grant() {
    let dockerfile: &[u8] = b"FROM base\nRUN --network=host true\n";
    // A daemon that grants network.host: only a build that asks for it may use it.
    let Some(d) =
        Buildkitd::start_with_config(Some("insecure-entitlements = [\"network.host\"]\n"))
    else {
        return;
    };
    let c = client(&d).await;
    let keep = tempfile::tempdir().unwrap();
    let Some(layout) = busybox_layout(&c, keep.path()).await else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", dockerfile, 0o644);
    let without = BuildOptions {
        named_contexts: vec![base_context(&layout)],
        ..opts(ctx.path())
    };
    let err = build(&c, &without)
        .await
        .0
        .expect_err("RUN --network=host without --allow");
    assert!(err.to_string().contains("network.host"), "{err}");
    let allowed = kbx_opts::Entitlement::parse_flag("network.host").unwrap();
    let with = BuildOptions {
        entitlements: allowed.iter().map(ToString::to_string).collect(),
        ..without.clone()
    };
    build(&c, &with)
        .await
        .0
        .expect("RUN --network=host with --allow network.host");
    drop(c);
    drop(d);

    // A daemon that does not grant it refuses the request itself.
    let Some(d) = Buildkitd::start() else { return };
    let c = client(&d).await;
    let keep = tempfile::tempdir().unwrap();
    let Some(layout) = busybox_layout(&c, keep.path()).await else {
        return;
    };
    let with = BuildOptions {
        named_contexts: vec![base_context(&layout)],
        ..with
    };
    let err = build(&c, &with)
        .await
        .0
        .expect_err("a daemon without the entitlement");
    assert!(err.to_string().contains("network.host"), "{err}");
}

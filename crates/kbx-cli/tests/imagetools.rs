//! `kbx imagetools create|inspect` against a private `docker-registry` on 127.0.0.1. The
//! oracle is the registry's HTTP API read with plain HTTP/1.0 requests.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

// The private-registry helper shared with kbx-registry's tests.
#[path = "../../kbx-registry/tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use common::{Registry, sha256};

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `kbx ARGS` with an empty home and Docker config (or the given config.json).
fn kbx(args: &[&str], docker_config: Option<&str>, stdin: Option<&str>) -> Output {
    let home = tempfile::tempdir().unwrap();
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    if let Some(c) = docker_config {
        std::fs::write(docker.join("config.json"), c).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_kbx"))
        .args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kbx runs");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let o = child.wait_with_output().unwrap();
    eprintln!(
        "$ kbx {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn create_then_inspect_and_raw() {
    let reg = Registry::start();
    let h = reg.host();
    let (amd, _) = reg.push_image("kbx/cli", "amd64", "amd64", None, false);
    let (arm, _) = reg.push_image("kbx/cli", "arm64", "arm64", None, false);
    let o = kbx(
        &[
            "imagetools",
            "create",
            "-t",
            &format!("{h}/kbx/cli:multi"),
            "-t",
            &format!("{h}/kbx/other:v1"),
            &format!("{h}/kbx/cli:amd64"),
            &format!("{h}/kbx/cli:arm64"),
        ],
        None,
        None,
    );
    ok(&o);
    let got = reg.get("/v2/kbx/cli/manifests/multi", Some(ACCEPT));
    assert_eq!(got.status, 200, "{}", got.text());
    let digest = sha256(&got.body);
    assert_eq!(platforms(&got.json()), ["linux/amd64", "linux/arm64"]);
    let other = reg.get("/v2/kbx/other/manifests/v1", Some(ACCEPT));
    assert_eq!(sha256(&other.body), digest);

    let out = ok(&kbx(
        &["imagetools", "inspect", &format!("{h}/kbx/cli:multi")],
        None,
        None,
    ));
    assert!(out.starts_with(&format!(
        "Name:      {h}/kbx/cli:multi\nMediaType: application/vnd.docker.distribution.manifest.list.v2+json\nDigest:    {digest}\n"
    )), "{out}");
    assert!(
        out.contains(&format!("  Name:      {h}/kbx/cli:multi@{amd}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("  Name:      {h}/kbx/cli:multi@{arm}\n")),
        "{out}"
    );
    assert!(out.contains("  Platform:  linux/arm64\n"), "{out}");

    let raw = kbx(
        &[
            "imagetools",
            "inspect",
            "--raw",
            &format!("{h}/kbx/cli:multi"),
        ],
        None,
        None,
    );
    ok(&raw);
    // Exactly the registry's bytes, no newline added (as buildx, to keep the digest).
    assert_eq!(raw.stdout, got.body);
}

#[test]
fn dry_run_descriptor_files_append_and_annotations() {
    let reg = Registry::start();
    let h = reg.host();
    let (amd, amd_bytes) = reg.push_image("kbx/dr", "amd64", "amd64", None, false);
    reg.push_image("kbx/dr", "arm64", "arm64", None, false);
    reg.push_image("kbx/dr", "s390x", "s390x", None, true);
    // Dry run: JSON on stdout, nothing pushed.
    let out = ok(&kbx(
        &[
            "imagetools",
            "create",
            "--dry-run",
            &format!("{h}/kbx/dr:amd64"),
            &format!("{h}/kbx/dr:arm64"),
        ],
        None,
        None,
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(platforms(&v), ["linux/amd64", "linux/arm64"]);
    assert_eq!(
        reg.get("/v2/kbx/dr/tags/list", None).json()["tags"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // A descriptor JSON on stdin (in the first tag's repository), then --append to that tag.
    let desc = format!(
        r#"{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{amd}","size":{}}}"#,
        amd_bytes.len()
    );
    ok(&kbx(
        &[
            "imagetools",
            "create",
            "-t",
            &format!("{h}/kbx/dr:multi"),
            "-f",
            "-",
        ],
        None,
        Some(&desc),
    ));
    let first = reg.get("/v2/kbx/dr/manifests/multi", Some(ACCEPT)).json();
    assert_eq!(platforms(&first), ["linux/amd64"]);
    ok(&kbx(
        &[
            "imagetools",
            "create",
            "--append",
            "--annotation",
            "index:org.opencontainers.image.title=kbx",
            "-t",
            &format!("{h}/kbx/dr:multi"),
            &format!("{h}/kbx/dr:s390x"),
        ],
        None,
        None,
    ));
    let got = reg.get("/v2/kbx/dr/manifests/multi", Some(ACCEPT));
    assert_eq!(
        got.header("Content-Type"),
        Some("application/vnd.oci.image.index.v1+json")
    );
    let v = got.json();
    assert_eq!(platforms(&v), ["linux/amd64", "linux/s390x"]);
    assert_eq!(v["annotations"]["org.opencontainers.image.title"], "kbx");
}

#[test]
fn input_errors_use_buildx_texts() {
    let o = kbx(
        &["imagetools", "create", "-t", "localhost:1/a:b"],
        None,
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ERROR: no sources specified"));
    let o = kbx(&["imagetools", "create", "localhost:1/a:b"], None, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("ERROR: can't push with no tags specified, please set --tag or --dry-run")
    );
    let o = kbx(&["imagetools", "inspect", "Bad/Name"], None, None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be lowercase"));
}

#[test]
fn credentials_come_from_the_docker_config() {
    let reg = Registry::start_with_htpasswd("kbx", "pw");
    let h = reg.host();
    reg.push_image("kbx/auth", "amd64", "amd64", None, false);
    let config = |user: &str, pw: &str| {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        format!(r#"{{"auths":{{"{h}":{{"auth":"{auth}"}}}}}}"#)
    };
    let args = [
        "imagetools".to_owned(),
        "create".to_owned(),
        "-t".to_owned(),
        format!("{h}/kbx/auth:multi"),
        format!("{h}/kbx/auth:amd64"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bad = kbx(&args, Some(&config("kbx", "wrong")), None);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains(&format!(
            "registry {h} refused access with the credentials sent"
        )),
        "{err}"
    );
    assert!(
        err.contains("hint: log in with `docker login REGISTRY`"),
        "{err}"
    );
    assert_eq!(
        reg.get("/v2/kbx/auth/manifests/multi", Some(ACCEPT)).status,
        404
    );

    ok(&kbx(&args, Some(&config("kbx", "pw")), None));
    assert_eq!(
        reg.get("/v2/kbx/auth/manifests/multi", Some(ACCEPT)).status,
        200
    );
}

#[test]
fn unreachable_registry_has_a_hint() {
    let port = common::free_port();
    let o = kbx(
        &["imagetools", "inspect", &format!("127.0.0.1:{port}/a:b")],
        None,
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("ERROR: registry 127.0.0.1:{port} is unreachable")),
        "{err}"
    );
    assert!(err.contains("hint: check the registry's address"), "{err}");
}

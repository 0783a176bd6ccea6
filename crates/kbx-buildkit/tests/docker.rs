//! Builds through the BuildKit embedded in a private Docker daemon (Debian's docker.io).
//!
//! Each test starts its own dockerd (see `support::Dockerd`). Oracles are the source files
//! themselves, the docker CLI, and the daemon's own progress counters — never our output alone.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kbx_buildkit::{BuildOptions, Client, Error, Output, PlainRenderer, ProgressEvent};
use support::{Dockerd, snapshot, write};

async fn client(d: &Dockerd) -> Client {
    Client::connect(&d.addr())
        .await
        .expect("connect to dockerd")
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

/// A tree with nested dirs, symlinks (relative, absolute, dangling), empty files, an empty
/// directory and assorted modes.
fn sample_tree(root: &Path) {
    write(root, "a.txt", b"alpha\n", 0o644);
    write(root, "empty", b"", 0o600);
    write(root, "bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write(
        root,
        "deep/er/and/deeper/leaf.bin",
        &[0u8, 1, 2, 255, 254],
        0o640,
    );
    write(root, "deep/er/empty-too", b"", 0o644);
    write(root, "a-b/x", b"dash sorts before slash", 0o644);
    write(root, "a/b", b"in a/", 0o644);
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("../a.txt", root.join("deep/link-up")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("link-abs")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(root, "deep/big.dat", &big, 0o644);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_and_capabilities() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;

    let workers = c.list_workers().await.expect("ListWorkers");
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].id, "moby");
    assert!(
        workers[0].platforms.iter().any(|p| p == "linux/amd64"),
        "{workers:?}"
    );

    let info = c.info().await.expect("Info with fallback");
    let (ok, server_version, err) = d.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(ok, "{err}");
    assert_eq!(info.docker_version.as_deref(), Some(server_version.trim()));
    assert!(!info.has_info_api, "Docker 20.10 has no Control.Info");
    assert_eq!(info.buildkit_version.as_deref(), Some("v0.8"));

    c.disk_usage().await.expect("DiskUsage");

    let caps = c.capabilities().await.expect("capabilities");
    assert!(caps.supports_exporter("moby") && caps.supports_exporter("local"));
    assert!(!caps.supports_exporter("image"));
    assert!(!caps.multiple_exporters);

    // Asking for an exporter the daemon lacks fails before the solve, with a clear message.
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", b"FROM scratch\n", 0o644);
    let opts = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::Image {
            names: vec!["x".into()],
            push: false,
        }),
        ..BuildOptions::default()
    };
    let err = c
        .build(&opts, |_| {})
        .await
        .expect_err("image exporter on Docker");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("exporter \"image\""), "{err}");

    // Named contexts: Docker 20.10's Dockerfile frontend would ignore `context:<name>` and
    // pull `FROM name` instead, so the build is refused before the solve.
    assert!(!caps.named_contexts, "Docker 20.10 has frontend 1.2");
    let lib = tempfile::tempdir().unwrap();
    let named = BuildOptions {
        output: None,
        named_contexts: vec![
            kbx_buildkit::NamedContext::parse(&format!("lib={}", lib.path().display())).unwrap(),
        ],
        ..opts.clone()
    };
    let err = c
        .build(&named, |_| {})
        .await
        .expect_err("named contexts on Docker 20.10");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("--build-context"), "{err}");
    assert!(err.to_string().contains("Docker 20.10"), "{err}");

    // Same for a cache export type Docker 20.10 lacks; inline is fine.
    let opts = BuildOptions {
        output: Some(Output::Moby {
            names: vec!["kbx-cache:test".into()],
        }),
        cache_to: vec![kbx_buildkit::CacheEntry::parse("type=registry,ref=r/c").unwrap()],
        ..opts
    };
    let err = c
        .build(&opts, |_| {})
        .await
        .expect_err("registry cache on Docker");
    assert!(
        err.to_string().contains("cache export type \"registry\""),
        "{err}"
    );
    let opts = BuildOptions {
        cache_to: vec![kbx_buildkit::CacheEntry::parse("type=inline").unwrap()],
        ..opts
    };
    write(ctx.path(), "f.txt", b"cached", 0o644);
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY f.txt /\n",
        0o644,
    );
    c.build(&opts, |_| {}).await.expect("inline cache export");

    // The build left cache records; pruning everything removes them.
    let before = c.disk_usage().await.expect("DiskUsage");
    assert!(!before.is_empty(), "no cache records after a build");
    let removed = c.prune(true, None).await.expect("Prune");
    assert!(!removed.is_empty());
    let after = c.disk_usage().await.expect("DiskUsage");
    for r in &removed {
        assert!(after.iter().all(|a| a.id != r.id), "{} still there", r.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_tree_local_export_matches_source_bytes_and_modes() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    sample_tree(&ctx.path().join("src"));
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY src/ /\n",
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("result");
    let opts = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::Local { dest: dest.clone() }),
        ..BuildOptions::default()
    };
    let (r, text) = build(&c, &opts).await;
    r.expect("build");
    assert!(text.contains("COPY src/ /"), "{text}");
    let want = snapshot(&ctx.path().join("src"));
    let got = snapshot(&dest);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "entry {} differs", w.0);
    }

    // Change one file: the rebuild sees the new bytes (real mtimes, incremental transfer).
    std::thread::sleep(Duration::from_millis(20));
    write(&ctx.path().join("src"), "a.txt", b"changed\n", 0o644);
    let (r, _) = build(&c, &opts).await;
    r.expect("rebuild");
    assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"changed\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_export_extracts_to_the_source_tree() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    sample_tree(&ctx.path().join("src"));
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY src/ /\n",
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("out.tar");
    let opts = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::Tar {
            dest: Some(tar.clone()),
        }),
        ..BuildOptions::default()
    };
    let (r, _) = build(&c, &opts).await;
    r.expect("build");
    let x = out.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xpf")
        .arg(&tar)
        .arg("-C")
        .arg(&x)
        .status()
        .expect("run tar");
    assert!(st.success());
    assert_eq!(snapshot(&x), snapshot(&ctx.path().join("src")));
}

/// Docker 20.10's BuildKit v0.8 takes one exporter: several outputs are refused before the
/// solve with buildx's text (nothing is built, nothing written), a single one still goes
/// through the old exporter fields, and `cacheonly` (no exporter) builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_outputs_are_refused_before_the_solve_by_buildkit_v0_8() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    assert!(!c.capabilities().await.unwrap().multiple_exporters);
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", b"FROM scratch\nCOPY a /\n", 0o644);
    write(ctx.path(), "a", b"alpha\n", 0o644);
    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("out.tar");
    let local = out.path().join("local");
    let opts = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::Tar {
            dest: Some(tar.clone()),
        }),
        extra_outputs: vec![Output::CacheOnly.into()],
        ..BuildOptions::default()
    };
    let (r, text) = build(&c, &opts).await;
    let e = r.expect_err("refused");
    assert!(
        matches!(e, Error::MultipleOutputsUnsupported { .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "multiple outputs currently unsupported by the current BuildKit daemon, please upgrade to version v0.13+ or use a single output"
    );
    assert!(text.is_empty(), "nothing was built: {text}");
    assert!(!tar.exists() && !local.exists());

    let single = BuildOptions {
        extra_outputs: vec![],
        output: Some(Output::Local {
            dest: local.clone(),
        }),
        ..opts
    };
    build(&c, &single).await.0.expect("one output");
    assert_eq!(std::fs::read(local.join("a")).unwrap(), b"alpha\n");

    // `cacheonly` alone sends no exporter, so the old daemon takes it: the build runs and
    // only its cache is kept.
    let cacheonly = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::CacheOnly),
        no_cache: true,
        ..BuildOptions::default()
    };
    let (r, text) = build(&c, &cacheonly).await;
    r.expect("cacheonly on BuildKit v0.8");
    assert!(text.contains(" COPY a /\n"), "{text}");
    assert!(!text.contains("exporting"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_outside_context_build_args_and_target() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "a.txt", b"from a", 0o644);
    write(ctx.path(), "b.txt", b"from b", 0o644);
    write(ctx.path(), "other.txt", b"other", 0o644);
    write(ctx.path(), "never.txt", b"never", 0o644);
    let elsewhere = tempfile::tempdir().unwrap();
    let df = elsewhere.path().join("build.Dockerfile");
    std::fs::write(
        &df,
        "FROM scratch AS base\nARG NAME=a\nCOPY ${NAME}.txt /picked.txt\n\
         FROM base AS second\nCOPY other.txt /\n\
         FROM scratch AS final\nCOPY never.txt /\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        context: ctx.path().into(),
        dockerfile: Some(df),
        target: Some("second".into()),
        build_args: BTreeMap::from([("NAME".to_owned(), "b".to_owned())]),
        output: Some(Output::Local {
            dest: out.path().join("o"),
        }),
        ..BuildOptions::default()
    };
    let (r, _) = build(&c, &opts).await;
    r.expect("build");
    let o = out.path().join("o");
    assert_eq!(std::fs::read(o.join("picked.txt")).unwrap(), b"from b");
    assert_eq!(std::fs::read(o.join("other.txt")).unwrap(), b"other");
    assert!(!o.join("never.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerignore_excludes_are_not_sent() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    let p = ctx.path();
    write(p, "keep.txt", b"keep", 0o644);
    write(p, "logs/a.log", b"log", 0o644);
    write(p, "src/deep/b.log", b"log", 0o644);
    write(p, "src/deep/c.rs", b"code", 0o644);
    write(p, "secret/private.key", b"private", 0o600);
    write(p, "secret/public.txt", b"public", 0o644);
    // 8 MB that must never cross the wire.
    write(p, "build/huge.bin", &vec![7u8; 8 << 20], 0o644);
    write(p, "build/keep/k.txt", b"k", 0o644);
    write(
        p,
        ".dockerignore",
        b"**/*.log\nsecret\n!secret/public.txt\nbuild/**\n!build/keep\n",
        0o644,
    );
    write(p, "Dockerfile", b"FROM scratch\nCOPY . /ctx/\n", 0o644);
    let out = tempfile::tempdir().unwrap();
    let mut transferred = 0i64;
    let opts = BuildOptions {
        context: p.into(),
        output: Some(Output::Local {
            dest: out.path().join("o"),
        }),
        ..BuildOptions::default()
    };
    c.build(&opts, |ev| {
        if let ProgressEvent::Status { id, current, .. } = ev
            && id.starts_with("transferring context")
        {
            transferred = transferred.max(*current);
        }
    })
    .await
    .expect("build");
    let o = out.path().join("o/ctx");
    for present in [
        "keep.txt",
        "src/deep/c.rs",
        "secret/public.txt",
        "build/keep/k.txt",
        "Dockerfile",
        ".dockerignore",
    ] {
        assert!(o.join(present).exists(), "{present} missing");
    }
    for absent in [
        "logs/a.log",
        "src/deep/b.log",
        "secret/private.key",
        "build/huge.bin",
    ] {
        assert!(!o.join(absent).exists(), "{absent} was copied");
    }
    // The daemon's own byte counter: the 8 MB file was never sent.
    assert!(transferred > 0, "no transfer status seen");
    assert!(transferred < 1 << 20, "{transferred} bytes transferred");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_error_and_failing_step_report_line_vertex_and_logs() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", b"FROM scratch\nFOO bar\n", 0o644);
    let opts = BuildOptions {
        context: ctx.path().into(),
        ..BuildOptions::default()
    };
    let (r, _) = build(&c, &opts).await;
    let err = r.expect_err("syntax error");
    let text = err.to_string();
    assert!(matches!(err, Error::Solve { .. }), "{err:?}");
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("unknown instruction"), "{text}");

    let base = d.base_image();
    write(
        ctx.path(),
        "Dockerfile",
        format!("FROM {base}\nRUN echo hello-from-step && echo second-line && false\n").as_bytes(),
        0o644,
    );
    let opts = BuildOptions {
        context: ctx.path().into(),
        network: Some("none".into()),
        ..BuildOptions::default()
    };
    let (r, plain) = build(&c, &opts).await;
    let err = r.expect_err("failing step");
    match &err {
        Error::Solve {
            message,
            vertex,
            logs,
            ..
        } => {
            assert!(message.contains("exit code: 1"), "{message}");
            let v = vertex.as_deref().expect("failing vertex");
            assert!(v.contains("RUN echo hello-from-step"), "{v}");
            assert_eq!(logs, &["hello-from-step", "second-line"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(plain.contains("ERROR: executor failed running"), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moby_export_shows_up_in_docker_images_and_no_cache_reruns() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "hello.txt", b"hello", 0o644);
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY hello.txt /\nLABEL from=dockerfile\n",
        0o644,
    );
    let opts = BuildOptions {
        context: ctx.path().into(),
        labels: BTreeMap::from([("org.example.by".to_owned(), "kbx".to_owned())]),
        output: Some(Output::Moby {
            names: vec!["kbx-test:built".into()],
        }),
        ..BuildOptions::default()
    };
    let (r, _) = build(&c, &opts).await;
    let res = r.expect("build");
    let digest = res
        .image_digest()
        .expect("containerimage.digest")
        .to_owned();
    let (ok, id, err) = d.docker(&["image", "inspect", "--format", "{{.Id}}", "kbx-test:built"]);
    assert!(ok, "{err}");
    assert_eq!(id.trim(), digest);
    let (ok, labels, _) = d.docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"org.example.by\"}} {{index .Config.Labels \"from\"}}",
        "kbx-test:built",
    ]);
    assert!(ok);
    assert_eq!(labels.trim(), "kbx dockerfile");
    let (ok, list, _) = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(ok);
    assert!(list.lines().any(|l| l == "kbx-test:built"), "{list}");
    // Same build again: the COPY comes from the cache; with no-cache it runs again.
    let cached = |opts: BuildOptions| {
        let c = c.clone();
        async move {
            let mut n = 0;
            c.build(&opts, |ev| {
                if let ProgressEvent::Cached { name, .. } = ev
                    && name.contains("COPY hello.txt")
                {
                    n += 1;
                }
            })
            .await
            .expect("rebuild");
            n
        }
    };
    assert_eq!(cached(opts.clone()).await, 1);
    assert_eq!(
        cached(BuildOptions {
            no_cache: true,
            ..opts
        })
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_builds_in_parallel_on_one_connection() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let mk = |content: &[u8]| {
        let ctx = tempfile::tempdir().unwrap();
        write(ctx.path(), "f.txt", content, 0o644);
        write(
            ctx.path(),
            "Dockerfile",
            b"FROM scratch\nCOPY f.txt /\n",
            0o644,
        );
        ctx
    };
    let (c1, c2) = (mk(b"one"), mk(b"two"));
    let out = tempfile::tempdir().unwrap();
    let o1 = BuildOptions {
        context: c1.path().into(),
        output: Some(Output::Local {
            dest: out.path().join("1"),
        }),
        ..BuildOptions::default()
    };
    let o2 = BuildOptions {
        context: c2.path().into(),
        output: Some(Output::Local {
            dest: out.path().join("2"),
        }),
        ..BuildOptions::default()
    };
    // The first build opens its session through Docker's `/session` hijack (the default on
    // Docker), the second tunnels it through `Control.Session` on the same connection.
    let c2c = c.clone().with_docker_session_route(false);
    let (r1, r2) = tokio::join!(c.build(&o1, |_| {}), c2c.build(&o2, |_| {}));
    r1.expect("build 1");
    r2.expect("build 2");
    assert_eq!(std::fs::read(out.path().join("1/f.txt")).unwrap(), b"one");
    assert_eq!(std::fs::read(out.path().join("2/f.txt")).unwrap(), b"two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_process_stdio_transport() {
    let Some(d) = Dockerd::start() else { return };
    if std::process::Command::new("socat")
        .arg("-V")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "socat missing (CI=true)"
        );
        eprintln!("SKIP: socat not installed");
        return;
    }
    // socat plays `buildctl dial-stdio`: stdin/stdout bridged to the Docker socket; the /grpc
    // upgrade then runs over the process' pipes.
    let sock = d.sock.display().to_string();
    let channel = kbx_buildkit::transport::connect_with("socat", move || {
        let args = vec!["STDIO".to_owned(), format!("UNIX-CONNECT:{sock}")];
        async move {
            let io = kbx_buildkit::transport::ProcessIo::spawn("socat", &args)?;
            kbx_buildkit::transport::docker_upgrade(io, "/grpc", &[])
                .await
                .map_err(std::io::Error::other)
        }
    })
    .await
    .expect("channel over a process");
    let c = Client::new(channel.clone(), kbx_buildkit::Backend::Docker);
    let workers = c.list_workers().await.expect("ListWorkers over stdio");
    assert_eq!(workers[0].id, "moby");
    // Taken for a plain buildkitd (as a pod's `buildctl dial-stdio` is), the daemon is still
    // recognised as Docker's embedded BuildKit by its worker: no image exporter, and an image
    // push is refused before anything is sent.
    let as_buildkitd = Client::new(channel, kbx_buildkit::Backend::Buildkitd);
    let caps = as_buildkitd.capabilities().await.expect("capabilities");
    assert_eq!(caps.backend, kbx_buildkit::Backend::Docker);
    assert!(!caps.supports_exporter("image") && caps.supports_exporter("local"));
    let empty = tempfile::tempdir().unwrap();
    write(empty.path(), "Dockerfile", b"FROM scratch\n", 0o644);
    let push = BuildOptions {
        context: empty.path().into(),
        output: Some(Output::Image {
            names: vec!["127.0.0.1:1/x:1".into()],
            push: true,
        }),
        ..BuildOptions::default()
    };
    let err = as_buildkitd
        .build(&push, |_| {})
        .await
        .expect_err("no image exporter");
    assert!(
        err.to_string()
            .contains("exporter \"image\" is not supported by Docker's embedded BuildKit"),
        "{err}"
    );
    // A whole build (session tunnel included) over the pipes.
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "f.txt", b"via pipes", 0o644);
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY f.txt /\n",
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::Local {
            dest: out.path().join("o"),
        }),
        ..BuildOptions::default()
    };
    c.build(&opts, |_| {}).await.expect("build over stdio");
    assert_eq!(
        std::fs::read(out.path().join("o/f.txt")).unwrap(),
        b"via pipes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_killed_mid_build_gives_an_error_not_a_hang() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let base = d.base_image();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        format!("FROM {base}\nRUN echo started && sleep 20\n").as_bytes(),
        0o644,
    );
    let opts = BuildOptions {
        context: ctx.path().into(),
        network: Some("none".into()),
        no_cache: true,
        ..BuildOptions::default()
    };
    let d = Arc::new(Mutex::new(d));
    let killer = Arc::clone(&d);
    let fut = c.build(&opts, move |ev| {
        if let ProgressEvent::Log { data, .. } = ev
            && String::from_utf8_lossy(data).contains("started")
        {
            killer.lock().unwrap().kill();
        }
    });
    let r = tokio::time::timeout(Duration::from_secs(90), fut)
        .await
        .expect("the build must end once the daemon is gone");
    let err = r.expect_err("daemon killed");
    eprintln!("error after kill: {err}");
    assert!(
        matches!(err, Error::Solve { .. } | Error::Rpc { .. }),
        "{err:?}"
    );
}

/// Peak resident memory of this process (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Compares two files in 1 MiB pieces (never holding either whole).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na]).unwrap();
            if n == 0 {
                return false;
            }
            nb += n;
        }
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_file_and_many_small_files_round_trip_with_flat_memory() {
    use std::io::Write as _;
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    let src = ctx.path().join("src");
    // 200 MB written in pieces, with position-dependent bytes.
    std::fs::create_dir_all(&src).unwrap();
    let mut f = std::fs::File::create(src.join("big.bin")).unwrap();
    let mut piece = vec![0u8; 1 << 20];
    for i in 0..200u32 {
        for (j, b) in piece.iter_mut().enumerate() {
            *b = ((j as u32).wrapping_mul(31) ^ i) as u8;
        }
        f.write_all(&piece).unwrap();
    }
    drop(f);
    for i in 0..5000u32 {
        let dir = format!("many/{:02}", i % 50);
        write(
            &src,
            &format!("{dir}/f{i:04}.txt"),
            format!("file {i}\n").as_bytes(),
            0o644,
        );
    }
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY src/ /\n",
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("o");
    let opts = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::Local { dest: dest.clone() }),
        ..BuildOptions::default()
    };
    let before = peak_rss();
    c.build(&opts, |_| {}).await.expect("build");
    let after = peak_rss();
    assert!(same_file(&src.join("big.bin"), &dest.join("big.bin")));
    let (want, got) = (snapshot(&src.join("many")), snapshot(&dest.join("many")));
    assert_eq!(got.len(), 5050);
    assert_eq!(got, want);
    // Streaming: 200 MB went out and came back without the process growing by anything close.
    assert!(
        after.saturating_sub(before) < 64 << 20,
        "peak RSS grew from {before} to {after}"
    );
}

/// A byte stream whose writes are throttled to `rate` bytes per second.
struct Throttled<S> {
    inner: S,
    rate: u64,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Throttled<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Throttled<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(s) = this.sleep.as_mut() {
            std::task::ready!(std::future::Future::poll(s.as_mut(), cx));
            this.sleep = None;
        }
        let n = buf.len().min(16 * 1024);
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, &buf[..n]);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            let wait = Duration::from_micros(*n as u64 * 1_000_000 / this.rate);
            this.sleep = Some(Box::pin(tokio::time::sleep(wait)));
        }
        r
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_outlives_a_slow_upload() {
    let Some(d) = Dockerd::start() else { return };
    // Docker 20.10 health-checks the session every second and drops it after one check left
    // unanswered for 10 s: a 24 MB upload at 2 MB/s (12 s) only survives if checks are
    // answered while the data streams.
    let sock = d.sock.clone();
    let channel = kbx_buildkit::transport::connect_with("throttled", move || {
        let sock = sock.clone();
        async move {
            let s = tokio::net::UnixStream::connect(&sock).await?;
            let t = Throttled {
                inner: s,
                rate: 2 << 20,
                sleep: None,
            };
            kbx_buildkit::transport::docker_upgrade(t, "/grpc", &[])
                .await
                .map_err(std::io::Error::other)
        }
    })
    .await
    .expect("throttled channel");
    let c = Client::new(channel, kbx_buildkit::Backend::Docker);
    let ctx = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..24u32 << 20).map(|i| (i % 253) as u8).collect();
    write(ctx.path(), "slow.bin", &data, 0o644);
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY slow.bin /\n",
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::Tar {
            dest: Some(out.path().join("o.tar")),
        }),
        ..BuildOptions::default()
    };
    let started = std::time::Instant::now();
    c.build(&opts, |_| {}).await.expect("slow build");
    let took = started.elapsed();
    // Not a timing assertion on our speed: it checks the throttle really made the upload
    // outlast Docker's 10 s health-check timeout, which is what this test is about.
    assert!(took > Duration::from_secs(10), "upload took only {took:?}");
    let size = std::fs::metadata(out.path().join("o.tar")).unwrap().len();
    assert!(size > 24 << 20, "tar of {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_add_hosts_reach_run_steps_and_unknown_secrets_fail() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let base = d.base_image();
    let ctx = tempfile::tempdir().unwrap();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("token.txt");
    std::fs::write(&secret_file, b"s3cr3t-from-file").unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        format!(
            "FROM {base} AS work\n\
             RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen.txt && \
             ls /run/secrets > /listing.txt && cat /etc/hosts > /hosts.txt\n\
             FROM scratch\nCOPY --from=work /seen.txt /listing.txt /hosts.txt /\n"
        )
        .as_bytes(),
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        context: ctx.path().into(),
        network: Some("none".into()),
        secrets: vec![
            kbx_buildkit::Secret::parse(&format!("id=tok,src={}", secret_file.display())).unwrap(),
        ],
        credentials: Some(kbx_buildkit::DockerCredentials::default()),
        add_hosts: vec!["kbx-host.test:10.1.2.3".into()],
        output: Some(Output::Local {
            dest: out.path().join("o"),
        }),
        ..BuildOptions::default()
    };
    let (r, _) = build(&c, &opts).await;
    r.expect("build with a secret");
    assert_eq!(
        std::fs::read(out.path().join("o/seen.txt")).unwrap(),
        b"s3cr3t-from-file"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("o/listing.txt")).unwrap(),
        "tok\n"
    );
    // --add-host reached the RUN step's /etc/hosts.
    let hosts = std::fs::read_to_string(out.path().join("o/hosts.txt")).unwrap();
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().eq(["10.1.2.3", "kbx-host.test"])),
        "{hosts}"
    );

    // An unknown secret ID: the daemon reports it, the build fails with that text.
    let opts = BuildOptions {
        secrets: Vec::new(),
        no_cache: true,
        output: None,
        ..opts
    };
    let (r, _) = build(&c, &opts).await;
    let err = r.expect_err("missing secret");
    assert!(err.to_string().contains("secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_with_status_passes_every_daemon_message_with_its_events() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    let base = d.base_image();
    write(
        ctx.path(),
        "Dockerfile",
        format!("FROM {base}\nRUN echo status-line-one && echo status-line-two\n").as_bytes(),
        0o644,
    );
    let opts = BuildOptions {
        context: ctx.path().into(),
        network: Some("none".into()),
        no_cache: true,
        ..BuildOptions::default()
    };
    let mut messages = Vec::new();
    let mut events = Vec::new();
    c.build_with_status(&opts, |status, evs| {
        messages.push(status.clone());
        events.extend_from_slice(evs);
    })
    .await
    .expect("build");
    assert!(!messages.is_empty());
    assert!(messages.iter().all(|m| !m.is_empty()), "{messages:?}");
    let vertices: Vec<_> = messages.iter().flat_map(|m| &m.vertexes).collect();
    let run = vertices
        .iter()
        .filter(|v| v.name.contains("RUN echo status-line-one"))
        .find(|v| v.completed.is_some())
        .expect("the RUN step completes");
    let started = run.started.expect("a completed step has a start time");
    let completed = run.completed.expect("checked above");
    assert!(completed >= started, "{run:?}");
    assert!(run.error.is_empty(), "{run:?}");
    let output: Vec<u8> = messages
        .iter()
        .flat_map(|m| &m.logs)
        .filter(|l| l.vertex == run.digest)
        .flat_map(|l| l.data.clone())
        .collect();
    let output = String::from_utf8_lossy(&output);
    assert!(
        output.contains("status-line-one\nstatus-line-two\n"),
        "{output}"
    );
    // The events are those of the typed stream: one completion for the RUN step.
    let completions = events
        .iter()
        .filter(|e| matches!(e, ProgressEvent::Completed { digest, .. } if *digest == run.digest))
        .count();
    assert_eq!(completions, 1, "{events:?}");
}

/// Runs `tar` with `args` in `dir`.
fn tar(dir: &Path, args: &[&str]) {
    let st = std::process::Command::new("tar")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(st.success(), "tar {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_archive_and_dockerfile_from_stdin() {
    use std::io::Write as _;
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    sample_tree(&tree.join("src"));
    // 100 MB in the archive: the upload must stream, not buffer.
    let mut f = std::fs::File::create(tree.join("src/huge.bin")).unwrap();
    let mut piece = vec![0u8; 1 << 20];
    for i in 0..100u32 {
        for (j, b) in piece.iter_mut().enumerate() {
            *b = ((j as u32).wrapping_mul(13) ^ i) as u8;
        }
        f.write_all(&piece).unwrap();
    }
    drop(f);
    write(&tree, "Dockerfile", b"FROM scratch\nCOPY src/ /\n", 0o644);
    write(
        &tree,
        "sub/Dockerfile.alt",
        b"FROM scratch\nCOPY src/a.txt /alt.txt\n",
        0o644,
    );
    let ctx_tar = work.path().join("ctx.tar");
    tar(&tree, &["-cf", ctx_tar.to_str().unwrap(), "."]);

    // `build - < ctx.tar`: the archive is the context and holds the Dockerfile.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("o");
    let opts = BuildOptions {
        context: "-".into(),
        output: Some(Output::Local { dest: dest.clone() }),
        ..BuildOptions::default()
    };
    let file = tokio::fs::File::open(&ctx_tar).await.unwrap();
    let before = peak_rss();
    let mut plain = PlainRenderer::new(Vec::new());
    c.build_with_stdin(&opts, file, |ev| plain.render(ev).unwrap())
        .await
        .expect("build from a context archive");
    let after = peak_rss();
    let text = String::from_utf8(plain.into_inner()).unwrap();
    assert!(text.contains("load remote build context"), "{text}");
    assert!(same_file(
        &tree.join("src/huge.bin"),
        &dest.join("huge.bin")
    ));
    std::fs::remove_file(tree.join("src/huge.bin")).unwrap();
    std::fs::remove_file(dest.join("huge.bin")).unwrap();
    let (want, got) = (snapshot(&tree.join("src")), snapshot(&dest));
    assert_eq!(got, want);
    assert!(
        after.saturating_sub(before) < 64 << 20,
        "peak RSS grew from {before} to {after}"
    );

    // A gzip-compressed archive, with the Dockerfile named by a path inside it.
    let tgz = work.path().join("ctx.tgz");
    tar(
        &tree,
        &[
            "-czf",
            tgz.to_str().unwrap(),
            "Dockerfile",
            "sub",
            "src/a.txt",
        ],
    );
    let dest2 = out.path().join("o2");
    let opts = BuildOptions {
        context: "-".into(),
        dockerfile: Some("sub/Dockerfile.alt".into()),
        output: Some(Output::Local {
            dest: dest2.clone(),
        }),
        ..BuildOptions::default()
    };
    let file = tokio::fs::File::open(&tgz).await.unwrap();
    c.build_with_stdin(&opts, file, |_| {})
        .await
        .expect("build from a gzip archive");
    assert_eq!(std::fs::read(dest2.join("alt.txt")).unwrap(), b"alpha\n");
    assert_eq!(std::fs::read_dir(&dest2).unwrap().count(), 1);

    // `build -f - DIR`: the Dockerfile on stdin, the context from the directory.
    let dest3 = out.path().join("o3");
    let opts = BuildOptions {
        context: tree.clone(),
        dockerfile: Some("-".into()),
        output: Some(Output::Local {
            dest: dest3.clone(),
        }),
        ..BuildOptions::default()
    };
    let df = std::io::Cursor::new(b"FROM scratch\nCOPY src/a.txt /from-stdin.txt\n".to_vec());
    c.build_with_stdin(&opts, df, |_| {})
        .await
        .expect("Dockerfile from stdin");
    assert_eq!(
        std::fs::read(dest3.join("from-stdin.txt")).unwrap(),
        b"alpha\n"
    );

    // `build - < Dockerfile`: no archive, so the input is the Dockerfile and the context is
    // empty.
    let dest4 = out.path().join("o4");
    let opts = BuildOptions {
        context: "-".into(),
        output: Some(Output::Local {
            dest: dest4.clone(),
        }),
        ..BuildOptions::default()
    };
    let df = std::io::Cursor::new(b"FROM scratch\nCOPY . /ctx/\n".to_vec());
    c.build_with_stdin(&opts, df, |_| {})
        .await
        .expect("Dockerfile as the only input");
    assert!(dest4.join("ctx").is_dir());
    assert_eq!(std::fs::read_dir(dest4.join("ctx")).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_key_file_agent_reaches_run_steps() {
    let Some(d) = Dockerd::start() else { return };
    if std::process::Command::new("ssh-keygen")
        .arg("-?")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").ok().as_deref() != Some("true"),
            "openssh-client is needed (CI=true, so this is a failure)"
        );
        eprintln!("SKIP: ssh-keygen not installed");
        return;
    }
    let c = client(&d).await;
    let base = d.base_image();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let ctx = tempfile::tempdir().unwrap();
    let dockerfile = |id: &str| {
        format!(
            "FROM {base} AS work\n\
             RUN --mount=type=ssh,id={id},required=true [ -S \"$SSH_AUTH_SOCK\" ] && \
             echo \"$SSH_AUTH_SOCK\" > /sock.txt\n\
             FROM scratch\nCOPY --from=work /sock.txt /\n"
        )
    };
    write(
        ctx.path(),
        "Dockerfile",
        dockerfile("deploy").as_bytes(),
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let opts = BuildOptions {
        context: ctx.path().into(),
        ssh: vec![kbx_buildkit::SshAgent::parse(&format!("deploy={}", key.display())).unwrap()],
        network: Some("none".into()),
        output: Some(Output::Local {
            dest: out.path().join("o"),
        }),
        ..BuildOptions::default()
    };
    assert!(matches!(
        opts.ssh[0].source,
        kbx_buildkit::SshSource::Keys(_)
    ));
    let (r, _) = build(&c, &opts).await;
    r.expect("build with an ssh key file");
    let sock = std::fs::read_to_string(out.path().join("o/sock.txt")).unwrap();
    assert!(sock.trim().starts_with('/'), "{sock:?}");

    // A required agent ID the session does not have fails the build.
    write(
        ctx.path(),
        "Dockerfile",
        dockerfile("other").as_bytes(),
        0o644,
    );
    let (r, _) = build(&c, &opts).await;
    let err = r.expect_err("unknown ssh id");
    assert!(err.to_string().contains("other"), "{err}");

    // A key file that is not a key fails before the solve, naming the file.
    let junk = keys.path().join("junk");
    std::fs::write(&junk, b"not a key").unwrap();
    let opts = BuildOptions {
        ssh: vec![kbx_buildkit::SshAgent::parse(&format!("deploy={}", junk.display())).unwrap()],
        ..opts
    };
    let err = c.build(&opts, |_| {}).await.expect_err("junk key");
    assert!(matches!(err, Error::InvalidOptions(_)), "{err:?}");
    assert!(err.to_string().contains("junk"), "{err}");
}

/// Every entry under `root` as (raw path bytes, kind, content or raw link target).
fn raw_snapshot(root: &Path) -> Vec<(Vec<u8>, char, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    fn visit(root: &Path, dir: &Path, out: &mut Vec<(Vec<u8>, char, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push((rel, 'l', t.as_os_str().as_bytes().to_vec()));
            } else if md.is_dir() {
                out.push((rel, 'd', Vec::new()));
                visit(root, &p, out);
            } else {
                out.push((rel, 'f', std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    visit(root, root, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_file_names_round_trip_byte_exact() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let ctx = tempfile::tempdir().unwrap();
    let src = ctx.path().join("src");
    let latin1 = src.join(OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir_all(&latin1).unwrap();
    std::fs::write(latin1.join(OsStr::from_bytes(b"na\xefve.txt")), b"latin-1").unwrap();
    std::fs::write(src.join(OsStr::from_bytes(b"\xff\xfe-bytes")), b"raw").unwrap();
    std::fs::write(src.join("plain-\u{e9}.txt"), b"utf-8").unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"caf\xe9/na\xefve.txt"), src.join("link"))
        .unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY src/ /\n",
        0o644,
    );
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("o");
    let opts = BuildOptions {
        context: ctx.path().into(),
        output: Some(Output::Local { dest: dest.clone() }),
        ..BuildOptions::default()
    };
    let (r, _) = build(&c, &opts).await;
    r.expect("build with non-UTF-8 names");
    let (want, got) = (raw_snapshot(&src), raw_snapshot(&dest));
    assert_eq!(want.len(), 5);
    assert_eq!(got, want);
    assert!(got.iter().any(|(p, _, _)| p == b"caf\xe9/na\xefve.txt"));

    // The tar export (no fsutil on the way back) carries the same bytes.
    let tar_path = out.path().join("o.tar");
    let opts = BuildOptions {
        output: Some(Output::Tar {
            dest: Some(tar_path.clone()),
        }),
        ..opts
    };
    let (r, _) = build(&c, &opts).await;
    r.expect("tar export");
    let x = out.path().join("x");
    std::fs::create_dir(&x).unwrap();
    tar(&x, &["-xf", tar_path.to_str().unwrap()]);
    assert_eq!(raw_snapshot(&x), want);
}

/// Writes `data` as a blob of the OCI layout `dir`; returns `(digest, size)`.
fn put_blob(dir: &Path, data: &[u8]) -> (String, usize) {
    let tmp = dir.join("tmp-blob");
    std::fs::write(&tmp, data).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(out.status.success());
    let hex = String::from_utf8(out.stdout).unwrap()[..64].to_owned();
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::rename(&tmp, dir.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), data.len())
}

/// An OCI layout holding a BuildKit cache index tagged `latest` whose config blob is
/// `config` (written only when `Some`).
fn cache_layout(dir: &Path, config: Option<&[u8]>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (cfg_digest, cfg_size) = match config {
        Some(c) => put_blob(dir, c),
        None => (format!("sha256:{}", "0".repeat(64)), 2),
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.buildkit.cacheconfig.v0","digest":"{cfg_digest}","size":{cfg_size}}}]}}"#
    );
    let (idx_digest, idx_size) = put_blob(dir, index.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{idx_digest}","size":{idx_size},"annotations":{{"org.opencontainers.image.ref.name":"latest"}}}}]}}"#
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cache_import_reads_through_the_session_content_store() {
    let Some(d) = Dockerd::start() else { return };
    let c = client(&d).await;
    let caps = c.capabilities().await.unwrap();
    assert!(caps.cache_importers.contains(&"local"));
    assert!(!caps.cache_exporters.contains(&"local"));
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "f.txt", b"cached?", 0o644);
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY f.txt /\n",
        0o644,
    );
    let caches = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let opts_for = |src: &Path, dest: &str| BuildOptions {
        context: ctx.path().into(),
        cache_from: vec![
            kbx_buildkit::CacheEntry::parse(&format!("type=local,src={}", src.display())).unwrap(),
        ],
        output: Some(Output::Local {
            dest: out.path().join(dest),
        }),
        ..BuildOptions::default()
    };

    // A valid (empty) cache: the daemon reads the index and the config through the session.
    let good = caches.path().join("good");
    cache_layout(&good, Some(br#"{"layers":[],"records":[]}"#));
    let (r, text) = build(&c, &opts_for(&good, "o1")).await;
    r.expect("build importing a local cache");
    assert_eq!(
        std::fs::read(out.path().join("o1/f.txt")).unwrap(),
        b"cached?"
    );
    assert!(
        text.contains("importing cache manifest from local:"),
        "{text}"
    );
    assert!(!text.contains("ERROR"), "{text}");

    // The config blob is garbage: the daemon read it through our store and says so (a failed
    // import is not fatal to the build).
    let bad = caches.path().join("bad");
    cache_layout(&bad, Some(b"this is not json"));
    let (r, text) = build(&c, &opts_for(&bad, "o2")).await;
    r.expect("a broken cache does not fail the build");
    assert!(text.contains("ERROR: invalid character 'h'"), "{text}");

    // The config blob is missing: our Info answers NotFound, and the daemon reports it.
    let missing = caches.path().join("missing");
    cache_layout(&missing, None);
    let (r, text) = build(&c, &opts_for(&missing, "o3")).await;
    r.expect("a missing blob does not fail the build");
    let zero = "0".repeat(64);
    assert!(
        text.contains(&format!("content digest sha256:{zero}: not found")),
        "{text}"
    );

    // No index.json yet: nothing to import, the build runs without it.
    let (r, _) = build(&c, &opts_for(&caches.path().join("empty"), "o4")).await;
    r.expect("build with an empty cache dir");

    // Exporting a local cache is refused before the solve.
    let opts = BuildOptions {
        cache_from: Vec::new(),
        cache_to: vec![
            kbx_buildkit::CacheEntry::parse(&format!(
                "type=local,dest={}",
                caches.path().join("out").display()
            ))
            .unwrap(),
        ],
        ..opts_for(&good, "o5")
    };
    let err = c
        .build(&opts, |_| {})
        .await
        .expect_err("local cache export");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("cache export type \"local\""),
        "{err}"
    );
}

//! `--load` on a standalone buildkitd: the `docker` exporter's archive streams from the session
//! into a private Docker Engine's `POST /images/load` (what buildx does for builders other than
//! the docker driver).
//!
//! Each test starts its own buildkitd v0.13.2 (`support::Buildkitd`) and, where it loads, its own
//! dockerd (Debian's docker.io, `support::Dockerd`). The oracle is the Engine itself: the docker
//! CLI runs the loaded image (`--network none`) and must print what its ENTRYPOINT prints.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::io::Write as _;
use std::path::Path;

use kbx_buildkit::{Address, BuildOptions, Client, Error, Output, PlainRenderer, ProgressEvent};
use support::{Buildkitd, Dockerd, write};

/// Options every build here shares: no credentials from the host, the context `ctx`.
fn opts(ctx: &Path, output: Output) -> BuildOptions {
    BuildOptions {
        context: ctx.into(),
        credentials: Some(kbx_buildkit::DockerCredentials::default()),
        output: Some(output),
        ..BuildOptions::default()
    }
}

/// A context: Debian's static busybox and `big.bin` (`big` bytes that do not compress), in an
/// image whose ENTRYPOINT echoes.
fn busybox_context(dir: &Path, big: usize) -> Option<()> {
    let Some(bb) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "busybox not found: install busybox-static (CI=true, so this is a failure)"
        );
        eprintln!("SKIP: busybox not found (install busybox-static)");
        return None;
    };
    std::fs::copy(bb, dir.join("busybox")).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("big.bin")).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut left = big;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = left.min(8);
        f.write_all(&x.to_le_bytes()[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
    write(
        dir,
        "Dockerfile",
        b"FROM scratch\nCOPY busybox /bin/busybox\nCOPY big.bin /big.bin\n\
          ENTRYPOINT [\"/bin/busybox\", \"echo\"]\nCMD [\"loaded\", \"by\", \"kbx\"]\n",
        0o644,
    );
    Some(())
}

/// The high-water mark of this process' resident memory, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Builds, returning the result, the plain progress text and every event.
async fn build(
    c: &Client,
    opts: &BuildOptions,
) -> (
    Result<kbx_buildkit::BuildResult, Error>,
    String,
    Vec<ProgressEvent>,
) {
    let mut plain = PlainRenderer::new(Vec::new());
    let mut events = Vec::new();
    let r = c
        .build(opts, |ev| {
            plain.render(ev).unwrap();
            events.push(ev.clone());
        })
        .await;
    let text = String::from_utf8(plain.into_inner()).unwrap();
    eprintln!("{text}");
    (r, text, events)
}

/// The name of the step a vertex digest belongs to, from the events.
fn step_named<'e>(events: &'e [ProgressEvent], name: &str) -> Option<&'e str> {
    events.iter().find_map(|e| match e {
        ProgressEvent::Started { digest, name: n } if n == name => Some(digest.as_str()),
        _ => None,
    })
}

/// `--load -t kbx/loaded:1` from a real buildkitd into a private dockerd: the image runs there and
/// prints what its ENTRYPOINT says; the archive (over 48 MiB) streams through without this
/// process' memory growing by more than a fraction of it; the progress has buildx's `importing
/// to docker` step with the Engine's `Loaded image:` line. Then the Engine's own refusal of a
/// broken archive, and an Engine that is gone, come back as `EngineLoad` errors naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_streams_the_docker_archive_into_a_private_engine() {
    let Some(mut dockerd) = Dockerd::start() else {
        return;
    };
    let Some(bk) = Buildkitd::start() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    const BIG: usize = 48 << 20;
    let Some(()) = busybox_context(ctx.path(), BIG) else {
        return;
    };
    let engine = Address::parse(&dockerd.addr()).unwrap();
    let client = Client::connect(&bk.addr()).await.unwrap();

    let before = peak_rss();
    let (r, text, events) = build(
        &client,
        &opts(
            ctx.path(),
            Output::DockerLoad {
                engine: Some(engine.clone()),
                names: vec!["kbx/loaded:1".into()],
            },
        ),
    )
    .await;
    let res = r.unwrap();
    let grown = peak_rss().saturating_sub(before);
    eprintln!("peak memory grew by {grown} bytes for a {BIG}-byte file in the image");
    assert_eq!(res.loaded, ["kbx/loaded:1"], "{text}");
    assert!(
        grown < (BIG as u64) / 2,
        "memory grew by {grown} bytes for a {BIG}-byte archive: it was buffered"
    );
    let import = step_named(&events, "importing to docker").expect("an importing to docker step");
    assert!(
        events.iter().any(|e| matches!(
            e,
            ProgressEvent::Completed { digest, .. } if digest == import
        )),
        "{text}"
    );
    assert!(text.contains("Loaded image: kbx/loaded:1"), "{text}");

    // The Engine has it, and it runs.
    let (ok, out, err) = dockerd.docker(&["run", "--rm", "--network", "none", "kbx/loaded:1"]);
    assert!(ok, "docker run failed: {err}");
    assert_eq!(out, "loaded by kbx\n");
    let (ok, out, err) = dockerd.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/bin/busybox",
        "kbx/loaded:1",
        "wc",
        "-c",
        "/big.bin",
    ]);
    assert!(ok, "docker run failed: {err}");
    assert_eq!(
        out.split_whitespace().next(),
        Some(BIG.to_string().as_str())
    );

    // The Engine refuses something that is not an archive: its text, under EngineLoad.
    let refused = kbx_buildkit::engine::load_image(&engine, &b"not a tar archive"[..], |_| {})
        .await
        .unwrap_err();
    let Error::EngineLoad { addr, source } = &refused else {
        panic!("{refused:?}");
    };
    assert_eq!(addr, &dockerd.addr());
    assert!(matches!(**source, Error::Engine { .. }), "{source:?}");

    // The Engine goes away: the next load fails before the build, naming the address.
    dockerd.kill();
    let (r, _, _) = build(
        &client,
        &opts(
            ctx.path(),
            Output::DockerLoad {
                engine: Some(engine.clone()),
                names: vec!["kbx/loaded:2".into()],
            },
        ),
    )
    .await;
    let e = r.unwrap_err();
    let Error::EngineLoad { addr, source } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(addr, &dockerd.addr());
    assert!(matches!(**source, Error::Connect { .. }), "{source:?}");
    assert!(
        e.to_string()
            .contains(&format!("Docker Engine at {}", dockerd.addr())),
        "{e}"
    );
}

/// Refused before anything is sent: two platforms (buildx's text: a docker archive holds one
/// image), and an Engine that is not there at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_refuses_manifest_lists_and_a_missing_engine() {
    let Some(bk) = Buildkitd::start() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY Dockerfile /\n",
        0o644,
    );
    let client = Client::connect(&bk.addr()).await.unwrap();
    let gone = Address::DockerUnix(ctx.path().join("no-docker.sock").display().to_string());
    let load = Output::DockerLoad {
        engine: Some(gone.clone()),
        names: vec!["kbx/x:1".into()],
    };

    let two = BuildOptions {
        platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        ..opts(ctx.path(), load.clone())
    };
    let e = client.build(&two, |_| {}).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid build options: docker exporter does not currently support exporting manifest lists"
    );

    let mut steps = Vec::new();
    let e = client
        .build(&opts(ctx.path(), load), |ev| steps.push(ev.clone()))
        .await
        .unwrap_err();
    assert!(steps.is_empty(), "nothing was built: {steps:?}");
    let chain = {
        let mut text = e.to_string();
        let mut s = std::error::Error::source(&e);
        while let Some(c) = s {
            text.push_str(": ");
            text.push_str(&c.to_string());
            s = c.source();
        }
        text
    };
    assert!(
        chain.starts_with(&format!(
            "load the image into the Docker Engine at {gone}: connect to {gone}: "
        )),
        "{chain}"
    );
}

/// An Engine stand-in on a unix socket: answers `/_ping`, reads a whole `POST /images/load` body
/// (chunked), records its size, and refuses it inside the answer stream the way dockerd reports
/// errors (`errorDetail`).
async fn refusing_engine(sock: &Path) -> tokio::sync::mpsc::UnboundedReceiver<usize> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::UnixListener::bind(sock).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 64 * 1024];
                let head_end = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                if buf.starts_with(b"GET /_ping") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                        .await;
                    return;
                }
                let mut body = buf.len() - head_end;
                while !buf.ends_with(b"0\r\n\r\n") {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    body += n;
                    buf.truncate(head_end);
                    buf.extend_from_slice(&chunk[..n]);
                }
                let _ = tx.send(body);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
                          {\"errorDetail\":{\"message\":\"fake refusal\"},\"error\":\"fake refusal\"}\n",
                    )
                    .await;
            });
        }
    });
    rx
}

/// The Engine refuses the archive after reading it: the build fails with `EngineLoad` carrying
/// the Engine's text, and the `importing to docker` step fails with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_refusal_fails_the_build_with_its_text() {
    let Some(bk) = Buildkitd::start() else {
        return;
    };
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        b"FROM scratch\nCOPY Dockerfile /\n",
        0o644,
    );
    let sock = ctx.path().join("engine.sock");
    let mut bodies = refusing_engine(&sock).await;
    let engine = Address::DockerUnix(sock.display().to_string());
    let client = Client::connect(&bk.addr()).await.unwrap();
    let (r, text, events) = build(
        &client,
        &opts(
            ctx.path(),
            Output::DockerLoad {
                engine: Some(engine.clone()),
                names: vec!["kbx/refused:1".into()],
            },
        ),
    )
    .await;
    let e = r.unwrap_err();
    let Error::EngineLoad { addr, source } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(addr, &engine.to_string());
    assert!(
        matches!(&**source, Error::Engine { call, message } if call == "load" && message == "fake refusal"),
        "{source:?}"
    );
    assert!(bodies.recv().await.unwrap() > 1024, "the archive was sent");
    let import = step_named(&events, "importing to docker").expect("the step");
    assert!(
        events.iter().any(|ev| matches!(
            ev,
            ProgressEvent::Failed { digest, error, .. }
                if digest == import && error.contains("fake refusal")
        )),
        "{text}"
    );
}

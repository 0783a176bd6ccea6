//! `just bench-upload`: how fast kbx-buildkit sends a build context, against the physical limit
//! measured in the same run.
//!
//! For each context (2,000 small files of ~25 KB; one 200 MB file):
//! - **kbx**: a build through a private dockerd (as in the tests); the upload time runs from
//!   the start of the `[internal] load build context` step to the daemon reporting its
//!   "transferring context" done, with a fresh shared key each run so that every byte is sent;
//!   once with the session on Docker's `/session` route (the default) and once tunnelled
//!   through `Control.Session`.
//! - **loopback**: the same context through this crate's whole session stack (FileSync service,
//!   HTTP/2, gRPC, fsutil packets) to an in-process receiver that discards the data — the
//!   client's own cost, without the daemon.
//! - **raw**: the same files read from disk and written through a unix socket to a reader that
//!   discards them — no protocol at all.
//! - **daemon raw**: the same files as one tar stream through the same Docker socket into the
//!   same daemon, which unpacks them into a new container (`PUT /containers/{id}/archive`, what
//!   `docker cp` does) — the bytes written to the daemon's disk, with no build protocol.
//! - **docker CLI**: the same build with Debian's `docker` 20.10 client (Go's fsutil sender),
//!   timed by the daemon's own "transferring context" figure (0.1 s resolution).
//!
//! Prints MB/s, files/s, the ratios and the peak RSS of this process during the kbx uploads
//! (reset before each run through `/proc/self/clear_refs`). Needs root and Debian's docker.io;
//! prints a note and exits 0 without them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kbx_buildkit::{BuildOptions, Client, ProgressEvent};

const RUNS: usize = 3;

fn peak_rss_reset() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn files_of(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads every file and pushes its bytes through a unix socket to a draining thread.
fn raw_copy(files: &[PathBuf]) -> Duration {
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match b.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    let start = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    for f in files {
        let mut file = std::fs::File::open(f).unwrap();
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            a.write_all(&buf[..n]).unwrap();
        }
    }
    drop(a);
    drain.join().unwrap();
    start.elapsed()
}

/// Sends `dir`'s files (tar of `name` under `parent`) into container `cid` through the Docker
/// socket as a chunked `PUT /containers/{cid}/archive`, and waits for the daemon's answer.
fn daemon_raw(sock: &Path, parent: &Path, name: &str, cid: &str) -> Duration {
    let start = Instant::now();
    let mut tar = std::process::Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(parent)
        .arg(name)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = tar.stdout.take().unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    write!(
        s,
        "PUT /containers/{cid}/archive?path=/ HTTP/1.1\r\nHost: docker\r\n\
         Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        write!(s, "{n:x}\r\n").unwrap();
        s.write_all(&buf[..n]).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    s.write_all(b"0\r\n\r\n").unwrap();
    assert!(tar.wait().unwrap().success(), "tar failed");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    let took = start.elapsed();
    let status = String::from_utf8_lossy(&head);
    assert!(status.ends_with("200"), "archive upload answered {status}");
    took
}

/// A build of `ctx` with the docker CLI; the daemon's "transferring context" time for the
/// context (not the Dockerfile). Every file's mtime is bumped first so that all are sent.
fn docker_cli_upload(d: &support::Dockerd, ctx: &Path, files: &[PathBuf]) -> Duration {
    let now = std::time::SystemTime::now();
    for f in files {
        std::fs::File::options()
            .write(true)
            .open(f)
            .unwrap()
            .set_modified(now)
            .unwrap();
    }
    let (ok, _, err) = d.docker(&[
        "build",
        "--progress",
        "plain",
        "-o",
        "type=tar,dest=/dev/null",
        &ctx.display().to_string(),
    ]);
    assert!(ok, "docker build failed: {err}");
    // "#4 transferring context: 200.05MB 1.3s done": the largest transfer is the context.
    err.lines()
        .filter(|l| l.contains("transferring context:") && l.ends_with(" done"))
        .filter_map(|l| {
            let secs = l.trim_end_matches(" done").rsplit(' ').next()?;
            secs.strip_suffix('s')?.parse::<f64>().ok()
        })
        .map(Duration::from_secs_f64)
        .max()
        .expect("no transferring context line from docker build")
}

async fn kbx_upload(c: &Client, ctx: &Path, run: usize) -> (Duration, u64) {
    let opts = BuildOptions {
        context: ctx.into(),
        shared_key: Some(format!("bench-{run}-{}", std::process::id())),
        ..BuildOptions::default()
    };
    // From the start of the `[internal] load build context` step to its "transferring context"
    // item being done, as seen here.
    let mut step: Option<(String, Instant)> = None;
    let mut took = None;
    peak_rss_reset();
    c.build(&opts, |ev| match ev {
        ProgressEvent::Started { digest, name } if name == "[internal] load build context" => {
            step = Some((digest.clone(), Instant::now()));
        }
        ProgressEvent::Status {
            digest,
            id,
            done: true,
            ..
        } if id.starts_with("transferring context") => {
            if let Some((d, t)) = &step
                && d == digest
            {
                took = Some(t.elapsed());
            }
        }
        _ => {}
    })
    .await
    .expect("bench build");
    (took.expect("load build context step"), peak_rss())
}

fn make_small(root: &Path) {
    for i in 0..2000u32 {
        let dir = root.join(format!("d{:02}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..25_000u32).map(|j| (j ^ i) as u8).collect();
        std::fs::write(dir.join(format!("f{i:04}")), data).unwrap();
    }
}

fn make_big(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let mut f = std::fs::File::create(root.join("big.bin")).unwrap();
    let piece: Vec<u8> = (0..1u32 << 20).map(|j| (j % 251) as u8).collect();
    for _ in 0..200 {
        f.write_all(&piece).unwrap();
    }
}

fn make_gib(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let mut f = std::fs::File::create(root.join("gib.bin")).unwrap();
    let piece: Vec<u8> = (0..1u32 << 20).map(|j| (j % 241) as u8).collect();
    for _ in 0..1024 {
        f.write_all(&piece).unwrap();
    }
}

fn main() {
    // `cargo bench` passes --bench; any other argument (as `cargo test --benches` does) only
    // checks that this builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Some(d) = support::Dockerd::start() else {
        eprintln!("bench-upload needs root and dockerd (Debian's docker.io); skipped");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(Client::connect(&d.addr())).unwrap();
    let base = d.base_image();
    println!(
        "| context | files | MB | raw MB/s | loopback MB/s | loopback/raw | daemon raw MB/s | kbx MB/s | kbx files/s | kbx/daemon raw | docker CLI MB/s | kbx/docker CLI | kbx tunnel MB/s | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let c_session = c.clone().with_docker_session_route(false);
    let mut cases = vec![
        ("2,000 small files", make_small as fn(&Path)),
        ("one 200 MB file", make_big as fn(&Path)),
    ];
    // KBX_BENCH_GIB=1 adds a 1 GiB context (the peak-RSS target is 64 MiB).
    if std::env::var("KBX_BENCH_GIB").is_ok_and(|v| v == "1") {
        cases.push(("one 1 GiB file", make_gib as fn(&Path)));
    }
    for (name, make) in cases {
        let ctx = tempfile::tempdir().unwrap();
        make(&ctx.path().join("data"));
        std::fs::write(
            ctx.path().join("Dockerfile"),
            "FROM scratch\nCOPY data /data\n",
        )
        .unwrap();
        let files = files_of(&ctx.path().join("data"));
        let bytes: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        let mut kbx = Vec::new();
        let mut raw = Vec::new();
        let mut lo = Vec::new();
        let mut via_session = Vec::new();
        let mut daemon = Vec::new();
        let mut cli = Vec::new();
        let mut rss = 0;
        for run in 0..RUNS {
            let (t, r) = rt.block_on(kbx_upload(&c, ctx.path(), run));
            kbx.push(t);
            rss = rss.max(r);
            raw.push(raw_copy(&files));
            let (t, r) = rt.block_on(kbx_upload(&c_session, ctx.path(), run + 100));
            via_session.push(t);
            rss = rss.max(r);
            peak_rss_reset();
            let start = Instant::now();
            let moved = rt
                .block_on(kbx_buildkit::bench::loopback_transfer(
                    &ctx.path().join("data"),
                ))
                .expect("loopback");
            lo.push(start.elapsed());
            rss = rss.max(peak_rss());
            assert_eq!(moved.bytes, bytes, "loopback lost bytes");
            let (ok, cid, err) = d.docker(&["create", &base, "/bin/true"]);
            assert!(ok, "docker create failed: {err}");
            daemon.push(daemon_raw(&d.sock, ctx.path(), "data", cid.trim()));
            let _ = d.docker(&["rm", cid.trim()]);
            cli.push(docker_cli_upload(&d, ctx.path(), &files));
        }
        let best = |v: &[Duration]| v.iter().min().copied().unwrap_or_default().as_secs_f64();
        let (tk, tr, tl, ts) = (best(&kbx), best(&raw), best(&lo), best(&via_session));
        let (td, tc) = (best(&daemon), best(&cli));
        let mb = bytes as f64 / 1e6;
        println!(
            "| {name} | {} | {mb:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} MiB |",
            files.len(),
            mb / tr,
            mb / tl,
            tr / tl,
            mb / td,
            mb / tk,
            files.len() as f64 / tk,
            td / tk,
            mb / tc,
            tc / tk,
            mb / ts,
            rss as f64 / (1024.0 * 1024.0)
        );
    }
}

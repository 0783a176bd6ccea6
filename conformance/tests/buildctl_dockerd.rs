//! `buildctl` against a real, private Docker Engine (Debian `docker.io`): the embedded BuildKit
//! must answer `debug workers` and `dial-stdio` exactly as the builder image's probes and the
//! driver's exec connection use them. Needs root; under `CI=true` a missing daemon fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use kbx_conformance::buildctl::list_workers;
use kbx_conformance::local::host::mounts_under;

const BUILDCTL: &str = env!("CARGO_BIN_EXE_buildctl");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A dockerd with its own data root, exec root, pid file and socket, no iptables, no bridge.
struct PrivateDockerd {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl PrivateDockerd {
    fn start() -> anyhow::Result<Option<PrivateDockerd>> {
        let dockerd = Path::new("/usr/sbin/dockerd");
        if !in_ci() && (!nix::unistd::geteuid().is_root() || !dockerd.exists()) {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"skipping: needs root and Debian's docker.io (CI=true makes this a failure)\n",
            );
            return Ok(None);
        }
        // A short path: the socket path must fit in 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("kbxd-")
            .tempdir_in("/tmp")?;
        let d = dir.path();
        std::fs::write(d.join("daemon.json"), "{}")?;
        let log = std::fs::File::create(d.join("dockerd.log"))?;
        let child = kbx_conformance::local::process::command(
            dockerd,
            &[
                "--iptables=false".into(),
                "--ip-masq=false".into(),
                "--bridge=none".into(),
                format!("--config-file={}", d.join("daemon.json").display()),
                format!("--data-root={}", d.join("data").display()),
                format!("--exec-root={}", d.join("exec").display()),
                format!("--pidfile={}", d.join("docker.pid").display()),
                format!("--host=unix://{}", d.join("docker.sock").display()),
            ],
            d,
        )
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting dockerd")?;
        let mut daemon = PrivateDockerd { child, dir };
        let until = Instant::now() + Duration::from_secs(60);
        while !daemon.socket().exists() {
            if let Some(status) = daemon.child.try_wait()? {
                bail!("dockerd exited ({status}): {}", daemon.log());
            }
            if Instant::now() > until {
                bail!(
                    "dockerd did not create its socket within 60 s: {}",
                    daemon.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Some(daemon))
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn addr(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        for m in mounts_under(self.dir.path()).iter().rev() {
            let _ = nix::mount::umount2(m.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Runs `buildctl debug workers` until it succeeds (dockerd may still be starting BuildKit).
fn debug_workers(addr: &str) -> anyhow::Result<String> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::process::Command::new(BUILDCTL)
            .args(["--addr", addr, "debug", "workers"])
            .output()?;
        if out.status.success() {
            return Ok(String::from_utf8(out.stdout)?);
        }
        if Instant::now() > until {
            bail!(
                "buildctl debug workers kept failing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn debug_workers_lists_the_embedded_buildkit_worker() -> anyhow::Result<()> {
    let Some(daemon) = PrivateDockerd::start()? else {
        return Ok(());
    };
    let table = debug_workers(&daemon.addr())?;
    let mut lines = table.lines();
    ensure!(
        lines
            .next()
            .is_some_and(|h| h.starts_with("ID") && h.contains("PLATFORMS")),
        "{table}"
    );
    let worker = lines.next().context("no worker line")?;
    ensure!(worker.starts_with("moby"), "{table}");
    ensure!(worker.contains("linux/"), "{table}");
    Ok(())
}

#[test]
fn debug_workers_fails_without_a_daemon() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let addr = format!("unix://{}", dir.path().join("none.sock").display());
    let out = std::process::Command::new(BUILDCTL)
        .args(["--addr", &addr, "debug", "workers"])
        .output()?;
    ensure!(!out.status.success(), "succeeded without a daemon");
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.starts_with("buildctl: failed to connect to"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_stdio_carries_grpc_to_the_embedded_buildkit() -> anyhow::Result<()> {
    let Some(daemon) = PrivateDockerd::start()? else {
        return Ok(());
    };
    let addr = daemon.addr();
    tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || debug_workers(&addr)
    })
    .await??;
    let mut child = tokio::process::Command::new(BUILDCTL)
        .args(["--addr", &addr, "dial-stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take().context("stdin")?;
    let stdout = child.stdout.take().context("stdout")?;
    let workers = tokio::time::timeout(
        Duration::from_secs(30),
        list_workers(tokio::io::join(stdout, stdin)),
    )
    .await
    .context("ListWorkers through dial-stdio timed out")??;
    ensure!(workers.len() == 1 && workers[0].id == "moby", "{workers:?}");
    ensure!(
        workers[0]
            .platforms
            .iter()
            .any(|p| p == "linux/amd64" || p == "linux/arm64"),
        "{workers:?}"
    );
    // Closing stdin ends the HTTP/2 connection; the daemon closes its side and buildctl exits.
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .context("dial-stdio did not exit")??;
    ensure!(status.success(), "dial-stdio exited with {status}");
    Ok(())
}

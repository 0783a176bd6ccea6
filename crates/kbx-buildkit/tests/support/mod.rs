//! Test support: a private Docker daemon (Debian's `docker.io`) and a private standalone
//! buildkitd (v0.13.2, built from Debian's source), each started and stopped by the test; a
//! private `docker-registry` (kbx-registry's test helper, shared); helpers to compare trees.

#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// kbx-registry's private `docker-registry` helper, shared rather than copied.
#[path = "../../../kbx-registry/tests/common/mod.rs"]
pub mod registry;

/// A dockerd with its own data root, exec root, pid file and socket under a temp dir; no
/// iptables, no bridge. Stopped (SIGTERM, then SIGKILL) and removed on drop, also on panic.
pub struct Dockerd {
    child: Option<Child>,
    pub sock: PathBuf,
    dir: Option<tempfile::TempDir>,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn find_dockerd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("dockerd"))
        .find(|p| p.is_file())
}

/// Whether the process runs as root (dockerd needs it).
fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

impl Dockerd {
    /// Starts a private dockerd. Returns `None` (the test then skips) when dockerd is missing
    /// and CI is not "true"; under CI=true a missing dockerd fails the test.
    pub fn start() -> Option<Dockerd> {
        let Some(bin) = find_dockerd() else {
            assert!(
                !in_ci(),
                "dockerd not found: install Debian's docker.io (CI=true, so this is a failure)"
            );
            eprintln!("SKIP: dockerd not found (install docker.io)");
            return None;
        };
        if !is_root() {
            assert!(
                !in_ci(),
                "dockerd needs root (CI=true, so this is a failure)"
            );
            eprintln!("SKIP: dockerd needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("kbxd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path();
        let sock = root.join("docker.sock");
        let log = std::fs::File::create(root.join("dockerd.log")).expect("log file");
        let child = Command::new(&bin)
            .arg("--iptables=false")
            .arg("--ip6tables=false")
            .arg("--bridge=none")
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let mut d = Dockerd {
            child: Some(child),
            sock,
            dir: Some(dir),
        };
        d.wait_ready(Duration::from_secs(90));
        Some(d)
    }

    fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("dockerd.log")).ok())
            .unwrap_or_default()
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "dockerd exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            if self.http_get("/_ping").is_some_and(|r| r.ends_with("OK")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd not ready after {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A plain HTTP/1.1 GET on the socket; the raw response.
    pub fn http_get(&self, path: &str) -> Option<String> {
        let mut s = UnixStream::connect(&self.sock).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// `docker-unix://<socket>`.
    pub fn addr(&self) -> String {
        format!("docker-unix://{}", self.sock.display())
    }

    /// Runs the docker CLI against this daemon; returns (success, stdout, stderr).
    pub fn docker(&self, args: &[&str]) -> (bool, String, String) {
        // Debian's docker.io CLI when present (a newer CLI elsewhere on PATH would want buildx).
        let cli = if Path::new("/usr/bin/docker").is_file() {
            "/usr/bin/docker"
        } else {
            "docker"
        };
        let out = Command::new(cli)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .env("DOCKER_BUILDKIT", "1")
            .env(
                "DOCKER_CONFIG",
                self.dir.as_ref().expect("dir").path().join("cli"),
            )
            .output()
            .expect("run docker CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Imports `kbx-test-base`: busybox (from Debian's busybox-static) and a few applet
    /// links, as a rootfs tarball through `docker import`, for tests that need `RUN`.
    pub fn base_image(&self) -> String {
        let bb = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .expect("busybox not found: install busybox-static");
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
        std::fs::copy(bb, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "echo", "false", "true", "sleep", "cat", "ls"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("symlink");
        }
        let tar = dir.path().join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(st.success(), "tar failed");
        let (ok, _, err) = self.docker(&["import", &tar.display().to_string(), "kbx-test-base"]);
        assert!(ok, "importing the base image failed: {err}");
        "kbx-test-base".to_owned()
    }

    /// Kills dockerd abruptly (for failure tests).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            terminate(c, Duration::from_secs(20));
        }
        if let Some(dir) = self.dir.take() {
            cleanup_dir(dir);
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// After a daemon stopped: ends every process whose command line names `dir` (only processes
/// that daemon started: containerd shims, runc), unmounts what is left under it, removes it.
fn cleanup_dir(dir: tempfile::TempDir) {
    let prefix = dir.path().display().to_string();
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            if pid != std::process::id() && String::from_utf8_lossy(&cmdline).contains(&prefix) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
    let _ = dir.close();
}

/// SIGTERM, then SIGKILL after `grace`.
fn terminate(mut c: Child, grace: Duration) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    loop {
        match c.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = c.kill();
                let _ = c.wait();
                return;
            }
        }
    }
}

/// The closed loopback port every proxy variable points to, so nothing leaves the machine.
const NO_EGRESS_PROXY: &str = "http://127.0.0.1:9";

/// Where `conformance/scripts/build-buildkit.sh` caches buildkitd and buildctl.
pub fn buildkit_bin_dir() -> PathBuf {
    match std::env::var_os("KBX_BUILDKIT_BIN_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/kbx/buildkit-0.13.2/bin"),
    }
}

/// A standalone buildkitd (OCI worker, runc) with its state, socket and log under a temp dir,
/// run as root with no way out of the machine (proxies to a closed port, no EC2 metadata).
/// Stopped (SIGTERM, which makes it print a stack trace, then SIGKILL) and removed on drop.
pub struct Buildkitd {
    child: Option<Child>,
    pub sock: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Buildkitd {
    /// Starts a buildkitd. `None` (the test then skips) when buildkitd, runc or root is
    /// missing and CI is not "true"; under CI=true that is a failure.
    pub fn start() -> Option<Buildkitd> {
        Self::start_with_config(None)
    }

    /// Starts a buildkitd with `config` as its `buildkitd.toml`.
    pub fn start_with_config(config: Option<&str>) -> Option<Buildkitd> {
        let bin = buildkit_bin_dir().join("buildkitd");
        let skip = |why: String| {
            assert!(!in_ci(), "{why} (CI=true, so this is a failure)");
            eprintln!("SKIP: {why}");
        };
        if !bin.is_file() {
            skip(format!(
                "{} not found: run conformance/scripts/build-buildkit.sh (or set KBX_BUILDKIT_BIN_DIR)",
                bin.display()
            ));
            return None;
        }
        if !Path::new("/usr/sbin/runc").is_file() && find_in_path("runc").is_none() {
            skip("runc not found: install Debian's runc".to_owned());
            return None;
        }
        if !is_root() {
            skip("buildkitd needs root".to_owned());
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("kbxbk")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path();
        let sock = root.join("buildkitd.sock");
        let log = std::fs::File::create(root.join("buildkitd.log")).expect("log file");
        let path = format!(
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new(&bin);
        cmd.arg("--root")
            .arg(root.join("state"))
            .arg("--addr")
            .arg(format!("unix://{}", sock.display()))
            .arg("--oci-worker=true")
            .arg("--containerd-worker=false");
        if let Some(toml) = config {
            let file = root.join("buildkitd.toml");
            std::fs::write(&file, toml).expect("write buildkitd.toml");
            cmd.arg("--config").arg(file);
        }
        let child = cmd
            .env("PATH", path)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HTTP_PROXY", NO_EGRESS_PROXY)
            .env("HTTPS_PROXY", NO_EGRESS_PROXY)
            .env("http_proxy", NO_EGRESS_PROXY)
            .env("https_proxy", NO_EGRESS_PROXY)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn buildkitd");
        let mut d = Buildkitd {
            child: Some(child),
            sock,
            dir: Some(dir),
        };
        d.wait_ready(Duration::from_secs(60));
        Some(d)
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("buildkitd.log")).ok())
            .unwrap_or_default()
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "buildkitd exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            if UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "buildkitd did not listen on {} within {limit:?}:\n{}",
                self.sock.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `unix://<socket>`.
    pub fn addr(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// A scratch directory inside the daemon's temp dir (removed with it).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self
            .dir
            .as_ref()
            .expect("dir")
            .path()
            .join("scratch")
            .join(name);
        std::fs::create_dir_all(&p).expect("mkdir scratch");
        p
    }
}

impl Drop for Buildkitd {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            terminate(c, Duration::from_secs(10));
        }
        if std::thread::panicking() {
            eprintln!("--- buildkitd log ---\n{}", self.log());
        }
        if let Some(dir) = self.dir.take() {
            cleanup_dir(dir);
        }
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A rootfs for `RUN` steps: Debian's static busybox and a few applet links, under `dir`.
/// `None` (skip) when busybox-static is missing outside CI.
pub fn busybox_rootfs(dir: &Path) -> Option<PathBuf> {
    let Some(bb) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        assert!(
            !in_ci(),
            "busybox not found: install busybox-static (CI=true, so this is a failure)"
        );
        eprintln!("SKIP: busybox not found (install busybox-static)");
        return None;
    };
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    std::fs::copy(bb, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in [
        "sh", "echo", "false", "true", "sleep", "cat", "ls", "date", "mkdir", "wc", "ip", "test",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("symlink");
    }
    Some(rootfs)
}

/// Every entry under `root`: (relative path, kind, permission bits, content or link target).
pub fn snapshot(root: &Path) -> Vec<(String, char, u32, Vec<u8>)> {
    let mut out = Vec::new();
    fn visit(root: &Path, dir: &Path, out: &mut Vec<(String, char, u32, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let perm = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).expect("readlink");
                out.push((rel, 'l', 0, t.display().to_string().into_bytes()));
            } else if md.is_dir() {
                out.push((rel, 'd', perm, Vec::new()));
                visit(root, &p, out);
            } else {
                out.push((rel, 'f', perm, std::fs::read(&p).expect("read")));
            }
        }
    }
    visit(root, root, &mut out);
    out
}

/// Writes `content` to `root/rel` with `mode`, creating parents.
pub fn write(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, content).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

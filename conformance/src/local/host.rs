//! What a local cluster leaves on the host, and how to remove it: processes, mounts, network
//! devices and cgroups, found from `/proc` and `/sys`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::config::Layout;

/// Everything of a cluster still present on the host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Processes (`pid command`) that belong to the cluster.
    pub processes: Vec<String>,
    /// Mount points under the cluster's work directory.
    pub mounts: Vec<PathBuf>,
    /// Network devices: the bridge and any interface attached to it.
    pub links: Vec<String>,
    /// Cgroup directories under the cluster's cgroup root.
    pub cgroups: Vec<PathBuf>,
}

impl Leftovers {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
            && self.mounts.is_empty()
            && self.links.is_empty()
            && self.cgroups.is_empty()
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "processes {:?}, mounts {:?}, links {:?}, cgroups {:?}",
            self.processes, self.mounts, self.links, self.cgroups
        )
    }
}

/// Whether a process's `/proc/<pid>/cgroup` text places it under `cgroup_root`.
pub fn cgroup_text_is_under(text: &str, cgroup_root: &str) -> bool {
    text.lines().any(|line| {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        path == cgroup_root || path.starts_with(&format!("{cgroup_root}/"))
    })
}

/// Whether a NUL-separated command line mentions `dir` (components started with our paths,
/// containerd shims started with our socket).
pub fn cmdline_mentions(cmdline: &[u8], dir: &Path) -> bool {
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| {
        arg.windows(needle.len()).enumerate().any(|(i, w)| {
            w == needle
                && matches!(
                    arg.get(i + needle.len()),
                    None | Some(b'/') | Some(b'.') | Some(b'"')
                )
        })
    })
}

/// The processes that belong to the cluster: under its cgroup root, or naming its work directory.
pub fn cluster_processes(layout: &Layout) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let cgroup_root = layout.cgroup_root();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let base = entry.path();
        let cmdline = std::fs::read(base.join("cmdline")).unwrap_or_default();
        if cmdline.is_empty() {
            // Kernel threads and zombies have no command line; zombies are reaped by their parent.
            continue;
        }
        let cgroup = std::fs::read_to_string(base.join("cgroup")).unwrap_or_default();
        if cgroup_text_is_under(&cgroup, &cgroup_root) || cmdline_mentions(&cmdline, &layout.dir) {
            let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push((pid, shown.trim().chars().take(160).collect()));
        }
    }
    found.sort();
    found
}

/// Mount points at or below `dir`, deepest last (the order of `/proc/self/mountinfo`).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts_in(&text, dir)
}

/// Parses mountinfo text and returns the mount points at or below `dir`.
pub fn mounts_in(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn unescape_mount_path(raw: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as \ooo octal.
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

/// The cluster's bridge and every interface attached to it.
pub fn cluster_links(layout: &Layout) -> Vec<String> {
    let bridge = layout.bridge();
    let net = Path::new("/sys/class/net").join(&bridge);
    if !net.exists() {
        return Vec::new();
    }
    let mut links = vec![bridge];
    if let Ok(ports) = std::fs::read_dir(net.join("brif")) {
        links.extend(
            ports
                .flatten()
                .filter_map(|p| p.file_name().to_str().map(str::to_owned)),
        );
    }
    links
}

/// Cgroup directories at or below the cluster's cgroup root, in every mounted hierarchy,
/// deepest first.
pub fn cluster_cgroups(layout: &Layout) -> Vec<PathBuf> {
    let root = layout.cgroup_root();
    let relative = root.trim_start_matches('/');
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    let mut bases: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
    bases.push(PathBuf::from("/sys/fs/cgroup"));
    for base in bases {
        let top = base.join(relative);
        if top.is_dir() {
            collect_dirs(&top, &mut found);
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type()
                .map(|t| t.is_dir() && !t.is_symlink())
                .unwrap_or(false)
            {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Creates the kubelet's cgroup root in every mounted hierarchy (the kubelet requires it to
/// exist), with the cpuset hierarchy's CPUs and memory nodes copied from its parent.
pub fn create_cgroup_root(layout: &Layout) -> std::io::Result<()> {
    create_cgroup_dir(&layout.cgroup_root())
}

/// Creates the cgroup `path` (absolute within each hierarchy; its parent must exist) in every
/// mounted hierarchy, with the cpuset hierarchy's CPUs and memory nodes copied from the
/// hierarchy's root.
pub fn create_cgroup_dir(path: &str) -> std::io::Result<()> {
    let relative = path.trim_start_matches('/').to_owned();
    let mut bases: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")?
        .flatten()
        .map(|e| e.path())
        .collect();
    bases.push(PathBuf::from("/sys/fs/cgroup"));
    for base in bases {
        if !base.join("cgroup.procs").is_file() {
            continue;
        }
        let dir = base.join(&relative);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = std::fs::read_to_string(base.join(file)) {
                std::fs::write(dir.join(file), value.trim())?;
            }
        }
    }
    Ok(())
}

/// Where binfmt_misc lives.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The ELF magic and mask of arm64 executables, as `/proc/sys/fs/binfmt_misc/<name>` shows
/// them (hex).
const AARCH64_MAGIC: &str = "7f454c460201010000000000000000000200b700";
const AARCH64_MASK: &str = "ffffffffffffff00fffffffffffffffffeffffff";

/// The file in the work directory that names the binfmt handler this cluster registered.
fn binfmt_record(layout: &Layout) -> PathBuf {
    layout.dir.join("binfmt-handler")
}

/// Whether a binfmt_misc entry's text is an enabled handler for arm64 executables with the `F`
/// flag (the interpreter is opened at registration, so it works inside containers).
pub fn is_usable_aarch64_handler(text: &str) -> bool {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("")
    };
    text.lines().next() == Some("enabled")
        && field("flags:").contains('F')
        && field("magic ") == AARCH64_MAGIC
        && field("mask ") == AARCH64_MASK
        && field("offset ") == "0"
}

/// Makes sure the kernel runs arm64 executables through `qemu` (Debian's
/// `qemu-aarch64-static`): mounts binfmt_misc if needed, keeps an enabled arm64 handler with
/// the `F` flag if there is one, else registers `kbx-<id>-aarch64` and records its name in the
/// work directory so that [`sweep`] removes it, and only it. Returns the handler's name.
pub fn ensure_aarch64_handler(layout: &Layout, qemu: &Path) -> std::io::Result<String> {
    let dir = Path::new(BINFMT_DIR);
    if !dir.join("register").exists() {
        nix::mount::mount(
            Some("binfmt_misc"),
            dir,
            Some("binfmt_misc"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(std::io::Error::from)?;
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "register" || name == "status" {
            continue;
        }
        if std::fs::read_to_string(entry.path()).is_ok_and(|t| is_usable_aarch64_handler(&t)) {
            return Ok(name);
        }
    }
    let name = format!("kbx-{}-aarch64", layout.id);
    let unhex = |h: &str| -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
            .collect()
    };
    let escape =
        |bytes: Vec<u8>| -> String { bytes.iter().map(|b| format!("\\x{b:02x}")).collect() };
    let rule = format!(
        ":{name}:M::{}:{}:{}:F",
        escape(unhex(AARCH64_MAGIC)),
        escape(unhex(AARCH64_MASK)),
        qemu.display()
    );
    std::fs::write(binfmt_record(layout), &name)?;
    std::fs::write(dir.join("register"), rule)?;
    Ok(name)
}

/// Removes the binfmt handler the cluster registered (none when it found one).
fn remove_own_binfmt_handler(layout: &Layout) {
    let Ok(name) = std::fs::read_to_string(binfmt_record(layout)) else {
        return;
    };
    let name = name.trim();
    if name.starts_with(&format!("kbx-{}-", layout.id)) && !name.contains('/') {
        let entry = Path::new(BINFMT_DIR).join(name);
        if entry.exists() {
            let _ = std::fs::write(&entry, "-1");
        }
    }
    let _ = std::fs::remove_file(binfmt_record(layout));
}

/// What is left of the cluster on the host right now.
pub fn leftovers(layout: &Layout) -> Leftovers {
    Leftovers {
        processes: cluster_processes(layout)
            .into_iter()
            .map(|(pid, cmd)| format!("{pid} {cmd}"))
            .collect(),
        mounts: mounts_under(&layout.dir),
        links: cluster_links(layout),
        cgroups: cluster_cgroups(layout),
    }
}

/// Removes everything the cluster left on the host: kills its processes, unmounts its mounts,
/// deletes its network devices and cgroups. Waits at most `deadline` and returns what is left.
pub fn sweep(layout: &Layout, deadline: Duration) -> Leftovers {
    let until = Instant::now() + deadline;
    // Processes first: nothing may hold a mount or a network namespace any more.
    loop {
        let procs = cluster_processes(layout);
        if procs.is_empty() || Instant::now() >= until {
            break;
        }
        for (pid, _) in procs {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Mounts, deepest first; detach so that busy ones go too.
    for _ in 0..3 {
        let mounts = mounts_under(&layout.dir);
        if mounts.is_empty() {
            break;
        }
        for m in mounts.iter().rev() {
            let _ = nix::mount::umount2(m.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    // The veths go with their network namespaces; then the bridge.
    loop {
        let links = cluster_links(layout);
        if links.len() <= 1 || Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for link in cluster_links(layout).into_iter().rev() {
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &link])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    loop {
        let cgroups = cluster_cgroups(layout);
        if cgroups.is_empty() {
            break;
        }
        for c in &cgroups {
            let _ = std::fs::remove_dir(c);
        }
        if Instant::now() >= until {
            break;
        }
        if !cluster_cgroups(layout).is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    remove_own_binfmt_handler(layout);
    leftovers(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_usable_arm64_binfmt_handlers() {
        let debian = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        assert!(is_usable_aarch64_handler(debian));
        assert!(!is_usable_aarch64_handler(&debian.replace("POCF", "POC")));
        assert!(!is_usable_aarch64_handler(
            &debian.replace("enabled", "disabled")
        ));
        assert!(!is_usable_aarch64_handler(&debian.replace("b700", "2800")));
    }

    #[test]
    fn recognises_cgroup_v1_and_v2_lines() {
        let v1 = "12:memory:/kbx-abc/kubepods/besteffort/pod1/ctr\n11:pids:/user.slice\n";
        assert!(cgroup_text_is_under(v1, "/kbx-abc"));
        assert!(!cgroup_text_is_under(v1, "/kbx-ab"));
        assert!(cgroup_text_is_under("0::/kbx-abc\n", "/kbx-abc"));
        assert!(!cgroup_text_is_under(
            "0::/system.slice/containerd.service\n",
            "/kbx-abc"
        ));
    }

    #[test]
    fn command_lines_match_whole_path_components() {
        let dir = Path::new("/tmp/kbx-abc");
        assert!(cmdline_mentions(
            b"containerd\0--config\0/tmp/kbx-abc/containerd/config.toml\0",
            dir
        ));
        assert!(cmdline_mentions(
            b"shim\0-address\0/tmp/kbx-abc/containerd/containerd.sock\0",
            dir
        ));
        assert!(cmdline_mentions(b"etcd\0--data-dir=/tmp/kbx-abc\0", dir));
        assert!(!cmdline_mentions(
            b"etcd\0--data-dir=/tmp/kbx-abcd/etcd\0",
            dir
        ));
        assert!(!cmdline_mentions(b"bash\0-c\0sleep 1\0", dir));
    }

    #[test]
    fn finds_mounts_below_a_directory_with_escapes() {
        let info = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    90 22 0:50 / /tmp/kbx-abc/containerd/state/io.containerd.runtime.v2.task/k8s.io/x/rootfs rw - overlay overlay rw\n\
                    91 22 0:51 / /tmp/kbx-abc/kubelet/pods/u/volumes/a\\040b rw - tmpfs tmpfs rw\n\
                    92 22 0:52 / /tmp/kbx-abcd/x rw - tmpfs tmpfs rw\n";
        let mounts = mounts_in(info, Path::new("/tmp/kbx-abc"));
        assert_eq!(
            mounts,
            vec![
                PathBuf::from(
                    "/tmp/kbx-abc/containerd/state/io.containerd.runtime.v2.task/k8s.io/x/rootfs"
                ),
                PathBuf::from("/tmp/kbx-abc/kubelet/pods/u/volumes/a b"),
            ]
        );
    }

    #[test]
    fn an_unknown_cluster_leaves_nothing() {
        let layout = Layout::from_dir(Path::new("/tmp/kbx-zz9zz9")).unwrap();
        assert!(leftovers(&layout).is_empty());
    }
}

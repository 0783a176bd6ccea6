//! The `local` backend: a real single-node Kubernetes 1.20 cluster on this machine, every
//! listener on 127.0.0.1, node InternalIP 127.0.0.1, nothing reaching off the machine.
//!
//! Components: etcd (Debian `etcd-server`), kube-apiserver, kube-controller-manager,
//! kube-scheduler and kubelet (built from Debian's `kubernetes` source package by
//! `conformance/scripts/build-kubernetes.sh`), containerd + runc + CNI bridge (Debian packages).
//! Everything lives in a private work directory `<tmp>/kbx-<id>`; the kubelet's pods live under
//! the cgroup root `/kbx-<id>` and on the bridge `kbx<id>`. [`LocalCluster::teardown`] removes
//! all of it, and a cluster whose owning process died is swept by the next one that starts.

pub mod arm64_node;
pub mod config;
pub mod host;
pub mod pki;
pub mod process;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;

pub use config::Layout;
pub use host::Leftovers;
use process::Component;

use crate::Error;
use crate::image;

/// The Kubernetes version the local backend runs.
pub const KUBERNETES_VERSION: &str = "1.20.2";

/// The cache root: `$KBX_K8S_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/kbx`.
pub fn cache_root() -> PathBuf {
    cache_root_from("KBX_K8S_CACHE")
}

/// `$VAR` when set, else `${XDG_CACHE_HOME:-$HOME/.cache}/kbx`.
fn cache_root_from(var: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                        .join(".cache")
                })
                .join("kbx")
        })
}

/// Where the Kubernetes binaries are: `$KBX_K8S_BIN_DIR`, else `<cache root>/k8s-1.20.2/bin`
/// (see [`cache_root`]).
pub fn kubernetes_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KBX_K8S_BIN_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    cache_root()
        .join(format!("k8s-{KUBERNETES_VERSION}"))
        .join("bin")
}

/// The BuildKit version the builder images carry.
pub const BUILDKIT_VERSION: &str = "0.13.2";

/// Where the `buildkitd` and `buildctl` binaries for the builder images are:
/// `$KBX_BUILDKIT_BIN_DIR`, else `${KBX_BUILDKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kbx}/buildkit-0.13.2/bin`,
/// where `conformance/scripts/build-buildkit.sh` caches them.
pub fn buildkit_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KBX_BUILDKIT_BIN_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let root = cache_root_from("KBX_BUILDKIT_CACHE");
    root.join(format!("buildkit-{BUILDKIT_VERSION}"))
        .join("bin")
}

/// The programs a local cluster runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// etcd (Debian `etcd-server`).
    pub etcd: PathBuf,
    /// kube-apiserver.
    pub apiserver: PathBuf,
    /// kube-controller-manager.
    pub controller_manager: PathBuf,
    /// kube-scheduler.
    pub scheduler: PathBuf,
    /// kubelet.
    pub kubelet: PathBuf,
    /// containerd (Debian `containerd`).
    pub containerd: PathBuf,
    /// ctr (Debian `containerd`).
    pub ctr: PathBuf,
}

fn which(name: &str) -> Option<PathBuf> {
    process::PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

impl Binaries {
    /// Finds every program, or says which one is missing and how to get it.
    pub fn find() -> Result<Binaries, Error> {
        let k8s = kubernetes_bin_dir();
        let kube = |name: &str| -> Result<PathBuf, Error> {
            let path = k8s.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::MissingProgram {
                    program: path.display().to_string(),
                    hint: "run conformance/scripts/build-kubernetes.sh".into(),
                })
            }
        };
        let system = |name: &str, package: &str| -> Result<PathBuf, Error> {
            which(name).ok_or_else(|| Error::MissingProgram {
                program: name.to_owned(),
                hint: format!("install the Debian package {package}"),
            })
        };
        for (name, package) in [
            ("runc", "runc"),
            ("containerd-shim-runc-v2", "containerd"),
            ("ip", "iproute2"),
        ] {
            system(name, package)?;
        }
        if !Path::new("/usr/lib/cni/bridge").is_file() {
            return Err(Error::MissingProgram {
                program: "/usr/lib/cni/bridge".into(),
                hint: "install the Debian package containernetworking-plugins".into(),
            });
        }
        Ok(Binaries {
            etcd: system("etcd", "etcd-server")?,
            apiserver: kube("kube-apiserver")?,
            controller_manager: kube("kube-controller-manager")?,
            scheduler: kube("kube-scheduler")?,
            kubelet: kube("kubelet")?,
            containerd: system("containerd", "containerd")?,
            ctr: system("ctr", "containerd")?,
        })
    }
}

/// Options for [`LocalCluster::start`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Where the work directory is created (default: the system temporary directory).
    pub base_dir: PathBuf,
    /// The directory with the `buildkitd` and `buildctl` binaries of the builder images
    /// (default: [`buildkit_bin_dir`]).
    pub buildkit_bin_dir: PathBuf,
    /// How long the whole boot may take.
    pub boot_timeout: Duration,
    /// How many nodes: 1, or 2 for a second, arm64 node under QEMU user emulation (see
    /// [`arm64_node`]). Default: `KBX_CONFORMANCE_NODES`, else 1.
    pub nodes: usize,
}

impl LocalOptions {
    /// Defaults: the system temporary directory, [`buildkit_bin_dir`], a 180 s boot.
    pub fn new() -> Self {
        LocalOptions {
            base_dir: std::env::temp_dir(),
            buildkit_bin_dir: buildkit_bin_dir(),
            boot_timeout: Duration::from_secs(180),
            nodes: arm64_node::nodes_from_env(),
        }
    }
}

impl Default for LocalOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Timings of a boot, for reports.
#[derive(Debug, Clone, Default)]
pub struct BootTimings {
    /// Until etcd answered `/health`.
    pub etcd: Duration,
    /// Until kube-apiserver answered `/readyz`.
    pub apiserver: Duration,
    /// Until both images were imported into containerd.
    pub images: Duration,
    /// Until the node was Ready.
    pub node_ready: Duration,
    /// Until the second (arm64) node was Ready, on a two-node cluster.
    pub second_node_ready: Option<Duration>,
}

/// A running local cluster. Dropping it tears it down; [`LocalCluster::teardown`] does so
/// explicitly and reports what is left.
pub struct LocalCluster {
    layout: Layout,
    /// Behind a lock so that scenarios holding `&LocalCluster` can stop and start one.
    components: std::sync::Mutex<Vec<Component>>,
    client: Option<kube::Client>,
    timings: BootTimings,
    torn_down: bool,
    /// Attached to a cluster another process owns ([`LocalCluster::attach`]): never torn down
    /// from here.
    attached: bool,
}

/// Where [`free_port`] looks: below Linux's default ephemeral range (32768–60999), so that the
/// port cannot be taken as the source port of an outgoing connection (the components connect
/// to each other many times while they boot) between choosing it and the component binding it.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port in [`PORT_RANGE`] that nothing listens on now.
fn free_port() -> Result<u16, Error> {
    use std::hash::{BuildHasher, Hasher};
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    let mut last = None;
    for attempt in 0..200u32 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(attempt);
        let port = PORT_RANGE.start + u16::try_from(h.finish() % span).unwrap_or(0);
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(_) => return Ok(port),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        "finding a free loopback port",
        last.unwrap_or_else(|| std::io::Error::other("no attempt")),
    ))
}

fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut n = h.finish();
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| {
            let c = alphabet[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Tears down local clusters under `base_dir` whose owning process is gone (left by a test that
/// was killed). Returns the work directories swept.
pub fn sweep_abandoned(base_dir: &Path) -> Vec<PathBuf> {
    let mut swept = Vec::new();
    let Ok(entries) = std::fs::read_dir(base_dir) else {
        return swept;
    };
    for entry in entries.flatten() {
        let Some(layout) = Layout::from_dir(&entry.path()) else {
            continue;
        };
        let owner = std::fs::read_to_string(layout.owner_file())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        match owner {
            Some(pid) if pid_alive(pid) => continue,
            Some(_) => {}
            None => continue,
        }
        let left = host::sweep(&layout, Duration::from_secs(30));
        if left.mounts.is_empty() {
            let _ = std::fs::remove_dir_all(&layout.dir);
        }
        swept.push(layout.dir);
    }
    swept
}

impl LocalCluster {
    /// Boots a cluster: certificates, etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler, containerd (with the pause and builder images imported) and the kubelet,
    /// then waits for the node to be Ready. Needs root.
    pub async fn start(options: &LocalOptions) -> Result<LocalCluster, Error> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::NotRoot);
        }
        let binaries = Binaries::find()?;
        sweep_abandoned(&options.base_dir);
        ensure_proxy_port_closed()?;

        let layout = loop {
            let dir = options
                .base_dir
                .join(format!("{}{}", config::DIR_PREFIX, new_id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    break Layout::from_dir(&dir)
                        .ok_or_else(|| Error::Image("invalid work directory".into()))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => {
                    return Err(Error::io(format!("creating {}", dir.display()), source));
                }
            }
        };
        std::fs::write(layout.owner_file(), std::process::id().to_string())
            .map_err(|s| Error::io("writing the owner file", s))?;
        let mut cluster = LocalCluster {
            layout,
            components: std::sync::Mutex::new(Vec::new()),
            client: None,
            timings: BootTimings::default(),
            torn_down: false,
            attached: false,
        };
        let boot = tokio::time::timeout(options.boot_timeout, async {
            let started = Instant::now();
            cluster.boot(&binaries, options).await?;
            if options.nodes >= 2 {
                cluster.boot_second_node(options, started).await?;
            }
            Ok::<(), Error>(())
        })
        .await;
        let failure = match boot {
            Ok(Ok(())) => return Ok(cluster),
            Ok(Err(e)) => e,
            Err(_) => Error::Timeout {
                what: "the local cluster to boot".into(),
                after: options.boot_timeout,
            },
        };
        let logs = cluster.failure_report();
        cluster.shutdown(true);
        Err(Error::Boot {
            source: Box::new(failure),
            logs,
        })
    }

    async fn boot(&mut self, bin: &Binaries, options: &LocalOptions) -> Result<(), Error> {
        let started = Instant::now();
        let l = self.layout.clone();
        for dir in [
            l.logs(),
            l.etcd_data(),
            l.containerd(),
            l.kubelet_root(),
            l.cni_conf_dir(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|s| Error::io(format!("creating {}", dir.display()), s))?;
        }
        let more_nodes = if options.nodes >= 2 {
            vec![l.second_node().name]
        } else {
            Vec::new()
        };
        let more_nodes: Vec<&str> = more_nodes.iter().map(String::as_str).collect();
        let (pki, _) = pki::create_with_nodes(&l.pki(), &l.node_name(), &more_nodes)?;
        let mut picked: Vec<u16> = Vec::with_capacity(5);
        while picked.len() < 5 {
            let port = free_port()?;
            if !picked.contains(&port) {
                picked.push(port);
            }
        }
        let ports = config::Ports {
            etcd_client: picked[0],
            etcd_peer: picked[1],
            apiserver: picked[2],
            kubelet: picked[3],
            kubelet_healthz: picked[4],
        };
        let server = format!("https://127.0.0.1:{}", ports.apiserver);
        for (user, cert) in [
            ("admin", &pki.admin),
            ("controller-manager", &pki.controller_manager),
            ("scheduler", &pki.scheduler),
            ("kubelet", &pki.kubelet_client),
        ] {
            write_file(
                &l.kubeconfig(user),
                &config::kubeconfig(&server, &pki.ca.cert, cert, user),
            )?;
        }
        write_file(&l.dir.join("resolv.conf"), config::RESOLV_CONF)?;
        let s = |p: &Path| p.display().to_string();

        // etcd
        let etcd_url = format!("http://127.0.0.1:{}", ports.etcd_client);
        let peer_url = format!("http://127.0.0.1:{}", ports.etcd_peer);
        self.spawn(
            "etcd",
            &bin.etcd,
            vec![
                "--name=kbx".into(),
                format!("--data-dir={}", s(&l.etcd_data())),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=kbx={peer_url}"),
                "--initial-cluster-state=new".into(),
                "--log-level=warn".into(),
            ],
        )?;
        self.wait_until("etcd to answer /health", Duration::from_secs(30), || {
            let port = ports.etcd_client;
            async move {
                http_get_loopback(port, "/health")
                    .await
                    .is_some_and(|body| body.contains("\"health\":\"true\""))
            }
        })
        .await?;
        self.timings.etcd = started.elapsed();

        // kube-apiserver
        self.spawn(
            "kube-apiserver",
            &bin.apiserver,
            vec![
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={}", ports.apiserver),
                "--insecure-port=0".into(),
                format!("--service-cluster-ip-range={}", config::SERVICE_SUBNET),
                "--endpoint-reconciler-type=none".into(),
                "--authorization-mode=Node,RBAC".into(),
                "--anonymous-auth=false".into(),
                "--allow-privileged=true".into(),
                "--enable-admission-plugins=NodeRestriction".into(),
                format!("--client-ca-file={}", s(&pki.ca.cert)),
                format!("--tls-cert-file={}", s(&pki.apiserver.cert)),
                format!("--tls-private-key-file={}", s(&pki.apiserver.key)),
                format!(
                    "--kubelet-client-certificate={}",
                    s(&pki.apiserver_kubelet_client.cert)
                ),
                format!(
                    "--kubelet-client-key={}",
                    s(&pki.apiserver_kubelet_client.key)
                ),
                format!("--kubelet-certificate-authority={}", s(&pki.ca.cert)),
                "--kubelet-preferred-address-types=InternalIP".into(),
                format!(
                    "--service-account-key-file={}",
                    s(&pki.service_account.cert)
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    s(&pki.service_account.key)
                ),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--cert-dir={}", s(&l.pki())),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;
        let client = crate::client_from_kubeconfig(&l.kubeconfig("admin")).await?;
        self.client = Some(client.clone());
        self.wait_until(
            "kube-apiserver to answer /readyz",
            Duration::from_secs(60),
            || {
                let client = client.clone();
                async move {
                    let request = http::Request::get("/readyz").body(Vec::new());
                    match request {
                        Ok(r) => {
                            tokio::time::timeout(Duration::from_secs(5), client.request_text(r))
                                .await
                                .is_ok_and(|r| r.is_ok_and(|t| t.trim() == "ok"))
                        }
                        Err(_) => false,
                    }
                }
            },
        )
        .await?;
        self.timings.apiserver = started.elapsed();

        self.spawn(
            "kube-controller-manager",
            &bin.controller_manager,
            vec![
                format!("--kubeconfig={}", s(&l.kubeconfig("controller-manager"))),
                "--bind-address=127.0.0.1".into(),
                "--port=0".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=true".into(),
                format!(
                    "--service-account-private-key-file={}",
                    s(&pki.service_account.key)
                ),
                format!("--root-ca-file={}", s(&pki.ca.cert)),
                "--controllers=*,-nodeipam,-cloud-node-lifecycle".into(),
                "--v=1".into(),
            ],
        )?;
        self.spawn(
            "kube-scheduler",
            &bin.scheduler,
            vec![
                format!("--kubeconfig={}", s(&l.kubeconfig("scheduler"))),
                "--bind-address=127.0.0.1".into(),
                "--port=0".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--v=1".into(),
            ],
        )?;

        // containerd with the test images
        let containerd_conf = l.containerd().join("config.toml");
        write_file(
            &containerd_conf,
            &config::containerd_toml(&l, image::PAUSE_IMAGE),
        )?;
        write_file(
            &l.cni_conf_dir().join("10-kbx.conflist"),
            &config::cni_conflist(&l),
        )?;
        self.spawn(
            "containerd",
            &bin.containerd,
            vec![
                format!("--config={}", s(&containerd_conf)),
                "--log-level=warn".into(),
            ],
        )?;
        let ctr = Ctr {
            program: bin.ctr.clone(),
            socket: l.containerd_socket(),
        };
        self.wait_until(
            "containerd to answer on its socket",
            Duration::from_secs(30),
            || {
                let ctr = ctr.clone();
                async move { ctr.run(&["version"]).await.is_ok() }
            },
        )
        .await?;
        let images = l.dir.join("images");
        std::fs::create_dir_all(&images)
            .map_err(|s| Error::io("creating the images directory", s))?;
        let archives = build_images(&images, &options.buildkit_bin_dir).await?;
        for archive in &archives {
            ctr.run(&[
                "-n",
                "k8s.io",
                "images",
                "import",
                "--no-unpack=false",
                &s(archive),
            ])
            .await?;
        }
        self.timings.images = started.elapsed();

        // kubelet
        host::create_cgroup_root(&l)
            .map_err(|s| Error::io(format!("creating the cgroup root {}", l.cgroup_root()), s))?;
        let kubelet_conf = l.dir.join("kubelet.yaml");
        write_file(&kubelet_conf, &config::kubelet_yaml(&l, &pki, ports))?;
        self.spawn(
            "kubelet",
            &bin.kubelet,
            vec![
                format!("--config={}", s(&kubelet_conf)),
                format!("--kubeconfig={}", s(&l.kubeconfig("kubelet"))),
                format!("--root-dir={}", s(&l.kubelet_root())),
                format!("--cert-dir={}", s(&l.pki())),
                "--container-runtime=remote".into(),
                format!(
                    "--container-runtime-endpoint=unix://{}",
                    s(&l.containerd_socket())
                ),
                format!(
                    "--image-service-endpoint=unix://{}",
                    s(&l.containerd_socket())
                ),
                format!("--pod-infra-container-image={}", image::PAUSE_IMAGE),
                "--node-ip=127.0.0.1".into(),
                format!("--hostname-override={}", l.node_name()),
                "--v=1".into(),
            ],
        )?;
        self.wait_node_ready(Duration::from_secs(120)).await?;
        self.timings.node_ready = started.elapsed();
        Ok(())
    }

    fn spawn(
        &mut self,
        name: &'static str,
        program: &Path,
        args: Vec<String>,
    ) -> Result<(), Error> {
        let c = Component::spawn(name, program, &args, &self.layout.dir, &self.layout.logs())?;
        self.components_mut().push(c);
        Ok(())
    }

    /// Polls `check` every 200 ms until it holds; fails at `limit`, or at once when a component
    /// has exited.
    async fn wait_until<F, Fut>(
        &mut self,
        what: &str,
        limit: Duration,
        mut check: F,
    ) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let until = Instant::now() + limit;
        loop {
            if check().await {
                return Ok(());
            }
            if let Some(dead) = self.dead_component() {
                return Err(Error::ComponentExited {
                    component: dead,
                    waiting_for: what.to_owned(),
                });
            }
            if Instant::now() >= until {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    after: limit,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn dead_component(&mut self) -> Option<String> {
        self.components_mut()
            .iter_mut()
            .find_map(|c| c.exited().map(|status| format!("{} ({status})", c.name())))
    }

    async fn wait_node_ready(&mut self, limit: Duration) -> Result<(), Error> {
        let client = self.client()?.clone();
        let nodes: Api<Node> = Api::all(client);
        let name = self.layout.node_name();
        let what = format!("node {name} to be Ready");
        let cond = kube::runtime::wait::await_condition(nodes, &name, node_is_ready);
        tokio::pin!(cond);
        let until = tokio::time::Instant::now() + limit;
        loop {
            tokio::select! {
                done = &mut cond => {
                    return done.map(|_| ()).map_err(|e| Error::Wait { what, source: e });
                }
                () = tokio::time::sleep(Duration::from_millis(500)) => {
                    if let Some(dead) = self.dead_component() {
                        return Err(Error::ComponentExited { component: dead, waiting_for: what });
                    }
                    if tokio::time::Instant::now() >= until {
                        return Err(Error::Timeout { what, after: limit });
                    }
                }
            }
        }
    }

    /// An admin client for the cluster.
    pub fn client(&self) -> Result<&kube::Client, Error> {
        self.client
            .as_ref()
            .ok_or_else(|| Error::Image("cluster has no client".into()))
    }

    /// The cluster's layout (work directory, names).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.layout.kubeconfig("admin")
    }

    /// How long each boot stage took, counted from the start.
    pub fn timings(&self) -> &BootTimings {
        &self.timings
    }

    /// `(component name, pid)` for every running component.
    pub fn component_pids(&self) -> Vec<(&'static str, u32)> {
        self.components_mut()
            .iter_mut()
            .filter_map(|c| c.exited().is_none().then(|| (c.name(), c.pid())))
            .collect()
    }

    fn components_mut(&self) -> std::sync::MutexGuard<'_, Vec<Component>> {
        self.components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops one component (`"kubelet"`, `"kube-apiserver"`, …) as its service manager would:
    /// SIGTERM to its process group, SIGKILL after 10 s. Pods keep running (they belong to
    /// containerd's shims). Fails for a name the cluster does not run, and on an attached cluster.
    pub fn stop_component(&self, name: &str) -> Result<(), Error> {
        self.with_component(name, |c| {
            c.stop(Duration::from_secs(10));
            Ok(())
        })
    }

    /// Starts a component stopped with [`LocalCluster::stop_component`] again, with the same
    /// command line; its log continues in the same file.
    pub fn start_component(&self, name: &str) -> Result<(), Error> {
        self.with_component(name, Component::restart)
    }

    fn with_component(
        &self,
        name: &str,
        act: impl FnOnce(&mut Component) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.attached {
            return Err(Error::Unexpected(format!(
                "cannot stop or start {name}: the cluster belongs to another process"
            )));
        }
        let mut components = self.components_mut();
        let component = components
            .iter_mut()
            .find(|c| c.name() == name)
            .ok_or_else(|| Error::Unexpected(format!("the local cluster runs no {name}")))?;
        act(component)
    }

    /// Attaches to a running local cluster that another process booted and owns (e.g.
    /// `kbx-local-cluster up`), from its work directory: an admin client, the layout and the
    /// node, but no component handles. Dropping or tearing down the result leaves the cluster
    /// running.
    pub async fn attach(dir: &Path) -> Result<LocalCluster, Error> {
        let layout = Layout::from_dir(dir).ok_or_else(|| {
            Error::Unexpected(format!(
                "{} is not a local cluster work directory",
                dir.display()
            ))
        })?;
        let owner = std::fs::read_to_string(layout.owner_file())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if !owner.is_some_and(pid_alive) {
            return Err(Error::Unexpected(format!(
                "the local cluster in {} has no running owner",
                dir.display()
            )));
        }
        let client = crate::client_from_kubeconfig(&layout.kubeconfig("admin")).await?;
        Ok(LocalCluster {
            layout,
            components: std::sync::Mutex::new(Vec::new()),
            client: Some(client),
            timings: BootTimings::default(),
            torn_down: true,
            attached: true,
        })
    }

    /// Whether this handle is attached to a cluster another process owns.
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    fn failure_report(&mut self) -> PathBuf {
        let saved = save_logs(&self.layout);
        let mut report = String::new();
        for c in self.components_mut().iter_mut() {
            let status = c
                .exited()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "running".into());
            report.push_str(&format!(
                "\n--- {} ({status}), last lines of {}:\n{}\n",
                c.name(),
                c.log().display(),
                process::tail(c.log(), 15)
            ));
        }
        let _ = std::fs::write(saved.join("summary.txt"), &report);
        let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
        saved
    }

    fn shutdown(&mut self, keep_logs: bool) -> Leftovers {
        if self.attached {
            return Leftovers::default();
        }
        if self.torn_down {
            return host::leftovers(&self.layout);
        }
        self.torn_down = true;
        self.client = None;
        // Reverse start order: kubelet, containerd, scheduler, controller-manager, apiserver, etcd.
        for c in self.components_mut().iter_mut().rev() {
            c.stop(Duration::from_secs(10));
        }
        let left = host::sweep(&self.layout, Duration::from_secs(60));
        remove_pod_logs(&self.layout);
        if keep_logs {
            save_logs(&self.layout);
        }
        if left.mounts.is_empty() {
            let _ = std::fs::remove_dir_all(&self.layout.dir);
        }
        left
    }

    /// Stops every component, kills what the pods left, unmounts, deletes the bridge and the
    /// cgroups, removes the work directory, and returns what could not be removed (empty on
    /// success). Logs are kept when `KBX_CONFORMANCE_KEEP_LOGS` is set.
    pub fn teardown(mut self) -> Leftovers {
        let keep = std::env::var_os("KBX_CONFORMANCE_KEEP_LOGS").is_some();
        self.shutdown(keep)
    }
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("layout", &self.layout)
            .field("components", &self.components)
            .field("attached", &self.attached)
            .finish()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if !self.torn_down {
            let failed = std::thread::panicking();
            if failed {
                let saved = self.failure_report();
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("local cluster logs kept in {}\n", saved.display()).as_bytes(),
                );
            }
            self.shutdown(failed);
        }
    }
}

/// Whether a node has condition Ready=True.
pub fn node_is_ready(node: Option<&Node>) -> bool {
    node.and_then(|n| n.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Copies the cluster's logs to `<tmp>/kbx-conformance-logs/<id>/` and returns that directory.
fn save_logs(layout: &Layout) -> PathBuf {
    let dest = std::env::var_os("KBX_CONFORMANCE_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            layout
                .dir
                .parent()
                .unwrap_or(Path::new("/tmp"))
                .join("kbx-conformance-logs")
        })
        .join(&layout.id);
    let _ = std::fs::create_dir_all(&dest);
    if let Ok(entries) = std::fs::read_dir(layout.logs()) {
        for e in entries.flatten() {
            let _ = std::fs::copy(e.path(), dest.join(e.file_name()));
        }
    }
    dest
}

/// The kubelet writes container logs to `/var/log/pods/<ns>_<pod>_<uid>` (and links them from
/// `/var/log/containers`) whatever its root directory: remove this cluster's, recognised by the
/// pod directories `<kubelet root>/pods/<uid>` that still exist at this point of the teardown.
fn remove_pod_logs(layout: &Layout) {
    let ours = layout.kubelet_root().join("pods");
    let mut removed = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/var/log/pods") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(uid) = name.rsplit('_').next() else {
                continue;
            };
            if !uid.is_empty()
                && ours.join(uid).is_dir()
                && std::fs::remove_dir_all(e.path()).is_ok()
            {
                removed.push(e.path());
            }
        }
    }
    if removed.is_empty() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir("/var/log/containers") {
        for e in entries.flatten() {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            if removed.iter().any(|r| target.starts_with(r)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn ensure_proxy_port_closed() -> Result<(), Error> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(_) => Err(Error::Egress(format!(
            "{} must be a closed port, but something listens there",
            config::CLOSED_PROXY
        ))),
        Err(_) => Ok(()),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|s| Error::io(format!("writing {}", path.display()), s))
}

/// GETs `path` from `127.0.0.1:port` over plain HTTP/1.0; the body, if the status is 200.
async fn http_get_loopback(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| body.to_owned())
            .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// `ctr` against the cluster's containerd.
#[derive(Debug, Clone)]
struct Ctr {
    program: PathBuf,
    socket: PathBuf,
}

impl Ctr {
    async fn run(&self, args: &[&str]) -> Result<String, Error> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg("--address")
            .arg(&self.socket)
            .args(args)
            .kill_on_drop(true);
        let what = format!("ctr {}", args.join(" "));
        let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .map_err(|_| Error::Timeout {
                what: what.clone(),
                after: Duration::from_secs(120),
            })?
            .map_err(|s| Error::io(what.clone(), s))?;
        if !out.status.success() {
            return Err(Error::Command {
                what,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Builds the pause, builder (root and rootless), binfmt and registry image archives (compiling
/// the pause program in `dir`), or reuses them from `<cache root>/images/` when their inputs
/// have not changed. `buildkit` holds the `buildkitd` and `buildctl` binaries.
pub async fn build_images(dir: &Path, buildkit: &Path) -> Result<Vec<PathBuf>, Error> {
    let dir = dir.to_path_buf();
    let buildkit = buildkit.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let pause_bin = image::compile_pause(&dir)?;
        let (fs, cfg) = image::pause_image(&pause_bin)?;
        let cache = cache_root().join("images");
        let pause = fs.cached_archive(&cfg, &cache, "pause")?;
        let (fs, cfg) = image::builder_image(&buildkit)?;
        let builder = fs.cached_archive(&cfg, &cache, "builder")?;
        let (fs, cfg) = image::rootless_builder_image(&buildkit)?;
        let rootless = fs.cached_archive(&cfg, &cache, "builder-rootless")?;
        let (fs, cfg) = image::binfmt_image()?;
        let binfmt = fs.cached_archive(&cfg, &cache, "binfmt")?;
        let (fs, cfg) = image::registry_image()?;
        let registry = fs.cached_archive(&cfg, &cache, "registry")?;
        Ok(vec![pause, builder, rootless, binfmt, registry])
    })
    .await
    .map_err(|e| Error::Image(format!("image build task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    #[test]
    fn ids_are_short_lowercase_and_vary() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 6);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_ne!(a, b);
        assert!(Layout::from_dir(&Path::new("/tmp").join(format!("kbx-{a}"))).is_some());
    }

    #[test]
    fn node_readiness_needs_ready_true() {
        let node = |status: &str| Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(node_is_ready(Some(&node("True"))));
        assert!(!node_is_ready(Some(&node("False"))));
        assert!(!node_is_ready(Some(&Node::default())));
        assert!(!node_is_ready(None));
    }

    #[test]
    fn abandoned_clusters_are_swept_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let dead = base.path().join("kbx-dead00");
        let live = base.path().join("kbx-live00");
        let other = base.path().join("kbx-notes");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        // A pid that cannot exist (above the kernel's pid_max limit of 2^22).
        std::fs::write(dead.join("owner.pid"), "99999999").unwrap();
        std::fs::write(live.join("owner.pid"), std::process::id().to_string()).unwrap();
        let swept = sweep_abandoned(base.path());
        assert_eq!(swept, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
    }
}

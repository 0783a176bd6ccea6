//! Where the local cluster keeps its files, and the configuration files it writes. Pure: these
//! functions only build strings and paths.

use std::path::{Path, PathBuf};

use super::pki::{CertFiles, Pki};

/// The prefix of every local cluster's work directory name (`<tmp>/kbx-<id>`). The janitor
/// recognises abandoned clusters by it.
pub const DIR_PREFIX: &str = "kbx-";

/// The closed loopback port that `HTTP_PROXY`/`HTTPS_PROXY` point at (the discard port).
pub const CLOSED_PROXY: &str = "http://127.0.0.1:9";

/// The pod subnet of the CNI bridge. The bridge has no host address and no route, so pods reach
/// nothing outside this /24.
pub const POD_SUBNET: &str = "10.244.0.0/24";

/// The service subnet (no kube-proxy runs; services are only API objects here).
pub const SERVICE_SUBNET: &str = "10.96.0.0/24";

/// The environment every component runs with: nothing may leave the machine, even the probe of
/// kubelet 1.20's in-tree AWS credential provider at start-up.
pub fn no_egress_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("HTTP_PROXY", CLOSED_PROXY),
        ("HTTPS_PROXY", CLOSED_PROXY),
        ("http_proxy", CLOSED_PROXY),
        ("https_proxy", CLOSED_PROXY),
        ("NO_PROXY", ""),
        ("no_proxy", ""),
    ]
}

/// Paths and names of one local cluster, all derived from its work directory and short id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The work directory: `<tmp>/kbx-<id>`.
    pub dir: PathBuf,
    /// The short id (lowercase letters and digits) that names the bridge, cgroup root and node.
    pub id: String,
}

impl Layout {
    /// The layout of the cluster whose work directory is `dir` (named `kbx-<id>`).
    pub fn from_dir(dir: &Path) -> Option<Layout> {
        let name = dir.file_name()?.to_str()?;
        let id = name.strip_prefix(DIR_PREFIX)?;
        let valid = !id.is_empty()
            && id.len() <= 8
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        valid.then(|| Layout {
            dir: dir.to_path_buf(),
            id: id.to_owned(),
        })
    }
    /// Where certificates live.
    pub fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }
    /// Where component logs live (kept for failed runs).
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    /// etcd's data directory.
    pub fn etcd_data(&self) -> PathBuf {
        self.dir.join("etcd")
    }
    /// containerd's directory (config, root, state, socket).
    pub fn containerd(&self) -> PathBuf {
        self.dir.join("containerd")
    }
    /// containerd's socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd().join("containerd.sock")
    }
    /// The kubelet's root directory.
    pub fn kubelet_root(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    /// CNI configuration directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }
    /// A kubeconfig file for `user`.
    pub fn kubeconfig(&self, user: &str) -> PathBuf {
        self.dir.join(format!("{user}.kubeconfig"))
    }
    /// The file that records which process owns the cluster.
    pub fn owner_file(&self) -> PathBuf {
        self.dir.join("owner.pid")
    }
    /// The node name.
    pub fn node_name(&self) -> String {
        format!("kbx-{}", self.id)
    }
    /// The CNI bridge's name (at most 15 bytes).
    pub fn bridge(&self) -> String {
        format!("kbx{}", self.id)
    }
    /// The kubelet's cgroup root; every pod's cgroup lives under it.
    pub fn cgroup_root(&self) -> String {
        format!("/kbx-{}", self.id)
    }
}

/// The arm64 node of a two-node cluster: its own containerd, kubelet root, CNI configuration
/// and IP range, node name and cgroup root, all inside the cluster's work directory and cgroup
/// root so that [`Layout`]'s teardown covers them. Its pods share the first node's bridge and
/// /24: the two nodes' host-local ranges are disjoint halves of [`POD_SUBNET`], so pods of
/// both nodes reach each other on plain L2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondNode {
    /// `<work dir>/node2`.
    pub dir: PathBuf,
    /// `kbx-<id>-arm64`.
    pub name: String,
    /// `/kbx-<id>/node2`: below the cluster's cgroup root, beside the first node's `kubepods`.
    pub cgroup_root: String,
    /// The first node's bridge.
    pub bridge: String,
}

/// The host-local range of node 1 of a two-node cluster (the lower half of [`POD_SUBNET`]).
pub const NODE1_RANGE: (&str, &str) = ("10.244.0.2", "10.244.0.127");
/// The host-local range of node 2 of a two-node cluster (the upper half of [`POD_SUBNET`]).
pub const NODE2_RANGE: (&str, &str) = ("10.244.0.129", "10.244.0.254");
/// Node 1's `spec.podCIDR` on a two-node cluster: the half of [`POD_SUBNET`] with
/// [`NODE1_RANGE`].
pub const NODE1_POD_CIDR: &str = "10.244.0.0/25";
/// Node 2's `spec.podCIDR`: the half of [`POD_SUBNET`] with [`NODE2_RANGE`].
pub const NODE2_POD_CIDR: &str = "10.244.0.128/25";

impl Layout {
    /// The arm64 node of a two-node cluster.
    pub fn second_node(&self) -> SecondNode {
        SecondNode {
            dir: self.dir.join("node2"),
            name: format!("kbx-{}-arm64", self.id),
            cgroup_root: format!("{}/node2", self.cgroup_root()),
            bridge: self.bridge(),
        }
    }
}

impl SecondNode {
    /// containerd's directory.
    pub fn containerd(&self) -> PathBuf {
        self.dir.join("containerd")
    }
    /// containerd's socket.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd().join("containerd.sock")
    }
    /// The kubelet's root directory.
    pub fn kubelet_root(&self) -> PathBuf {
        self.dir.join("kubelet")
    }
    /// CNI configuration directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni/net.d")
    }
    /// host-local's data directory.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("cni/ipam")
    }
    /// Where the node's component logs go.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// containerd's configuration for the second node (see [`containerd_toml`]).
pub fn second_node_containerd_toml(node: &SecondNode, sandbox_image: &str) -> String {
    containerd_toml_at(
        &node.containerd(),
        &node.containerd_socket(),
        &node.cni_conf_dir(),
        sandbox_image,
    )
}

/// The CNI network of one node of a two-node cluster: [`cni_conflist`]'s bridge, with the
/// host-local range `range` of [`POD_SUBNET`] and host-local data in `ipam_dir`.
pub fn cni_conflist_range(bridge: &str, ipam_dir: &Path, range: (&str, &str)) -> String {
    cni_conflist_with(bridge, ipam_dir, Some(range))
}

/// The loopback ports a local cluster listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// etcd clients.
    pub etcd_client: u16,
    /// etcd peers (one member, still must listen).
    pub etcd_peer: u16,
    /// kube-apiserver (HTTPS).
    pub apiserver: u16,
    /// kubelet (HTTPS).
    pub kubelet: u16,
    /// kubelet's healthz (HTTP).
    pub kubelet_healthz: u16,
}

/// containerd's configuration: private root, state and socket, CRI for the kubelet.
pub fn containerd_toml(layout: &Layout, sandbox_image: &str) -> String {
    containerd_toml_at(
        &layout.containerd(),
        &layout.containerd_socket(),
        &layout.cni_conf_dir(),
        sandbox_image,
    )
}

fn containerd_toml_at(c: &Path, socket: &Path, cni_conf: &Path, sandbox_image: &str) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc_root}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
"#,
        root = c.join("root").display(),
        state = c.join("state").display(),
        sock = socket.display(),
        opt = c.join("opt").display(),
        runc_root = c.join("runc").display(),
        cni_conf = cni_conf.display(),
    )
}

/// The CNI network: a bridge without a host address, no gateway, no masquerading, no routes.
pub fn cni_conflist(layout: &Layout) -> String {
    cni_conflist_with(&layout.bridge(), &layout.dir.join("cni/ipam"), None)
}

fn cni_conflist_with(bridge: &str, ipam_dir: &Path, range: Option<(&str, &str)>) -> String {
    let mut subnet = serde_json::json!({ "subnet": POD_SUBNET });
    if let Some((start, end)) = range {
        subnet["rangeStart"] = start.into();
        subnet["rangeEnd"] = end.into();
    }
    let conf = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "kbx",
        "plugins": [{
            "type": "bridge",
            "bridge": bridge,
            "isGateway": false,
            "isDefaultGateway": false,
            "ipMasq": false,
            "hairpinMode": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[subnet]],
                "dataDir": ipam_dir.display().to_string(),
            }
        }]
    });
    serde_json::to_string_pretty(&conf).unwrap_or_default()
}

/// The kubelet's configuration file.
pub fn kubelet_yaml(layout: &Layout, pki: &Pki, ports: Ports) -> String {
    kubelet_yaml_with(
        KubeletFiles {
            ca: &pki.ca.cert,
            serving: &pki.kubelet_serving,
            cgroup_root: &layout.cgroup_root(),
            resolv: &layout.dir.join("resolv.conf"),
            plugins: &layout.kubelet_root().join("volume-plugins"),
        },
        ports.kubelet,
        ports.kubelet_healthz,
    )
}

/// The kubelet configuration of the second node: its own serving certificate, cgroup root,
/// volume plugin directory and ports; the cluster's CA and resolv.conf.
pub fn second_node_kubelet_yaml(
    layout: &Layout,
    node: &SecondNode,
    ca: &Path,
    serving: &CertFiles,
    port: u16,
    healthz: u16,
) -> String {
    kubelet_yaml_with(
        KubeletFiles {
            ca,
            serving,
            cgroup_root: &node.cgroup_root,
            resolv: &layout.dir.join("resolv.conf"),
            plugins: &node.kubelet_root().join("volume-plugins"),
        },
        port,
        healthz,
    )
}

struct KubeletFiles<'a> {
    ca: &'a Path,
    serving: &'a CertFiles,
    cgroup_root: &'a str,
    resolv: &'a Path,
    plugins: &'a Path,
}

fn kubelet_yaml_with(f: KubeletFiles<'_>, port: u16, healthz: u16) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {ca}
authorization:
  mode: Webhook
tlsCertFile: {tls_cert}
tlsPrivateKeyFile: {tls_key}
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
cgroupsPerQOS: true
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
failSwapOn: false
resolvConf: {resolv}
hairpinMode: none
volumePluginDir: {plugins}
serializeImagePulls: false
runtimeRequestTimeout: 2m
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
"#,
        ca = f.ca.display(),
        tls_cert = f.serving.cert.display(),
        tls_key = f.serving.key.display(),
        cgroup_root = f.cgroup_root,
        resolv = f.resolv.display(),
        plugins = f.plugins.display(),
    )
}

/// The pods' resolv.conf: a loopback nameserver, so no lookup leaves the pod.
pub const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions ndots:1\n";

/// A kubeconfig that authenticates with a client certificate.
pub fn kubeconfig(server: &str, ca: &Path, client: &CertFiles, user: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Config
clusters:
- name: kbx
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: kbx
  context:
    cluster: kbx
    user: {user}
current-context: kbx
"#,
        ca = ca.display(),
        cert = client.cert.display(),
        key = client.key.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::from_dir(Path::new("/tmp/kbx-ab12cd")).unwrap()
    }

    #[test]
    fn layout_names_come_from_the_directory() {
        let l = layout();
        assert_eq!(l.id, "ab12cd");
        assert_eq!(l.bridge(), "kbxab12cd");
        assert!(l.bridge().len() <= 15);
        assert_eq!(l.cgroup_root(), "/kbx-ab12cd");
        assert_eq!(
            l.containerd_socket(),
            Path::new("/tmp/kbx-ab12cd/containerd/containerd.sock")
        );
        assert_eq!(Layout::from_dir(Path::new("/tmp/other")), None);
        assert_eq!(Layout::from_dir(Path::new("/tmp/kbx-UPPER")), None);
        assert_eq!(Layout::from_dir(Path::new("/tmp/kbx-waytoolong1")), None);
    }

    #[test]
    fn no_egress_env_points_every_proxy_at_a_closed_loopback_port() {
        let env = no_egress_env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(get("AWS_EC2_METADATA_DISABLED"), Some("true"));
        for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert_eq!(get(key), Some("http://127.0.0.1:9"), "{key}");
        }
    }

    #[test]
    fn containerd_is_private_and_cannot_raise_oom_scores() {
        let toml = containerd_toml(&layout(), "kbx.invalid/pause:test");
        let parsed: toml::Table = toml.parse().unwrap();
        assert_eq!(
            parsed["root"].as_str(),
            Some("/tmp/kbx-ab12cd/containerd/root")
        );
        assert_eq!(
            parsed["grpc"]["address"].as_str(),
            Some("/tmp/kbx-ab12cd/containerd/containerd.sock")
        );
        let cri = &parsed["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(cri["stream_server_address"].as_str(), Some("127.0.0.1"));
        assert_eq!(
            cri["sandbox_image"].as_str(),
            Some("kbx.invalid/pause:test")
        );
        assert_eq!(
            cri["cni"]["conf_dir"].as_str(),
            Some("/tmp/kbx-ab12cd/cni/net.d")
        );
    }

    #[test]
    fn the_second_node_shares_the_bridge_with_a_disjoint_range() {
        let l = layout();
        let n = l.second_node();
        assert_eq!(n.name, "kbx-ab12cd-arm64");
        assert_eq!(n.cgroup_root, "/kbx-ab12cd/node2");
        assert!(n.dir.starts_with(&l.dir));
        let conf: serde_json::Value =
            serde_json::from_str(&cni_conflist_range(&n.bridge, &n.ipam_dir(), NODE2_RANGE))
                .unwrap();
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["bridge"], "kbxab12cd");
        let range = &bridge["ipam"]["ranges"][0][0];
        assert_eq!(range["subnet"], POD_SUBNET);
        assert_eq!(range["rangeStart"], "10.244.0.129");
        let toml: toml::Table = second_node_containerd_toml(&n, "kbx.invalid/pause:test")
            .parse()
            .unwrap();
        assert_eq!(
            toml["grpc"]["address"].as_str(),
            Some("/tmp/kbx-ab12cd/node2/containerd/containerd.sock")
        );
    }

    #[test]
    fn cni_bridge_has_no_gateway_masquerade_or_route() {
        let conf: serde_json::Value = serde_json::from_str(&cni_conflist(&layout())).unwrap();
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["bridge"], "kbxab12cd");
        assert_eq!(bridge["isGateway"], false);
        assert_eq!(bridge["ipMasq"], false);
        assert!(bridge["ipam"].get("routes").is_none());
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], POD_SUBNET);
    }
}

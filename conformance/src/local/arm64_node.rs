//! The second node of a two-node local cluster: arm64 as far as Kubernetes and BuildKit can
//! tell, on this amd64 machine, through QEMU user emulation (Debian's `qemu-user-static`).
//!
//! - kubelet 1.20.2 cross-built for linux/arm64 from the same Debian source and patches as the
//!   first node's (`conformance/scripts/build-kubelet-arm64.sh`), plus one arm64-only patch
//!   (`k8s-patches/arm64/`): the pod sandbox asks for no seccomp profile, because QEMU refuses
//!   `PR_SET_SECCOMP` and the emulated containerd reports seccomp as unsupported;
//! - Debian's arm64 containerd with an arm64 sysroot (`conformance/scripts/fetch-arm64-containerd.sh`),
//!   both run as `qemu-aarch64-static [-L sysroot] <binary>`;
//! - the host's **amd64** `containerd-shim-runc-v2` and `runc` on that containerd's `PATH`: the
//!   arm64 ones fail under QEMU 7.2 (the shim's `prctl(PR_SET_CHILD_SUBREAPER)` gets EINVAL,
//!   runc's init pipe breaks). Containers' processes are arm64 all the same, run by the
//!   kernel through a binfmt handler for arm64 with the `F` flag ([`host::ensure_aarch64_handler`]).
//!
//! The node has its own containerd (config, root, state, socket), kubelet root, ports, cgroup
//! root (below the cluster's) and node name, InternalIP 127.0.0.1 like the first node, and its
//! pods sit on the first node's bridge in the other half of the pod /24 (see
//! [`config::SecondNode`]). The pause, builder and registry images are imported into both
//! nodes as multi-platform images (an OCI image index with amd64 and arm64 manifests).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::Api;

use super::config::{self, SecondNode};
use super::{Ctr, LocalCluster, LocalOptions, cache_root, cache_root_from, host, pki, write_file};
use crate::Error;
use crate::image;

/// Where Debian's `qemu-user-static` puts the arm64 emulator.
pub const QEMU_AARCH64_STATIC: &str = "/usr/bin/qemu-aarch64-static";

/// The number of nodes asked for by `KBX_CONFORMANCE_NODES` (1 when unset or not a number).
pub fn nodes_from_env() -> usize {
    std::env::var("KBX_CONFORMANCE_NODES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &usize| *n >= 1)
        .unwrap_or(1)
}

/// The programs and files of the arm64 node.
#[derive(Debug, Clone)]
pub struct Arm64Binaries {
    /// The arm64 kubelet (`<cache root>/k8s-1.20.2-arm64/bin/kubelet`).
    pub kubelet: PathBuf,
    /// Debian's arm64 containerd (`<cache root>/containerd-arm64/bin/containerd`).
    pub containerd: PathBuf,
    /// The arm64 sysroot containerd loads its libraries from.
    pub sysroot: PathBuf,
    /// Debian's arm64 docker-registry (`<cache root>/containerd-arm64/bin/docker-registry`).
    pub registry: PathBuf,
    /// `qemu-aarch64-static`.
    pub qemu: PathBuf,
    /// The arm64 `buildkitd` and `buildctl` (`build-buildkit.sh --arch arm64`).
    pub buildkit: PathBuf,
    /// Debian's static arm64 busybox (`fetch-arm64-busybox.sh`).
    pub busybox: PathBuf,
}

impl Arm64Binaries {
    /// Finds every file, or says which one is missing and which script makes it.
    pub fn find() -> Result<Arm64Binaries, Error> {
        let need = |path: PathBuf, hint: &str| -> Result<PathBuf, Error> {
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::MissingProgram {
                    program: path.display().to_string(),
                    hint: hint.to_owned(),
                })
            }
        };
        let root = cache_root();
        let containerd_dir = root.join("containerd-arm64");
        let xdg_cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                    .join(".cache")
            });
        let buildkit = cache_root_from("KBX_BUILDKIT_CACHE")
            .join(format!("buildkit-{}-arm64", super::BUILDKIT_VERSION))
            .join("bin");
        need(
            buildkit.join("buildctl"),
            "run conformance/scripts/build-buildkit.sh --arch arm64",
        )?;
        Ok(Arm64Binaries {
            kubelet: need(
                root.join(format!("k8s-{}-arm64", super::KUBERNETES_VERSION))
                    .join("bin/kubelet"),
                "run conformance/scripts/build-kubelet-arm64.sh",
            )?,
            containerd: need(
                containerd_dir.join("bin/containerd"),
                "run conformance/scripts/fetch-arm64-containerd.sh",
            )?,
            sysroot: containerd_dir.join("sysroot"),
            registry: need(
                containerd_dir.join("bin/docker-registry"),
                "run conformance/scripts/fetch-arm64-containerd.sh",
            )?,
            qemu: need(
                PathBuf::from(QEMU_AARCH64_STATIC),
                "install the Debian package qemu-user-static",
            )?,
            buildkit: need(
                buildkit.join("buildkitd"),
                "run conformance/scripts/build-buildkit.sh --arch arm64",
            )?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(buildkit),
            busybox: need(
                xdg_cache.join("kbx/arm64/busybox"),
                "run conformance/scripts/fetch-arm64-busybox.sh",
            )?,
        })
    }
}

/// Builds the multi-platform (amd64 + arm64) pause, builder and registry image archives, or reuses them
/// from `<cache root>/images/`. The pause program is compiled in `dir` for both.
pub async fn build_multi_platform_images(
    dir: &Path,
    buildkit_amd64: &Path,
    arm64: &Arm64Binaries,
) -> Result<Vec<PathBuf>, Error> {
    let dir = dir.to_path_buf();
    let buildkit_amd64 = buildkit_amd64.to_path_buf();
    let arm64 = arm64.clone();
    tokio::task::spawn_blocking(move || {
        let cache = cache_root().join("images");
        let platform = |arch: &str, (rootfs, config): (image::Rootfs, image::ImageConfig)| {
            image::PlatformImage {
                arch: arch.to_owned(),
                rootfs,
                config,
            }
        };
        let pause = image::cached_multi_platform_archive(
            image::PAUSE_IMAGE,
            &[
                platform("amd64", image::pause_image(&image::compile_pause(&dir)?)?),
                platform(
                    "arm64",
                    image::pause_image(&image::compile_pause_arm64(&dir)?)?,
                ),
            ],
            &cache,
            "multi-pause",
        )?;
        let builder = image::cached_multi_platform_archive(
            image::BUILDER_IMAGE,
            &[
                platform("amd64", image::builder_image(&buildkit_amd64)?),
                platform(
                    "arm64",
                    image::builder_image_arm64(&arm64.buildkit, &arm64.busybox)?,
                ),
            ],
            &cache,
            "multi-builder",
        )?;
        let registry = image::cached_multi_platform_archive(
            image::REGISTRY_IMAGE,
            &[
                platform("amd64", image::registry_image()?),
                platform(
                    "arm64",
                    image::registry_image_arm64(&arm64.registry, &arm64.sysroot)?,
                ),
            ],
            &cache,
            "multi-registry",
        )?;
        Ok(vec![pause, builder, registry])
    })
    .await
    .map_err(|e| Error::Image(format!("image build task failed: {e}")))?
}

/// The API server URL written in the cluster's admin kubeconfig.
fn server_of(kubeconfig: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(kubeconfig)
        .map_err(|s| Error::io(format!("reading {}", kubeconfig.display()), s))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| Error::Unexpected(format!("{} names no server", kubeconfig.display())))
}

impl LocalCluster {
    /// Boots the arm64 node (see the module documentation) once the first node is Ready, and
    /// waits until it is Ready too.
    pub(super) async fn boot_second_node(
        &mut self,
        options: &LocalOptions,
        started: Instant,
    ) -> Result<(), Error> {
        let arm = Arm64Binaries::find()?;
        let l = self.layout.clone();
        let node = l.second_node();
        host::ensure_aarch64_handler(&l, &arm.qemu)
            .map_err(|s| Error::io("registering a binfmt handler for arm64", s))?;
        for dir in [node.containerd(), node.kubelet_root(), node.cni_conf_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|s| Error::io(format!("creating {}", dir.display()), s))?;
        }
        let s = |p: &Path| p.display().to_string();

        // The two nodes share the bridge and the /24: disjoint host-local ranges. No pod runs
        // yet, so node 1's network can still be narrowed to its half.
        write_file(
            &l.cni_conf_dir().join("10-kbx.conflist"),
            &config::cni_conflist_range(&l.bridge(), &l.dir.join("cni/ipam"), config::NODE1_RANGE),
        )?;
        write_file(
            &node.cni_conf_dir().join("10-kbx.conflist"),
            &config::cni_conflist_range(&node.bridge, &node.ipam_dir(), config::NODE2_RANGE),
        )?;

        // containerd, emulated, with the host's shim and runc on its PATH.
        let containerd_conf = node.containerd().join("config.toml");
        write_file(
            &containerd_conf,
            &config::second_node_containerd_toml(&node, image::PAUSE_IMAGE),
        )?;
        self.spawn(
            "containerd-arm64",
            &arm.qemu,
            vec![
                "-L".into(),
                s(&arm.sysroot),
                s(&arm.containerd),
                format!("--config={}", s(&containerd_conf)),
                "--log-level=warn".into(),
            ],
        )?;
        let ctr_program = super::Binaries::find()?.ctr;
        let ctr2 = Ctr {
            program: ctr_program.clone(),
            socket: node.containerd_socket(),
        };
        self.wait_until(
            "the arm64 containerd to answer on its socket",
            Duration::from_secs(60),
            || {
                let ctr = ctr2.clone();
                async move { ctr.run(&["version"]).await.is_ok() }
            },
        )
        .await?;

        // Multi-platform pause and builder images on both nodes.
        let images = l.dir.join("images");
        std::fs::create_dir_all(&images)
            .map_err(|s| Error::io("creating the images directory", s))?;
        let archives =
            build_multi_platform_images(&images, &options.buildkit_bin_dir, &arm).await?;
        let ctr1 = Ctr {
            program: ctr_program,
            socket: l.containerd_socket(),
        };
        for archive in &archives {
            for (ctr, platform) in [(&ctr1, "linux/amd64"), (&ctr2, "linux/arm64")] {
                ctr.run(&[
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    "--platform",
                    platform,
                    &s(archive),
                ])
                .await?;
            }
        }

        // kubelet, emulated.
        let mut ports = Vec::with_capacity(2);
        while ports.len() < 2 {
            let port = super::free_port()?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        host::create_cgroup_dir(&node.cgroup_root)
            .map_err(|s| Error::io(format!("creating the cgroup root {}", node.cgroup_root), s))?;
        let pki_dir = l.pki();
        let certs = |file: &str| pki::CertFiles {
            cert: pki_dir.join(format!("{file}-{}.crt", node.name)),
            key: pki_dir.join(format!("{file}-{}.key", node.name)),
        };
        let ca = pki_dir.join("ca.crt");
        let kubeconfig = l.kubeconfig(&format!("kubelet-{}", node.name));
        write_file(
            &kubeconfig,
            &config::kubeconfig(
                &server_of(&l.kubeconfig("admin"))?,
                &ca,
                &certs("kubelet-client"),
                "kubelet",
            ),
        )?;
        let kubelet_conf = node.dir.join("kubelet.yaml");
        write_file(
            &kubelet_conf,
            &config::second_node_kubelet_yaml(
                &l,
                &node,
                &ca,
                &certs("kubelet-serving"),
                ports[0],
                ports[1],
            ),
        )?;
        self.spawn(
            "kubelet-arm64",
            &arm.qemu,
            vec![
                s(&arm.kubelet),
                format!("--config={}", s(&kubelet_conf)),
                format!("--kubeconfig={}", s(&kubeconfig)),
                format!("--root-dir={}", s(&node.kubelet_root())),
                format!("--cert-dir={}", s(&node.dir.join("pki"))),
                "--container-runtime=remote".into(),
                format!(
                    "--container-runtime-endpoint=unix://{}",
                    s(&node.containerd_socket())
                ),
                format!(
                    "--image-service-endpoint=unix://{}",
                    s(&node.containerd_socket())
                ),
                format!("--pod-infra-container-image={}", image::PAUSE_IMAGE),
                "--node-ip=127.0.0.1".into(),
                format!("--hostname-override={}", node.name),
                "--v=1".into(),
            ],
        )?;
        self.wait_named_node_ready(&node, Duration::from_secs(180))
            .await?;
        self.record_pod_cidrs(&node).await?;
        self.timings.second_node_ready = Some(started.elapsed());
        Ok(())
    }

    /// Writes each node's half of the pod /24 into its `spec.podCIDR` (the controller manager's
    /// node IPAM is off): `10.244.0.0/25` and `10.244.0.128/25`, which hold the nodes'
    /// host-local ranges. Only a record; the CNI configurations are what hands out addresses.
    async fn record_pod_cidrs(&self, node: &SecondNode) -> Result<(), Error> {
        let nodes: Api<Node> = Api::all(self.client()?.clone());
        for (name, cidr) in [
            (self.layout.node_name(), config::NODE1_POD_CIDR),
            (node.name.clone(), config::NODE2_POD_CIDR),
        ] {
            let patch = serde_json::json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
            nodes
                .patch(
                    &name,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .map_err(|e| Error::kube(format!("setting the pod CIDR of node {name}"), e))?;
        }
        Ok(())
    }

    async fn wait_named_node_ready(
        &mut self,
        node: &SecondNode,
        limit: Duration,
    ) -> Result<(), Error> {
        let nodes: Api<Node> = Api::all(self.client()?.clone());
        let what = format!("node {} to be Ready", node.name);
        let cond = kube::runtime::wait::await_condition(nodes, &node.name, super::node_is_ready);
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

    /// The arm64 node of a two-node cluster, when it was booted.
    pub fn second_node(&self) -> Option<SecondNode> {
        self.timings
            .second_node_ready
            .is_some()
            .then(|| self.layout.second_node())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_read_from_kubeconfigs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.kubeconfig");
        std::fs::write(
            &path,
            "clusters:\n- name: kbx\n  cluster:\n    server: https://127.0.0.1:2345\n",
        )
        .unwrap();
        assert_eq!(server_of(&path).unwrap(), "https://127.0.0.1:2345");
    }
}

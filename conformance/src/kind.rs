//! The `kind` backend: `kind create cluster --config kind-configs/<name>.yaml` (repository root), on machines with
//! `kind` and a Docker engine. The cluster is deleted again by [`KindCluster::delete`] (or on
//! drop); a cluster the suite did not create is never touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;

/// The shipped configurations (files `kind-configs/<name>.yaml`).
pub const CONFIGS: &[&str] = &["single", "multi-node", "multi-arch"];

/// The directory of the shipped kind configurations.
pub fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kind-configs")
}

/// Options for [`KindCluster::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// The kind cluster name.
    pub name: String,
    /// How long `kind create cluster` may wait for the control plane.
    pub wait: Duration,
}

impl KindOptions {
    /// `KBX_CONFORMANCE_KIND_CONFIG` (a shipped name or a path; default `single`), a fresh
    /// cluster name, and a 5-minute wait.
    pub fn from_env() -> KindOptions {
        let chosen = std::env::var("KBX_CONFORMANCE_KIND_CONFIG").unwrap_or_default();
        KindOptions::new(if chosen.is_empty() { "single" } else { &chosen })
    }

    /// Options for a shipped configuration name, or a path to a configuration file.
    pub fn new(config: &str) -> KindOptions {
        let config = if CONFIGS.contains(&config) {
            configs_dir().join(format!("{config}.yaml"))
        } else {
            PathBuf::from(config)
        };
        let name = format!("kbx-conformance-{}", std::process::id());
        KindOptions {
            config,
            name,
            wait: Duration::from_secs(300),
        }
    }
}

/// A kind cluster created by the suite.
#[derive(Debug)]
pub struct KindCluster {
    name: String,
    dir: tempfile::TempDir,
    deleted: bool,
}

async fn run(program: &str, args: &[String], limit: Duration) -> Result<String, Error> {
    let what = format!("{program} {}", args.join(" "));
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| Error::Timeout {
            what: what.clone(),
            after: limit,
        })?
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::MissingProgram {
                program: program.to_owned(),
                hint: "install kind (https://kind.sigs.k8s.io) and a Docker engine".into(),
            },
            _ => Error::io(what.clone(), source),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl KindCluster {
    /// Creates the cluster and writes its kubeconfig to a private file.
    pub async fn create(options: &KindOptions) -> Result<KindCluster, Error> {
        if !options.config.is_file() {
            return Err(Error::MissingProgram {
                program: options.config.display().to_string(),
                hint: format!("use one of {CONFIGS:?} or a path to a kind configuration"),
            });
        }
        run("docker", &["version".into()], Duration::from_secs(30)).await?;
        let dir = tempfile::Builder::new()
            .prefix("kbx-conformance-kind")
            .tempdir()
            .map_err(|s| Error::io("creating a kind work directory", s))?;
        let cluster = KindCluster {
            name: options.name.clone(),
            dir,
            deleted: false,
        };
        let args = vec![
            "create".into(),
            "cluster".into(),
            "--name".into(),
            options.name.clone(),
            "--config".into(),
            options.config.display().to_string(),
            "--kubeconfig".into(),
            cluster.kubeconfig().display().to_string(),
            "--wait".into(),
            format!("{}s", options.wait.as_secs()),
        ];
        if let Err(e) = run("kind", &args, options.wait + Duration::from_secs(300)).await {
            cluster.delete().await;
            return Err(e);
        }
        Ok(cluster)
    }

    /// The kind cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's kubeconfig file.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Loads a docker-archive into every node (`kind load image-archive`).
    pub async fn load_image_archive(&self, archive: &Path) -> Result<(), Error> {
        let args = vec![
            "load".into(),
            "image-archive".into(),
            archive.display().to_string(),
            "--name".into(),
            self.name.clone(),
        ];
        run("kind", &args, Duration::from_secs(600))
            .await
            .map(|_| ())
    }

    /// Deletes the cluster.
    pub async fn delete(mut self) {
        self.delete_in_place().await;
    }

    async fn delete_in_place(&mut self) {
        if !self.deleted {
            self.deleted = true;
            let args = vec![
                "delete".into(),
                "cluster".into(),
                "--name".into(),
                self.name.clone(),
            ];
            let _ = run("kind", &args, Duration::from_secs(300)).await;
        }
    }
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = std::process::Command::new("kind")
                .args(["delete", "cluster", "--name", &self.name])
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> String {
        std::fs::read_to_string(configs_dir().join(format!("{name}.yaml"))).unwrap()
    }

    #[test]
    fn shipped_configs_have_the_documented_nodes() {
        for name in CONFIGS {
            let text = config(name);
            assert!(text.contains("kind: Cluster"), "{name}");
            assert!(
                text.contains("apiVersion: kind.x-k8s.io/v1alpha4"),
                "{name}"
            );
        }
        assert_eq!(config("single").matches("- role:").count(), 1);
        assert_eq!(config("multi-node").matches("- role:").count(), 3);
        let multi_arch = config("multi-arch");
        assert!(
            multi_arch.contains("kubernetes.io/arch=arm64")
                || multi_arch.contains("kubernetes.io/arch: arm64"),
            "{multi_arch}"
        );
    }

    #[test]
    fn names_resolve_to_shipped_files_and_paths_stay_paths() {
        assert_eq!(
            KindOptions::new("multi-node").config,
            configs_dir().join("multi-node.yaml")
        );
        assert_eq!(
            KindOptions::new("/etc/my-kind.yaml").config,
            PathBuf::from("/etc/my-kind.yaml")
        );
    }
}

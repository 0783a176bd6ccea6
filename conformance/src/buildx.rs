//! The real Docker Buildx CLI, the oracle of the parity scenarios: Debian's `docker-buildx`
//! packages, fetched and cached by `conformance/scripts/fetch-buildx.sh`.
//!
//! Each run gets its own `DOCKER_CONFIG` and `BUILDX_CONFIG` (so it sees only the builders the
//! test made), no Docker Engine (`DOCKER_HOST` names a socket that does not exist), and the
//! same closed proxy as the cluster's daemons, so nothing it does can leave the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::local::config::no_egress_env;

/// The Buildx versions the suite compares against, newest first.
pub const VERSIONS: [&str; 2] = ["0.29.1", "0.13.1"];

/// One cached Buildx binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buildx {
    /// Its version, one of [`VERSIONS`].
    pub version: &'static str,
    /// The `docker-buildx` binary (it runs standalone as well as a CLI plugin).
    pub bin: PathBuf,
}

impl Buildx {
    /// Every cached version, in [`VERSIONS`] order, as `fetch-buildx.sh --check` lists them.
    ///
    /// # Errors
    /// [`Error::MissingProgram`] when the cache is missing or stale (run
    /// `conformance/scripts/fetch-buildx.sh`).
    pub fn all() -> Result<Vec<Buildx>, Error> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-buildx.sh");
        let missing = |hint: String| Error::MissingProgram {
            program: "docker-buildx (Debian's docker-buildx packages)".to_owned(),
            hint,
        };
        let out = Command::new("bash")
            .arg(&script)
            .arg("--check")
            .output()
            .map_err(|e| missing(format!("cannot run {}: {e}", script.display())))?;
        if !out.status.success() {
            return Err(missing(format!(
                "run {} ({})",
                script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let paths: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(PathBuf::from)
            .collect();
        if paths.len() != VERSIONS.len() {
            return Err(missing(format!(
                "{} listed {} binaries, expected {}",
                script.display(),
                paths.len(),
                VERSIONS.len()
            )));
        }
        Ok(VERSIONS
            .into_iter()
            .zip(paths)
            .map(|(version, bin)| Buildx { version, bin })
            .collect())
    }

    /// The cached binary of `version`.
    ///
    /// # Errors
    /// As [`Buildx::all`].
    pub fn find(version: &str) -> Result<Buildx, Error> {
        Buildx::all()?
            .into_iter()
            .find(|b| b.version == version)
            .ok_or_else(|| Error::MissingProgram {
                program: format!("docker-buildx {version}"),
                hint: format!("supported versions: {}", VERSIONS.join(", ")),
            })
    }

    /// A command running this Buildx with its configuration under `home` (created if
    /// needed), no Docker Engine and the closed proxy.
    pub fn command(&self, home: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        let _ = std::fs::create_dir_all(home.join("docker"));
        cmd.env("DOCKER_CONFIG", home.join("docker"))
            .env("BUILDX_CONFIG", home.join("buildx"))
            .env(
                "DOCKER_HOST",
                format!("unix://{}", home.join("no-engine.sock").display()),
            )
            .env_remove("BUILDX_NO_DEFAULT_ATTESTATIONS")
            .env_remove("BUILDX_BUILDER")
            .env_remove("BUILDKIT_HOST")
            .envs(no_egress_env())
            .current_dir(home);
        cmd
    }
}

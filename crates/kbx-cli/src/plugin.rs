//! kbx as a Docker CLI plugin (`docker kbx build …`) and a kubectl plugin (`kubectl kbx …`).
//!
//! Installed as `~/.docker/cli-plugins/docker-kbx` (a link to `kbx`), the Docker CLI first runs
//! `docker-kbx docker-cli-plugin-metadata` and expects the plugin's metadata as JSON; for
//! `docker kbx ARGS…` it runs `docker-kbx kbx ARGS…`. Installed as `kubectl-kbx` on `PATH`,
//! `kubectl kbx ARGS…` runs `kubectl-kbx ARGS…`, which needs nothing special.

use std::ffi::OsString;
use std::path::Path;

/// What to do with the process' arguments.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Args {
    /// Print this metadata (the Docker CLI's plugin handshake) and exit.
    Metadata(String),
    /// Parse these arguments as kbx's.
    Run(Vec<OsString>),
}

/// The Docker CLI plugin metadata: schema 0.1.0, as `docker-buildx` answers.
fn metadata() -> String {
    format!(
        "{{\"SchemaVersion\":\"0.1.0\",\"Vendor\":\"kbx\",\"Version\":\"v{}\",\"ShortDescription\":\"BuildKit builders on Kubernetes, compatible with Buildx\"}}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Reads `argv`: under the name `docker-kbx`, answers the metadata request and drops the
/// plugin name the Docker CLI passes first.
pub(crate) fn args(mut argv: Vec<OsString>) -> Args {
    let invoked_as_docker_plugin = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "docker-kbx");
    if !invoked_as_docker_plugin {
        return Args::Run(argv);
    }
    match argv.get(1).and_then(|a| a.to_str()) {
        Some("docker-cli-plugin-metadata") => Args::Metadata(metadata()),
        Some("kbx") => {
            argv.remove(1);
            Args::Run(argv)
        }
        _ => Args::Run(argv),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn docker_runs_the_plugin_with_its_name_first() {
        assert_eq!(
            args(os(&["/home/u/.docker/cli-plugins/docker-kbx", "kbx", "ls"])),
            Args::Run(os(&["/home/u/.docker/cli-plugins/docker-kbx", "ls"]))
        );
        let Args::Metadata(json) = args(os(&["docker-kbx", "docker-cli-plugin-metadata"])) else {
            panic!("no metadata")
        };
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["SchemaVersion"], "0.1.0");
        assert_eq!(v["Vendor"], "kbx");
        assert!(v["Version"].as_str().unwrap().starts_with('v'));
    }

    #[test]
    fn other_names_pass_arguments_through() {
        for argv in [
            &["kbx", "ls"][..],
            &["kubectl-kbx", "ls"],
            &["kbx", "docker-cli-plugin-metadata"],
        ] {
            assert_eq!(args(os(argv)), Args::Run(os(argv)));
        }
    }
}

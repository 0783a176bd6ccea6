//! Buildx's local build state: what the client knew about a build that the daemon's record
//! does not keep (`refs/BUILDER/NODE/REF`), read back by `history ls` and `history inspect`.

use serde::{Deserialize, Serialize};

/// The local state of one build, as buildx writes it (`{"Target":…,"LocalPath":…,
/// "DockerfilePath":…}`, `GroupRef` for bake builds only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildState {
    /// The build target (`default` when none was given).
    #[serde(rename = "Target", default)]
    pub target: String,
    /// The absolute path of the local context (`-` for stdin, the URL of a remote one).
    #[serde(rename = "LocalPath", default)]
    pub local_path: String,
    /// The absolute path of the Dockerfile given with `-f` (`-` for stdin), else empty.
    #[serde(rename = "DockerfilePath", default)]
    pub dockerfile_path: String,
    /// The bake group reference (bake builds only).
    #[serde(rename = "GroupRef", default, skip_serializing_if = "String::is_empty")]
    pub group_ref: String,
}

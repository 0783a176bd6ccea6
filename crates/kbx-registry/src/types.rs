//! OCI / Docker content descriptors and media types.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (v2 schema 2) media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (v2 schema 2) media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 1 manifest media types (read-only; never put in an index).
pub const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// The `Accept` header for manifest requests: the four media types this client understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Whether `media_type` is an index / manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is a single-image manifest.
pub fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor: media type, digest and size, plus the platform and annotations an
/// index entry may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the content.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Other places the content can be fetched from (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations (index entries and indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform an index entry is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of an artifact manifest entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// The descriptor of `bytes` with `media_type` (sha256 digest).
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_owned(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        }
    }
}

/// An OS / architecture / variant triple as in an index entry or image config.
///
/// This is the descriptor's platform as a registry sent it, not [`kbx_opts::Platform`] (the
/// normalised platform a user types): fields are kept exactly as they came (an empty
/// `variant` stays, `null` lists are accepted) so that indexes built from existing ones keep
/// their entries byte for byte, and it displays as `imagetools inspect` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant (`v7`, `v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    /// `os/architecture[/variant]`, as buildx prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The parts of an image manifest this crate reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageManifest {
    pub(crate) config: Descriptor,
    #[serde(default)]
    pub(crate) layers: Vec<Descriptor>,
}

/// The parts of an index this crate reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Index {
    #[serde(default)]
    pub(crate) manifests: Vec<Descriptor>,
}

/// An index as written by [`crate::Client::create_index`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IndexOut<'a> {
    pub(crate) schema_version: u32,
    pub(crate) media_type: &'a str,
    pub(crate) manifests: &'a [Descriptor],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: &'a BTreeMap<String, String>,
}

/// The platform fields of an image config.
#[derive(Debug, Deserialize)]
pub(crate) struct ImageConfig {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

/// Guesses a manifest's media type from its body, as containerd does when a registry sends
/// none: the `mediaType` field, else `config` → Docker manifest, `fsLayers` → schema 1,
/// otherwise a Docker manifest list.
pub(crate) fn detect_media_type(body: &[u8]) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        config: Option<serde_json::Value>,
        #[serde(default)]
        fs_layers: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(body) {
        Ok(p) => match (p.media_type, p.config, p.fs_layers) {
            (Some(mt), _, _) if !mt.is_empty() => mt,
            (_, Some(_), _) => DOCKER_MANIFEST.to_owned(),
            (_, _, Some(_)) => DOCKER_SCHEMA1[0].to_owned(),
            _ => DOCKER_MANIFEST_LIST.to_owned(),
        },
        Err(_) => DOCKER_MANIFEST_LIST.to_owned(),
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    hex_digest(Sha256::digest(bytes).as_slice())
}

pub(crate) fn hex_digest(sum: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(7 + sum.len() * 2);
    s.push_str("sha256:");
    for b in sum {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn detects_media_types() {
        assert_eq!(detect_media_type(br#"{"mediaType":"x"}"#), "x");
        assert_eq!(detect_media_type(br#"{"config":{}}"#), DOCKER_MANIFEST);
        assert_eq!(detect_media_type(br#"{"fsLayers":[]}"#), DOCKER_SCHEMA1[0]);
        assert_eq!(
            detect_media_type(br#"{"manifests":[]}"#),
            DOCKER_MANIFEST_LIST
        );
    }

    #[test]
    fn descriptors_keep_urls_and_artifact_type_in_oci_field_order() {
        let text = r#"{"mediaType":"m","digest":"sha256:1","size":3,"urls":["https://u"],"annotations":{"k":"v"},"platform":{"architecture":"amd64","os":"linux"},"artifactType":"a"}"#;
        let d: Descriptor = serde_json::from_str(text).expect("descriptor");
        assert_eq!(d.urls.as_deref(), Some(&["https://u".to_owned()][..]));
        assert_eq!(d.artifact_type.as_deref(), Some("a"));
        assert_eq!(serde_json::to_string(&d).expect("json"), text);
    }

    #[test]
    fn platform_display() {
        let p = Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: Some("v7".into()),
            ..Platform::default()
        };
        assert_eq!(p.to_string(), "linux/arm/v7");
    }
}

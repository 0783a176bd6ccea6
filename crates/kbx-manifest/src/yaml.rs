//! Byte-stable YAML output.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ByteString, Resource};
use serde::Serialize;

use crate::error::Error;
use crate::render::{Manifests, Workload};

/// A ConfigMap with `metadata` before its data, so a reader sees which ConfigMap it is first
/// (k8s-openapi writes fields alphabetically after `apiVersion` and `kind`). It reads back
/// into the same [`ConfigMap`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMapDocument<'a> {
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    immutable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_data: Option<&'a BTreeMap<String, ByteString>>,
}

impl<'a> From<&'a ConfigMap> for ConfigMapDocument<'a> {
    fn from(cm: &'a ConfigMap) -> Self {
        Self {
            api_version: ConfigMap::API_VERSION,
            kind: ConfigMap::KIND,
            metadata: &cm.metadata,
            immutable: cm.immutable,
            data: cm.data.as_ref(),
            binary_data: cm.binary_data.as_ref(),
        }
    }
}

/// Pinned rather than defaulted, so output does not move with the serialiser's defaults.
/// Multi-line strings (config files) are literal blocks (`|`); single-line strings stay on one
/// line however long (never folded with `>`, whose line breaks and trailing spaces are easy to
/// damage when a file is edited).
fn options() -> serde_saphyr::SerializerOptions {
    serde_saphyr::ser_options! {
        indent_step: 2,
        compact_list_indent: true,
        prefer_block_scalars: true,
        folded_wrap_chars: usize::MAX,
        quote_all: false,
    }
}

fn document<T: Serialize>(what: String, value: &T) -> Result<String, Error> {
    serde_saphyr::to_string_with_options(value, options())
        .map_err(|source| Error::Yaml { what, source })
}

impl Manifests {
    /// One YAML document per object, in creation order (ConfigMaps first).
    pub fn yaml_documents(&self) -> Result<Vec<String>, Error> {
        let mut docs = Vec::with_capacity(self.config_maps.len() + 1);
        for cm in &self.config_maps {
            let name = cm.metadata.name.as_deref().unwrap_or_default();
            docs.push(document(
                format!("ConfigMap {name:?}"),
                &ConfigMapDocument::from(cm),
            )?);
        }
        let what = format!(
            "{} {:?}",
            self.workload.kind(),
            self.workload.metadata().name.as_deref().unwrap_or_default()
        );
        docs.push(match &self.workload {
            Workload::Deployment(d) => document(what, d)?,
            Workload::StatefulSet(s) => document(what, s)?,
        });
        Ok(docs)
    }

    /// All objects as one multi-document YAML stream (`---` between documents), the same bytes
    /// for the same objects.
    ///
    /// ```
    /// use kbx_manifest::{Node, render};
    /// let yaml = render(&Node::new("b0", Default::default()))?.to_yaml()?;
    /// assert!(yaml.starts_with("apiVersion: apps/v1\nkind: Deployment\n"));
    /// assert!(yaml.contains("  name: b0\n"));
    /// # Ok::<(), kbx_manifest::Error>(())
    /// ```
    pub fn to_yaml(&self) -> Result<String, Error> {
        Ok(self.yaml_documents()?.join("---\n"))
    }
}

//! buildx's `imagetools`: combining images into one index, and inspecting a reference.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bytes::Bytes;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::types::{
    DOCKER_MANIFEST_LIST, Descriptor, ImageConfig, ImageManifest, Index, IndexOut, OCI_INDEX,
    Platform, is_index,
};

/// A pushed (or, on a dry run, only computed) index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedIndex {
    /// The index's descriptor.
    pub descriptor: Descriptor,
    /// The index JSON exactly as pushed.
    pub bytes: Bytes,
}

/// What `buildx imagetools inspect` shows about a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The reference inspected (normalised).
    pub name: Reference,
    /// The manifest's descriptor.
    pub descriptor: Descriptor,
    /// The manifest exactly as the registry served it (`--raw`).
    pub raw: Bytes,
    /// For an index: its entries, in order.
    pub manifests: Vec<InspectedManifest>,
    /// For an index: its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// One entry of an inspected index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectedManifest {
    /// `name@digest` of the entry.
    pub name: String,
    /// The entry's descriptor (media type, digest, size, platform, annotations).
    pub descriptor: Descriptor,
}

impl fmt::Display for Inspection {
    /// The text `buildx imagetools inspect` prints without `--format`: Go `tabwriter`
    /// blocks with padding 1, so padded lines carry trailing spaces exactly as buildx's do.
    /// The index's own annotations are not printed (as in buildx).
    ///
    /// # Deviation
    /// R5: entry annotations are printed sorted by key (buildx: Go map order).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        f.write_str(&tabulate(&[
            cell("Name:", &self.name.to_string()),
            cell("MediaType:", &self.descriptor.media_type),
            cell("Digest:", &self.descriptor.digest),
        ]))?;
        if !is_index(&self.descriptor.media_type) {
            return Ok(());
        }
        f.write_str(&tabulate(&[cell("", ""), cell("Manifests:", "")]))?;
        let mut rows = Vec::new();
        for (i, m) in self.manifests.iter().enumerate() {
            if i > 0 {
                rows.push(cell("", ""));
            }
            rows.push(cell("  Name:", &m.name));
            rows.push(cell("  MediaType:", &m.descriptor.media_type));
            let Some(p) = &m.descriptor.platform else {
                continue;
            };
            rows.push(cell("  Platform:", &p.to_string()));
            if let Some(v) = p.os_version.as_deref().filter(|v| !v.is_empty()) {
                rows.push(cell("  OSVersion:", v));
            }
            if let Some(feats) = p.os_features.as_ref().filter(|f| !f.is_empty()) {
                rows.push(cell("  OSFeatures:", &feats.join(", ")));
            }
            if let Some(urls) = m.descriptor.urls.as_ref().filter(|u| !u.is_empty()) {
                rows.push(cell("  URLs:", &urls.join(", ")));
            }
            if let Some(a) = m.descriptor.annotations.as_ref().filter(|a| !a.is_empty()) {
                rows.push(cell("  Annotations:", ""));
                f.write_str(&tabulate(&std::mem::take(&mut rows)))?;
                let notes: Vec<_> = a
                    .iter()
                    .map(|(k, v)| (format!("    {k}:"), v.clone()))
                    .collect();
                f.write_str(&tabulate(&notes))?;
            }
        }
        f.write_str(&tabulate(&rows))
    }
}

/// One Go `tabwriter` block of `cell<TAB>rest` lines (padding 1): the first cells padded
/// to the widest plus one space.
fn tabulate(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(a, _)| a.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (a, b) in rows {
        out.push_str(a);
        out.extend(std::iter::repeat_n(' ', width - a.chars().count()));
        out.push_str(b);
        out.push('\n');
    }
    out
}

impl Client {
    /// Combines `sources` into one index and pushes it under every tag in `tags`, as
    /// `buildx imagetools create` does.
    ///
    /// Each source may be an index (its entries are taken) or an image manifest (its
    /// platform is read from its config). Entries with the same digest are merged (a later
    /// platform wins, annotations are merged). Manifests and blobs a tag's repository lacks
    /// are mounted (same registry) or copied first. A single index source without
    /// annotations is pushed unchanged, byte for byte. The result is a Docker manifest list
    /// when every entry is a Docker media type, an OCI index otherwise.
    ///
    /// `annotations` keys are buildx's `TYPE[PLATFORM]:KEY`: `index:KEY` annotates the index,
    /// `manifest-descriptor:KEY` every entry (`manifest-descriptor[linux/arm64]:KEY` only
    /// that platform's). As in buildx they apply only to an OCI index (a Docker list has no
    /// annotations); `manifest:`, `index-descriptor:` and unprefixed keys are rejected.
    /// With `dry_run` nothing is written.
    ///
    /// # Deviation
    /// R1: the index JSON has buildx's two-space layout and field order, but `<`, `>` and
    /// `&` in annotation values are not escaped as Go does. R2: attestations and signatures
    /// found only through the Referrers API are not copied, and there is no platform filter.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for no sources, a schema1 source or an unsupported annotation
    /// type; any error of the reads and writes involved.
    pub async fn create_index(
        &self,
        sources: &[Reference],
        tags: &[Reference],
        annotations: &BTreeMap<String, String>,
        dry_run: bool,
    ) -> Result<CreatedIndex> {
        if sources.is_empty() {
            return Err(Error::Unsupported("no source image given".into()));
        }
        let annotations = annotations
            .iter()
            .map(|(k, v)| Ok((parse_annotation_key(k)?, v.clone())))
            .collect::<Result<Vec<_>>>()?;
        let mut fetched = Vec::with_capacity(sources.len());
        for src in sources {
            let (desc, body) = self.manifest(src).await?;
            Client::check_indexable(src, &desc.media_type)?;
            fetched.push((src, desc, body));
        }
        let (descriptor, bytes, entries) =
            if fetched.len() == 1 && annotations.is_empty() && is_index(&fetched[0].1.media_type) {
                let (src, desc, body) = &fetched[0];
                let idx = decode_index(src, body)?;
                let entries = idx.manifests.into_iter().map(|d| (*src, d)).collect();
                (desc.clone(), body.clone(), entries)
            } else {
                self.combine(&fetched, &annotations).await?
            };
        if !dry_run {
            for tag in tags {
                for (src, entry) in &entries {
                    self.copy_manifest(src, tag, entry).await?;
                }
                let target = match tag.tag() {
                    Some(t) => tag.with_tag(t),
                    None => tag.with_digest(&descriptor.digest),
                };
                self.put_manifest(&target, &descriptor.media_type, bytes.clone())
                    .await?;
            }
        }
        Ok(CreatedIndex { descriptor, bytes })
    }

    async fn combine<'a>(
        &self,
        fetched: &[(&'a Reference, Descriptor, Bytes)],
        annotations: &[(AnnotationKey, String)],
    ) -> Result<(Descriptor, Bytes, Vec<(&'a Reference, Descriptor)>)> {
        let mut entries: Vec<(&Reference, Descriptor)> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut add = |src: &'a Reference, d: Descriptor| match seen.get(&d.digest) {
            Some(&i) => {
                let old = &mut entries[i].1;
                if old.media_type.is_empty() {
                    old.media_type = d.media_type;
                }
                if d.platform.is_some() {
                    old.platform = d.platform;
                }
                if let Some(a) = d.annotations {
                    old.annotations.get_or_insert_with(BTreeMap::new).extend(a);
                }
            }
            None => {
                seen.insert(d.digest.clone(), entries.len());
                entries.push((src, d));
            }
        };
        for (src, desc, body) in fetched {
            if is_index(&desc.media_type) {
                for d in decode_index(src, body)?.manifests {
                    add(src, d);
                }
            } else {
                let m: ImageManifest =
                    serde_json::from_slice(body).map_err(|source| Error::Decode {
                        what: format!("manifest {src}"),
                        source,
                    })?;
                let cfg = self.small_blob(src, &m.config).await?;
                let cfg: ImageConfig =
                    serde_json::from_slice(&cfg).map_err(|source| Error::Decode {
                        what: format!("image config of {src}"),
                        source,
                    })?;
                let mut d = Descriptor::of(&desc.media_type, body);
                // containerd's normalisation, as buildx applies it to a config's platform.
                let p = kbx_opts::Platform::new(
                    &cfg.os,
                    &cfg.architecture,
                    cfg.variant.as_deref().unwrap_or(""),
                );
                d.platform = Some(Platform {
                    architecture: p.architecture,
                    os: p.os,
                    os_version: None,
                    os_features: None,
                    variant: Some(p.variant).filter(|v| !v.is_empty()),
                });
                add(src, d);
            }
        }
        let all_docker = entries
            .iter()
            .all(|(_, d)| d.media_type.starts_with("application/vnd.docker."));
        let media_type = if all_docker {
            DOCKER_MANIFEST_LIST
        } else {
            OCI_INDEX
        };
        let mut index_annotations = BTreeMap::new();
        if media_type == OCI_INDEX {
            for (key, value) in annotations {
                match key {
                    AnnotationKey::Index(k) => {
                        index_annotations.insert(k.clone(), value.clone());
                    }
                    AnnotationKey::ManifestDescriptor { platform, key } => {
                        for (_, d) in &mut entries {
                            let matches = match platform {
                                None => true,
                                Some(p) => {
                                    d.platform.as_ref().is_some_and(|dp| dp.to_string() == *p)
                                }
                            };
                            if matches {
                                d.annotations
                                    .get_or_insert_with(BTreeMap::new)
                                    .insert(key.clone(), value.clone());
                            }
                        }
                    }
                }
            }
        }
        let manifests: Vec<Descriptor> = entries.iter().map(|(_, d)| d.clone()).collect();
        let out = IndexOut {
            schema_version: 2,
            media_type,
            manifests: &manifests,
            annotations: &index_annotations,
        };
        let bytes = serde_json::to_vec_pretty(&out).map_err(|source| Error::Decode {
            what: "the new index".into(),
            source,
        })?;
        Ok((
            Descriptor::of(media_type, &bytes),
            Bytes::from(bytes),
            entries,
        ))
    }

    /// What `buildx imagetools inspect` shows: name, media type, digest and, for an index,
    /// each entry's `name@digest`, media type and platform.
    ///
    /// # Errors
    /// As [`Client::manifest`]; [`Error::Decode`] for an unreadable index.
    pub async fn inspect(&self, r: &Reference) -> Result<Inspection> {
        let (descriptor, raw) = self.manifest(r).await?;
        let mut manifests = Vec::new();
        let mut annotations = BTreeMap::new();
        if is_index(&descriptor.media_type) {
            #[derive(serde::Deserialize)]
            struct WithAnnotations {
                #[serde(default)]
                annotations: BTreeMap<String, String>,
            }
            let idx = decode_index(r, &raw)?;
            if let Ok(a) = serde_json::from_slice::<WithAnnotations>(&raw) {
                annotations = a.annotations;
            }
            let base = match r.tag() {
                Some(t) => format!("{}:{t}", r.name()),
                None => r.name(),
            };
            manifests = idx
                .manifests
                .into_iter()
                .map(|d| InspectedManifest {
                    name: format!("{base}@{}", d.digest),
                    descriptor: d,
                })
                .collect();
        }
        Ok(Inspection {
            name: r.clone(),
            descriptor,
            raw,
            manifests,
            annotations,
        })
    }
}

fn decode_index(r: &Reference, body: &[u8]) -> Result<Index> {
    serde_json::from_slice(body).map_err(|source| Error::Decode {
        what: format!("index {r}"),
        source,
    })
}

/// A typed `--annotation` key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AnnotationKey {
    Index(String),
    ManifestDescriptor {
        platform: Option<String>,
        key: String,
    },
}

/// Parses buildx's `TYPE[PLATFORM]:KEY`.
fn parse_annotation_key(raw: &str) -> Result<AnnotationKey> {
    let typed = raw.split_once(':').and_then(|(head, key)| {
        let (kind, platform) = match head.split_once('[') {
            Some((k, rest)) => (k, Some(rest.strip_suffix(']')?.to_owned())),
            None => (head, None),
        };
        matches!(
            kind,
            "index" | "manifest" | "manifest-descriptor" | "index-descriptor"
        )
        .then(|| (kind, platform, key.to_owned()))
    });
    match typed {
        Some(("index", None, key)) => Ok(AnnotationKey::Index(key)),
        Some(("manifest-descriptor", platform, key)) => {
            Ok(AnnotationKey::ManifestDescriptor { platform, key })
        }
        Some(("index-descriptor", _, _)) => Err(Error::Unsupported(
            "\"index-descriptor\" annotations are invalid while creating an image".into(),
        )),
        Some((kind, _, _)) => Err(Error::Unsupported(format!(
            "{kind:?} annotations are not supported yet"
        ))),
        None => Err(Error::Unsupported(
            "\"\" annotations are not supported yet".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_text_splits_tabwriter_blocks_at_annotations() {
        let d = |digest: &str, arch: &str, notes: &[(&str, &str)]| InspectedManifest {
            name: format!("r/a:t@{digest}"),
            descriptor: Descriptor {
                media_type: "m".into(),
                digest: digest.into(),
                size: 1,
                annotations: (!notes.is_empty()).then(|| {
                    notes
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                }),
                platform: Some(Platform {
                    architecture: arch.into(),
                    os: "linux".into(),
                    ..Platform::default()
                }),
                urls: None,
                artifact_type: None,
            },
        };
        let i = Inspection {
            name: Reference::parse("r/a:t").expect("ref"),
            descriptor: Descriptor::of(OCI_INDEX, b"{}"),
            raw: Bytes::new(),
            manifests: vec![
                d(
                    "sha256:1",
                    "amd64",
                    &[("org.k", "v"), ("a.much.longer.key", "w")],
                ),
                d("sha256:2", "arm64", &[]),
            ],
            annotations: BTreeMap::new(),
        };
        let want = [
            "Name:      docker.io/r/a:t",
            &format!("MediaType: {OCI_INDEX}"),
            "Digest:    sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "           ",
            "Manifests: ",
            "  Name:        r/a:t@sha256:1",
            "  MediaType:   m",
            "  Platform:    linux/amd64",
            "  Annotations: ",
            "    a.much.longer.key: w",
            "    org.k:             v",
            "             ",
            "  Name:      r/a:t@sha256:2",
            "  MediaType: m",
            "  Platform:  linux/arm64",
        ];
        assert_eq!(i.to_string(), want.join("\n") + "\n");
    }

    #[test]
    fn annotation_keys() {
        assert_eq!(
            parse_annotation_key("index:org.opencontainers.image.title").unwrap(),
            AnnotationKey::Index("org.opencontainers.image.title".into())
        );
        assert_eq!(
            parse_annotation_key("manifest-descriptor[linux/arm64]:a.b").unwrap(),
            AnnotationKey::ManifestDescriptor {
                platform: Some("linux/arm64".into()),
                key: "a.b".into()
            }
        );
        let e = parse_annotation_key("org.example").unwrap_err().to_string();
        assert_eq!(e, r#""" annotations are not supported yet"#);
        let e = parse_annotation_key("manifest:x").unwrap_err().to_string();
        assert_eq!(e, r#""manifest" annotations are not supported yet"#);
        assert!(parse_annotation_key("index-descriptor:x").is_err());
    }
}

//! Named build contexts (`--build-context name=value`) and how they become frontend attributes
//! and session directories.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::{Error, Result};

/// The frontend capability buildx announces whenever it sends named contexts.
pub(crate) const CONTEXTS_CAP: &str = "moby.buildkit.frontend.contexts+forward";

/// Where a named context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NamedContextSource {
    /// A local directory, served through the session as an extra FileSync directory.
    Local(PathBuf),
    /// A value the frontend resolves itself, sent as it is: `docker-image://ref`,
    /// `target:stage`, an http(s) URL or a Git URL.
    Frontend(String),
    /// `oci-layout://DIR[:TAG][@DIGEST]`: an image in a local OCI layout, served to the daemon
    /// through the session content store (BuildKit v0.11+).
    OciLayout {
        /// The layout directory (with `index.json` and `blobs/`).
        dir: PathBuf,
        /// The tag looked up in `index.json` when no digest is given (default `latest`).
        tag: String,
        /// The image's digest, when given.
        digest: Option<String>,
    },
}

/// One `--build-context name=value`: `FROM name`, `COPY --from=name` and
/// `RUN --mount=from=name` in the Dockerfile then refer to `value` instead of an image or a
/// stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedContext {
    /// The name the Dockerfile uses, normalised like buildx does (`docker.io/library/` and a
    /// `:latest` tag are dropped).
    pub name: String,
    /// What it resolves to.
    pub source: NamedContextSource,
}

impl NamedContext {
    /// Parses buildx's `--build-context` syntax, `name=value`, with
    /// [`kbx_opts::BuildContext`]: values starting with `docker-image://` or `target:`,
    /// http(s) URLs and Git URLs go to the frontend as they are; `oci-layout://DIR[:TAG][@DIGEST]`
    /// names an image in a local OCI layout; anything else is a local directory.
    ///
    /// ```
    /// use kbx_buildkit::{NamedContext, NamedContextSource};
    /// let c = NamedContext::parse("docker.io/library/alpine:latest=docker-image://busybox")?;
    /// assert_eq!(c.name, "alpine");
    /// assert_eq!(c.source, NamedContextSource::Frontend("docker-image://busybox".into()));
    /// let c = NamedContext::parse("src=../lib")?;
    /// assert_eq!(c.source, NamedContextSource::Local("../lib".into()));
    /// let c = NamedContext::parse("base=oci-layout:///srv/layout:v1")?;
    /// assert_eq!(
    ///     c.source,
    ///     NamedContextSource::OciLayout { dir: "/srv/layout".into(), tag: "v1".into(), digest: None }
    /// );
    /// assert!(NamedContext::parse("Upper=dir").is_err());
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Flag`] when `=` is missing, the name is not a valid reference or the value is
    /// empty or malformed (see [`kbx_opts::BuildContext::parse`] for its deviations).
    pub fn parse(spec: &str) -> Result<Self> {
        let c = kbx_opts::BuildContext::parse(spec)?;
        let source = match c.source {
            kbx_opts::ContextSource::Local(dir) => NamedContextSource::Local(dir.into()),
            kbx_opts::ContextSource::OciLayout { dir, tag, digest } => {
                NamedContextSource::OciLayout {
                    dir: dir.into(),
                    tag,
                    digest,
                }
            }
            kbx_opts::ContextSource::Frontend(v) => NamedContextSource::Frontend(v),
            other => {
                return Err(Error::InvalidOptions(format!(
                    "--build-context {spec:?}: unsupported source {other:?}"
                )));
            }
        };
        Ok(NamedContext {
            name: c.name,
            source,
        })
    }

    /// The session directory name for a local context: the name itself, or `_context` /
    /// `_dockerfile` for the two names the main context already uses.
    pub(crate) fn local_name(&self) -> String {
        match self.name.as_str() {
            "context" | "dockerfile" => format!("_{}", self.name),
            n => n.to_owned(),
        }
    }
}

/// Frontend attributes and session directories for a set of named contexts.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ContextPlan {
    /// `context:<name>` and `frontend.caps`.
    pub(crate) attrs: BTreeMap<String, String>,
    /// Session directory name → absolute directory.
    pub(crate) dirs: HashMap<String, PathBuf>,
    /// Content store ID (`oci:<random name>`) → OCI layout directory.
    pub(crate) stores: HashMap<String, PathBuf>,
}

/// The digest of the image `tag` names in the layout `dir`, as buildx resolves it: by image
/// name or tag in `index.json`, else the index's only entry.
fn resolve_layout_digest(dir: &std::path::Path, tag: &str, spec: &str) -> Result<String> {
    let unresolved = |why: String| {
        Error::InvalidOptions(format!(
            "oci-layout reference {spec:?} could not be resolved: {why}"
        ))
    };
    let entry = match crate::content::index_entry(dir, tag)? {
        None => {
            return Err(unresolved(format!(
                "could not read {}",
                dir.join("index.json").display()
            )));
        }
        Some(Some(e)) => Some(e),
        Some(None) => crate::content::index_single(dir)?,
    };
    let digest = entry
        .as_ref()
        .and_then(|e| e.get("digest"))
        .and_then(|d| d.as_str())
        .ok_or_else(|| unresolved("failed to resolve digest".to_owned()))?;
    if !kbx_opts::is_digest(digest) {
        return Err(unresolved(format!("invalid digest {digest}")));
    }
    Ok(digest.to_owned())
}

/// Resolves local directories (they must exist) and builds the attributes buildx sends.
pub(crate) fn plan(contexts: &[NamedContext]) -> Result<ContextPlan> {
    let mut out = ContextPlan::default();
    for c in contexts {
        out.attrs
            .insert("frontend.caps".to_owned(), CONTEXTS_CAP.to_owned());
        let value = match &c.source {
            NamedContextSource::Frontend(v) => v.clone(),
            NamedContextSource::OciLayout { dir, tag, digest } => {
                let spec = match digest {
                    Some(d) => format!("oci-layout://{}:{tag}@{d}", dir.display()),
                    None => format!("oci-layout://{}:{tag}", dir.display()),
                };
                let digest = match digest {
                    Some(d) => d.clone(),
                    None => resolve_layout_digest(dir, tag, &spec)?,
                };
                if !dir.is_dir() {
                    return Err(Error::InvalidOptions(format!(
                        "invalid store at {}: not a directory",
                        dir.display()
                    )));
                }
                let store = crate::solve::random_id();
                out.stores.insert(format!("oci:{store}"), dir.clone());
                format!("oci-layout://{store}:{tag}@{digest}")
            }
            NamedContextSource::Local(p) => {
                let abs = std::fs::canonicalize(p)
                    .map_err(|e| Error::io("open build context", p.clone(), e))?;
                if !abs.is_dir() {
                    return Err(Error::InvalidOptions(format!(
                        "build context {:?} ({}) is not a directory",
                        c.name,
                        p.display()
                    )));
                }
                let local = c.local_name();
                out.dirs.insert(local.clone(), abs);
                format!("local:{local}")
            }
        };
        out.attrs.insert(format!("context:{}", c.name), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_normalised_from_kbx_opts() {
        assert_eq!(
            NamedContext::parse("docker.io/library/alpine:latest=x")
                .expect("ok")
                .name,
            "alpine"
        );
        assert!(NamedContext::parse("Alpine=x").is_err());
        assert!(NamedContext::parse("x=").is_err());
    }

    #[test]
    fn values_are_classified() {
        let src = |v: &str| NamedContext::parse(&format!("n={v}")).expect("ok").source;
        for v in [
            "docker-image://busybox:1.36",
            "target:base",
            "https://example.com/ctx.tar",
            "http://example.com/x",
            "git://example.com/repo",
            "git@github.com:o/r.git#main",
            "ssh://git@example.com/r.git",
            "github.com/o/r",
        ] {
            assert_eq!(src(v), NamedContextSource::Frontend(v.into()), "{v}");
        }
        for v in ["../lib", "/abs/dir", "dir:with:colons", "git@noremote"] {
            assert_eq!(src(v), NamedContextSource::Local(v.into()), "{v}");
        }
        let e = NamedContext::parse("n=oci-layout:///store@sha256:abc").expect_err("oci");
        assert!(e.to_string().contains("invalid digest"), "{e}");
        let d = format!("sha256:{}", "ab".repeat(32));
        let oci = |dir: &str, tag: &str, digest: Option<&str>| NamedContextSource::OciLayout {
            dir: dir.into(),
            tag: tag.into(),
            digest: digest.map(str::to_owned),
        };
        assert_eq!(src("oci-layout:///l"), oci("/l", "latest", None));
        assert_eq!(src("oci-layout://l:v2"), oci("l", "v2", None));
        assert_eq!(
            src(&format!("oci-layout:///l@{d}")),
            oci("/l", "latest", Some(&d))
        );
        assert_eq!(
            src(&format!("oci-layout:///l:t@{d}")),
            oci("/l", "t", Some(&d))
        );
        assert!(NamedContext::parse("n=oci-layout://").is_err());
    }

    #[test]
    fn plan_maps_locals_to_session_dirs_and_attrs() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("lib")).expect("mkdir");
        std::fs::write(d.path().join("file"), b"x").expect("write");
        let lib = d.path().join("lib");
        let contexts = [
            NamedContext::parse(&format!("lib={}", lib.display())).expect("ok"),
            NamedContext::parse(&format!("context={}", lib.display())).expect("ok"),
            NamedContext::parse("alpine=docker-image://busybox").expect("ok"),
        ];
        let p = plan(&contexts).expect("plan");
        let canon = std::fs::canonicalize(&lib).expect("canon");
        assert_eq!(p.attrs["frontend.caps"], CONTEXTS_CAP);
        assert_eq!(p.attrs["context:lib"], "local:lib");
        assert_eq!(p.attrs["context:context"], "local:_context");
        assert_eq!(p.attrs["context:alpine"], "docker-image://busybox");
        assert_eq!(p.attrs.len(), 4);
        assert_eq!(p.dirs["lib"], canon);
        assert_eq!(p.dirs["_context"], canon);
        assert_eq!(p.dirs.len(), 2);

        assert_eq!(plan(&[]).expect("empty"), ContextPlan::default());

        // oci-layout: the digest comes from index.json (by tag, else the single entry), the
        // layout is served as content store `oci:<name>`.
        let layout = d.path().join("layout");
        std::fs::create_dir(&layout).expect("mkdir");
        let (d1, d2) = (
            format!("sha256:{}", "11".repeat(32)),
            format!("sha256:{}", "22".repeat(32)),
        );
        std::fs::write(
            layout.join("index.json"),
            format!(
                r#"{{"manifests":[{{"digest":"{d1}","annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
            ),
        )
        .expect("write");
        let spec = |s: &str| NamedContext::parse(&format!("base={s}")).expect("parse");
        for (value, want) in [
            (format!("oci-layout://{}:v1", layout.display()), &d1),
            // No "latest" entry: the only entry is taken.
            (format!("oci-layout://{}", layout.display()), &d1),
            (format!("oci-layout://{}@{d2}", layout.display()), &d2),
        ] {
            let p = plan(&[spec(&value)]).expect("plan");
            let attr = &p.attrs["context:base"];
            let (store, rest) = attr
                .strip_prefix("oci-layout://")
                .and_then(|r| r.split_once(':'))
                .expect("oci-layout://STORE:TAG@DIGEST");
            assert!(rest.ends_with(&format!("@{want}")), "{attr}");
            assert_eq!(p.stores[&format!("oci:{store}")], layout, "{attr}");
            assert!(p.dirs.is_empty());
        }
        std::fs::write(
            layout.join("index.json"),
            format!(r#"{{"manifests":[{{"digest":"{d1}"}},{{"digest":"{d2}"}}]}}"#),
        )
        .expect("write");
        let e = plan(&[spec(&format!("oci-layout://{}:nope", layout.display()))])
            .expect_err("ambiguous");
        assert!(e.to_string().contains("could not be resolved"), "{e}");
        let e = plan(&[spec(&format!(
            "oci-layout://{}",
            d.path().join("none").display()
        ))])
        .expect_err("no index");
        assert!(e.to_string().contains("could not be resolved"), "{e}");
        let file = NamedContext::parse(&format!("f={}", d.path().join("file").display()));
        let e = plan(&[file.expect("parse")]).expect_err("a file");
        assert!(e.to_string().contains("not a directory"), "{e}");
        let missing = NamedContext::parse(&format!("m={}", d.path().join("nope").display()));
        assert!(matches!(
            plan(&[missing.expect("parse")]),
            Err(Error::Io { .. })
        ));
    }
}

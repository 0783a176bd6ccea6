//! Dockerfile builds: `Solve` with the `dockerfile.v0` frontend, the session that serves the
//! context, the exporter, and the progress stream, all run together.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard_buildkit_proto::moby::buildkit::v1::{
    CacheOptions, CacheOptionsEntry, Exporter, SolveRequest, StatusRequest, StatusResponse,
};
use tokio::sync::watch;

use crate::client::Client;
use crate::progress::{ProgressEvent, ProgressTracker, SolveStatus};
use crate::session::{self, ExportTarget, SessionConfig};
use crate::{Error, Result};

/// Where the result of a build goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Docker only: the Engine's image store, tagged with `names`.
    Moby {
        /// Image names (`repo:tag`).
        names: Vec<String>,
    },
    /// buildkitd only: an image, optionally pushed.
    Image {
        /// Image names.
        names: Vec<String>,
        /// Push to the registry.
        push: bool,
    },
    /// The result's filesystem, written under `dest`.
    Local {
        /// Destination directory (created if missing).
        dest: PathBuf,
    },
    /// The result's filesystem as a tar archive, to `dest` or stdout when `None`.
    Tar {
        /// Destination file.
        dest: Option<PathBuf>,
    },
    /// buildkitd only: an OCI image layout tarball.
    Oci {
        /// Destination file, stdout when `None`.
        dest: Option<PathBuf>,
        /// Image names recorded in the layout (`name=`, or the `-t` tags, which replace it).
        names: Vec<String>,
    },
    /// buildkitd only: an OCI image layout written as a directory (`type=oci,tar=false`):
    /// the daemon writes the blobs through the session content store and `dest/index.json`
    /// names the image afterwards (under each of `names`, or the tag `latest`), as buildx does.
    OciDir {
        /// The layout directory (created if missing; an existing layout is added to).
        dest: PathBuf,
        /// Image names recorded in the layout (`name=`, or the `-t` tags, which replace it).
        names: Vec<String>,
    },
    /// buildkitd only: the `docker` exporter's image written as an OCI layout directory
    /// (`type=docker,tar=false`), the same way as [`Output::OciDir`] but with Docker media
    /// types.
    ///
    /// # Deviation
    /// Buildx 0.29.1 parses this output the same way but fails it before the solve (`both
    /// file and store output is not supported by docker exporter`: it also attaches its Engine
    /// loader); kbx writes the layout (`docs/deviations.md`, C8).
    DockerDir {
        /// The layout directory (created if missing; an existing layout is added to).
        dest: PathBuf,
        /// Image names recorded in the layout (`name=`, or the `-t` tags, which replace it).
        names: Vec<String>,
    },
    /// buildkitd only: a `docker load`-able tarball.
    Docker {
        /// Destination file, stdout when `None`.
        dest: Option<PathBuf>,
        /// Image names the archive tags (`name=`, or the `-t` tags, which replace it).
        names: Vec<String>,
    },
    /// The `docker` exporter's archive loaded into a Docker Engine's image store as it streams
    /// in (`POST /images/load`, what `docker load` does): buildx's `--load`, and `type=docker`
    /// without `dest`, on daemons other than the Engine's own BuildKit. The build shows an
    /// `importing to docker` step and [`BuildResult::loaded`] lists what the Engine loaded. A
    /// Docker Engine's own BuildKit stores the image directly instead (a `moby` export), as
    /// buildx's docker driver does.
    ///
    /// Refused before the solve for more than one platform or with attestations (the docker
    /// archive holds one image, as in buildx), and when the Engine does not answer.
    ///
    /// # Deviation
    /// The Engine is checked (`GET /_ping`) before the build starts; buildx finds out when the
    /// export begins, after the build. An Engine using the containerd image store gets the
    /// `docker` archive too (buildx sends it an `oci` archive, which can hold several platforms).
    DockerLoad {
        /// The Engine; `None` is the one named by `DOCKER_HOST` (default
        /// `unix:///var/run/docker.sock`), resolved when the build starts.
        engine: Option<crate::Address>,
        /// Image names the archive tags (`name=`, or the `-t` tags, which replace it).
        names: Vec<String>,
    },
    /// `type=cacheonly`: build and keep nothing but the build cache. No exporter is sent, as
    /// buildx does; unlike no output at all, it also opts out of a driver's default export
    /// (the docker driver's image store, `--load`).
    CacheOnly,
}

/// One `--output` value: where the result goes, and the exporter attributes kbx does not
/// interpret, passed to BuildKit as typed (`compression=zstd`, `oci-mediatypes=true`,
/// `annotation.KEY=V`, `push-by-digest=true`, `unpack=false`, …), as buildx does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The exporter and its destination.
    pub output: Output,
    /// Exporter attributes sent as they are, added to (and overriding) those of
    /// [`Export::output`].
    pub attrs: BTreeMap<String, String>,
}

impl From<Output> for Export {
    fn from(output: Output) -> Self {
        Export {
            output,
            attrs: BTreeMap::new(),
        }
    }
}

impl Export {
    /// Parses buildx's `--output` syntax (one CSV record, read by [`kbx_opts::ExportEntry`]),
    /// then checks it as buildx does before the build: `type=local,dest=DIR` (or a bare
    /// `DIR`), `type=tar,dest=FILE` (`-` or no `dest` = stdout, also a bare `-`),
    /// `type=moby,name=a:b`, `type=image,name=…,push=true`, `type=registry` (`image` with
    /// `push=true` and, unless given, `unpack=false`), `type=oci,dest=…[,tar=false]`,
    /// `type=docker,dest=…[,tar=false]` (without `dest`: loaded into the Docker Engine,
    /// [`Output::DockerLoad`]; `tar=false`: a layout directory, [`Output::DockerDir`]),
    /// `type=cacheonly`. `name=` may list several names,
    /// comma-separated in a quoted field. Every other attribute is kept in
    /// [`Export::attrs`] and reaches the exporter unchanged.
    ///
    /// ```
    /// use kbx_buildkit::{Export, Output};
    /// let e = Export::parse("type=oci,dest=o.tar,compression=zstd,annotation.org.example=v")?;
    /// assert_eq!(e.output, Output::Oci { dest: Some("o.tar".into()), names: vec![] });
    /// assert_eq!(e.attrs["compression"], "zstd");
    /// assert_eq!(e.attrs["annotation.org.example"], "v");
    /// let r = Export::parse("type=registry,name=r/app:1")?;
    /// assert_eq!(r.output, Output::Image { names: vec!["r/app:1".into()], push: true });
    /// assert_eq!(r.attrs["unpack"], "false");
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Flag`] when the value does not parse; [`Error::InvalidOptions`] for unknown
    /// types, an invalid `push` for `type=image`, or a missing or unusable `dest`.
    pub fn parse(spec: &str) -> Result<Self> {
        let entry = kbx_opts::ExportEntry::parse(spec)?;
        let bad = |m: String| Error::InvalidOptions(format!("--output {spec:?}: {m}"));
        let kind = entry.kind.as_str();
        let mut attrs = entry.attrs;
        let named = matches!(kind, "moby" | "image" | "registry" | "oci" | "docker");
        let names: Vec<String> = match attrs.get("name") {
            Some(v) if named => v
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        if named {
            attrs.remove("name");
        }
        let mut push = false;
        if kind == "image"
            && let Some(v) = attrs.remove("push")
        {
            push = kbx_opts::parse_bool(&v).map_err(|e| bad(format!("push: {e}")))?;
        }
        if kind == "registry" {
            // buildx: `registry` is `image` with push=true, and skips unpacking unless told.
            attrs.remove("push");
            attrs
                .entry("unpack".to_owned())
                .or_insert_with(|| "false".to_owned());
        }
        // buildx: a `tar` value that is not a Go boolean means the default, true.
        let mut tar = true;
        if matches!(kind, "oci" | "docker")
            && let Some(v) = attrs.remove("tar")
        {
            tar = kbx_opts::parse_bool(&v).unwrap_or(true);
        }
        let dir_dest = |dest: Option<String>| match dest.as_deref() {
            None | Some("") => Err(bad(format!("dest is required for {kind} exporter"))),
            Some("-") => Err(bad(format!("dest cannot be stdout for {kind} exporter"))),
            Some(d) => Ok(PathBuf::from(d)),
        };
        let file_dest = |dest: Option<String>| match dest.as_deref() {
            None | Some("" | "-") => None,
            Some(d) => Some(PathBuf::from(d)),
        };
        let output = match kind {
            "local" => Output::Local {
                dest: dir_dest(entry.dest)?,
            },
            "tar" => Output::Tar {
                dest: file_dest(entry.dest),
            },
            "oci" if !tar => Output::OciDir {
                dest: dir_dest(entry.dest)?,
                names,
            },
            "docker" if !tar => Output::DockerDir {
                dest: dir_dest(entry.dest)?,
                names,
            },
            "oci" => Output::Oci {
                dest: file_dest(entry.dest),
                names,
            },
            "docker" if entry.dest.as_deref().unwrap_or_default().is_empty() => {
                Output::DockerLoad {
                    engine: None,
                    names,
                }
            }
            "docker" => Output::Docker {
                dest: file_dest(entry.dest),
                names,
            },
            "moby" => Output::Moby { names },
            "image" => Output::Image { names, push },
            "registry" => Output::Image { names, push: true },
            // buildx's "keep nothing" output: no exporter, no attributes.
            "cacheonly" => return Ok(Output::CacheOnly.into()),
            other => return Err(bad(format!("unknown type {other:?}"))),
        };
        Ok(Export { output, attrs })
    }
}

impl Output {
    /// Parses buildx's `--output` syntax and keeps where the result goes; the exporter
    /// attributes passed through to BuildKit are dropped (see [`Export::parse`], which keeps
    /// them).
    ///
    /// ```
    /// use kbx_buildkit::Output;
    /// assert_eq!(
    ///     Output::parse("type=local,dest=out")?,
    ///     Output::Local { dest: "out".into() }
    /// );
    /// assert_eq!(Output::parse("type=tar,dest=-")?, Output::Tar { dest: None });
    /// assert_eq!(
    ///     Output::parse(r#"type=image,"name=r/app:1,r/app:latest",push=true"#)?,
    ///     Output::Image { names: vec!["r/app:1".into(), "r/app:latest".into()], push: true }
    /// );
    /// assert_eq!(
    ///     Output::parse("type=docker,name=app:1")?,
    ///     Output::DockerLoad { engine: None, names: vec!["app:1".into()] }
    /// );
    /// assert_eq!(Output::parse("type=cacheonly")?, Output::CacheOnly);
    /// assert_eq!(
    ///     Output::parse("type=local").unwrap_err().to_string(),
    ///     r#"invalid build options: --output "type=local": dest is required for local exporter"#
    /// );
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Export::parse`].
    pub fn parse(spec: &str) -> Result<Self> {
        Ok(Export::parse(spec)?.output)
    }

    /// The exporter type on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Output::Moby { .. } => "moby",
            Output::Image { .. } => "image",
            Output::Local { .. } => "local",
            Output::Tar { .. } => "tar",
            Output::Oci { .. } | Output::OciDir { .. } => "oci",
            Output::Docker { .. } | Output::DockerDir { .. } | Output::DockerLoad { .. } => {
                "docker"
            }
            Output::CacheOnly => "cacheonly",
        }
    }

    /// The image names of an output that has them: `image`, `oci` and `docker` (to a file, a
    /// directory or the Engine), the outputs buildx's `-t` names; `None` for the others
    /// (`moby` included: buildx's `-t` reaches it as an `image` export first).
    ///
    /// ```
    /// use kbx_buildkit::Output;
    /// let mut o = Output::parse("type=oci,dest=o.tar,name=x")?;
    /// if let Some(names) = o.names_mut() {
    ///     *names = vec!["a".into(), "b".into()];
    /// }
    /// let names = vec!["a".to_owned(), "b".to_owned()];
    /// assert_eq!(o, Output::Oci { dest: Some("o.tar".into()), names });
    /// assert!(Output::parse("type=local,dest=d")?.names_mut().is_none());
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    pub fn names_mut(&mut self) -> Option<&mut Vec<String>> {
        match self {
            Output::Image { names, .. }
            | Output::Oci { names, .. }
            | Output::OciDir { names, .. }
            | Output::Docker { names, .. }
            | Output::DockerDir { names, .. }
            | Output::DockerLoad { names, .. } => Some(names),
            Output::Moby { .. } | Output::Local { .. } | Output::Tar { .. } | Output::CacheOnly => {
                None
            }
        }
    }

    /// Whether a tar stream goes to standard output (`type=tar`, `oci` or `docker` without a
    /// file): two such outputs in one build are refused.
    pub fn writes_stdout(&self) -> bool {
        matches!(
            self,
            Output::Tar { dest: None }
                | Output::Oci { dest: None, .. }
                | Output::Docker { dest: None, .. }
        )
    }

    /// The layout directory of an output written through the session content store
    /// (`oci`/`docker` with `tar=false`).
    fn layout_dir(&self) -> Option<&Path> {
        match self {
            Output::OciDir { dest, .. } | Output::DockerDir { dest, .. } => Some(dest),
            _ => None,
        }
    }

    fn attrs(&self) -> HashMap<String, String> {
        let mut a = HashMap::new();
        match self {
            Output::Moby { names }
            | Output::Image { names, .. }
            | Output::Oci { names, .. }
            | Output::OciDir { names, .. }
            | Output::Docker { names, .. }
            | Output::DockerDir { names, .. }
            | Output::DockerLoad { names, .. }
                if !names.is_empty() =>
            {
                a.insert("name".to_owned(), names.join(","));
            }
            _ => {}
        }
        if let Output::Image { push: true, .. } = self {
            a.insert("push".to_owned(), "true".to_owned());
        }
        if self.layout_dir().is_some() {
            a.insert("tar".to_owned(), "false".to_owned());
        }
        a
    }

    fn target(&self) -> Option<ExportTarget> {
        match self {
            Output::Local { dest } => Some(ExportTarget::Dir(dest.clone())),
            Output::Tar { dest } | Output::Oci { dest, .. } | Output::Docker { dest, .. } => {
                Some(ExportTarget::Bytes(dest.clone()))
            }
            Output::Moby { .. }
            | Output::Image { .. }
            | Output::OciDir { .. }
            | Output::DockerDir { .. }
            | Output::DockerLoad { .. }
            | Output::CacheOnly => None,
        }
    }
}

/// One `--cache-from` / `--cache-to` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// `registry`, `inline`, `local`, `gha`, `s3`, `azblob`.
    pub kind: String,
    /// The other attributes (`ref`, `mode`, …).
    pub attrs: BTreeMap<String, String>,
}

impl CacheEntry {
    /// Parses one entry in buildx's syntax (one CSV record, read by
    /// [`kbx_opts::CacheEntry`]): `type=registry,ref=repo:tag,mode=max`, or a bare reference,
    /// which means `type=registry,ref=<it>`.
    ///
    /// ```
    /// use kbx_buildkit::CacheEntry;
    /// let e = CacheEntry::parse("type=registry,ref=r/cache,mode=max")?;
    /// assert_eq!((e.kind.as_str(), e.attrs["mode"].as_str()), ("registry", "max"));
    /// assert_eq!(CacheEntry::parse("r/cache")?.attrs["ref"], "r/cache");
    /// let e = CacheEntry::parse(r#"type=local,"dest=/cache/a,b""#)?;
    /// assert_eq!(e.attrs["dest"], "/cache/a,b");
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Flag`] when the value does not parse or `type` is missing from a key/value
    /// form.
    pub fn parse(spec: &str) -> Result<Self> {
        Ok(kbx_opts::CacheEntry::parse(spec)?.into())
    }

    /// Parses one `--cache-from`/`--cache-to` value as buildx does: without `=`, a CSV list
    /// of registry references, one entry each (`r/a,r/b`); otherwise one entry; empty, none.
    ///
    /// ```
    /// use kbx_buildkit::CacheEntry;
    /// let refs = CacheEntry::parse_list("r/a,r/b")?;
    /// assert_eq!(refs.len(), 2);
    /// assert_eq!(refs[1].attrs["ref"], "r/b");
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`CacheEntry::parse`].
    pub fn parse_list(spec: &str) -> Result<Vec<Self>> {
        Ok(kbx_opts::CacheEntry::parse_list(spec)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    fn to_proto(&self) -> CacheOptionsEntry {
        CacheOptionsEntry {
            r#type: self.kind.clone(),
            attrs: self.attrs.clone().into_iter().collect(),
        }
    }

    /// `{"Type":…,"Attrs":{…}}`, as the frontend's `cache-imports` attribute wants it.
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "Type": self.kind, "Attrs": self.attrs })
    }
}

impl From<kbx_opts::CacheEntry> for CacheEntry {
    fn from(e: kbx_opts::CacheEntry) -> Self {
        CacheEntry {
            kind: e.kind,
            attrs: e.attrs,
        }
    }
}

/// A Dockerfile build: `docker buildx build` flags that reach the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// The build context directory, or `-`: an archive or a Dockerfile on standard input (see
    /// [`Client::build_with_stdin`]).
    pub context: PathBuf,
    /// The Dockerfile (`-f`); default `<context>/Dockerfile`. May be outside the context; `-`
    /// reads it from standard input; with an archive context, a path inside the archive.
    pub dockerfile: Option<PathBuf>,
    /// The stage to build (`--target`).
    pub target: Option<String>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--platform` values (`os/arch[/variant]`).
    pub platforms: Vec<String>,
    /// `--no-cache`: sent as the frontend attribute `no-cache` with an empty value (no stage
    /// uses the cache); wins over [`BuildOptions::no_cache_filter`], as in buildx.
    pub no_cache: bool,
    /// `--no-cache-filter` stages: the frontend attribute `no-cache`, comma-joined.
    pub no_cache_filter: Vec<String>,
    /// `--add-host` values (`host=ip` or `host:ip`; `=` is looked for first), sent as the
    /// frontend attribute `add-hosts` (`host=ip`, comma-joined).
    pub add_hosts: Vec<String>,
    /// `default`, `pull` (`--pull`) or `local`: the frontend attribute `image-resolve-mode`.
    pub image_resolve_mode: Option<String>,
    /// `--shm-size` in bytes: the frontend attribute `shm-size`, sent only when above zero (as
    /// buildx does).
    pub shm_size: i64,
    /// `--ulimit` values in BuildKit's form (`nofile=1024:2048`): the frontend attribute
    /// `ulimit`, comma-joined.
    pub ulimits: Vec<String>,
    /// `--cgroup-parent`: the frontend attribute `cgroup-parent` (when not empty).
    pub cgroup_parent: Option<String>,
    /// `--allow` entitlements (`network.host`, `security.insecure`, `device…`): the solve
    /// request's `Entitlements`. The daemon must allow them too (buildkitd's
    /// `--allow-insecure-entitlement`).
    pub entitlements: Vec<String>,
    /// After the solve, add the provenance of the daemon's build record to
    /// [`BuildResult::exporter_response`] as `buildx.build.provenance`, as buildx does for
    /// `--metadata-file` (see [`Client::record_provenance`]).
    pub metadata_provenance: Option<crate::MetadataProvenance>,
    /// `--network` for `RUN` steps: `none`, `host` or `default`.
    pub network: Option<String>,
    /// Where the result goes; `None` builds without exporting (cache only).
    pub output: Option<Output>,
    /// `--cache-from` entries. `type=local,src=DIR` is read from the OCI layout `DIR` through
    /// the session content store.
    ///
    /// # Deviation
    /// A `type=local` source without `index.json` is skipped silently (buildx warns).
    pub cache_from: Vec<CacheEntry>,
    /// `--cache-to` entries. `type=local,dest=DIR` is written into the OCI layout `DIR` through
    /// the session content store, and `DIR/index.json` names the cache under `tag` (default
    /// `latest`) after the solve, as buildx does.
    pub cache_to: Vec<CacheEntry>,
    /// `--secret` values for `RUN --mount=type=secret`.
    pub secrets: Vec<crate::Secret>,
    /// `--ssh` agents for `RUN --mount=type=ssh`.
    pub ssh: Vec<crate::SshAgent>,
    /// Registry credentials offered to the daemon; `None` loads the Docker CLI configuration
    /// (`DOCKER_CONFIG` or `~/.docker/config.json`).
    pub credentials: Option<crate::DockerCredentials>,
    /// The session shared key that lets the daemon transfer only changed files; default: a
    /// stable hash of the context path.
    pub shared_key: Option<String>,
    /// `--build-context` named contexts (BuildKit v0.10+; refused before the solve on older
    /// daemons, see [`crate::Capabilities::named_contexts`]).
    pub named_contexts: Vec<crate::NamedContext>,
    /// Attestations (`--attest`, `--provenance`, `--sbom`) by type, as [`parse_attests`] makes
    /// them: `Some(attrs)` is sent as the frontend attribute `attest:<type>`, `None` turns the
    /// type off (and, for `provenance`, buildx's default with it). Refused before the solve on
    /// daemons without attestations ([`crate::Capabilities::attestations`]).
    pub attests: BTreeMap<String, Option<String>>,
    /// Leave out buildx's default provenance attestation. Without this (and without a
    /// `provenance` entry in [`BuildOptions::attests`]) a daemon that supports attestations gets
    /// `attest:provenance=mode=min,inline-only=true`, as buildx sends unless
    /// `BUILDX_NO_DEFAULT_ATTESTATIONS` is set; `inline-only` keeps it out of `local` and `tar`
    /// exports.
    pub no_default_attestations: bool,
    /// Exporter attributes sent as they are, added to (and overriding) those of
    /// [`BuildOptions::output`]: the pass-through attributes of `--output`
    /// ([`Export::attrs`]), or e.g. `push-by-digest=true` for a node's share of a multi-node
    /// push.
    pub export_attrs: BTreeMap<String, String>,
    /// Further outputs of the same solve, after [`BuildOptions::output`] (several `--output`
    /// flags): BuildKit v0.13+ takes a list of exporters, and sends each one's files back on
    /// its own stream. Refused before the solve on older daemons
    /// ([`Error::MultipleOutputsUnsupported`]), and when two outputs write to standard output
    /// or two are OCI layout directories (`tar=false`), as buildx does.
    pub extra_outputs: Vec<Export>,
    /// A frontend subrequest to answer instead of building (buildx's `--call`), sent as the
    /// frontend attribute `requestid`: `frontend.outline`, `frontend.targets`,
    /// `frontend.lint`, `frontend.subrequests.describe`. The Dockerfile frontend is then run
    /// through BuildKit's gateway (as buildx does) so that its result metadata
    /// (`result.json`, `result.txt`, `version`) comes back: it is added to
    /// [`BuildResult::exporter_response`]. Nothing is exported and the solve is marked
    /// internal (left out of the build history). A frontend that does not know the request
    /// fails the build with its own reply (BuildKit v0.13's: `unsupported request …`).
    pub request_id: Option<String>,
}

impl BuildOptions {
    /// Every output in exporter order: [`BuildOptions::output`] with
    /// [`BuildOptions::export_attrs`], then [`BuildOptions::extra_outputs`]. `type=cacheonly`
    /// entries are listed (they count as outputs, as in buildx) but send no exporter.
    ///
    /// ```
    /// use kbx_buildkit::{BuildOptions, Export, Output};
    /// let opts = BuildOptions {
    ///     output: Some(Output::Local { dest: "out".into() }),
    ///     extra_outputs: vec![Export::parse("type=tar,dest=o.tar")?],
    ///     ..BuildOptions::default()
    /// };
    /// let kinds: Vec<&str> = opts.outputs().iter().map(|e| e.output.kind()).collect();
    /// assert_eq!(kinds, ["local", "tar"]);
    /// # Ok::<(), kbx_buildkit::Error>(())
    /// ```
    pub fn outputs(&self) -> Vec<Export> {
        let first = self.output.as_ref().map(|o| Export {
            output: o.clone(),
            attrs: self.export_attrs.clone(),
        });
        first
            .into_iter()
            .chain(self.extra_outputs.iter().cloned())
            .collect()
    }

    /// The exporters sent to the daemon, in order (their index is the exporter ID the daemon
    /// names when it sends files back): [`BuildOptions::outputs`] without `cacheonly`, a layout
    /// directory (`tar=false`) last.
    ///
    /// # Deviation
    /// The daemon merges the exporters' responses in exporter order, later ones winning, and
    /// the layout's `index.json` names the `containerimage.descriptor` of that merge. buildx
    /// keeps the user's order, so a layout followed by another image output (`docker` layout
    /// then `oci` archive) names an image whose blobs are not in the layout; kbx sends the
    /// layout's exporter last so that its `index.json` names its own image (C10).
    fn exporters(&self) -> Vec<Export> {
        let (layouts, others): (Vec<Export>, Vec<Export>) = self
            .outputs()
            .into_iter()
            .filter(|e| e.output != Output::CacheOnly)
            .partition(|e| e.output.layout_dir().is_some());
        others.into_iter().chain(layouts).collect()
    }
}

/// What a successful build returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildResult {
    /// The exporter's response, e.g. `containerimage.digest`.
    pub exporter_response: BTreeMap<String, String>,
    /// The solve's reference (its entry in the daemon's build history).
    pub build_ref: String,
    /// With [`Output::DockerLoad`]: the images the Engine says it loaded (`app:1`, or the image
    /// ID when the archive names none).
    pub loaded: Vec<String>,
}

impl BuildResult {
    /// `containerimage.digest` (the image ID for `moby`).
    pub fn image_digest(&self) -> Option<&str> {
        self.exporter_response
            .get("containerimage.digest")
            .map(String::as_str)
    }

    /// The image ID as buildx reports it (`-q`, `--iidfile`): the image config's digest
    /// (`containerimage.config.digest`) when the exporter gives one, else
    /// `containerimage.digest`.
    pub fn image_id(&self) -> Option<&str> {
        self.exporter_response
            .get("containerimage.config.digest")
            .or_else(|| self.exporter_response.get("containerimage.digest"))
            .map(String::as_str)
    }

    /// What buildx writes to `--metadata-file`, byte for byte: the exporter response with each
    /// base64 JSON value decoded (`containerimage.descriptor`, …), plus `buildx.build.ref` =
    /// `BUILDER/NODE/REF`, as Go's `json.MarshalIndent` with two spaces writes it (sorted keys,
    /// no final newline).
    ///
    /// ```
    /// let mut r = kbx_buildkit::BuildResult::default();
    /// r.build_ref = "q7b9".into();
    /// r.exporter_response.insert("containerimage.digest".into(), "sha256:ab".into());
    /// assert_eq!(
    ///     r.metadata("kube", "kube0"),
    ///     "{\n  \"buildx.build.ref\": \"kube/kube0/q7b9\",\n  \"containerimage.digest\": \"sha256:ab\"\n}"
    /// );
    /// ```
    ///
    /// `buildx.build.provenance` is there when the build ran with
    /// [`BuildOptions::metadata_provenance`].
    ///
    /// # Deviation
    /// (C11) buildx also writes `buildx.build.warnings` with `BUILDX_METADATA_WARNINGS`; kbx
    /// does not.
    pub fn metadata(&self, builder: &str, node: &str) -> String {
        let mut response = self.exporter_response.clone();
        response.insert(
            "buildx.build.ref".to_owned(),
            format!("{builder}/{node}/{}", self.build_ref),
        );
        crate::metadata::metadata_json(&response)
    }
}

impl Client {
    /// Runs one Dockerfile build, calling `on_progress` for every progress event.
    ///
    /// The context goes to the daemon through a session's FileSync service; exporter output
    /// (`local`, `tar`, …) comes back through the same session. Unsupported outputs fail before
    /// anything is sent.
    ///
    /// # Deviation
    /// Context files are sent without their extended attributes, and file data goes in 256 KiB
    /// DATA packets instead of buildx's 32 KiB (both listed in `docs/deviations.md`).
    ///
    /// # Errors
    /// [`Error::InvalidOptions`], [`Error::Unsupported`], [`Error::Solve`] with the failing step
    /// and its last log lines, and transport errors.
    pub async fn build<F>(&self, opts: &BuildOptions, on_progress: F) -> Result<BuildResult>
    where
        F: FnMut(&ProgressEvent) + Send,
    {
        self.build_with_stdin(opts, tokio::io::stdin(), on_progress)
            .await
    }

    /// [`Client::build`] with `stdin` standing in for standard input: what a context or a
    /// Dockerfile of `-` reads, as in `buildx build - < ctx.tar` or `buildx build -f - .`.
    ///
    /// With context `-`, input that starts like an archive (tar, or gzip / bzip2 / xz
    /// compressed) is the context: it is streamed to the daemon through the session's `Upload`
    /// service (`context=http://buildkit-session/<id>`) when the daemon asks for it, and the
    /// Dockerfile is read from inside it (`dockerfile` is a path in the archive). Other input
    /// is the Dockerfile, built with an empty context. With Dockerfile `-`, the input is the
    /// Dockerfile. Nothing is read from `stdin` otherwise.
    ///
    /// ```no_run
    /// # async fn demo(client: kbx_buildkit::Client) -> Result<(), kbx_buildkit::Error> {
    /// // A context archive from a file instead of standard input.
    /// let tar = tokio::fs::File::open("ctx.tar.gz").await.map_err(|e| {
    ///     kbx_buildkit::Error::Session(e.to_string())
    /// })?;
    /// let opts = kbx_buildkit::BuildOptions { context: "-".into(), ..Default::default() };
    /// client.build_with_stdin(&opts, tar, |_| {}).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Deviation
    /// An empty input as the context is refused before the solve; buildx sends no context and
    /// the daemon fails (`docs/deviations.md`, C7).
    ///
    /// # Errors
    /// As [`Client::build`]; [`Error::InvalidOptions`] when both the context and the Dockerfile
    /// are `-`, when the input is empty, or when a Dockerfile comes from both `-` and `-f`.
    pub async fn build_with_stdin<R, F>(
        &self,
        opts: &BuildOptions,
        stdin: R,
        mut on_progress: F,
    ) -> Result<BuildResult>
    where
        R: tokio::io::AsyncRead + Send + 'static,
        F: FnMut(&ProgressEvent) + Send,
    {
        self.build_with_stdin_status(opts, stdin, |_, events| {
            for ev in events {
                on_progress(ev);
            }
        })
        .await
    }

    /// Like [`Client::build`], but calls `on_status` once per daemon `Status` message with the
    /// message itself ([`SolveStatus`], every field) and the events it caused, for printers
    /// that need timestamps or not-yet-started steps (`--progress tty` / `rawjson`).
    ///
    /// # Errors
    /// As [`Client::build`].
    pub async fn build_with_status<F>(
        &self,
        opts: &BuildOptions,
        on_status: F,
    ) -> Result<BuildResult>
    where
        F: FnMut(&SolveStatus, &[ProgressEvent]) + Send,
    {
        self.build_with_stdin_status(opts, tokio::io::stdin(), on_status)
            .await
    }

    /// [`Client::build_with_stdin`] with [`Client::build_with_status`]'s callback.
    ///
    /// # Errors
    /// As [`Client::build_with_stdin`].
    pub async fn build_with_stdin_status<R, F>(
        &self,
        opts: &BuildOptions,
        stdin: R,
        mut on_status: F,
    ) -> Result<BuildResult>
    where
        R: tokio::io::AsyncRead + Send + 'static,
        F: FnMut(&SolveStatus, &[ProgressEvent]) + Send,
    {
        let upload_id = random_id();
        let inputs = crate::inputs::load(
            &opts.context,
            opts.dockerfile.as_deref(),
            &upload_id,
            Box::pin(stdin),
        )
        .await?;
        let df_name = inputs.filename.clone();

        let named = crate::contexts::plan(&opts.named_contexts)?;
        let explicit_attests = opts.attests.values().any(Option::is_some);
        let moby_load = self.moby_instead_of_load(opts);
        let opts = moby_load.as_ref().unwrap_or(opts);
        let outputs = opts.outputs();
        check_outputs(&outputs)?;
        let exporters = opts.exporters();
        // Exporter ID → the Engine its `docker` archive is loaded into.
        let mut load_into = BTreeMap::new();
        for (id, e) in exporters.iter().enumerate() {
            match &e.output {
                Output::DockerLoad { engine, .. } => {
                    if opts.platforms.len() > 1 || explicit_attests {
                        return Err(Error::InvalidOptions(
                            "docker exporter does not currently support exporting manifest lists"
                                .to_owned(),
                        ));
                    }
                    load_into.insert(id, engine_address(engine.as_ref())?);
                }
                Output::Docker { .. } if explicit_attests => {
                    return Err(Error::InvalidOptions(
                        "docker exporter does not support exporting manifest lists, use the oci \
                         exporter instead"
                            .to_owned(),
                    ));
                }
                _ => {}
            }
        }
        let mut attest_attrs = BTreeMap::new();
        if !outputs.is_empty()
            || explicit_attests
            || !opts.no_default_attestations
            || !opts.cache_from.is_empty()
            || !opts.cache_to.is_empty()
            || !opts.named_contexts.is_empty()
        {
            let caps = self.capabilities().await?;
            let unsupported = |what: String| Error::Unsupported {
                what,
                daemon: caps.daemon_name(),
            };
            if explicit_attests && !caps.attestations {
                return Err(unsupported(
                    "attestations (--attest, --provenance, --sbom)".to_owned(),
                ));
            }
            if caps.attestations {
                attest_attrs = attest_frontend_attrs(opts);
            }
            if !opts.named_contexts.is_empty() && !caps.named_contexts {
                return Err(unsupported(
                    "named build contexts (--build-context, Dockerfile frontend 1.4+)".to_owned(),
                ));
            }
            let oci_layout = opts
                .named_contexts
                .iter()
                .any(|c| matches!(c.source, crate::NamedContextSource::OciLayout { .. }));
            if oci_layout && !caps.oci_layout_contexts {
                return Err(unsupported(
                    "oci-layout:// build contexts (BuildKit v0.11+)".to_owned(),
                ));
            }
            // buildx counts `cacheonly` too, and asks the daemon's capabilities (v0.13+).
            if outputs.len() > 1 && !caps.multiple_exporters {
                return Err(Error::MultipleOutputsUnsupported {
                    daemon: caps.daemon_name(),
                });
            }
            for e in &exporters {
                if !caps.supports_exporter(e.output.kind()) {
                    return Err(unsupported(format!("exporter {:?}", e.output.kind())));
                }
            }
            for e in &opts.cache_to {
                if !caps.cache_exporters.contains(&e.kind.as_str()) {
                    return Err(unsupported(format!("cache export type {:?}", e.kind)));
                }
            }
            for e in &opts.cache_from {
                if !caps.cache_importers.contains(&e.kind.as_str()) {
                    return Err(unsupported(format!("cache import type {:?}", e.kind)));
                }
            }
        }

        let LocalCaches {
            cache_from,
            stores: mut content,
            indexes,
        } = resolve_local_cache(&opts.cache_from, &opts.cache_to)?;
        content.dirs.extend(named.stores);
        let layout = exporters.iter().find_map(|e| e.output.layout_dir());
        if let Some(dest) = layout {
            std::fs::create_dir_all(dest).map_err(|e| Error::io("create", dest, e))?;
            content
                .dirs
                .insert(EXPORT_STORE.to_owned(), dest.to_path_buf());
            content.writable.insert(EXPORT_STORE.to_owned());
        }
        let resolved;
        let opts = if cache_from == opts.cache_from {
            opts
        } else {
            resolved = BuildOptions {
                cache_from,
                ..opts.clone()
            };
            &resolved
        };

        for addr in load_into.values() {
            crate::engine::ping(addr)
                .await
                .map_err(|e| crate::engine::load_error(addr, e))?;
        }
        let (load_progress, load_status) = tokio::sync::mpsc::unbounded_channel();
        let loaded = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let exports: BTreeMap<usize, ExportTarget> = exporters
            .iter()
            .enumerate()
            .filter_map(|(id, e)| match load_into.get(&id) {
                Some(addr) => Some((
                    id,
                    ExportTarget::Engine(session::EngineExport {
                        addr: addr.clone(),
                        progress: load_progress.clone(),
                        loaded: loaded.clone(),
                    }),
                )),
                None => e.output.target().map(|t| (id, t)),
            })
            .collect();
        drop(load_progress);

        let session_id = random_id();
        let build_ref = random_id();
        let mut dirs = inputs.dirs.clone();
        dirs.extend(named.dirs);
        let cfg = SessionConfig {
            id: session_id.clone(),
            name: inputs
                .key_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "context".to_owned()),
            shared_key: opts
                .shared_key
                .clone()
                .unwrap_or_else(|| stable_key(&inputs.key_path)),
            dirs,
            uploads: inputs.uploads.clone(),
            content,
            exports,
            secrets: opts
                .secrets
                .iter()
                .map(|s| (s.id.clone(), s.source.clone()))
                .collect(),
            ssh: opts
                .ssh
                .iter()
                .map(|a| {
                    Ok((
                        a.id.clone(),
                        crate::attachables::AgentTarget::from_source(&a.source)?,
                    ))
                })
                .collect::<Result<_>>()?,
            credentials: Some(match &opts.credentials {
                Some(c) => c.clone(),
                None => crate::DockerCredentials::load()?,
            }),
        };
        let mut control = self.control.clone();
        let running = match self.session_route() {
            Some(addr) => session::start_docker(addr, cfg).await?,
            None => session::start(&mut control, cfg).await?,
        };

        let mut req = solve_request(opts, &df_name, &session_id, &build_ref);
        req.frontend_attrs.extend(named.attrs);
        req.frontend_attrs.extend(attest_attrs);
        req.frontend_attrs.extend(inputs.attrs.clone());
        let (done_tx, done_rx) = watch::channel(false);
        let call_meta = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let solve = async {
            let r = match &opts.request_id {
                None => control.clone().solve(req).await,
                Some(id) => {
                    call_frontend(control.clone(), self.channel.clone(), req, id, &call_meta).await
                }
            };
            let _ = done_tx.send(true);
            r
        };
        let status = follow_status(
            self.clone(),
            build_ref.clone(),
            done_rx,
            load_status,
            &mut on_status,
        );
        let (solved, tracker) = tokio::join!(solve, status);
        let export = running.close().await;
        drop(inputs);

        // A transfer the daemon broke off because the solve failed: the solve's error says why
        // (Buildx prints `failed to solve: cannot overwrite …`, not the stream's end).
        let export = match (&solved, export) {
            (Err(_), Some(Err(Error::Session(m)))) if m == crate::fsutil::receive::ENDED_EARLY => {
                None
            }
            (_, export) => export,
        };
        match (solved, export) {
            // The export failed on our side (a file, the Engine): that error says more than the
            // daemon's echo of it, if the daemon noticed at all.
            (_, Some(Err(e))) => Err(e),
            (Ok(resp), _) => {
                let mut exporter_response: BTreeMap<String, String> =
                    resp.into_inner().exporter_response.into_iter().collect();
                if let Ok(meta) = call_meta.lock() {
                    exporter_response.extend(meta.clone());
                }
                if let Some(mode) = opts.metadata_provenance {
                    exporter_response.extend(self.record_provenance(&build_ref, mode).await?);
                }
                update_cache_indexes(&indexes, &exporter_response)?;
                if let Some(dest) = layout {
                    update_layout_index(dest, &exporter_response)?;
                }
                let loaded = loaded.lock().map(|l| l.clone()).unwrap_or_default();
                Ok(BuildResult {
                    exporter_response,
                    build_ref,
                    loaded,
                })
            }
            (Err(status), _) => {
                let (vertex, logs) = match tracker.failed_step() {
                    Some((v, l)) => (Some(v), l),
                    None => (None, Vec::new()),
                };
                Err(Error::Solve {
                    message: status.message().to_owned(),
                    vertex,
                    logs,
                    location: crate::errdetails::source_location(&status),
                    status: Box::new(status),
                })
            }
        }
    }
}

impl Client {
    /// On a Docker Engine's own BuildKit, a load into that Engine (or the default one) is a
    /// `moby` export, as buildx's docker driver does: `opts` with that output, or `None` when
    /// nothing changes.
    fn moby_instead_of_load(&self, opts: &BuildOptions) -> Option<BuildOptions> {
        let Some(Output::DockerLoad { engine, names }) = &opts.output else {
            return None;
        };
        let own = match (self.docker_address(), engine) {
            (Some(_), None) => true,
            (Some(mine), Some(target)) => mine == target,
            (None, _) => false,
        };
        (own && self.backend() == crate::Backend::Docker).then(|| BuildOptions {
            output: Some(Output::Moby {
                names: names.clone(),
            }),
            ..opts.clone()
        })
    }
}

/// The Engine a [`Output::DockerLoad`] goes to: `engine`, or the one `DOCKER_HOST` names.
fn engine_address(engine: Option<&crate::Address>) -> Result<crate::Address> {
    let addr = match engine {
        Some(a) => a.clone(),
        None => crate::Address::parse("docker")?,
    };
    if !addr.is_docker() {
        return Err(Error::InvalidAddress {
            addr: addr.to_string(),
            reason: "loading an image needs a Docker Engine (docker-unix:// or docker-tcp://)"
                .to_owned(),
        });
    }
    Ok(addr)
}

/// The local side of `type=local` caches: the entries to send, the content stores to serve,
/// and the layouts whose `index.json` gets the exported cache manifest after the solve.
#[derive(Debug, Default)]
struct LocalCaches {
    cache_from: Vec<CacheEntry>,
    stores: crate::content::Stores,
    /// (layout directory, tag) for each `--cache-to type=local`.
    indexes: Vec<(PathBuf, String)>,
}

/// Resolves `type=local` caches the way the Go client does. Imports: `src` is required, the
/// digest comes from `index.json` (tag `latest` or `tag=`) unless `digest=` is given, and an
/// entry whose `index.json` does not exist is dropped (nothing to import yet). Exports: `dest`
/// is required and created; its store is writable, and its `index.json` is updated after the
/// solve.
fn resolve_local_cache(from: &[CacheEntry], to: &[CacheEntry]) -> Result<LocalCaches> {
    let mut out = LocalCaches::default();
    for e in to.iter().filter(|e| e.kind == "local") {
        let Some(dest) = e.attrs.get("dest").filter(|d| !d.is_empty()) else {
            return Err(Error::InvalidOptions(
                "local cache exporter requires dest".to_owned(),
            ));
        };
        std::fs::create_dir_all(dest).map_err(|e| Error::io("create", dest, e))?;
        let id = format!("local:{dest}");
        out.stores.dirs.insert(id.clone(), PathBuf::from(dest));
        out.stores.writable.insert(id);
        let tag = e
            .attrs
            .get("tag")
            .cloned()
            .unwrap_or_else(|| "latest".to_owned());
        out.indexes.push((PathBuf::from(dest), tag));
    }
    for e in from {
        if e.kind != "local" {
            out.cache_from.push(e.clone());
            continue;
        }
        let Some(src) = e.attrs.get("src").cloned() else {
            return Err(Error::InvalidOptions(
                "local cache importer requires src".to_owned(),
            ));
        };
        let mut e = e.clone();
        if !e.attrs.contains_key("digest") {
            match crate::content::resolve_tag(
                Path::new(&src),
                e.attrs.get("tag").map(String::as_str),
            )? {
                Some(d) => {
                    e.attrs.insert("digest".to_owned(), d);
                }
                None => continue,
            }
        }
        out.stores
            .dirs
            .insert(format!("local:{src}"), PathBuf::from(&src));
        out.cache_from.push(e);
    }
    Ok(out)
}

/// buildx's `--attest` parsing: each value is CSV with a required `type=` and an optional
/// `disabled=BOOL`; `provenance` and `sbom` are the values of `--provenance` / `--sbom`, where a
/// boolean means enabled or disabled and anything else is that type's attributes. Returns type →
/// the value sent as `attest:<type>` (the whole CSV, as buildx sends it), or `None` when
/// disabled.
///
/// ```
/// use kbx_buildkit::parse_attests;
/// let a = parse_attests(&["type=sbom,generator=img".into()], Some("mode=max"), None)?;
/// assert_eq!(a["provenance"].as_deref(), Some("type=provenance,mode=max"));
/// assert_eq!(a["sbom"].as_deref(), Some("type=sbom,generator=img"));
/// assert_eq!(parse_attests(&[], Some("false"), None)?["provenance"], None);
/// assert_eq!(
///     parse_attests(&[], Some("true"), None)?["provenance"].as_deref(),
///     Some("type=provenance,disabled=false")
/// );
/// assert!(parse_attests(&["mode=max".into()], None, None).is_err());
/// # Ok::<(), kbx_buildkit::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidOptions`] for a field that is not `key=value`, a missing type, an invalid
/// `disabled` value, or a type given twice (buildx's `duplicate attestation field`).
pub fn parse_attests(
    attest: &[String],
    provenance: Option<&str>,
    sbom: Option<&str>,
) -> Result<BTreeMap<String, Option<String>>> {
    let canonical = |kind: &str, v: &str| match parse_go_bool(v) {
        Some(b) => format!("type={kind},disabled={}", !b),
        None => format!("type={kind},{v}"),
    };
    let mut all: Vec<String> = attest.to_vec();
    all.extend(
        provenance
            .filter(|v| !v.is_empty())
            .map(|v| canonical("provenance", v)),
    );
    all.extend(sbom.filter(|v| !v.is_empty()).map(|v| canonical("sbom", v)));
    let mut out = BTreeMap::new();
    for spec in all {
        let bad = |m: String| Error::InvalidOptions(format!("--attest {spec:?}: {m}"));
        let mut kind = None;
        let mut disabled = false;
        for field in spec.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(format!("invalid value {field}")))?;
            match k.trim().to_ascii_lowercase().as_str() {
                "type" => kind = Some(v.to_owned()),
                "disabled" => {
                    disabled =
                        parse_go_bool(v).ok_or_else(|| bad(format!("invalid value {field}")))?;
                }
                _ => {}
            }
        }
        let kind = kind
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("attestation type not specified".to_owned()))?;
        if out.contains_key(&kind) {
            return Err(bad(format!("duplicate attestation field {kind}")));
        }
        out.insert(kind, (!disabled).then(|| spec.clone()));
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The `attest:<type>` frontend attributes for a daemon that supports attestations: the
/// enabled entries of [`BuildOptions::attests`], and buildx's default provenance when
/// `provenance` is not mentioned and defaults are not turned off.
fn attest_frontend_attrs(opts: &BuildOptions) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = opts
        .attests
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (format!("attest:{k}"), v.clone())))
        .collect();
    if !opts.attests.contains_key("provenance") && !opts.no_default_attestations {
        out.insert(
            "attest:provenance".to_owned(),
            "mode=min,inline-only=true".to_owned(),
        );
    }
    out
}

/// The content store an `oci` or `docker` export with `tar=false` writes into (one per build,
/// as in the Go client).
const EXPORT_STORE: &str = "export";

/// buildx's and the Go client's checks of a build's outputs that need no daemon: one output
/// at most writes to standard output, and one at most is a layout directory (the session has
/// one `export` content store).
fn check_outputs(outputs: &[Export]) -> Result<()> {
    if outputs.iter().filter(|e| e.output.writes_stdout()).count() > 1 {
        return Err(Error::InvalidOptions(
            "multiple outputs configured to write to stdout".to_owned(),
        ));
    }
    if outputs
        .iter()
        .filter(|e| e.output.layout_dir().is_some())
        .count()
        > 1
    {
        return Err(Error::InvalidOptions(format!(
            "oci store key {EXPORT_STORE:?} already exists"
        )));
    }
    Ok(())
}

/// After an `oci` export with `tar=false`: names the image descriptor the daemon reports
/// (`containerimage.descriptor`, base64 JSON) in `dest/index.json`, under each image name of
/// `image.name`, or the tag `latest` when there is none, as the Go client does.
fn update_layout_index(dest: &Path, response: &BTreeMap<String, String>) -> Result<()> {
    let Some(encoded) = response.get("containerimage.descriptor") else {
        return Err(Error::Session(
            "the daemon reported no containerimage.descriptor for the oci export".to_owned(),
        ));
    };
    let bytes = crate::attachables::base64_decode(encoded)
        .ok_or_else(|| Error::Session("containerimage.descriptor is not base64".to_owned()))?;
    let desc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Session(format!(
            "containerimage.descriptor is not a descriptor: {e}"
        ))
    })?;
    let names: Vec<crate::content::IndexName> = match response.get("image.name") {
        Some(n) if !n.is_empty() => n
            .split(',')
            .map(|n| crate::content::IndexName::Image(n.to_owned()))
            .collect(),
        _ => vec![crate::content::IndexName::Tag("latest".to_owned())],
    };
    crate::content::put_index(dest, &desc, &names)
}

/// After a solve that exported a `type=local` cache: records the cache manifest the daemon
/// reports (`cache.manifest`, an OCI descriptor) in each layout's `index.json` under its tag.
fn update_cache_indexes(
    indexes: &[(PathBuf, String)],
    response: &BTreeMap<String, String>,
) -> Result<()> {
    let Some(desc) = response.get("cache.manifest").filter(|d| !d.is_empty()) else {
        return Ok(());
    };
    let desc: serde_json::Value = serde_json::from_str(desc).map_err(|e| {
        Error::Session(format!(
            "the daemon's cache.manifest is not a descriptor: {e}"
        ))
    })?;
    for (dir, tag) in indexes {
        crate::content::put_index(dir, &desc, &[crate::content::IndexName::Tag(tag.clone())])?;
    }
    Ok(())
}

/// BuildKit's name for the gRPC metadata that ties a gateway (`LLBBridge`) call to the
/// control `Solve` whose `ref` it carries.
const GATEWAY_BUILD_ID: &str = "buildkit-controlapi-buildid";

/// Runs `req` as a gateway build that asks its frontend the subrequest `request_id`: the
/// control `Solve` goes without a frontend, and the frontend is called through `LLBBridge`;
/// its result (metadata only) is returned to the daemon and its metadata kept in `meta`.
///
/// # Errors
/// The control `Solve`'s status; a frontend failure is returned to the daemon, which fails
/// the `Solve` with it.
async fn call_frontend(
    mut control: bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient<
        tonic::transport::Channel,
    >,
    channel: tonic::transport::Channel,
    mut req: SolveRequest,
    request_id: &str,
    meta: &std::sync::Mutex<BTreeMap<String, String>>,
) -> std::result::Result<
    tonic::Response<bollard_buildkit_proto::moby::buildkit::v1::SolveResponse>,
    tonic::Status,
> {
    use bollard_buildkit_proto::google::rpc::Status as RpcStatus;
    use bollard_buildkit_proto::moby::buildkit::v1::frontend::{
        Result as GwResult, ReturnRequest, SolveRequest as GwSolveRequest,
        llb_bridge_client::LlbBridgeClient,
    };

    let mut frontend_opt = std::mem::take(&mut req.frontend_attrs);
    frontend_opt.insert("requestid".to_owned(), request_id.to_owned());
    let gw = GwSolveRequest {
        frontend: std::mem::take(&mut req.frontend),
        frontend_opt,
        frontend_inputs: std::mem::take(&mut req.frontend_inputs),
        allow_result_return: true,
        ..GwSolveRequest::default()
    };
    req.internal = true;
    req.exporters.clear();
    req.exporter_deprecated.clear();
    req.exporter_attrs_deprecated.clear();
    let id: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = req
        .r#ref
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("build ref is not ASCII"))?;
    let mut bridge = LlbBridgeClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert(GATEWAY_BUILD_ID, id.clone());
        Ok(r)
    });
    let bridge_call = async {
        // The daemon waits (a few seconds) for the control Solve below to register the build.
        let ret = match bridge.solve(gw).await {
            Ok(resp) => {
                let metadata = resp
                    .into_inner()
                    .result
                    .map(|r| r.metadata)
                    .unwrap_or_default();
                if let Ok(mut m) = meta.lock() {
                    for (k, v) in &metadata {
                        m.insert(k.clone(), String::from_utf8_lossy(v).into_owned());
                    }
                }
                ReturnRequest {
                    result: Some(GwResult {
                        metadata,
                        ..GwResult::default()
                    }),
                    error: None,
                }
            }
            Err(status) => ReturnRequest {
                result: None,
                error: Some(RpcStatus {
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                    details: Vec::new(),
                }),
            },
        };
        bridge.r#return(ret).await
    };
    let solve = control.solve(req);
    tokio::pin!(solve);
    tokio::select! {
        r = &mut solve => r,
        returned = bridge_call => match returned {
            Ok(_) => solve.await,
            // The daemon never got the frontend's answer: the Solve would wait for ever.
            Err(e) => Err(e),
        },
    }
}

fn solve_request(
    opts: &BuildOptions,
    df_name: &str,
    session: &str,
    build_ref: &str,
) -> SolveRequest {
    let mut attrs = HashMap::new();
    attrs.insert("filename".to_owned(), df_name.to_owned());
    if let Some(t) = &opts.target {
        attrs.insert("target".to_owned(), t.clone());
    }
    for (k, v) in &opts.build_args {
        attrs.insert(format!("build-arg:{k}"), v.clone());
    }
    for (k, v) in &opts.labels {
        attrs.insert(format!("label:{k}"), v.clone());
    }
    if !opts.platforms.is_empty() {
        attrs.insert("platform".to_owned(), opts.platforms.join(","));
    }
    if opts.no_cache {
        attrs.insert("no-cache".to_owned(), String::new());
    } else if !opts.no_cache_filter.is_empty() {
        attrs.insert("no-cache".to_owned(), opts.no_cache_filter.join(","));
    }
    if !opts.add_hosts.is_empty() {
        let hosts: Vec<String> = opts
            .add_hosts
            .iter()
            .map(|h| match h.split_once('=').or_else(|| h.split_once(':')) {
                Some((host, ip)) => format!("{host}={ip}"),
                None => h.clone(),
            })
            .collect();
        attrs.insert("add-hosts".to_owned(), hosts.join(","));
    }
    if opts.shm_size > 0 {
        attrs.insert("shm-size".to_owned(), opts.shm_size.to_string());
    }
    if !opts.ulimits.is_empty() {
        attrs.insert("ulimit".to_owned(), opts.ulimits.join(","));
    }
    if let Some(parent) = opts.cgroup_parent.as_deref().filter(|p| !p.is_empty()) {
        attrs.insert("cgroup-parent".to_owned(), parent.to_owned());
    }
    if let Some(n) = opts.network.as_deref().filter(|n| *n != "default") {
        attrs.insert("force-network-mode".to_owned(), n.to_owned());
    }
    if let Some(m) = &opts.image_resolve_mode {
        attrs.insert("image-resolve-mode".to_owned(), m.clone());
    }
    if !opts.cache_from.is_empty() {
        let json: Vec<serde_json::Value> =
            opts.cache_from.iter().map(CacheEntry::to_json).collect();
        attrs.insert(
            "cache-imports".to_owned(),
            serde_json::Value::Array(json).to_string(),
        );
    }
    let mut req = SolveRequest {
        r#ref: build_ref.to_owned(),
        session: session.to_owned(),
        frontend: "dockerfile.v0".to_owned(),
        frontend_attrs: attrs,
        ..SolveRequest::default()
    };
    if !opts.cache_from.is_empty() || !opts.cache_to.is_empty() {
        req.cache = Some(CacheOptions {
            imports: opts.cache_from.iter().map(CacheEntry::to_proto).collect(),
            exports: opts.cache_to.iter().map(CacheEntry::to_proto).collect(),
            ..CacheOptions::default()
        });
    }
    req.entitlements.clone_from(&opts.entitlements);
    if opts.network.as_deref() == Some("host")
        && !req.entitlements.iter().any(|e| e == "network.host")
    {
        req.entitlements.push("network.host".to_owned());
    }
    // Old daemons only read fields 3/4 (the first exporter) and silently ignore 13; new ones
    // prefer 13, whose indexes are the exporter IDs of the files sent back.
    for (id, e) in opts.exporters().into_iter().enumerate() {
        let mut attrs = e.output.attrs();
        attrs.extend(e.attrs);
        if id == 0 {
            req.exporter_deprecated = e.output.kind().to_owned();
            req.exporter_attrs_deprecated = attrs.clone();
        }
        req.exporters.push(Exporter {
            r#type: e.output.kind().to_owned(),
            attrs,
        });
    }
    req
}

/// Follows `Status` for `build_ref` until it ends, or until it has been quiet for 5 s after the
/// solve finished.
/// Follows the daemon's status stream for `build_ref` until it ends (or goes quiet for 5 s after
/// the solve returned), merging in `local` statuses: steps this client runs itself, such as
/// loading the result into the Docker Engine.
async fn follow_status<F>(
    client: Client,
    build_ref: String,
    mut solve_done: watch::Receiver<bool>,
    mut local: tokio::sync::mpsc::UnboundedReceiver<StatusResponse>,
    on_progress: &mut F,
) -> ProgressTracker
where
    F: FnMut(&SolveStatus, &[ProgressEvent]) + Send,
{
    let mut tracker = ProgressTracker::new();
    let mut report = |resp: &StatusResponse, tracker: &mut ProgressTracker| {
        let events = tracker.update(resp);
        on_progress(&SolveStatus::from_response(resp), &events);
    };
    let mut control = client.control.clone();
    let stream = control.status(StatusRequest { r#ref: build_ref }).await;
    if let Ok(stream) = stream {
        let mut stream = stream.into_inner();
        loop {
            let next = if *solve_done.borrow() {
                while let Ok(resp) = local.try_recv() {
                    report(&resp, &mut tracker);
                }
                match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                    Ok(m) => m,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    m = stream.message() => m,
                    Some(resp) = local.recv() => {
                        report(&resp, &mut tracker);
                        continue;
                    }
                    _ = solve_done.changed() => continue,
                }
            };
            match next {
                Ok(Some(resp)) => report(&resp, &mut tracker),
                Ok(None) | Err(_) => break,
            }
        }
    }
    while let Ok(resp) = local.try_recv() {
        report(&resp, &mut tracker);
    }
    tracker
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A 25-character base-36 random ID, like the Go client's session IDs.
pub(crate) fn random_id() -> String {
    let mut out = String::with_capacity(25);
    let mut words = [0u64; 3];
    for w in &mut words {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.write_u32(std::process::id());
        *w = h.finish();
    }
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut i = 0;
    while out.len() < 25 {
        let w = &mut words[i % 3];
        out.push(alphabet[(*w % 36) as usize] as char);
        *w /= 36;
        i += 1;
    }
    out
}

/// A stable shared key for a context directory (FNV-1a of the path plus the host name).
fn stable_key(context: &Path) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    for b in context
        .to_string_lossy()
        .as_bytes()
        .iter()
        .chain(host.trim().as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_base36_and_distinct() {
        let a = random_id();
        let b = random_id();
        assert_eq!(a.len(), 25);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn run_settings_become_frontend_attributes_and_entitlements() {
        let opts = BuildOptions {
            context: ".".into(),
            no_cache_filter: vec!["a".into(), "b".into()],
            add_hosts: vec!["v6=::1".into(), "v4:1.2.3.4".into(), "h:::2".into()],
            image_resolve_mode: Some("pull".into()),
            shm_size: 64 << 20,
            ulimits: vec!["nofile=1024:2048".into(), "nproc=5:5".into()],
            cgroup_parent: Some("/kbx".into()),
            entitlements: vec!["security.insecure".into(), "network.host".into()],
            network: Some("host".into()),
            ..BuildOptions::default()
        };
        let r = solve_request(&opts, "Dockerfile", "s", "r");
        let a = &r.frontend_attrs;
        assert_eq!(a["no-cache"], "a,b");
        assert_eq!(a["add-hosts"], "v6=::1,v4=1.2.3.4,h=::2");
        assert_eq!(a["image-resolve-mode"], "pull");
        assert_eq!(a["shm-size"], "67108864");
        assert_eq!(a["ulimit"], "nofile=1024:2048,nproc=5:5");
        assert_eq!(a["cgroup-parent"], "/kbx");
        assert_eq!(r.entitlements, ["security.insecure", "network.host"]);
        // --no-cache wins over the filter; no shm-size at zero or below, no empty values.
        let r = solve_request(
            &BuildOptions {
                no_cache: true,
                shm_size: -1,
                cgroup_parent: Some(String::new()),
                ..opts
            },
            "Dockerfile",
            "s",
            "r",
        );
        assert_eq!(r.frontend_attrs["no-cache"], "");
        assert!(!r.frontend_attrs.contains_key("shm-size"));
        assert!(!r.frontend_attrs.contains_key("cgroup-parent"));
        let r = solve_request(&BuildOptions::default(), "Dockerfile", "s", "r");
        for k in [
            "no-cache",
            "add-hosts",
            "shm-size",
            "ulimit",
            "cgroup-parent",
        ] {
            assert!(!r.frontend_attrs.contains_key(k), "{k}");
        }
        assert!(r.entitlements.is_empty());
    }

    #[test]
    fn image_id_prefers_the_config_digest() {
        let mut r = BuildResult::default();
        assert_eq!(r.image_id(), None);
        r.exporter_response
            .insert("containerimage.digest".into(), "sha256:m".into());
        assert_eq!(r.image_id(), Some("sha256:m"));
        r.exporter_response
            .insert("containerimage.config.digest".into(), "sha256:c".into());
        assert_eq!(r.image_id(), Some("sha256:c"));
    }

    #[test]
    fn request_fills_old_and_new_exporter_fields() {
        let opts = BuildOptions {
            context: ".".into(),
            target: Some("t".into()),
            build_args: [("A".to_owned(), "1".to_owned())].into(),
            labels: [("l".to_owned(), "v".to_owned())].into(),
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            no_cache: true,
            add_hosts: vec!["h:1.2.3.4".into()],
            output: Some(Output::Moby {
                names: vec!["a:b".into(), "c".into()],
            }),
            ..BuildOptions::default()
        };
        let r = solve_request(&opts, "Dockerfile.x", "sess", "ref");
        assert_eq!(r.frontend, "dockerfile.v0");
        assert_eq!(r.session, "sess");
        assert_eq!(r.frontend_attrs["filename"], "Dockerfile.x");
        assert_eq!(r.frontend_attrs["target"], "t");
        assert_eq!(r.frontend_attrs["build-arg:A"], "1");
        assert_eq!(r.frontend_attrs["label:l"], "v");
        assert_eq!(r.frontend_attrs["platform"], "linux/amd64,linux/arm64");
        assert_eq!(r.frontend_attrs["no-cache"], "");
        assert_eq!(r.frontend_attrs["add-hosts"], "h=1.2.3.4");
        assert_eq!(r.exporter_deprecated, "moby");
        assert_eq!(r.exporter_attrs_deprecated["name"], "a:b,c");
        assert_eq!(r.exporters.len(), 1);
        assert_eq!(r.exporters[0].r#type, "moby");
        assert!(r.definition.is_none());
        assert!(r.cache.is_none());

        // A node's share of a multi-node push: extra attributes reach both fields.
        let opts = BuildOptions {
            output: Some(Output::Image {
                names: vec!["reg/app".into()],
                push: true,
            }),
            export_attrs: [("push-by-digest".to_owned(), "true".to_owned())].into(),
            ..BuildOptions::default()
        };
        let r = solve_request(&opts, "Dockerfile", "s", "r");
        for attrs in [&r.exporter_attrs_deprecated, &r.exporters[0].attrs] {
            assert_eq!(attrs["name"], "reg/app");
            assert_eq!(attrs["push"], "true");
            assert_eq!(attrs["push-by-digest"], "true");
        }

        let opts = BuildOptions {
            cache_from: vec![CacheEntry::parse("type=registry,ref=r/c").expect("ok")],
            cache_to: vec![CacheEntry::parse("type=inline").expect("ok")],
            ..BuildOptions::default()
        };
        let r = solve_request(&opts, "Dockerfile", "s", "r");
        let cache = r.cache.expect("cache options");
        assert_eq!(cache.imports[0].r#type, "registry");
        assert_eq!(cache.imports[0].attrs["ref"], "r/c");
        assert_eq!(cache.exports[0].r#type, "inline");
        assert_eq!(
            r.frontend_attrs["cache-imports"],
            r#"[{"Attrs":{"ref":"r/c"},"Type":"registry"}]"#
        );
    }

    #[test]
    fn local_cache_sources_resolve_digests_and_stores() {
        let d = tempfile::tempdir().expect("tempdir");
        let with_index = d.path().join("c");
        std::fs::create_dir(&with_index).expect("mkdir");
        std::fs::write(
            with_index.join("index.json"),
            r#"{"manifests":[{"digest":"sha256:11","annotations":{"org.opencontainers.image.ref.name":"latest"}}]}"#,
        )
        .expect("write");
        let src = with_index.display().to_string();
        let entries = [
            CacheEntry::parse("type=registry,ref=r/c").expect("ok"),
            CacheEntry::parse(&format!("type=local,src={src}")).expect("ok"),
            CacheEntry::parse(&format!(
                "type=local,src={}",
                d.path().join("none").display()
            ))
            .expect("ok"),
            CacheEntry::parse(&format!("type=local,src={src},digest=sha256:22")).expect("ok"),
        ];
        let LocalCaches {
            cache_from: out,
            stores,
            indexes,
        } = resolve_local_cache(&entries, &[]).expect("resolve");
        assert!(indexes.is_empty());
        assert_eq!(out.len(), 3, "the source without index.json is dropped");
        assert_eq!(out[0], entries[0]);
        assert_eq!(out[1].attrs["digest"], "sha256:11");
        assert_eq!(out[2].attrs["digest"], "sha256:22");
        assert_eq!(stores.dirs.len(), 1);
        assert_eq!(stores.dirs[&format!("local:{src}")], with_index);
        let e = resolve_local_cache(&[CacheEntry::parse("type=local,dest=x").expect("ok")], &[])
            .expect_err("no src");
        assert!(e.to_string().contains("requires src"), "{e}");

        // Exports: dest is created, its store is writable, its index gets the tag.
        let dest = d.path().join("out/cache");
        let to = [
            CacheEntry::parse(&format!("type=local,dest={},mode=max", dest.display())).expect("ok"),
            CacheEntry::parse("type=inline").expect("ok"),
        ];
        let local = resolve_local_cache(&[], &to).expect("resolve");
        assert!(dest.is_dir());
        let id = format!("local:{}", dest.display());
        assert!(local.stores.writable.contains(&id));
        assert_eq!(local.stores.dirs[&id], dest);
        assert_eq!(local.indexes, vec![(dest.clone(), "latest".to_owned())]);
        let e = resolve_local_cache(&[], &[CacheEntry::parse("type=local,src=x").expect("ok")])
            .expect_err("no dest");
        assert!(e.to_string().contains("requires dest"), "{e}");

        // After the solve the cache manifest is recorded under the tag, replacing the old one.
        let desc = r#"{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:aa","size":10}"#;
        let resp = BTreeMap::from([("cache.manifest".to_owned(), desc.to_owned())]);
        update_cache_indexes(&local.indexes, &resp).expect("update");
        let desc2 = desc.replace("sha256:aa", "sha256:bb");
        let resp = BTreeMap::from([("cache.manifest".to_owned(), desc2)]);
        update_cache_indexes(&local.indexes, &resp).expect("update");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dest.join("index.json")).expect("index"))
                .expect("json");
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["manifests"].as_array().expect("list").len(), 1);
        assert_eq!(index["manifests"][0]["digest"], "sha256:bb");
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "latest"
        );
        assert!(dest.join("oci-layout").is_file());
        assert!(!dest.join("index.json.lock").exists());
    }

    #[test]
    fn attestations_follow_buildx() {
        let a = parse_attests(
            &["type=sbom".into()],
            Some("mode=max,builder-id=x"),
            Some("false"),
        );
        assert!(a.is_err(), "sbom given twice");
        let a = parse_attests(&["type=sbom,disabled=true".into()], Some("1"), None).expect("ok");
        assert_eq!(a["sbom"], None);
        assert_eq!(
            a["provenance"].as_deref(),
            Some("type=provenance,disabled=false")
        );
        for bad in ["type=", "disabled=maybe,type=x", "type=x,oops"] {
            assert!(parse_attests(&[bad.into()], None, None).is_err(), "{bad}");
        }
        // Defaults: provenance mode=min inline-only unless mentioned or turned off.
        let attrs = |attests: BTreeMap<String, Option<String>>, no_default: bool| {
            attest_frontend_attrs(&BuildOptions {
                attests,
                no_default_attestations: no_default,
                ..BuildOptions::default()
            })
        };
        assert_eq!(
            attrs(BTreeMap::new(), false),
            BTreeMap::from([(
                "attest:provenance".to_owned(),
                "mode=min,inline-only=true".to_owned()
            )])
        );
        assert!(attrs(BTreeMap::new(), true).is_empty());
        assert!(attrs(BTreeMap::from([("provenance".to_owned(), None)]), false).is_empty());
        let max = parse_attests(&[], Some("mode=max"), None).expect("ok");
        assert_eq!(
            attrs(max, false),
            BTreeMap::from([(
                "attest:provenance".to_owned(),
                "type=provenance,mode=max".to_owned()
            )])
        );
    }

    #[test]
    fn layout_exports_name_the_image_in_the_index() {
        let d = tempfile::tempdir().expect("tempdir");
        let desc = r#"{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:cc","size":5}"#;
        // The standard alphabet, as Go's base64.StdEncoding.
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
        let resp = BTreeMap::from([
            ("containerimage.descriptor".to_owned(), b64(desc)),
            ("image.name".to_owned(), "reg/app:1,reg/app:2".to_owned()),
        ]);
        update_layout_index(d.path(), &resp).expect("update");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("index.json")).expect("index"))
                .expect("json");
        let list = index["manifests"].as_array().expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(
            list[0]["annotations"]["io.containerd.image.name"],
            "reg/app:1"
        );
        assert_eq!(
            list[0]["annotations"]["org.opencontainers.image.ref.name"],
            "1"
        );
        assert_eq!(
            list[1]["annotations"]["org.opencontainers.image.ref.name"],
            "2"
        );
        let resp = BTreeMap::from([("containerimage.descriptor".to_owned(), b64(desc))]);
        update_layout_index(d.path(), &resp).expect("update");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("index.json")).expect("index"))
                .expect("json");
        assert_eq!(index["manifests"].as_array().expect("list").len(), 3);
        assert_eq!(
            index["manifests"][2]["annotations"]["org.opencontainers.image.ref.name"],
            "latest"
        );
        assert!(update_layout_index(d.path(), &BTreeMap::new()).is_err());
    }

    #[test]
    fn output_specs() {
        assert_eq!(
            Output::parse("type=registry,name=x:y").expect("ok"),
            Output::parse("type=image,name=x:y,push=true").expect("ok"),
        );
        assert_eq!(
            Output::parse("type=image,name=x:y,push=true").expect("ok"),
            Output::Image {
                names: vec!["x:y".into()],
                push: true
            }
        );
        assert_eq!(
            Output::parse("type=oci,dest=o.tar").expect("ok"),
            Output::Oci {
                dest: Some("o.tar".into()),
                names: vec![]
            }
        );
        assert_eq!(
            Output::parse("type=oci,dest=lay,tar=false").expect("ok"),
            Output::OciDir {
                dest: "lay".into(),
                names: vec![]
            }
        );
        // As buildx: tar=false makes docker a layout directory too, names kept.
        let d = Output::parse("type=docker,dest=lay,tar=false,name=a:1").expect("ok");
        assert_eq!(
            d,
            Output::DockerDir {
                dest: "lay".into(),
                names: vec!["a:1".into()]
            }
        );
        assert_eq!(d.kind(), "docker");
        assert_eq!(d.attrs()["tar"], "false");
        assert_eq!(d.attrs()["name"], "a:1");
        assert!(d.target().is_none());
        assert_eq!(
            Output::parse("type=oci,dest=o.tar,tar=true").expect("ok"),
            Output::Oci {
                dest: Some("o.tar".into()),
                names: vec![]
            }
        );
        // Several names in one quoted field; a repeated key keeps its last value (buildx).
        assert_eq!(
            Output::parse(r#"type=docker,dest=d.tar,"name=a:1,b:2""#).expect("ok"),
            Output::Docker {
                dest: Some("d.tar".into()),
                names: vec!["a:1".into(), "b:2".into()]
            }
        );
        assert_eq!(
            Output::parse("type=docker,dest=d.tar,name=a:1,name=b:2").expect("ok"),
            Output::Docker {
                dest: Some("d.tar".into()),
                names: vec!["b:2".into()]
            }
        );
        assert_eq!(
            Output::Docker {
                dest: None,
                names: vec!["a:1".into(), "b:2".into()]
            }
            .attrs()["name"],
            "a:1,b:2"
        );
        // Without dest the archive goes into the Docker Engine; `-` is still stdout.
        assert_eq!(
            Output::parse("type=docker,name=a:1").expect("ok"),
            Output::DockerLoad {
                engine: None,
                names: vec!["a:1".into()]
            }
        );
        assert_eq!(
            Output::parse("type=docker,dest=-").expect("ok"),
            Output::Docker {
                dest: None,
                names: vec![]
            }
        );
        assert_eq!(Output::parse("type=docker").expect("ok").kind(), "docker");
        assert!(
            Output::DockerLoad {
                engine: None,
                names: vec![]
            }
            .target()
            .is_none()
        );
        assert!(engine_address(Some(&crate::Address::Unix("/x".into()))).is_err());
        assert_eq!(
            engine_address(Some(&crate::Address::DockerUnix("/d.sock".into()))).expect("ok"),
            crate::Address::DockerUnix("/d.sock".into())
        );
        assert!(Output::parse("type=oci,dest=-,tar=false").is_err());
        assert_eq!(
            Output::parse("type=docker,tar=false")
                .unwrap_err()
                .to_string(),
            r#"invalid build options: --output "type=docker,tar=false": dest is required for docker exporter"#
        );
        // As buildx: a `tar` value that is not a boolean means true; a single field is a
        // directory; a tar stream without dest goes to stdout.
        assert_eq!(
            Output::parse("type=oci,dest=d,tar=maybe").expect("ok"),
            Output::Oci {
                dest: Some("d".into()),
                names: vec![]
            }
        );
        assert!(Output::parse("type=zip,dest=x").is_err());
        assert_eq!(
            Output::parse("dest=x").expect("ok"),
            Output::Local {
                dest: "dest=x".into()
            }
        );
        assert_eq!(
            Output::parse("type=tar").expect("ok"),
            Output::Tar { dest: None }
        );
        assert_eq!(Output::parse("-").expect("ok"), Output::Tar { dest: None });
        assert_eq!(
            Output::parse("type=local,dest=-").unwrap_err().to_string(),
            r#"invalid build options: --output "type=local,dest=-": dest cannot be stdout for local exporter"#
        );
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn export_attributes_pass_through_as_buildx_sends_them() {
        let e = Export::parse(
            "type=image,name=r/a:1,push=true,registry.insecure=true,compression=zstd,\
             compression-level=3,force-compression=true,oci-mediatypes=true,\
             push-by-digest=true,name-canonical=true,store=false,rewrite-timestamp=true,\
             annotation.org.example=v,annotation-index.k=i,\
             annotation-manifest-descriptor[linux/amd64].k=d,dangling-name-prefix=p,\
             buildinfo-attrs=true,platform-split=false",
        )
        .expect("ok");
        assert_eq!(
            e.output,
            Output::Image {
                names: vec!["r/a:1".into()],
                push: true
            }
        );
        assert_eq!(
            e.attrs,
            attrs(&[
                ("annotation-index.k", "i"),
                ("annotation-manifest-descriptor[linux/amd64].k", "d"),
                ("annotation.org.example", "v"),
                ("buildinfo-attrs", "true"),
                ("compression", "zstd"),
                ("compression-level", "3"),
                ("dangling-name-prefix", "p"),
                ("force-compression", "true"),
                ("name-canonical", "true"),
                ("oci-mediatypes", "true"),
                ("platform-split", "false"),
                ("push-by-digest", "true"),
                ("registry.insecure", "true"),
                ("rewrite-timestamp", "true"),
                ("store", "false"),
            ])
        );
        // registry: image with push=true, and unpack=false unless given (buildx).
        let r = Export::parse("type=registry,name=r/a,push=false").expect("ok");
        assert_eq!(
            (r.output.clone(), r.attrs),
            (
                Output::Image {
                    names: vec!["r/a".into()],
                    push: true
                },
                attrs(&[("unpack", "false")])
            )
        );
        let r = Export::parse("type=registry,name=r/a,unpack=true").expect("ok");
        assert_eq!(r.attrs, attrs(&[("unpack", "true")]));
        // Keys kbx interprets stay out of attrs; others reach the exporter, even on local/tar.
        let l = Export::parse("type=local,dest=o,name=x,platform-split=false").expect("ok");
        assert_eq!(l.output, Output::Local { dest: "o".into() });
        assert_eq!(
            l.attrs,
            attrs(&[("name", "x"), ("platform-split", "false")])
        );
        let o = Export::parse("type=oci,dest=o,tar=false,compression=gzip").expect("ok");
        assert_eq!(
            o.output,
            Output::OciDir {
                dest: "o".into(),
                names: vec![]
            }
        );
        assert_eq!(o.attrs, attrs(&[("compression", "gzip")]));
        // cacheonly: no exporter at all.
        let c = Export::parse("type=cacheonly,dest=x,compression=zstd").expect("ok");
        assert_eq!(c, Output::CacheOnly.into());
        assert!(c.output.target().is_none());
    }

    #[test]
    fn pass_through_attributes_go_on_the_wire_and_cacheonly_sends_no_exporter() {
        let e = Export::parse("type=oci,dest=o.tar,compression=zstd,name=a:1").expect("ok");
        let opts = BuildOptions {
            output: Some(e.output),
            export_attrs: e.attrs,
            ..BuildOptions::default()
        };
        let r = solve_request(&opts, "Dockerfile", "s", "r");
        let want: HashMap<String, String> = [("name", "a:1"), ("compression", "zstd")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(r.exporter_deprecated, "oci");
        assert_eq!(r.exporter_attrs_deprecated, want);
        assert_eq!(r.exporters.len(), 1);
        assert_eq!(r.exporters[0].attrs, want);

        let opts = BuildOptions {
            output: Some(Output::CacheOnly),
            ..BuildOptions::default()
        };
        let r = solve_request(&opts, "Dockerfile", "s", "r");
        assert!(r.exporters.is_empty());
        assert!(r.exporter_deprecated.is_empty());
        assert!(r.exporter_attrs_deprecated.is_empty());
    }

    #[test]
    fn several_outputs_are_exporters_in_order_and_the_first_fills_the_old_fields() {
        let opts = BuildOptions {
            output: Some(Output::Local { dest: "out".into() }),
            export_attrs: attrs(&[("platform-split", "false")]),
            extra_outputs: vec![
                Export::parse("type=cacheonly").expect("ok"),
                Export::parse("type=tar,dest=o.tar").expect("ok"),
                Export::parse("type=oci,dest=o2.tar,name=a:1,compression=zstd").expect("ok"),
            ],
            ..BuildOptions::default()
        };
        assert_eq!(opts.outputs().len(), 4, "cacheonly counts as an output");
        let r = solve_request(&opts, "Dockerfile", "s", "r");
        let kinds: Vec<&str> = r.exporters.iter().map(|e| e.r#type.as_str()).collect();
        assert_eq!(
            kinds,
            ["local", "tar", "oci"],
            "cacheonly sends no exporter"
        );
        assert_eq!(r.exporters[0].attrs["platform-split"], "false");
        assert_eq!(r.exporters[2].attrs["name"], "a:1");
        assert_eq!(r.exporters[2].attrs["compression"], "zstd");
        assert_eq!(r.exporter_deprecated, "local");
        assert_eq!(r.exporter_attrs_deprecated, r.exporters[0].attrs);

        // A layout directory goes last, so that the merged response describes its image.
        let opts = BuildOptions {
            output: Some(Output::parse("type=docker,tar=false,dest=lay").expect("ok")),
            extra_outputs: vec![Export::parse("type=oci,dest=o.tar").expect("ok")],
            ..BuildOptions::default()
        };
        let r = solve_request(&opts, "Dockerfile", "s", "r");
        let attrs: Vec<Option<&String>> = r.exporters.iter().map(|e| e.attrs.get("tar")).collect();
        assert_eq!(attrs, [None, Some(&"false".to_owned())]);
        assert_eq!(r.exporter_deprecated, "oci");

        // Without a first output, the first extra one is exporter 0.
        let opts = BuildOptions {
            extra_outputs: vec![Export::parse("type=tar,dest=o.tar").expect("ok")],
            ..BuildOptions::default()
        };
        let r = solve_request(&opts, "Dockerfile", "s", "r");
        assert_eq!(r.exporter_deprecated, "tar");
        assert_eq!(r.exporters.len(), 1);
    }

    #[test]
    fn outputs_that_cannot_share_a_build_are_refused_with_buildx_texts() {
        let list = |specs: &[&str]| -> Vec<Export> {
            specs
                .iter()
                .map(|s| Export::parse(s).expect("parses"))
                .collect()
        };
        assert!(check_outputs(&list(&["-", "type=local,dest=d"])).is_ok());
        assert_eq!(
            check_outputs(&list(&["-", "type=oci,dest=-"]))
                .unwrap_err()
                .to_string(),
            "invalid build options: multiple outputs configured to write to stdout"
        );
        assert_eq!(
            check_outputs(&list(&[
                "type=oci,tar=false,dest=a",
                "type=docker,tar=false,dest=b"
            ]))
            .unwrap_err()
            .to_string(),
            r#"invalid build options: oci store key "export" already exists"#
        );
        assert!(
            check_outputs(&list(&["type=oci,tar=false,dest=a", "type=oci,dest=o.tar"])).is_ok()
        );
        let e = Error::MultipleOutputsUnsupported {
            daemon: "buildkitd v0.12.5".into(),
        };
        assert_eq!(
            e.to_string(),
            "multiple outputs currently unsupported by the current BuildKit daemon, please upgrade to version v0.13+ or use a single output"
        );
    }

    /// A fake buildkitd whose `Info` says v0.12.5 and which records every other call: several
    /// outputs are refused with buildx's text after `Info` alone (no session, no solve); one
    /// output gets past the check (to the session, which the fake does not serve).
    #[tokio::test]
    async fn several_outputs_are_refused_before_the_session_on_buildkit_0_12() {
        use crate::service::{BoxFut, HttpResponse, ProstCodec, Routes, Served, grpc};
        use bollard_buildkit_proto::moby::buildkit::v1::types::BuildkitVersion;
        use bollard_buildkit_proto::moby::buildkit::v1::{InfoRequest, InfoResponse};
        use std::sync::{Arc, Mutex};

        #[derive(Clone)]
        struct Fake(Arc<Mutex<Vec<String>>>);
        struct Info;
        impl tonic::server::UnaryService<InfoRequest> for Info {
            type Response = InfoResponse;
            type Future = std::future::Ready<Result<tonic::Response<InfoResponse>, tonic::Status>>;
            fn call(&mut self, _: tonic::Request<InfoRequest>) -> Self::Future {
                std::future::ready(Ok(tonic::Response::new(InfoResponse {
                    buildkit_version: Some(BuildkitVersion {
                        package: "github.com/moby/buildkit".into(),
                        version: "v0.12.5".into(),
                        revision: "x".into(),
                    }),
                })))
            }
        }
        impl Routes for Fake {
            const NAME: &'static str = "moby.buildkit.v1.Control";
            fn route<B>(&self, path: &str, req: http::Request<B>) -> BoxFut<HttpResponse>
            where
                B: tonic::codegen::Body + Send + 'static,
                B::Error: Into<tonic::codegen::StdError> + Send + 'static,
            {
                if let Ok(mut calls) = self.0.lock() {
                    calls.push(path.to_owned());
                }
                if path == "/moby.buildkit.v1.Control/Info" {
                    let codec = ProstCodec::<InfoResponse, InfoRequest>::default();
                    return Box::pin(
                        async move { Ok(grpc(codec, 1 << 20).unary(Info, req).await) },
                    );
                }
                crate::service::unimplemented("not served by the fake")
            }
        }

        let calls = Arc::new(Mutex::new(Vec::new()));
        let router = tonic::transport::Server::builder().add_service(Served(Fake(calls.clone())));
        let (server_io, client_io) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let incoming = tokio_stream::once(Ok::<_, std::io::Error>(server_io));
            let _ = router.serve_with_incoming(incoming).await;
        });
        let slot = Arc::new(Mutex::new(Some(client_io)));
        let channel = crate::transport::connect_with("fake", move || {
            let io = slot.lock().ok().and_then(|mut s| s.take());
            async move { io.ok_or_else(|| std::io::Error::other("used")) }
        })
        .await
        .expect("channel");
        let client = Client::new(channel, crate::Backend::Buildkitd);

        let ctx = tempfile::tempdir().expect("tempdir");
        std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        let out = tempfile::tempdir().expect("tempdir");
        let opts = BuildOptions {
            context: ctx.path().into(),
            output: Some(Output::Local {
                dest: out.path().join("l"),
            }),
            extra_outputs: vec![Export::parse("type=cacheonly").expect("ok")],
            credentials: Some(crate::DockerCredentials::default()),
            ..BuildOptions::default()
        };
        let e = client.build(&opts, |_| {}).await.expect_err("refused");
        assert!(
            matches!(&e, Error::MultipleOutputsUnsupported { daemon } if daemon == "buildkitd v0.12.5"),
            "{e:?}"
        );
        assert_eq!(
            calls.lock().expect("calls").clone(),
            ["/moby.buildkit.v1.Control/Info"],
            "nothing but Info was asked"
        );
        assert!(!out.path().join("l").exists());

        // One output passes the check and goes on to open the session.
        let single = BuildOptions {
            extra_outputs: vec![],
            ..opts
        };
        let e = client.build(&single, |_| {}).await.expect_err("no session");
        assert!(
            !matches!(e, Error::MultipleOutputsUnsupported { .. }),
            "{e:?}"
        );
        assert!(
            calls
                .lock()
                .expect("calls")
                .contains(&"/moby.buildkit.v1.Control/Session".to_owned())
        );
    }
}

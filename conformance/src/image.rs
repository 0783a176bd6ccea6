//! Test images without a registry: a root filesystem collected from host files (with the shared
//! libraries `ldd` lists), written as a reproducible single-layer docker-archive that
//! `ctr images import` and `kind load image-archive` understand.
//!
//! The images defined here:
//! - [`pause_image`]: a tiny static program that sleeps until SIGTERM/SIGINT and reaps
//!   children, used as containerd's sandbox image;
//! - [`builder_image`] and [`rootless_builder_image`]: laid out as `moby/buildkit`'s
//!   `buildx-stable-1` and `buildx-stable-1-rootless` images, with the real `buildkitd` and
//!   `buildctl` v0.13.2 (built from Debian's source by `conformance/scripts/build-buildkit.sh`),
//!   Debian's `runc`, busybox, and for rootless Debian's `rootlesskit` and `uidmap`;
//! - [`binfmt_image`] and [`registry_image`]: QEMU's binfmt registration and a registry.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Error;

/// The tag of the pause image (not `latest`, so pods use `IfNotPresent`).
pub const PAUSE_IMAGE: &str = "kbx.invalid/pause:test";
/// The tag of the builder image: buildx's default image, so that renderings without `image=`
/// use it (not `latest`, so pods use `IfNotPresent` and never pull).
pub const BUILDER_IMAGE: &str = "moby/buildkit:buildx-stable-1";

/// The tag of the rootless builder image: buildx's default for `rootless=true`.
pub const ROOTLESS_BUILDER_IMAGE: &str = "moby/buildkit:buildx-stable-1-rootless";

/// The uid and gid the rootless builder image runs as (`user`, as upstream's).
pub const ROOTLESS_UID: u32 = 1000;

/// The tag of the binfmt image, the `qemu.image` of `qemu.install=true` builders.
pub const BINFMT_IMAGE: &str = "kbx.invalid/binfmt:test";

/// Where the binfmt image carries Debian's arm64 emulator.
pub const QEMU_AARCH64: &str = "/usr/bin/qemu-aarch64-static";

/// The tag of the registry image: Debian's `docker-registry` (distribution v2).
pub const REGISTRY_IMAGE: &str = "kbx.invalid/registry:test";

/// Where Debian's `docker-registry` lives, on the host and in the registry image.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// The registry image's configuration: port 5000, storage under `/var/lib/registry`. Basic
/// auth is switched on per pod with `REGISTRY_AUTH_HTPASSWD_REALM` and
/// `REGISTRY_AUTH_HTPASSWD_PATH`.
pub const REGISTRY_CONFIG: &str = "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n  delete:\n    enabled: true\nhttp:\n  addr: :5000\n";

/// The binfmt image's entry point, installed as `/usr/local/bin/binfmt`.
pub const BINFMT_SH: &str = include_str!("../images/binfmt.sh");

/// The C source of the pause program.
pub const PAUSE_C: &str = include_str!("../images/pause.c");

/// Busybox applets linked into the builder images.
const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ls", "cat", "cp", "mkdir", "rm", "mv", "ln", "ps", "echo", "sleep", "mount", "umount",
    "env", "kill", "grep", "sed", "tar", "gzip", "head", "tail", "wc", "test", "true", "false",
    "id", "find", "chmod", "touch", "awk",
];

/// An entry of the image's file system.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir { mode: u32 },
    File { source: PathBuf, mode: u32 },
    Data { bytes: Vec<u8>, mode: u32 },
    Symlink { target: PathBuf },
}

/// A root file system being assembled. Paths are image paths (absolute, no `..`).
#[derive(Debug, Clone, Default)]
pub struct Rootfs {
    /// The host directory that host paths are read from (`/` except in tests).
    host_root: PathBuf,
    entries: BTreeMap<PathBuf, Entry>,
    /// Owners other than root (uid, gid).
    owners: BTreeMap<PathBuf, (u32, u32)>,
    /// Extended attributes (written as PAX `SCHILY.xattr.` records).
    xattrs: BTreeMap<PathBuf, Vec<(String, Vec<u8>)>>,
}

/// The image configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// The tag, e.g. [`BUILDER_IMAGE`].
    pub tag: String,
    /// The entry point.
    pub entrypoint: Vec<String>,
    /// The environment (`KEY=value`).
    pub env: Vec<String>,
    /// The user (`uid:gid`), root when empty.
    pub user: String,
    /// Volumes the image declares (the container runtime gives each a directory of its own).
    pub volumes: Vec<String>,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::io(what, source)
}

impl Rootfs {
    /// An empty file system that reads host files from `/`.
    pub fn new() -> Self {
        Self::with_host_root("/")
    }

    /// An empty file system that reads host files below `host_root` (for tests).
    pub fn with_host_root(host_root: impl Into<PathBuf>) -> Self {
        Rootfs {
            host_root: host_root.into(),
            entries: BTreeMap::new(),
            owners: BTreeMap::new(),
            xattrs: BTreeMap::new(),
        }
    }

    fn host(&self, image_path: &Path) -> PathBuf {
        self.host_root
            .join(image_path.strip_prefix("/").unwrap_or(image_path))
    }

    fn add_parents(&mut self, path: &Path) {
        for parent in path.ancestors().skip(1) {
            if parent == Path::new("/") || parent.as_os_str().is_empty() {
                break;
            }
            self.entries
                .entry(parent.to_path_buf())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: impl AsRef<Path>, mode: u32) -> &mut Self {
        let path = path.as_ref().to_path_buf();
        self.add_parents(&path);
        self.entries.insert(path, Entry::Dir { mode });
        self
    }

    /// Gives `path` (already added) to `uid:gid` instead of root.
    pub fn chown(&mut self, path: impl AsRef<Path>, uid: u32, gid: u32) -> &mut Self {
        self.owners.insert(path.as_ref().to_path_buf(), (uid, gid));
        self
    }

    /// Sets the extended attribute `name` of `path` (already added), e.g.
    /// `security.capability` for file capabilities.
    pub fn xattr(&mut self, path: impl AsRef<Path>, name: &str, value: &[u8]) -> &mut Self {
        self.xattrs
            .entry(path.as_ref().to_path_buf())
            .or_default()
            .push((name.to_owned(), value.to_vec()));
        self
    }

    /// Gives the file `path` (already added) the permitted and effective capability `bit`
    /// instead of any set-uid bit: `security.capability`, revision 2.
    pub fn file_capability(&mut self, path: impl AsRef<Path>, bit: u32) -> &mut Self {
        let path = path.as_ref().to_path_buf();
        if let Some(Entry::File { mode, .. }) = self.entries.get_mut(&path) {
            *mode &= !0o6000;
        }
        let (word, shift) = ((bit / 32) as usize, bit % 32);
        let mut permitted = [0u32; 2];
        permitted[word] = 1 << shift;
        let mut value = Vec::with_capacity(20);
        value.extend_from_slice(&0x0200_0001u32.to_le_bytes()); // revision 2, effective
        for w in permitted {
            value.extend_from_slice(&w.to_le_bytes());
            value.extend_from_slice(&0u32.to_le_bytes()); // inheritable
        }
        self.xattr(path, "security.capability", &value)
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: impl AsRef<Path>, target: impl Into<PathBuf>) -> &mut Self {
        let path = path.as_ref().to_path_buf();
        self.add_parents(&path);
        self.entries.insert(
            path,
            Entry::Symlink {
                target: target.into(),
            },
        );
        self
    }

    /// Adds a file with the given content.
    pub fn data(
        &mut self,
        path: impl AsRef<Path>,
        bytes: impl Into<Vec<u8>>,
        mode: u32,
    ) -> &mut Self {
        let path = path.as_ref().to_path_buf();
        self.add_parents(&path);
        self.entries.insert(
            path,
            Entry::Data {
                bytes: bytes.into(),
                mode,
            },
        );
        self
    }

    /// Adds the host file `source` at `path`, with its mode.
    pub fn file(
        &mut self,
        path: impl AsRef<Path>,
        source: impl AsRef<Path>,
    ) -> Result<&mut Self, Error> {
        use std::os::unix::fs::PermissionsExt;
        let source = source.as_ref();
        let meta =
            std::fs::metadata(source).map_err(io_err(format!("reading {}", source.display())))?;
        let path = path.as_ref().to_path_buf();
        self.add_parents(&path);
        self.entries.insert(
            path,
            Entry::File {
                source: source.to_path_buf(),
                mode: meta.permissions().mode() & 0o7777,
            },
        );
        Ok(self)
    }

    /// Adds the host path `path` at the same place in the image, reproducing every symbolic link
    /// met on the way (so `/lib64/ld-linux-x86-64.so.2` keeps working through usrmerge links).
    pub fn host_path(&mut self, path: impl AsRef<Path>) -> Result<&mut Self, Error> {
        let wanted = path.as_ref();
        let mut queue = Vec::new();
        push_components(&mut queue, wanted);
        let mut current = PathBuf::from("/");
        let mut hops = 0;
        while let Some(name) = queue.pop() {
            if name == ".." {
                current.pop();
                continue;
            }
            let next = current.join(&name);
            let host = self.host(&next);
            let meta = std::fs::symlink_metadata(&host)
                .map_err(io_err(format!("reading {}", host.display())))?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return Err(Error::Image(format!(
                        "too many symbolic links resolving {}",
                        wanted.display()
                    )));
                }
                let target = std::fs::read_link(&host)
                    .map_err(io_err(format!("reading link {}", host.display())))?;
                self.symlink(&next, target.clone());
                if target.is_absolute() {
                    current = PathBuf::from("/");
                }
                push_components(&mut queue, &target);
            } else if meta.is_dir() {
                if !self.entries.contains_key(&next) {
                    self.dir(&next, 0o755);
                }
                current = next;
            } else {
                if !queue.is_empty() {
                    return Err(Error::Image(format!(
                        "{} is not a directory",
                        next.display()
                    )));
                }
                self.file(&next, &host)?;
                current = next;
            }
        }
        Ok(self)
    }

    /// Adds an executable at `path` from the host file `source`, plus every shared library and
    /// the loader that `ldd` lists for it (at their host paths).
    pub fn executable(
        &mut self,
        path: impl AsRef<Path>,
        source: impl AsRef<Path>,
    ) -> Result<&mut Self, Error> {
        let source = source.as_ref();
        self.file(path, source)?;
        for lib in shared_libraries(source)? {
            self.host_path(&lib)?;
        }
        Ok(self)
    }

    /// The number of entries (directories included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file system is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A fingerprint of everything the archive would contain: paths, modes, link targets,
    /// inline data, the content of small host files and the size and modification time of
    /// large ones, and the image configuration. Equal fingerprints mean an archive can be reused.
    pub fn fingerprint(&self, config: &ImageConfig) -> Result<String, Error> {
        use std::os::unix::fs::MetadataExt;
        let mut h = Sha256::new();
        h.update(format!("{config:?}\n"));
        for (path, entry) in &self.entries {
            h.update(path.as_os_str().as_encoded_bytes());
            if let Some((uid, gid)) = self.owners.get(path) {
                h.update(format!(" owner {uid}:{gid}"));
            }
            for (name, value) in self.xattrs.get(path).into_iter().flatten() {
                h.update(format!(" xattr {name}="));
                h.update(value);
            }
            match entry {
                Entry::Dir { mode } => h.update(format!(" dir {mode:o}\n")),
                Entry::Symlink { target } => h.update(format!(" link {}\n", target.display())),
                Entry::Data { bytes, mode } => {
                    h.update(format!(" data {mode:o} {}\n", bytes.len()));
                    h.update(bytes);
                }
                Entry::File { source, mode } => {
                    let meta = std::fs::metadata(source)
                        .map_err(io_err(format!("reading {}", source.display())))?;
                    h.update(format!(" file {mode:o} {}", meta.len()));
                    if meta.len() <= 1 << 20 {
                        let bytes = std::fs::read(source)
                            .map_err(io_err(format!("reading {}", source.display())))?;
                        h.update(&bytes);
                    } else {
                        h.update(format!(
                            " {} {} {}",
                            source.display(),
                            meta.mtime(),
                            meta.mtime_nsec()
                        ));
                    }
                    h.update("\n");
                }
            }
        }
        Ok(hex(&h.finalize()))
    }

    /// Writes the archive to `<cache_dir>/<name>-<fingerprint>.tar` unless it is already there,
    /// removes older archives of the same `name`, and returns the path.
    pub fn cached_archive(
        &self,
        config: &ImageConfig,
        cache_dir: &Path,
        name: &str,
    ) -> Result<PathBuf, Error> {
        let fingerprint = self.fingerprint(config)?;
        let path = cache_dir.join(format!("{name}-{}.tar", &fingerprint[..16]));
        if path.is_file() {
            return Ok(path);
        }
        std::fs::create_dir_all(cache_dir)
            .map_err(io_err(format!("creating {}", cache_dir.display())))?;
        let partial = cache_dir.join(format!(
            ".{name}-{}.{}.partial",
            &fingerprint[..16],
            std::process::id()
        ));
        self.write_archive(config, &partial)?;
        if let Ok(entries) = std::fs::read_dir(cache_dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&format!("{name}-")) && n.ends_with(".tar") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        std::fs::rename(&partial, &path)
            .map_err(io_err(format!("renaming into {}", path.display())))?;
        Ok(path)
    }

    /// Writes the layer as an uncompressed, reproducible tar: sorted entries, owner root, time 0.
    pub fn write_layer<W: Write>(&self, out: W) -> Result<W, Error> {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        for (path, entry) in &self.entries {
            let name = path.strip_prefix("/").unwrap_or(path);
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            if let Some(xattrs) = self.xattrs.get(path) {
                let records: Vec<(String, &[u8])> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                    .collect();
                tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                    .map_err(io_err(format!(
                        "writing the attributes of {}",
                        path.display()
                    )))?;
            }
            let (uid, gid) = self.owners.get(path).copied().unwrap_or((0, 0));
            header.set_uid(u64::from(uid));
            header.set_gid(u64::from(gid));
            let appended = match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    tar.append_data(&mut header, name, std::io::empty())
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, name, target)
                }
                Entry::Data { bytes, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(bytes.len() as u64);
                    tar.append_data(&mut header, name, bytes.as_slice())
                }
                Entry::File { source, mode } => {
                    let file = std::fs::File::open(source)
                        .map_err(io_err(format!("opening {}", source.display())))?;
                    let len = file
                        .metadata()
                        .map_err(io_err(format!("reading {}", source.display())))?
                        .len();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(len);
                    tar.append_data(&mut header, name, file)
                }
            };
            appended.map_err(io_err(format!("writing {} into the layer", path.display())))?;
        }
        tar.into_inner().map_err(io_err("finishing the layer"))
    }

    /// Writes a docker-archive (`manifest.json`, config, one layer) to `path`. Returns the
    /// image id (the config's sha256).
    pub fn write_archive(&self, config: &ImageConfig, path: &Path) -> Result<String, Error> {
        let layer = self.write_layer(HashingWriter::default())?;
        let layer_digest = layer.hex();
        let config_json = config_json(config, go_arch(), &layer_digest)?;
        let config_digest = hex(&Sha256::digest(&config_json));
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{config_digest}.json"),
            "RepoTags": [config.tag],
            "Layers": [format!("{layer_digest}/layer.tar")],
        }]))
        .map_err(|e| Error::Image(format!("encoding the manifest: {e}")))?;

        let file =
            std::fs::File::create(path).map_err(io_err(format!("creating {}", path.display())))?;
        let mut outer = tar::Builder::new(std::io::BufWriter::new(file));
        let mut put = |name: String, bytes: &[u8]| -> Result<(), Error> {
            let mut h = tar::Header::new_gnu();
            h.set_mtime(0);
            h.set_mode(0o644);
            h.set_size(bytes.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            outer
                .append_data(&mut h, name, bytes)
                .map_err(io_err(format!("writing {}", path.display())))
        };
        put("manifest.json".into(), &manifest)?;
        put(format!("{config_digest}.json"), &config_json)?;
        // The layer is written a second time, streamed into the archive.
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_mode(0o644);
        h.set_size(layer.len);
        h.set_entry_type(tar::EntryType::Regular);
        let mut pipe = LayerReader::new(self)?;
        outer
            .append_data(&mut h, format!("{layer_digest}/layer.tar"), &mut pipe)
            .map_err(io_err(format!("writing {}", path.display())))?;
        outer
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(io_err(format!("finishing {}", path.display())))?;
        Ok(config_digest)
    }
}

/// The image configuration JSON of a single-layer image for `arch` (a Go architecture name).
fn config_json(config: &ImageConfig, arch: &str, layer_digest: &str) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": config.entrypoint,
            "Env": config.env,
            "WorkingDir": "/",
            "User": config.user,
            "Volumes": config
                .volumes
                .iter()
                .map(|v| (v.clone(), serde_json::json!({})))
                .collect::<serde_json::Map<_, _>>(),
        },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
        "history": [{ "created_by": "kbx-conformance image builder" }],
    }))
    .map_err(|e| Error::Image(format!("encoding the image config: {e}")))
}

/// One platform of a multi-platform image: a Go architecture name (`amd64`, `arm64`), its file
/// system and configuration. The configurations' tags are ignored; the index's tag counts.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    /// The architecture, as in an OCI platform (`amd64`, `arm64`).
    pub arch: String,
    /// The file system.
    pub rootfs: Rootfs,
    /// The configuration.
    pub config: ImageConfig,
}

/// The name containerd and the kubelet use for `tag`: Docker's normalisation
/// (`moby/buildkit:x` is `docker.io/moby/buildkit:x`, `busybox:x` is
/// `docker.io/library/busybox:x`; a first component with a `.` or `:`, or `localhost`, is a
/// registry).
pub fn normalized_name(tag: &str) -> String {
    match tag.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            tag.to_owned()
        }
        Some(_) => format!("docker.io/{tag}"),
        None => format!("docker.io/library/{tag}"),
    }
}

/// The fingerprint of a multi-platform image: its tag and every platform's file system and
/// configuration.
pub fn multi_platform_fingerprint(tag: &str, images: &[PlatformImage]) -> Result<String, Error> {
    let mut h = Sha256::new();
    h.update(format!("oci index {tag}\n"));
    for image in images {
        h.update(format!(
            "{} {}\n",
            image.arch,
            image.rootfs.fingerprint(&image.config)?
        ));
    }
    Ok(hex(&h.finalize()))
}

/// Writes an OCI image layout archive (`oci-layout`, `index.json`, `blobs/sha256/…`) whose
/// `index.json` names `tag` (annotations `io.containerd.image.name`, normalised, and
/// `org.opencontainers.image.ref.name`) and points at an image index with one single-layer
/// manifest per platform, as a multi-platform image in a registry. `ctr images import
/// [--platform …]` reads it. Entries are sorted and timeless, so equal inputs give equal bytes.
/// Returns the index's digest (`sha256:…`).
pub fn write_multi_platform_archive(
    tag: &str,
    images: &[PlatformImage],
    path: &Path,
) -> Result<String, Error> {
    fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
        serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{}", hex(&Sha256::digest(bytes))),
            "size": bytes.len(),
        })
    }
    let encode = |v: &serde_json::Value, what: &str| {
        serde_json::to_vec(v).map_err(|e| Error::Image(format!("encoding the {what}: {e}")))
    };
    // Small blobs in memory; layers streamed from their file systems.
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut layers: Vec<(String, u64, &Rootfs)> = Vec::new();
    let mut manifests = Vec::new();
    for image in images {
        let layer = image.rootfs.write_layer(HashingWriter::default())?;
        let layer_digest = layer.hex();
        let config = config_json(&image.config, &image.arch, &layer_digest)?;
        let manifest = encode(
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
                "layers": [{
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_digest}"),
                    "size": layer.len,
                }],
            }),
            "manifest",
        )?;
        let mut entry = descriptor("application/vnd.oci.image.manifest.v1+json", &manifest);
        entry["platform"] = serde_json::json!({ "architecture": image.arch, "os": "linux" });
        manifests.push(entry);
        small.insert(hex(&Sha256::digest(&config)), config);
        small.insert(hex(&Sha256::digest(&manifest)), manifest);
        if !layers.iter().any(|(d, _, _)| *d == layer_digest) {
            layers.push((layer_digest, layer.len, &image.rootfs));
        }
    }
    let index = encode(
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }),
        "image index",
    )?;
    let index_digest = format!("sha256:{}", hex(&Sha256::digest(&index)));
    let mut top = descriptor("application/vnd.oci.image.index.v1+json", &index);
    top["annotations"] = serde_json::json!({
        "io.containerd.image.name": normalized_name(tag),
        "org.opencontainers.image.ref.name": tag.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest"),
    });
    let index_json = encode(
        &serde_json::json!({ "schemaVersion": 2, "manifests": [top] }),
        "index.json",
    )?;
    small.insert(hex(&Sha256::digest(&index)), index);

    let file =
        std::fs::File::create(path).map_err(io_err(format!("creating {}", path.display())))?;
    let mut outer = tar::Builder::new(std::io::BufWriter::new(file));
    let header = |len: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        h.set_mode(0o644);
        h.set_size(len);
        h.set_entry_type(tar::EntryType::Regular);
        h
    };
    let written = io_err(format!("writing {}", path.display()));
    let put = |outer: &mut tar::Builder<_>, name: String, bytes: &[u8]| {
        outer
            .append_data(&mut header(bytes.len() as u64), name, bytes)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    };
    put(
        &mut outer,
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    put(&mut outer, "index.json".into(), &index_json)?;
    for (digest, bytes) in &small {
        put(&mut outer, format!("blobs/sha256/{digest}"), bytes)?;
    }
    for (digest, len, rootfs) in layers {
        let mut pipe = LayerReader::new(rootfs)?;
        outer
            .append_data(
                &mut header(len),
                format!("blobs/sha256/{digest}"),
                &mut pipe,
            )
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    outer
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(written)?;
    Ok(index_digest)
}

/// Writes the multi-platform archive of [`write_multi_platform_archive`] to
/// `<cache_dir>/<name>-<fingerprint>.oci.tar` unless it is already there, removes older
/// archives of the same `name`, and returns the path.
pub fn cached_multi_platform_archive(
    tag: &str,
    images: &[PlatformImage],
    cache_dir: &Path,
    name: &str,
) -> Result<PathBuf, Error> {
    let fingerprint = multi_platform_fingerprint(tag, images)?;
    let path = cache_dir.join(format!("{name}-{}.oci.tar", &fingerprint[..16]));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(cache_dir)
        .map_err(io_err(format!("creating {}", cache_dir.display())))?;
    let partial = cache_dir.join(format!(
        ".{name}-{}.{}.partial",
        &fingerprint[..16],
        std::process::id()
    ));
    write_multi_platform_archive(tag, images, &partial)?;
    if let Ok(entries) = std::fs::read_dir(cache_dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("{name}-")) && n.ends_with(".oci.tar") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    std::fs::rename(&partial, &path)
        .map_err(io_err(format!("renaming into {}", path.display())))?;
    Ok(path)
}

/// Pushes the components of `path` on a stack so that the first component pops first.
fn push_components(stack: &mut Vec<std::ffi::OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => stack.push(n.to_os_string()),
            Component::ParentDir => stack.push("..".into()),
            _ => {}
        }
    }
}

/// Reads a layer back as bytes (written to a temporary file first, so nothing large stays in
/// memory).
struct LayerReader {
    file: std::fs::File,
}

impl LayerReader {
    fn new(rootfs: &Rootfs) -> Result<Self, Error> {
        let file = tempfile::tempfile().map_err(io_err("creating a temporary layer file"))?;
        let mut file = rootfs.write_layer(file)?;
        use std::io::Seek;
        file.rewind().map_err(io_err("rewinding the layer file"))?;
        Ok(LayerReader { file })
    }
}

impl std::io::Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }
}

#[derive(Default)]
struct HashingWriter {
    hasher: Sha256,
    len: u64,
}

impl HashingWriter {
    fn hex(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The shared libraries and loader `ldd` lists for `binary` (empty for static binaries).
pub fn shared_libraries(binary: &Path) -> Result<BTreeSet<PathBuf>, Error> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .env("LC_ALL", "C")
        .output()
        .map_err(io_err(format!("running ldd on {}", binary.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(BTreeSet::new());
        }
        return Err(Error::Image(format!(
            "ldd {} failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_ldd(&text)
}

/// Parses `ldd` output into library paths.
pub fn parse_ldd(text: &str) -> Result<BTreeSet<PathBuf>, Error> {
    let mut libs = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            return Err(Error::Image(format!("missing shared library: {line}")));
        }
        let candidate = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = candidate.filter(|p| p.starts_with('/')) {
            libs.insert(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Compiles the pause program with `cc -static` into `dir` and returns its path.
pub fn compile_pause(dir: &Path) -> Result<PathBuf, Error> {
    let source = dir.join("pause.c");
    std::fs::write(&source, PAUSE_C).map_err(io_err(format!("writing {}", source.display())))?;
    let binary = dir.join("pause");
    let out = std::process::Command::new("cc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .map_err(io_err("running cc (install gcc and libc6-dev)"))?;
    if !out.status.success() {
        return Err(Error::Image(format!(
            "cc -static pause.c failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(binary)
}

/// Compiles the pause program for linux/arm64 with Debian's cross compiler
/// (`aarch64-linux-gnu-gcc -static`, package `gcc-aarch64-linux-gnu`) into `dir` and returns
/// its path.
pub fn compile_pause_arm64(dir: &Path) -> Result<PathBuf, Error> {
    let source = dir.join("pause.c");
    std::fs::write(&source, PAUSE_C).map_err(io_err(format!("writing {}", source.display())))?;
    let binary = dir.join("pause-arm64");
    let out = std::process::Command::new("aarch64-linux-gnu-gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .map_err(io_err(
            "running aarch64-linux-gnu-gcc (install gcc-aarch64-linux-gnu)",
        ))?;
    if !out.status.success() {
        return Err(Error::Image(format!(
            "aarch64-linux-gnu-gcc -static pause.c failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(binary)
}

/// The pause image: `/pause` only.
pub fn pause_image(pause_binary: &Path) -> Result<(Rootfs, ImageConfig), Error> {
    let mut fs = Rootfs::new();
    fs.file("/pause", pause_binary)?;
    let config = ImageConfig {
        tag: PAUSE_IMAGE.into(),
        entrypoint: vec!["/pause".into()],
        env: Vec::new(),
        ..Default::default()
    };
    Ok((fs, config))
}

/// Host programs the builder images need, from Debian packages.
pub const BUILDER_HOST_PROGRAMS: &[(&str, &str)] = &[
    ("/usr/sbin/runc", "runc"),
    ("/bin/busybox", "busybox-static"),
];

/// Host programs the rootless builder image needs as well, from Debian packages.
pub const ROOTLESS_HOST_PROGRAMS: &[(&str, &str)] = &[
    ("/usr/bin/rootlesskit", "rootlesskit"),
    ("/usr/bin/newuidmap", "uidmap"),
    ("/usr/bin/newgidmap", "uidmap"),
];

/// Capability numbers (linux/capability.h).
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// The `PATH` of the builder images.
const BUILDER_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn require(programs: &[(&str, &str)]) -> Result<(), Error> {
    for (program, package) in programs {
        if !Path::new(program).exists() {
            return Err(Error::Image(format!(
                "{program} is missing (install the Debian package {package})"
            )));
        }
    }
    Ok(())
}

/// The parts both builder images share: `buildkitd` and `buildctl` from `buildkit` (a
/// directory), `runc`, busybox with its applets, and the usual top-level directories.
fn buildkit_rootfs(buildkit: &Path) -> Result<Rootfs, Error> {
    buildkit_rootfs_with(buildkit, Path::new("/bin/busybox"))
}

/// [`buildkit_rootfs`] with the busybox binary `busybox`.
fn buildkit_rootfs_with(buildkit: &Path, busybox: &Path) -> Result<Rootfs, Error> {
    require(BUILDER_HOST_PROGRAMS)?;
    for binary in ["buildkitd", "buildctl"] {
        if !buildkit.join(binary).is_file() {
            return Err(Error::MissingProgram {
                program: buildkit.join(binary).display().to_string(),
                hint: "run conformance/scripts/build-buildkit.sh".into(),
            });
        }
    }
    let mut fs = Rootfs::new();
    for link in ["bin", "sbin", "lib", "lib64"] {
        if std::fs::symlink_metadata(format!("/{link}"))
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            fs.host_path(format!("/{link}"))?;
        }
    }
    fs.file("/usr/bin/buildkitd", buildkit.join("buildkitd"))?
        .file("/usr/bin/buildctl", buildkit.join("buildctl"))?
        .executable("/usr/bin/runc", "/usr/sbin/runc")?
        .file("/usr/bin/busybox", busybox)?;
    for applet in BUSYBOX_APPLETS {
        let path = PathBuf::from("/usr/bin").join(applet);
        if !fs.entries.contains_key(&path) {
            fs.symlink(path, "busybox");
        }
    }
    fs.dir("/tmp", 0o1777)
        .dir("/run", 0o755)
        .symlink("/var/run", "../run")
        .dir("/etc/buildkit", 0o755)
        .dir("/proc", 0o555)
        .dir("/sys", 0o555)
        .dir("/dev", 0o755);
    Ok(fs)
}

/// The builder image, laid out as `moby/buildkit:buildx-stable-1`: entry point `buildkitd`,
/// `buildctl` and `runc` on `PATH`, state in the volume `/var/lib/buildkit`, config read from
/// `/etc/buildkit/buildkitd.toml`. `buildkit` is the directory with `buildkitd` and `buildctl`
/// (see [`crate::local::buildkit_bin_dir`]).
pub fn builder_image(buildkit: &Path) -> Result<(Rootfs, ImageConfig), Error> {
    Ok(builder_image_from(buildkit_rootfs(buildkit)?))
}

/// The builder image's own files and configuration on top of [`buildkit_rootfs`].
fn builder_image_from(mut fs: Rootfs) -> (Rootfs, ImageConfig) {
    fs.data("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .data("/etc/group", "root:x:0:\n", 0o644)
        .dir("/root", 0o700)
        .dir("/var/lib/buildkit", 0o711);
    let config = ImageConfig {
        tag: BUILDER_IMAGE.into(),
        entrypoint: vec!["buildkitd".into()],
        env: vec![BUILDER_PATH.into()],
        user: String::new(),
        volumes: vec!["/var/lib/buildkit".into()],
    };
    (fs, config)
}

/// The arm64 variant of [`builder_image`], for the arm64 node of the two-node local cluster:
/// `buildkitd` and `buildctl` from `buildkit_arm64` (cross-built by `build-buildkit.sh --arch
/// arm64`) and Debian's arm64 busybox (`busybox_arm64`), so the daemon and the debugging tools
/// are arm64 and run under QEMU.
///
/// # Difference from upstream's arm64 image
/// `runc` is the host's amd64 `runc` (with its amd64 shared libraries), not an arm64 one:
/// Debian's arm64 runc fails under QEMU 7.2 user emulation (`can't copy bootstrap data to
/// pipe`). The processes of `RUN` steps are still arm64 (the container's binaries, through the
/// host's binfmt handler for arm64 with the `F` flag).
pub fn builder_image_arm64(
    buildkit_arm64: &Path,
    busybox_arm64: &Path,
) -> Result<(Rootfs, ImageConfig), Error> {
    Ok(builder_image_from(buildkit_rootfs_with(
        buildkit_arm64,
        busybox_arm64,
    )?))
}

/// The rootless builder image, laid out as `moby/buildkit:buildx-stable-1-rootless`: user
/// `user` (uid and gid [`ROOTLESS_UID`]) with subordinate ids 100000-165535, entry point
/// `rootlesskit buildkitd` (Debian's `rootlesskit`, and `newuidmap`/`newgidmap` from `uidmap`
/// with the file capabilities `cap_setuid`/`cap_setgid` instead of Debian's set-uid bit), `XDG_RUNTIME_DIR=/run/user/1000`, `BUILDKIT_HOST` at the rootless socket so
/// that `buildctl` in the pod finds the daemon, and state in the volume
/// `/home/user/.local/share/buildkit`.
pub fn rootless_builder_image(buildkit: &Path) -> Result<(Rootfs, ImageConfig), Error> {
    require(ROOTLESS_HOST_PROGRAMS)?;
    let mut fs = buildkit_rootfs(buildkit)?;
    let uid = ROOTLESS_UID;
    fs.executable("/usr/bin/rootlesskit", "/usr/bin/rootlesskit")?
        .executable("/usr/bin/newuidmap", "/usr/bin/newuidmap")?
        .executable("/usr/bin/newgidmap", "/usr/bin/newgidmap")?
        // As upstream's image: file capabilities, not set-uid root. A set-uid newuidmap runs
        // as root, which does not own the user namespace rootlesskit makes, and then needs
        // CAP_SYS_ADMIN, which an unprivileged pod does not have.
        .file_capability("/usr/bin/newuidmap", CAP_SETUID)
        .file_capability("/usr/bin/newgidmap", CAP_SETGID)
        .data(
            "/etc/passwd",
            format!("root:x:0:0:root:/root:/bin/sh\nuser:x:{uid}:{uid}:user:/home/user:/bin/sh\n"),
            0o644,
        )
        .data("/etc/group", format!("root:x:0:\nuser:x:{uid}:\n"), 0o644)
        .data("/etc/subuid", "user:100000:65536\n", 0o644)
        .data("/etc/subgid", "user:100000:65536\n", 0o644)
        .dir("/root", 0o700);
    for dir in [
        "/home/user",
        "/home/user/.local",
        "/home/user/.local/tmp",
        "/home/user/.local/share",
        "/home/user/.local/share/buildkit",
        "/run/user/1000",
    ] {
        fs.dir(dir, 0o755).chown(dir, uid, uid);
    }
    fs.dir("/run/user", 0o755);
    let config = ImageConfig {
        tag: ROOTLESS_BUILDER_IMAGE.into(),
        entrypoint: vec!["rootlesskit".into(), "buildkitd".into()],
        env: vec![
            BUILDER_PATH.into(),
            "HOME=/home/user".into(),
            "USER=user".into(),
            "XDG_RUNTIME_DIR=/run/user/1000".into(),
            "TMPDIR=/home/user/.local/tmp".into(),
            "BUILDKIT_HOST=unix:///run/user/1000/buildkit/buildkitd.sock".into(),
        ],
        user: format!("{uid}:{uid}"),
        volumes: vec!["/home/user/.local/share/buildkit".into()],
    };
    Ok((fs, config))
}

/// The binfmt image: a stand-in for `tonistiigi/binfmt` that registers Debian's
/// `qemu-aarch64-static` (package `qemu-user-static`) for arm64 binaries when run with
/// `--install all`, as `qemu.install=true` does in an init container.
pub fn binfmt_image() -> Result<(Rootfs, ImageConfig), Error> {
    for (program, package) in [
        (QEMU_AARCH64, "qemu-user-static"),
        ("/bin/busybox", "busybox-static"),
    ] {
        if !Path::new(program).exists() {
            return Err(Error::Image(format!(
                "{program} is missing (install the Debian package {package})"
            )));
        }
    }
    let mut fs = Rootfs::new();
    fs.file("/usr/bin/busybox", "/bin/busybox")?
        .file(QEMU_AARCH64, QEMU_AARCH64)?;
    for applet in ["sh", "mount", "printf", "echo", "test", "["] {
        fs.symlink(PathBuf::from("/usr/bin").join(applet), "busybox");
    }
    fs.symlink("/bin", "usr/bin")
        .data("/usr/local/bin/binfmt", BINFMT_SH, 0o755)
        .dir("/proc", 0o555)
        .dir("/sys", 0o555)
        .dir("/dev", 0o755);
    let config = ImageConfig {
        tag: BINFMT_IMAGE.into(),
        entrypoint: vec!["/usr/local/bin/binfmt".into()],
        env: vec!["PATH=/usr/bin".into()],
        ..Default::default()
    };
    Ok((fs, config))
}

/// The registry image: Debian's `docker-registry` (package `docker-registry`) serving
/// [`REGISTRY_CONFIG`], for scenarios that pull from and push to a registry inside the cluster.
pub fn registry_image() -> Result<(Rootfs, ImageConfig), Error> {
    if !Path::new(REGISTRY_BINARY).exists() {
        return Err(Error::Image(format!(
            "{REGISTRY_BINARY} is missing (install the Debian package docker-registry)"
        )));
    }
    let mut fs = Rootfs::new();
    for link in ["bin", "sbin", "lib", "lib64"] {
        if std::fs::symlink_metadata(format!("/{link}"))
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            fs.host_path(format!("/{link}"))?;
        }
    }
    fs.executable(REGISTRY_BINARY, REGISTRY_BINARY)?
        .data("/etc/docker/registry/config.yml", REGISTRY_CONFIG, 0o644)
        .dir("/var/lib/registry", 0o755)
        .dir("/tmp", 0o1777)
        .dir("/proc", 0o555)
        .dir("/sys", 0o555)
        .dir("/dev", 0o755);
    let config = ImageConfig {
        tag: REGISTRY_IMAGE.into(),
        entrypoint: vec![
            REGISTRY_BINARY.into(),
            "serve".into(),
            "/etc/docker/registry/config.yml".into(),
        ],
        env: vec!["PATH=/usr/bin:/bin".into()],
        ..Default::default()
    };
    Ok((fs, config))
}

/// The arm64 image of the registry test image (same layout and configuration as
/// [`registry_image`]): Debian's arm64 `docker-registry` (`registry_arm64`) with the arm64 loader
/// and C library from `sysroot` (both fetched by `conformance/scripts/fetch-arm64-containerd.sh`).
pub fn registry_image_arm64(
    registry_arm64: &Path,
    sysroot: &Path,
) -> Result<(Rootfs, ImageConfig), Error> {
    let (_, config) = registry_image()?;
    let lib = Path::new("/lib/aarch64-linux-gnu");
    let mut fs = Rootfs::new();
    fs.file(REGISTRY_BINARY, registry_arm64)?;
    for name in ["ld-linux-aarch64.so.1", "libc.so.6"] {
        let source =
            std::fs::canonicalize(sysroot.join("lib/aarch64-linux-gnu").join(name)).map_err(
                io_err(format!("finding the arm64 {name} in {}", sysroot.display())),
            )?;
        fs.file(lib.join(name), source)?;
    }
    fs.symlink(
        "/lib/ld-linux-aarch64.so.1",
        "aarch64-linux-gnu/ld-linux-aarch64.so.1",
    )
    .data("/etc/docker/registry/config.yml", REGISTRY_CONFIG, 0o644)
    .dir("/var/lib/registry", 0o755)
    .dir("/tmp", 0o1777)
    .dir("/proc", 0o555)
    .dir("/sys", 0o555)
    .dir("/dev", 0o755);
    Ok((fs, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs.into_iter().collect::<Vec<_>>(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tlibnope.so => not found\n").is_err());
    }

    #[test]
    fn host_paths_keep_their_symbolic_links() {
        let host = tempfile::tempdir().unwrap();
        let r = host.path();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/ld.so"), b"loader").unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib64")).unwrap();
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/ld.so", r.join("usr/lib64/ld")).unwrap();
        std::os::unix::fs::symlink("usr/lib64", r.join("lib64")).unwrap();

        let mut fs = Rootfs::with_host_root(r);
        fs.host_path("/lib64/ld").unwrap();
        let e = &fs.entries;
        assert_eq!(
            e[Path::new("/lib64")],
            Entry::Symlink {
                target: "usr/lib64".into()
            }
        );
        assert_eq!(
            e[Path::new("/usr/lib64/ld")],
            Entry::Symlink {
                target: "/lib/x86_64-linux-gnu/ld.so".into()
            }
        );
        assert_eq!(
            e[Path::new("/lib")],
            Entry::Symlink {
                target: "usr/lib".into()
            }
        );
        assert!(matches!(
            e[Path::new("/usr/lib/x86_64-linux-gnu/ld.so")],
            Entry::File { .. }
        ));
        assert!(matches!(
            e[Path::new("/usr/lib/x86_64-linux-gnu")],
            Entry::Dir { .. }
        ));
    }

    #[test]
    fn archives_are_reproducible_and_well_formed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("hello");
        std::fs::write(&src, b"#!/bin/sh\necho hi\n").unwrap();
        let mut fs = Rootfs::new();
        fs.file("/usr/bin/hello", &src)
            .unwrap()
            .symlink("/bin", "usr/bin")
            .dir("/tmp", 0o1777);
        let config = ImageConfig {
            tag: "kbx.invalid/t:1".into(),
            entrypoint: vec!["/usr/bin/hello".into()],
            env: vec![],
            ..Default::default()
        };
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        let id_a = fs.write_archive(&config, &a).unwrap();
        let id_b = fs.write_archive(&config, &b).unwrap();
        assert_eq!(id_a, id_b);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

        let mut archive = tar::Archive::new(std::fs::File::open(&a).unwrap());
        let mut names = Vec::new();
        let mut manifest = serde_json::Value::Null;
        let mut layer = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            if name == "manifest.json" {
                manifest = serde_json::from_slice(&bytes).unwrap();
            } else if name.ends_with("layer.tar") {
                layer = bytes;
            }
            names.push(name);
        }
        assert_eq!(manifest[0]["RepoTags"][0], "kbx.invalid/t:1");
        assert_eq!(manifest[0]["Config"], format!("{id_a}.json"));
        let layer_name = manifest[0]["Layers"][0].as_str().unwrap();
        assert_eq!(
            layer_name,
            format!("{}/layer.tar", hex(&Sha256::digest(&layer)))
        );
        assert!(names.contains(&layer_name.to_owned()));

        let mut inner = tar::Archive::new(layer.as_slice());
        let listed: Vec<String> = inner
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            listed,
            vec!["bin", "tmp", "usr", "usr/bin", "usr/bin/hello"]
        );
    }

    #[test]
    fn owners_user_and_volumes_reach_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs = Rootfs::new();
        fs.dir("/home/user", 0o755)
            .chown("/home/user", ROOTLESS_UID, ROOTLESS_UID)
            .data("/etc/subuid", "user:100000:65536\n", 0o644);
        let config = ImageConfig {
            tag: "kbx.invalid/t:1".into(),
            user: "1000:1000".into(),
            volumes: vec!["/home/user".into()],
            ..Default::default()
        };
        let root_owned = {
            let mut other = Rootfs::new();
            other
                .dir("/home/user", 0o755)
                .data("/etc/subuid", "user:100000:65536\n", 0o644);
            other.fingerprint(&config).unwrap()
        };
        assert_ne!(fs.fingerprint(&config).unwrap(), root_owned);
        let path = dir.path().join("a.tar");
        let id = fs.write_archive(&config, &path).unwrap();
        let mut archive = tar::Archive::new(std::fs::File::open(&path).unwrap());
        let (mut image_config, mut owners) = (serde_json::Value::Null, Vec::new());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            if name == format!("{id}.json") {
                image_config = serde_json::from_slice(&bytes).unwrap();
            } else if name.ends_with("layer.tar") {
                let mut layer = tar::Archive::new(bytes.as_slice());
                for e in layer.entries().unwrap() {
                    let e = e.unwrap();
                    let h = e.header();
                    owners.push((
                        e.path().unwrap().display().to_string(),
                        h.uid().unwrap(),
                        h.gid().unwrap(),
                    ));
                }
            }
        }
        assert_eq!(image_config["config"]["User"], "1000:1000");
        assert_eq!(
            image_config["config"]["Volumes"],
            serde_json::json!({ "/home/user": {} })
        );
        assert_eq!(
            owners,
            vec![
                ("etc".into(), 0, 0),
                ("etc/subuid".into(), 0, 0),
                ("home".into(), 0, 0),
                ("home/user".into(), 1000, 1000),
            ]
        );
    }

    #[test]
    fn cached_archives_are_reused_until_an_input_changes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("f");
        std::fs::write(&src, b"one").unwrap();
        let config = ImageConfig {
            tag: "kbx.invalid/t:1".into(),
            entrypoint: vec![],
            env: vec![],
            ..Default::default()
        };
        let mut fs = Rootfs::new();
        fs.file("/f", &src).unwrap();
        let cache = dir.path().join("cache");
        let first = fs.cached_archive(&config, &cache, "t").unwrap();
        let again = fs.cached_archive(&config, &cache, "t").unwrap();
        assert_eq!(first, again);
        std::fs::write(&src, b"two").unwrap();
        let changed = fs.cached_archive(&config, &cache, "t").unwrap();
        assert_ne!(first, changed);
        assert!(!first.exists(), "the stale archive is removed");
        let other_config = ImageConfig {
            tag: "kbx.invalid/t:2".into(),
            ..config
        };
        assert_ne!(
            fs.fingerprint(&other_config).unwrap(),
            fs.fingerprint(&ImageConfig {
                tag: "kbx.invalid/t:1".into(),
                entrypoint: vec![],
                env: vec![],
                ..Default::default()
            })
            .unwrap()
        );
    }

    #[test]
    fn names_are_normalised_as_docker_does() {
        assert_eq!(
            normalized_name("moby/buildkit:buildx-stable-1"),
            "docker.io/moby/buildkit:buildx-stable-1"
        );
        assert_eq!(normalized_name("busybox:1"), "docker.io/library/busybox:1");
        assert_eq!(
            normalized_name("kbx.invalid/pause:test"),
            "kbx.invalid/pause:test"
        );
        assert_eq!(normalized_name("localhost/a:b"), "localhost/a:b");
    }

    #[test]
    fn multi_platform_archives_are_oci_layouts_with_an_index_per_tag() {
        let dir = tempfile::tempdir().unwrap();
        let platform = |arch: &str, content: &str| {
            let mut fs = Rootfs::new();
            fs.data("/arch", content, 0o644);
            PlatformImage {
                arch: arch.into(),
                rootfs: fs,
                config: ImageConfig {
                    tag: "ignored".into(),
                    entrypoint: vec!["/x".into()],
                    ..Default::default()
                },
            }
        };
        let images = [
            platform("amd64", "x86_64\n"),
            platform("arm64", "aarch64\n"),
        ];
        let a = dir.path().join("a.tar");
        let b = dir.path().join("b.tar");
        let digest = write_multi_platform_archive("moby/buildkit:t", &images, &a).unwrap();
        assert_eq!(
            write_multi_platform_archive("moby/buildkit:t", &images, &b).unwrap(),
            digest
        );
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(std::fs::File::open(&a).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            files.insert(name, bytes);
        }
        for (name, bytes) in &files {
            if let Some(hex_digest) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(hex(&Sha256::digest(bytes)), hex_digest, "{name}");
            }
        }
        let blob = |digest: &serde_json::Value| -> serde_json::Value {
            let name = format!(
                "blobs/sha256/{}",
                digest.as_str().unwrap().trim_start_matches("sha256:")
            );
            serde_json::from_slice(&files[&name]).unwrap()
        };
        assert!(files.contains_key("oci-layout"));
        let top: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let named = &top["manifests"][0];
        assert_eq!(
            named["annotations"]["io.containerd.image.name"],
            "docker.io/moby/buildkit:t"
        );
        assert_eq!(named["digest"], digest.as_str());
        let index = blob(&named["digest"]);
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 2);
        for (m, arch) in manifests.iter().zip(["amd64", "arm64"]) {
            assert_eq!(m["platform"]["architecture"], arch);
            let manifest = blob(&m["digest"]);
            let config = blob(&manifest["config"]["digest"]);
            assert_eq!(config["architecture"], arch);
            assert_eq!(config["config"]["Entrypoint"][0], "/x");
            let layer = &manifest["layers"][0]["digest"];
            assert_eq!(&config["rootfs"]["diff_ids"][0], layer);
        }
    }

    #[test]
    fn the_pause_program_compiles_statically() {
        let dir = tempfile::tempdir().unwrap();
        let pause = compile_pause(dir.path()).unwrap();
        assert!(shared_libraries(&pause).unwrap().is_empty());
    }
}

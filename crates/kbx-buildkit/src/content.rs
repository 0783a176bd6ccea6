//! The session content store: containerd's `Content` service over OCI layout directories.
//!
//! The daemon picks the store with the `buildkit-attachable-store-id` metadata: `local:<dir>`
//! for `--cache-from type=local,src=DIR` and `--cache-to type=local,dest=DIR`, `oci:<id>` for an
//! `oci-layout://` named context. It asks `Info` for a blob's size and streams it with `Read`;
//! into a writable store (`--cache-to type=local`) it streams blobs with `Write` (a `STAT`, then
//! `WRITE`s, then a `COMMIT` that checks size and digest), and may ask `Status` or `Abort` for an
//! open write. The client updates the layout's `index.json` after the solve ([`put_index`]).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bollard_buildkit_proto::google::protobuf::Timestamp;
use tokio::io::AsyncWriteExt as _;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::{ServerStreamingService, StreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};

pub(crate) use crate::service::ProstCodec;
use crate::service::{BoxFut, HttpResponse, Routes, grpc, unimplemented};
use crate::{Error, Result};

/// The metadata key naming the store.
const STORE_HEADER: &str = "buildkit-attachable-store-id";
/// The annotation that tags an `index.json` entry.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation that names an `index.json` entry with a full image name.
const IMAGE_NAME: &str = "io.containerd.image.name";
/// Bytes per `Read` message.
const CHUNK: usize = 256 * 1024;

/// containerd `InfoRequest`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct InfoRequest {
    #[prost(string, tag = "1")]
    pub(crate) digest: String,
}

/// containerd `Info` (timestamps and labels are left out).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Info {
    #[prost(string, tag = "1")]
    pub(crate) digest: String,
    #[prost(int64, tag = "2")]
    pub(crate) size: i64,
}

/// containerd `InfoResponse`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) info: Option<Info>,
}

/// containerd `ReadContentRequest`; `size` 0 reads to the end.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ReadContentRequest {
    #[prost(string, tag = "1")]
    pub(crate) digest: String,
    #[prost(int64, tag = "2")]
    pub(crate) offset: i64,
    #[prost(int64, tag = "3")]
    pub(crate) size: i64,
}

/// containerd `ReadContentResponse`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ReadContentResponse {
    #[prost(int64, tag = "1")]
    pub(crate) offset: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) data: Vec<u8>,
}

/// containerd `WriteAction`.
const STAT: i32 = 0;
const WRITE: i32 = 1;
const COMMIT: i32 = 2;

/// containerd `WriteContentRequest` (labels are ignored).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WriteContentRequest {
    #[prost(int32, tag = "1")]
    pub(crate) action: i32,
    #[prost(string, tag = "2")]
    pub(crate) r#ref: String,
    #[prost(int64, tag = "3")]
    pub(crate) total: i64,
    #[prost(string, tag = "4")]
    pub(crate) expected: String,
    #[prost(int64, tag = "5")]
    pub(crate) offset: i64,
    #[prost(bytes = "vec", tag = "6")]
    pub(crate) data: Vec<u8>,
}

/// containerd `WriteContentResponse`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WriteContentResponse {
    #[prost(int32, tag = "1")]
    pub(crate) action: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) started_at: Option<Timestamp>,
    #[prost(message, optional, tag = "3")]
    pub(crate) updated_at: Option<Timestamp>,
    #[prost(int64, tag = "4")]
    pub(crate) offset: i64,
    #[prost(int64, tag = "5")]
    pub(crate) total: i64,
    #[prost(string, tag = "6")]
    pub(crate) digest: String,
}

/// containerd `StatusRequest` and `AbortRequest` (both carry only the write's ref).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RefRequest {
    #[prost(string, tag = "1")]
    pub(crate) r#ref: String,
}

/// containerd `Status`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WriteStatus {
    #[prost(message, optional, tag = "1")]
    pub(crate) started_at: Option<Timestamp>,
    #[prost(message, optional, tag = "2")]
    pub(crate) updated_at: Option<Timestamp>,
    #[prost(string, tag = "3")]
    pub(crate) r#ref: String,
    #[prost(int64, tag = "4")]
    pub(crate) offset: i64,
    #[prost(int64, tag = "5")]
    pub(crate) total: i64,
    #[prost(string, tag = "6")]
    pub(crate) expected: String,
}

/// containerd `StatusResponse`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) status: Option<WriteStatus>,
}

/// OCI layout directories, by store ID; the daemon may write only into those in `writable`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stores {
    pub(crate) dirs: HashMap<String, PathBuf>,
    /// IDs of the stores that accept `Write` (`--cache-to type=local`).
    pub(crate) writable: HashSet<String>,
}

/// Checks a digest's form (`sha256:` + 64 or `sha512:` + 128 lowercase hex digits) and returns
/// its algorithm and hex parts.
fn split_digest(digest: &str) -> Result<(&str, &str), Status> {
    let bad = || Status::invalid_argument(format!("invalid digest {digest:?}"));
    let (alg, hex) = digest.split_once(':').ok_or_else(bad)?;
    let hex_ok = match alg {
        "sha256" => hex.len() == 64,
        "sha512" => hex.len() == 128,
        _ => false,
    } && hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex_ok { Ok((alg, hex)) } else { Err(bad()) }
}

impl Stores {
    /// The store the request names: its ID and directory.
    fn store(&self, md: &tonic::metadata::MetadataMap) -> Result<(String, PathBuf), Status> {
        let id = md
            .get(STORE_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::invalid_argument(format!("request lacks {STORE_HEADER}")))?;
        let root = self
            .dirs
            .get(id)
            .ok_or_else(|| Status::not_found(format!("unknown store {id}")))?;
        Ok((id.to_owned(), root.clone()))
    }

    fn blob(&self, md: &tonic::metadata::MetadataMap, digest: &str) -> Result<PathBuf, Status> {
        let (_, root) = self.store(md)?;
        let (alg, hex) = split_digest(digest)?;
        Ok(root.join("blobs").join(alg).join(hex))
    }

    /// The directory of a store the daemon may write to.
    fn writable_store(
        &self,
        md: &tonic::metadata::MetadataMap,
    ) -> Result<(String, PathBuf), Status> {
        let (id, root) = self.store(md)?;
        if !self.writable.contains(&id) {
            return Err(Status::permission_denied(format!(
                "content store {id} is read-only"
            )));
        }
        Ok((id, root))
    }
}

/// Reads `dir/index.json`; `Ok(None)` when it does not exist.
fn read_index(dir: &Path) -> Result<Option<serde_json::Value>> {
    let path = dir.join("index.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::io(
            "parse",
            &path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

fn manifests(index: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    index
        .get("manifests")
        .and_then(|m| m.as_array())
        .into_iter()
        .flatten()
}

/// The `index.json` entry named `tag`, looked up as BuildKit's `ociindex` does: first by full
/// image name (`io.containerd.image.name`), then by tag (`org.opencontainers.image.ref.name`).
/// `Ok(None)` when there is no `index.json`; `Ok(Some(None))` when nothing matches.
pub(crate) fn index_entry(dir: &Path, tag: &str) -> Result<Option<Option<serde_json::Value>>> {
    let Some(index) = read_index(dir)? else {
        return Ok(None);
    };
    let by = |key: &str| {
        manifests(&index)
            .find(|m| {
                m.get("annotations")
                    .and_then(|a| a.get(key))
                    .and_then(|v| v.as_str())
                    == Some(tag)
            })
            .cloned()
    };
    Ok(Some(by(IMAGE_NAME).or_else(|| by(REF_NAME))))
}

/// The only entry of `dir/index.json`, if it has exactly one.
pub(crate) fn index_single(dir: &Path) -> Result<Option<serde_json::Value>> {
    Ok(read_index(dir)?.and_then(|index| {
        let all: Vec<_> = manifests(&index).collect();
        (all.len() == 1).then(|| all[0].clone())
    }))
}

/// The digest `index.json` in `dir` names for `tag` (default `latest`), as the Go client
/// resolves a local cache source. `Ok(None)` when there is no `index.json` (nothing to import).
pub(crate) fn resolve_tag(dir: &Path, tag: Option<&str>) -> Result<Option<String>> {
    let want = tag.unwrap_or("latest");
    let Some(entry) = index_entry(dir, want)? else {
        return Ok(None);
    };
    match entry
        .as_ref()
        .and_then(|m| m.get("digest"))
        .and_then(|d| d.as_str())
    {
        Some(d) => Ok(Some(d.to_owned())),
        None => Err(Error::InvalidOptions(format!(
            "local cache importer requires either explicit digest, \"latest\" tag or custom tag \
             on index.json ({} has no {want:?})",
            dir.join("index.json").display()
        ))),
    }
}

/// How an `index.json` entry is named: a bare tag, or a full image name (whose tag part
/// becomes the OCI ref name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexName {
    /// `org.opencontainers.image.ref.name` only.
    Tag(String),
    /// `io.containerd.image.name`, plus its tag (or the whole name) as the ref name.
    Image(String),
}

/// The tag part of an image name (`repo:tag@digest` → `tag`), or the name itself when it has
/// none, as containerd's tar exporter names OCI refs.
fn ref_name_of(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[slash..].rfind(':') {
        Some(i) => no_digest[slash + i + 1..].to_owned(),
        None => image.to_owned(),
    }
}

/// Adds `desc` (an OCI descriptor as JSON) to `dir/index.json` under each of `names`, replacing
/// entries of the same name, and writes `oci-layout`, as BuildKit's Go client does after a
/// solve that exported into a local store. `index.json.lock` is locked meanwhile.
pub(crate) fn put_index(dir: &Path, desc: &serde_json::Value, names: &[IndexName]) -> Result<()> {
    let lock_path = dir.join("index.json.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| Error::io("create", &lock_path, e))?;
    lock.try_lock().map_err(|e| {
        Error::io(
            "lock",
            &lock_path,
            match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "another process is updating the index",
                ),
            },
        )
    })?;
    let result = (|| {
        // containerd's local store, which writes Buildx's layouts, leaves an `ingest/` there.
        let ingest = dir.join("ingest");
        std::fs::create_dir_all(&ingest).map_err(|e| Error::io("create", &ingest, e))?;
        let layout = dir.join("oci-layout");
        std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(|e| Error::io("write", &layout, e))?;
        let mut index = read_index(dir)?.unwrap_or_else(|| serde_json::json!({}));
        let Some(obj) = index.as_object_mut() else {
            return Err(Error::io(
                "parse",
                dir.join("index.json"),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a JSON object"),
            ));
        };
        if obj
            .get("schemaVersion")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            == 0
        {
            obj.insert("schemaVersion".to_owned(), 2.into());
        }
        if obj
            .get("mediaType")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .is_empty()
        {
            obj.insert(
                "mediaType".to_owned(),
                "application/vnd.oci.image.index.v1+json".into(),
            );
        }
        let mut list: Vec<serde_json::Value> = obj
            .get("manifests")
            .and_then(|m| m.as_array())
            .cloned()
            .unwrap_or_default();
        let unnamed = [None];
        let names: Vec<Option<&IndexName>> = if names.is_empty() {
            unnamed.to_vec()
        } else {
            names.iter().map(Some).collect()
        };
        for name in names {
            let mut entry = desc.clone();
            if let Some(name) = name {
                let (image, refname) = match name {
                    IndexName::Tag(t) => (String::new(), t.clone()),
                    IndexName::Image(i) => (i.clone(), ref_name_of(i)),
                };
                let ann = |m: &serde_json::Value, k: &str| {
                    m.get("annotations")
                        .and_then(|a| a.get(k))
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_owned()
                };
                list.retain(|m| ann(m, REF_NAME) != refname || ann(m, IMAGE_NAME) != image);
                if let Some(e) = entry.as_object_mut() {
                    let a = e
                        .entry("annotations")
                        .or_insert_with(|| serde_json::json!({}));
                    if let Some(a) = a.as_object_mut() {
                        if !image.is_empty() {
                            a.insert(IMAGE_NAME.to_owned(), image.into());
                        }
                        a.insert(REF_NAME.to_owned(), refname.into());
                    }
                }
            }
            list.push(entry);
        }
        obj.insert("manifests".to_owned(), list.into());
        let path = dir.join("index.json");
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create", dir, e))?;
        std::fs::write(tmp.path(), go_json(&index))
            .map_err(|e| Error::io("write", tmp.path(), e))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
                .map_err(|e| Error::io("chmod", tmp.path(), e))?;
        }
        tmp.persist(&path)
            .map_err(|e| Error::io("rename", &path, e.error))?;
        Ok(())
    })();
    drop(lock);
    let _ = std::fs::remove_file(&lock_path);
    result
}

/// JSON as Go's `encoding/json` writes the OCI index and descriptor structs (`index.json` of a
/// layout as Buildx's client leaves it): their fields in the order the structs declare them,
/// map keys (annotations) sorted, no spaces.
fn go_json(v: &serde_json::Value) -> String {
    /// Fields of `ocispec.Index`, `ocispec.Descriptor` and `ocispec.Platform`, in order.
    const ORDER: [&str; 15] = [
        "schemaVersion",
        "mediaType",
        "digest",
        "size",
        "urls",
        "manifests",
        "annotations",
        "data",
        "platform",
        "architecture",
        "os",
        "os.version",
        "os.features",
        "variant",
        "artifactType",
    ];
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
            // Only structs have these fields; a map (annotations) keeps sorted keys.
            let is_struct = m.keys().all(|k| rank(k) < ORDER.len());
            if is_struct {
                keys.sort_by_key(|k| rank(k));
            }
            let fields: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        serde_json::Value::from(k.as_str()),
                        go_json(&m[*k])
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// `containerd.services.content.v1.Content` with `Info`, `Read`, `Write`, `Status` and
/// `Abort`; `List`, `Update`, `Delete` and `ListStatuses` answer Unimplemented.
#[derive(Clone)]
pub(crate) struct ContentServer {
    stores: Arc<Stores>,
    writes: Writes,
}

impl ContentServer {
    pub(crate) fn new(stores: Stores) -> Self {
        ContentServer {
            stores: Arc::new(stores),
            writes: Writes::default(),
        }
    }
}

/// The open writes, by (store ID, ref), for `Status` and `Abort`.
#[derive(Clone, Default)]
struct Writes(Arc<Mutex<HashMap<(String, String), OpenWrite>>>);

#[derive(Clone)]
struct OpenWrite {
    status: WriteStatus,
    aborted: bool,
}

impl Writes {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<(String, String), OpenWrite>) -> T) -> T {
        let mut guard = match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// One write into a store: a temporary file under `<store>/ingest`, hashed as it grows, moved
/// to `blobs/<alg>/<hex>` on commit (and removed when the write ends without one).
struct Ingest {
    key: (String, String),
    root: PathBuf,
    writes: Writes,
    file: Option<(tokio::fs::File, tempfile::TempPath)>,
    sha256: ring::digest::Context,
    sha512: ring::digest::Context,
    offset: u64,
    total: i64,
    expected: String,
    started: SystemTime,
    updated: SystemTime,
}

impl Ingest {
    fn status(&self) -> WriteStatus {
        WriteStatus {
            started_at: Some(timestamp(self.started)),
            updated_at: Some(timestamp(self.updated)),
            r#ref: self.key.1.clone(),
            offset: self.offset as i64,
            total: self.total,
            expected: self.expected.clone(),
        }
    }

    fn response(&self, action: i32, digest: String) -> WriteContentResponse {
        WriteContentResponse {
            action,
            started_at: Some(timestamp(self.started)),
            updated_at: Some(timestamp(self.updated)),
            offset: self.offset as i64,
            total: self.total,
            digest,
        }
    }

    fn publish(&self) {
        let status = self.status();
        self.writes.with(|w| {
            if let Some(open) = w.get_mut(&self.key) {
                open.status = status;
            }
        });
    }

    fn aborted(&self) -> bool {
        self.writes
            .with(|w| w.get(&self.key).is_none_or(|o| o.aborted))
    }

    fn target(&self, digest: &str) -> Result<PathBuf, Status> {
        let (alg, hex) = split_digest(digest)?;
        Ok(self.root.join("blobs").join(alg).join(hex))
    }

    /// Starts (or restarts, at offset 0) the temporary file.
    async fn reset(&mut self) -> Result<(), Status> {
        let dir = self.root.join("ingest");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Status::internal(format!("create {}: {e}", dir.display())))?;
        let tmp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(|e| Status::internal(format!("create a file in {}: {e}", dir.display())))?;
        let (file, path) = tmp.into_parts();
        self.file = Some((tokio::fs::File::from_std(file), path));
        self.sha256 = ring::digest::Context::new(&ring::digest::SHA256);
        self.sha512 = ring::digest::Context::new(&ring::digest::SHA512);
        self.offset = 0;
        Ok(())
    }

    async fn write(&mut self, offset: i64, data: &[u8]) -> Result<(), Status> {
        if self.file.is_none() || offset == 0 && self.offset != 0 {
            self.reset().await?;
        }
        if data.is_empty() {
            return Ok(());
        }
        if offset != self.offset as i64 {
            return Err(Status::out_of_range(format!(
                "write at offset {offset}, but {} bytes were written",
                self.offset
            )));
        }
        let Some((file, _)) = self.file.as_mut() else {
            return Err(Status::internal("no open file"));
        };
        file.write_all(data)
            .await
            .map_err(|e| Status::internal(format!("write: {e}")))?;
        self.sha256.update(data);
        self.sha512.update(data);
        self.offset += data.len() as u64;
        self.updated = SystemTime::now();
        if self.total > 0 && self.offset as i64 > self.total {
            return Err(Status::out_of_range(format!(
                "{} bytes written, more than the announced {}",
                self.offset, self.total
            )));
        }
        Ok(())
    }

    /// Checks size and digest and moves the data into `blobs/`. Returns the digest.
    async fn commit(&mut self) -> Result<String, Status> {
        if self.file.is_none() {
            self.reset().await?;
        }
        if self.total > 0 && self.offset as i64 != self.total {
            return Err(Status::failed_precondition(format!(
                "unexpected commit size {}, expected {}",
                self.offset, self.total
            )));
        }
        let alg = match self.expected.split_once(':') {
            Some(("sha512", _)) => "sha512",
            _ => "sha256",
        };
        let ctx = if alg == "sha512" {
            self.sha512.clone()
        } else {
            self.sha256.clone()
        };
        let hex: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let digest = format!("{alg}:{hex}");
        if !self.expected.is_empty() && self.expected != digest {
            return Err(Status::failed_precondition(format!(
                "unexpected commit digest {digest}, expected {}",
                self.expected
            )));
        }
        let target = self.target(&digest)?;
        let Some((mut file, path)) = self.file.take() else {
            return Err(Status::internal("no open file"));
        };
        file.flush()
            .await
            .map_err(|e| Status::internal(format!("write: {e}")))?;
        file.sync_all()
            .await
            .map_err(|e| Status::internal(format!("sync: {e}")))?;
        drop(file);
        if tokio::fs::metadata(&target).await.is_ok() {
            // Same digest, same bytes: keep the blob that is there.
            drop(path);
            return Ok(digest);
        }
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Status::internal(format!("create {}: {e}", parent.display())))?;
        }
        {
            use std::os::unix::fs::PermissionsExt as _;
            tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
                .await
                .map_err(|e| Status::internal(format!("chmod: {e}")))?;
        }
        path.persist(&target).map_err(|e| {
            Status::internal(format!("rename into {}: {}", target.display(), e.error))
        })?;
        self.updated = SystemTime::now();
        Ok(digest)
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.writes.with(|w| w.remove(&self.key));
        // The temporary file (if any) goes with `self.file`. The ingest directory stays, empty,
        // as containerd's local store leaves it in Buildx's layouts.
        self.file = None;
    }
}

/// Serves one `Write` stream: the first message names the ref (and usually carries `STAT`, the
/// expected digest and size); data follows with `WRITE`; `COMMIT` ends it.
async fn serve_write(
    id: String,
    root: PathBuf,
    writes: Writes,
    mut inbound: Streaming<WriteContentRequest>,
    tx: &mpsc::Sender<Result<WriteContentResponse, Status>>,
) -> Result<(), Status> {
    let Some(first) = inbound.message().await? else {
        return Ok(());
    };
    if first.r#ref.is_empty() {
        return Err(Status::invalid_argument(
            "first message must have a reference",
        ));
    }
    let key = (id, first.r#ref.clone());
    let now = SystemTime::now();
    let mut ingest = Ingest {
        key: key.clone(),
        root,
        writes: writes.clone(),
        file: None,
        sha256: ring::digest::Context::new(&ring::digest::SHA256),
        sha512: ring::digest::Context::new(&ring::digest::SHA512),
        offset: 0,
        total: first.total,
        expected: first.expected.clone(),
        started: now,
        updated: now,
    };
    let busy = writes.with(|w| {
        if w.contains_key(&key) {
            return true;
        }
        w.insert(
            key.clone(),
            OpenWrite {
                status: ingest.status(),
                aborted: false,
            },
        );
        false
    });
    if busy {
        // Do not let the drop of this ingest remove the other writer's entry.
        ingest.key = (String::new(), String::new());
        return Err(Status::unavailable(format!("ref {} locked", key.1)));
    }
    if !ingest.expected.is_empty() {
        let target = ingest.target(&ingest.expected)?;
        if tokio::fs::metadata(&target).await.is_ok() {
            return Err(Status::already_exists(format!(
                "content {}: already exists",
                ingest.expected
            )));
        }
    }
    let mut next = Some(first);
    while let Some(msg) = next.take() {
        if ingest.aborted() {
            return Err(Status::aborted(format!("write {} aborted", key.1)));
        }
        if msg.total > 0 {
            ingest.total = msg.total;
        }
        if !msg.expected.is_empty() {
            split_digest(&msg.expected)?;
            ingest.expected = msg.expected.clone();
        }
        match msg.action {
            STAT => {
                ingest.publish();
                let resp = ingest.response(STAT, String::new());
                if tx.send(Ok(resp)).await.is_err() {
                    return Ok(());
                }
            }
            WRITE => {
                ingest.write(msg.offset, &msg.data).await?;
                ingest.publish();
                let resp = ingest.response(WRITE, String::new());
                if tx.send(Ok(resp)).await.is_err() {
                    return Ok(());
                }
            }
            COMMIT => {
                if !msg.data.is_empty() {
                    ingest.write(msg.offset, &msg.data).await?;
                }
                let digest = ingest.commit().await?;
                let resp = ingest.response(COMMIT, digest);
                let _ = tx.send(Ok(resp)).await;
                return Ok(());
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown write action {other}"
                )));
            }
        }
        next = inbound.message().await?;
    }
    Ok(())
}

struct WriteMethod(Arc<Stores>, Writes);

type WriteStream = ReceiverStream<Result<WriteContentResponse, Status>>;

impl StreamingService<WriteContentRequest> for WriteMethod {
    type Response = WriteContentResponse;
    type ResponseStream = WriteStream;
    type Future = Pin<Box<dyn Future<Output = Result<Response<WriteStream>, Status>> + Send>>;

    fn call(&mut self, request: Request<Streaming<WriteContentRequest>>) -> Self::Future {
        let stores = Arc::clone(&self.0);
        let writes = self.1.clone();
        Box::pin(async move {
            let (id, root) = stores.writable_store(request.metadata())?;
            let (tx, rx) = mpsc::channel(2);
            let inbound = request.into_inner();
            tokio::spawn(async move {
                if let Err(status) = serve_write(id, root, writes, inbound, &tx).await {
                    let _ = tx.send(Err(status)).await;
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

struct StatusMethod(Arc<Stores>, Writes);

impl UnaryService<RefRequest> for StatusMethod {
    type Response = StatusResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<StatusResponse>, Status>> + Send>>;

    fn call(&mut self, request: Request<RefRequest>) -> Self::Future {
        let stores = Arc::clone(&self.0);
        let writes = self.1.clone();
        Box::pin(async move {
            let (id, _) = stores.store(request.metadata())?;
            let r#ref = request.into_inner().r#ref;
            let status = writes.with(|w| w.get(&(id, r#ref.clone())).map(|o| o.status.clone()));
            match status {
                Some(s) => Ok(Response::new(StatusResponse { status: Some(s) })),
                None => Err(Status::not_found(format!("ref {ref}: not found"))),
            }
        })
    }
}

struct AbortMethod(Arc<Stores>, Writes);

impl UnaryService<RefRequest> for AbortMethod {
    type Response = ();
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, Status>> + Send>>;

    fn call(&mut self, request: Request<RefRequest>) -> Self::Future {
        let stores = Arc::clone(&self.0);
        let writes = self.1.clone();
        Box::pin(async move {
            let (id, _) = stores.writable_store(request.metadata())?;
            let r#ref = request.into_inner().r#ref;
            let found = writes.with(|w| match w.get_mut(&(id, r#ref.clone())) {
                Some(o) => {
                    o.aborted = true;
                    true
                }
                None => false,
            });
            if found {
                Ok(Response::new(()))
            } else {
                Err(Status::not_found(format!("ref {ref}: not found")))
            }
        })
    }
}

struct InfoMethod(Arc<Stores>);

impl UnaryService<InfoRequest> for InfoMethod {
    type Response = InfoResponse;
    type Future = Pin<Box<dyn Future<Output = Result<Response<InfoResponse>, Status>> + Send>>;

    fn call(&mut self, request: Request<InfoRequest>) -> Self::Future {
        let stores = Arc::clone(&self.0);
        Box::pin(async move {
            let digest = request.get_ref().digest.clone();
            let path = stores.blob(request.metadata(), &digest)?;
            let md = tokio::fs::metadata(&path)
                .await
                .map_err(|_| Status::not_found(format!("content digest {digest}: not found")))?;
            Ok(Response::new(InfoResponse {
                info: Some(Info {
                    digest,
                    size: md.len() as i64,
                }),
            }))
        })
    }
}

struct ReadMethod(Arc<Stores>);

type ReadStream = ReceiverStream<Result<ReadContentResponse, Status>>;

impl ServerStreamingService<ReadContentRequest> for ReadMethod {
    type Response = ReadContentResponse;
    type ResponseStream = ReadStream;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ReadStream>, Status>> + Send>>;

    fn call(&mut self, request: Request<ReadContentRequest>) -> Self::Future {
        let stores = Arc::clone(&self.0);
        Box::pin(async move {
            let r = request.get_ref().clone();
            let path = stores.blob(request.metadata(), &r.digest)?;
            let mut f = std::fs::File::open(&path).map_err(|_| {
                Status::not_found(format!("content digest {}: not found", r.digest))
            })?;
            let offset =
                u64::try_from(r.offset).map_err(|_| Status::invalid_argument("negative offset"))?;
            let len = f
                .metadata()
                .map_err(|e| Status::internal(e.to_string()))?
                .len();
            let end = match r.size {
                s if s > 0 => len.min(offset.saturating_add(s as u64)),
                _ => len,
            };
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| Status::internal(e.to_string()))?;
            let (tx, rx) = mpsc::channel(2);
            tokio::task::spawn_blocking(move || {
                let mut pos = offset;
                let mut buf = vec![0u8; CHUNK];
                while pos < end {
                    let want = usize::try_from(end - pos).unwrap_or(CHUNK).min(CHUNK);
                    let msg = match f.read(&mut buf[..want]) {
                        Ok(0) => break,
                        Ok(n) => Ok(ReadContentResponse {
                            offset: pos as i64,
                            data: buf[..n].to_vec(),
                        }),
                        Err(e) => Err(Status::internal(e.to_string())),
                    };
                    let failed = msg.is_err();
                    if let Ok(m) = &msg {
                        pos += m.data.len() as u64;
                    }
                    if tx.blocking_send(msg).is_err() || failed {
                        break;
                    }
                }
            });
            Ok(Response::new(ReceiverStream::new(rx)))
        })
    }
}

impl Routes for ContentServer {
    const NAME: &'static str = "containerd.services.content.v1.Content";

    fn route<B>(&self, path: &str, req: http::Request<B>) -> BoxFut<HttpResponse>
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<tonic::codegen::StdError> + Send + 'static,
    {
        let stores = Arc::clone(&self.stores);
        let writes = self.writes.clone();
        let max = crate::session::MAX_MESSAGE;
        match path {
            "/containerd.services.content.v1.Content/Info" => Box::pin(async move {
                let mut grpc = grpc(ProstCodec::<InfoResponse, InfoRequest>::default(), max);
                Ok(grpc.unary(InfoMethod(stores), req).await)
            }),
            "/containerd.services.content.v1.Content/Read" => Box::pin(async move {
                let codec = ProstCodec::<ReadContentResponse, ReadContentRequest>::default();
                Ok(grpc(codec, max)
                    .server_streaming(ReadMethod(stores), req)
                    .await)
            }),
            "/containerd.services.content.v1.Content/Write" => Box::pin(async move {
                let codec = ProstCodec::<WriteContentResponse, WriteContentRequest>::default();
                Ok(grpc(codec, max)
                    .streaming(WriteMethod(stores, writes), req)
                    .await)
            }),
            "/containerd.services.content.v1.Content/Status" => Box::pin(async move {
                let mut grpc = grpc(ProstCodec::<StatusResponse, RefRequest>::default(), max);
                Ok(grpc.unary(StatusMethod(stores, writes), req).await)
            }),
            "/containerd.services.content.v1.Content/Abort" => Box::pin(async move {
                let mut grpc = grpc(ProstCodec::<(), RefRequest>::default(), max);
                Ok(grpc.unary(AbortMethod(stores, writes), req).await)
            }),
            _ => unimplemented("not served by the session content store"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `index.json` as Go writes it: struct fields in declaration order, annotations sorted.
    #[test]
    fn go_json_orders_fields_as_the_oci_structs() {
        let v = serde_json::json!({
            "manifests": [{
                "platform": { "os": "linux", "architecture": "amd64" },
                "size": 1,
                "annotations": { "z": "1", "a": "2" },
                "digest": "sha256:0",
                "mediaType": "m",
            }],
            "mediaType": "i",
            "schemaVersion": 2,
        });
        assert_eq!(
            go_json(&v),
            r#"{"schemaVersion":2,"mediaType":"i","manifests":[{"mediaType":"m","digest":"sha256:0","size":1,"annotations":{"a":"2","z":"1"},"platform":{"architecture":"amd64","os":"linux"}}]}"#
        );
    }

    #[test]
    fn index_tags_resolve_to_digests() {
        let d = tempfile::tempdir().expect("tempdir");
        assert_eq!(resolve_tag(d.path(), None).expect("no index"), None);
        std::fs::write(
            d.path().join("index.json"),
            r#"{"schemaVersion":2,"manifests":[
                {"digest":"sha256:aa","annotations":{"org.opencontainers.image.ref.name":"v1"}},
                {"digest":"sha256:bb","annotations":{"org.opencontainers.image.ref.name":"latest"}}
            ]}"#,
        )
        .expect("write");
        assert_eq!(
            resolve_tag(d.path(), None).expect("latest").as_deref(),
            Some("sha256:bb")
        );
        assert_eq!(
            resolve_tag(d.path(), Some("v1")).expect("v1").as_deref(),
            Some("sha256:aa")
        );
        let e = resolve_tag(d.path(), Some("nope")).expect_err("missing tag");
        assert!(e.to_string().contains("\"nope\""), "{e}");
    }

    #[test]
    fn digests_are_checked_before_touching_the_disk() {
        let stores = Stores {
            dirs: HashMap::from([("local:x".to_owned(), PathBuf::from("/store"))]),
            ..Stores::default()
        };
        let mut md = tonic::metadata::MetadataMap::new();
        md.insert(STORE_HEADER, "local:x".parse().expect("header"));
        let hex = "ab".repeat(32);
        assert_eq!(
            stores.blob(&md, &format!("sha256:{hex}")).expect("ok"),
            PathBuf::from(format!("/store/blobs/sha256/{hex}"))
        );
        for bad in [
            "sha256:../../etc/passwd",
            "md5:abc",
            "sha256:ABC",
            "nocolon",
        ] {
            assert_eq!(
                stores.blob(&md, bad).expect_err(bad).code(),
                tonic::Code::InvalidArgument
            );
        }
        let mut other = tonic::metadata::MetadataMap::new();
        other.insert(STORE_HEADER, "local:y".parse().expect("header"));
        assert_eq!(
            stores
                .blob(&other, &format!("sha256:{hex}"))
                .expect_err("store")
                .code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            stores
                .blob(&tonic::metadata::MetadataMap::new(), "sha256:x")
                .expect_err("no header")
                .code(),
            tonic::Code::InvalidArgument
        );
    }
}

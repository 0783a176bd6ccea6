//! The store directory and its transactions.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::io;
use crate::name::validate_name;
use crate::{Error, NodeGroup};

const INSTANCES: &str = "instances";
const DEFAULTS: &str = "defaults";
const ACTIVITY: &str = "activity";
const REFS: &str = "refs";

/// The buildx config directory for an environment: `$BUILDX_CONFIG`, else
/// `$DOCKER_CONFIG/buildx`, else `$HOME/.docker/buildx`.
///
/// ```
/// use std::path::PathBuf;
/// let env = |k: &str| (k == "DOCKER_CONFIG").then(|| "/etc/docker-cfg".into());
/// assert_eq!(kbx_store::config_dir(env), Some(PathBuf::from("/etc/docker-cfg/buildx")));
/// ```
pub fn config_dir(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(dir) = set("BUILDX_CONFIG") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = set("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("buildx"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".docker").join("buildx"))
}

/// The builder store: `instances/`, `defaults/`, `activity/`, `current` and the `.lock` file,
/// laid out and encoded exactly as buildx does, so both tools share builders.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let store = kbx_store::Store::open(dir.path())?;
/// let txn = store.txn()?;
/// txn.save(&kbx_store::NodeGroup::new("kube", "kubernetes"))?;
/// assert_eq!(txn.node_group("KUBE")?.driver, "kubernetes");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    owner: Option<(u32, u32)>,
}

/// A store transaction: holds the store's lock (`flock` on `.lock`) until dropped, so
/// concurrent kbx and buildx processes never interleave their changes.
#[derive(Debug)]
pub struct Txn<'a> {
    store: &'a Store,
    _lock: File,
}

/// One entry of `instances/`, as [`Txn::records`] returns it.
#[derive(Debug)]
pub struct Record {
    /// The file name (the lower-cased builder name).
    pub name: String,
    /// The builder, or why its record cannot be read.
    pub builder: Result<NodeGroup, Error>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Current {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Global")]
    global: bool,
}

impl Store {
    /// Opens (creating with mode 0700 if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let store = Self {
            root: root.into(),
            owner: sudo_owner(),
        };
        for dir in [INSTANCES, DEFAULTS, ACTIVITY] {
            store.mkdir_all(&store.root.join(dir))?;
        }
        Ok(store)
    }

    /// Opens the store of the current environment ([`config_dir`]).
    pub fn open_default() -> Result<Self, Error> {
        let root = config_dir(|k| std::env::var_os(k)).ok_or(Error::NoConfigDir)?;
        Self::open(root)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Saves the local state of build `build_ref` on `node` of `builder`
    /// (`refs/BUILDER/NODE/REF`, as buildx); no lock is taken, as each build writes its own
    /// file.
    pub fn save_build_state(
        &self,
        builder: &str,
        node: &str,
        build_ref: &str,
        state: &crate::BuildState,
    ) -> Result<(), Error> {
        for part in [builder, node, build_ref] {
            if part.is_empty() || part.contains(['/', '\\']) || part.starts_with('.') {
                return Err(Error::InvalidName(part.to_owned()));
            }
        }
        let json = crate::json::to_go_json(state);
        self.write_atomic(
            &self
                .root
                .join(REFS)
                .join(builder)
                .join(node)
                .join(build_ref),
            json.as_bytes(),
        )
    }

    /// The local state buildx or kbx saved for build `build_ref` on `node` of `builder`, if
    /// any (an unreadable file counts as none, as in buildx).
    pub fn build_state(
        &self,
        builder: &str,
        node: &str,
        build_ref: &str,
    ) -> Option<crate::BuildState> {
        if [builder, node, build_ref]
            .iter()
            .any(|p| p.is_empty() || p.contains(['/', '\\']) || p.starts_with('.'))
        {
            return None;
        }
        let data = fs::read(
            self.root
                .join(REFS)
                .join(builder)
                .join(node)
                .join(build_ref),
        )
        .ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Starts a transaction, waiting for the lock.
    pub fn txn(&self) -> Result<Txn<'_>, Error> {
        let lock = self.lock_file()?;
        lock.lock()
            .map_err(io("cannot lock", self.root.join(".lock")))?;
        Ok(Txn {
            store: self,
            _lock: lock,
        })
    }

    /// Starts a transaction if the lock is free right now.
    pub fn try_txn(&self) -> Result<Option<Txn<'_>>, Error> {
        let lock = self.lock_file()?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(Txn {
                store: self,
                _lock: lock,
            })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(io("cannot lock", self.root.join(".lock"))(e)),
        }
    }

    fn lock_file(&self) -> Result<File, Error> {
        let path = self.root.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("cannot open", &path))?;
        self.chown(&path);
        Ok(file)
    }

    fn mkdir_all(&self, dir: &Path) -> Result<(), Error> {
        if dir.is_dir() {
            return Ok(());
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("cannot create directory", dir))?;
        self.chown(dir);
        Ok(())
    }

    /// Writes a file atomically (temporary file in the same directory, fsync, rename), mode 0600.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), Error> {
        let dir = path.parent().unwrap_or(&self.root);
        self.mkdir_all(dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(io("cannot create a temporary file in", dir))?;
        tmp.write_all(data)
            .map_err(io("cannot write", tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(io("cannot sync", tmp.path()))?;
        self.chown(tmp.path());
        tmp.persist(path)
            .map_err(|e| io("cannot replace", path)(e.error))?;
        Ok(())
    }

    /// Under `sudo`, files belong to the invoking user, as buildx does.
    fn chown(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
        }
    }
}

fn sudo_owner() -> Option<(u32, u32)> {
    let uid = std::env::var("SUDO_UID").ok()?.parse().ok()?;
    let gid = std::env::var("SUDO_GID").ok()?.parse().ok()?;
    Some((uid, gid))
}

/// The first 20 hex digits of the SHA-256 of an endpoint key (the `defaults/` file name).
fn key_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(10).map(|b| format!("{b:02x}")).collect()
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("cannot read", path)(e)),
    }
}

fn remove_all(path: &Path) -> Result<(), Error> {
    let result = if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("cannot remove", path)(e)),
        _ => Ok(()),
    }
}

impl Txn<'_> {
    fn path(&self, parts: &[&str]) -> PathBuf {
        parts
            .iter()
            .fold(self.store.root.clone(), |p, part| p.join(part))
    }

    /// Every stored builder, sorted by name. Dangling entries are removed, as buildx does; the
    /// first record that cannot be read fails the whole list (see [`Txn::records`]).
    pub fn list(&self) -> Result<Vec<NodeGroup>, Error> {
        let mut out = Vec::new();
        for record in self.records()? {
            out.push(record.builder?);
        }
        Ok(out)
    }

    /// Every stored record, read or not, sorted by name: one unreadable record (corrupt JSON,
    /// a bad activity time, an unreadable file) does not hide the others. Dangling entries are
    /// removed, as buildx does.
    ///
    /// # Deviation
    /// buildx's `List` fails on the first unreadable record, so `buildx ls` lists nothing.
    pub fn records(&self) -> Result<Vec<Record>, Error> {
        let dir = self.path(&[INSTANCES]);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io("cannot read", &dir))? {
            let entry = entry.map_err(io("cannot read", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue;
            }
            match self.node_group(&name) {
                Err(Error::NotFound(_)) => remove_all(&entry.path())?,
                builder => out.push(Record { name, builder }),
            }
        }
        let key = |r: &Record| match &r.builder {
            Ok(ng) => ng.name.clone(),
            Err(_) => r.name.clone(),
        };
        out.sort_by_key(key);
        Ok(out)
    }

    /// The builder with this name (case-insensitive, as file names are lower-cased).
    pub fn node_group(&self, name: &str) -> Result<NodeGroup, Error> {
        let file = validate_name(name)?;
        let path = self.path(&[INSTANCES, &file]);
        let data = read_optional(&path)?.ok_or_else(|| Error::NotFound(name.to_owned()))?;
        let mut ng =
            NodeGroup::from_json(&data).map_err(|source| Error::Corrupt { path, source })?;
        ng.last_activity = self.last_activity(&ng.name)?;
        Ok(ng)
    }

    /// Saves a builder record and stamps its activity time.
    pub fn save(&self, ng: &NodeGroup) -> Result<(), Error> {
        let file = validate_name(&ng.name)?;
        self.update_last_activity(&ng.name)?;
        self.store
            .write_atomic(&self.path(&[INSTANCES, &file]), ng.to_json().as_bytes())
    }

    /// Removes a builder record, its activity time and its local build state (`refs/`).
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let file = validate_name(name)?;
        remove_all(&self.path(&[ACTIVITY, &file]))?;
        remove_all(&self.path(&[ACTIVITY, name]))?;
        remove_all(&self.path(&[REFS, name]))?;
        remove_all(&self.path(&[INSTANCES, &file]))
    }

    /// Records `name` as the current builder for endpoint `key` (`global`: for every key;
    /// `default`: also remember it as this key's default).
    pub fn set_current(
        &self,
        key: &str,
        name: &str,
        global: bool,
        default: bool,
    ) -> Result<(), Error> {
        let current = Current {
            key: key.to_owned(),
            name: name.to_owned(),
            global,
        };
        let json = crate::json::to_go_json(&current);
        self.store
            .write_atomic(&self.path(&["current"]), json.as_bytes())?;
        let default_path = self.path(&[DEFAULTS, &key_hash(key)]);
        if default {
            self.store.write_atomic(&default_path, name.as_bytes())
        } else {
            let _ = remove_all(&default_path);
            Ok(())
        }
    }

    fn reset(&self, key: &str) -> Result<(), Error> {
        let json = crate::json::to_go_json(&Current {
            key: key.to_owned(),
            ..Current::default()
        });
        self.store
            .write_atomic(&self.path(&["current"]), json.as_bytes())
    }

    /// The current builder for endpoint `key`, with buildx's rules: a global current builder
    /// wins, then the current one when it was set for this key, then this key's default.
    pub fn current(&self, key: &str) -> Result<Option<NodeGroup>, Error> {
        let path = self.path(&["current"]);
        if let Some(data) = read_optional(&path)? {
            let c: Current =
                serde_json::from_slice(&data).map_err(|source| Error::Corrupt { path, source })?;
            if !c.name.is_empty() {
                if c.global
                    && let Ok(ng) = self.node_group(&c.name)
                {
                    return Ok(Some(ng));
                }
                if c.key == key {
                    return Ok(self.node_group(&c.name).ok());
                }
            }
        }
        let default_path = self.path(&[DEFAULTS, &key_hash(key)]);
        let Some(name) = read_optional(&default_path)? else {
            let _ = self.reset(key);
            return Ok(None);
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        let ng = self.node_group(&name).ok();
        if ng.is_none() {
            let _ = self.reset(key);
        }
        self.set_current(key, &name, false, true)?;
        Ok(ng)
    }

    /// Stamps `activity/<name>` with the current time (RFC 3339, UTC, seconds).
    pub fn update_last_activity(&self, name: &str) -> Result<(), Error> {
        let now = Timestamp::now();
        let text = Timestamp::from_second(now.as_second())
            .unwrap_or(now)
            .to_string();
        self.store
            .write_atomic(&self.path(&[ACTIVITY, name]), text.as_bytes())
    }

    /// The time in `activity/<name>`, if any.
    pub fn last_activity(&self, name: &str) -> Result<Option<Timestamp>, Error> {
        let path = self.path(&[ACTIVITY, name]);
        let Some(data) = read_optional(&path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&data);
        text.trim()
            .parse::<Timestamp>()
            .map(Some)
            .map_err(|source| Error::Activity { path, source })
    }
}

//! fsutil's receiver, for the `local` exporter: the daemon sends the tree, we write it under a
//! destination directory. Writes are safe: paths must be relative and clean, every parent must
//! be a directory received earlier in the same transfer, and symlinks are created, never
//! followed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::wire::{Packet, PacketType, Stat};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::mode::{MODE_DIR, MODE_SYMLINK, MODE_TYPE, is_regular, posix_perm};
use super::send::err_packet;
use crate::{Error, Result};

type Out = mpsc::Sender<Result<Packet, Status>>;

/// Starts receiving into `dest` on one `FileSend.DiffCopy` call; returns our outgoing packets.
pub(crate) fn start(
    dest: PathBuf,
    inbound: Streaming<Packet>,
    done: mpsc::UnboundedSender<Result<()>>,
) -> mpsc::Receiver<Result<Packet, Status>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let result = run(dest, inbound, tx.clone()).await;
        if let Err(e) = &result {
            let _ = tx.send(Ok(err_packet(&e.to_string()))).await;
            let _ = tx.send(Err(Status::aborted(e.to_string()))).await;
        }
        let _ = done.send(result);
    });
    rx
}

/// The error of a transfer the daemon ended before it finished: it stopped because the solve
/// failed, whose error says why.
pub(crate) const ENDED_EARLY: &str = "export stream ended early";

struct OpenFile {
    file: File,
    path: PathBuf,
    stat: Stat,
}

async fn run(dest: PathBuf, mut inbound: Streaming<Packet>, out: Out) -> Result<()> {
    // As buildx's client: a directory it creates (and its missing parents) is its user's only.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dest)
        .map_err(|e| Error::io("create", &dest, e))?;
    let mut writer = TreeWriter::new(dest);
    let mut index: u32 = 0;
    let mut requested: Vec<(u32, Stat)> = Vec::new();
    let mut open: HashMap<u32, OpenFile> = HashMap::new();
    let mut pending: HashMap<u32, Stat> = HashMap::new();
    let mut stats_done = false;
    let mut fin_sent = false;
    let mut remaining = 0usize;
    let mut req_task: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => return Err(Error::Session(format!("export stream: {status}"))),
        };
        match PacketType::try_from(msg.r#type) {
            Ok(PacketType::PacketStat) => {
                if stats_done {
                    return Err(Error::Session("STAT after end of stats".to_owned()));
                }
                let Some(stat) = msg.stat else {
                    stats_done = true;
                    remaining = requested.len();
                    let ids: Vec<u32> = requested.iter().map(|(id, _)| *id).collect();
                    for (id, stat) in requested.drain(..) {
                        pending.insert(id, stat);
                    }
                    // Ask for every file; a separate task so that reading DATA never waits on
                    // our own requests.
                    let req_out = out.clone();
                    req_task = Some(tokio::spawn(async move {
                        for id in ids {
                            let p = Packet {
                                r#type: PacketType::PacketReq as i32,
                                id,
                                ..Packet::default()
                            };
                            if req_out.send(Ok(p)).await.is_err() {
                                return;
                            }
                        }
                    }));
                    if remaining == 0 {
                        writer.finish()?;
                        send_fin(&out).await;
                        fin_sent = true;
                    }
                    index += 1;
                    continue;
                };
                if is_regular(stat.mode) {
                    writer.check_path(&stat.path)?;
                    requested.push((index, stat));
                } else {
                    writer.entry(&stat)?;
                }
                index += 1;
            }
            Ok(PacketType::PacketData) => {
                let id = msg.id;
                if let std::collections::hash_map::Entry::Vacant(slot) = open.entry(id) {
                    let Some(stat) = pending.remove(&id) else {
                        return Err(Error::Session(format!("data for unrequested file {id}")));
                    };
                    let (file, path) = writer.create_file(&stat)?;
                    slot.insert(OpenFile { file, path, stat });
                }
                if msg.data.is_empty() {
                    let Some(f) = open.remove(&id) else {
                        continue;
                    };
                    writer.close_file(f)?;
                    remaining -= 1;
                    if remaining == 0 && stats_done {
                        writer.finish()?;
                        send_fin(&out).await;
                        fin_sent = true;
                    }
                } else if let Some(f) = open.get_mut(&id) {
                    f.file
                        .write_all(&msg.data)
                        .map_err(|e| Error::io("write", &f.path, e))?;
                }
            }
            Ok(PacketType::PacketFin) => {
                if !fin_sent {
                    return Err(Error::Session("sender finished early".to_owned()));
                }
                // Drain to EOF.
                while let Ok(Some(_)) = inbound.message().await {}
                break;
            }
            Ok(PacketType::PacketErr) => {
                return Err(Error::Session(format!(
                    "error from sender: {}",
                    String::from_utf8_lossy(&msg.data)
                )));
            }
            _ => {
                return Err(Error::Session(format!(
                    "unexpected packet type {}",
                    msg.r#type
                )));
            }
        }
    }
    if let Some(t) = req_task {
        t.abort();
    }
    if !fin_sent {
        return Err(Error::Session(ENDED_EARLY.to_owned()));
    }
    Ok(())
}

async fn send_fin(out: &Out) {
    let _ = out
        .send(Ok(Packet {
            r#type: PacketType::PacketFin as i32,
            ..Packet::default()
        }))
        .await;
}

/// Writes entries under `dest`, refusing anything that would land outside it.
pub(crate) struct TreeWriter {
    dest: PathBuf,
    /// Directories received in this transfer, with their final mode and mtime (applied last).
    dirs: Vec<(Vec<u8>, Stat)>,
    dir_set: std::collections::HashSet<Vec<u8>>,
}

impl TreeWriter {
    pub(crate) fn new(dest: PathBuf) -> Self {
        TreeWriter {
            dest,
            dirs: Vec::new(),
            dir_set: std::collections::HashSet::new(),
        }
    }

    /// Refuses absolute paths, `..`, `.`, empty components, and paths whose parent directory
    /// was not received before.
    pub(crate) fn check_path(&self, path: &[u8]) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::UnsafePath {
                path: String::from_utf8_lossy(path).into_owned(),
                reason: reason.to_owned(),
            })
        };
        if path.is_empty() || path.starts_with(b"/") {
            return bad("not a relative path");
        }
        if path.contains(&0) {
            return bad("contains NUL");
        }
        if path
            .split(|&b| b == b'/')
            .any(|c| c.is_empty() || c == b"." || c == b"..")
        {
            return bad("not a clean path");
        }
        if let Some(i) = path.iter().rposition(|&b| b == b'/')
            && !self.dir_set.contains(&path[..i])
        {
            return bad("parent directory was not sent first");
        }
        Ok(())
    }

    fn target(&self, path: &[u8]) -> PathBuf {
        self.dest.join(std::ffi::OsStr::from_bytes(path))
    }

    /// Removes whatever is at `p` unless it is a directory and `keep_dir`.
    fn clear(p: &Path, keep_dir: bool) -> Result<()> {
        match std::fs::symlink_metadata(p) {
            Ok(md) if md.is_dir() && keep_dir => Ok(()),
            Ok(md) if md.is_dir() => {
                std::fs::remove_dir_all(p).map_err(|e| Error::io("remove", p, e))
            }
            Ok(_) => std::fs::remove_file(p).map_err(|e| Error::io("remove", p, e)),
            Err(_) => Ok(()),
        }
    }

    /// Creates a directory, symlink or special entry.
    pub(crate) fn entry(&mut self, stat: &Stat) -> Result<()> {
        self.check_path(&stat.path)?;
        let p = self.target(&stat.path);
        if stat.mode & MODE_DIR != 0 {
            Self::clear(&p, true)?;
            if !p.is_dir() {
                std::fs::create_dir(&p).map_err(|e| Error::io("create", &p, e))?;
            }
            // Writable while we fill it; the real mode is set at the end.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io("chmod", &p, e))?;
            self.dir_set.insert(stat.path.clone());
            self.dirs.push((stat.path.clone(), stat.clone()));
        } else if stat.mode & MODE_SYMLINK != 0 {
            Self::clear(&p, false)?;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&stat.linkname), &p)
                .map_err(|e| Error::io("create symlink", &p, e))?;
        } else if stat.mode & MODE_TYPE != 0 {
            // Devices, pipes and the like are not recreated by an unprivileged client.
        }
        Ok(())
    }

    pub(crate) fn create_file(&mut self, stat: &Stat) -> Result<(File, PathBuf)> {
        self.check_path(&stat.path)?;
        let p = self.target(&stat.path);
        Self::clear(&p, false)?;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(NOFOLLOW)
            .open(&p)
            .map_err(|e| Error::io("create", &p, e))?;
        Ok((f, p))
    }

    fn close_file(&mut self, f: OpenFile) -> Result<()> {
        f.file
            .set_permissions(std::fs::Permissions::from_mode(posix_perm(f.stat.mode)))
            .map_err(|e| Error::io("chmod", &f.path, e))?;
        f.file
            .set_modified(mtime(f.stat.mod_time))
            .map_err(|e| Error::io("set mtime", &f.path, e))?;
        Ok(())
    }

    /// Applies directory modes and mtimes, children first.
    pub(crate) fn finish(&mut self) -> Result<()> {
        for (path, stat) in self.dirs.drain(..).rev() {
            let p = self.dest.join(std::ffi::OsStr::from_bytes(&path));
            let f = File::open(&p).map_err(|e| Error::io("open", &p, e))?;
            f.set_modified(mtime(stat.mod_time))
                .map_err(|e| Error::io("set mtime", &p, e))?;
            f.set_permissions(std::fs::Permissions::from_mode(posix_perm(stat.mode)))
                .map_err(|e| Error::io("chmod", &p, e))?;
        }
        Ok(())
    }
}

/// `O_NOFOLLOW` on Linux.
const NOFOLLOW: i32 = 0o400000;

fn mtime(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(path: &str, mode: u32) -> Stat {
        Stat {
            path: path.as_bytes().to_vec(),
            mode,
            mod_time: 1_600_000_000_123_456_789,
            ..Stat::default()
        }
    }

    #[test]
    fn refuses_escapes() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = TreeWriter::new(d.path().to_path_buf());
        for bad in ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", ""] {
            assert!(
                matches!(w.check_path(bad.as_bytes()), Err(Error::UnsafePath { .. })),
                "{bad} accepted"
            );
        }
        // A symlink to the outside, then a file "through" it: the parent is not a received
        // directory, so it is refused and nothing is written outside.
        let outside = tempfile::tempdir().expect("tempdir");
        let mut link = stat("ln", MODE_SYMLINK | 0o777);
        link.linkname = outside.path().as_os_str().as_bytes().to_vec();
        w.entry(&link).expect("symlink entry");
        assert!(w.create_file(&stat("ln/evil", 0o644)).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 0);
    }

    #[test]
    fn writes_tree_with_modes_and_times() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut w = TreeWriter::new(d.path().to_path_buf());
        w.entry(&stat("dir", MODE_DIR | 0o555)).expect("dir");
        let s = stat("dir/f", 0o640);
        let (mut f, p) = w.create_file(&s).expect("file");
        f.write_all(b"hello").expect("write");
        w.close_file(OpenFile {
            file: f,
            path: p,
            stat: s,
        })
        .expect("close");
        w.finish().expect("finish");
        let md = std::fs::metadata(d.path().join("dir/f")).expect("stat");
        assert_eq!(md.permissions().mode() & 0o7777, 0o640);
        let dmd = std::fs::metadata(d.path().join("dir")).expect("stat");
        assert_eq!(dmd.permissions().mode() & 0o7777, 0o555);
        assert_eq!(
            dmd.modified().expect("mtime"),
            mtime(1_600_000_000_123_456_789)
        );
        std::fs::set_permissions(d.path().join("dir"), std::fs::Permissions::from_mode(0o755))
            .expect("restore");
    }
}

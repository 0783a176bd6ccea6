//! The filtered, byte-sorted, depth-first walk of a local directory that fsutil's sender does.

use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::wire::Stat;

use super::mode::{dev_major, dev_minor, go_mode};
use crate::patterns::{PatternMatcher, clean_path};
use crate::{Error, Result};

/// Which entries of a directory are sent: fsutil's include / exclude / followpaths filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    include: PatternMatcher,
    exclude: PatternMatcher,
}

impl Filter {
    /// Builds the filter. `follow_paths` are resolved through symlinks under `root` (targets are
    /// added, wildcards in the last element expanded) and joined to the include patterns.
    pub(crate) fn new(
        root: &Path,
        include: &[String],
        exclude: &[String],
        follow_paths: &[String],
    ) -> Result<Self> {
        let mut includes: Vec<String> = include.to_vec();
        if !follow_paths.is_empty() {
            for p in follow_links(root, follow_paths) {
                if !includes.contains(&p) {
                    includes.push(p);
                }
            }
        }
        Ok(Filter {
            include: PatternMatcher::new(&includes)?,
            exclude: PatternMatcher::new(exclude)?,
        })
    }

    /// `(send this entry, walk into it)`.
    fn decide(&self, rel: &str, is_dir: bool) -> (bool, bool) {
        let mut emit = true;
        if !self.include.is_empty() && !self.include.matches(rel) {
            emit = false;
            if is_dir && !self.include.may_match_inside(rel, false) {
                return (false, false);
            }
        }
        if !self.exclude.is_empty() && self.exclude.matches(rel) {
            emit = false;
            if is_dir
                && (!self.exclude.has_exclusions() || !self.exclude.may_match_inside(rel, true))
            {
                return (false, false);
            }
        }
        (emit, is_dir)
    }
}

/// Resolves `paths` (relative to `root`) through symlinks, the way fsutil's `FollowLinks` does:
/// every symlink met on the way is kept and its target followed; a wildcard in the last element
/// is expanded. The given paths themselves are always kept.
pub(crate) fn follow_links(root: &Path, paths: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        follow_one(root, &clean_path(p.trim_start_matches('/')), &mut out, 0);
    }
    out
}

fn follow_one(root: &Path, rel: &str, out: &mut Vec<String>, depth: usize) {
    let push = |out: &mut Vec<String>, s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    if depth > 40 || rel == "." || rel.starts_with("..") {
        return;
    }
    let (dir, base) = match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    };
    if base.contains(['*', '?', '[', '\\']) {
        push(out, rel);
        let Ok(pm) = PatternMatcher::new([base]) else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            return;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| pm.patterns().iter().any(|p| p.is_match(n)))
            .collect();
        names.sort();
        for n in names {
            let child = if dir.is_empty() {
                n
            } else {
                format!("{dir}/{n}")
            };
            follow_one(root, &child, out, depth + 1);
        }
        return;
    }
    push(out, rel);
    // Walk the components; on the first symlink, keep it and follow its target.
    let parts: Vec<&str> = rel.split('/').collect();
    for i in 0..parts.len() {
        let prefix = parts[..=i].join("/");
        let Ok(md) = std::fs::symlink_metadata(root.join(&prefix)) else {
            return;
        };
        if md.file_type().is_symlink() {
            push(out, &prefix);
            let Ok(target) = std::fs::read_link(root.join(&prefix)) else {
                return;
            };
            let Some(target) = target.to_str() else {
                return;
            };
            let parent = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            let resolved = if target.starts_with('/') {
                clean_path(target).trim_start_matches('/').to_owned()
            } else if parent.is_empty() {
                clean_path(target)
            } else {
                clean_path(&format!("{parent}/{target}"))
            };
            let rest = parts[i + 1..].join("/");
            let next = if rest.is_empty() {
                resolved
            } else {
                clean_path(&format!("{resolved}/{rest}"))
            };
            follow_one(root, &next, out, depth + 1);
            return;
        }
    }
}

/// One entry of the walk.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The wire stat (uid/gid 0, Go mode bits, ns mtime).
    pub(crate) stat: Stat,
    /// The absolute path of a regular file, to read its data later.
    pub(crate) file: Option<PathBuf>,
}

/// Walks `root` and calls `emit` for each entry to send, in the order fsutil's receiver
/// requires: depth-first, siblings in byte order, parents (sent lazily) before children.
pub(crate) fn walk(
    root: &Path,
    filter: &Filter,
    emit: &mut dyn FnMut(Entry) -> Result<()>,
) -> Result<()> {
    let md = std::fs::metadata(root).map_err(|e| Error::io("stat", root, e))?;
    if !md.is_dir() {
        return Err(Error::io(
            "walk",
            root,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut w = Walker {
        filter,
        emit,
        pending: Vec::new(),
    };
    w.visit(root, b"", "")
}

struct Walker<'a> {
    filter: &'a Filter,
    emit: &'a mut dyn FnMut(Entry) -> Result<()>,
    /// Directories walked into but not sent yet (they did not match themselves).
    pending: Vec<Entry>,
}

impl Walker<'_> {
    /// `rel` is the byte path sent on the wire; `rel_str` its lossy UTF-8 form, which the
    /// include / exclude patterns are matched against.
    fn visit(&mut self, abs: &Path, rel: &[u8], rel_str: &str) -> Result<()> {
        let rd = std::fs::read_dir(abs).map_err(|e| Error::io("read directory", abs, e))?;
        let mut names: Vec<OsString> = Vec::new();
        for e in rd {
            names.push(
                e.map_err(|e| Error::io("read directory", abs, e))?
                    .file_name(),
            );
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child_abs = abs.join(&name);
            let lossy = name.to_string_lossy();
            let (child_rel, child_str) = if rel.is_empty() {
                (name.as_bytes().to_vec(), lossy.into_owned())
            } else {
                let mut b = rel.to_vec();
                b.push(b'/');
                b.extend_from_slice(name.as_bytes());
                (b, format!("{rel_str}/{lossy}"))
            };
            let md = match std::fs::symlink_metadata(&child_abs) {
                Ok(md) => md,
                // Removed while we walk: as if it never existed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat", &child_abs, e)),
            };
            if md.file_type().is_socket() {
                continue;
            }
            let is_dir = md.is_dir();
            let (send, descend) = self.filter.decide(&child_str, is_dir);
            if !send && !descend {
                continue;
            }
            let entry = make_entry(&child_abs, child_rel.clone(), &md)?;
            let depth = self.pending.len();
            if send {
                self.flush_pending()?;
                (self.emit)(entry)?;
            } else {
                self.pending.push(entry);
            }
            if descend {
                self.visit(&child_abs, &child_rel, &child_str)?;
                self.pending.truncate(depth);
            }
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<()> {
        for e in self.pending.drain(..) {
            (self.emit)(e)?;
        }
        Ok(())
    }
}

fn make_entry(abs: &Path, rel: Vec<u8>, md: &Metadata) -> Result<Entry> {
    let mode = go_mode(md);
    let ft = md.file_type();
    let mut stat = Stat {
        path: rel,
        mode,
        uid: 0,
        gid: 0,
        size: if ft.is_dir() { 0 } else { md.len() as i64 },
        mod_time: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        ..Stat::default()
    };
    let mut file = None;
    if ft.is_symlink() {
        let target = std::fs::read_link(abs).map_err(|e| Error::io("read link", abs, e))?;
        stat.linkname = target.into_os_string().into_vec();
    } else if ft.is_block_device() || ft.is_char_device() {
        stat.devmajor = dev_major(md.rdev());
        stat.devminor = dev_minor(md.rdev());
    } else if ft.is_file() {
        file = Some(abs.to_path_buf());
    }
    Ok(Entry { stat, file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path();
        for dir in ["a", "a/b", "a-b", "build/keep", "build/drop", "z"] {
            std::fs::create_dir_all(p.join(dir)).expect("mkdir");
        }
        for f in [
            "a/b/c.txt",
            "a/x.log",
            "a-b/f",
            "a.txt",
            "build/keep/k",
            "build/drop/d",
            "z/Dockerfile",
        ] {
            std::fs::write(p.join(f), f.as_bytes()).expect("write");
        }
        std::os::unix::fs::symlink("z/Dockerfile", p.join("link")).expect("symlink");
        d
    }

    fn paths(root: &Path, f: &Filter) -> Vec<String> {
        let mut out = Vec::new();
        walk(root, f, &mut |e| {
            out.push(String::from_utf8(e.stat.path).expect("utf-8 in these tests"));
            Ok(())
        })
        .expect("walk");
        out
    }

    #[test]
    fn byte_order_depth_first() {
        let d = tree();
        let got = paths(d.path(), &Filter::default());
        assert_eq!(
            got,
            [
                "a",
                "a/b",
                "a/b/c.txt",
                "a/x.log",
                "a-b",
                "a-b/f",
                "a.txt",
                "build",
                "build/drop",
                "build/drop/d",
                "build/keep",
                "build/keep/k",
                "link",
                "z",
                "z/Dockerfile"
            ]
        );
    }

    #[test]
    fn excludes_with_exceptions_send_parents_lazily() {
        let d = tree();
        let f = Filter::new(
            d.path(),
            &[],
            &["build".into(), "!build/keep/k".into(), "**/*.log".into()],
            &[],
        )
        .expect("filter");
        let got = paths(d.path(), &f);
        assert_eq!(
            got,
            [
                "a",
                "a/b",
                "a/b/c.txt",
                "a-b",
                "a-b/f",
                "a.txt",
                "build",
                "build/keep",
                "build/keep/k",
                "link",
                "z",
                "z/Dockerfile"
            ]
        );
    }

    #[test]
    fn followpaths_follow_symlinks() {
        let d = tree();
        let f = Filter::new(d.path(), &[], &[], &["link".into(), "missing".into()]).expect("f");
        assert_eq!(paths(d.path(), &f), ["link", "z", "z/Dockerfile"]);
        let f = Filter::new(d.path(), &[], &[], &["a/b/*.txt".into()]).expect("f");
        assert_eq!(paths(d.path(), &f), ["a", "a/b", "a/b/c.txt"]);
    }

    #[test]
    fn non_utf8_names_are_sent_byte_exact() {
        use std::ffi::OsStr;
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join(OsStr::from_bytes(b"d\xff"));
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join(OsStr::from_bytes(b"caf\xe9.log")), b"x").expect("write");
        std::fs::write(dir.join("ok.txt"), b"y").expect("write");
        std::os::unix::fs::symlink(OsStr::from_bytes(b"t\x80"), d.path().join("ln"))
            .expect("symlink");
        let f = Filter::new(d.path(), &[], &["**/*.log".into()], &[]).expect("filter");
        let mut got = Vec::new();
        walk(d.path(), &f, &mut |e| {
            got.push((e.stat.path, e.stat.linkname));
            Ok(())
        })
        .expect("walk");
        let want: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"d\xff".to_vec(), vec![]),
            (b"d\xff/ok.txt".to_vec(), vec![]),
            (b"ln".to_vec(), b"t\x80".to_vec()),
        ];
        assert_eq!(got, want, "patterns apply to the names, bytes are kept");
    }

    #[test]
    fn stats_carry_go_modes_and_ns_times() {
        let d = tree();
        let mut stats = Vec::new();
        walk(d.path(), &Filter::default(), &mut |e| {
            stats.push(e);
            Ok(())
        })
        .expect("walk");
        let link = stats.iter().find(|e| e.stat.path == b"link").expect("link");
        assert_eq!(link.stat.linkname, b"z/Dockerfile");
        assert_eq!(link.stat.size, "z/Dockerfile".len() as i64);
        assert!(link.file.is_none());
        let txt = stats
            .iter()
            .find(|e| e.stat.path == b"a.txt")
            .expect("a.txt");
        let md = std::fs::metadata(d.path().join("a.txt")).expect("stat");
        assert_eq!(
            txt.stat.mod_time,
            md.mtime() * 1_000_000_000 + md.mtime_nsec()
        );
        assert_eq!((txt.stat.uid, txt.stat.gid), (0, 0));
        assert_eq!(txt.stat.size, 5);
    }
}

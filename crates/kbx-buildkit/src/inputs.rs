//! Where the context and the Dockerfile come from: local directories, or `-` (standard input,
//! or any reader standing in for it) carrying a context archive or a Dockerfile.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{Error, Result};

/// How many bytes are looked at to tell an archive from a Dockerfile (two tar blocks).
const PEEK: usize = 1024;

/// The host part of the URL the daemon fetches an uploaded context from.
pub(crate) const UPLOAD_HOST: &str = "buildkit-session";

/// A boxed reader for `-`.
pub(crate) type BoxRead = Pin<Box<dyn AsyncRead + Send>>;

/// A reader handed out once to the session's `Upload.Pull` (shared so the session
/// configuration stays cloneable).
#[derive(Clone, Default)]
pub(crate) struct UploadSlot(Arc<Mutex<Option<BoxRead>>>);

impl std::fmt::Debug for UploadSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSlot")
    }
}

impl UploadSlot {
    pub(crate) fn new(r: BoxRead) -> Self {
        UploadSlot(Arc::new(Mutex::new(Some(r))))
    }

    /// The reader, the first time only.
    pub(crate) fn take(&self) -> Option<BoxRead> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}

/// The resolved inputs of one build.
#[derive(Debug)]
pub(crate) struct Inputs {
    /// Session directories (`context`, `dockerfile`).
    pub(crate) dirs: HashMap<String, PathBuf>,
    /// Extra frontend attributes (`context` for an uploaded archive, `dockerfilekey`).
    pub(crate) attrs: BTreeMap<String, String>,
    /// The `filename` attribute.
    pub(crate) filename: String,
    /// Upload ID → reader, for a context archive.
    pub(crate) uploads: HashMap<String, UploadSlot>,
    /// The session name and the base of the default shared key.
    pub(crate) key_path: PathBuf,
    /// Directories created for a Dockerfile read from `-`; removed on drop.
    _temp: Vec<tempfile::TempDir>,
}

/// Resolves `context` / `dockerfile` the way buildx does, reading `-` from `stdin`.
///
/// - context `-`: `stdin` starting like an archive (tar, or gzip / bzip2 / xz magic) is the
///   context, uploaded through the session when the daemon asks; otherwise it is the
///   Dockerfile, with an empty context;
/// - Dockerfile `-`: `stdin` is the Dockerfile (written to a temporary directory);
/// - otherwise both are local paths.
pub(crate) async fn load(
    context: &Path,
    dockerfile: Option<&Path>,
    upload_id: &str,
    mut stdin: BoxRead,
) -> Result<Inputs> {
    let is_dash = |p: &Path| p.as_os_str() == "-";
    let df_stdin = dockerfile.is_some_and(is_dash);
    let mut out = Inputs {
        dirs: HashMap::new(),
        attrs: BTreeMap::new(),
        filename: "Dockerfile".to_owned(),
        uploads: HashMap::new(),
        key_path: PathBuf::new(),
        _temp: Vec::new(),
    };
    if is_dash(context) {
        if df_stdin {
            return Err(Error::InvalidOptions(
                "can't use stdin for both build context and dockerfile".to_owned(),
            ));
        }
        let head = peek(&mut stdin).await?;
        if head.is_empty() {
            return Err(Error::InvalidOptions(
                "the context on stdin is empty".to_owned(),
            ));
        }
        let rest: BoxRead = Box::pin(std::io::Cursor::new(head.clone()).chain(stdin));
        if is_archive(&head) {
            out.uploads
                .insert(upload_id.to_owned(), UploadSlot::new(rest));
            out.attrs.insert(
                "context".to_owned(),
                format!("http://{UPLOAD_HOST}/{upload_id}"),
            );
            if let Some(df) = dockerfile {
                // A path inside the archive.
                out.filename = df.to_string_lossy().into_owned();
            }
            out.key_path = PathBuf::from("stdin");
            return Ok(out);
        }
        if dockerfile.is_some() {
            return Err(Error::InvalidOptions(
                "ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles"
                    .to_owned(),
            ));
        }
        let empty = temp_dir("kbx-empty-context")?;
        out.dirs
            .insert("context".to_owned(), empty.path().to_path_buf());
        out.key_path = empty.path().to_path_buf();
        out._temp.push(empty);
        write_temp_dockerfile(&mut out, rest).await?;
        return Ok(out);
    }

    let ctx = std::fs::canonicalize(context).map_err(|e| Error::io("open context", context, e))?;
    if !ctx.is_dir() {
        return Err(Error::InvalidOptions(format!(
            "context {} is not a directory",
            context.display()
        )));
    }
    out.dirs.insert("context".to_owned(), ctx.clone());
    out.key_path = ctx.clone();
    match dockerfile {
        Some(_) if df_stdin => write_temp_dockerfile(&mut out, stdin).await?,
        Some(p) => {
            let abs = std::fs::canonicalize(p).map_err(|e| Error::io("open Dockerfile", p, e))?;
            let (Some(dir), Some(name)) = (abs.parent(), abs.file_name()) else {
                return Err(Error::InvalidOptions(format!(
                    "bad Dockerfile path {}",
                    abs.display()
                )));
            };
            out.dirs.insert("dockerfile".to_owned(), dir.to_path_buf());
            out.filename = name.to_string_lossy().into_owned();
        }
        None => {
            out.dirs.insert("dockerfile".to_owned(), ctx);
        }
    }
    Ok(out)
}

/// Streams `r` into `<temp>/Dockerfile` and points the `dockerfile` directory at it.
async fn write_temp_dockerfile(out: &mut Inputs, mut r: BoxRead) -> Result<()> {
    let dir = temp_dir("kbx-dockerfile")?;
    let path = dir.path().join("Dockerfile");
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(|e| Error::io("create", &path, e))?;
    tokio::io::copy(&mut r, &mut f)
        .await
        .map_err(|e| Error::io("write Dockerfile from stdin to", &path, e))?;
    out.dirs
        .insert("dockerfile".to_owned(), dir.path().to_path_buf());
    out.filename = "Dockerfile".to_owned();
    out.attrs
        .insert("dockerfilekey".to_owned(), "dockerfile".to_owned());
    out._temp.push(dir);
    Ok(())
}

fn temp_dir(prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))
}

/// Reads up to [`PEEK`] bytes (fewer only at end of input).
async fn peek(r: &mut BoxRead) -> Result<Vec<u8>> {
    let mut head = vec![0u8; PEEK];
    let mut n = 0;
    while n < PEEK {
        let got = r
            .read(&mut head[n..])
            .await
            .map_err(|e| Error::io("read", "<stdin>", e))?;
        if got == 0 {
            break;
        }
        n += got;
    }
    head.truncate(n);
    Ok(head)
}

/// Whether `head` starts a compressed stream (gzip, bzip2, xz) or a tar archive whose first
/// header's checksum is right — the same test buildx applies to standard input.
pub(crate) fn is_archive(head: &[u8]) -> bool {
    const MAGIC: [&[u8]; 3] = [
        &[0x42, 0x5A, 0x68],
        &[0x1F, 0x8B, 0x08],
        &[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00],
    ];
    if MAGIC.iter().any(|m| head.starts_with(m)) {
        return true;
    }
    let Some(block) = head.get(..512) else {
        return false;
    };
    if block.iter().all(|&b| b == 0) {
        return false;
    }
    let Some(stored) = parse_octal(&block[148..156]) else {
        return false;
    };
    let unsigned: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// A tar numeric field: octal digits, padded with spaces or NULs.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    if s.is_empty() {
        return None;
    }
    u64::from_str_radix(s, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> BoxRead {
        Box::pin(std::io::Cursor::new(bytes.to_vec()))
    }

    /// A one-file tar archive made by the system `tar`.
    fn tar_bytes(dir: &Path) -> Vec<u8> {
        std::fs::write(dir.join("Dockerfile"), b"FROM scratch\n").expect("write");
        let out = std::process::Command::new("tar")
            .arg("-cf")
            .arg("-")
            .arg("-C")
            .arg(dir)
            .arg("Dockerfile")
            .output()
            .expect("run tar");
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn archive_detection() {
        let d = tempfile::tempdir().expect("tempdir");
        let tar = tar_bytes(d.path());
        assert!(is_archive(&tar[..PEEK]));
        let mut broken = tar.clone();
        broken[0] ^= 1; // the checksum no longer matches
        assert!(!is_archive(&broken[..PEEK]));
        assert!(!is_archive(&tar[..300]), "shorter than a header");
        assert!(is_archive(&[0x1F, 0x8B, 0x08, 0]));
        assert!(is_archive(b"BZh91AY"));
        assert!(is_archive(&[0xFD, b'7', b'z', b'X', b'Z', 0, 1]));
        assert!(!is_archive(b"FROM scratch\nCOPY . /\n"));
        assert!(!is_archive(&[0u8; 1024]));
        assert!(!is_archive(b""));
    }

    #[tokio::test]
    async fn stdin_archive_becomes_an_upload() {
        let d = tempfile::tempdir().expect("tempdir");
        let tar = tar_bytes(d.path());
        let inp = load(Path::new("-"), None, "up1", reader(&tar))
            .await
            .expect("load");
        assert_eq!(inp.attrs["context"], "http://buildkit-session/up1");
        assert_eq!(inp.filename, "Dockerfile");
        assert!(inp.dirs.is_empty(), "{:?}", inp.dirs);
        let mut r = inp.uploads["up1"].take().expect("reader");
        assert!(inp.uploads["up1"].take().is_none(), "handed out once");
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, tar, "the peeked bytes come first");

        let inp = load(
            Path::new("-"),
            Some(Path::new("sub/Dockerfile.x")),
            "u",
            reader(&tar),
        )
        .await
        .expect("load");
        assert_eq!(inp.filename, "sub/Dockerfile.x");
    }

    #[tokio::test]
    async fn stdin_dockerfile_gets_an_empty_context() {
        let df = b"FROM scratch\nENV A=1\n";
        let inp = load(Path::new("-"), None, "u", reader(df))
            .await
            .expect("load");
        assert!(inp.uploads.is_empty());
        let ctx = &inp.dirs["context"];
        assert_eq!(std::fs::read_dir(ctx).expect("ls").count(), 0);
        let dfdir = &inp.dirs["dockerfile"];
        assert_eq!(std::fs::read(dfdir.join("Dockerfile")).expect("read"), df);
        assert_eq!(inp.attrs["dockerfilekey"], "dockerfile");
        let (c, f) = (ctx.clone(), dfdir.clone());
        drop(inp);
        assert!(!c.exists() && !f.exists(), "temporary dirs are removed");

        let e = load(Path::new("-"), Some(Path::new("D")), "u", reader(df))
            .await
            .expect_err("ambiguous");
        assert!(e.to_string().contains("ambiguous Dockerfile source"), "{e}");
        let e = load(Path::new("-"), Some(Path::new("-")), "u", reader(df))
            .await
            .expect_err("both");
        assert!(e.to_string().contains("both build context and dockerfile"));
        let e = load(Path::new("-"), None, "u", reader(b""))
            .await
            .expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[tokio::test]
    async fn dockerfile_from_stdin_with_a_directory_context() {
        let d = tempfile::tempdir().expect("tempdir");
        let inp = load(d.path(), Some(Path::new("-")), "u", reader(b"FROM x\n"))
            .await
            .expect("load");
        let canon = std::fs::canonicalize(d.path()).expect("canon");
        assert_eq!(inp.dirs["context"], canon);
        assert_ne!(inp.dirs["dockerfile"], canon);
        assert_eq!(
            std::fs::read(inp.dirs["dockerfile"].join("Dockerfile")).expect("read"),
            b"FROM x\n"
        );
        assert!(!inp.attrs.contains_key("context"));

        let inp = load(d.path(), None, "u", reader(b"")).await.expect("load");
        assert_eq!(inp.dirs["dockerfile"], canon);
        assert!(inp.attrs.is_empty() && inp.uploads.is_empty());
        let e = load(&d.path().join("nope"), None, "u", reader(b""))
            .await
            .expect_err("missing");
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
    }
}

//! The `build` flags a user types as CSV records or `k=v` values: `--output`, `--cache-from`,
//! `--cache-to`, `--secret`, `--ssh` and `--build-context`, with buildx's semantics.
//!
//! Each CSV flag value is one RFC 4180 record read by the same grammar as `--driver-opt`, so a
//! quoted field keeps its commas: `-o 'type=image,"name=r/app:1,r/app:latest",push=true'`.

use std::collections::BTreeMap;
use std::fmt;

use crate::csv::{parse_record, write_field};
use crate::error::{BuildFlagProblem, Error};

/// Wraps `problem` with the flag and the value it came from.
fn flag_error(flag: &'static str, value: &str, problem: BuildFlagProblem) -> Error {
    Error::BuildFlag {
        flag,
        value: value.to_owned(),
        problem,
    }
}

/// The fields of one CSV flag value; a CSV error is reported for the flag.
fn fields(flag: &'static str, spec: &str) -> Result<Vec<String>, Error> {
    parse_record(spec)
        .map(|fields| fields.into_iter().map(|f| f.text).collect())
        .map_err(|e| flag_error(flag, spec, BuildFlagProblem::Csv(Box::new(e))))
}

/// Writes `key=value` as one CSV field after a comma when `out` is not empty.
fn write_pair(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    write_field(out, &format!("{key}={value}"));
}

/// One `--output` value, as buildx reads it before it checks the exporter type.
///
/// ```
/// use kbx_opts::ExportEntry;
///
/// let e = ExportEntry::parse(r#"type=image,"name=r/app:1,r/app:latest",push=true"#)?;
/// assert_eq!(e.kind, "image");
/// assert_eq!(e.attrs["name"], "r/app:1,r/app:latest");
/// assert_eq!(e.attrs["push"], "true");
///
/// // A bare value is a local directory; `-` is a tarball on standard output.
/// assert_eq!(ExportEntry::parse("out")?, ExportEntry::local("out"));
/// assert_eq!(ExportEntry::parse("-")?.kind, "tar");
///
/// let err = ExportEntry::parse("dest=out,name=app").unwrap_err();
/// assert_eq!(err.to_string(), r#"--output "dest=out,name=app": type is required for output"#);
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportEntry {
    /// The exporter: `local`, `tar`, `oci`, `docker`, `image`, `registry`, `moby`,
    /// `cacheonly`, … (not checked here: the daemon knows its exporters).
    pub kind: String,
    /// `dest=`, as typed (`-` is standard output).
    pub dest: Option<String>,
    /// Every other `key=value` (keys lowercased and trimmed as buildx does; the last of a
    /// repeated key wins).
    pub attrs: BTreeMap<String, String>,
}

impl ExportEntry {
    /// `type=local,dest=DIR`.
    pub fn local(dest: impl Into<String>) -> Self {
        ExportEntry {
            kind: "local".to_owned(),
            dest: Some(dest.into()),
            attrs: BTreeMap::new(),
        }
    }

    /// Parses one `--output` value as buildx does: a CSV record of `key=value` fields, or a
    /// single bare value (a `local` directory, or `-` for a `tar` stream on standard output).
    ///
    /// # Errors
    /// [`Error::BuildFlag`] for a CSV error, a field without `=` (`invalid value FIELD`) or a
    /// missing `type` (`type is required for output`).
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let bad = |p| flag_error("--output", spec, p);
        let fields = fields("--output", spec)?;
        if let [only] = fields.as_slice()
            && only == spec
            && !spec.starts_with("type=")
        {
            return Ok(if spec == "-" {
                ExportEntry {
                    kind: "tar".to_owned(),
                    dest: Some(spec.to_owned()),
                    attrs: BTreeMap::new(),
                }
            } else {
                ExportEntry::local(spec)
            });
        }
        let mut entry = ExportEntry::default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(bad(BuildFlagProblem::InvalidValue { field }));
            };
            match key.trim().to_lowercase().as_str() {
                "type" => entry.kind = value.to_owned(),
                "dest" => entry.dest = Some(value.to_owned()),
                other => {
                    entry.attrs.insert(other.to_owned(), value.to_owned());
                }
            }
        }
        if entry.kind.is_empty() {
            return Err(bad(BuildFlagProblem::OutputTypeRequired));
        }
        Ok(entry)
    }
}

/// The CSV record that [`ExportEntry::parse`] reads back as the same entry (a bare `local`
/// directory or `-` is written in its long form).
impl fmt::Display for ExportEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_pair(&mut out, "type", &self.kind);
        if let Some(dest) = &self.dest {
            write_pair(&mut out, "dest", dest);
        }
        for (k, v) in &self.attrs {
            write_pair(&mut out, k, v);
        }
        f.write_str(&out)
    }
}

/// One `--cache-from` / `--cache-to` entry.
///
/// ```
/// use kbx_opts::CacheEntry;
///
/// let e = CacheEntry::parse("type=registry,ref=r/cache,mode=max")?;
/// assert_eq!((e.kind.as_str(), e.attrs["mode"].as_str()), ("registry", "max"));
///
/// // Without `=`, each field is a registry reference of its own.
/// let refs = CacheEntry::parse_list("r/a,r/b")?;
/// assert_eq!(refs, [CacheEntry::registry("r/a"), CacheEntry::registry("r/b")]);
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheEntry {
    /// `registry`, `inline`, `local`, `gha`, `s3`, `azblob`, … (not checked here).
    pub kind: String,
    /// The other attributes (`ref`, `mode`, `dest`, `src`, …), keys lowercased.
    pub attrs: BTreeMap<String, String>,
}

impl CacheEntry {
    /// `type=registry,ref=REFERENCE`.
    pub fn registry(reference: impl Into<String>) -> Self {
        CacheEntry {
            kind: "registry".to_owned(),
            attrs: BTreeMap::from([("ref".to_owned(), reference.into())]),
        }
    }

    /// Parses one entry: a CSV record of `key=value` fields with a `type`, or a single
    /// field without `=`, which means `type=registry,ref=<it>`.
    ///
    /// # Errors
    /// [`Error::BuildFlag`] for a CSV error, a field without `=` (`invalid value FIELD`) or a
    /// missing `type` (`type required for "VALUE"`).
    pub fn parse(spec: &str) -> Result<Self, Error> {
        const FLAG: &str = "--cache-from/--cache-to";
        let bad = |p| flag_error(FLAG, spec, p);
        let fields = fields(FLAG, spec)?;
        if let [only] = fields.as_slice()
            && !only.contains('=')
        {
            return Ok(CacheEntry::registry(only.clone()));
        }
        let mut entry = CacheEntry::default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(bad(BuildFlagProblem::InvalidValue { field }));
            };
            match key.to_lowercase().as_str() {
                "type" => entry.kind = value.to_owned(),
                other => {
                    entry.attrs.insert(other.to_owned(), value.to_owned());
                }
            }
        }
        if entry.kind.is_empty() {
            return Err(bad(BuildFlagProblem::CacheTypeRequired {
                spec: spec.to_owned(),
            }));
        }
        Ok(entry)
    }

    /// Parses one flag value as buildx does: a value without `=` is a CSV list of registry
    /// references, one entry each (`--cache-from r/a,r/b`); anything else is one entry. An
    /// empty value gives no entry.
    ///
    /// # Errors
    /// As [`CacheEntry::parse`].
    pub fn parse_list(spec: &str) -> Result<Vec<Self>, Error> {
        if spec.is_empty() {
            return Ok(Vec::new());
        }
        if spec.contains('=') {
            return Ok(vec![CacheEntry::parse(spec)?]);
        }
        fields("--cache-from/--cache-to", spec)?
            .into_iter()
            .map(|f| {
                if f.is_empty() {
                    // buildx passes "" on, which its parser refuses as a record (EOF).
                    CacheEntry::parse(&f).map_err(|e| match e {
                        Error::BuildFlag { flag, problem, .. } => Error::BuildFlag {
                            flag,
                            value: spec.to_owned(),
                            problem,
                        },
                        e => e,
                    })
                } else {
                    Ok(CacheEntry::registry(f))
                }
            })
            .collect()
    }
}

/// The CSV record that [`CacheEntry::parse`] reads back as the same entry.
impl fmt::Display for CacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_pair(&mut out, "type", &self.kind);
        for (k, v) in &self.attrs {
            write_pair(&mut out, k, v);
        }
        f.write_str(&out)
    }
}

/// One `--secret` value, as buildx reads it.
///
/// ```
/// use kbx_opts::SecretSpec;
///
/// let s = SecretSpec::parse(r#"id=a,"src=/path/with,comma""#)?;
/// assert_eq!(s.id, "a");
/// assert_eq!(s.src.as_deref(), Some("/path/with,comma"));
///
/// // `type=env` reads the variable named by `src` (or by `id` when neither is given).
/// let s = SecretSpec::parse("id=tok,type=env,src=GH_TOKEN")?;
/// assert_eq!((s.env.as_deref(), s.src), (Some("GH_TOKEN"), None));
///
/// let err = SecretSpec::parse("id=a,mode=0400").unwrap_err();
/// assert_eq!(err.to_string(), r#"--secret "id=a,mode=0400": unexpected key 'mode' in 'mode=0400'"#);
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSpec {
    /// The ID the Dockerfile refers to (`RUN --mount=type=secret,id=…`).
    pub id: String,
    /// `src=` / `source=`: a file to read.
    pub src: Option<String>,
    /// `env=`: an environment variable to read.
    pub env: Option<String>,
}

impl SecretSpec {
    /// Parses `id=ID[,src=PATH|,env=VAR][,type=file|env]` (keys case-insensitive; `source` is
    /// `src`). With neither `src` nor `env`, the daemon's client reads the environment
    /// variable `ID` if it is set, else the file `ID` (see [`SecretSpec::resolve`]).
    ///
    /// # Errors
    /// [`Error::BuildFlag`] for a CSV error (`failed to parse csv secret: …`), a field
    /// without `=`, an unknown key or type, or a missing `id` (`secret missing ID`).
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let bad = |p| flag_error("--secret", spec, p);
        let fields = parse_record(spec)
            .map_err(|e| bad(BuildFlagProblem::SecretCsv(Box::new(e))))?
            .into_iter()
            .map(|f| f.text);
        let mut s = SecretSpec::default();
        let mut env_type = false;
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                return Err(bad(BuildFlagProblem::SecretField { field }));
            };
            let key = key.to_lowercase();
            match key.as_str() {
                "type" if value == "file" || value == "env" => env_type = value == "env",
                "type" => {
                    return Err(bad(BuildFlagProblem::SecretType {
                        value: value.to_owned(),
                    }));
                }
                "id" => s.id = value.to_owned(),
                "source" | "src" => s.src = Some(value.to_owned()),
                "env" => s.env = Some(value.to_owned()),
                _ => {
                    return Err(bad(BuildFlagProblem::SecretKey {
                        key: key.clone(),
                        field: field.clone(),
                    }));
                }
            }
        }
        if env_type && s.env.as_deref().unwrap_or_default().is_empty() {
            s.env = s.src.take();
        }
        s.src = s.src.filter(|v| !v.is_empty());
        s.env = s.env.filter(|v| !v.is_empty());
        if s.id.is_empty() {
            return Err(bad(BuildFlagProblem::SecretMissingId));
        }
        Ok(s)
    }

    /// Where the value comes from, as BuildKit's client decides it: `env` wins over `src`;
    /// with neither, the variable `ID` when `has_env(ID)`, else the file `ID`.
    pub fn resolve(&self, has_env: impl FnOnce(&str) -> bool) -> SecretFrom {
        match (&self.env, &self.src) {
            (Some(env), _) => SecretFrom::Env(env.clone()),
            (None, Some(src)) => SecretFrom::File(src.clone()),
            (None, None) if has_env(&self.id) => SecretFrom::Env(self.id.clone()),
            (None, None) => SecretFrom::File(self.id.clone()),
        }
    }
}

/// Where a [`SecretSpec`]'s bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// A file.
    File(String),
    /// An environment variable.
    Env(String),
}

/// The CSV record that [`SecretSpec::parse`] reads back as the same spec.
impl fmt::Display for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_pair(&mut out, "id", &self.id);
        if let Some(src) = &self.src {
            write_pair(&mut out, "src", src);
        }
        if let Some(env) = &self.env {
            write_pair(&mut out, "env", env);
        }
        f.write_str(&out)
    }
}

/// One `--ssh` value: `ID` or `ID=PATH[,PATH…]` (`default` is the usual ID). Not CSV: buildx
/// splits the paths on every comma.
///
/// ```
/// use kbx_opts::SshSpec;
///
/// let s = SshSpec::parse("git=/home/me/.ssh/id_ed25519,/home/me/.ssh/id_rsa");
/// assert_eq!(s.id, "git");
/// assert_eq!(s.paths, ["/home/me/.ssh/id_ed25519", "/home/me/.ssh/id_rsa"]);
/// assert!(SshSpec::parse("default").paths.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshSpec {
    /// The ID the Dockerfile refers to (`RUN --mount=type=ssh,id=…`).
    pub id: String,
    /// Agent sockets or private key files; empty means `SSH_AUTH_SOCK`.
    pub paths: Vec<String>,
}

impl SshSpec {
    /// Parses `ID[=PATH[,PATH…]]`; empty paths are dropped.
    pub fn parse(spec: &str) -> Self {
        match spec.split_once('=') {
            Some((id, paths)) => SshSpec {
                id: id.to_owned(),
                paths: paths
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            },
            None => SshSpec {
                id: spec.to_owned(),
                paths: Vec::new(),
            },
        }
    }
}

/// The `ID[=PATH,…]` text that [`SshSpec::parse`] reads back as the same spec.
impl fmt::Display for SshSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)?;
        if !self.paths.is_empty() {
            write!(f, "={}", self.paths.join(","))?;
        }
        Ok(())
    }
}

/// Where a named build context comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextSource {
    /// A local directory.
    Local(String),
    /// A value the frontend resolves itself, sent as it is: `docker-image://ref`,
    /// `target:stage`, an http(s) URL or a Git URL.
    Frontend(String),
    /// `oci-layout://DIR[:TAG][@DIGEST]`: an image in a local OCI layout.
    OciLayout {
        /// The layout directory (with `index.json` and `blobs/`).
        dir: String,
        /// The tag looked up in `index.json` when no digest is given (default `latest`).
        tag: String,
        /// The image's digest, when given.
        digest: Option<String>,
    },
}

/// One `--build-context name=value`: `FROM name`, `COPY --from=name` and
/// `RUN --mount=from=name` in the Dockerfile then refer to `value` instead of an image or a
/// stage.
///
/// ```
/// use kbx_opts::{BuildContext, ContextSource};
///
/// let c = BuildContext::parse("docker.io/library/alpine:latest=docker-image://busybox")?;
/// assert_eq!(c.name, "alpine");
/// assert_eq!(c.source, ContextSource::Frontend("docker-image://busybox".into()));
/// assert_eq!(BuildContext::parse("src=../lib")?.source, ContextSource::Local("../lib".into()));
/// let c = BuildContext::parse("base=oci-layout:///srv/layout:v1")?;
/// assert_eq!(
///     c.source,
///     ContextSource::OciLayout { dir: "/srv/layout".into(), tag: "v1".into(), digest: None }
/// );
/// let err = BuildContext::parse("noequals").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"--build-context "noequals": invalid context value: noequals, expected key=value"#
/// );
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// The name the Dockerfile uses, normalised like buildx does (`docker.io/library/` and a
    /// `:latest` tag are dropped).
    pub name: String,
    /// What it resolves to.
    pub source: ContextSource,
}

impl BuildContext {
    /// Parses `name=value`. Values starting with `docker-image://` or `target:`, http(s) URLs
    /// and Git URLs go to the frontend as they are; `oci-layout://DIR[:TAG][@DIGEST]` names
    /// an image in a local OCI layout (like buildx, the first `@` starts the digest and the
    /// first `:` the tag); anything else is a local directory.
    ///
    /// # Deviation
    /// Names are checked with a simplified reference grammar (lowercase letters, digits, `.`,
    /// `_`, `-`, `/`, `:` and `@`), not the full one; an empty value is refused (buildx fails
    /// later, when it opens the directory `""`).
    ///
    /// # Errors
    /// [`Error::BuildFlag`] when `=` is missing, the name is not a valid reference, the value
    /// is empty or an `oci-layout://` value is malformed.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let bad = |p| flag_error("--build-context", spec, p);
        let Some((name, value)) = spec.split_once('=') else {
            return Err(bad(BuildFlagProblem::ContextValue {
                value: spec.to_owned(),
            }));
        };
        let name = normalize_context_name(name).map_err(|reason| {
            bad(BuildFlagProblem::ContextName {
                name: name.to_owned(),
                reason,
            })
        })?;
        let invalid = |reason: &str| {
            bad(BuildFlagProblem::ContextSource {
                reason: reason.to_owned(),
            })
        };
        if value.is_empty() {
            return Err(invalid("the value is empty"));
        }
        let source = if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (rest, digest) = match rest.split_once('@') {
                Some((r, d)) => (r, Some(d.to_owned())),
                None => (rest, None),
            };
            let (dir, tag) = match rest.split_once(':') {
                Some((d, t)) => (d, t.to_owned()),
                None => (rest, "latest".to_owned()),
            };
            if dir.is_empty() {
                return Err(invalid("the oci-layout:// directory is empty"));
            }
            if let Some(d) = &digest
                && !is_digest(d)
            {
                return Err(invalid(&format!("invalid digest {d:?}")));
            }
            ContextSource::OciLayout {
                dir: dir.to_owned(),
                tag,
                digest,
            }
        } else if is_frontend_value(value) {
            ContextSource::Frontend(value.to_owned())
        } else {
            ContextSource::Local(value.to_owned())
        };
        Ok(BuildContext { name, source })
    }
}

/// `sha256:` + 64 or `sha512:` + 128 lowercase hex digits.
pub fn is_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let len_ok = matches!((alg, hex.len()), ("sha256", 64) | ("sha512", 128));
    len_ok
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_frontend_value(v: &str) -> bool {
    v.starts_with("docker-image://")
        || v.starts_with("target:")
        || v.starts_with("http://")
        || v.starts_with("https://")
        || is_git_url(v)
}

/// Git remotes as buildx recognises them: `git://`, `git@host:`, `ssh://`, a `github.com/`
/// path, or an http(s) URL (already covered) ending in `.git`.
fn is_git_url(v: &str) -> bool {
    let base = v.split('#').next().unwrap_or(v);
    v.starts_with("git://")
        || v.starts_with("ssh://")
        || (v.starts_with("git@") && base.contains(':'))
        || v.starts_with("github.com/")
}

/// The repository path of a reference as Docker's reference grammar names it in errors: the
/// domain, tag and digest dropped, and `library/` added for a one-part Docker Hub name.
fn remote_name(name: &str) -> String {
    let name = name.split('@').next().unwrap_or(name);
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first != first.to_lowercase() =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    };
    let rest = match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => path,
        _ => rest,
    };
    match domain {
        None | Some("docker.io" | "index.docker.io") if !rest.contains('/') => {
            format!("library/{rest}")
        }
        _ => rest.to_owned(),
    }
}

/// The familiar form of an image-reference-shaped name, or why it is not one.
fn normalize_context_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "invalid reference format: repository name ({}) must be lowercase",
            remote_name(name)
        ));
    }
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:@".contains(&b);
    if !name.bytes().all(ok)
        || name.starts_with(['/', '.', '-', '_', ':', '@'])
        || name.ends_with(['/', ':', '@'])
    {
        return Err("invalid reference format".to_owned());
    }
    let mut n = name;
    for prefix in ["docker.io/library/", "docker.io/"] {
        if let Some(rest) = n.strip_prefix(prefix)
            && !rest.is_empty()
        {
            n = rest;
            break;
        }
    }
    Ok(n.strip_suffix(":latest").unwrap_or(n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl fmt::Debug, Error>) -> String {
        r.expect_err("refused").to_string()
    }

    #[test]
    fn outputs_read_quoted_fields_like_buildx() {
        let e = ExportEntry::parse(r#"type=image,"name=reg/app:1,reg/app:latest",push=true"#)
            .expect("ok");
        assert_eq!(e.kind, "image");
        assert_eq!(e.dest, None);
        assert_eq!(
            e.attrs,
            BTreeMap::from([
                ("name".into(), "reg/app:1,reg/app:latest".into()),
                ("push".into(), "true".into()),
            ])
        );
        // Keys are trimmed and lowercased; the last repeated key wins; values keep spaces.
        let e = ExportEntry::parse(" Type=local, DEST= out ,name=a,name=b").expect("ok");
        assert_eq!(e.kind, "local");
        assert_eq!(e.dest.as_deref(), Some(" out "));
        assert_eq!(e.attrs["name"], "b");
        // Attributes pass through untouched.
        let e = ExportEntry::parse("type=image,compression=zstd,annotation.a=b").expect("ok");
        assert_eq!(e.attrs["compression"], "zstd");
        assert_eq!(e.attrs["annotation.a"], "b");
        // A bare `type=…` single field is not a directory.
        assert_eq!(ExportEntry::parse("type=tar").expect("ok").kind, "tar");
        assert_eq!(
            ExportEntry::parse("out,dir")
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            r#"--output "out,dir": invalid value out"#
        );
    }

    #[test]
    fn output_errors_carry_buildx_text() {
        assert_eq!(
            err(ExportEntry::parse("dest=x,push=true")),
            r#"--output "dest=x,push=true": type is required for output"#
        );
        // A single field, even with `=`, is a directory unless it starts with `type=`.
        assert_eq!(
            ExportEntry::parse("dest=x").expect("ok"),
            ExportEntry::local("dest=x")
        );
        assert_eq!(
            err(ExportEntry::parse("type=local,dest")),
            r#"--output "type=local,dest": invalid value dest"#
        );
        assert_eq!(
            err(ExportEntry::parse(r#"type=local,dest="x"#)),
            r#"--output "type=local,dest=\"x": parse error on line 1, column 17: bare " in non-quoted-field"#
        );
    }

    #[test]
    fn caches_follow_buildx() {
        let e = CacheEntry::parse(r#"type=local,"dest=/c,d",Mode=max"#).expect("ok");
        assert_eq!(e.kind, "local");
        assert_eq!(e.attrs["dest"], "/c,d");
        assert_eq!(e.attrs["mode"], "max");
        assert_eq!(
            CacheEntry::parse_list("r/a,r/b").expect("ok"),
            [CacheEntry::registry("r/a"), CacheEntry::registry("r/b")]
        );
        assert_eq!(
            CacheEntry::parse_list(r#""r/a""#).expect("ok"),
            [CacheEntry::registry("r/a")]
        );
        assert!(CacheEntry::parse_list("").expect("ok").is_empty());
        assert_eq!(
            err(CacheEntry::parse("ref=r/a")),
            r#"--cache-from/--cache-to "ref=r/a": type required for "ref=r/a""#
        );
        assert_eq!(
            err(CacheEntry::parse("type=local,x")),
            r#"--cache-from/--cache-to "type=local,x": invalid value x"#
        );
        assert_eq!(
            err(CacheEntry::parse_list("r/a,")),
            r#"--cache-from/--cache-to "r/a,": EOF"#
        );
    }

    #[test]
    fn secrets_follow_buildx() {
        let s = SecretSpec::parse(r#"id=a,"src=/path/with,comma""#).expect("ok");
        assert_eq!(
            s,
            SecretSpec {
                id: "a".into(),
                src: Some("/path/with,comma".into()),
                env: None
            }
        );
        let s = SecretSpec::parse("ID=t,Source=/f").expect("ok");
        assert_eq!((s.id.as_str(), s.src.as_deref()), ("t", Some("/f")));
        let s = SecretSpec::parse("id=t,type=env").expect("ok");
        assert_eq!((s.src.as_ref(), s.env.as_ref()), (None, None));
        assert_eq!(s.resolve(|_| true), SecretFrom::Env("t".into()));
        assert_eq!(s.resolve(|_| false), SecretFrom::File("t".into()));
        let s = SecretSpec::parse("id=t,env=V,src=/f").expect("ok");
        assert_eq!(s.resolve(|_| false), SecretFrom::Env("V".into()));
        assert_eq!(
            err(SecretSpec::parse("src=/f")),
            r#"--secret "src=/f": secret missing ID"#
        );
        assert_eq!(
            err(SecretSpec::parse("id=a,type=ssh")),
            r#"--secret "id=a,type=ssh": unsupported secret type "ssh""#
        );
        assert_eq!(
            err(SecretSpec::parse("id=a,src")),
            r#"--secret "id=a,src": invalid field 'src' must be a key=value pair"#
        );
        assert_eq!(
            err(SecretSpec::parse(r#"id=a,"src"#)),
            r#"--secret "id=a,\"src": failed to parse csv secret: parse error on line 1, column 7: extraneous or missing " in quoted-field"#
        );
    }

    #[test]
    fn ssh_specs_split_paths() {
        assert_eq!(
            SshSpec::parse("default=a,,b"),
            SshSpec {
                id: "default".into(),
                paths: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(SshSpec::parse("x=").paths, Vec::<String>::new());
    }

    #[test]
    fn contexts_are_named_like_references() {
        let name = |s: &str| BuildContext::parse(&format!("{s}=x")).map(|c| c.name);
        assert_eq!(name("alpine").expect("ok"), "alpine");
        assert_eq!(name("alpine:latest").expect("ok"), "alpine");
        assert_eq!(name("alpine:3.19").expect("ok"), "alpine:3.19");
        assert_eq!(name("docker.io/library/alpine").expect("ok"), "alpine");
        assert_eq!(name("docker.io/me/app:1").expect("ok"), "me/app:1");
        assert_eq!(
            err(BuildContext::parse("Alpine=x")),
            r#"--build-context "Alpine=x": invalid context name Alpine: invalid reference format: repository name (library/Alpine) must be lowercase"#
        );
        assert_eq!(remote_name("Me/App:1"), "App");
        assert_eq!(remote_name("docker.io/Alpine"), "library/Alpine");
        assert_eq!(remote_name("ghcr.io/O/r@sha256:x"), "O/r");
        assert_eq!(remote_name("localhost:5000/A"), "A");
        assert_eq!(
            err(BuildContext::parse("a b=x")),
            r#"--build-context "a b=x": invalid context name a b: invalid reference format"#
        );
        assert_eq!(
            err(BuildContext::parse("x=")),
            r#"--build-context "x=": the value is empty"#
        );
    }
}

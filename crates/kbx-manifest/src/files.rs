//! Files mounted under `/etc/buildkit`: `buildkitd.toml` and the registry certificates it names.

use std::collections::BTreeMap;

use kbx_opts::BuildkitdConfig;

use crate::error::{Error, Problem};
use crate::syntax;

/// Where buildkitd reads its configuration inside the pod.
pub const CONFIG_DIR: &str = "/etc/buildkit";
/// The config file's path relative to [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "buildkitd.toml";

/// The files a node mounts under [`CONFIG_DIR`], keyed by path relative to it: `buildkitd.toml`
/// and `certs/<host>/<file>` (what buildx keeps in a node's `Files`).
///
/// Each directory becomes one ConfigMap (see [`render`](crate::render)).
///
/// ```
/// let mut files = kbx_manifest::ConfigFiles::new();
/// files.insert("buildkitd.toml", "debug = true\n");
/// assert!(files.has_config());
/// assert_eq!(files.get("buildkitd.toml"), Some(&b"debug = true\n"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConfigFiles(BTreeMap<String, Vec<u8>>);

/// One directory of [`ConfigFiles`]: one ConfigMap, one volume, one mount.
#[derive(Debug)]
pub(crate) struct Group<'a> {
    /// The directory relative to [`CONFIG_DIR`] (`.` for the top).
    pub(crate) dir: &'a str,
    /// The volume name and ConfigMap name suffix: `config`, `config-1`, …
    pub(crate) name: String,
    /// File name → contents.
    pub(crate) files: BTreeMap<&'a str, &'a [u8]>,
}

/// Go's `path.Base`.
fn go_base(p: &str) -> &str {
    if p.is_empty() {
        return ".";
    }
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/";
    }
    match trimmed.rfind('/') {
        Some(i) => &trimmed[i + 1..],
        None => trimmed,
    }
}

/// buildx's certificate directory name: every run of characters outside `[a-zA-Z0-9.-]`
/// becomes one `_`.
fn certs_dir(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    let mut in_run = false;
    for c in host.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    out
}

impl ConfigFiles {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a file.
    pub fn insert(&mut self, path: impl Into<String>, contents: impl Into<Vec<u8>>) {
        self.0.insert(path.into(), contents.into());
    }

    /// A file's contents.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.0.get(path).map(Vec::as_slice)
    }

    /// The files in path order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `buildkitd.toml` is among the files.
    pub fn has_config(&self) -> bool {
        self.0.contains_key(CONFIG_FILE)
    }

    /// What buildx stores for `--buildkitd-config`: every `ca` and `keypair` file of each
    /// `[registry."<host>"]` is read with `read` and stored as `certs/<host>/<file name>`
    /// (characters of `<host>` outside `[a-zA-Z0-9.-]` become `_`), and the config, rewritten to
    /// point at `/etc/buildkit/certs/<host>/<file name>`, is stored as `buildkitd.toml`.
    ///
    /// `read` does the IO, so this crate stays pure; pass `|path| std::fs::read(path)`.
    ///
    /// ```
    /// use kbx_opts::BuildkitdConfig;
    /// let config = BuildkitdConfig::parse("[registry.\"reg.io:5000\"]\nca = [\"/etc/certs/ca.pem\"]\n")?;
    /// let files = kbx_manifest::ConfigFiles::from_config(&config, |path| {
    ///     assert_eq!(path, "/etc/certs/ca.pem");
    ///     Ok(b"PEM".to_vec())
    /// })?;
    /// assert_eq!(files.get("certs/reg.io_5000/ca.pem"), Some(&b"PEM"[..]));
    /// let toml = String::from_utf8_lossy(files.get("buildkitd.toml").unwrap_or_default());
    /// assert!(toml.contains("/etc/buildkit/certs/reg.io_5000/ca.pem"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadConfigFile`] (buildx's texts) when `read` fails, and
    /// [`Error::ConfigFileClash`] when two files of one registry have the same file name.
    ///
    /// # Deviation
    /// - buildx silently keeps only one of two files with the same name; kbx reports the clash.
    /// - The config is re-serialised (as buildx does) by the `toml` crate rather than Go's
    ///   go-toml, so formatting details (quoting, blank lines) may differ; the values are the
    ///   same.
    /// - buildx truncates each file it reads at 1 MiB without a word; kbx takes what `read`
    ///   returns, and rendering rejects ConfigMaps over the API server's 1 MiB limit.
    pub fn from_config<F>(config: &BuildkitdConfig, mut read: F) -> Result<Self, Error>
    where
        F: FnMut(&str) -> std::io::Result<Vec<u8>>,
    {
        let mut table: toml::Table = config
            .text()
            .parse()
            .map_err(|source| Error::ParseConfig { source })?;
        let mut files = Self::new();
        // Relative path → the path it was read from, to detect clashes.
        let mut origins: BTreeMap<String, String> = BTreeMap::new();
        let mut add = |files: &mut Self,
                       kind: &'static str,
                       prefix: &str,
                       source_path: &str|
         -> Result<String, Error> {
            let rel = format!("{prefix}/{}", go_base(source_path));
            if let Some(first) = origins.get(&rel) {
                if first != source_path {
                    return Err(Error::ConfigFileClash {
                        path: rel,
                        first: first.clone(),
                        second: source_path.to_owned(),
                    });
                }
            } else {
                let data = read(source_path).map_err(|source| Error::ReadConfigFile {
                    kind,
                    path: source_path.to_owned(),
                    source,
                })?;
                files.insert(rel.clone(), data);
                origins.insert(rel.clone(), source_path.to_owned());
            }
            Ok(format!("{CONFIG_DIR}/{rel}"))
        };
        if let Some(toml::Value::Table(registries)) = table.get_mut("registry") {
            for (host, registry) in registries.iter_mut() {
                let toml::Value::Table(registry) = registry else {
                    continue;
                };
                let prefix = format!("certs/{}", certs_dir(host));
                if let Some(toml::Value::Array(cas)) = registry.get_mut("ca") {
                    for ca in cas.iter_mut() {
                        if let toml::Value::String(path) = ca {
                            *path = add(&mut files, "CA", &prefix, path)?;
                        }
                    }
                }
                if let Some(toml::Value::Array(pairs)) = registry.get_mut("keypair") {
                    for pair in pairs.iter_mut() {
                        let toml::Value::Table(pair) = pair else {
                            continue;
                        };
                        for (field, kind) in [("key", "key"), ("cert", "cert")] {
                            if let Some(toml::Value::String(path)) = pair.get_mut(field)
                                && !path.is_empty()
                            {
                                *path = add(&mut files, kind, &prefix, path)?;
                            }
                        }
                    }
                }
            }
        }
        let text = toml::to_string(&table).map_err(|source| Error::WriteConfig { source })?;
        files.insert(CONFIG_FILE, text);
        Ok(files)
    }

    /// Problems with the paths, in path order.
    pub(crate) fn validate(&self, errors: &mut Vec<Error>) {
        for path in self.0.keys() {
            let bad = |problem| Error::ConfigPath {
                path: path.clone(),
                problem,
            };
            let components: Vec<&str> = path.split('/').collect();
            if components
                .iter()
                .any(|c| c.is_empty() || *c == "." || *c == "..")
            {
                errors.push(bad(Problem::NotRelative));
                continue;
            }
            let name = components.last().copied().unwrap_or_default();
            if let Err(problem) = syntax::config_map_key(name) {
                errors.push(bad(problem));
            }
        }
    }

    /// The files grouped by directory: `.` first (volume `config`), then the other
    /// directories in sorted order (`config-1`, `config-2`, …).
    pub(crate) fn groups(&self) -> Vec<Group<'_>> {
        let mut by_dir: BTreeMap<&str, BTreeMap<&str, &[u8]>> = BTreeMap::new();
        for (path, data) in &self.0 {
            let (dir, name) = path.rsplit_once('/').unwrap_or((".", path.as_str()));
            by_dir.entry(dir).or_default().insert(name, data.as_slice());
        }
        let top = by_dir.remove(".");
        let mut out = Vec::with_capacity(by_dir.len() + 1);
        if let Some(files) = top {
            out.push(Group {
                dir: ".",
                name: "config".to_owned(),
                files,
            });
        }
        for (n, (dir, files)) in by_dir.into_iter().enumerate() {
            out.push(Group {
                dir,
                name: format!("config-{}", n + 1),
                files,
            });
        }
        out
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>> FromIterator<(K, V)> for ConfigFiles {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut out = Self::new();
        for (k, v) in iter {
            out.insert(k, v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_base_like_go() {
        assert_eq!(go_base("/etc/certs/ca.pem"), "ca.pem");
        assert_eq!(go_base("ca.pem"), "ca.pem");
        assert_eq!(go_base("dir/"), "dir");
        assert_eq!(go_base(""), ".");
        assert_eq!(go_base("///"), "/");
    }

    #[test]
    fn certs_dir_like_buildx() {
        assert_eq!(certs_dir("myregistry.io"), "myregistry.io");
        assert_eq!(certs_dir("reg.io:5000"), "reg.io_5000");
        assert_eq!(certs_dir("a::b//c"), "a_b_c");
        assert_eq!(certs_dir("ünï-x"), "_n_-x");
    }

    #[test]
    fn rewrites_ca_and_keypairs() {
        let config = BuildkitdConfig::parse(concat!(
            "debug = true\n",
            "[registry.\"myregistry.io\"]\n",
            "ca = [\"/etc/config/myca.pem\"]\n",
            "[[registry.\"myregistry.io\".keypair]]\n",
            "key = \"/etc/config/key.pem\"\n",
            "cert = \"/etc/config/cert.pem\"\n",
            "[registry.\"docker.io\"]\n",
            "mirrors = [\"mirror.gcr.io\"]\n",
        ))
        .unwrap();
        let mut reads = Vec::new();
        let files = ConfigFiles::from_config(&config, |p| {
            reads.push(p.to_owned());
            Ok(p.as_bytes().to_vec())
        })
        .unwrap();
        assert_eq!(
            reads,
            [
                "/etc/config/myca.pem",
                "/etc/config/key.pem",
                "/etc/config/cert.pem"
            ]
        );
        let paths: Vec<&str> = files.iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "buildkitd.toml",
                "certs/myregistry.io/cert.pem",
                "certs/myregistry.io/key.pem",
                "certs/myregistry.io/myca.pem",
            ]
        );
        let text = std::str::from_utf8(files.get("buildkitd.toml").unwrap()).unwrap();
        let parsed: toml::Table = text.parse().unwrap();
        let reg = &parsed["registry"]["myregistry.io"];
        assert_eq!(
            reg["ca"][0].as_str(),
            Some("/etc/buildkit/certs/myregistry.io/myca.pem")
        );
        assert_eq!(
            reg["keypair"][0]["key"].as_str(),
            Some("/etc/buildkit/certs/myregistry.io/key.pem")
        );
        assert_eq!(
            reg["keypair"][0]["cert"].as_str(),
            Some("/etc/buildkit/certs/myregistry.io/cert.pem")
        );
        assert_eq!(parsed["debug"].as_bool(), Some(true));
        assert_eq!(
            parsed["registry"]["docker.io"]["mirrors"][0].as_str(),
            Some("mirror.gcr.io")
        );
    }

    #[test]
    fn read_errors_and_clashes() {
        let config =
            BuildkitdConfig::parse("[registry.\"r\"]\nca = [\"/a/ca.pem\", \"/b/ca.pem\"]\n")
                .unwrap();
        let err = ConfigFiles::from_config(&config, |_| Ok(Vec::new())).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"config files "/a/ca.pem" and "/b/ca.pem" would both be stored as "certs/r/ca.pem""#
        );
        let err = ConfigFiles::from_config(&config, |_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "failed to read CA file: /a/ca.pem");
        assert!(std::error::Error::source(&err).is_some());
        let same =
            BuildkitdConfig::parse("[registry.\"r\"]\nca = [\"/a/ca.pem\", \"/a/ca.pem\"]\n")
                .unwrap();
        let files = ConfigFiles::from_config(&same, |_| Ok(b"x".to_vec())).unwrap();
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn groups_sorted_with_top_first() {
        let files: ConfigFiles = [
            ("certs/b.io/ca.pem", "b"),
            ("buildkitd.toml", "t"),
            ("certs/a.io/ca.pem", "a"),
            ("certs/a.io/key.pem", "k"),
        ]
        .into_iter()
        .collect();
        let groups = files.groups();
        let summary: Vec<(&str, &str, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.dir, g.name.as_str(), g.files.keys().copied().collect()))
            .collect();
        assert_eq!(
            summary,
            [
                (".", "config", vec!["buildkitd.toml"]),
                ("certs/a.io", "config-1", vec!["ca.pem", "key.pem"]),
                ("certs/b.io", "config-2", vec!["ca.pem"]),
            ]
        );
    }

    #[test]
    fn path_validation() {
        let files: ConfigFiles = [
            ("/abs", ""),
            ("a//b", ""),
            ("certs/../x", ""),
            ("certs/x/a b", ""),
            ("ok/fine.pem", ""),
        ]
        .into_iter()
        .collect();
        let mut errors = Vec::new();
        files.validate(&mut errors);
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 4, "{texts:?}");
        assert!(texts[0].starts_with(r#"invalid config file path "/abs": must be a relative"#));
        assert!(texts[3].contains("a valid ConfigMap key"));
    }
}

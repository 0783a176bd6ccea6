//! Image references with Docker's normalisation (`busybox` → `docker.io/library/busybox:latest`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

pub use kbx_docker_config::{DOCKER_HUB, DOCKER_HUB_API};

const MAX_NAME_LEN: usize = 255;

/// A normalised image reference: registry, repository, optional tag and optional digest.
///
/// A reference with neither tag nor digest gets the tag `latest`, as `docker pull` does.
///
/// ```
/// use kbx_registry::Reference;
///
/// let r = Reference::parse("busybox")?;
/// assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
/// assert_eq!(r.api_host(), "registry-1.docker.io");
///
/// let r = Reference::parse("localhost:5000/team/app:v1")?;
/// assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "team/app", Some("v1")));
/// # Ok::<(), kbx_registry::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// Parses and normalises a reference.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] naming the value and what is wrong with it.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(bad("the reference is empty"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|reason| bad(&reason))?;
                (r, Some(d.to_owned()))
            }
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(bad(&format!(
                        "invalid tag {tag:?}: a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'"
                    )));
                }
                (&rest[..last_slash + i], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(bad("the repository name is empty"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                (first, path)
            }
            _ => (DOCKER_HUB, name),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        if !valid_registry(registry) {
            return Err(bad(&format!("invalid registry host {registry:?}")));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        if path.is_empty() || !path.split('/').all(valid_path_component) {
            return Err(bad(&format!(
                "invalid repository name {path:?}: components are lowercase letters and digits separated by '.', '_', '__' or '-'"
            )));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        // Docker limits the normalised name, registry included (`docker.io/library/…`).
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(bad(&format!(
                "the name {registry}/… is longer than {MAX_NAME_LEN} characters"
            )));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t,
        };
        Ok(Reference {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written in the reference (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) the registry API is reached at: `registry-1.docker.io` for
    /// `docker.io`, the registry itself otherwise.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest (`sha256:<hex>`), if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same reference pinned to `digest` (the tag is kept).
    pub fn with_digest(&self, digest: &str) -> Self {
        Reference {
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// The same repository with a different tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    /// What a request for this reference's manifest names: the digest if there is one,
    /// otherwise the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

/// Checks a digest: `sha256:` + 64 or `sha512:` + 128 lowercase hex digits.
pub(crate) fn validate_digest(d: &str) -> std::result::Result<(), String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("invalid digest {d:?}: expected <algorithm>:<hex>"));
    };
    let want = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("unsupported digest algorithm {alg:?} in {d:?}")),
    };
    if hex.len() != want || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "invalid digest {d:?}: {alg} takes {want} lowercase hex digits"
        ));
    }
    Ok(())
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_registry(host: &str) -> bool {
    let (h, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            a => match a.strip_prefix(':') {
                Some(p) => return !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !h.is_empty()
        && h.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_length_limit_counts_the_normalised_name() {
        // 255 characters in all, as Docker counts them: `docker.io/library/` + 237.
        let fits = "a".repeat(255 - "docker.io/library/".len());
        let r = Reference::parse(&fits).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        // One more: refused, although the text given is only 238 characters long.
        let long = format!("{fits}a");
        let err = Reference::parse(&long).unwrap_err().to_string();
        assert!(err.contains("longer than 255 characters"), "{err}");
        assert!(Reference::parse(&format!("reg.example/{}", "b".repeat(243))).is_ok());
        assert!(Reference::parse(&format!("reg.example/{}", "b".repeat(244))).is_err());
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
            (
                "index.docker.io/moby/buildkit",
                "docker.io/moby/buildkit:latest",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("host:5000/a/b:tag", "host:5000/a/b:tag"),
            ("Registry/app", "Registry/app:latest"),
            ("[::1]:5000/app:v2", "[::1]:5000/app:v2"),
        ];
        for (input, want) in cases {
            assert_eq!(
                Reference::parse(input).unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn digests_with_and_without_tag() {
        let r = Reference::parse(&format!("host:5000/a@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.manifest_ref(), D);
        let r = Reference::parse(&format!("a:v1@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/a:v1@{D}"));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.with_tag("v2").to_string(), "docker.io/library/a:v2");
    }

    #[test]
    fn errors_name_the_value() {
        for (input, needle) in [
            ("Busybox", "must be lowercase"),
            ("host:5000/App", "must be lowercase"),
            ("a@sha256:12", "64 lowercase hex"),
            ("a@md5:12", "unsupported digest algorithm"),
            ("a:-x", "invalid tag"),
            ("a//b", "invalid repository name"),
            ("", "empty"),
            ("bad_host.:1/a", "invalid registry host"),
        ] {
            let e = Reference::parse(input).unwrap_err().to_string();
            assert!(e.contains(needle), "{input}: {e}");
            assert!(e.contains(&format!("{input:?}")), "{input}: {e}");
        }
    }
}

//! Platform specifiers (`linux/amd64`, `linux/arm/v7`, `arm64`, `local`) as containerd and buildx
//! parse and normalise them.

use std::fmt;

use crate::error::{Error, PlatformErrorKind};

pub(crate) const OS_PATTERN: &str =
    r"^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?$";
pub(crate) const COMPONENT_PATTERN: &str = "^[A-Za-z0-9_.-]+$";

/// An OCI platform. Serialises like the OCI image spec (and buildx's store).
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Platform {
    /// CPU architecture, e.g. `amd64`, `arm64`, `arm` (empty when a stored record leaves it
    /// out, as Go reads it).
    #[serde(default)]
    pub architecture: String,
    /// Operating system, e.g. `linux` (empty when a stored record leaves it out).
    #[serde(default)]
    pub os: String,
    /// OS version (Windows), empty when not given.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub os_version: String,
    /// OS features (Windows), sorted.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant, e.g. `v7` for `arm`; empty when not given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

fn is_known_os(os: &str) -> bool {
    matches!(
        os,
        "aix"
            | "android"
            | "darwin"
            | "dragonfly"
            | "freebsd"
            | "hurd"
            | "illumos"
            | "ios"
            | "js"
            | "linux"
            | "nacl"
            | "netbsd"
            | "openbsd"
            | "plan9"
            | "solaris"
            | "windows"
            | "zos"
    )
}

fn is_known_arch(arch: &str) -> bool {
    matches!(
        arch,
        "386"
            | "amd64"
            | "amd64p32"
            | "arm"
            | "armbe"
            | "arm64"
            | "arm64be"
            | "ppc64"
            | "ppc64le"
            | "loong64"
            | "mips"
            | "mipsle"
            | "mips64"
            | "mips64le"
            | "mips64p32"
            | "mips64p32le"
            | "ppc"
            | "riscv"
            | "riscv64"
            | "s390"
            | "s390x"
            | "sparc"
            | "sparc64"
            | "wasm"
    )
}

fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    if os == "macos" {
        "darwin".to_owned()
    } else {
        os
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (arch, mut variant) = (arch.to_ascii_lowercase(), variant.to_ascii_lowercase());
    let arch = match arch.as_str() {
        "i386" => {
            variant.clear();
            "386".to_owned()
        }
        "x86_64" | "x86-64" | "amd64" => {
            if variant == "v1" {
                variant.clear();
            }
            "amd64".to_owned()
        }
        "aarch64" | "arm64" => {
            if matches!(variant.as_str(), "8" | "v8" | "8.0" | "v8.0") {
                variant.clear();
            }
            "arm64".to_owned()
        }
        "armhf" => {
            variant = "v7".to_owned();
            "arm".to_owned()
        }
        "armel" => {
            variant = "v6".to_owned();
            "arm".to_owned()
        }
        "arm" => {
            match variant.as_str() {
                "" | "7" => variant = "v7".to_owned(),
                "5" | "6" | "8" => variant = format!("v{variant}"),
                _ => {}
            }
            arch
        }
        _ => arch,
    };
    (arch, variant)
}

fn is_os_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_option_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '%' | '-')
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `os[(version[+feature]*)]` (containerd's OS component grammar).
fn parse_os_component(part: &str) -> Option<(&str, &str, &str)> {
    let name_end = part.find(|c: char| !is_os_char(c)).unwrap_or(part.len());
    let (name, rest) = part.split_at(name_end);
    if name.is_empty() {
        return None;
    }
    if rest.is_empty() {
        return Some((name, "", ""));
    }
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    let version_end = inner
        .find(|c: char| !is_option_char(c))
        .unwrap_or(inner.len());
    let (version, features) = inner.split_at(version_end);
    if !features.is_empty() {
        let valid = features.starts_with('+')
            && features[1..]
                .split('+')
                .all(|f| !f.is_empty() && f.chars().all(is_option_char));
        if !valid {
            return None;
        }
    }
    Some((name, version, features))
}

impl Platform {
    /// A platform from its parts (normalised).
    pub fn new(os: &str, architecture: &str, variant: &str) -> Self {
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.to_owned(),
            ..Self::default()
        }
        .normalized()
    }

    /// The platform this program was built for, as Go names it (`linux/amd64`, `linux/arm64`, …):
    /// what buildx means by `local`.
    pub fn local() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        Self::new(os, arch, "")
    }

    /// containerd's `Normalize`: lower-case, `macos` → `darwin`, `x86_64` → `amd64`,
    /// `aarch64` → `arm64`, `arm` → `arm/v7`, `arm64/v8` → `arm64`, sorted OS features.
    pub fn normalized(mut self) -> Self {
        self.os = normalize_os(&self.os);
        let (arch, variant) = normalize_arch(&self.architecture, &self.variant);
        self.architecture = arch;
        self.variant = variant;
        self.os_features.sort();
        self.os_features.dedup();
        self
    }

    /// Parses one specifier like containerd's `platforms.Parse` followed by `Normalize`, as buildx
    /// does for `--platform`; `local` (any case) is `local`.
    pub fn parse(specifier: &str, local: &Platform) -> Result<Self, Error> {
        if specifier.eq_ignore_ascii_case("local") {
            return Ok(local.clone().normalized());
        }
        let err = |kind| Error::Platform {
            specifier: specifier.to_owned(),
            kind,
        };
        if specifier.contains('*') {
            return Err(err(PlatformErrorKind::Wildcard));
        }
        let parts: Vec<&str> = specifier.splitn(4, '/').collect();
        let mut p = Platform::default();
        for (i, part) in parts.iter().enumerate() {
            if i == 0 {
                let Some((os, version, features)) = parse_os_component(part) else {
                    return Err(err(PlatformErrorKind::InvalidOs {
                        component: (*part).to_owned(),
                    }));
                };
                p.os = normalize_os(os);
                p.os_version = percent_decode(version).ok_or_else(|| {
                    err(PlatformErrorKind::InvalidOs {
                        component: (*part).to_owned(),
                    })
                })?;
                if !features.is_empty() {
                    for f in features[1..].split('+') {
                        p.os_features.push(percent_decode(f).ok_or_else(|| {
                            err(PlatformErrorKind::InvalidOs {
                                component: (*part).to_owned(),
                            })
                        })?);
                    }
                }
            } else if part.is_empty()
                || !part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                return Err(err(PlatformErrorKind::InvalidComponent {
                    component: (*part).to_owned(),
                }));
            }
        }
        match parts.len() {
            1 => {
                if is_known_os(&p.os) {
                    p.architecture = local.architecture.clone();
                    if p.architecture == "arm" && local.variant != "v7" {
                        p.variant = local.variant.clone();
                    }
                    return Ok(p.normalized());
                }
                let (arch, variant) = normalize_arch(parts[0], "");
                if is_known_arch(&arch) {
                    p.architecture = arch;
                    p.variant = if p.architecture == "arm" && variant == "v7" {
                        String::new()
                    } else {
                        variant
                    };
                    p.os = local.os.clone();
                    p.os_version.clear();
                    p.os_features.clear();
                    return Ok(p.normalized());
                }
                Err(err(PlatformErrorKind::Unknown))
            }
            2 => {
                let (arch, variant) = normalize_arch(parts[1], "");
                p.architecture = arch;
                p.variant = variant;
                Ok(p.normalized())
            }
            3 => {
                let (arch, variant) = normalize_arch(parts[1], parts[2]);
                p.architecture = arch;
                p.variant = variant;
                Ok(p.normalized())
            }
            _ => Err(err(PlatformErrorKind::TooManyComponents)),
        }
    }

    /// Parses `--platform` values as buildx does: each value may be a comma list; every entry is
    /// parsed and normalised; order is kept (duplicates too, as buildx).
    ///
    /// ```
    /// use kbx_opts::Platform;
    /// let p = Platform::parse_list(["linux/amd64,linux/arm", "arm64"], &Platform::new("linux", "amd64", ""))?;
    /// let s: Vec<String> = p.iter().map(ToString::to_string).collect();
    /// assert_eq!(s, ["linux/amd64", "linux/arm/v7", "linux/arm64"]);
    /// # Ok::<(), kbx_opts::Error>(())
    /// ```
    pub fn parse_list<I, S>(values: I, local: &Platform) -> Result<Vec<Self>, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for value in values {
            for spec in value.as_ref().split(',') {
                out.push(Self::parse(spec, local)?);
            }
        }
        Ok(out)
    }
}

/// containerd's `FormatAll`: `os[(version+features)]/arch[/variant]`.
///
/// OS versions and features are percent-encoded like containerd does (`%`, `+`, `(`, `)`, `/`),
/// and so is every other byte the specifier grammar does not allow, so the text always parses
/// back to the same platform (containerd leaves e.g. `=` as is, which its own parser rejects).
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.os.is_empty() {
            return f.write_str("unknown");
        }
        let encode = |v: &str| {
            let mut out = String::with_capacity(v.len());
            for b in v.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        };
        let mut options = encode(&self.os_version);
        let mut features = self.os_features.clone();
        features.sort();
        for feature in &features {
            options.push('+');
            options.push_str(&encode(feature));
        }
        let os = if options.is_empty() {
            self.os.clone()
        } else {
            format!("{}({options})", self.os)
        };
        let parts: Vec<&str> = [os.as_str(), &self.architecture, &self.variant]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        f.write_str(&parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Platform {
        Platform::new("linux", "amd64", "")
    }

    fn p(s: &str) -> String {
        Platform::parse(s, &amd64())
            .map(|p| p.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn image_config_architectures_are_normalised_like_containerd() {
        let n = |a: &str, v: &str| {
            let p = Platform::new("Linux", a, v);
            (p.os, p.architecture, p.variant)
        };
        let t = |a: &str, v: &str| ("linux".to_owned(), a.to_owned(), v.to_owned());
        assert_eq!(n("aarch64", ""), t("arm64", ""));
        assert_eq!(n("arm64", "v8"), t("arm64", ""));
        assert_eq!(n("arm64", "v8.0"), t("arm64", ""));
        assert_eq!(n("x86_64", ""), t("amd64", ""));
        assert_eq!(n("arm", ""), t("arm", "v7"));
        assert_eq!(n("arm", "6"), t("arm", "v6"));
        assert_eq!(n("armhf", ""), t("arm", "v7"));
        assert_eq!(n("riscv64", ""), t("riscv64", ""));
    }

    #[test]
    fn normalises_like_buildx() {
        assert_eq!(p("linux/amd64"), "linux/amd64");
        assert_eq!(p("linux/arm64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm/v7"), "linux/arm/v7");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(p("linux/armhf"), "linux/arm/v7");
        assert_eq!(p("linux/armel"), "linux/arm/v6");
        assert_eq!(p("Linux/X86_64"), "linux/amd64");
        assert_eq!(p("linux/i386"), "linux/386");
        assert_eq!(p("linux/amd64/v2"), "linux/amd64/v2");
        assert_eq!(p("linux/amd64/v1"), "linux/amd64");
        assert_eq!(p("arm64"), "linux/arm64");
        assert_eq!(p("linux"), "linux/amd64");
        assert_eq!(p("windows"), "windows/amd64");
        assert_eq!(p("macos/arm64"), "darwin/arm64");
        assert_eq!(p("local"), "linux/amd64");
        assert_eq!(p("LOCAL"), "linux/amd64");
        assert_eq!(p("windows(10.0.17763)/amd64"), "windows(10.0.17763)/amd64");
        assert_eq!(p("linux/riscv64"), "linux/riscv64");
    }

    #[test]
    fn errors_like_containerd() {
        assert_eq!(
            p("foo"),
            r#""foo": unknown operating system or architecture: invalid argument"#
        );
        assert_eq!(
            p("linux/*"),
            r#""linux/*": wildcards not yet supported: invalid argument"#
        );
        assert_eq!(
            p("linux/amd64/v8/x"),
            r#""linux/amd64/v8/x": cannot parse platform specifier: invalid argument"#
        );
        assert_eq!(
            p("linux/am d64"),
            r#""am d64" is an invalid component of "linux/am d64": platform specifier component must match "^[A-Za-z0-9_.-]+$": invalid argument"#
        );
        assert!(p("").starts_with(r#""" is an invalid OS component of "": OSAndVersion"#));
        assert!(p("linux/").contains("is an invalid component"));
    }

    #[test]
    fn lists() {
        let all = Platform::parse_list(["linux/amd64,linux/arm64", "linux/arm"], &amd64()).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].variant, "v7");
        assert!(Platform::parse_list(["linux/amd64,"], &amd64()).is_err());
    }

    #[test]
    fn serialises_like_oci() {
        let json = serde_json::to_string(&Platform::new("linux", "arm", "v7")).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"arm","os":"linux","variant":"v7"}"#
        );
    }
}

//! The `build` flags whose values are single typed settings rather than CSV records:
//! `--add-host`, `--allow`, `--annotation`, `--shm-size` and `--ulimit`, read with buildx's
//! grammars (and the Docker CLI's, go-units' and BuildKit's beneath it) and their error texts.
//!
//! `--add-host` is a string-slice flag in buildx: each value is itself a CSV record whose
//! fields are separate entries (`--add-host a:10.0.0.1,b:10.0.0.2`); [`ExtraHost::parse_flag`]
//! does that split. `--allow` is not: `--allow network.host,security.insecure` is one
//! (unknown) entitlement, as Buildx 0.29 reads it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::csv::parse_record;
use crate::error::{BuildFlagProblem, Error, IntFunc};
use crate::platform::Platform;
use crate::scalar::parse_go_int;

fn flag_error(flag: &'static str, value: &str, problem: BuildFlagProblem) -> Error {
    Error::BuildFlag {
        flag,
        value: value.to_owned(),
        problem,
    }
}

/// The items of a string-slice flag value, as pflag reads them: one CSV record (an empty value
/// is no item).
fn slice_items(flag: &'static str, value: &str) -> Result<Vec<String>, Error> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    parse_record(value)
        .map(|fields| fields.into_iter().map(|f| f.text).collect())
        .map_err(|e| flag_error(flag, value, BuildFlagProblem::Csv(Box::new(e))))
}

/// The address of an `--add-host` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostIp {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// `host-gateway`: the address of the builder's host, which only the docker driver knows.
    Gateway,
}

/// One `--add-host` entry: `HOST=IP` or `HOST:IP` (`=` is looked for first, so
/// `h=::1` and `h:::1` are both IPv6), an IPv6 address optionally in brackets.
///
/// ```
/// use kbx_opts::{ExtraHost, HostIp};
///
/// let h = ExtraHost::parse("db:10.0.0.5")?;
/// assert_eq!(h.to_string(), "db=10.0.0.5");
/// assert_eq!(ExtraHost::parse("v6=[::1]")?.to_string(), "v6=::1");
/// assert_eq!(ExtraHost::parse("gw:host-gateway")?.ip, HostIp::Gateway);
///
/// // A string-slice flag: one value may hold several entries.
/// assert_eq!(ExtraHost::parse_flag("a:1.1.1.1,b=2.2.2.2")?.len(), 2);
///
/// let err = ExtraHost::parse("db:10.0.0.300").unwrap_err();
/// assert_eq!(err.to_string(), r#"--add-host "db:10.0.0.300": invalid host db:10.0.0.300"#);
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    /// The host name (not checked further, as in buildx).
    pub host: String,
    /// Its address.
    pub ip: HostIp,
}

impl ExtraHost {
    /// Parses one entry as buildx does before it sends `add-hosts`.
    ///
    /// # Errors
    /// [`Error::BuildFlag`] with `invalid host ENTRY` when there is no separator, the host or
    /// address is empty, or the address is not an IP address (Go's `net.ParseIP`).
    pub fn parse(item: &str) -> Result<Self, Error> {
        let bad = || {
            flag_error(
                "--add-host",
                item,
                BuildFlagProblem::InvalidHost {
                    entry: item.to_owned(),
                },
            )
        };
        let (host, ip) = item
            .split_once('=')
            .or_else(|| item.split_once(':'))
            .ok_or_else(bad)?;
        if host.is_empty() || ip.is_empty() {
            return Err(bad());
        }
        if ip == "host-gateway" {
            return Ok(ExtraHost {
                host: host.to_owned(),
                ip: HostIp::Gateway,
            });
        }
        let ip = match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
            Some(inner) if ip.len() > 2 => inner,
            _ => ip,
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        Ok(ExtraHost {
            host: host.to_owned(),
            ip: HostIp::Ip(ip),
        })
    }

    /// Parses one `--add-host` value: a CSV record of entries (pflag's string slice).
    ///
    /// # Errors
    /// A CSV error, or the first entry [`ExtraHost::parse`] refuses.
    pub fn parse_flag(value: &str) -> Result<Vec<Self>, Error> {
        slice_items("--add-host", value)?
            .iter()
            .map(|i| ExtraHost::parse(i))
            .collect()
    }
}

/// `HOST=IP`, what BuildKit's `add-hosts` attribute takes (IPv6 without brackets).
impl fmt::Display for ExtraHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            HostIp::Ip(ip) => write!(f, "{}={ip}", self.host),
            HostIp::Gateway => write!(f, "{}=host-gateway", self.host),
        }
    }
}

/// The resource names `--ulimit` knows (go-units' table; `as` is left out there too).
const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// One `--ulimit` value, `NAME=SOFT[:HARD]` (go-units' `ParseUlimit`, as Buildx 0.29 links
/// it): the hard limit defaults to the soft one, `-1` is unlimited (the word `infinity` of
/// newer go-units is refused, as 0.29.1 does).
///
/// ```
/// use kbx_opts::Ulimit;
///
/// let u = Ulimit::parse("nofile=1024:2048")?;
/// assert_eq!((u.soft, u.hard), (1024, 2048));
/// assert_eq!(Ulimit::parse("nproc=512")?.to_string(), "nproc=512:512");
/// assert_eq!(
///     Ulimit::parse("nofile=2048:1024").unwrap_err().to_string(),
///     r#"--ulimit "nofile=2048:1024": ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"#
/// );
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// The resource (`nofile`, `nproc`, …).
    pub name: String,
    /// The soft limit; `-1` is unlimited.
    pub soft: i64,
    /// The hard limit; `-1` is unlimited.
    pub hard: i64,
}

impl Ulimit {
    /// Parses one value.
    ///
    /// # Errors
    /// [`Error::BuildFlag`] with go-units' texts: `invalid ulimit argument: V` (no `=`),
    /// `invalid ulimit type: NAME`, Go's `strconv.ParseInt` errors, `too many limit value
    /// arguments - …`, and the soft-above-hard errors.
    pub fn parse(value: &str) -> Result<Self, Error> {
        let bad = |p| flag_error("--ulimit", value, p);
        let Some((name, limits)) = value.split_once('=') else {
            return Err(bad(BuildFlagProblem::UlimitArgument {
                value: value.to_owned(),
            }));
        };
        if !ULIMIT_NAMES.contains(&name) {
            return Err(bad(BuildFlagProblem::UlimitType {
                name: name.to_owned(),
            }));
        }
        let number = |s: &str| {
            parse_go_int(s, 64, IntFunc::ParseInt)
                .map_err(|e| bad(BuildFlagProblem::Value(Box::new(e))))
        };
        let parts: Vec<&str> = limits.split(':').collect();
        let (soft, hard) = match parts.as_slice() {
            [soft] => {
                let s = number(soft)?;
                (s, s)
            }
            [soft, hard] => {
                let h = number(hard)?;
                (number(soft)?, h)
            }
            _ => {
                return Err(bad(BuildFlagProblem::UlimitTooMany {
                    values: limits.to_owned(),
                }));
            }
        };
        if hard != -1 {
            if soft == -1 {
                return Err(bad(BuildFlagProblem::UlimitSoftUnlimited { hard }));
            }
            if soft > hard {
                return Err(bad(BuildFlagProblem::UlimitSoftAboveHard { soft, hard }));
            }
        }
        Ok(Ulimit {
            name: name.to_owned(),
            soft,
            hard,
        })
    }

    /// Parses every `--ulimit` value; a later value for the same resource replaces an earlier
    /// one (the Docker CLI keeps them in a map). Sorted by name.
    ///
    /// # Errors
    /// As [`Ulimit::parse`], for the first bad value.
    pub fn parse_all<S: AsRef<str>>(values: &[S]) -> Result<Vec<Self>, Error> {
        let mut by_name = BTreeMap::new();
        for v in values {
            let u = Ulimit::parse(v.as_ref())?;
            by_name.insert(u.name.clone(), u);
        }
        Ok(by_name.into_values().collect())
    }
}

/// `NAME=SOFT:HARD`, the form BuildKit's `ulimit` attribute takes.
impl fmt::Display for Ulimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{}", self.name, self.soft, self.hard)
    }
}

/// Parses a `--shm-size` value as the Docker CLI's `MemBytes` does (go-units' `RAMInBytes`):
/// a number (Go float syntax, optionally followed by one space) and an optional binary unit
/// `b`, `k`, `m`, `g`, `t`, `p`, each optionally followed by `b` or `ib`, any case.
///
/// ```
/// use kbx_opts::parse_mem_bytes;
/// assert_eq!(parse_mem_bytes("--shm-size", "64m")?, 64 << 20);
/// assert_eq!(parse_mem_bytes("--shm-size", "1.5 GiB")?, 3 << 29);
/// assert_eq!(parse_mem_bytes("--shm-size", "100")?, 100);
/// assert_eq!(
///     parse_mem_bytes("--shm-size", "2x").unwrap_err().to_string(),
///     r#"--shm-size "2x": invalid suffix: 'x'"#
/// );
/// # Ok::<(), kbx_opts::Error>(())
/// ```
///
/// # Errors
/// [`Error::BuildFlag`] for `flag` with go-units' texts (`invalid size: 'V'`,
/// `invalid suffix: 'S'`) or Go's `strconv.ParseFloat` error for the number.
pub fn parse_mem_bytes(flag: &'static str, value: &str) -> Result<i64, Error> {
    let bad = |p| flag_error(flag, value, p);
    let Some(sep) = value.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(bad(BuildFlagProblem::InvalidSize {
            value: value.to_owned(),
        }));
    };
    let (num, suffix) = if value.as_bytes()[sep] == b' ' {
        (&value[..sep], &value[sep + 1..])
    } else {
        (&value[..=sep], &value[sep + 1..])
    };
    let mut size = go_parse_float(num).map_err(bad)?;
    if size < 0.0 {
        return Err(bad(BuildFlagProblem::InvalidSize {
            value: value.to_owned(),
        }));
    }
    if !suffix.is_empty() {
        let bad_suffix = || {
            bad(BuildFlagProblem::InvalidSuffix {
                suffix: suffix.to_lowercase(),
            })
        };
        let lower = suffix.to_lowercase();
        if suffix.len() > 3 {
            return Err(bad(BuildFlagProblem::InvalidSuffix {
                suffix: suffix.to_owned(),
            }));
        }
        let mut chars = lower.bytes();
        let first = chars.next().ok_or_else(bad_suffix)?;
        if first == b'b' {
            if lower.len() > 1 {
                return Err(bad_suffix());
            }
        } else {
            let shift = match first {
                b'k' => 10,
                b'm' => 20,
                b'g' => 30,
                b't' => 40,
                b'p' => 50,
                _ => return Err(bad_suffix()),
            };
            size *= (1u64 << shift) as f64;
            let rest = &lower[1..];
            if !(rest.is_empty() || rest == "b" || rest == "ib") {
                return Err(bad_suffix());
            }
        }
    }
    // Go's float → int64 conversion on amd64: out of range gives the minimum.
    Ok(if size >= 9_223_372_036_854_775_808.0 {
        i64::MIN
    } else {
        size as i64
    })
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal syntax (`+1.5e3`, `.5`, `5.`); hexadecimal
/// floats and `inf`/`nan` words are refused with Go's syntax error (see the deviation on
/// [`BuildFlagProblem::Float`]).
fn go_parse_float(s: &str) -> Result<f64, BuildFlagProblem> {
    let syntax = || BuildFlagProblem::Float {
        value: s.to_owned(),
        range: false,
    };
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(syntax());
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !digits(e) {
            return Err(syntax());
        }
    }
    let v: f64 = s.parse().map_err(|_| syntax())?;
    if v.is_infinite() {
        return Err(BuildFlagProblem::Float {
            value: s.to_owned(),
            range: true,
        });
    }
    Ok(v)
}

/// One `--allow` entitlement, as BuildKit's `entitlements.Parse` reads it: `network.host`,
/// `security.insecure`, or `device[=NAME[,alias=ALIAS]]`.
///
/// ```
/// use kbx_opts::Entitlement;
/// assert_eq!(Entitlement::parse_flag("network.host")?, [Entitlement("network.host".into())]);
/// assert!(Entitlement::parse_flag("")?.is_empty());
/// // One value is one entitlement: no comma lists.
/// assert_eq!(
///     Entitlement::parse_flag("network.host,security.insecure").unwrap_err().to_string(),
///     r#"--allow "network.host,security.insecure": unknown entitlement network.host,security.insecure"#
/// );
/// assert_eq!(
///     Entitlement::parse("network").unwrap_err().to_string(),
///     r#"--allow "network": unknown entitlement network"#
/// );
/// # Ok::<(), kbx_opts::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entitlement(pub String);

impl Entitlement {
    /// Parses one entitlement (kept as typed: that is what goes into the solve request).
    ///
    /// # Errors
    /// [`Error::BuildFlag`] with `unknown entitlement V`, or a device configuration error
    /// (`invalid device config "F"`, `unknown device config key "K"`, a CSV error).
    pub fn parse(item: &str) -> Result<Self, Error> {
        let bad = |p| flag_error("--allow", item, p);
        match item.split_once('=') {
            Some(("device", config)) if !config.is_empty() => {
                let fields =
                    parse_record(config).map_err(|e| bad(BuildFlagProblem::Csv(Box::new(e))))?;
                for field in fields.iter().skip(1) {
                    let Some((k, _)) = field.text.split_once('=') else {
                        return Err(bad(BuildFlagProblem::DeviceConfig {
                            field: field.text.clone(),
                        }));
                    };
                    if k != "alias" {
                        return Err(bad(BuildFlagProblem::DeviceConfigKey { key: k.to_owned() }));
                    }
                }
                Ok(Entitlement(item.to_owned()))
            }
            Some(("device", _)) => Ok(Entitlement(item.to_owned())),
            _ if matches!(item, "network.host" | "security.insecure" | "device") => {
                Ok(Entitlement(item.to_owned()))
            }
            _ => Err(bad(BuildFlagProblem::UnknownEntitlement {
                value: item.to_owned(),
            })),
        }
    }

    /// Parses one `--allow` value: one entitlement, or none for an empty value (skipped, as
    /// buildx does).
    ///
    /// # Errors
    /// As [`Entitlement::parse`].
    pub fn parse_flag(value: &str) -> Result<Vec<Self>, Error> {
        if value.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![Entitlement::parse(value)?])
    }
}

impl fmt::Display for Entitlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an `--annotation` goes, BuildKit's annotation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnnotationType {
    /// The image index.
    Index,
    /// The index's descriptor (in an OCI layout's `index.json`).
    IndexDescriptor,
    /// Each image manifest.
    Manifest,
    /// Each manifest's descriptor in the index.
    ManifestDescriptor,
}

impl AnnotationType {
    /// The name in the flag and in the exporter attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationType::Index => "index",
            AnnotationType::IndexDescriptor => "index-descriptor",
            AnnotationType::Manifest => "manifest",
            AnnotationType::ManifestDescriptor => "manifest-descriptor",
        }
    }
}

/// The key of one annotation: its type (none: the exporter's default, the manifest), platform
/// and name. `Display` is the exporter attribute buildx sends: `annotation.KEY`,
/// `annotation-TYPE.KEY` or `annotation-TYPE[PLATFORM].KEY`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnnotationKey {
    /// The type, when one was given.
    pub kind: Option<AnnotationType>,
    /// Only for this platform (normalised).
    pub platform: Option<Platform>,
    /// The annotation's name.
    pub key: String,
}

impl fmt::Display for AnnotationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("annotation")?;
        if let Some(kind) = self.kind {
            write!(f, "-{}", kind.as_str())?;
        }
        if let Some(p) = &self.platform {
            write!(f, "[{p}]")?;
        }
        write!(f, ".{}", self.key)
    }
}

/// Parses one `--annotation` value as buildx does: `KEY=VALUE`, or `TYPES:KEY=VALUE` where
/// `TYPES` is a comma-separated list of `index`, `index-descriptor`, `manifest`,
/// `manifest-descriptor`, each optionally followed by `[PLATFORM]`. One entry per type; an
/// empty value gives none.
///
/// ```
/// use kbx_opts::parse_annotation;
/// let a = parse_annotation("index,manifest[linux/arm]:org.example=v")?;
/// let keys: Vec<String> = a.iter().map(|(k, _)| k.to_string()).collect();
/// assert_eq!(keys, ["annotation-index.org.example", "annotation-manifest[linux/arm/v7].org.example"]);
/// assert_eq!(parse_annotation("a=b")?[0].0.to_string(), "annotation.a");
/// assert_eq!(
///     parse_annotation("blob:a=b").unwrap_err().to_string(),
///     r#"--annotation "blob:a=b": unknown annotation type "blob""#
/// );
/// # Ok::<(), kbx_opts::Error>(())
/// ```
///
/// # Errors
/// [`Error::BuildFlag`] with buildx's texts: `invalid annotation "V", expected key=value`,
/// `invalid annotation type "T", expected type and optional platform in square brackets`,
/// `unknown annotation type "T"`, `invalid platform "P": …`.
pub fn parse_annotation(value: &str) -> Result<Vec<(AnnotationKey, String)>, Error> {
    let bad = |p| flag_error("--annotation", value, p);
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let Some((k, v)) = value.split_once('=') else {
        return Err(bad(BuildFlagProblem::AnnotationValue {
            value: value.to_owned(),
        }));
    };
    let Some((types, key)) = k.split_once(':') else {
        return Ok(vec![(
            AnnotationKey {
                kind: None,
                platform: None,
                key: k.to_owned(),
            },
            v.to_owned(),
        )]);
    };
    let mut out = Vec::new();
    for tp in types.split(',') {
        let invalid = || {
            bad(BuildFlagProblem::AnnotationType {
                value: tp.to_owned(),
            })
        };
        let (name, platform) = match tp.split_once('[') {
            Some((name, rest)) => match rest.strip_suffix(']') {
                Some(p) if !p.is_empty() && p.bytes().all(is_platform_byte) => (name, Some(p)),
                _ => return Err(invalid()),
            },
            None => (tp, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(invalid());
        }
        let kind = match name {
            "index" => AnnotationType::Index,
            "index-descriptor" => AnnotationType::IndexDescriptor,
            "manifest" => AnnotationType::Manifest,
            "manifest-descriptor" => AnnotationType::ManifestDescriptor,
            other => {
                return Err(bad(BuildFlagProblem::AnnotationUnknownType {
                    value: other.to_owned(),
                }));
            }
        };
        let platform = match platform {
            Some(p) => Some(Platform::parse(p, &Platform::local()).map_err(|e| {
                bad(BuildFlagProblem::AnnotationPlatform {
                    platform: p.to_owned(),
                    source: Box::new(e),
                })
            })?),
            None => None,
        };
        out.push((
            AnnotationKey {
                kind: Some(kind),
                platform,
                key: key.to_owned(),
            },
            v.to_owned(),
        ));
    }
    Ok(out)
}

/// Every `--annotation` value as exporter attributes (a later value for the same key wins).
///
/// # Errors
/// As [`parse_annotation`], for the first bad value.
pub fn annotation_attrs<S: AsRef<str>>(values: &[S]) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for v in values {
        for (k, v) in parse_annotation(v.as_ref())? {
            out.insert(k.to_string(), v);
        }
    }
    Ok(out)
}

fn is_platform_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: fmt::Debug>(r: Result<T, Error>) -> String {
        r.expect_err("refused").to_string()
    }

    #[test]
    fn hosts_follow_buildx() {
        let h = ExtraHost::parse("a=b:1.2.3.4");
        // `=` first: host "a", address "b:1.2.3.4" is not an IP.
        assert_eq!(
            err(h),
            r#"--add-host "a=b:1.2.3.4": invalid host a=b:1.2.3.4"#
        );
        assert_eq!(ExtraHost::parse("h:::1").unwrap().to_string(), "h=::1");
        assert_eq!(
            ExtraHost::parse("h=[2001:db8::1]").unwrap().to_string(),
            "h=2001:db8::1"
        );
        assert_eq!(
            ExtraHost::parse("h=[1.2.3.4]").unwrap().to_string(),
            "h=1.2.3.4"
        );
        for bad in [
            "",
            "h",
            "=1.2.3.4",
            "h=",
            ":1.2.3.4",
            "h=[]",
            "h=01.2.3.4",
            "h=fe80::1%eth0",
        ] {
            assert!(ExtraHost::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ExtraHost::parse_flag(r#"a=1.1.1.1,"b=::2""#).unwrap().len(),
            2
        );
        assert!(ExtraHost::parse_flag("").unwrap().is_empty());
        assert_eq!(
            err(ExtraHost::parse_flag("a=1.1.1.1,")),
            r#"--add-host "": invalid host "#
        );
    }

    #[test]
    fn ulimits_follow_go_units() {
        assert_eq!(
            err(Ulimit::parse("nofile=infinity")),
            r#"--ulimit "nofile=infinity": strconv.ParseInt: parsing "infinity": invalid syntax"#
        );
        assert_eq!(
            Ulimit::parse("core=-1:-1").unwrap().to_string(),
            "core=-1:-1"
        );
        assert_eq!(Ulimit::parse("core=5:-1").unwrap().to_string(), "core=5:-1");
        assert_eq!(
            err(Ulimit::parse("nofile")),
            r#"--ulimit "nofile": invalid ulimit argument: nofile"#
        );
        assert_eq!(
            err(Ulimit::parse("as=1")),
            r#"--ulimit "as=1": invalid ulimit type: as"#
        );
        assert_eq!(
            err(Ulimit::parse("nofile=x")),
            r#"--ulimit "nofile=x": strconv.ParseInt: parsing "x": invalid syntax"#
        );
        assert_eq!(
            err(Ulimit::parse("nofile=1:2:3")),
            r#"--ulimit "nofile=1:2:3": too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`"#
        );
        assert_eq!(
            err(Ulimit::parse("nofile=-1:5")),
            r#"--ulimit "nofile=-1:5": ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: 5"#
        );
        let all = Ulimit::parse_all(&["nproc=1", "nofile=1:2", "nproc=3"]).unwrap();
        let text: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["nofile=1:2", "nproc=3:3"]);
    }

    #[test]
    fn sizes_follow_go_units() {
        let p = |s| parse_mem_bytes("--shm-size", s);
        assert_eq!(p("0").unwrap(), 0);
        assert_eq!(p("1b").unwrap(), 1);
        assert_eq!(p("1KiB").unwrap(), 1024);
        assert_eq!(p("1kb").unwrap(), 1024);
        assert_eq!(p("2 M").unwrap(), 2 << 20);
        assert_eq!(p("1e3").unwrap(), 1000);
        assert_eq!(p("+5").unwrap(), 5);
        assert_eq!(p(".5k").unwrap(), 512);
        assert_eq!(p("5.").unwrap(), 5);
        assert_eq!(p("9999999999p").unwrap(), i64::MIN);
        assert_eq!(err(p("")), r#"--shm-size "": invalid size: ''"#);
        assert_eq!(err(p("m")), r#"--shm-size "m": invalid size: 'm'"#);
        assert_eq!(err(p("-5")), r#"--shm-size "-5": invalid size: '-5'"#);
        assert_eq!(
            err(p("5KB ")),
            r#"--shm-size "5KB ": strconv.ParseFloat: parsing "5KB": invalid syntax"#
        );
        assert_eq!(
            err(p("5 kib2")),
            r#"--shm-size "5 kib2": strconv.ParseFloat: parsing "5 kib2": invalid syntax"#
        );
        assert_eq!(
            err(p("5kibb")),
            r#"--shm-size "5kibb": invalid suffix: 'kibb'"#
        );
        assert_eq!(err(p("5bb")), r#"--shm-size "5bb": invalid suffix: 'bb'"#);
        assert_eq!(err(p("5mx")), r#"--shm-size "5mx": invalid suffix: 'mx'"#);
        assert_eq!(
            err(p("1.2.3")),
            r#"--shm-size "1.2.3": strconv.ParseFloat: parsing "1.2.3": invalid syntax"#
        );
        assert_eq!(
            err(p("1e999")),
            r#"--shm-size "1e999": strconv.ParseFloat: parsing "1e999": value out of range"#
        );
    }

    #[test]
    fn entitlements_follow_buildkit() {
        assert_eq!(Entitlement::parse_flag("network.host").unwrap().len(), 1);
        assert!(Entitlement::parse_flag("").unwrap().is_empty());
        assert!(Entitlement::parse_flag("network.host,").is_err());
        assert!(Entitlement::parse("device").is_ok());
        assert!(Entitlement::parse("device=").is_ok());
        assert!(Entitlement::parse("device=nvidia.com/gpu=all").is_ok());
        assert!(Entitlement::parse(r#"device=gpu,alias=g"#).is_ok());
        assert_eq!(
            err(Entitlement::parse("device=gpu,x")),
            r#"--allow "device=gpu,x": invalid device config "x""#
        );
        assert_eq!(
            err(Entitlement::parse("device=gpu,name=x")),
            r#"--allow "device=gpu,name=x": unknown device config key "name""#
        );
        assert_eq!(
            err(Entitlement::parse("network.host=1")),
            r#"--allow "network.host=1": unknown entitlement network.host=1"#
        );
    }

    #[test]
    fn annotations_follow_buildx() {
        let a = annotation_attrs(&[
            "a=1",
            "manifest-descriptor[linux/amd64]:b=2",
            "index-descriptor:c=x=y",
            "",
        ])
        .unwrap();
        assert_eq!(
            a,
            BTreeMap::from([
                ("annotation.a".into(), "1".into()),
                (
                    "annotation-manifest-descriptor[linux/amd64].b".into(),
                    "2".into()
                ),
                ("annotation-index-descriptor.c".into(), "x=y".into()),
            ])
        );
        assert_eq!(
            err(parse_annotation("a")),
            r#"--annotation "a": invalid annotation "a", expected key=value"#
        );
        assert_eq!(
            err(parse_annotation("Index:a=b")),
            r#"--annotation "Index:a=b": invalid annotation type "Index", expected type and optional platform in square brackets"#
        );
        assert_eq!(
            err(parse_annotation("manifest[linux/amd64:a=b")),
            r#"--annotation "manifest[linux/amd64:a=b": invalid annotation type "manifest[linux/amd64", expected type and optional platform in square brackets"#
        );
        assert_eq!(
            err(parse_annotation("manifest[]:a=b")),
            r#"--annotation "manifest[]:a=b": invalid annotation type "manifest[]", expected type and optional platform in square brackets"#
        );
        assert!(
            err(parse_annotation("manifest[linux/x/y/z]:a=b")).starts_with(
                r#"--annotation "manifest[linux/x/y/z]:a=b": invalid platform "linux/x/y/z": "#
            )
        );
    }
}

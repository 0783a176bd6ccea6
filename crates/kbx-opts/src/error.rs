//! The one error type of this crate.

use std::fmt;
use std::ops::Range;

use crate::quote::{go_quote, go_time_quote};

/// Everything that can be wrong with what a user typed.
///
/// `Display` gives buildx's exact text wherever buildx has one, so scripts and muscle memory keep
/// working; where kbx deliberately deviates (see `docs/deviations.md`) the text is kbx's own.
/// The structured fields carry the option key, the value and a byte span, and the error is a
/// [`miette::Diagnostic`] that points at the offending bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `--driver-opt` value is not a valid CSV record.
    #[error("parse error on line 1, column {column}: {kind}")]
    Csv {
        /// The whole record as typed.
        record: String,
        /// 1-based byte column, as Go's `encoding/csv` counts it.
        column: usize,
        /// What is wrong.
        kind: CsvErrorKind,
    },
    /// A `--driver-opt` value is empty (buildx reports Go's `EOF`).
    #[error("EOF")]
    EmptyRecord,
    /// A `--driver-opt` field has no `=`.
    #[error("invalid value {}, expecting k=v", go_quote(.field))]
    NotKeyValue {
        /// The whole record as typed.
        record: String,
        /// The field without `=`.
        field: String,
        /// Byte offset of the field in the record.
        offset: usize,
    },
    /// The key is not a Kubernetes driver option.
    #[error("invalid driver option {key} for driver kubernetes")]
    UnknownOption {
        /// The key as typed (may be empty or contain spaces).
        key: String,
    },
    /// An integer did not parse (Go `strconv.ParseInt` / `strconv.Atoi` text).
    #[error("strconv.{func}: parsing {}: {kind}", go_quote(.value))]
    Int {
        /// The Go function whose error text is reproduced.
        func: IntFunc,
        /// The value as typed.
        value: String,
        /// Syntax or range.
        kind: IntErrorKind,
    },
    /// A boolean did not parse (Go `strconv.ParseBool` text).
    #[error("strconv.ParseBool: parsing {}: invalid syntax", go_quote(.value))]
    Bool {
        /// The value as typed.
        value: String,
    },
    /// A Go duration did not parse (Go `time.ParseDuration` text).
    #[error("{kind}")]
    Duration {
        /// The value as typed.
        value: String,
        /// What is wrong, with Go's wording.
        kind: DurationErrorKind,
    },
    /// A Kubernetes quantity did not parse (apimachinery's text).
    #[error("{kind}")]
    Quantity {
        /// The value as typed.
        value: String,
        /// What is wrong, with apimachinery's wording.
        kind: QuantityErrorKind,
    },
    /// An item of a `k=v` list (nodeselector, annotations, labels) is not exactly one `k=v` pair.
    #[error("invalid key-value pair: {item}")]
    KeyValuePair {
        /// The item as typed (empty for an empty item).
        item: String,
        /// Byte range of the item in the option value.
        span: Range<usize>,
    },
    /// A toleration piece is not a `k=v` pair, or a toleration is empty.
    ///
    /// # Deviation
    /// buildx silently drops such pieces and sends empty tolerations to the API server.
    #[error("invalid toleration {}: {problem}", go_quote(.value))]
    Toleration {
        /// The whole `tolerations` value.
        value: String,
        /// What is wrong with which piece.
        problem: TolerationProblem,
        /// Byte range of the piece in the value.
        span: Range<usize>,
    },
    /// `loadbalance` is not one of the strategies.
    #[error("invalid loadbalance {}", go_quote(.value))]
    LoadBalance {
        /// The value as typed.
        value: String,
    },
    /// `env.` without a variable name.
    #[error("invalid env option {}, expecting env.FOO=bar", go_quote(.key))]
    EnvName {
        /// The key as typed.
        key: String,
    },
    /// `replicas` is negative.
    ///
    /// # Deviation
    /// buildx accepts it and the API server rejects the Deployment later.
    #[error("invalid replicas {}: must not be negative", go_quote(.value))]
    NegativeReplicas {
        /// The value as typed.
        value: String,
    },
    /// `timeout` is zero or negative.
    ///
    /// # Deviation
    /// buildx accepts it and then does not wait for the pods at all.
    #[error("invalid timeout {}: must be greater than zero", go_quote(.value))]
    NonPositiveTimeout {
        /// The value as typed.
        value: String,
    },
    /// A platform specifier did not parse (containerd's text).
    #[error("{}", platform_message(.specifier, .kind))]
    Platform {
        /// The specifier as typed.
        specifier: String,
        /// What is wrong.
        kind: PlatformErrorKind,
    },
    /// `--buildkitd-flags` could not be split into words.
    #[error("failed to parse buildkit flags: {reason}")]
    BuildkitdFlags {
        /// Why, e.g. `EOF found when expecting closing quote`.
        reason: String,
    },
    /// The buildkitd TOML configuration is invalid.
    #[error("{message}")]
    BuildkitdConfig {
        /// The TOML parser's or type checker's message.
        message: String,
    },
    /// A builder endpoint string is not a `kubernetes://` URL of the expected form.
    #[error("invalid kubernetes endpoint {}: {reason}", go_quote(.endpoint))]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
    /// An error about one driver option; `Display` is the inner error's text with buildx's
    /// per-option prefix (for example `cannot parse timeout: `).
    #[error("{}{inner}", option_prefix(.key, .inner))]
    InOption {
        /// The option key.
        key: String,
        /// The option value.
        value: String,
        /// The `--driver-opt` record the option came from.
        record: String,
        /// Byte range of the value (or of the bad part of it) in `record`.
        span: Range<usize>,
        /// What is wrong with the value.
        inner: Box<Error>,
    },
    /// A `build` flag value (`--output`, `--cache-from`, `--cache-to`, `--secret`,
    /// `--build-context`) is wrong. `Display` is the flag and the value, then buildx's text.
    ///
    /// # Deviation
    /// buildx prints only its text; kbx names the flag and the value in front of it.
    #[error("{flag} {value:?}: {problem}")]
    BuildFlag {
        /// The flag, e.g. `--output`.
        flag: &'static str,
        /// The whole value as typed.
        value: String,
        /// What is wrong, with buildx's wording.
        problem: BuildFlagProblem,
    },
    /// Several options are wrong; all are reported in input order.
    ///
    /// # Deviation
    /// buildx stops at the first wrong option it happens to visit (Go map order, so at random).
    #[error("{}", display_several(.0))]
    Several(Vec<Error>),
}

fn option_prefix(key: &str, inner: &Error) -> &'static str {
    if !matches!(inner, Error::Duration { .. } | Error::KeyValuePair { .. }) {
        return "";
    }
    match key {
        "timeout" => "cannot parse timeout: ",
        "nodeselector" => "cannot parse node selector: ",
        "annotations" => "cannot parse annotations: ",
        "labels" => "cannot parse labels: ",
        _ => "",
    }
}

fn platform_message(specifier: &str, kind: &PlatformErrorKind) -> String {
    let spec = go_quote(specifier);
    match kind {
        PlatformErrorKind::Wildcard => {
            format!("{spec}: wildcards not yet supported: invalid argument")
        }
        PlatformErrorKind::InvalidOs { component } => format!(
            "{} is an invalid OS component of {spec}: OSAndVersion specifier component must match {}: invalid argument",
            go_quote(component),
            go_quote(crate::platform::OS_PATTERN)
        ),
        PlatformErrorKind::InvalidComponent { component } => format!(
            "{} is an invalid component of {spec}: platform specifier component must match {}: invalid argument",
            go_quote(component),
            go_quote(crate::platform::COMPONENT_PATTERN)
        ),
        PlatformErrorKind::Unknown => {
            format!("{spec}: unknown operating system or architecture: invalid argument")
        }
        PlatformErrorKind::TooManyComponents => {
            format!("{spec}: cannot parse platform specifier: invalid argument")
        }
    }
}

fn display_several(errors: &[Error]) -> String {
    let mut out = format!("{} driver options are invalid:", errors.len());
    for e in errors {
        out.push_str("\n  - ");
        out.push_str(&e.to_string());
    }
    out
}

/// Which Go integer parser's error text is reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntFunc {
    /// `strconv.ParseInt` (used for `replicas`).
    ParseInt,
    /// `strconv.Atoi` (used for `tolerationSeconds`).
    Atoi,
}

impl fmt::Display for IntFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IntFunc::ParseInt => "ParseInt",
            IntFunc::Atoi => "Atoi",
        })
    }
}

/// Why an integer did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntErrorKind {
    /// Not an optionally signed run of decimal digits.
    Syntax,
    /// Outside the type's range.
    Range,
}

impl fmt::Display for IntErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IntErrorKind::Syntax => "invalid syntax",
            IntErrorKind::Range => "value out of range",
        })
    }
}

/// Why a CSV record did not parse (Go `encoding/csv` texts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvErrorKind {
    /// A `"` inside an unquoted field.
    BareQuote,
    /// A quoted field that is not closed, or text after a closing quote.
    Quote,
}

impl fmt::Display for CsvErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CsvErrorKind::BareQuote => "bare \" in non-quoted-field",
            CsvErrorKind::Quote => "extraneous or missing \" in quoted-field",
        })
    }
}

/// Why a Go duration did not parse. `Display` is Go's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationErrorKind {
    /// Not of the form `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or out of range.
    Invalid {
        /// The whole input.
        input: String,
    },
    /// A number without a unit.
    MissingUnit {
        /// The whole input.
        input: String,
    },
    /// A unit other than `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`.
    UnknownUnit {
        /// The unit as typed.
        unit: String,
        /// The whole input.
        input: String,
    },
}

impl fmt::Display for DurationErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationErrorKind::Invalid { input } => {
                write!(f, "time: invalid duration {}", go_time_quote(input))
            }
            DurationErrorKind::MissingUnit { input } => {
                write!(f, "time: missing unit in duration {}", go_time_quote(input))
            }
            DurationErrorKind::UnknownUnit { unit, input } => write!(
                f,
                "time: unknown unit {} in duration {}",
                go_time_quote(unit),
                go_time_quote(input)
            ),
        }
    }
}

/// Why a Kubernetes quantity did not parse. `Display` is apimachinery's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityErrorKind {
    /// The text does not have the shape of a quantity.
    Format,
    /// The number part is not a number.
    Numeric,
    /// The suffix is not a known SI, binary or exponent suffix.
    Suffix,
}

impl fmt::Display for QuantityErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuantityErrorKind::Format => {
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
            }
            QuantityErrorKind::Numeric => "unable to parse numeric part of quantity",
            QuantityErrorKind::Suffix => "unable to parse quantity's suffix",
        })
    }
}

/// What is wrong with a toleration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TolerationProblem {
    /// A piece is not exactly one `k=v` pair.
    NotKeyValue {
        /// The piece as typed.
        piece: String,
    },
    /// A piece names a field that tolerations do not have.
    UnknownField {
        /// The field name as typed.
        field: String,
    },
    /// A toleration between `;` separators is empty.
    Empty {
        /// 1-based position of the toleration in the list.
        index: usize,
    },
}

impl fmt::Display for TolerationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TolerationProblem::NotKeyValue { piece } => {
                write!(f, "{} is not a key=value pair", go_quote(piece))
            }
            TolerationProblem::UnknownField { field } => write!(
                f,
                "unknown field {}, expected key, operator, value, effect or tolerationSeconds",
                go_quote(field)
            ),
            TolerationProblem::Empty { index } => write!(f, "toleration #{index} is empty"),
        }
    }
}

/// Why a platform specifier did not parse. `Display` is containerd's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformErrorKind {
    /// `*` is not supported.
    Wildcard,
    /// The OS component has invalid characters.
    InvalidOs {
        /// The component.
        component: String,
    },
    /// A later component has invalid characters.
    InvalidComponent {
        /// The component.
        component: String,
    },
    /// A single component that is neither a known OS nor a known architecture.
    Unknown,
    /// More than three components.
    TooManyComponents,
}

impl fmt::Display for PlatformErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The specifier is not stored here; `Error::Platform` renders the full text.
        f.write_str(match self {
            PlatformErrorKind::Wildcard => "wildcards not yet supported",
            PlatformErrorKind::InvalidOs { .. } => "invalid OS component",
            PlatformErrorKind::InvalidComponent { .. } => "invalid component",
            PlatformErrorKind::Unknown => "unknown operating system or architecture",
            PlatformErrorKind::TooManyComponents => "cannot parse platform specifier",
        })
    }
}

impl Error {
    /// The driver option key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::InOption { key, .. } | Error::UnknownOption { key } => Some(key),
            Error::EnvName { key } => Some(key),
            _ => None,
        }
    }

    /// All errors, flattening [`Error::Several`].
    pub fn iter(&self) -> impl Iterator<Item = &Error> {
        match self {
            Error::Several(all) => all.iter().collect::<Vec<_>>().into_iter(),
            one => vec![one].into_iter(),
        }
    }

    /// A sentence saying what was expected, for help texts.
    pub fn expected(&self) -> Option<&'static str> {
        Some(match self {
            Error::InOption { inner, .. } => return inner.expected(),
            Error::Csv { .. } | Error::EmptyRecord => {
                "one CSV record of key=value fields; quote a whole field to keep commas in it: '\"nodeselector=a=b,c=d\"'"
            }
            Error::NotKeyValue { .. } => "key=value",
            Error::UnknownOption { .. } => {
                "one of image, namespace, context, replicas, requests.cpu, requests.memory, requests.ephemeral-storage, limits.cpu, limits.memory, limits.ephemeral-storage, persistent-volume-claim.requests.storage, buildkit-root-volume-memory, rootless, schedulername, serviceaccount, nodeselector, annotations, labels, tolerations, loadbalance, qemu.install, qemu.image, default-load, timeout, env.<NAME>"
            }
            Error::Int { .. } | Error::NegativeReplicas { .. } => "a whole number such as 1 or 3",
            Error::Bool { .. } => "true or false (also 1, t, T, TRUE, True, 0, f, F, FALSE, False)",
            Error::Duration { .. } | Error::NonPositiveTimeout { .. } => {
                "a positive duration with a unit, such as 300s, 1m30s, 1.5h or 500ms"
            }
            Error::Quantity { .. } => "a Kubernetes quantity such as 500m, 2, 1Gi, 512Mi or 1e3",
            Error::KeyValuePair { .. } => "comma-separated key=value pairs, such as a=b,c=d",
            Error::Toleration { .. } => {
                "';'-separated tolerations of comma-separated key=..,operator=..,value=..,effect=..,tolerationSeconds=.. pairs"
            }
            Error::LoadBalance { .. } => "sticky, random or rendezvous",
            Error::EnvName { .. } => "env.NAME=value",
            Error::Platform { .. } => {
                "os/arch[/variant] such as linux/amd64 or linux/arm/v7, or local"
            }
            Error::BuildkitdFlags { .. } => "shell-like words, with balanced quotes",
            Error::BuildkitdConfig { .. } => "a valid buildkitd.toml",
            Error::Endpoint { .. } => "kubernetes:///<builder>?deployment=<node>&kubeconfig=<path>",
            Error::BuildFlag { flag, problem, .. } => return problem.expected(flag),
            Error::Several(_) => return None,
        })
    }

    fn source_and_span(&self) -> Option<(&str, Range<usize>)> {
        match self {
            Error::InOption { record, span, .. } => Some((record, span.clone())),
            Error::Csv { record, column, .. } => {
                let start = column.saturating_sub(1).min(record.len());
                let end = (start + 1).min(record.len());
                Some((record, start..end))
            }
            Error::NotKeyValue {
                record,
                field,
                offset,
            } => Some((record, *offset..offset + field.len())),
            _ => None,
        }
    }
}

impl miette::Diagnostic for Error {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let code = match self {
            Error::Csv { .. } | Error::EmptyRecord | Error::NotKeyValue { .. } => {
                "kbx::driver_opt::csv"
            }
            Error::UnknownOption { .. } => "kbx::driver_opt::unknown",
            Error::Several(_) => "kbx::driver_opt::several",
            Error::Platform { .. } => "kbx::platform",
            Error::BuildkitdFlags { .. } | Error::BuildkitdConfig { .. } => "kbx::buildkitd",
            Error::Endpoint { .. } => "kbx::endpoint",
            Error::BuildFlag { .. } => "kbx::build_flag",
            _ => "kbx::driver_opt::value",
        };
        Some(Box::new(code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        let expected = self.expected()?;
        Some(match self.key() {
            Some(key) => Box::new(format!("option {key:?} expects {expected}")),
            None => Box::new(format!("expected {expected}")),
        })
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        match self {
            Error::InOption { record, .. }
            | Error::Csv { record, .. }
            | Error::NotKeyValue { record, .. } => Some(record as &dyn miette::SourceCode),
            _ => None,
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let (_, span) = self.source_and_span()?;
        Some(Box::new(std::iter::once(
            miette::LabeledSpan::new_with_span(Some("here".to_owned()), span),
        )))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        match self {
            Error::Several(all) => Some(Box::new(all.iter().map(|e| e as &dyn miette::Diagnostic))),
            _ => None,
        }
    }
}

/// What is wrong with a `build` flag value ([`Error::BuildFlag`]); `Display` is buildx's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildFlagProblem {
    /// The value is not a valid CSV record.
    #[error("{0}")]
    Csv(Box<Error>),
    /// A `--secret` value is not a valid CSV record.
    #[error("failed to parse csv secret: {0}")]
    SecretCsv(Box<Error>),
    /// A field of `--output` or `--cache-*` has no `=`.
    #[error("invalid value {field}")]
    InvalidValue {
        /// The field as typed.
        field: String,
    },
    /// `--output` without `type=`.
    #[error("type is required for output")]
    OutputTypeRequired,
    /// `--cache-*` with `key=value` fields but no `type=`.
    #[error("type required for {}", go_quote(.spec))]
    CacheTypeRequired {
        /// The whole value.
        spec: String,
    },
    /// A `--secret` field has no `=`.
    #[error("invalid field '{field}' must be a key=value pair")]
    SecretField {
        /// The field as typed.
        field: String,
    },
    /// `--secret type=` is neither `file` nor `env`.
    #[error("unsupported secret type {}", go_quote(.value))]
    SecretType {
        /// The type as typed.
        value: String,
    },
    /// A `--secret` key is not `id`, `type`, `src`, `source` or `env`.
    #[error("unexpected key '{key}' in '{field}'")]
    SecretKey {
        /// The key, lowercased.
        key: String,
        /// The field as typed.
        field: String,
    },
    /// `--secret` without `id=`.
    #[error("secret missing ID")]
    SecretMissingId,
    /// `--build-context` without `=`.
    #[error("invalid context value: {value}, expected key=value")]
    ContextValue {
        /// The value as typed.
        value: String,
    },
    /// A `--build-context` name is not a valid image reference.
    #[error("invalid context name {name}: {reason}")]
    ContextName {
        /// The name as typed.
        name: String,
        /// Why.
        reason: String,
    },
    /// A `--build-context` value cannot be used.
    #[error("{reason}")]
    ContextSource {
        /// Why.
        reason: String,
    },
    /// A part of the value is wrong, as the inner error says (e.g. a Go `strconv` error).
    #[error("{0}")]
    Value(Box<Error>),
    /// An `--add-host` entry is not `HOST=IP` or `HOST:IP` with a valid IP address.
    #[error("invalid host {entry}")]
    InvalidHost {
        /// The entry as typed.
        entry: String,
    },
    /// An `--allow` value is not an entitlement BuildKit knows.
    #[error("unknown entitlement {value}")]
    UnknownEntitlement {
        /// The value as typed.
        value: String,
    },
    /// A field of an `--allow device=…` configuration has no `=`.
    #[error("invalid device config {}", go_quote(.field))]
    DeviceConfig {
        /// The field as typed.
        field: String,
    },
    /// A key of an `--allow device=…` configuration is not `alias`.
    #[error("unknown device config key {}", go_quote(.key))]
    DeviceConfigKey {
        /// The key as typed.
        key: String,
    },
    /// An `--annotation` without `=`.
    #[error("invalid annotation {}, expected key=value", go_quote(.value))]
    AnnotationValue {
        /// The value as typed.
        value: String,
    },
    /// An `--annotation` type that is not `type` or `type[platform]`.
    #[error(
        "invalid annotation type {}, expected type and optional platform in square brackets",
        go_quote(.value)
    )]
    AnnotationType {
        /// The type (with its platform) as typed.
        value: String,
    },
    /// An `--annotation` type that BuildKit does not have.
    #[error("unknown annotation type {}", go_quote(.value))]
    AnnotationUnknownType {
        /// The type as typed.
        value: String,
    },
    /// An `--annotation` platform that does not parse.
    #[error("invalid platform {}: {source}", go_quote(.platform))]
    AnnotationPlatform {
        /// The platform as typed.
        platform: String,
        /// containerd's error.
        source: Box<Error>,
    },
    /// A `--ulimit` value without `=`.
    #[error("invalid ulimit argument: {value}")]
    UlimitArgument {
        /// The value as typed.
        value: String,
    },
    /// A `--ulimit` resource go-units does not know.
    #[error("invalid ulimit type: {name}")]
    UlimitType {
        /// The name as typed.
        name: String,
    },
    /// A `--ulimit` with more than `soft:hard`.
    #[error("too many limit value arguments - {values}, can only have up to two, `soft[:hard]`")]
    UlimitTooMany {
        /// The limits as typed.
        values: String,
    },
    /// A `--ulimit` with an unlimited soft and a limited hard limit.
    #[error(
        "ulimit soft limit must be less than or equal to hard limit: soft: -1 (unlimited), hard: {hard}"
    )]
    UlimitSoftUnlimited {
        /// The hard limit.
        hard: i64,
    },
    /// A `--ulimit` whose soft limit is above its hard limit.
    #[error("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")]
    UlimitSoftAboveHard {
        /// The soft limit.
        soft: i64,
        /// The hard limit.
        hard: i64,
    },
    /// A size (`--shm-size`) that does not have the shape of one, or is negative.
    #[error("invalid size: '{value}'")]
    InvalidSize {
        /// The whole value.
        value: String,
    },
    /// A size whose unit is not `b`, `k`, `m`, `g`, `t`, `p` (+ `b` / `ib`).
    #[error("invalid suffix: '{suffix}'")]
    InvalidSuffix {
        /// The unit, lowercased when it is at most three characters long (as go-units).
        suffix: String,
    },
    /// The number of a size is not a Go float (`strconv.ParseFloat`).
    ///
    /// # Deviation
    /// (C12) Go also accepts hexadecimal floats (`0x1p10`) here; kbx refuses them with Go's
    /// syntax error.
    #[error(
        "strconv.ParseFloat: parsing {}: {}",
        go_quote(.value),
        if *.range { "value out of range" } else { "invalid syntax" }
    )]
    Float {
        /// The number as typed.
        value: String,
        /// Out of range rather than bad syntax.
        range: bool,
    },
}

impl BuildFlagProblem {
    /// A sentence saying what `flag` expects, for help texts.
    fn expected(&self, flag: &str) -> Option<&'static str> {
        Some(match (self, flag) {
            (BuildFlagProblem::ContextValue { .. } | BuildFlagProblem::ContextName { .. }, _) => {
                "name=value, the name a lowercase image reference such as alpine or docker.io/library/alpine:3"
            }
            (BuildFlagProblem::ContextSource { .. }, _) => {
                "a directory, docker-image://REF, target:STAGE, an http(s) or Git URL, or oci-layout://DIR[:TAG][@DIGEST]"
            }
            (
                BuildFlagProblem::SecretCsv(_)
                | BuildFlagProblem::SecretField { .. }
                | BuildFlagProblem::SecretType { .. }
                | BuildFlagProblem::SecretKey { .. }
                | BuildFlagProblem::SecretMissingId,
                _,
            ) => {
                "id=ID[,src=PATH|,env=VAR][,type=file|env]; quote a whole field to keep commas in it"
            }
            (_, "--add-host") => {
                "HOST:IP or HOST=IP, the IP an IPv4 or IPv6 address (or host-gateway)"
            }
            (_, "--allow") => {
                "one entitlement per flag: network.host, security.insecure or device[=NAME[,alias=ALIAS]]"
            }
            (_, "--annotation") => {
                "KEY=VALUE or TYPE[,TYPE…]:KEY=VALUE, TYPE one of index, index-descriptor, manifest, manifest-descriptor, optionally with [PLATFORM]"
            }
            (_, "--ulimit") => {
                "NAME=SOFT[:HARD] (limits are integers, -1 for unlimited), NAME one of core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack"
            }
            (_, "--shm-size") => "a size in bytes, optionally with a unit: 64m, 1.5GiB, 512k",
            (_, "--output") => {
                "type=TYPE[,dest=PATH][,key=value…], a directory, or -; quote a whole field to keep commas in it: 'type=image,\"name=a,b\"'"
            }
            _ => {
                "type=TYPE[,key=value…] or a registry reference; quote a whole field to keep commas in it"
            }
        })
    }
}

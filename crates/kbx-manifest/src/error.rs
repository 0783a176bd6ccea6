//! The one error type of this crate.

use std::fmt;

/// Everything that can stop a node from rendering.
///
/// Validation errors ([`Error::is_validation`]) describe what the Kubernetes API server would
/// reject, found before any API call; the reserved-key errors keep buildx's exact texts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A custom label uses the key buildx reserves for the workload's selector.
    #[error("the label {key:?} is reserved and cannot be customized")]
    ReservedLabel {
        /// The key (`app`).
        key: String,
    },
    /// A custom annotation uses the key buildx reserves for the node's platforms.
    #[error("the annotation {key:?} is reserved and cannot be customized")]
    ReservedAnnotation {
        /// The key (`buildx.docker.com/platform`).
        key: String,
    },
    /// An object or reference name is not one Kubernetes accepts.
    #[error("invalid {what} name {name:?}: {problem}")]
    Name {
        /// Which name (`Deployment`, `StatefulSet`, `ConfigMap`, `namespace`, …).
        what: &'static str,
        /// The name.
        name: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// A label, annotation or node selector key is not a Kubernetes qualified name.
    #[error("invalid {what} key {key:?}: {problem}")]
    Key {
        /// `label`, `annotation` or `node selector`.
        what: &'static str,
        /// The key.
        key: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// A label or node selector value is not a valid Kubernetes label value.
    #[error("invalid {what} value {value:?} for key {key:?}: {problem}")]
    Value {
        /// `label` or `node selector`.
        what: &'static str,
        /// The key the value belongs to.
        key: String,
        /// The value.
        value: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The annotations together are larger than the API server allows.
    #[error("annotations are too long: {size} bytes, the limit is {limit} bytes")]
    AnnotationsTooLarge {
        /// Total bytes of keys and values.
        size: usize,
        /// The API server's limit (256 KiB).
        limit: usize,
    },
    /// A toleration the API server would reject.
    #[error("invalid toleration #{index} ({toleration}): {problem}")]
    Toleration {
        /// 1-based position in the `tolerations` option.
        index: usize,
        /// The toleration as `k=v` pieces.
        toleration: String,
        /// What is wrong with it.
        problem: TolerationProblem,
    },
    /// A quantity the API server would reject.
    #[error("invalid {option} {value:?}: {problem}")]
    Quantity {
        /// The driver option (`requests.cpu`, `buildkit-root-volume-memory`, …).
        option: &'static str,
        /// The quantity as typed.
        value: String,
        /// What is wrong with it.
        problem: QuantityProblem,
    },
    /// `buildkit-root-volume-memory` and `persistent-volume-claim.requests.storage` both claim
    /// BuildKit's state directory.
    #[error(
        "buildkit-root-volume-memory cannot be combined with persistent-volume-claim.requests.storage: both would hold BuildKit's state directory {path}"
    )]
    MemoryWithClaim {
        /// The state directory both volumes would be mounted at.
        path: &'static str,
    },
    /// A negative replica count.
    #[error("invalid replicas {value}: must not be negative")]
    Replicas {
        /// The count.
        value: i32,
    },
    /// An `env.<NAME>` name the API server would reject.
    #[error(
        "invalid env name {name:?}: must be non-empty printable ASCII characters other than '='"
    )]
    EnvName {
        /// The name.
        name: String,
    },
    /// A container image reference that is empty or has surrounding whitespace.
    #[error("invalid {what} {image:?}: must be non-empty without leading or trailing whitespace")]
    Image {
        /// `image` or `qemu.image`.
        what: &'static str,
        /// The reference.
        image: String,
    },
    /// A config file path that cannot be mounted under `/etc/buildkit`.
    #[error("invalid config file path {path:?}: {problem}")]
    ConfigPath {
        /// The path relative to `/etc/buildkit`.
        path: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// Two certificate files of one registry would land at the same path.
    #[error("config files {first:?} and {second:?} would both be stored as {path:?}")]
    ConfigFileClash {
        /// The relative path both map to.
        path: String,
        /// The first file as named in the config.
        first: String,
        /// The second file as named in the config.
        second: String,
    },
    /// A ConfigMap would be larger than the API server allows.
    #[error("ConfigMap {name:?} is too long: {size} bytes, the limit is {limit} bytes")]
    ConfigMapTooLarge {
        /// The ConfigMap's name.
        name: String,
        /// Total bytes of its keys and values.
        size: usize,
        /// The API server's limit (1 MiB).
        limit: usize,
    },
    /// A file named by the buildkitd config could not be read (buildx's texts).
    #[error("failed to read {kind} file: {path}")]
    ReadConfigFile {
        /// `CA`, `key` or `cert`.
        kind: &'static str,
        /// The path as written in the config.
        path: String,
        /// Why the read failed.
        #[source]
        source: std::io::Error,
    },
    /// The buildkitd config could not be parsed as a TOML table.
    #[error("failed to parse buildkitd config")]
    ParseConfig {
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// The rewritten buildkitd config could not be written as TOML.
    #[error("failed to write buildkitd config")]
    WriteConfig {
        /// The TOML error.
        #[source]
        source: toml::ser::Error,
    },
    /// An object could not be written as YAML.
    #[error("failed to write {what} as YAML")]
    Yaml {
        /// The object (`ConfigMap "x-config"`, `Deployment "x"`).
        what: String,
        /// The serialiser's error.
        #[source]
        source: serde_saphyr::ser::Error,
    },
    /// Several validation errors, in a fixed order (names, metadata, pod spec, resources, files).
    #[error("{}", join_lines(.0))]
    Several(Vec<Error>),
}

fn join_lines(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// Whether this is a local validation error (something the API server would reject), as
    /// opposed to a failure to read or write files.
    pub fn is_validation(&self) -> bool {
        match self {
            Error::ReadConfigFile { .. }
            | Error::ParseConfig { .. }
            | Error::WriteConfig { .. }
            | Error::Yaml { .. } => false,
            Error::Several(all) => all.iter().all(Error::is_validation),
            _ => true,
        }
    }

    /// The single errors: the list for [`Error::Several`], else this error alone.
    pub fn errors(&self) -> &[Error] {
        match self {
            Error::Several(all) => all,
            one => std::slice::from_ref(one),
        }
    }

    /// One error for a non-empty list; `None` for an empty one.
    pub(crate) fn from_list(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(Error::Several(errors)),
        }
    }
}

/// Why a name, key, value or path is not accepted. The texts follow the API server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Empty where a value is required.
    Empty,
    /// Longer than allowed.
    TooLong {
        /// The maximum length in bytes.
        max: usize,
    },
    /// Not a lowercase RFC 1123 subdomain.
    Dns1123Subdomain,
    /// Not a lowercase RFC 1123 label.
    Dns1123Label,
    /// The part before `/` of a qualified name is not a DNS subdomain.
    Prefix,
    /// The name part of a qualified name (after any `/`) has invalid characters.
    QualifiedName,
    /// Not a valid label value.
    LabelValue,
    /// Not a valid ConfigMap key.
    ConfigMapKey,
    /// A path that is absolute or has empty, `.` or `..` components.
    NotRelative,
}

const ALNUM_SYNTAX: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("must not be empty"),
            Problem::TooLong { max } => write!(f, "must be no more than {max} characters"),
            Problem::Dns1123Subdomain => f.write_str(
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            ),
            Problem::Dns1123Label => f.write_str(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            ),
            Problem::Prefix => f.write_str(
                "the prefix before '/' must be a lowercase RFC 1123 subdomain of at most 253 characters",
            ),
            Problem::QualifiedName => write!(
                f,
                "the name part (after any '/') must be 1 to 63 characters, {ALNUM_SYNTAX}"
            ),
            Problem::LabelValue => write!(f, "a valid label value must be empty or {ALNUM_SYNTAX}"),
            Problem::ConfigMapKey => f.write_str(
                "a valid ConfigMap key must consist of alphanumeric characters, '-', '_' or '.', and must not be '.' or '..' or start with '..'",
            ),
            Problem::NotRelative => f.write_str(
                "must be a relative path without empty, '.' or '..' components",
            ),
        }
    }
}

/// Why a toleration would be rejected by the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TolerationProblem {
    /// `operator` is neither `Equal` nor `Exists`.
    Operator {
        /// The operator as typed.
        operator: String,
    },
    /// `effect` is not one of the three Kubernetes taint effects.
    Effect {
        /// The effect as typed.
        effect: String,
    },
    /// An empty key matches every taint, which needs `operator=Exists`.
    EmptyKeyNeedsExists,
    /// `operator=Exists` matches any value, so `value` must be empty.
    ValueWithExists,
    /// `tolerationSeconds` only applies to `NoExecute` taints.
    SecondsWithoutNoExecute,
    /// The key is not a qualified name.
    Key(Problem),
    /// The value is not a label value.
    Value(Problem),
}

impl fmt::Display for TolerationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TolerationProblem::Operator { operator } => {
                write!(
                    f,
                    "operator {operator:?} is not supported, expected Equal or Exists"
                )
            }
            TolerationProblem::Effect { effect } => write!(
                f,
                "effect {effect:?} is not supported, expected NoSchedule, PreferNoSchedule or NoExecute"
            ),
            TolerationProblem::EmptyKeyNeedsExists => {
                f.write_str("operator must be Exists when key is empty (it matches all taints)")
            }
            TolerationProblem::ValueWithExists => {
                f.write_str("value must be empty when operator is Exists")
            }
            TolerationProblem::SecondsWithoutNoExecute => {
                f.write_str("tolerationSeconds is only allowed with effect NoExecute")
            }
            TolerationProblem::Key(p) => write!(f, "key: {p}"),
            TolerationProblem::Value(p) => write!(f, "value: {p}"),
        }
    }
}

/// Why a quantity would be rejected by the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantityProblem {
    /// Below zero.
    Negative,
    /// Zero or below where a size is needed.
    NotPositive,
    /// A request above the matching limit.
    AboveLimit {
        /// The limit option (`limits.cpu`, …).
        limit_option: &'static str,
        /// The limit as typed.
        limit: String,
    },
}

impl fmt::Display for QuantityProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantityProblem::Negative => f.write_str("must be greater than or equal to 0"),
            QuantityProblem::NotPositive => f.write_str("must be greater than zero"),
            QuantityProblem::AboveLimit {
                limit_option,
                limit,
            } => write!(f, "must be less than or equal to {limit_option} {limit:?}"),
        }
    }
}

//! Step two of two: raw driver options → typed, validated [`KubernetesOptions`].

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::driver_opts::{DriverOpt, DriverOpts};
use crate::duration::GoDuration;
use crate::error::{Error, IntFunc};
use crate::kv::KeyValues;
use crate::quantity::Quantity;
use crate::scalar::{parse_bool, parse_go_int};
use crate::toleration::Toleration;

/// Whether a `--driver-opt` is kbx's own, one Buildx refuses (`invalid driver option`):
/// `context=…`, and `loadbalance=rendezvous`. Builder records keep such options apart from the
/// `DriverOpts` Buildx reads, so a builder made by kbx stays usable by Buildx, which then uses
/// its defaults (the current kubeconfig context, `sticky`).
///
/// ```
/// assert!(kbx_opts::is_kbx_only_option("context", "kind-prod"));
/// assert!(kbx_opts::is_kbx_only_option("loadbalance", "rendezvous"));
/// assert!(!kbx_opts::is_kbx_only_option("loadbalance", "random"));
/// assert!(!kbx_opts::is_kbx_only_option("namespace", "ci"));
/// ```
pub fn is_kbx_only_option(key: &str, value: &str) -> bool {
    key == "context" || (key == "loadbalance" && value == LoadBalance::Rendezvous.as_str())
}

/// The BuildKit image buildx uses by default.
pub const DEFAULT_IMAGE: &str = "moby/buildkit:buildx-stable-1";
/// The BuildKit image buildx uses by default in rootless mode.
pub const DEFAULT_ROOTLESS_IMAGE: &str = "moby/buildkit:buildx-stable-1-rootless";
/// The binfmt image that installs QEMU handlers.
pub const DEFAULT_QEMU_IMAGE: &str = "tonistiigi/binfmt:latest";
/// How long bootstrap waits for the pods to be ready by default.
pub const DEFAULT_TIMEOUT: GoDuration = GoDuration::from_secs(120);

/// How a build picks one of a node's pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LoadBalance {
    /// buildx's consistent-hash ring over pod names, keyed by the context path (default).
    #[default]
    Sticky,
    /// A uniformly random pod on every connection.
    Random,
    /// Highest-random-weight hashing: even spread, minimal movement when pods change (kbx only).
    Rendezvous,
}

impl LoadBalance {
    /// The option word: `sticky`, `random` or `rendezvous`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalance::Sticky => "sticky",
            LoadBalance::Random => "random",
            LoadBalance::Rendezvous => "rendezvous",
        }
    }
}

impl FromStr for LoadBalance {
    type Err = Error;

    /// Exact, case-sensitive match, as buildx.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sticky" => Ok(LoadBalance::Sticky),
            "random" => Ok(LoadBalance::Random),
            "rendezvous" => Ok(LoadBalance::Rendezvous),
            _ => Err(Error::LoadBalance {
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for LoadBalance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for LoadBalance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for Quantity {
    /// The form Kubernetes stores ([`Quantity::serialized`]).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.serialized())
    }
}

impl Serialize for GoDuration {
    /// Go's `Duration.String` form, e.g. `2m0s`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// CPU, memory and ephemeral-storage quantities (requests or limits).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Resources {
    /// `cpu`
    pub cpu: Option<Quantity>,
    /// `memory`
    pub memory: Option<Quantity>,
    /// `ephemeral-storage`
    pub ephemeral_storage: Option<Quantity>,
}

impl Resources {
    /// Whether no quantity is set.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.ephemeral_storage.is_none()
    }
}

/// One `env.<NAME>=<value>` option.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct EnvVar {
    /// The variable name (not validated, as buildx).
    pub name: String,
    /// The value.
    pub value: String,
}

/// Every Kubernetes driver option, typed and validated.
///
/// Field names in JSON (used by the `parse` example) are the option names in kebab-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct KubernetesOptions {
    /// `image`: the BuildKit image.
    pub image: String,
    /// `namespace`: `None` means the kubeconfig context's namespace.
    pub namespace: Option<String>,
    /// `context`: a kubeconfig context to use instead of the kubeconfig's `current-context`
    /// (`None`: the current context, read at every command as buildx does).
    ///
    /// # Deviation
    /// New in kbx (buildx #2069): buildx has no way to pin a node to a context and follows
    /// whatever `current-context` is when a command runs.
    pub context: Option<String>,
    /// `replicas` (≥ 0).
    pub replicas: i32,
    /// `requests.cpu`, `requests.memory`, `requests.ephemeral-storage`.
    pub requests: Resources,
    /// `limits.cpu`, `limits.memory`, `limits.ephemeral-storage`.
    pub limits: Resources,
    /// `persistent-volume-claim.requests.storage`: when set, a StatefulSet with a PVC per pod.
    pub persistent_volume_claim_storage: Option<Quantity>,
    /// `buildkit-root-volume-memory`: a memory-backed volume of this size for BuildKit's state.
    pub buildkit_root_volume_memory: Option<Quantity>,
    /// `rootless`
    pub rootless: bool,
    /// `schedulername`
    pub scheduler_name: Option<String>,
    /// `serviceaccount`
    pub service_account: Option<String>,
    /// `nodeselector`
    pub node_selector: KeyValues,
    /// `annotations`
    pub annotations: KeyValues,
    /// `labels`
    pub labels: KeyValues,
    /// `tolerations`, in order.
    pub tolerations: Vec<Toleration>,
    /// `loadbalance`
    pub load_balance: LoadBalance,
    /// `qemu.install`
    pub qemu_install: bool,
    /// `qemu.image`
    pub qemu_image: String,
    /// `default-load`
    pub default_load: bool,
    /// `timeout`: how long bootstrap waits for ready pods (> 0).
    pub timeout: GoDuration,
    /// `env.<NAME>`, in input order.
    pub env: Vec<EnvVar>,
}

impl Default for KubernetesOptions {
    /// buildx's defaults (spec §3).
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.to_owned(),
            namespace: None,
            context: None,
            replicas: 1,
            requests: Resources::default(),
            limits: Resources::default(),
            persistent_volume_claim_storage: None,
            buildkit_root_volume_memory: None,
            rootless: false,
            scheduler_name: None,
            service_account: None,
            node_selector: KeyValues::new(),
            annotations: KeyValues::new(),
            labels: KeyValues::new(),
            tolerations: Vec::new(),
            load_balance: LoadBalance::Sticky,
            qemu_install: false,
            qemu_image: DEFAULT_QEMU_IMAGE.to_owned(),
            default_load: false,
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
        }
    }
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

fn quantity(v: &str) -> Result<Option<Quantity>, Error> {
    if v.is_empty() {
        Ok(None)
    } else {
        Quantity::parse(v).map(Some)
    }
}

/// Moves a span relative to an option value into its record.
fn span_in_record(opt: &DriverOpt, inner: &Error) -> Range<usize> {
    let value = opt.value_span();
    let inner_span = match inner {
        Error::KeyValuePair { span, .. } | Error::Toleration { span, .. } => Some(span.clone()),
        _ => None,
    };
    match inner_span {
        Some(s) => {
            let start = (value.start + s.start).min(value.end);
            let end = (value.start + s.end).clamp(start, value.end);
            start..end
        }
        None => value,
    }
}

impl KubernetesOptions {
    /// Parses `--driver-opt` records straight into typed options.
    ///
    /// ```
    /// use kbx_opts::{KubernetesOptions, LoadBalance};
    /// let o = KubernetesOptions::parse(["namespace=buildkit,replicas=2,loadbalance=random"])?;
    /// assert_eq!(o.namespace.as_deref(), Some("buildkit"));
    /// assert_eq!(o.replicas, 2);
    /// assert_eq!(o.load_balance, LoadBalance::Random);
    /// # Ok::<(), kbx_opts::Error>(())
    /// ```
    pub fn parse<I, S>(records: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::from_driver_opts(&DriverOpts::parse(records)?)
    }

    /// Types and validates raw driver options, reporting every bad option in input order.
    ///
    /// # Deviation
    /// - `rootless=false` keeps the default image (buildx switches to the rootless image whenever
    ///   the key is present), and an empty `image=` counts as not given, so `rootless=true,image=`
    ///   runs the rootless image (buildx keeps the non-rootless one).
    /// - `replicas` < 0 and `timeout` ≤ 0 are rejected here (buildx defers the first to the API
    ///   server and skips the readiness wait for the second).
    /// - All invalid options are reported, in input order, not one chosen at random.
    pub fn from_driver_opts(opts: &DriverOpts) -> Result<Self, Error> {
        let mut o = Self::default();
        let mut image: Option<String> = None;
        let mut errors = Vec::new();
        for opt in opts {
            if let Err(inner) = o.apply(opt, &mut image) {
                let span = if matches!(inner, Error::UnknownOption { .. } | Error::EnvName { .. }) {
                    let v = opt.value_span();
                    let start = v.start.saturating_sub(opt.key().len() + 1);
                    start..v.start.saturating_sub(1).max(start)
                } else {
                    span_in_record(opt, &inner)
                };
                errors.push(Error::InOption {
                    key: opt.key().to_owned(),
                    value: opt.value().to_owned(),
                    record: opt.record().to_owned(),
                    span,
                    inner: Box::new(inner),
                });
            }
        }
        o.image = image.unwrap_or_else(|| {
            if o.rootless {
                DEFAULT_ROOTLESS_IMAGE.to_owned()
            } else {
                DEFAULT_IMAGE.to_owned()
            }
        });
        match errors.len() {
            0 => Ok(o),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Several(errors)),
        }
    }

    fn apply(&mut self, opt: &DriverOpt, image: &mut Option<String>) -> Result<(), Error> {
        let v = opt.value();
        match opt.key() {
            "image" => *image = non_empty(v),
            "namespace" => self.namespace = Some(v.to_owned()),
            "context" => self.context = non_empty(v),
            "replicas" => {
                let n = parse_go_int(v, 32, IntFunc::ParseInt)?;
                if n < 0 {
                    return Err(Error::NegativeReplicas {
                        value: v.to_owned(),
                    });
                }
                self.replicas = i32::try_from(n).map_err(|_| Error::NegativeReplicas {
                    value: v.to_owned(),
                })?;
            }
            "requests.cpu" => self.requests.cpu = quantity(v)?,
            "requests.memory" => self.requests.memory = quantity(v)?,
            "requests.ephemeral-storage" => self.requests.ephemeral_storage = quantity(v)?,
            "limits.cpu" => self.limits.cpu = quantity(v)?,
            "limits.memory" => self.limits.memory = quantity(v)?,
            "limits.ephemeral-storage" => self.limits.ephemeral_storage = quantity(v)?,
            "persistent-volume-claim.requests.storage" => {
                self.persistent_volume_claim_storage = quantity(v)?;
            }
            "buildkit-root-volume-memory" => self.buildkit_root_volume_memory = quantity(v)?,
            "rootless" => self.rootless = parse_bool(v)?,
            "schedulername" => self.scheduler_name = non_empty(v),
            "serviceaccount" => self.service_account = non_empty(v),
            "nodeselector" => self.node_selector = KeyValues::parse(v)?,
            "annotations" => self.annotations = KeyValues::parse(v)?,
            "labels" => self.labels = KeyValues::parse(v)?,
            "tolerations" => self.tolerations = Toleration::parse_list(v)?,
            "loadbalance" => self.load_balance = v.parse()?,
            "qemu.install" => self.qemu_install = parse_bool(v)?,
            "qemu.image" => {
                if !v.is_empty() {
                    self.qemu_image = v.to_owned();
                }
            }
            "default-load" => self.default_load = parse_bool(v)?,
            "timeout" => {
                let d = GoDuration::parse(v)?;
                if !d.is_positive() {
                    return Err(Error::NonPositiveTimeout {
                        value: v.to_owned(),
                    });
                }
                self.timeout = d;
            }
            key => match key.strip_prefix("env.") {
                Some("") => {
                    return Err(Error::EnvName {
                        key: key.to_owned(),
                    });
                }
                Some(name) => match self.env.iter_mut().find(|e| e.name == name) {
                    Some(e) => e.value = v.to_owned(),
                    None => self.env.push(EnvVar {
                        name: name.to_owned(),
                        value: v.to_owned(),
                    }),
                },
                None => {
                    return Err(Error::UnknownOption {
                        key: key.to_owned(),
                    });
                }
            },
        }
        Ok(())
    }

    /// The smallest driver-option map that parses back into these options (defaults omitted).
    pub fn to_driver_opts(&self) -> DriverOpts {
        let mut d = DriverOpts::new();
        if let Some(ns) = &self.namespace {
            d.insert("namespace", ns);
        }
        if let Some(c) = &self.context {
            d.insert("context", c);
        }
        let default_image = if self.rootless {
            DEFAULT_ROOTLESS_IMAGE
        } else {
            DEFAULT_IMAGE
        };
        if self.image != default_image {
            d.insert("image", &self.image);
        }
        if self.replicas != 1 {
            d.insert("replicas", self.replicas.to_string());
        }
        for (prefix, r) in [("requests", &self.requests), ("limits", &self.limits)] {
            for (name, q) in [
                ("cpu", &r.cpu),
                ("memory", &r.memory),
                ("ephemeral-storage", &r.ephemeral_storage),
            ] {
                if let Some(q) = q {
                    d.insert(format!("{prefix}.{name}"), q.as_str());
                }
            }
        }
        if let Some(q) = &self.persistent_volume_claim_storage {
            d.insert("persistent-volume-claim.requests.storage", q.as_str());
        }
        if let Some(q) = &self.buildkit_root_volume_memory {
            d.insert("buildkit-root-volume-memory", q.as_str());
        }
        if self.rootless {
            d.insert("rootless", "true");
        }
        if let Some(s) = &self.scheduler_name {
            d.insert("schedulername", s);
        }
        if let Some(s) = &self.service_account {
            d.insert("serviceaccount", s);
        }
        for (key, kv) in [
            ("nodeselector", &self.node_selector),
            ("annotations", &self.annotations),
            ("labels", &self.labels),
        ] {
            if !kv.is_empty() {
                d.insert(key, kv.to_string());
            }
        }
        if !self.tolerations.is_empty() {
            let all: Vec<String> = self.tolerations.iter().map(ToString::to_string).collect();
            d.insert("tolerations", all.join(";"));
        }
        if self.load_balance != LoadBalance::Sticky {
            d.insert("loadbalance", self.load_balance.as_str());
        }
        if self.qemu_install {
            d.insert("qemu.install", "true");
        }
        if self.qemu_image != DEFAULT_QEMU_IMAGE {
            d.insert("qemu.image", &self.qemu_image);
        }
        if self.default_load {
            d.insert("default-load", "true");
        }
        if self.timeout != DEFAULT_TIMEOUT {
            d.insert("timeout", self.timeout.to_string());
        }
        for e in &self.env {
            d.insert(format!("env.{}", e.name), &e.value);
        }
        d
    }
}

/// One `--driver-opt` CSV record that [`KubernetesOptions::parse`] reads back into equal
/// options (empty for the defaults).
impl fmt::Display for KubernetesOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_driver_opts(), f)
    }
}

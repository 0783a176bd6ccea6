//! Node → Kubernetes objects.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, ExecAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kbx_opts::{
    DEFAULT_ENTITLEMENT_FLAG, DEFAULT_TIMEOUT, GoDuration, KubernetesOptions, Platform,
};

use crate::compat::MaybeOption;
use crate::error::Error;
use crate::files::{CONFIG_DIR, CONFIG_FILE, ConfigFiles};
use crate::validate;

/// The name of the BuildKit container (and of its state volume and claim template).
pub const CONTAINER_NAME: &str = "buildkitd";
/// The label that names the node in the workload's selector; reserved.
pub const APP_LABEL: &str = "app";
/// The annotation that lists the node's platforms; reserved.
pub const PLATFORM_ANNOTATION: &str = "buildx.docker.com/platform";
/// The pod annotation that lifts AppArmor confinement for rootless BuildKit.
pub const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/buildkitd";
/// BuildKit's state directory.
pub const STATE_DIR: &str = "/var/lib/buildkit";
/// Rootless BuildKit's state directory.
pub const ROOTLESS_STATE_DIR: &str = "/home/user/.local/share/buildkit";
/// The flag rootless mode adds to buildkitd's arguments.
pub const ROOTLESS_FLAG: &str = "--oci-worker-no-process-sandbox";
/// The StatefulSet's `serviceName` (the governing Service is not created, as in buildx).
pub const SERVICE_NAME: &str = "buildkitd";

/// One builder node: what `buildx create` records, plus the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node name as recorded (`kube_amd64`). Objects are named after it with every `_`
    /// replaced by `-` ([`Node::workload_name`]).
    pub name: String,
    /// `--platform`, already normalised; written to the platform annotation in this order.
    pub platforms: Vec<Platform>,
    /// buildkitd's arguments ([`kbx_opts::buildkitd_args`]), used verbatim as container args.
    pub flags: Vec<String>,
    /// Files mounted under `/etc/buildkit` ([`ConfigFiles::from_config`]).
    pub files: ConfigFiles,
    /// The typed `--driver-opt` values.
    pub options: KubernetesOptions,
}

impl Node {
    /// A node with no platforms, no files and buildx's default flags
    /// (`--allow-insecure-entitlement=network.host`).
    pub fn new(name: impl Into<String>, options: KubernetesOptions) -> Self {
        Self {
            name: name.into(),
            platforms: Vec::new(),
            flags: vec![DEFAULT_ENTITLEMENT_FLAG.to_owned()],
            files: ConfigFiles::new(),
            options,
        }
    }

    /// The Deployment/StatefulSet name: the node name with `_` → `-` (`kube_amd64` →
    /// `kube-amd64`), as buildx derives it.
    pub fn workload_name(&self) -> String {
        self.name.replace('_', "-")
    }

    /// Whether the node renders a StatefulSet (`persistent-volume-claim.requests.storage` set).
    pub fn is_stateful(&self) -> bool {
        self.options.persistent_volume_claim_storage.is_some()
    }
}

/// The workload that runs a node's pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// The default.
    Deployment(Box<Deployment>),
    /// With `persistent-volume-claim.requests.storage`: one PersistentVolumeClaim per pod.
    StatefulSet(Box<StatefulSet>),
}

impl Workload {
    /// `Deployment` or `StatefulSet`.
    pub fn kind(&self) -> &'static str {
        match self {
            Workload::Deployment(_) => "Deployment",
            Workload::StatefulSet(_) => "StatefulSet",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Workload::Deployment(d) => &d.metadata,
            Workload::StatefulSet(s) => &s.metadata,
        }
    }

    /// The pod template.
    pub fn pod_template(&self) -> Option<&PodTemplateSpec> {
        match self {
            Workload::Deployment(d) => {
                MaybeOption::<DeploymentSpec>::as_option(&d.spec).map(|s| &s.template)
            }
            Workload::StatefulSet(s) => {
                MaybeOption::<StatefulSetSpec>::as_option(&s.spec).map(|s| &s.template)
            }
        }
    }

    /// The pod spec of the template.
    pub fn pod_spec(&self) -> Option<&PodSpec> {
        self.pod_template().and_then(|t| t.spec.as_ref())
    }

    /// The `buildkitd` container.
    pub fn buildkitd(&self) -> Option<&Container> {
        self.pod_spec()
            .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER_NAME))
    }
}

/// Everything one node needs in the cluster, in creation order: ConfigMaps, then the workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    /// `<name>-config` (the `buildkitd.toml` directory), then `<name>-config-1`, … for the
    /// other directories in sorted order.
    pub config_maps: Vec<ConfigMap>,
    /// The Deployment or StatefulSet.
    pub workload: Workload,
}

/// `linux/amd64,linux/arm64`: the platform annotation's value.
pub(crate) fn platforms_value(platforms: &[Platform]) -> String {
    platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn non_empty<K: Ord, V>(m: BTreeMap<K, V>) -> Option<BTreeMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

fn opt_string(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn quantity(q: &kbx_opts::Quantity) -> Quantity {
    Quantity(q.serialized())
}

/// The command every probe of the `buildkitd` container runs: it succeeds once BuildKit answers
/// on its socket.
const PROBE_COMMAND: [&str; 3] = ["buildctl", "debug", "workers"];

/// How often the startup probe runs, in seconds.
const STARTUP_PERIOD_SECONDS: i32 = 1;

fn probe_command() -> Option<ExecAction> {
    Some(ExecAction {
        command: Some(PROBE_COMMAND.map(str::to_owned).to_vec()),
    })
}

/// buildx's readiness and liveness probe (v0.34): every 30 s after 5 s, 3 failures, 60 s timeout.
fn buildx_probe() -> Probe {
    Probe {
        exec: probe_command(),
        failure_threshold: Some(3),
        initial_delay_seconds: Some(5),
        period_seconds: Some(30),
        success_threshold: Some(1),
        timeout_seconds: Some(60),
        ..Probe::default()
    }
}

/// The readiness probe: buildx's without the initial delay, which the startup probe replaces
/// (see [`render`]'s deviations).
fn readiness_probe() -> Probe {
    Probe {
        initial_delay_seconds: None,
        ..buildx_probe()
    }
}

/// The startup probe: the same command every second until it answers, for at least as long as
/// bootstrap waits (`timeout`, and never less than the default 120 s), with buildx's 60 s
/// timeout per run.
fn startup_probe(timeout: GoDuration) -> Probe {
    Probe {
        exec: probe_command(),
        failure_threshold: Some(startup_failure_threshold(timeout)),
        period_seconds: Some(STARTUP_PERIOD_SECONDS),
        success_threshold: Some(1),
        timeout_seconds: Some(60),
        ..Probe::default()
    }
}

/// `ceil(timeout / period)` failed runs, at least as many as the default timeout needs, at most
/// `i32::MAX`.
fn startup_failure_threshold(timeout: GoDuration) -> i32 {
    const NANOS_PER_SEC: u64 = 1_000_000_000;
    let runs = |d: GoDuration| {
        u64::try_from(d.as_nanos())
            .unwrap_or(0)
            .div_ceil(NANOS_PER_SEC * u64::from(STARTUP_PERIOD_SECONDS.unsigned_abs()))
    };
    let runs = runs(timeout).max(runs(DEFAULT_TIMEOUT));
    i32::try_from(runs).unwrap_or(i32::MAX)
}

fn privileged() -> SecurityContext {
    SecurityContext {
        privileged: Some(true),
        ..SecurityContext::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str, memory: Option<&kbx_opts::Quantity>) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.map(|_| "Memory".to_owned()),
            size_limit: memory.map(quantity),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn resource_list(
    entries: [(&str, Option<&kbx_opts::Quantity>); 3],
) -> Option<BTreeMap<String, Quantity>> {
    non_empty(
        entries
            .into_iter()
            .filter_map(|(k, q)| q.map(|q| (k.to_owned(), quantity(q))))
            .collect(),
    )
}

/// Renders a node into the objects buildx would create, after validating it locally.
///
/// Follows buildx's `manifest.NewDeployment` (labels `app=<name>` plus custom labels as the
/// selector; the platform annotation plus custom annotations; container `buildkitd` with
/// buildx's liveness and readiness probes, plus a startup probe; ConfigMaps `<name>-config[-N]`
/// mounted under `/etc/buildkit`; the qemu init container; the rootless transform; node
/// selector, tolerations, resources, memory volume and env; a StatefulSet with a claim template `buildkitd` when
/// `persistent-volume-claim.requests.storage` is set). The same node always renders to the same
/// objects.
///
/// ```
/// use kbx_manifest::{Node, render};
/// use kbx_opts::KubernetesOptions;
///
/// let node = Node::new("mybuilder0", KubernetesOptions::parse(["replicas=2"])?);
/// let m = render(&node)?;
/// assert_eq!(m.workload.kind(), "Deployment");
/// assert!(m.config_maps.is_empty());
/// let args = m.workload.buildkitd().and_then(|c| c.args.clone()).unwrap_or_default();
/// assert_eq!(args, ["--allow-insecure-entitlement=network.host"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// Every validation problem at once ([`Error::Several`] when there are more than one), in a
/// fixed order: names, metadata, pod spec, resources, files.
///
/// # Deviation
/// - `requests.ephemeral-storage` is a request; buildx writes it to the limits.
/// - StatefulSet mode keeps the ConfigMap mounts (buildx replaces the container's mounts with
///   the claim's, so `buildkitd.toml` is ignored), and in rootless mode drops the `buildkitd`
///   emptyDir that the claim of the same name replaces anyway.
/// - `buildkit-root-volume-memory` together with a claim is an error (both would be BuildKit's
///   state directory); buildx accepts it and then ignores the memory volume.
/// - Rootless mode passes `--config /etc/buildkit/buildkitd.toml` when there is a config (and
///   the flags have no `--config`), so the config is honoured; buildx's rootless pods never
///   read it.
/// - The AppArmor annotation of rootless mode goes on the pod template only; buildx's shared
///   map also puts it on the workload and the ConfigMaps.
/// - Everything is deterministic: env in input order, ConfigMaps numbered by sorted directory
///   name, labels and annotations sorted (buildx follows Go map order for the first two).
/// - Files that are not UTF-8 (DER certificates) go to `binaryData`; buildx puts them in
///   `data`, which mangles them.
/// - Names, label and annotation keys and values, tolerations, quantities, env names, images
///   and file paths are validated here with clear messages; buildx leaves all of it to the API
///   server.
/// - The `buildkitd` container also has a startup probe running `buildctl debug workers` every
///   second (`periodSeconds: 1`, no initial delay, buildx's `timeoutSeconds: 60`), allowed
///   `ceil(timeout / 1 s)` failures and never fewer than the default timeout's 120, so the
///   kubelet restarts neither a daemon that bootstrap still waits for nor one that starts slower
///   than a short `timeout`. The readiness probe drops buildx's `initialDelaySeconds: 5`; the
///   rest of it and the liveness probe are buildx's. Why: with buildx's probes a pod is Ready
///   only when the readiness probe's own 30 s ticker fires after the 5 s delay, up to 30 s after
///   a daemon that answers within 1–2 s. The kubelet runs no readiness or liveness probe before
///   the startup probe has succeeded, so the startup probe does the initial delay's job. Since
///   Kubernetes 1.21 the kubelet runs the readiness probe as soon as the startup probe succeeds
///   (made reliable in 1.22), so the pod is Ready about a second after BuildKit answers; an
///   initial delay, which still counts from the container's start, would turn that run into a
///   skipped one, hence its removal. On a 1.20 kubelet the readiness probe only runs on its
///   ticker, so Ready comes no sooner than with buildx (the container's `started` status is set
///   within a second, though). The 30 s periods stay: a 1 s readiness period would speed up 1.20
///   too, at the price of a `buildctl` exec every second for the pod's whole life.
pub fn render(node: &Node) -> Result<Manifests, Error> {
    validate::check(node)?;
    Ok(build(node))
}

fn build(node: &Node) -> Manifests {
    let o = &node.options;
    let name = node.workload_name();
    let namespace = o.namespace.clone().filter(|n| !n.is_empty());
    let (labels, annotations) = object_metadata(node, &name);

    let (config_maps, mut storage) = config_maps(node, &name, &namespace, &annotations);
    let init_containers = qemu(o);
    let daemon = rootless(node, &annotations, &mut storage);
    let Scheduling {
        node_selector,
        tolerations,
        resources,
    } = scheduling(o);
    memory_state_dir(o, &mut storage);
    let env = env(o);
    claim_state_dir(node, &mut storage);

    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(o.image.clone()),
        args: (!daemon.args.is_empty()).then_some(daemon.args),
        env,
        security_context: Some(daemon.security_context),
        readiness_probe: Some(readiness_probe()),
        liveness_probe: Some(buildx_probe()),
        startup_probe: Some(startup_probe(o.timeout)),
        resources,
        volume_mounts: (!storage.mounts.is_empty()).then_some(storage.mounts),
        ..Container::default()
    };
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            annotations: non_empty(daemon.pod_annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: o.service_account.clone().filter(|s| !s.is_empty()),
            scheduler_name: o.scheduler_name.clone().filter(|s| !s.is_empty()),
            node_selector,
            tolerations,
            init_containers,
            containers: vec![container],
            volumes: (!storage.volumes.is_empty()).then_some(storage.volumes),
            ..PodSpec::default()
        }),
    };
    let metadata = ObjectMeta {
        name: Some(name),
        namespace,
        labels: Some(labels.clone()),
        annotations: non_empty(annotations),
        ..ObjectMeta::default()
    };
    Manifests {
        config_maps,
        workload: workload(o, metadata, labels, template),
    }
}

/// The volumes of the pod and the mounts of the `buildkitd` container, in the order the
/// sections below add them.
#[derive(Default)]
struct Storage {
    mounts: Vec<VolumeMount>,
    volumes: Vec<Volume>,
}

/// What rootless mode changes on the `buildkitd` container and the pod template.
struct Daemon {
    args: Vec<String>,
    security_context: SecurityContext,
    pod_annotations: BTreeMap<String, String>,
}

/// The labels (`app=<name>` plus the custom ones; also the selector) and the annotations (the
/// platform annotation plus the custom ones) of every object.
fn object_metadata(
    node: &Node,
    name: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let o = &node.options;
    let mut labels = BTreeMap::from([(APP_LABEL.to_owned(), name.to_owned())]);
    labels.extend(o.labels.iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
    let mut annotations = BTreeMap::new();
    if !node.platforms.is_empty() {
        annotations.insert(
            PLATFORM_ANNOTATION.to_owned(),
            platforms_value(&node.platforms),
        );
    }
    annotations.extend(
        o.annotations
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    (labels, annotations)
}

/// 1. ConfigMaps, their volumes and mounts.
fn config_maps(
    node: &Node,
    name: &str,
    namespace: &Option<String>,
    annotations: &BTreeMap<String, String>,
) -> (Vec<ConfigMap>, Storage) {
    let mut config_maps = Vec::new();
    let mut storage = Storage::default();
    for group in node.files.groups() {
        let cm_name = format!("{name}-{}", group.name);
        let mut data = BTreeMap::new();
        let mut binary = BTreeMap::new();
        for (file, contents) in &group.files {
            match std::str::from_utf8(contents) {
                Ok(text) => {
                    data.insert((*file).to_owned(), text.to_owned());
                }
                Err(_) => {
                    binary.insert((*file).to_owned(), ByteString(contents.to_vec()));
                }
            }
        }
        config_maps.push(ConfigMap {
            metadata: ObjectMeta {
                name: Some(cm_name.clone()),
                namespace: namespace.clone(),
                annotations: non_empty(annotations.clone()),
                ..ObjectMeta::default()
            },
            data: non_empty(data),
            binary_data: non_empty(binary),
            ..ConfigMap::default()
        });
        let path = if group.dir == "." {
            CONFIG_DIR.to_owned()
        } else {
            format!("{CONFIG_DIR}/{}", group.dir)
        };
        storage.mounts.push(mount(&group.name, &path));
        storage.volumes.push(Volume {
            name: group.name.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm_name,
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    (config_maps, storage)
}

/// 2. QEMU.
fn qemu(o: &KubernetesOptions) -> Option<Vec<Container>> {
    o.qemu_install.then(|| {
        vec![Container {
            name: "qemu".to_owned(),
            image: Some(o.qemu_image.clone()),
            args: Some(vec!["--install".into(), "all".into()]),
            security_context: Some(privileged()),
            ..Container::default()
        }]
    })
}

/// 3. Rootless.
fn rootless(node: &Node, annotations: &BTreeMap<String, String>, storage: &mut Storage) -> Daemon {
    let o = &node.options;
    let mut args = node.flags.clone();
    let mut security_context = privileged();
    let mut pod_annotations = annotations.clone();
    if o.rootless {
        let has_config_flag = args
            .iter()
            .any(|a| a == "--config" || a.starts_with("--config="));
        if node.files.has_config() && !has_config_flag {
            args.push("--config".to_owned());
            args.push(format!("{CONFIG_DIR}/{CONFIG_FILE}"));
        }
        args.push(ROOTLESS_FLAG.to_owned());
        security_context = SecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "Unconfined".to_owned(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        };
        pod_annotations.insert(APPARMOR_ANNOTATION.to_owned(), "unconfined".to_owned());
        storage
            .mounts
            .push(mount(CONTAINER_NAME, ROOTLESS_STATE_DIR));
        if !node.is_stateful() {
            storage.volumes.push(empty_dir(
                CONTAINER_NAME,
                o.buildkit_root_volume_memory.as_ref(),
            ));
        }
    }
    Daemon {
        args,
        security_context,
        pod_annotations,
    }
}

/// Where and with what the pod runs.
struct Scheduling {
    node_selector: Option<BTreeMap<String, String>>,
    tolerations: Option<Vec<Toleration>>,
    resources: Option<ResourceRequirements>,
}

/// 4-6. Node selector, tolerations, resources.
fn scheduling(o: &KubernetesOptions) -> Scheduling {
    let node_selector = non_empty(
        o.node_selector
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    );
    let tolerations = (!o.tolerations.is_empty()).then(|| {
        o.tolerations
            .iter()
            .map(|t| Toleration {
                key: opt_string(&t.key),
                operator: opt_string(&t.operator),
                value: opt_string(&t.value),
                effect: opt_string(&t.effect),
                toleration_seconds: t.toleration_seconds,
            })
            .collect()
    });
    let requests = resource_list([
        ("cpu", o.requests.cpu.as_ref()),
        ("memory", o.requests.memory.as_ref()),
        ("ephemeral-storage", o.requests.ephemeral_storage.as_ref()),
    ]);
    let limits = resource_list([
        ("cpu", o.limits.cpu.as_ref()),
        ("memory", o.limits.memory.as_ref()),
        ("ephemeral-storage", o.limits.ephemeral_storage.as_ref()),
    ]);
    let resources = (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
        requests,
        limits,
        ..ResourceRequirements::default()
    });
    Scheduling {
        node_selector,
        tolerations,
        resources,
    }
}

/// 7. Memory-backed state directory (rootless handled it above).
fn memory_state_dir(o: &KubernetesOptions, storage: &mut Storage) {
    if !o.rootless
        && let Some(q) = &o.buildkit_root_volume_memory
    {
        storage.volumes.push(empty_dir("buildkit-memory", Some(q)));
        storage.mounts.push(mount("buildkit-memory", STATE_DIR));
    }
}

/// 8. Env.
fn env(o: &KubernetesOptions) -> Option<Vec<EnvVar>> {
    (!o.env.is_empty()).then(|| {
        o.env
            .iter()
            .map(|e| EnvVar {
                name: e.name.clone(),
                value: Some(e.value.clone()),
                ..EnvVar::default()
            })
            .collect()
    })
}

/// 9. StatefulSet: the claim holds the state directory.
fn claim_state_dir(node: &Node, storage: &mut Storage) {
    if node.is_stateful() && !node.options.rootless {
        storage.mounts.push(mount(CONTAINER_NAME, STATE_DIR));
    }
}

/// The Deployment, or with a claim size the StatefulSet, that runs `template`.
fn workload(
    o: &KubernetesOptions,
    metadata: ObjectMeta,
    labels: BTreeMap<String, String>,
    template: PodTemplateSpec,
) -> Workload {
    let selector = LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    };
    match &o.persistent_volume_claim_storage {
        None => Workload::Deployment(Box::new(Deployment {
            metadata,
            spec: MaybeOption::wrap(DeploymentSpec {
                replicas: Some(o.replicas),
                selector,
                template,
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        })),
        Some(storage) => Workload::StatefulSet(Box::new(StatefulSet {
            metadata,
            spec: MaybeOption::wrap(StatefulSetSpec {
                replicas: Some(o.replicas),
                selector,
                service_name: Some(SERVICE_NAME.to_owned()),
                pod_management_policy: Some("Parallel".to_owned()),
                template,
                volume_claim_templates: Some(vec![claim_template(storage)]),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        })),
    }
}

/// The StatefulSet's claim template `buildkitd` of `storage` bytes.
fn claim_template(storage: &kbx_opts::Quantity) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(CONTAINER_NAME.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), quantity(storage))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

//! One builder node in a cluster: bootstrap, readiness, status, pods, removal.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::apps::v1::{DeploymentSpec, StatefulSetSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kbx_manifest::{APP_LABEL, Manifests, MaybeOption, PLATFORM_ANNOTATION, Workload};
use kbx_opts::Platform;
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::runtime::watcher;

use crate::error::RequestError;

use crate::Error;

/// The field manager kbx applies objects with.
pub const FIELD_MANAGER: &str = "kbx";

/// The reason of [`Status::Inactive`] when the workload does not exist (as opposed to the
/// cluster not answering).
pub const NOT_CREATED: &str = "not created yet";

/// Status of a node, as `ls` and `inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// At least one replica is ready; the pods that can serve builds.
    Running(Vec<PodInfo>),
    /// The workload exists but no replica is ready; why, when known.
    Stopped(Option<String>),
    /// The workload cannot be read (not created yet, no access, cluster unreachable); why.
    Inactive(String),
}

impl Status {
    /// buildx's status word: `running`, `stopped` or `inactive`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Running(_) => "running",
            Status::Stopped(_) => "stopped",
            Status::Inactive(_) => "inactive",
        }
    }
}

/// A pod of the builder, with what pod choice needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// The pod name.
    pub name: String,
    /// `status.phase`, e.g. `Running`.
    pub phase: String,
    /// Whether the pod can take builds: its `Ready` condition is true, or its startup probe
    /// passed so recently that the readiness probe has not had its first turn yet (see
    /// [`pod_is_ready`]).
    pub ready: bool,
    /// Whether the pod has a deletion timestamp.
    pub terminating: bool,
    /// The platforms of the `buildx.docker.com/platform` annotation (empty if absent or invalid).
    pub platforms: Vec<Platform>,
}

/// What bootstrap did to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It did not exist.
    Created,
    /// It existed and differed from the rendered object.
    Updated,
    /// It existed and matched.
    Unchanged,
}

/// Progress of a bootstrap, for the CLI to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapEvent {
    /// An object was applied.
    Applied {
        /// `ConfigMap`, `Deployment` or `StatefulSet`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What happened.
        change: Change,
    },
    /// Waiting for pods: buildx's `waiting for N pods to be ready, timeout: …` step.
    Waiting {
        /// Desired replicas.
        replicas: i32,
        /// The timeout, human readable.
        timeout: String,
    },
    /// The ready count changed.
    Ready {
        /// Ready replicas.
        ready: i32,
        /// Desired replicas.
        replicas: i32,
    },
}

/// A builder node bound to a cluster and namespace.
#[derive(Clone)]
pub struct NodeDriver {
    client: kube::Client,
    namespace: String,
    manifests: Manifests,
    replicas: i32,
    timeout: Duration,
    server: String,
}

impl std::fmt::Debug for NodeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDriver")
            .field("namespace", &self.namespace)
            .field("name", &self.name())
            .field("replicas", &self.replicas)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl NodeDriver {
    /// A driver for the rendered objects of one node.
    pub fn new(
        client: kube::Client,
        namespace: impl Into<String>,
        manifests: Manifests,
        timeout: Duration,
    ) -> Self {
        let replicas = match &manifests.workload {
            Workload::Deployment(d) => deployment_spec(d).and_then(|s| s.replicas),
            Workload::StatefulSet(s) => stateful_set_spec(s).and_then(|s| s.replicas),
        }
        .unwrap_or(1);
        Self {
            client,
            namespace: namespace.into(),
            manifests,
            replicas,
            timeout,
            server: String::new(),
        }
    }

    /// The API server's URL (the kubeconfig's `server`), named in errors with the path of the
    /// request that failed, as Buildx names it.
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = server.into();
        self
    }

    /// The URL of `K`'s collection in the namespace, or of its object `name`.
    fn url<K>(&self, name: Option<&str>) -> String
    where
        K: kube::Resource,
        K::DynamicType: Default,
    {
        let mut url = self.server.trim_end_matches('/').to_owned();
        url.push_str(&K::url_path(&Default::default(), Some(&self.namespace)));
        if let Some(n) = name {
            url.push('/');
            url.push_str(n);
        }
        url
    }

    /// The workload name (also the pods' `app` label).
    pub fn name(&self) -> String {
        self.manifests
            .workload
            .metadata()
            .name
            .clone()
            .unwrap_or_default()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The rendered objects.
    pub fn manifests(&self) -> &Manifests {
        &self.manifests
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Ready replicas of the live workload, `Err` when it cannot be read.
    async fn ready_replicas(&self) -> Result<i32, RequestError> {
        let name = self.name();
        let got = match &self.manifests.workload {
            Workload::Deployment(_) => self
                .api::<Deployment>()
                .get(&name)
                .await
                .map(|d| d.status.and_then(|s| s.ready_replicas))
                .map_err(|e| RequestError::new("Get", self.url::<Deployment>(Some(&name)), e)),
            Workload::StatefulSet(_) => self
                .api::<StatefulSet>()
                .get(&name)
                .await
                .map(|s| s.status.and_then(|s| s.ready_replicas))
                .map_err(|e| RequestError::new("Get", self.url::<StatefulSet>(Some(&name)), e)),
        };
        Ok(got?.unwrap_or(0))
    }

    /// The node's status, as `ls` shows it; unlike buildx, the reason for `inactive` and
    /// `stopped` is kept.
    ///
    /// # Deviation
    /// buildx says `running` only when the workload counts a ready replica. kbx also does when a
    /// pod is ready by [`pod_is_ready`]'s startup-probe rule, so a builder that `create
    /// --bootstrap` has just reported ready is not listed as `stopped` while its readiness
    /// probe waits for its first turn (Kubernetes 1.20 kubelets).
    pub async fn status(&self) -> Result<Status, Error> {
        match self.ready_replicas().await {
            Err(e) => Ok(Status::Inactive(inactive_reason(&e))),
            Ok(ready)
                if ready <= 0
                    && !self
                        .running_pods()
                        .await
                        .is_ok_and(|pods| pods.iter().any(|p| p.ready)) =>
            {
                let why = self
                    .diagnose()
                    .await
                    .ok()
                    .filter(|d| !d.is_empty())
                    .map(|d| d.join("; "));
                Ok(Status::Stopped(why))
            }
            Ok(_) => Ok(Status::Running(self.running_pods().await?)),
        }
    }

    /// Creates or updates the ConfigMaps and the workload, then waits until `replicas` pods are
    /// ready or the timeout passes.
    ///
    /// # Deviation
    /// buildx leaves an existing workload as it is, even when the options changed; kbx applies
    /// the rendered objects (server-side apply) and reports `Updated` when they differed. Waiting
    /// uses a watch instead of polling, and pods that cannot start (image pull errors, crash
    /// loops, unschedulable) fail the wait early with their reason.
    pub async fn bootstrap(
        &self,
        on_event: &(dyn Fn(BootstrapEvent) + Send + Sync),
    ) -> Result<(), Error> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        for cm in &self.manifests.config_maps {
            let name = cm.metadata.name.clone().unwrap_or_default();
            let change = apply(
                &self.api::<ConfigMap>(),
                &self.url::<ConfigMap>(Some(&name)),
                &name,
                cm,
                &params,
            )
            .await
            .map_err(|source| Error::Apply {
                kind: "ConfigMap",
                name: name.clone(),
                source,
            })?;
            on_event(BootstrapEvent::Applied {
                kind: "ConfigMap",
                name,
                change,
            });
        }
        let name = self.name();
        let kind = self.manifests.workload.kind();
        let change = match &self.manifests.workload {
            Workload::Deployment(d) => {
                let url = self.url::<Deployment>(Some(&name));
                apply(&self.api::<Deployment>(), &url, &name, d.as_ref(), &params).await
            }
            Workload::StatefulSet(s) => {
                let url = self.url::<StatefulSet>(Some(&name));
                apply(&self.api::<StatefulSet>(), &url, &name, s.as_ref(), &params).await
            }
        }
        .map_err(|source| Error::Apply {
            kind,
            name: name.clone(),
            source,
        })?;
        on_event(BootstrapEvent::Applied { kind, name, change });
        self.wait(on_event, change != Change::Updated).await
    }

    /// Waits until `replicas` pods of the current generation are ready, as the workload's
    /// status counts them (its `readyReplicas`).
    pub async fn wait_ready(
        &self,
        on_event: &(dyn Fn(BootstrapEvent) + Send + Sync),
    ) -> Result<(), Error> {
        self.wait(on_event, false).await
    }

    /// [`NodeDriver::wait_ready`]; with `new_workload` (bootstrap has just created the workload,
    /// or found it unchanged, so it rolled out no new pods) pods also count once
    /// [`pod_is_ready`] says so.
    ///
    /// # Deviation
    /// buildx waits for the workload's `readyReplicas`. On a Kubernetes 1.20 kubelet the
    /// readiness probe runs on its own ticker whatever the startup probe does, so a pod becomes
    /// Ready up to one readiness period (30 s) after BuildKit answers; counting pods whose startup
    /// probe — the same `buildctl debug workers` — has passed ends the wait about a second after
    /// BuildKit answers on every version.
    async fn wait(
        &self,
        on_event: &(dyn Fn(BootstrapEvent) + Send + Sync),
        new_workload: bool,
    ) -> Result<(), Error> {
        on_event(BootstrapEvent::Waiting {
            replicas: self.replicas,
            timeout: kbx_opts::human_duration(kbx_opts::GoDuration::from_nanos(
                i64::try_from(self.timeout.as_nanos()).unwrap_or(i64::MAX),
            )),
        });
        if self.replicas == 0 {
            return Ok(());
        }
        let name = self.name();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut ready = 0;
        let mut last_pod_check = tokio::time::Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut events = match &self.manifests.workload {
            Workload::Deployment(_) => watcher(self.api::<Deployment>(), config)
                .map(|e| e.map(|e| map_event(e, |d| progress_of_deployment(&d))))
                .boxed(),
            Workload::StatefulSet(_) => watcher(self.api::<StatefulSet>(), config)
                .map(|e| e.map(|e| map_event(e, |s| progress_of_stateful_set(&s))))
                .boxed(),
        };
        let mut pod_events = if new_workload {
            let config = watcher::Config::default().labels(&format!("{APP_LABEL}={name}"));
            watcher(self.api::<Pod>(), config).boxed()
        } else {
            futures::stream::pending().boxed()
        };
        let mut pods: BTreeMap<String, Pod> = BTreeMap::new();
        let mut current = false;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    let diagnosis = self.diagnose().await.unwrap_or_default();
                    return Err(Error::NotReady { replicas: self.replicas, ready, diagnosis });
                }
                event = events.next() => {
                    let Some(event) = event else { continue };
                    let event = event.map_err(|source| Error::Watch { name: name.clone(), source })?;
                    let progress = match event {
                        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => p,
                        _ => continue,
                    };
                    current = progress.current;
                    let counted = progress.ready.max(ready_pods(&pods));
                    if counted != ready {
                        ready = counted;
                        on_event(BootstrapEvent::Ready { ready, replicas: self.replicas });
                    }
                    if current && ready >= self.replicas {
                        return Ok(());
                    }
                }
                event = pod_events.next() => {
                    let Some(event) = event else { continue };
                    // A broken pod watch only loses the shortcut; the workload's watch decides.
                    let Ok(event) = event else { continue };
                    match event {
                        watcher::Event::Init => pods.clear(),
                        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                            pods.insert(p.metadata.name.clone().unwrap_or_default(), p);
                        }
                        watcher::Event::Delete(p) => {
                            pods.remove(&p.metadata.name.clone().unwrap_or_default());
                        }
                        watcher::Event::InitDone => {}
                    }
                    let counted = ready_pods(&pods);
                    if counted > ready {
                        ready = counted;
                        on_event(BootstrapEvent::Ready { ready, replicas: self.replicas });
                    }
                    if current && ready >= self.replicas {
                        return Ok(());
                    }
                }
                _ = tick.tick() => {
                    if last_pod_check.elapsed() >= Duration::from_secs(2) {
                        last_pod_check = tokio::time::Instant::now();
                        let fatal = self.fatal_pod_problems().await;
                        if !fatal.is_empty() {
                            // The full diagnosis adds a crashing container's last log lines.
                            let diagnosis = match self.diagnose().await {
                                Ok(all) if !all.is_empty() => all,
                                _ => fatal,
                            };
                            return Err(Error::NotReady { replicas: self.replicas, ready, diagnosis });
                        }
                    }
                }
            }
        }
    }

    async fn pods(&self) -> Result<Vec<Pod>, Error> {
        let name = self.name();
        let params = ListParams::default().labels(&format!("{APP_LABEL}={name}"));
        Ok(self
            .api::<Pod>()
            .list(&params)
            .await
            .map_err(|source| Error::ListPods {
                source: RequestError::new("Get", self.url::<Pod>(None), source),
                name,
            })?
            .items)
    }

    /// The pods that can serve builds, as buildx lists them: not terminating, phase Running,
    /// sorted by name.
    pub async fn running_pods(&self) -> Result<Vec<PodInfo>, Error> {
        let mut pods: Vec<PodInfo> = self
            .pods()
            .await?
            .iter()
            .map(pod_info)
            .filter(|p| !p.terminating && p.phase == "Running")
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pods)
    }

    /// Problems that stop pods from ever becoming ready (reported before the timeout).
    async fn fatal_pod_problems(&self) -> Vec<String> {
        let Ok(pods) = self.pods().await else {
            return Vec::new();
        };
        let problems: Vec<Vec<String>> = pods.iter().map(|p| pod_problems(p, true)).collect();
        // Only fail early when every pod is stuck.
        if problems.is_empty() || problems.iter().any(Vec::is_empty) {
            return Vec::new();
        }
        // A cluster autoscaler that is adding a node for a pod the scheduler refused.
        let unschedulable = problems
            .iter()
            .flatten()
            .any(|p| p.contains(": Unschedulable: "));
        if unschedulable && self.scale_up_triggered(&pods).await {
            return Vec::new();
        }
        problems.into_iter().flatten().collect()
    }

    /// Whether a cluster autoscaler said it is adding a node for one of `pods` (a
    /// `TriggeredScaleUp` event). Events that cannot be read count as none.
    async fn scale_up_triggered(&self, pods: &[Pod]) -> bool {
        let params = ListParams::default().fields("reason=TriggeredScaleUp");
        let Ok(events) = self
            .api::<k8s_openapi::api::core::v1::Event>()
            .list(&params)
            .await
        else {
            return false;
        };
        events.items.iter().any(|e| {
            e.involved_object.kind.as_deref() == Some("Pod")
                && pods
                    .iter()
                    .any(|p| p.metadata.name.is_some() && p.metadata.name == e.involved_object.name)
        })
    }

    /// What happened to `pod` if it can no longer serve builds: `was deleted`, `is being
    /// deleted`, `stopped running (PHASE)`, `restarted its buildkitd container` or `is no
    /// longer ready`; `None` while it runs and is ready, or when the API cannot tell.
    pub async fn pod_fate(&self, pod: &str) -> Option<String> {
        let found = match self.api::<Pod>().get_opt(pod).await {
            Ok(found) => found,
            Err(_) => return None,
        };
        let Some(p) = found else {
            return Some("was deleted".to_owned());
        };
        if p.metadata.deletion_timestamp.is_some() {
            return Some("is being deleted".to_owned());
        }
        let info = pod_info(&p);
        if info.phase != "Running" {
            return Some(format!("stopped running ({})", info.phase));
        }
        let restarted = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .any(|c| {
                c.name == kbx_manifest::CONTAINER_NAME
                    && c.state.as_ref().is_some_and(|s| s.running.is_none())
            });
        if restarted {
            return Some(format!(
                "stopped its {} container",
                kbx_manifest::CONTAINER_NAME
            ));
        }
        (!info.ready).then(|| "is no longer ready".to_owned())
    }

    /// Why `pod` cannot be reached through exec although the API reports it running: `Some`
    /// with the node and the API server's answer (e.g. `error dialing backend: … connection
    /// refused` while the node's kubelet is down), `None` when a new exec stream opens within
    /// 10 s (or the pod cannot be read). For after a build's connection broke.
    pub async fn pod_unreachable(&self, pod: &str) -> Option<String> {
        let node = match self.api::<Pod>().get_opt(pod).await {
            Ok(Some(p)) => p.spec.and_then(|s| s.node_name).unwrap_or_default(),
            _ => return None,
        };
        let quiet: std::sync::Arc<dyn Fn(&str) + Send + Sync> = std::sync::Arc::new(|_| {});
        let probe = tokio::time::timeout(PROBE_LIMIT, self.dial(pod, quiet)).await;
        let cause = match probe {
            Ok(Ok(_stream)) => return None,
            Ok(Err(e)) => innermost_cause(&e),
            Err(_) => format!("no answer within {}s", PROBE_LIMIT.as_secs()),
        };
        let cause = cause.trim_end_matches([':', ' ', '\n']);
        Some(format!(
            "cannot be reached through the kubelet of its node {node:?} ({cause})"
        ))
    }

    /// One line per thing that keeps a pod from being ready, with the last log lines of
    /// crashing containers.
    pub async fn diagnose(&self) -> Result<Vec<String>, Error> {
        let pods = self.pods().await?;
        if pods.is_empty() {
            return Ok(vec![format!(
                "no pods with label {APP_LABEL}={} exist",
                self.name()
            )]);
        }
        let mut out = Vec::new();
        for pod in &pods {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mut problems = pod_problems(pod, false);
            let crashing = problems.iter().any(|p| p.contains("CrashLoopBackOff"));
            if crashing {
                let params = LogParams {
                    container: Some(kbx_manifest::CONTAINER_NAME.to_owned()),
                    previous: true,
                    tail_lines: Some(CRASH_LOG_TAIL),
                    ..LogParams::default()
                };
                if let Ok(logs) = self.api::<Pod>().logs(&name, &params).await {
                    let (what, lines) = crash_log_excerpt(&logs);
                    if !lines.is_empty() {
                        problems.push(format!("pod {name}: {what}: {}", lines.join(" | ")));
                    }
                }
            }
            out.extend(problems);
        }
        Ok(out)
    }

    /// Starts `buildctl dial-stdio` in `pod`'s `buildkitd` container: a byte stream to its
    /// BuildKit. The daemon's stderr lines go to `stderr`.
    pub async fn dial(
        &self,
        pod: &str,
        stderr: std::sync::Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Result<crate::ExecStream, Error> {
        crate::ExecStream::dial(
            &self.api::<Pod>(),
            pod,
            kbx_manifest::CONTAINER_NAME,
            stderr,
        )
        .await
        .map_err(|e| match e {
            Error::Exec { pod, source } => Error::Exec {
                pod,
                source: source.with_server(&self.server),
            },
            other => other,
        })
    }

    /// Deletes the node's objects: the workload, its ConfigMaps and, for a StatefulSet unless
    /// `keep_state`, its PersistentVolumeClaims. Objects already gone are not an error.
    ///
    /// # Deviation
    /// buildx never deletes the claims of a StatefulSet builder (`--keep-state` has no effect).
    pub async fn remove(&self, keep_state: bool) -> Result<(), Error> {
        let name = self.name();
        let dp = DeleteParams::background();
        let kind = self.manifests.workload.kind();
        let deleted = match &self.manifests.workload {
            Workload::Deployment(_) => self
                .api::<Deployment>()
                .delete(&name, &dp)
                .await
                .map(|_| ()),
            Workload::StatefulSet(_) => self
                .api::<StatefulSet>()
                .delete(&name, &dp)
                .await
                .map(|_| ()),
        };
        let url = match &self.manifests.workload {
            Workload::Deployment(_) => self.url::<Deployment>(Some(&name)),
            Workload::StatefulSet(_) => self.url::<StatefulSet>(Some(&name)),
        };
        ignore_not_found(deleted).map_err(|source| Error::Delete {
            kind,
            name: name.clone(),
            source: RequestError::new("Delete", url, source),
        })?;
        for cm in &self.manifests.config_maps {
            let cm_name = cm.metadata.name.clone().unwrap_or_default();
            ignore_not_found(
                self.api::<ConfigMap>()
                    .delete(&cm_name, &dp)
                    .await
                    .map(|_| ()),
            )
            .map_err(|source| Error::Delete {
                kind: "ConfigMap",
                source: RequestError::new("Delete", self.url::<ConfigMap>(Some(&cm_name)), source),
                name: cm_name,
            })?;
        }
        if let (Workload::StatefulSet(sts), false) = (&self.manifests.workload, keep_state) {
            let templates: Vec<String> = stateful_set_spec(sts)
                .into_iter()
                .flat_map(|s| s.volume_claim_templates.iter().flatten())
                .filter_map(|t| t.metadata.name.clone())
                .collect();
            let pvcs = self.api::<PersistentVolumeClaim>();
            let list = pvcs
                .list(&ListParams::default())
                .await
                .map_err(|source| Error::Delete {
                    kind: "PersistentVolumeClaim",
                    name: name.clone(),
                    source: RequestError::new(
                        "Get",
                        self.url::<PersistentVolumeClaim>(None),
                        source,
                    ),
                })?;
            for pvc in list.items {
                let pvc_name = pvc.metadata.name.unwrap_or_default();
                if templates.iter().any(|t| is_claim_of(&pvc_name, t, &name)) {
                    ignore_not_found(pvcs.delete(&pvc_name, &dp).await.map(|_| ())).map_err(
                        |source| Error::Delete {
                            kind: "PersistentVolumeClaim",
                            name: pvc_name.clone(),
                            source: RequestError::new(
                                "Delete",
                                self.url::<PersistentVolumeClaim>(Some(&pvc_name)),
                                source,
                            ),
                        },
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// `<template>-<statefulset>-<ordinal>`: the claim a StatefulSet pod gets from a template.
pub(crate) fn is_claim_of(pvc: &str, template: &str, sts: &str) -> bool {
    pvc.strip_prefix(template)
        .and_then(|r| r.strip_prefix('-'))
        .and_then(|r| r.strip_prefix(sts))
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|ordinal| !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit()))
}

fn ignore_not_found(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}

fn inactive_reason(e: &RequestError) -> String {
    if e.is_not_found() {
        return NOT_CREATED.to_owned();
    }
    let mut text = e.to_string();
    let mut last = text.clone();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // kube's and hyper's errors end with their cause's text: once is enough.
        let next = s.to_string();
        if !last.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        last = next;
        source = s.source();
    }
    text
}

/// Server-side applies an object; tells whether it was created, updated or left as it was.
async fn apply<K>(
    api: &Api<K>,
    url: &str,
    name: &str,
    obj: &K,
    params: &PatchParams,
) -> Result<Change, RequestError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let got = api
        .get_opt(name)
        .await
        .map_err(|e| RequestError::new("Get", url, e))?;
    let before = match got {
        Some(live) => live.meta().resource_version.clone(),
        None => None,
    };
    let mut obj = serde_json::to_value(obj).unwrap_or_default();
    if let Some(map) = obj.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| K::api_version(&Default::default()).into());
        map.entry("kind")
            .or_insert_with(|| K::kind(&Default::default()).into());
    }
    let after = api
        .patch(name, params, &Patch::Apply(&obj))
        .await
        .map_err(|e| RequestError::new("Patch", url, e))?;
    Ok(match before {
        None => Change::Created,
        Some(rv) if after.meta().resource_version.as_ref() == Some(&rv) => Change::Unchanged,
        Some(_) => Change::Updated,
    })
}

/// Readiness of one workload revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) ready: i32,
    /// The controller has seen the latest spec and all replicas run it.
    pub(crate) current: bool,
}

pub(crate) fn progress_of_deployment(d: &Deployment) -> Progress {
    let want = deployment_spec(d).and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    Progress {
        ready: status.ready_replicas.unwrap_or(0),
        current: observed && status.updated_replicas.unwrap_or(0) >= want,
    }
}

pub(crate) fn progress_of_stateful_set(s: &StatefulSet) -> Progress {
    let want = stateful_set_spec(s).and_then(|s| s.replicas).unwrap_or(1);
    let status = s.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0);
    let revision_done =
        status.update_revision.is_none() || status.update_revision == status.current_revision;
    Progress {
        ready: status.ready_replicas.unwrap_or(0),
        current: observed && (revision_done || status.updated_replicas.unwrap_or(0) >= want),
    }
}

/// Pods of `pods` that [`pod_is_ready`] now.
fn ready_pods(pods: &BTreeMap<String, Pod>) -> i32 {
    let now = k8s_openapi::jiff::Timestamp::now();
    let n = pods.values().filter(|p| pod_is_ready(p, now)).count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// How long after the builder container started a passed startup probe stands in for the
/// readiness probe, beyond the readiness period: the probe's own run time.
const FIRST_READINESS_GRACE_SECONDS: i64 = 5;

/// How many of a crashed container's last log lines [`NodeDriver::diagnose`] reads.
const CRASH_LOG_TAIL: i64 = 200;

/// What of a crashed container's log tail to show: its last lines that look like errors (up to
/// three: `error`, `fatal`, `panic`, `failed`, `not defined`, `invalid`, `unknown`, `denied`,
/// `no such`, `cannot`, but not logrus lines below error level), else its last five lines. A daemon that prints its usage after the
/// cause (buildkitd on a bad flag) would otherwise push the cause out of a short tail.
fn crash_log_excerpt(logs: &str) -> (&'static str, Vec<&str>) {
    const ERROR_WORDS: &[&str] = &[
        "error",
        "fatal",
        "panic",
        "failed",
        "not defined",
        "invalid",
        "unknown",
        "denied",
        "no such",
        "cannot",
    ];
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            // logrus lines below error level are not the cause.
            let minor = ["level=debug", "level=info", "level=warning"]
                .iter()
                .any(|m| lower.contains(m));
            !minor && ERROR_WORDS.iter().any(|w| lower.contains(w))
        })
        .collect();
    if errors.is_empty() {
        (
            "last log lines",
            lines[lines.len().saturating_sub(5)..].to_vec(),
        )
    } else {
        (
            "error lines of its log",
            errors[errors.len().saturating_sub(3)..].to_vec(),
        )
    }
}

/// How long [`NodeDriver::pod_unreachable`] waits for a new exec stream.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The last cause in `e`'s chain: what the API server or the socket said.
fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// Whether `pod` can take builds at `now`: it runs, is not being deleted, and either its
/// `Ready` condition is true or the builder container's startup probe has passed and the
/// container started less than one readiness period (plus a few seconds) ago.
///
/// The startup probe runs the readiness probe's command (`buildctl debug workers`), so a pod
/// whose startup probe passed has passed the readiness check too; only the kubelet's readiness
/// ticker, which on Kubernetes 1.20 fires up to one period after the container starts, has not
/// caught up. After that period the `Ready` condition is the truth again, so a daemon that
/// stops answering is not counted for long.
pub fn pod_is_ready(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    if pod.metadata.deletion_timestamp.is_some() || status.phase.as_deref() != Some("Running") {
        return false;
    }
    if status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
    {
        return true;
    }
    let name = kbx_manifest::CONTAINER_NAME;
    let Some(container) = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == name))
    else {
        return false;
    };
    let (Some(_), Some(readiness)) = (&container.startup_probe, &container.readiness_probe) else {
        return false;
    };
    let period = i64::from(readiness.period_seconds.unwrap_or(10).max(1));
    let Some(started_at) = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == name && c.started == Some(true))
        .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
    else {
        return false;
    };
    let window =
        k8s_openapi::jiff::SignedDuration::from_secs(period + FIRST_READINESS_GRACE_SECONDS);
    now.duration_since(started_at.0) < window
}

pub(crate) fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.clone().unwrap_or_default();
    let ready = pod_is_ready(pod, k8s_openapi::jiff::Timestamp::now());
    let platforms = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PLATFORM_ANNOTATION))
        .and_then(|v| Platform::parse_list([v.as_str()], &Platform::local()).ok())
        .unwrap_or_default();
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status.phase.unwrap_or_default(),
        ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        platforms,
    }
}

/// Waiting reasons that never resolve on their own.
const FATAL_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CrashLoopBackOff",
];

/// How long the scheduler must have found no node for a pod, for static reasons only, before
/// bootstrap gives up on it ([`unschedulable_for_good`]).
pub(crate) const UNSCHEDULABLE_GRACE: Duration = Duration::from_secs(10);

/// Whether a scheduler message (`0/2 nodes are available: …`) names only reasons that no
/// scheduling retry can change: node selectors or affinity that match no node, and taints the
/// pod does not tolerate other than the node lifecycle ones (`node.kubernetes.io/…`, which come
/// and go with a node's state). Resources, ports, volumes and cordoned nodes may free up.
pub(crate) fn unschedulable_for_good(message: &str) -> bool {
    let Some((_, clauses)) = message.split_once("nodes are available: ") else {
        return false;
    };
    // Kubernetes 1.24+ appends the preemption verdict after the reasons.
    let clauses = clauses
        .split_once(" preemption:")
        .map_or(clauses, |(c, _)| c)
        .trim()
        .trim_end_matches('.');
    // Clauses are `N node(s) …` (or `N Insufficient cpu`) joined by ", "; a taint's text holds
    // ", " itself, so a piece that does not start with a count belongs to the clause before.
    let mut merged: Vec<String> = Vec::new();
    for piece in clauses.split(", ") {
        match merged.last_mut() {
            Some(last) if !piece.starts_with(|c: char| c.is_ascii_digit()) => {
                last.push_str(", ");
                last.push_str(piece);
            }
            _ => merged.push(piece.to_owned()),
        }
    }
    !merged.is_empty()
        && merged.iter().all(|clause| {
            let static_mismatch = clause.contains("didn't match node selector")
                || clause.contains("didn't match Pod's node affinity");
            let foreign_taint = (clause.contains("had taint {")
                || clause.contains("had untolerated taint {"))
                && !clause.contains("{node.kubernetes.io/")
                && !clause.contains("{node.cloudprovider.kubernetes.io/");
            static_mismatch || foreign_taint
        })
}

/// What keeps one pod from being ready; with `fatal_only`, only what will not fix itself.
pub(crate) fn pod_problems(pod: &Pod, fatal_only: bool) -> Vec<String> {
    pod_problems_at(pod, fatal_only, k8s_openapi::jiff::Timestamp::now())
}

/// [`pod_problems`] at time `now`.
///
/// # Deviation
/// buildx waits for the whole `timeout` when no node can take a pod. A pod that the
/// scheduler has refused for [`UNSCHEDULABLE_GRACE`] for reasons no retry changes
/// ([`unschedulable_for_good`]: a node selector, affinity or taint that matches no node) is a
/// fatal problem, so bootstrap fails at once with the scheduler's message. A cluster
/// autoscaler that is adding a node for the pod stops this ([`NodeDriver`]'s wait looks for
/// its `TriggeredScaleUp` event). Deviation K4.
pub(crate) fn pod_problems_at(
    pod: &Pod,
    fatal_only: bool,
    now: k8s_openapi::jiff::Timestamp,
) -> Vec<String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut out = Vec::new();
    for c in status.conditions.iter().flatten() {
        if c.type_ != "PodScheduled" || c.status != "False" {
            continue;
        }
        let for_good = c.reason.as_deref() == Some("Unschedulable")
            && unschedulable_for_good(c.message.as_deref().unwrap_or_default())
            && c.last_transition_time.as_ref().is_some_and(|t| {
                now.duration_since(t.0)
                    >= k8s_openapi::jiff::SignedDuration::from_secs(
                        UNSCHEDULABLE_GRACE.as_secs().cast_signed(),
                    )
            });
        if !fatal_only || for_good {
            out.push(format!(
                "pod {name}: {}: {}",
                c.reason.as_deref().unwrap_or("not scheduled"),
                c.message.as_deref().unwrap_or_default()
            ));
        }
    }
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for cs in containers {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            let fatal = FATAL_WAITING.contains(&reason.as_str());
            if fatal || (!fatal_only && !reason.is_empty() && reason != "ContainerCreating") {
                let message = w
                    .message
                    .clone()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                out.push(format!(
                    "pod {name}: container {}: {reason}{message}",
                    cs.name
                ));
            }
        }
        if !fatal_only && let Some(t) = cs.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            out.push(format!(
                "pod {name}: container {} exited with code {}{}",
                cs.name,
                t.exit_code,
                t.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
    }
    if !fatal_only && out.is_empty() {
        let phase = status.phase.unwrap_or_else(|| "Unknown".to_owned());
        if phase != "Running" {
            out.push(format!("pod {name}: {phase}"));
        } else if !pod_info(pod).ready {
            out.push(format!(
                "pod {name}: running but not ready (readiness probe failing)"
            ));
        }
    }
    out
}

/// Labels the CLI uses to find every object of a builder node.
pub fn selector_labels(manifests: &Manifests) -> BTreeMap<String, String> {
    manifests
        .workload
        .metadata()
        .labels
        .clone()
        .unwrap_or_default()
}

fn deployment_spec(d: &Deployment) -> Option<&DeploymentSpec> {
    MaybeOption::<DeploymentSpec>::as_option(&d.spec)
}

fn stateful_set_spec(s: &StatefulSet) -> Option<&StatefulSetSpec> {
    MaybeOption::<StatefulSetSpec>::as_option(&s.spec)
}

/// The readiness carried by a watch event, if it carries an object.
fn map_event<K>(event: watcher::Event<K>, f: impl Fn(K) -> Progress) -> watcher::Event<Progress> {
    match event {
        watcher::Event::Apply(k) => watcher::Event::Apply(f(k)),
        watcher::Event::InitApply(k) => watcher::Event::InitApply(f(k)),
        watcher::Event::Delete(k) => watcher::Event::Delete(f(k)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, phase: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    /// A running builder pod, not Ready, whose container started at `started` with the startup
    /// probe passed or not, and probes as kbx renders them (readiness every 30 s).
    fn started_pod(started: &str, startup_passed: bool, startup_probe: bool) -> Pod {
        use k8s_openapi::api::core::v1::{Container, ContainerStateRunning, PodSpec, Probe};
        let mut p = pod("a", "Running", false);
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: kbx_manifest::CONTAINER_NAME.into(),
                readiness_probe: Some(Probe {
                    period_seconds: Some(30),
                    ..Probe::default()
                }),
                startup_probe: startup_probe.then(|| Probe {
                    period_seconds: Some(1),
                    ..Probe::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        });
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: kbx_manifest::CONTAINER_NAME.into(),
            started: Some(startup_passed),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(started.parse().unwrap())),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        p
    }

    #[test]
    fn a_passed_startup_probe_counts_as_ready_for_one_readiness_period() {
        let at = |t: &str| -> k8s_openapi::jiff::Timestamp { t.parse().unwrap() };
        let p = started_pod("2026-01-01T00:00:00Z", true, true);
        assert!(pod_is_ready(&p, at("2026-01-01T00:00:01Z")));
        assert!(pod_is_ready(&p, at("2026-01-01T00:00:34Z")));
        // 30 s period + 5 s: the readiness probe has had its turn; Ready is the truth again.
        assert!(!pod_is_ready(&p, at("2026-01-01T00:00:35Z")));
        assert!(!pod_is_ready(&p, at("2026-01-01T01:00:00Z")));
        // The startup probe has not passed yet.
        let p = started_pod("2026-01-01T00:00:00Z", false, true);
        assert!(!pod_is_ready(&p, at("2026-01-01T00:00:01Z")));
        // Without a startup probe, `started` only means the container runs.
        let p = started_pod("2026-01-01T00:00:00Z", true, false);
        assert!(!pod_is_ready(&p, at("2026-01-01T00:00:01Z")));
        // Being deleted, or not running, is never ready.
        let mut p = started_pod("2026-01-01T00:00:00Z", true, true);
        p.metadata.deletion_timestamp = Some(Time(at("2026-01-01T00:00:00Z")));
        assert!(!pod_is_ready(&p, at("2026-01-01T00:00:01Z")));
        let mut p = started_pod("2026-01-01T00:00:00Z", true, true);
        p.status.as_mut().unwrap().phase = Some("Pending".into());
        assert!(!pod_is_ready(&p, at("2026-01-01T00:00:01Z")));
        // A Ready pod is ready whatever its probes.
        let ready = pod("b", "Running", true);
        assert!(pod_is_ready(&ready, at("2026-01-01T01:00:00Z")));
    }

    #[test]
    fn the_rendered_builder_container_has_the_probes_the_startup_rule_needs() {
        let opts = kbx_opts::KubernetesOptions::parse([""; 0]).expect("default options");
        let m = kbx_manifest::render(&kbx_manifest::Node::new("kube0", opts)).expect("render");
        let Workload::Deployment(d) = &m.workload else {
            panic!("a Deployment")
        };
        let spec = deployment_spec(d).unwrap().template.spec.as_ref().unwrap();
        let c = spec
            .containers
            .iter()
            .find(|c| c.name == kbx_manifest::CONTAINER_NAME)
            .unwrap();
        assert!(c.startup_probe.is_some() && c.readiness_probe.is_some());
    }

    #[test]
    fn claims_of_a_stateful_set() {
        assert!(is_claim_of("buildkitd-kube0-0", "buildkitd", "kube0"));
        assert!(is_claim_of("buildkitd-kube0-12", "buildkitd", "kube0"));
        assert!(!is_claim_of("buildkitd-kube0-", "buildkitd", "kube0"));
        assert!(!is_claim_of("buildkitd-kube01-0", "buildkitd", "kube0"));
        assert!(!is_claim_of("buildkitd-kube0-0x", "buildkitd", "kube0"));
        assert!(!is_claim_of("other-kube0-0", "buildkitd", "kube0"));
    }

    #[test]
    fn crash_logs_show_the_error_lines_before_a_usage_text() {
        let mut logs = String::from(
            "time=\"…\" level=warning msg=\"failed to get disk size: no such file or directory\"\n\
             flag provided but not defined: -no-such-flag\n",
        );
        for i in 0..40 {
            logs.push_str(&format!("   --opt{i} value   an option\n"));
        }
        assert_eq!(
            crash_log_excerpt(&logs),
            (
                "error lines of its log",
                vec!["flag provided but not defined: -no-such-flag"]
            )
        );
        let quiet = "one\ntwo\n\nthree\nfour\nfive\nsix\n";
        assert_eq!(
            crash_log_excerpt(quiet),
            (
                "last log lines",
                vec!["two", "three", "four", "five", "six"]
            )
        );
        let many = "error: a\nerror: b\nok\nerror: c\nfatal: d\n";
        assert_eq!(
            crash_log_excerpt(many).1,
            ["error: b", "error: c", "fatal: d"]
        );
        assert_eq!(crash_log_excerpt("").1, Vec::<&str>::new());
    }

    #[test]
    fn pod_info_reads_readiness_termination_and_platforms() {
        let mut p = pod("a", "Running", true);
        p.metadata.annotations = Some(
            [(
                PLATFORM_ANNOTATION.to_owned(),
                "linux/amd64,linux/arm".to_owned(),
            )]
            .into(),
        );
        let info = pod_info(&p);
        assert!(info.ready && !info.terminating);
        let platforms: Vec<String> = info.platforms.iter().map(ToString::to_string).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm/v7"]);
        p.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert!(pod_info(&p).terminating);
    }

    #[test]
    fn problems_name_the_reason() {
        let mut p = pod("kube0-abc", "Pending", false);
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "buildkitd".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ImagePullBackOff".into()),
                    message: Some("Back-off pulling image \"x\"".into()),
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        }]);
        let fatal = pod_problems(&p, true);
        assert_eq!(
            fatal,
            ["pod kube0-abc: container buildkitd: ImagePullBackOff: Back-off pulling image \"x\""]
        );

        let mut unschedulable = pod("kube0-def", "Pending", false);
        unschedulable.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("0/1 nodes are available: 1 node(s) didn't match node selector.".into()),
            ..PodCondition::default()
        }]);
        assert!(
            pod_problems(&unschedulable, true).is_empty(),
            "no transition time: may have just happened"
        );
        let at =
            |secs: i64| k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap();
        unschedulable
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .last_transition_time = Some(Time(at(0)));
        assert!(
            pod_problems_at(&unschedulable, true, at(9)).is_empty(),
            "within the grace period"
        );
        assert_eq!(
            pod_problems_at(&unschedulable, true, at(10)),
            [
                "pod kube0-def: Unschedulable: 0/1 nodes are available: 1 node(s) didn't match node selector."
            ]
        );
        unschedulable
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .message = Some("0/1 nodes are available: 1 Insufficient cpu.".into());
        assert!(
            pod_problems_at(&unschedulable, true, at(60)).is_empty(),
            "resources may free up"
        );
        unschedulable
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .message =
            Some("0/1 nodes are available: 1 node(s) didn't match node selector.".into());
        assert_eq!(
            pod_problems(&unschedulable, false),
            [
                "pod kube0-def: Unschedulable: 0/1 nodes are available: 1 node(s) didn't match node selector."
            ]
        );
        assert_eq!(
            pod_problems(&pod("x", "Running", false), false),
            ["pod x: running but not ready (readiness probe failing)"]
        );
        assert!(pod_problems(&pod("y", "Running", true), false).is_empty());
    }

    #[test]
    fn unschedulable_for_good_only_for_static_reasons() {
        for message in [
            "0/1 nodes are available: 1 node(s) didn't match node selector.",
            "0/2 nodes are available: 1 node(s) didn't match node selector, 1 node(s) had taint {dedicated: build}, that the pod didn't tolerate.",
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
            "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.",
        ] {
            assert!(unschedulable_for_good(message), "{message}");
        }
        for message in [
            "",
            "no nodes available to schedule pods",
            "0/1 nodes are available: 1 Insufficient cpu.",
            "0/2 nodes are available: 1 Insufficient memory, 1 node(s) didn't match node selector.",
            "0/1 nodes are available: 1 node(s) had taint {node.kubernetes.io/not-ready: }, that the pod didn't tolerate.",
            "0/1 nodes are available: 1 node(s) were unschedulable.",
            "0/1 nodes are available: 1 pod has unbound immediate PersistentVolumeClaims.",
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
        ] {
            assert!(!unschedulable_for_good(message), "{message}");
        }
    }

    #[test]
    fn deployment_progress_needs_the_current_generation() {
        use k8s_openapi::api::apps::v1::DeploymentStatus;
        let mut d = Deployment::default();
        d.metadata.generation = Some(2);
        d.spec = MaybeOption::wrap(DeploymentSpec {
            replicas: Some(2),
            ..DeploymentSpec::default()
        });
        d.status = Some(DeploymentStatus {
            observed_generation: Some(1),
            ready_replicas: Some(2),
            updated_replicas: Some(2),
            ..DeploymentStatus::default()
        });
        assert_eq!(
            progress_of_deployment(&d),
            Progress {
                ready: 2,
                current: false
            }
        );
        d.status.as_mut().unwrap().observed_generation = Some(2);
        d.status.as_mut().unwrap().updated_replicas = Some(1);
        assert_eq!(
            progress_of_deployment(&d),
            Progress {
                ready: 2,
                current: false
            }
        );
        d.status.as_mut().unwrap().updated_replicas = Some(2);
        assert_eq!(
            progress_of_deployment(&d),
            Progress {
                ready: 2,
                current: true
            }
        );
    }
}

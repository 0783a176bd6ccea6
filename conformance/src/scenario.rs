//! Helpers the scenarios share: a namespace per scenario, the builder Deployment, waits with
//! deadlines, and exec into pods (captured, or as a byte stream for `buildctl dial-stdio`).
//!
//! The builder Deployment is shaped like the one buildx renders for the default driver options
//! (container `buildkitd`, privileged, `buildctl debug workers` probes). Once `kbx-manifest`
//! renders it, [`builder_deployment`] gives way to the rendered object; the waits and exec
//! helpers stay.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, ExecAction, Namespace, Node, PersistentVolume, Pod, PodSpec,
    PodTemplateSpec, Probe, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Api;
use kube::api::{AttachParams, DeleteParams, ListParams, PostParams};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::Error;

/// The label every object the suite creates carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kbx-conformance");

/// A namespace created for one scenario; [`TestNamespace::delete`] removes it.
#[derive(Clone)]
pub struct TestNamespace {
    client: kube::Client,
    name: String,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish()
    }
}

impl TestNamespace {
    /// Creates `kbx-conformance-<suffix>-<pid>`.
    pub async fn create(client: &kube::Client, suffix: &str) -> Result<TestNamespace, Error> {
        let name = format!("kbx-conformance-{suffix}-{}", std::process::id());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.0.to_owned(),
                    MANAGED_BY.1.to_owned(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        with_deadline(
            "creating a namespace",
            Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns),
        )
        .await?;
        Ok(TestNamespace {
            client: client.clone(),
            name,
        })
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace (and everything in it).
    pub async fn delete(self) -> Result<(), Error> {
        with_deadline(
            "deleting a namespace",
            Api::<Namespace>::all(self.client).delete(&self.name, &DeleteParams::default()),
        )
        .await?;
        Ok(())
    }
}

/// Deletes the namespaces this process created (label [`MANAGED_BY`] and the name suffix
/// `-<pid>`), e.g. those a failed scenario could not delete. Nothing else is touched.
pub async fn delete_own_namespaces(client: &kube::Client) {
    let api = Api::<Namespace>::all(client.clone());
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let Ok(list) = with_deadline(
        "listing namespaces",
        api.list(&ListParams::default().labels(&selector)),
    )
    .await
    else {
        return;
    };
    let suffix = format!("-{}", std::process::id());
    for ns in list.items {
        if let Some(name) = ns
            .metadata
            .name
            .filter(|n| n.starts_with("kbx-conformance-") && n.ends_with(&suffix))
        {
            let _ = with_deadline(
                "deleting a namespace",
                api.delete(&name, &DeleteParams::default()),
            )
            .await;
        }
    }
}

/// Whether `name` is one of this process's objects: `kbx-conformance-…-<pid>` or a name
/// derived from one (`kbx-conformance-…-<pid>-pv`).
fn is_own(name: &str) -> bool {
    let pid = std::process::id().to_string();
    name.starts_with("kbx-conformance-") && name.split('-').any(|part| part == pid)
}

/// On a cluster scenarios share, what one scenario leaves for the next: deletes this process's
/// namespaces (see [`delete_own_namespaces`]) and its persistent volumes (label [`MANAGED_BY`],
/// a name from one of its namespaces), then waits up to `limit` until they are gone. Returns
/// the names still there after `limit` (empty: clean).
pub async fn clean_own_objects(client: &kube::Client, limit: Duration) -> Vec<String> {
    let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let params = ListParams::default().labels(&selector);
    let namespaces = Api::<Namespace>::all(client.clone());
    // Pods first and without grace: the namespace controller otherwise waits out each pod's
    // termination grace period before it looks again, which takes longer than a new cluster.
    if let Ok(list) = with_deadline("listing namespaces", namespaces.list(&params)).await {
        let now = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        for name in list.items.into_iter().filter_map(|n| n.metadata.name) {
            if is_own(&name) {
                let _ = with_deadline(
                    "deleting a namespace's pods",
                    Api::<Pod>::namespaced(client.clone(), &name)
                        .delete_collection(&now, &ListParams::default()),
                )
                .await;
            }
        }
    }
    delete_own_namespaces(client).await;
    let pvs = Api::<PersistentVolume>::all(client.clone());
    if let Ok(list) = with_deadline("listing persistent volumes", pvs.list(&params)).await {
        for name in list.items.into_iter().filter_map(|pv| pv.metadata.name) {
            if is_own(&name) {
                let _ = with_deadline(
                    "deleting a persistent volume",
                    pvs.delete(&name, &DeleteParams::default()),
                )
                .await;
            }
        }
    }
    let until = tokio::time::Instant::now() + limit;
    loop {
        let mut left = Vec::new();
        match with_deadline("listing namespaces", namespaces.list(&params)).await {
            Ok(list) => left.extend(
                list.items
                    .into_iter()
                    .filter_map(|n| n.metadata.name)
                    .filter(|n| is_own(n))
                    .map(|n| format!("namespace {n}")),
            ),
            Err(e) => left.push(format!("namespaces unknown: {e}")),
        }
        match with_deadline("listing persistent volumes", pvs.list(&params)).await {
            Ok(list) => left.extend(
                list.items
                    .into_iter()
                    .filter_map(|pv| pv.metadata.name)
                    .filter(|n| is_own(n))
                    .map(|n| format!("persistent volume {n}")),
            ),
            Err(e) => left.push(format!("persistent volumes unknown: {e}")),
        }
        if left.is_empty() || tokio::time::Instant::now() >= until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until every node is Ready (e.g. after a kubelet restart), polling twice a second.
pub async fn wait_nodes_ready(client: &kube::Client, limit: Duration) -> Result<(), Error> {
    let nodes = Api::<Node>::all(client.clone());
    let until = tokio::time::Instant::now() + limit;
    loop {
        let ready = nodes
            .list(&ListParams::default())
            .await
            .is_ok_and(|l| l.items.iter().all(|n| crate::local::node_is_ready(Some(n))));
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            return Err(Error::Timeout {
                what: "every node to be Ready".into(),
                after: limit,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn with_deadline<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    let limit = Duration::from_secs(30);
    tokio::time::timeout(limit, call)
        .await
        .map_err(|_| Error::Timeout {
            what: what.to_owned(),
            after: limit,
        })?
        .map_err(|e| Error::kube(what, e))
}

/// The `buildctl debug workers` probe buildx puts on the `buildkitd` container.
fn buildctl_probe() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["buildctl".into(), "debug".into(), "workers".into()]),
        }),
        failure_threshold: Some(3),
        initial_delay_seconds: Some(5),
        period_seconds: Some(30),
        success_threshold: Some(1),
        timeout_seconds: Some(60),
        ..Default::default()
    }
}

/// A builder Deployment like buildx's default rendering, with `image` and `replicas`, plus an
/// emptyDir at `/var/lib/buildkit` for the daemon's data.
pub fn builder_deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    let labels = BTreeMap::from([
        ("app".to_owned(), name.to_owned()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
    ]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "buildkitd".into(),
                        image: Some(image.into()),
                        args: Some(vec!["--allow-insecure-entitlement=network.host".into()]),
                        security_context: Some(SecurityContext {
                            privileged: Some(true),
                            ..Default::default()
                        }),
                        readiness_probe: Some(buildctl_probe()),
                        liveness_probe: Some(buildctl_probe()),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "buildkitd".into(),
                            mount_path: "/var/lib/buildkit".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "buildkitd".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]),
                    termination_grace_period_seconds: Some(5),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Whether a Deployment has `replicas` ready, up-to-date replicas for its current generation.
pub fn deployment_is_ready(d: Option<&Deployment>, replicas: i32) -> bool {
    let Some(d) = d else { return false };
    let Some(status) = d.status.as_ref() else {
        return false;
    };
    status.observed_generation >= d.metadata.generation
        && status.ready_replicas.unwrap_or(0) == replicas
        && status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
}

/// Creates `deployment` in `ns`.
pub async fn create_deployment(
    client: &kube::Client,
    ns: &str,
    deployment: &Deployment,
) -> Result<Deployment, Error> {
    with_deadline(
        "creating a deployment",
        Api::<Deployment>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), deployment),
    )
    .await
}

/// Waits (with a watch) until Deployment `name` has `replicas` ready replicas.
pub async fn wait_deployment_ready(
    client: &kube::Client,
    ns: &str,
    name: &str,
    replicas: i32,
    limit: Duration,
) -> Result<Deployment, Error> {
    let api = Api::<Deployment>::namespaced(client.clone(), ns);
    let what = format!("deployment {ns}/{name} to have {replicas} ready replicas");
    let cond = kube::runtime::wait::await_condition(api, name, move |d: Option<&Deployment>| {
        deployment_is_ready(d, replicas)
    });
    match tokio::time::timeout(limit, cond).await {
        Ok(Ok(Some(d))) => Ok(d),
        Ok(Ok(None)) => Err(Error::Unexpected(format!(
            "deployment {ns}/{name} was deleted"
        ))),
        Ok(Err(source)) => Err(Error::Wait { what, source }),
        Err(_) => Err(Error::Timeout { what, after: limit }),
    }
}

/// The Running pods with label `app=<app>`, sorted by name.
pub async fn running_pods(client: &kube::Client, ns: &str, app: &str) -> Result<Vec<Pod>, Error> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let list = with_deadline(
        "listing pods",
        api.list(&ListParams::default().labels(&format!("app={app}"))),
    )
    .await?;
    let mut pods: Vec<Pod> = list
        .items
        .into_iter()
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(pods)
}

/// What a command run with exec printed, and whether it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Whether the API reported `Success`.
    pub success: bool,
}

/// Runs `command` in `container` of pod `ns/pod` (no stdin, no TTY) and captures its output.
pub async fn exec_capture(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    container: &str,
    command: &[&str],
    limit: Duration,
) -> Result<ExecOutput, Error> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let what = format!("exec {command:?} in {ns}/{pod}");
    let run = async {
        let mut attached = api
            .exec(pod, command.iter().copied(), &params)
            .await
            .map_err(|e| Error::kube(what.clone(), e))?;
        let status = attached.take_status();
        let mut stdout = attached.stdout();
        let mut stderr = attached.stderr();
        let read_out = async {
            let mut s = String::new();
            if let Some(r) = stdout.as_mut() {
                let _ = r.read_to_string(&mut s).await;
            }
            s
        };
        let read_err = async {
            let mut s = String::new();
            if let Some(r) = stderr.as_mut() {
                let _ = r.read_to_string(&mut s).await;
            }
            s
        };
        let (stdout, stderr) = join(read_out, read_err).await;
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        let success = status.as_ref().and_then(|s| s.status.as_deref()) == Some("Success");
        let _ = attached.join().await;
        Ok::<_, Error>(ExecOutput {
            stdout,
            stderr,
            success,
        })
    };
    tokio::time::timeout(limit, run)
        .await
        .map_err(|_| Error::Timeout { what, after: limit })?
}

/// Runs `command` in `container` of pod `ns/pod` with stdin and stdout joined into one byte
/// stream (stderr discarded, no TTY): the transport `buildctl dial-stdio` provides.
pub async fn exec_stream(
    client: &kube::Client,
    ns: &str,
    pod: &str,
    container: &str,
    command: &[&str],
) -> Result<
    (
        impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
        kube::api::AttachedProcess,
    ),
    Error,
> {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let params = AttachParams::default()
        .container(container)
        .stdin(true)
        .stdout(true)
        .stderr(false);
    let what = format!("exec {command:?} in {ns}/{pod}");
    let mut attached =
        with_deadline(&what, api.exec(pod, command.iter().copied(), &params)).await?;
    let stdin = attached
        .stdin()
        .ok_or_else(|| Error::Unexpected(format!("{what}: no stdin")))?;
    let stdout = attached
        .stdout()
        .ok_or_else(|| Error::Unexpected(format!("{what}: no stdout")))?;
    Ok((tokio::io::join(stdout, stdin), attached))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    #[test]
    fn builder_deployment_has_buildx_probes_and_a_privileged_buildkitd() {
        let d = builder_deployment("b0", "kbx.invalid/buildkit:test", 2);
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.name, "buildkitd");
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
        let probe = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            probe.exec.as_ref().unwrap().command.as_deref().unwrap(),
            ["buildctl", "debug", "workers"]
        );
        assert_eq!(
            (
                probe.period_seconds,
                probe.timeout_seconds,
                probe.initial_delay_seconds
            ),
            (Some(30), Some(60), Some(5))
        );
        assert_eq!(c.liveness_probe, c.readiness_probe);
        assert_eq!(spec.selector.match_labels.unwrap()["app"], "b0");
    }

    #[test]
    fn readiness_needs_every_replica_ready_for_the_current_generation() {
        let mut d = builder_deployment("b0", "img", 2);
        d.metadata.generation = Some(2);
        assert!(!deployment_is_ready(Some(&d), 2));
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(2),
            updated_replicas: Some(2),
            ready_replicas: Some(1),
            ..Default::default()
        });
        assert!(!deployment_is_ready(Some(&d), 2));
        d.status.as_mut().unwrap().ready_replicas = Some(2);
        assert!(deployment_is_ready(Some(&d), 2));
        d.metadata.generation = Some(3);
        assert!(!deployment_is_ready(Some(&d), 2));
        assert!(!deployment_is_ready(None, 2));
    }
}

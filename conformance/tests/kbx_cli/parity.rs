//! Differential scenarios: the real Buildx (Debian's `docker-buildx`, see
//! [`kbx_conformance::buildx`]) and kbx create the same builders on one cluster, and what each
//! wrote to the API server is read back and compared.
//!
//! Every difference is either listed in [`ALLOWED`] with the deviation ID of
//! `docs/deviations.md` that explains it, or fails the scenario with the difference printed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kbx_conformance::Cluster;
use kbx_conformance::buildx::Buildx;
use kbx_conformance::scenario::TestNamespace;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use super::{User, note, scenario};

/// How long each tool's `create --bootstrap` may run (Buildx 0.13 has no `timeout`); the
/// objects exist long before, and bootstrap failing afterwards does not matter here.
const CREATE_LIMIT: Duration = Duration::from_secs(45);

/// One option set: extra `--driver-opt` text (after `namespace=`), extra `create` flags, and
/// `--append`ed nodes (each its own options).
struct Case {
    name: &'static str,
    /// Options Buildx 0.13 does not know (`timeout`, `env.*`, ephemeral storage, …), or a
    /// builder it cannot create.
    needs_newest: bool,
    opts: &'static str,
    flags: &'static [&'static str],
    append: &'static [&'static str],
}

/// The option sets run in `.ci/run`; `KBX_PARITY_ALL=1` (`just parity`) runs [`MORE`] too.
///
/// StatefulSet mode (`persistent-volume-claim.requests.storage`) is newer than both Buildx
/// versions at hand (they refuse the option), so only kbx's own scenarios cover it.
const CASES: &[Case] = &[
    Case {
        needs_newest: false,
        name: "plain",
        opts: "",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "resources",
        opts: "replicas=2,requests.cpu=100m,requests.memory=64Mi,limits.cpu=2,limits.memory=1Gi,\"nodeselector=kubernetes.io/os=linux\",\"labels=team=a,tier=b\",\"annotations=x=1\"",
        flags: &["--platform", "linux/amd64"],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "rootless",
        opts: "rootless=true,\"tolerations=key=k,operator=Exists,effect=NoSchedule\"",
        flags: &["--buildkitd-flags", "--debug"],
        append: &[],
    },
    // Buildx 0.13.1 cannot create it: the API server refuses its Deployment
    // (`volumeMounts[0].name: Not found: "config-1"`).
    Case {
        needs_newest: true,
        name: "config",
        opts: "",
        flags: &["--buildkitd-config", "@CONFIG"],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "appended",
        opts: "loadbalance=random",
        flags: &["--platform", "linux/amd64"],
        append: &["loadbalance=sticky,limits.memory=2Gi"],
    },
];

/// More option sets for `just parity`.
const MORE: &[Case] = &[
    Case {
        needs_newest: true,
        name: "memory",
        opts: "buildkit-root-volume-memory=512Mi,requests.ephemeral-storage=1Gi,env.FOO=bar",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: true,
        name: "qemu",
        opts: "qemu.install=true,qemu.image=tonistiigi/binfmt:latest,default-load=true",
        flags: &["--platform", "linux/amd64,linux/arm64"],
        append: &[],
    },
    Case {
        needs_newest: true,
        name: "scheduling",
        opts: "serviceaccount=builder,schedulername=my-scheduler",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: true,
        name: "ephemeral",
        opts: "requests.ephemeral-storage=1Gi,limits.ephemeral-storage=2Gi,requests.cpu=250m",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "tolerations",
        opts: "\"tolerations=key=a,operator=Equal,value=b,effect=NoExecute,tolerationSeconds=30;key=c,operator=Exists\"",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: true,
        name: "rootless-memory",
        opts: "rootless=true,buildkit-root-volume-memory=1Gi,limits.memory=2Gi",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "custom-image",
        opts: "image=registry.example:5000/tools/buildkit:v0.13.2",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "replicas",
        opts: "replicas=3,loadbalance=sticky",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: true,
        name: "env",
        opts: "env.BUILDKIT_STEP_LOG_MAX_SIZE=1048576,env.HTTP_PROXY=http://proxy.example:3128,env.NO_PROXY=.svc",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "flags",
        opts: "",
        flags: &[
            "--buildkitd-flags",
            "--allow-insecure-entitlement security.insecure --debug",
        ],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "platforms",
        opts: "",
        flags: &["--platform", "linux/amd64,linux/arm64,linux/arm/v7"],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "metadata",
        opts: "\"labels=team=a,tier=b,app.kubernetes.io/part-of=ci\",\"annotations=x=1,example.com/owner=ops\"",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "limits",
        opts: "limits.cpu=500m,limits.memory=256Mi",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "qemu-image",
        opts: "qemu.image=registry.example:5000/binfmt:v9",
        flags: &[],
        append: &[],
    },
    Case {
        needs_newest: false,
        name: "three-nodes",
        opts: "\"nodeselector=kubernetes.io/arch=amd64\"",
        flags: &["--platform", "linux/amd64"],
        append: &[
            "\"nodeselector=kubernetes.io/arch=arm64\",replicas=2",
            "\"nodeselector=kubernetes.io/os=linux\",loadbalance=random",
        ],
    },
];

/// Differences that a deviation explains: a JSON path prefix (with `*` for any array index)
/// and the deviation ID.
const ALLOWED: &[(&str, &str)] = &[
    // kbx's startup probe (M10) and v0.34's probes, which 0.29.1 and 0.13.1 predate (M11).
    (".spec.template.spec.containers[*].startupProbe", "M10"),
    (".spec.template.spec.containers[*].livenessProbe", "M11"),
    (
        ".spec.template.spec.containers[*].readinessProbe.periodSeconds",
        "M11",
    ),
    (
        ".spec.template.spec.containers[*].readinessProbe.timeoutSeconds",
        "M11",
    ),
    // Buildx's rootless AppArmor annotation leaks onto the workload and its ConfigMaps.
    (
        ".metadata.annotations.container.apparmor.security.beta.kubernetes.io/buildkitd",
        "M5",
    ),
];

/// Differences allowed in one option set only: (option set, JSON path prefix, deviation ID).
const CASE_ALLOWED: &[(&str, &str, &str)] = &[
    // Rootless with a memory volume: Buildx 0.29.1 mounts it at /var/lib/buildkit, which
    // rootless BuildKit does not use; kbx makes the rootless state directory memory-backed (V3).
    (
        "rootless-memory",
        ".spec.template.spec.containers[0].volumeMounts",
        "V3",
    ),
    ("rootless-memory", ".spec.template.spec.volumes", "V3"),
];

/// A buildkitd.toml with a registry mirror, an insecure registry and a registry CA file.
fn buildkitd_config(home: &std::path::Path) -> std::path::PathBuf {
    let ca = home.join("reg-ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIBparitytest\n-----END CERTIFICATE-----\n",
    )
    .expect("write CA");
    let config = home.join("buildkitd.toml");
    std::fs::write(
        &config,
        format!(
            "debug = true\n\n[registry.\"docker.io\"]\n  mirrors = [\"mirror.example:5000\"]\n\n[registry.\"reg.example:5000\"]\n  http = true\n  insecure = true\n  ca = [{:?}]\n",
            ca.display().to_string()
        ),
    )
    .expect("write buildkitd.toml");
    config
}

/// The builders' objects in `ns`, keyed `KIND/NAME`, with what must differ removed.
async fn objects(client: &kube::Client, ns: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    let lp = ListParams::default();
    let mut out = BTreeMap::new();
    let mut put = |kind: &str, value: Value| {
        let name = value["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.insert(format!("{kind}/{name}"), normalise(value, ns));
    };
    for d in Api::<Deployment>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        put("deployment", serde_json::to_value(d)?);
    }
    for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        put("statefulset", serde_json::to_value(s)?);
    }
    for c in Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&lp)
        .await?
    {
        if c.metadata.name.as_deref() != Some("kube-root-ca.crt") {
            put("configmap", serde_json::to_value(c)?);
        }
    }
    Ok(out)
}

/// Drops what the API server or the moment decides (uids, versions, times, managed fields,
/// status, revision annotations) and writes the namespace as `NS`.
fn normalise(mut v: Value, ns: &str) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("deployment.kubernetes.io/revision");
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    // buildkitd.toml is compared as TOML values: kbx re-serialises it (M9).
    if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut) {
        for (k, text) in data.iter_mut() {
            if k.ends_with(".toml")
                && let Some(parsed) = text
                    .as_str()
                    .and_then(|t| t.parse::<toml::Table>().ok())
                    .and_then(|t| serde_json::to_value(t).ok())
            {
                *text = parsed;
            }
        }
    }
    replace_strings(&mut v, ns, "NS");
    sort_by_name(&mut v);
    v
}

/// Sorts every `volumes`, `volumeMounts` and `env` list by name: Buildx orders the config
/// volumes and the environment by Go map iteration (random), kbx by directory name and input
/// order (M6), so only the sets are compared.
fn sort_by_name(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let by_name = matches!(k.as_str(), "volumes" | "volumeMounts" | "env");
                if let (true, Value::Array(a)) = (by_name, &mut *x) {
                    a.sort_by_key(|e| e["name"].as_str().unwrap_or_default().to_owned());
                }
                sort_by_name(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(sort_by_name),
        _ => {}
    }
}

fn replace_strings(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(a) => a.iter_mut().for_each(|x| replace_strings(x, from, to)),
        Value::Object(o) => o.values_mut().for_each(|x| replace_strings(x, from, to)),
        _ => {}
    }
}

/// Every path where `a` and `b` differ, with both values.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<(String, String)>) {
    let empty = Value::Object(serde_json::Map::new());
    let (a, b) = match (a, b) {
        (Value::Null, Value::Object(_)) => (&empty, b),
        (Value::Object(_), Value::Null) => (a, &empty),
        _ => (a, b),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (l, r) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                diff(&format!("{path}.{k}"), l, r, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), l, r, out);
            }
        }
        _ if a == b => {}
        _ => out.push((path.to_owned(), format!("buildx {a} / kbx {b}"))),
    }
}

/// The deviation that allows a difference at `path`, if any.
fn allowed(path: &str) -> Option<&'static str> {
    let generic: String = path
        .split('[')
        .map(|p| match p.split_once(']') {
            Some((_, rest)) => format!("*]{rest}"),
            None => p.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("[");
    ALLOWED
        .iter()
        .find(|(prefix, _)| generic.starts_with(prefix))
        .map(|(_, id)| *id)
}

/// Runs `cmd` for at most [`CREATE_LIMIT`]; the outcome does not matter, only the objects.
async fn create_with(mut cmd: tokio::process::Command, what: &str) -> anyhow::Result<()> {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(CREATE_LIMIT, cmd.output()).await;
    match out {
        Ok(out) => {
            let out = out.with_context(|| format!("running {what}"))?;
            note(&format!(
                "$ {what} ({})\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Err(_) => note(&format!("$ {what}: still waiting after {CREATE_LIMIT:?}")),
    }
    Ok(())
}

/// One option set with both tools: Buildx in one namespace, kbx in another, same builder
/// name; returns the differences that no deviation explains.
async fn compare(
    cluster: &Cluster,
    bx: &Buildx,
    user: &User,
    case: &Case,
) -> anyhow::Result<Vec<String>> {
    let client = cluster.client();
    let newest = bx.version == kbx_conformance::buildx::VERSIONS[0];
    // Namespaces per version: a deleted one may still be terminating.
    let tag = bx.version.replace('.', "");
    let theirs_ns = TestNamespace::create(client, &format!("bx{tag}-{}", case.name)).await?;
    let ours_ns = TestNamespace::create(client, &format!("kbx{tag}-{}", case.name)).await?;
    let kubeconfig = cluster.kubeconfig().context("no kubeconfig")?;
    let image = cluster.builder_image();
    // Per version: both versions share one store, and a builder of the same name would be
    // extended (`--append`) or re-read with options the older version does not know.
    let name = format!("p{tag}{}", case.name.replace('-', ""));
    let mut steps: Vec<(&str, Vec<String>)> = vec![(
        case.opts,
        case.flags.iter().map(|s| (*s).to_owned()).collect(),
    )];
    steps.extend(
        case.append
            .iter()
            .map(|o| (*o, vec!["--append".to_owned()])),
    );
    for (i, (opts, flags)) in steps.iter().enumerate() {
        let node_opts = |ns: &str| {
            // Buildx 0.13 has no `timeout`: its wait is cut at CREATE_LIMIT instead.
            let mut s = format!("namespace={ns}");
            if newest {
                s.push_str(",timeout=5s");
            }
            if !case.opts.contains("image=") && !case.opts.contains("rootless=true") {
                s.push_str(&format!(",image={image}"));
            }
            if !opts.is_empty() {
                s.push(',');
                s.push_str(opts);
            }
            s
        };
        let mut args = vec![
            "create".to_owned(),
            "--name".to_owned(),
            name.clone(),
            "--driver".to_owned(),
            "kubernetes".to_owned(),
            "--node".to_owned(),
            format!("{name}{i}"),
            "--bootstrap".to_owned(),
        ];
        args.extend(flags.iter().map(|f| {
            if f == "@CONFIG" {
                buildkitd_config(user.home()).display().to_string()
            } else {
                f.clone()
            }
        }));
        let mut theirs = tokio::process::Command::from(bx.command(user.home()));
        theirs
            .env("KUBECONFIG", &kubeconfig)
            .args(&args)
            .args(["--driver-opt", &node_opts(theirs_ns.name())]);
        let mut ours = tokio::process::Command::new(&user.bin);
        ours.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", user.home())
            .env("BUILDX_CONFIG", user.home().join("kbx"))
            .env("KUBECONFIG", &kubeconfig)
            .args(&args)
            .args(["--driver-opt", &node_opts(ours_ns.name())]);
        let (their_cmd, our_cmd) = (
            format!("docker-buildx {}", args.join(" ")),
            format!("kbx {}", args.join(" ")),
        );
        let (a, b) = tokio::join!(create_with(theirs, &their_cmd), create_with(ours, &our_cmd));
        a?;
        b?;
    }
    let theirs = objects(client, theirs_ns.name()).await?;
    let ours = objects(client, ours_ns.name()).await?;
    let mut unexplained = Vec::new();
    ensure!(
        !theirs.is_empty(),
        "buildx created nothing for {}",
        case.name
    );
    let keys: std::collections::BTreeSet<&String> = theirs.keys().chain(ours.keys()).collect();
    for key in keys {
        let (t, o) = (
            theirs.get(key).unwrap_or(&Value::Null),
            ours.get(key).unwrap_or(&Value::Null),
        );
        let mut found = Vec::new();
        diff("", t, o, &mut found);
        for (path, what) in found {
            let only_here = CASE_ALLOWED
                .iter()
                .find(|(c, prefix, _)| *c == case.name && path.starts_with(prefix))
                .map(|(_, _, id)| *id);
            match only_here.or_else(|| allowed(&path)) {
                Some(id) => note(&format!("{} {key}{path}: {what} ({id})", case.name)),
                None => unexplained.push(format!("{} {key}{path}: {what}", case.name)),
            }
        }
    }
    theirs_ns.delete().await?;
    ours_ns.delete().await?;
    Ok(unexplained)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_objects_buildx_and_kbx_create_are_the_same() -> anyhow::Result<()> {
    scenario(async |cluster| {
        let all = std::env::var("KBX_PARITY_ALL").is_ok_and(|v| v == "1");
        let user = User::new(cluster)?;
        let mut unexplained = Vec::new();
        for bx in Buildx::all()? {
            let newest = bx.version == kbx_conformance::buildx::VERSIONS[0];
            // Every option set with the newest Buildx, one with the older (all with
            // `just parity`).
            let cases: Vec<&Case> = match (newest, all) {
                (_, true) => CASES.iter().chain(MORE).collect(),
                (true, false) => CASES.iter().collect(),
                (false, false) => CASES.iter().take(1).collect(),
            };
            let cases = cases.into_iter().filter(|c| newest || !c.needs_newest);
            for case in cases {
                unexplained.extend(
                    compare(cluster, &bx, &user, case).await.with_context(|| {
                        format!("buildx {} option set {}", bx.version, case.name)
                    })?,
                );
            }
        }
        ensure!(
            unexplained.is_empty(),
            "differences no deviation explains:\n{}",
            unexplained.join("\n")
        );
        Ok(())
    })
    .await
}

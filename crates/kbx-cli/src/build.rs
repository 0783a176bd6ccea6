//! `kbx build`: send a local context to BuildKit in one of the builder's pods.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use kbx_balance::{Pod, PodChooser, PodPhase};
use kbx_buildkit::{BuildOptions, Client, Output};
use kbx_kube::{NodeDriver, Status};
use kbx_store::{Node, NodeGroup, Store};

use crate::cli::BuildArgs;
use crate::error::Error;
use crate::progress::{self, Printer};
use crate::{context, create, node};

/// Connection attempts before giving up (buildx: 5, 500 ms doubling).
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

pub(crate) async fn run(args: BuildArgs) -> Result<(), Error> {
    let mode = progress::resolve_for_stderr(args.progress)?;
    let opts = build_options(&args)?;
    let ng = builder(&args)?;
    let Some(n) = ng.nodes().first().cloned() else {
        return Err(Error::msg(format!("builder {:?} has no nodes", ng.name)));
    };
    if opts.platforms.len() > 1
        && let Some(Output::Docker { .. }) = &opts.output
    {
        return Err(Error::msg(
            "docker exporter does not currently support exporting manifest lists",
        ));
    }
    if ng.nodes().len() > 1 && !opts.platforms.is_empty() {
        return crate::multi::run(&args, opts, &ng, mode).await;
    }
    let driver = node::driver(&n).await?;
    if !matches!(driver.status().await?, Status::Running(_)) {
        create::bootstrap(&ng, mode).await?;
    }
    let key = context_key(&args)?;
    let (pod, client) = open(&n, &key).await?;
    if mode.takes_notes() {
        eprintln!("#0 building on {} ({} pod {pod})", n.name, ng.name);
    }
    let mut printer = Printer::new(mode);
    let result = client
        .build_with_status(&opts, |status, events| printer.update(status, events))
        .await;
    printer.finish();
    match result {
        Ok(res) => {
            if let Some(digest) = res.image_digest() {
                println!("{digest}");
            }
            Ok(())
        }
        Err(err) => Err(solve_error(err)),
    }
}

/// buildx's pod-choice key: the absolute context path.
pub(crate) fn context_key(args: &BuildArgs) -> Result<std::path::PathBuf, Error> {
    std::path::absolute(&args.context).map_err(|source| Error::Read {
        path: args.context.display().to_string(),
        source,
    })
}

/// Chooses the pod of node `n` for `key` with the node's `loadbalance` strategy and connects
/// to its BuildKit.
pub(crate) async fn open(n: &Node, key: &std::path::Path) -> Result<(String, Client), Error> {
    let options = node::options(n)?;
    let driver = node::driver(n).await?;
    let pods: Vec<Pod> = driver
        .running_pods()
        .await?
        .into_iter()
        .map(|p| Pod {
            name: p.name,
            phase: PodPhase::from_api(&p.phase),
            ready: p.ready,
            terminating: p.terminating,
        })
        .collect();
    let chooser = PodChooser::new(options.load_balance);
    let pod = chooser
        .choose(key.as_os_str().as_encoded_bytes(), &pods)
        .map_err(|e| Error::msg(e.to_string()))?
        .name
        .clone();
    let client = connect(&driver, &pod).await?;
    Ok((pod, client))
}

/// Exec + HTTP/2 handshake + a first call, retried: a pod whose BuildKit is not answering yet
/// (e.g. `tls: internal error`, connection refused) is retried with backoff.
async fn connect(driver: &NodeDriver, pod: &str) -> Result<Client, Error> {
    let stderr: Arc<dyn Fn(&str) + Send + Sync> = {
        let pod = pod.to_owned();
        Arc::new(move |line: &str| eprintln!("[{pod}] {line}"))
    };
    kbx_kube::with_retry(ATTEMPTS, FIRST_BACKOFF, |_| {
        let driver = driver.clone();
        let pod = pod.to_owned();
        let stderr = stderr.clone();
        async move {
            let dial = move || {
                let driver = driver.clone();
                let pod = pod.clone();
                let stderr = stderr.clone();
                async move { driver.dial(&pod, stderr).await.map_err(io::Error::other) }
            };
            let channel = kbx_buildkit::transport::connect_with("buildkit pod", dial)
                .await
                .map_err(|e| {
                    Error::msg(format!(
                        "cannot connect to BuildKit: {}",
                        crate::error::chain(&e)
                    ))
                })?;
            let client = Client::new(channel, kbx_buildkit::Backend::Buildkitd);
            client.list_workers().await.map_err(|e| {
                Error::msg(format!(
                    "BuildKit does not answer: {}",
                    crate::error::chain(&e)
                ))
            })?;
            Ok(client)
        }
    })
    .await
}

fn builder(args: &BuildArgs) -> Result<NodeGroup, Error> {
    let store = Store::open_default()?;
    let txn = store.txn()?;
    let ng = match &args.builder {
        Some(name) => txn.node_group(name)?,
        None => {
            let key = context::current_key(|k| std::env::var_os(k));
            txn.current(&key)?.ok_or_else(|| {
                Error::msg("no builder selected: pass --builder or run `kbx use NAME` (kbx has no default docker builder)")
            })?
        }
    };
    txn.update_last_activity(&ng.name)?;
    Ok(ng)
}

fn key_values(
    list: &[String],
    flag: &str,
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            // buildx takes a bare KEY's value from the environment.
            None => std::env::var(kv)
                .map(|v| (kv.clone(), v))
                .map_err(|_| Error::msg(format!("invalid {flag} {kv:?}: expected KEY=VALUE"))),
        })
        .collect()
}

/// `--platform` values (comma lists allowed), parsed and normalised.
///
/// # Deviation
/// A platform given twice is built once (buildx passes the duplicate on to BuildKit).
pub(crate) fn platforms(values: &[String]) -> Result<Vec<kbx_opts::Platform>, Error> {
    let all = kbx_opts::Platform::parse_list(values, &kbx_opts::Platform::local())
        .map_err(|e| Error::msg(format!("invalid --platform: {e}")))?;
    let mut out: Vec<kbx_opts::Platform> = Vec::new();
    for p in all {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn build_options(args: &BuildArgs) -> Result<BuildOptions, Error> {
    let bk = |e: kbx_buildkit::Error| Error::msg(e.to_string());
    if args.push && args.load {
        return Err(Error::msg("--push and --load cannot be used together"));
    }
    let output = match (&args.output, args.push, args.load) {
        (Some(_), true, _) | (Some(_), _, true) => {
            return Err(Error::msg(
                "--output cannot be combined with --push or --load",
            ));
        }
        (Some(spec), false, false) => Some(Output::parse(spec).map_err(bk)?),
        (None, true, false) => Some(Output::Image {
            names: args.tags.clone(),
            push: true,
        }),
        (None, false, true) => Some(Output::Docker { dest: None }),
        (None, false, false) if !args.tags.is_empty() => Some(Output::Image {
            names: args.tags.clone(),
            push: false,
        }),
        _ => None,
    };
    if output.is_none() {
        eprintln!(
            "WARNING: No output specified with kubernetes driver. Build result will only remain in the build cache. To push result image into registry use --push or to load image into docker use --load"
        );
    }
    Ok(BuildOptions {
        context: args.context.clone(),
        dockerfile: args.file.clone(),
        target: args.target.clone(),
        build_args: key_values(&args.build_args, "--build-arg")?,
        labels: key_values(&args.labels, "--label")?,
        platforms: platforms(&args.platforms)?
            .iter()
            .map(ToString::to_string)
            .collect(),
        no_cache: args.no_cache,
        output,
        cache_from: args
            .cache_from
            .iter()
            .map(|c| kbx_buildkit::CacheEntry::parse(c))
            .collect::<Result<_, _>>()
            .map_err(bk)?,
        cache_to: args
            .cache_to
            .iter()
            .map(|c| kbx_buildkit::CacheEntry::parse(c))
            .collect::<Result<_, _>>()
            .map_err(bk)?,
        secrets: args
            .secrets
            .iter()
            .map(|s| kbx_buildkit::Secret::parse(s))
            .collect::<Result<_, _>>()
            .map_err(bk)?,
        ssh: args
            .ssh
            .iter()
            .map(|s| kbx_buildkit::SshAgent::parse(s))
            .collect::<Result<_, _>>()
            .map_err(bk)?,
        credentials: kbx_buildkit::DockerCredentials::load().ok(),
        ..BuildOptions::default()
    })
}

/// A failed solve: the step, its last log lines, then the daemon's message.
pub(crate) fn solve_error(err: kbx_buildkit::Error) -> Error {
    if let kbx_buildkit::Error::Solve {
        vertex: Some(v),
        logs,
        ..
    } = &err
    {
        eprintln!("------\n > {v}:");
        for l in logs {
            eprintln!("{l}");
        }
        eprintln!("------");
    }
    Error::msg(crate::error::chain(&err))
}

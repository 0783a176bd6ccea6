//! `kbx create`.

use std::collections::BTreeMap;

use kbx_kube::{BootstrapEvent, Change};
use kbx_manifest::ConfigFiles;
use kbx_opts::{
    BuildkitdConfig, DriverOpts, KubernetesEndpoint, KubernetesOptions, buildkitd_args,
};
use kbx_store::{Node, NodeGroup, NodeUpdate, Store, validate_name};

use crate::cli::CreateArgs;
use crate::error::Error;
use crate::progress::{self, Mode, Step, Steps};
use crate::{context, names, node};

pub(crate) const DRIVER: &str = "kubernetes";

pub(crate) async fn run(args: CreateArgs) -> Result<(), Error> {
    if let Some(driver) = &args.driver
        && driver != DRIVER
    {
        return Err(Error::msg(format!(
            "driver {driver:?} is not supported: kbx creates kubernetes builders (--driver kubernetes)"
        )));
    }
    if let Some(ep) = &args.endpoint {
        return Err(Error::msg(format!(
            "kubernetes driver does not support endpoint args {ep:?}"
        )));
    }
    if args.append && args.name.is_none() {
        return Err(Error::msg("append requires a builder name"));
    }
    if args.leave {
        return leave(&args).await;
    }

    let store = Store::open_default()?;
    let key = context::current_key(|k| std::env::var_os(k));

    // Everything the user typed is checked before the store is touched.
    let driver_opts = if args.driver_opts.is_empty() {
        None
    } else {
        let parsed = DriverOpts::parse(&args.driver_opts)?;
        KubernetesOptions::from_driver_opts(&parsed)?;
        Some(
            parsed
                .iter()
                .map(|o| (o.key().to_owned(), o.value().to_owned()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    let (flags, files) = daemon_config(&args)?;

    let txn = store.txn()?;
    let name = match &args.name {
        Some(n) => {
            validate_name(n)?;
            n.clone()
        }
        None => generate_name(&txn)?,
    };
    if name == "default" {
        return Err(Error::msg(
            "default is a reserved name and cannot be used to identify builder instance",
        ));
    }
    let existing = match txn.node_group(&name) {
        Ok(ng) => Some(ng),
        Err(kbx_store::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let node_name = args.node.clone().unwrap_or_default();
    let mut ng = match existing.clone() {
        Some(ng) => {
            if ng.driver != DRIVER {
                return Err(Error::msg(format!(
                    "existing instance for {name:?} but has mismatched driver {:?}",
                    ng.driver
                )));
            }
            if !args.append && node_name.is_empty() {
                return Err(Error::msg(format!(
                    "existing instance for {name:?} but no append mode, specify the node name to make changes for existing instances"
                )));
            }
            ng
        }
        None if args.append => {
            return Err(Error::msg(format!(
                "failed to find instance {name:?} for append"
            )));
        }
        None => NodeGroup::new(&name, DRIVER),
    };

    let deployment = if node_name.is_empty() {
        names::unique_deployment_id()
    } else {
        node_name.clone()
    };
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    let endpoint = KubernetesEndpoint::new(&name, &deployment, &kubeconfig).to_string();
    let before: Vec<String> = ng.nodes().iter().map(|n| n.name.clone()).collect();
    ng.update(NodeUpdate {
        name: node_name,
        endpoint,
        platforms: args.platforms.clone(),
        set_endpoint: false,
        append: args.append,
        buildkitd_flags: Some(flags),
        files,
        driver_opts,
    })?;
    let changed = ng
        .nodes()
        .iter()
        .find(|n| !before.contains(&n.name) || Some(&n.name) == args.node.as_ref())
        .map(|n| n.name.clone());

    // Render every node: bad options fail here, before anything is saved or created.
    let mut rendered = Vec::new();
    for n in ng.nodes() {
        let m = node::manifests(n).map_err(|e| Error::Node {
            builder: name.clone(),
            node: n.name.clone(),
            source: Box::new(e),
        })?;
        rendered.push((n.name.clone(), m));
    }

    if args.dry_run {
        let mut out = String::new();
        for (n, m) in &rendered {
            if changed.as_ref().is_some_and(|c| c != n) {
                continue;
            }
            if !out.is_empty() {
                out.push_str("---\n");
            }
            out.push_str(&m.to_yaml()?);
        }
        print!("{out}");
        return Ok(());
    }

    txn.save(&ng)?;
    if args.use_ {
        txn.set_current(&key, &name, false, false)?;
    }
    drop(txn);
    if existing.is_some() {
        eprintln!(
            "WARNING: new settings are applied at the next bootstrap (kbx updates the cluster objects)"
        );
    }

    if args.bootstrap {
        let boot = bootstrap(&ng, progress::default_mode()).await;
        if let Err(e) = boot {
            if existing.is_none() {
                // A new builder that failed to boot is kept, as buildx does: `kbx rm` cleans up.
                eprintln!("builder {name:?} was created but could not be booted");
            }
            return Err(e);
        }
    }
    println!("{name}");
    Ok(())
}

/// Config files as stored on a node: relative path → bytes.
type StoredFiles = BTreeMap<String, Vec<u8>>;

fn daemon_config(args: &CreateArgs) -> Result<(Vec<String>, Option<StoredFiles>), Error> {
    let (config, files) = match &args.buildkitd_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                path: path.clone(),
                source,
            })?;
            let config = BuildkitdConfig::parse(&text)?;
            let files = ConfigFiles::from_config(&config, |p| std::fs::read(p))?;
            (Some(config), Some(node::store_files(&files)))
        }
        None => (None, None),
    };
    let flags = buildkitd_args(args.buildkitd_flags.as_deref(), config.as_ref())?;
    Ok((flags, files))
}

fn generate_name(txn: &kbx_store::Txn<'_>) -> Result<String, Error> {
    for attempt in 0..6 {
        let name = names::random_name(attempt);
        match txn.node_group(&name) {
            Err(kbx_store::Error::NotFound(_)) => return Ok(name),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
    }
    Err(Error::msg("failed to generate random name"))
}

async fn leave(args: &CreateArgs) -> Result<(), Error> {
    let name = args
        .name
        .clone()
        .ok_or_else(|| Error::msg("leave requires instance name"))?;
    let node_name = args
        .node
        .clone()
        .ok_or_else(|| Error::msg("leave requires node name"))?;
    let store = Store::open_default()?;
    let txn = store.txn()?;
    let mut ng = match txn.node_group(&name) {
        Ok(ng) => ng,
        Err(kbx_store::Error::NotFound(_)) => {
            return Err(Error::msg(format!(
                "failed to find instance {name:?} for leave"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let node = ng.node(&node_name).cloned();
    ng.leave(&node_name)?;
    if let (Some(node), false) = (node, args.keep_daemon) {
        let driver = node::driver(&node).await?;
        driver.remove(false).await?;
    }
    txn.save(&ng)?;
    Ok(())
}

/// Boots every node in parallel, printing progress on stderr in `mode`: one
/// `[internal] booting buildkit` step per node (`[NODE internal] …` when there are several).
pub(crate) async fn bootstrap(ng: &NodeGroup, mode: Mode) -> Result<(), Error> {
    let prefix = ng.nodes().len() > 1;
    let steps = Steps::new(mode);
    let mut tasks = Vec::new();
    for n in ng.nodes().iter().cloned() {
        let builder = ng.name.clone();
        let steps = steps.clone();
        tasks.push(tokio::spawn(async move {
            let name = if prefix {
                format!("[{} internal] booting buildkit", n.name)
            } else {
                "[internal] booting buildkit".to_owned()
            };
            let step = steps.start(&name);
            let result = boot_node(&builder, &n, &step).await;
            let error = result.as_ref().err().map(|e| crate::error::chain(e));
            step.done(error.as_deref());
            result
        }));
    }
    let mut first_error = None;
    for t in tasks {
        let result = t
            .await
            .map_err(|e| Error::msg(format!("bootstrap task failed: {e}")));
        match result {
            Ok(Err(e)) | Err(e) => {
                first_error.get_or_insert(e);
            }
            Ok(Ok(())) => {}
        }
    }
    steps.finish();
    first_error.map_or(Ok(()), Err)
}

/// Boots one node, logging each bootstrap event as a line of `step`.
async fn boot_node(builder: &str, n: &Node, step: &Step) -> Result<(), Error> {
    let driver = node::driver(n).await?;
    let log = step.clone();
    let on_event = move |event: BootstrapEvent| match event {
        BootstrapEvent::Applied { kind, name, change } => {
            let what = match change {
                Change::Created => "created",
                Change::Updated => "updated (it differed from the options)",
                Change::Unchanged => "unchanged",
            };
            log.log(&format!("{kind} {name} {what}"));
        }
        BootstrapEvent::Waiting { replicas, timeout } => {
            log.begin(&format!(
                "waiting for {replicas} pods to be ready, timeout: {timeout}"
            ));
        }
        BootstrapEvent::Ready { ready, replicas } => {
            log.log(&format!("{ready}/{replicas} pods ready"));
        }
    };
    driver.bootstrap(&on_event).await.map_err(|e| Error::Node {
        builder: builder.to_owned(),
        node: n.name.clone(),
        source: Box::new(e.into()),
    })
}

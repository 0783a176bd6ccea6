//! `kbx create`: a new builder, a node added to one, a node changed or removed.

use std::collections::BTreeMap;

use kbx_manifest::ConfigFiles;
use kbx_opts::{
    BuildkitdConfig, DriverOpts, KubernetesEndpoint, KubernetesOptions, buildkitd_args,
};
use kbx_store::{NodeGroup, NodeUpdate, Store, validate_name};

use crate::cli::CreateArgs;
use crate::driver::{self, Driver, kubernetes, remote};
use crate::error::Error;
use crate::output::{out, outln};
use crate::progress;
use crate::{context, names};

/// Drivers buildx has that kbx does not implement.
const BUILDX_ONLY_DRIVERS: &[&str] = &["docker-container"];

/// Runs `kbx create`.
pub(crate) async fn run(mut args: CreateArgs) -> Result<(), Error> {
    // `--name ""` is no name: one is generated, as in buildx.
    args.name = args.name.filter(|n| !n.is_empty());
    if args.append && args.name.is_none() {
        return Err(Error::msg("append requires a builder name"));
    }
    if args.leave {
        return leave(&args).await;
    }
    if args.name.as_deref() == Some("default") {
        return Err(Error::msg(
            "default is a reserved name and cannot be used to identify builder instance",
        ));
    }

    let store = Store::open_default()?;
    let key = context::current_key(|k| std::env::var_os(k));
    let txn = store.txn()?;
    let name = match &args.name {
        Some(n) => {
            validate_name(n)?;
            n.clone()
        }
        None => generate_name(&txn)?,
    };
    let existing = match txn.node_group(&name) {
        Ok(ng) => Some(ng),
        Err(kbx_store::Error::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if existing.is_none() && args.append {
        return Err(Error::msg(format!(
            "failed to find instance {name:?} for append"
        )));
    }
    let buildkit_host = std::env::var("BUILDKIT_HOST")
        .ok()
        .filter(|h| !h.is_empty());
    // buildx: the given driver, the existing builder's, `remote` for BUILDKIT_HOST or an
    // endpoint only remote understands. Deviation (docs/deviations.md K12): where buildx would
    // pick docker-container, kbx picks kubernetes.
    let driver = match (&args.driver, &existing) {
        (Some(d), _) => d.clone(),
        (None, Some(ng)) => ng.driver.clone(),
        (None, None) => match &args.endpoint {
            None if buildkit_host.is_some() => Driver::Remote.name().to_owned(),
            Some(ep) if remote::validate_endpoint(ep).is_ok() => Driver::Remote.name().to_owned(),
            _ => Driver::Kubernetes.name().to_owned(),
        },
    };
    if let Some(ng) = &existing {
        if args.node.is_none() && !args.append {
            return Err(Error::msg(format!(
                "existing instance for {name:?} but no append mode, specify the node name to make changes for existing instances"
            )));
        }
        if ng.driver != driver {
            return Err(Error::msg(format!(
                "existing instance for {name:?} but has mismatched driver {:?}",
                ng.driver
            )));
        }
    }
    if BUILDX_ONLY_DRIVERS.contains(&driver.as_str()) {
        return Err(Error::msg(format!(
            "driver {driver:?} is not supported: kbx creates kubernetes and remote builders (--driver kubernetes|remote)"
        )));
    }
    match Driver::parse(&driver)? {
        Driver::Kubernetes => {}
        Driver::Remote => {
            let endpoint = args.endpoint.clone().or(buildkit_host);
            return create_remote(&args, &txn, &key, name, existing, endpoint).await;
        }
        Driver::Docker => {
            return Err(Error::msg(format!(
                "additional instances of driver {driver:?} cannot be created"
            )));
        }
    }
    if let Some(ep) = &args.endpoint {
        return Err(Error::msg(format!(
            "kubernetes driver does not support endpoint args {ep:?}"
        )));
    }

    // Everything the user typed is checked before the store is changed.
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

    let node_name = args.node.clone().unwrap_or_default();
    let mut ng = existing
        .clone()
        .unwrap_or_else(|| NodeGroup::new(&name, Driver::Kubernetes.name()));

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
        let m = kubernetes::manifests(n).map_err(|e| Error::Node {
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
        out!("{out}");
        return Ok(());
    }

    // The node must reach a cluster: its kubeconfig (or the pod's service account) must give a
    // client and a namespace, or nothing is saved, as in buildx. `--dry-run` needs no cluster.
    if let Some(n) = changed.as_ref().and_then(|c| ng.node(c)) {
        kubernetes::node_driver(n).await.map_err(|e| Error::Node {
            builder: name.clone(),
            node: n.name.clone(),
            source: Box::new(e),
        })?;
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
        let boot = kubernetes::bootstrap(&ng, progress::default_mode()).await;
        if let Err(e) = boot {
            if existing.is_none() {
                // A new builder that failed to boot is kept, as buildx does: `kbx rm` cleans up.
                eprintln!("builder {name:?} was created but could not be booted");
            }
            return Err(e);
        }
    }
    outln!("{name}");
    Ok(())
}

/// `create --driver remote`: the endpoint is stored as given; nothing is created anywhere.
async fn create_remote(
    args: &CreateArgs,
    txn: &kbx_store::Txn<'_>,
    key: &str,
    name: String,
    existing: Option<NodeGroup>,
    endpoint: Option<String>,
) -> Result<(), Error> {
    let endpoint = endpoint.ok_or_else(|| Error::msg("no remote endpoint provided"))?;
    let endpoint = remote::validate_endpoint(&endpoint)?;
    if args.dry_run {
        return Err(Error::msg(
            "--dry-run prints Kubernetes objects: the remote driver creates none",
        ));
    }
    let driver_opts = if args.driver_opts.is_empty() {
        None
    } else {
        let parsed = DriverOpts::parse(&args.driver_opts)?;
        Some(
            parsed
                .iter()
                .map(|o| (o.key().to_owned(), o.value().to_owned()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    // buildx parses the flags (syntax errors come first) and adds no default entitlement for
    // remote; the driver then refuses flags and config files when it loads the node.
    let flags = match &args.buildkitd_flags {
        Some(f) if !f.is_empty() => kbx_opts::split_shell_words(f)?,
        _ => Vec::new(),
    };
    let mut ng = existing
        .clone()
        .unwrap_or_else(|| NodeGroup::new(&name, Driver::Remote.name()));
    let before: Vec<String> = ng.nodes().iter().map(|n| n.name.clone()).collect();
    ng.update(NodeUpdate {
        name: args.node.clone().unwrap_or_default(),
        endpoint: endpoint.clone(),
        platforms: args.platforms.clone(),
        set_endpoint: true,
        append: args.append,
        buildkitd_flags: None,
        files: None,
        driver_opts: driver_opts.clone(),
    })?;
    let node_name = ng
        .nodes()
        .iter()
        .find(|n| !before.contains(&n.name) || Some(&n.name) == args.node.as_ref())
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let loaded = if !flags.is_empty() {
        Err(Error::msg(
            "setting buildkit flags is not supported for remote driver",
        ))
    } else if args.buildkitd_config.is_some() {
        Err(Error::msg(
            "setting config file is not supported for remote driver",
        ))
    } else {
        ng.nodes()
            .iter()
            .try_for_each(|n| remote::validate_options(&n.driver_opts.clone().unwrap_or_default()))
    };
    loaded.map_err(|e| Error::Node {
        builder: name.clone(),
        node: node_name.clone(),
        source: Box::new(e),
    })?;

    txn.save(&ng)?;
    if args.use_ {
        txn.set_current(key, &name, false, false)?;
    }
    if args.bootstrap
        && let Some(n) = ng.node(&node_name)
    {
        driver::connect(&ng, n, b"", None).await?;
    }
    outln!("{name}");
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
            (Some(config), Some(kubernetes::store_files(&files)))
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
    // Only kubernetes nodes own cluster objects; leaving a remote node touches nothing remote.
    if let (Some(node), false, Some(Driver::Kubernetes)) =
        (node, args.keep_daemon, Driver::from_name(&ng.driver))
    {
        kubernetes::remove(&node, false).await?;
    }
    txn.save(&ng)?;
    Ok(())
}

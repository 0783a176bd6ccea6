//! `kbx inspect`: one builder, its nodes, their status and settings.

use kbx_kube::Status;
use kbx_store::Store;

use crate::builders;
use crate::cli::InspectArgs;
use crate::driver::{Driver, kubernetes, status_of};
use crate::error::Error;
use crate::output::outln;
use crate::platforms::{detected, node_platforms};
use crate::progress;

/// Runs `kbx inspect`: the named builder, else `builder` (`--builder`), else the current one.
pub(crate) async fn run(args: InspectArgs, builder: Option<String>) -> Result<(), Error> {
    let name = args.name.clone().or(builder);
    let store = Store::open_default()?;
    let ng = {
        let txn = store.txn()?;
        builders::find_builder(&txn, name.as_deref())?
    };
    if args.bootstrap && Driver::from_name(&ng.driver) == Some(Driver::Kubernetes) {
        kubernetes::bootstrap(&ng, progress::default_mode()).await?;
    }
    outln!("Name:          {}", ng.name);
    outln!("Driver:        {}", ng.driver);
    if let Some(t) = ng.last_activity {
        outln!("Last Activity: {t}");
    }
    outln!();
    outln!("Nodes:");
    for (i, n) in ng.nodes().iter().enumerate() {
        if i > 0 {
            outln!();
        }
        let st = status_of(&ng, n, args.timeout).await;
        outln!("Name:                  {}", n.name);
        outln!("Endpoint:              {}", n.endpoint);
        let opts: Vec<String> = n
            .driver_opts
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        if !opts.is_empty() {
            outln!("Driver Options:        {}", opts.join(" "));
        }
        match &st.status {
            Ok(Status::Inactive(why)) => outln!("Status:                inactive ({why})"),
            Ok(Status::Stopped(Some(why))) => outln!("Status:                stopped ({why})"),
            Ok(s) => outln!("Status:                {}", s.as_str()),
            Err(e) => {
                outln!("Status:                error");
                outln!("Error:                 {e}");
            }
        }
        if let Some(flags) = &n.buildkitd_flags {
            outln!("BuildKit daemon flags: {}", flags.join(" "));
        }
        if let Some(v) = &st.version {
            outln!("BuildKit version:      {v}");
        }
        let p = node_platforms(n, &detected(&st)).join(", ");
        if !p.is_empty() {
            outln!("Platforms:             {p}");
        }
        if let Ok(Status::Running(pods)) = &st.status
            && !pods.is_empty()
        {
            let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
            outln!("Pods:                  {}", names.join(", "));
        }
        for (path, data) in n.files.iter().flatten() {
            outln!("File#{path}:");
            for line in String::from_utf8_lossy(data).lines() {
                outln!("\t> {line}");
            }
        }
    }
    Ok(())
}

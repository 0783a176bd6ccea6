//! `kbx ls`: every builder with its nodes' status, as buildx's table or JSON lines.

use kbx_kube::Status;
use kbx_store::{NodeGroup, Store};
use serde_json::json;

use crate::builders;
use crate::cli::{LsArgs, LsFormat};
use crate::context;
use crate::driver::{Driver, NodeStatus, status_of};
use crate::error::{Error, chain};
use crate::output::{out, outln};
use crate::platforms::{self, detected, node_platforms, reported};
use crate::tabwriter::tabwrite;

/// Runs `kbx ls`.
pub(crate) async fn run(args: LsArgs) -> Result<(), Error> {
    let store = Store::open_default()?;
    let key = context::current_key(|k| std::env::var_os(k));
    let (records, current, default) = {
        let txn = store.txn()?;
        (
            txn.records()?,
            txn.current(&key)?.map(|c| c.name),
            builders::default_with_activity(&txn)?,
        )
    };
    let mut loaded = Vec::new();
    for record in records {
        match record.builder {
            Ok(ng) => loaded.push((ng, Vec::new(), None)),
            // A record that cannot be read is listed by its file name, with its error.
            Err(e) => loaded.push((
                NodeGroup::new(record.name, ""),
                Vec::new(),
                Some(chain(&Error::from(e))),
            )),
        }
    }
    // Every node (and the Docker Engine's builder) is asked at once, each under the timeout,
    // so `ls` takes about as long as its slowest node.
    let queries = loaded
        .iter()
        .map(|(ng, _, _): &(NodeGroup, Vec<NodeStatus>, _)| {
            futures::future::join_all(ng.nodes().iter().map(|n| status_of(ng, n, args.timeout)))
        });
    let (all, docker) = futures::join!(
        futures::future::join_all(queries),
        status_of(&default, &default.nodes()[0], args.timeout)
    );
    for ((_, statuses, _), found) in loaded.iter_mut().zip(all) {
        *statuses = found;
    }
    // The Docker Engine's builder comes after the stored ones, when the engine answers.
    if docker.running() {
        loaded.push((default, vec![docker], None));
    }
    let current = current.unwrap_or_else(|| builders::DEFAULT_BUILDER.to_owned());
    let current = Some(current);
    // Builders with errors go last.
    loaded.sort_by_key(|(_, st, err)| err.is_some() || st.iter().any(|s| s.status.is_err()));

    if args.format == LsFormat::Json {
        for (ng, statuses, err) in &loaded {
            let mut json = builder_json(ng, statuses, current.as_deref());
            if let (Some(err), Some(obj)) = (err, json.as_object_mut()) {
                obj.insert("Err".into(), json!(err));
            }
            outln!("{}", serde_json::to_string(&json)?);
        }
        return Ok(());
    }
    let mut rows = vec![
        vec![
            "NAME/NODE",
            "DRIVER/ENDPOINT",
            "STATUS",
            "BUILDKIT",
            "PLATFORMS",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>(),
    ];
    let mut errors = Vec::new();
    for (ng, statuses, err) in &loaded {
        let star = if current.as_deref() == Some(ng.name.as_str()) {
            "*"
        } else {
            ""
        };
        rows.push(vec![
            format!("{}{star}", ng.name),
            ng.driver.clone(),
            if err.is_some() { "error" } else { "" }.to_owned(),
            String::new(),
            String::new(),
        ]);
        if let Some(err) = err {
            errors.push(format!("Cannot load builder {}: {err}", ng.name));
        }
        for (n, st) in ng.nodes().iter().zip(statuses) {
            // A running node has one row per running pod, as buildx's dynamic nodes.
            let per_row: Vec<Vec<kbx_opts::Platform>> = match &st.status {
                Ok(Status::Running(pods)) if !pods.is_empty() => pods
                    .iter()
                    .map(|p| [p.platforms.clone(), reported(st)].concat())
                    .collect(),
                _ => vec![reported(st)],
            };
            for detected in per_row {
                let list = node_platforms(n, &detected);
                let p = if args.no_trunc {
                    list.join(", ")
                } else {
                    platforms::truncate(&list, 4)
                };
                rows.push(vec![
                    format!(" \\_ {}", n.name),
                    format!(" \\_ {}", n.endpoint),
                    st.word().to_owned(),
                    st.version.clone().unwrap_or_default(),
                    p,
                ]);
            }
            match &st.status {
                Err(e) => errors.push(format!(
                    "Failed to get status for {} ({}): {e}",
                    ng.name, n.name
                )),
                // The table says `inactive` as buildx does (K5); why it is, when the cluster
                // could not be asked, goes to stderr.
                Ok(Status::Inactive(why))
                    if why != kbx_kube::NOT_CREATED
                        && Driver::from_name(&ng.driver) == Some(Driver::Kubernetes) =>
                {
                    errors.push(format!(
                        "Failed to get status for {} ({}): {why}",
                        ng.name, n.name
                    ));
                }
                _ => {}
            }
        }
    }
    out!("{}", tabwrite(&rows));
    for e in errors {
        eprintln!("{e}");
    }
    Ok(())
}

fn builder_json(
    ng: &NodeGroup,
    statuses: &[NodeStatus],
    current: Option<&str>,
) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = ng
        .nodes()
        .iter()
        .zip(statuses)
        .map(|(n, st)| {
            // The stored node as the store writes it (Files in base64), plus its state.
            let mut node = serde_json::to_value(n).unwrap_or_else(|_| json!({}));
            if let Some(obj) = node.as_object_mut() {
                obj.insert("Status".into(), json!(st.word()));
                obj.insert("Version".into(), json!(st.version));
                obj.insert("Err".into(), json!(st.status.as_ref().err()));
                obj.insert(
                    "StatusReason".into(),
                    json!(match &st.status {
                        Ok(Status::Inactive(why)) => Some(why.clone()),
                        Ok(Status::Stopped(why)) => why.clone(),
                        _ => None,
                    }),
                );
                let all: Vec<String> = node_platforms(n, &detected(st))
                    .into_iter()
                    .map(|p| p.trim_end_matches('*').to_owned())
                    .collect();
                obj.insert("Platforms".into(), json!(all));
            }
            node
        })
        .collect();
    json!({
        "Name": ng.name,
        "Driver": ng.driver,
        "LastActivity": ng.last_activity.map(|t| t.to_string()),
        "Dynamic": false,
        "Nodes": nodes,
        "Current": current == Some(ng.name.as_str()),
    })
}

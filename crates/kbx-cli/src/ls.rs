//! `kbx ls` and `kbx inspect`.

use kbx_kube::Status;
use kbx_store::{Node, NodeGroup, Store};
use serde_json::json;

use crate::builders;
use crate::cli::{InspectArgs, LsArgs, LsFormat};
use crate::context;
use crate::driver::{Driver, NodeStatus, kubernetes, status_of};
use crate::error::Error;

/// Go `text/tabwriter` with padding 3: every cell but the last of a row is padded.
pub(crate) fn tabwrite(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols.saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// The PLATFORMS of one row: the node's fixed platforms, then those `detected`.
fn platforms(n: &Node, detected: &[kbx_opts::Platform]) -> Vec<String> {
    let fixed = n.platforms.clone().unwrap_or_default();
    crate::platforms::in_groups(&fixed, detected)
}

/// The platforms the node's workers report (Docker engine, remote daemon).
fn reported(status: &NodeStatus) -> Vec<kbx_opts::Platform> {
    status
        .platforms
        .iter()
        .filter_map(|p| kbx_opts::Platform::parse(p, &kbx_opts::Platform::local()).ok())
        .collect()
}

/// Every platform any pod of the node, or its workers, report.
fn detected(status: &NodeStatus) -> Vec<kbx_opts::Platform> {
    let mut out = match &status.status {
        Ok(Status::Running(pods)) => pods.iter().flat_map(|p| p.platforms.clone()).collect(),
        _ => Vec::new(),
    };
    out.extend(reported(status));
    out
}

pub(crate) async fn ls(args: LsArgs) -> Result<(), Error> {
    let store = Store::open_default()?;
    let key = context::current_key(|k| std::env::var_os(k));
    let (mut builders, current, default) = {
        let txn = store.txn()?;
        (
            txn.list()?,
            txn.current(&key)?.map(|c| c.name),
            builders::default_with_activity(&txn)?,
        )
    };
    builders.sort_by(|a, b| a.name.cmp(&b.name));
    let mut loaded = Vec::new();
    for ng in builders {
        let mut statuses = Vec::new();
        for n in ng.nodes() {
            statuses.push(status_of(&ng, n, args.timeout).await);
        }
        loaded.push((ng, statuses));
    }
    // The Docker Engine's builder comes after the stored ones, when the engine answers.
    let docker = status_of(&default, &default.nodes()[0], args.timeout).await;
    if docker.running() {
        loaded.push((default, vec![docker]));
    }
    let current = current.unwrap_or_else(|| builders::DEFAULT_BUILDER.to_owned());
    let current = Some(current);
    // Builders with errors go last.
    loaded.sort_by_key(|(_, st)| st.iter().any(|s| s.status.is_err()));

    if args.format == LsFormat::Json {
        for (ng, statuses) in &loaded {
            println!(
                "{}",
                serde_json::to_string(&builder_json(ng, statuses, current.as_deref()))?
            );
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
    for (ng, statuses) in &loaded {
        let star = if current.as_deref() == Some(ng.name.as_str()) {
            "*"
        } else {
            ""
        };
        rows.push(vec![
            format!("{}{star}", ng.name),
            ng.driver.clone(),
            String::new(),
            String::new(),
            String::new(),
        ]);
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
                let list = platforms(n, &detected);
                let p = if args.no_trunc {
                    list.join(", ")
                } else {
                    crate::platforms::truncate(&list, 4)
                };
                rows.push(vec![
                    format!(" \\_ {}", n.name),
                    format!(" \\_ {}", n.endpoint),
                    st.word().to_owned(),
                    st.version.clone().unwrap_or_default(),
                    p,
                ]);
            }
            if let Err(e) = &st.status {
                errors.push(format!(
                    "Failed to get status for {} ({}): {e}",
                    ng.name, n.name
                ));
            }
        }
    }
    print!("{}", tabwrite(&rows));
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
                let all: Vec<String> = platforms(n, &detected(st))
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

pub(crate) async fn inspect(args: InspectArgs) -> Result<(), Error> {
    let store = Store::open_default()?;
    let ng = {
        let txn = store.txn()?;
        builders::find_builder(&txn, args.name.as_deref())?
    };
    if args.bootstrap && Driver::from_name(&ng.driver) == Some(Driver::Kubernetes) {
        kubernetes::bootstrap(&ng, crate::progress::default_mode()).await?;
    }
    println!("Name:          {}", ng.name);
    println!("Driver:        {}", ng.driver);
    if let Some(t) = ng.last_activity {
        println!("Last Activity: {t}");
    }
    println!();
    println!("Nodes:");
    for (i, n) in ng.nodes().iter().enumerate() {
        if i > 0 {
            println!();
        }
        let st = status_of(&ng, n, args.timeout).await;
        println!("Name:                  {}", n.name);
        println!("Endpoint:              {}", n.endpoint);
        let opts: Vec<String> = n
            .driver_opts
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        if !opts.is_empty() {
            println!("Driver Options:        {}", opts.join(" "));
        }
        match &st.status {
            Ok(Status::Inactive(why)) => println!("Status:                inactive ({why})"),
            Ok(Status::Stopped(Some(why))) => println!("Status:                stopped ({why})"),
            Ok(s) => println!("Status:                {}", s.as_str()),
            Err(e) => {
                println!("Status:                error");
                println!("Error:                 {e}");
            }
        }
        if let Some(flags) = &n.buildkitd_flags {
            println!("BuildKit daemon flags: {}", flags.join(" "));
        }
        if let Some(v) = &st.version {
            println!("BuildKit version:      {v}");
        }
        let p = platforms(n, &detected(&st)).join(", ");
        if !p.is_empty() {
            println!("Platforms:             {p}");
        }
        if let Ok(Status::Running(pods)) = &st.status
            && !pods.is_empty()
        {
            let names: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
            println!("Pods:                  {}", names.join(", "));
        }
        for (path, data) in n.files.iter().flatten() {
            println!("File#{path}:");
            for line in String::from_utf8_lossy(data).lines() {
                println!("\t> {line}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_pads_like_go() {
        let rows: Vec<Vec<String>> = [
            [
                "NAME/NODE",
                "DRIVER/ENDPOINT",
                "STATUS",
                "BUILDKIT",
                "PLATFORMS",
            ],
            ["kube2", "kubernetes", "", "", ""],
            [
                " \\_ kube20",
                " \\_ kubernetes:///kube2?deployment=x&kubeconfig=",
                "stopped",
                "",
                "",
            ],
        ]
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
        let text = tabwrite(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAME/NODE    DRIVER/ENDPOINT "),
            "{text}"
        );
        assert!(lines[1].starts_with("kube2        kubernetes "), "{text}");
        assert!(
            lines[2].starts_with(
                " \\_ kube20    \\_ kubernetes:///kube2?deployment=x&kubeconfig=   stopped    "
            ),
            "{text}"
        );
        assert!(lines[1].ends_with(' '), "trailing padding as in buildx");
    }
}

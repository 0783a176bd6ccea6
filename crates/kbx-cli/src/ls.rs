//! `kbx ls` and `kbx inspect`.

use std::time::Duration;

use kbx_kube::Status;
use kbx_store::{Node, NodeGroup, Store};
use serde_json::json;

use crate::cli::{InspectArgs, LsArgs, LsFormat};
use crate::error::{Error, chain};
use crate::{context, create, node};

/// A node's status, or why it could not be read.
pub(crate) struct NodeStatus {
    pub(crate) status: Result<Status, String>,
}

impl NodeStatus {
    fn word(&self) -> &'static str {
        match &self.status {
            Ok(s) => s.as_str(),
            Err(_) => "error",
        }
    }
}

pub(crate) async fn status_of(n: &Node, timeout: Duration) -> NodeStatus {
    let work = async {
        let driver = node::driver(n).await?;
        Ok::<_, Error>(driver.status().await?)
    };
    let status = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(chain(&e)),
        Err(_) => Err(format!(
            "timed out after {}",
            kbx_opts::GoDuration::from_nanos(timeout.as_nanos() as i64)
        )),
    };
    NodeStatus { status }
}

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

/// The PLATFORMS of one row: the node's fixed platforms, then those `detected` (a pod's).
fn platforms(n: &Node, detected: &[kbx_opts::Platform]) -> Vec<String> {
    let fixed = n.platforms.clone().unwrap_or_default();
    crate::platforms::in_groups(&fixed, detected)
}

/// Every platform any pod of the node reports.
fn detected(status: &NodeStatus) -> Vec<kbx_opts::Platform> {
    match &status.status {
        Ok(Status::Running(pods)) => pods.iter().flat_map(|p| p.platforms.clone()).collect(),
        _ => Vec::new(),
    }
}

pub(crate) async fn ls(args: LsArgs) -> Result<(), Error> {
    let store = Store::open_default()?;
    let key = context::current_key(|k| std::env::var_os(k));
    let (builders, current) = {
        let txn = store.txn()?;
        (txn.list()?, txn.current(&key)?.map(|c| c.name))
    };
    let mut loaded = Vec::new();
    for ng in builders {
        let mut statuses = Vec::new();
        for n in ng.nodes() {
            statuses.push(status_of(n, args.timeout).await);
        }
        loaded.push((ng, statuses));
    }
    // Builders with errors go last.
    loaded.sort_by_key(|(ng, st)| (st.iter().any(|s| s.status.is_err()), ng.name.clone()));

    if args.format == LsFormat::Json {
        for (ng, statuses) in &loaded {
            println!(
                "{}",
                serde_json::to_string(&builder_json(ng, statuses, current.as_deref()))
                    .map_err(|e| Error::msg(e.to_string()))?
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
                Ok(Status::Running(pods)) if !pods.is_empty() => {
                    pods.iter().map(|p| p.platforms.clone()).collect()
                }
                _ => vec![Vec::new()],
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
                    String::new(),
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
    let key = context::current_key(|k| std::env::var_os(k));
    let ng = {
        let txn = store.txn()?;
        match &args.name {
            Some(n) => txn.node_group(n)?,
            None => txn
                .current(&key)?
                .ok_or_else(|| Error::msg("no builder is in use; pass a builder name"))?,
        }
    };
    if args.bootstrap {
        create::bootstrap(&ng, crate::progress::default_mode()).await?;
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
        let st = status_of(n, args.timeout).await;
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
        let p = platforms(n, &detected(&st)).join(", ");
        if !p.is_empty() {
            println!("Platforms:             {p}");
        }
        if let Ok(Status::Running(pods)) = &st.status {
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

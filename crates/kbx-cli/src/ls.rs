//! `kbx ls` and `kbx inspect`.

use kbx_kube::Status;
use kbx_store::{Node, NodeGroup, Store};
use serde_json::json;

use crate::cli::{InspectArgs, LsArgs, LsFormat};
use crate::connect::{self, NodeStatus, status_of};
use crate::error::Error;
use crate::{context, create};

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

fn platforms(n: &Node, status: &NodeStatus) -> String {
    let stored: Vec<String> = n
        .platforms
        .iter()
        .flatten()
        .map(|p| format!("{p}*"))
        .collect();
    let mut all = stored.clone();
    if let Ok(Status::Running(pods)) = &status.status {
        let detected = pods
            .iter()
            .flat_map(|p| &p.platforms)
            .map(ToString::to_string)
            .chain(status.platforms.iter().cloned());
        for text in detected {
            if !all.iter().any(|s| s.trim_end_matches('*') == text) {
                all.push(text);
            }
        }
    }
    all.join(", ")
}

pub(crate) async fn ls(args: LsArgs) -> Result<(), Error> {
    let store = Store::open_default()?;
    let key = context::current_key(|k| std::env::var_os(k));
    let (mut builders, current, default) = {
        let txn = store.txn()?;
        (
            txn.list()?,
            txn.current(&key)?.map(|c| c.name),
            connect::default_with_activity(&txn)?,
        )
    };
    builders.sort_by(|a, b| a.name.cmp(&b.name));
    let mut loaded = Vec::new();
    for ng in builders {
        let mut statuses = Vec::new();
        for n in ng.nodes() {
            statuses.push(status_of(&ng.driver, n, args.timeout).await);
        }
        loaded.push((ng, statuses));
    }
    // The Docker Engine's builder comes after the stored ones, when the engine answers.
    let docker = status_of(connect::DOCKER, &default.nodes()[0], args.timeout).await;
    if docker.running() {
        loaded.push((default, vec![docker]));
    }
    let current = current.unwrap_or_else(|| connect::DEFAULT_BUILDER.to_owned());
    let current = Some(current);
    // Builders with errors go last.
    loaded.sort_by_key(|(_, st)| st.iter().any(|s| s.status.is_err()));

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
            let pods = match &st.status {
                Ok(Status::Running(pods)) if !pods.is_empty() => pods.len(),
                _ => 1,
            };
            for _ in 0..pods {
                let mut p = platforms(n, st);
                if !args.no_trunc && p.len() > 80 {
                    p = truncate_platforms(&p);
                }
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

fn truncate_platforms(list: &str) -> String {
    let items: Vec<&str> = list.split(", ").collect();
    if items.len() <= 4 {
        return list.to_owned();
    }
    format!("{}, ({} more)", items[..4].join(", "), items.len() - 4)
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
            json!({
                "Name": n.name,
                "Endpoint": n.endpoint,
                "Flags": n.buildkitd_flags,
                "DriverOpts": n.driver_opts,
                "Status": st.word(),
                "Version": st.version,
                "Err": st.status.as_ref().err(),
                "StatusReason": match &st.status {
                    Ok(Status::Inactive(why)) => Some(why.clone()),
                    Ok(Status::Stopped(why)) => why.clone(),
                    _ => None,
                },
                "Platforms": n.platforms.iter().flatten().map(ToString::to_string).collect::<Vec<_>>(),
            })
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
        connect::find_builder(&txn, args.name.as_deref())?
    };
    if args.bootstrap && ng.driver == connect::KUBERNETES {
        create::bootstrap(&ng).await?;
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
        let st = status_of(&ng.driver, n, args.timeout).await;
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
        let p = platforms(n, &st);
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

    #[test]
    fn platforms_truncate_to_four_groups() {
        assert_eq!(
            truncate_platforms("a, b, c, d, e, f"),
            "a, b, c, d, (2 more)"
        );
        assert_eq!(truncate_platforms("a, b"), "a, b");
    }
}

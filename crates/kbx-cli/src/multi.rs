//! Builds on a builder with several nodes: each requested platform is routed to a node
//! ([`crate::routing`]), the nodes build their shares in parallel, and one progress display
//! shows them all.

use std::sync::{Arc, Mutex, PoisonError};

use kbx_buildkit::{BuildOptions, Client, Output};
use kbx_opts::Platform;
use kbx_store::NodeGroup;

use crate::build::{context_key, platforms, solve_error};
use crate::cli::BuildArgs;
use crate::connect::{self, Connected};
use crate::error::Error;
use crate::progress::{Mode, Printer};
use crate::routing::{NodePlatforms, Share, route};

/// The directory of one platform in a multi-platform `type=local` export, as BuildKit names
/// it (`linux_amd64`, `linux_arm_v7`).
pub(crate) fn platform_dir(p: &Platform) -> String {
    p.to_string().replace('/', "_")
}

/// The output of one node's share: with platforms split among nodes, a single-platform share
/// of a `type=local` export goes to its platform's subdirectory, so the layout is the one a
/// single node building every platform writes.
///
/// # Deviation
/// Exports other than `type=local` (and no export) are refused when the platforms are split
/// among nodes: merging several nodes' images into one manifest list, or their archives into
/// one, is not implemented yet. buildx pushes each node's image by digest and writes the list
/// itself.
fn share_output(
    output: Option<&Output>,
    share: &Share,
    split: bool,
) -> Result<Option<Output>, Error> {
    match output {
        None => Ok(None),
        Some(Output::Local { dest }) if split && share.platforms.len() == 1 => {
            Ok(Some(Output::Local {
                dest: dest.join(platform_dir(&share.platforms[0])),
            }))
        }
        Some(other @ Output::Local { .. }) => Ok(Some(other.clone())),
        Some(other) if !split => Ok(Some(other.clone())),
        Some(other) => Err(Error::msg(format!(
            "{} export of platforms built on several nodes is not supported yet: use type=local, or build every platform on one node (e.g. with qemu.install=true)",
            other.kind()
        ))),
    }
}

/// The workers' platforms of a connected node.
async fn worker_platforms(client: &Client) -> Result<Vec<Platform>, Error> {
    let workers = client
        .list_workers()
        .await
        .map_err(|e| Error::msg(crate::error::chain(&e)))?;
    Ok(workers
        .iter()
        .flat_map(|w| &w.platforms)
        .filter_map(|p| Platform::parse(p, &Platform::local()).ok())
        .map(Platform::normalized)
        .collect())
}

pub(crate) async fn run(
    args: &BuildArgs,
    opts: BuildOptions,
    ng: &NodeGroup,
    mode: Mode,
) -> Result<(), Error> {
    let requested = platforms(&opts.platforms)?;
    let key = context_key(args)?;

    let mut nodes: Vec<NodePlatforms> = ng
        .nodes()
        .iter()
        .map(|n| NodePlatforms {
            fixed: n.platforms.clone().unwrap_or_default(),
            detected: None,
        })
        .collect();
    // A node that is down is booted (every node at once) on first connection.
    let key = key.as_os_str().as_encoded_bytes();
    let mut connections: Vec<Option<Connected>> = ng.nodes().iter().map(|_| None).collect();
    if crate::routing::needs_detection(&requested, &nodes) {
        for (i, n) in ng.nodes().iter().enumerate() {
            let connected = connect::connect(ng, n, key, Some(mode)).await?;
            nodes[i].detected = Some(worker_platforms(&connected.client).await?);
            connections[i] = Some(connected);
        }
    }
    let shares = route(&requested, &nodes);
    let split = shares.len() > 1;

    let mut jobs = Vec::new();
    for share in &shares {
        let n = &ng.nodes()[share.node];
        let connected = match connections[share.node].take() {
            Some(c) => c,
            None => connect::connect(ng, n, key, Some(mode)).await?,
        };
        let mut share_opts = opts.clone();
        share_opts.platforms = share.platforms.iter().map(ToString::to_string).collect();
        share_opts.output = share_output(opts.output.as_ref(), share, split)?;
        if mode.takes_notes() {
            let list: Vec<String> = share.platforms.iter().map(ToString::to_string).collect();
            eprintln!(
                "#0 building {} on {}",
                list.join(","),
                connected.description
            );
            for p in &share.unclaimed {
                eprintln!(
                    "#0 WARNING: no node of {} claims or reports {p}; building it on {}",
                    ng.name, n.name
                );
            }
        }
        jobs.push((connected.client, share_opts));
    }

    let printer = Arc::new(Mutex::new(Printer::new(mode)));
    let results = futures::future::join_all(jobs.iter().map(|(client, share_opts)| {
        let printer = printer.clone();
        async move {
            client
                .build_with_status(share_opts, |status, events| {
                    printer
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .update(status, events);
                })
                .await
        }
    }))
    .await;
    if let Ok(printer) = Arc::try_unwrap(printer) {
        printer
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .finish();
    }
    let mut first_error = None;
    for result in results {
        match result {
            Ok(res) => {
                if let Some(digest) = res.image_digest() {
                    println!("{digest}");
                }
            }
            Err(err) => {
                let err = solve_error(err);
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn p(text: &str) -> Platform {
        Platform::parse(text, &Platform::local()).unwrap()
    }

    fn share(node: usize, platforms: &[&str]) -> Share {
        Share {
            node,
            platforms: platforms.iter().map(|t| p(t)).collect(),
            unclaimed: Vec::new(),
        }
    }

    #[test]
    fn platform_directories_are_named_as_buildkit_names_them() {
        assert_eq!(platform_dir(&p("linux/amd64")), "linux_amd64");
        assert_eq!(platform_dir(&p("linux/arm/v7")), "linux_arm_v7");
    }

    #[test]
    fn split_local_exports_go_to_platform_directories() {
        let local = Output::Local {
            dest: "/out".into(),
        };
        let one = share(1, &["linux/arm64"]);
        let Some(Output::Local { dest }) = share_output(Some(&local), &one, true).unwrap() else {
            panic!("local expected");
        };
        assert_eq!(dest, Path::new("/out/linux_arm64"));
        // A node building several platforms splits them itself.
        let two = share(0, &["linux/amd64", "linux/386"]);
        assert_eq!(
            share_output(Some(&local), &two, true).unwrap(),
            Some(local.clone())
        );
        // Not split: unchanged.
        assert_eq!(
            share_output(Some(&local), &one, false).unwrap(),
            Some(local)
        );
    }

    #[test]
    fn split_image_and_archive_exports_are_refused_with_the_type() {
        let tar = Output::Tar { dest: None };
        let err = share_output(Some(&tar), &share(0, &["linux/amd64"]), true).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("tar export of platforms built on several nodes"),
            "{err}"
        );
        let image = Output::Image {
            names: vec!["r/i".into()],
            push: true,
        };
        assert!(share_output(Some(&image), &share(0, &["linux/amd64"]), true).is_err());
        assert_eq!(
            share_output(Some(&image), &share(0, &["linux/amd64"]), false).unwrap(),
            Some(image)
        );
        assert_eq!(
            share_output(None, &share(0, &["linux/amd64"]), true).unwrap(),
            None
        );
    }
}

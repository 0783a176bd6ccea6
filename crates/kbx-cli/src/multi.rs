//! Builds on a builder with several nodes: each requested platform is routed to a node
//! ([`crate::routing`]), the nodes build their shares in parallel, and one progress display
//! shows them all.

use std::sync::{Arc, Mutex, PoisonError};

use kbx_buildkit::{BuildOptions, Client, Output};
use kbx_opts::Platform;
use kbx_registry::Reference;
use kbx_store::NodeGroup;

use crate::build_options::{context_key, platforms, solve_error};
use crate::cli::BuildArgs;
use crate::driver::{self, Connected};
use crate::error::Error;
use crate::progress::{Mode, Printer, Steps};
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
/// A pushed image, as buildx does it, goes to each node's share as a push by digest to the
/// names' repositories (no tags); kbx then writes the manifest list under the tags
/// ([`merge_pushed`]).
///
/// `oci` and `tar` are refused with buildx's text; unpushed images (`type=image`, `moby`) and
/// `docker` loads into the Engine are exported by each node for its platforms, as buildx does.
///
/// # Deviation
/// A split `type=docker` export to a file or stdout is refused: buildx lets every node write
/// the same file at once, so the archive that remains is one node's, or a mix of both.
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
        Some(Output::Image { names, push: true }) if split => Ok(Some(Output::Image {
            names: repositories(names)?.iter().map(Reference::name).collect(),
            push: true,
        })),
        Some(other) if !split => Ok(Some(other.clone())),
        Some(o @ (Output::Oci { .. } | Output::OciDir { .. } | Output::Tar { .. })) => {
            Err(Error::msg(format!(
                "{} for multi-node builds currently not supported",
                o.kind()
            )))
        }
        Some(Output::Docker { .. }) => Err(Error::msg(
            "docker export to a file or stdout of platforms built on several nodes is not supported: every node would write the same archive; use --load, type=image,push=true or type=local",
        )),
        Some(other) => Ok(Some(other.clone())),
    }
}

/// The distinct repositories of image names (`reg/app:1`, `reg/app:2` → `reg/app`), as
/// references without tag or digest, in first-seen order.
fn repositories(names: &[String]) -> Result<Vec<Reference>, Error> {
    if names.is_empty() {
        return Err(Error::msg("tag is needed when pushing to registry"));
    }
    let mut out: Vec<Reference> = Vec::new();
    for n in names {
        let r = Reference::parse(n)?;
        let repo = Reference::parse(&r.name())?;
        if !out.iter().any(|o| o.name() == repo.name()) {
            out.push(repo);
        }
    }
    Ok(out)
}

/// buildx's merge of a multi-node push: the nodes pushed their images by digest to the first
/// repository; one manifest list (or OCI index) with all of them is written under every name.
/// Returns the list's digest.
async fn merge_pushed(
    ng: &NodeGroup,
    names: &[String],
    digests: &[String],
) -> Result<String, Error> {
    let repo = repositories(names)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::msg("tag is needed when pushing to registry"))?;
    let sources: Vec<Reference> = digests.iter().map(|d| repo.with_digest(d)).collect();
    let tags = names
        .iter()
        .map(|n| Reference::parse(n))
        .collect::<Result<Vec<_>, _>>()?;
    let client = crate::registry::client_with(crate::registry::plain_http_hosts(ng))?;
    let created = client
        .create_index(&sources, &tags, &Default::default(), false)
        .await?;
    Ok(created.descriptor.digest)
}

/// The workers' platforms of a connected node.
async fn worker_platforms(client: &Client) -> Result<Vec<Platform>, Error> {
    let workers = client.list_workers().await?;
    Ok(workers
        .iter()
        .flat_map(|w| &w.platforms)
        .filter_map(|p| Platform::parse(p, &Platform::local()).ok())
        .map(Platform::normalized)
        .collect())
}

/// Builds `opts` on the nodes of `ng` that the requested platforms route to, in parallel.
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
            let connected = driver::connect(ng, n, key, Some(mode)).await?;
            nodes[i].detected = Some(worker_platforms(&connected.client).await?);
            connections[i] = Some(connected);
        }
    }
    let shares = route(&requested, &nodes);
    let split = shares.len() > 1;
    if split && !opts.extra_outputs.is_empty() {
        return Err(Error::msg(
            "several outputs for platforms built on several nodes are not supported: use one --output",
        ));
    }
    let push_names = match &opts.output {
        Some(Output::Image { names, push: true }) if split => Some(names.clone()),
        _ => None,
    };

    let mut jobs = Vec::new();
    crate::progress::building_with(mode, &ng.name, &ng.driver);
    for share in &shares {
        let n = &ng.nodes()[share.node];
        let connected = match connections[share.node].take() {
            Some(c) => c,
            None => driver::connect(ng, n, key, Some(mode)).await?,
        };
        let mut share_opts = opts.clone();
        share_opts.platforms = share.platforms.iter().map(ToString::to_string).collect();
        share_opts.output = share_output(opts.output.as_ref(), share, split)?;
        if push_names.is_some() {
            share_opts
                .export_attrs
                .insert("push-by-digest".to_owned(), "true".to_owned());
        }
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

    crate::progress::end_of_header(mode);
    let printer = Arc::new(Mutex::new(Printer::for_builder(mode, &ng.name, &ng.driver)));
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
    let printer = Arc::try_unwrap(printer)
        .ok()
        .map(|p| p.into_inner().unwrap_or_else(PoisonError::into_inner));
    let mut first_error = None;
    let mut digests = Vec::new();
    for result in results {
        match result {
            Ok(res) => {
                if let Some(digest) = res.image_digest() {
                    digests.push(digest.to_owned());
                }
            }
            Err(err) => {
                let err = solve_error(err);
                first_error.get_or_insert(err);
            }
        }
    }
    match (first_error, push_names, printer) {
        (Some(err), _, printer) => {
            if let Some(p) = printer {
                p.finish();
            }
            Err(err)
        }
        (None, Some(names), Some(printer)) => {
            if digests.len() != jobs.len() {
                printer.finish();
                return Err(Error::msg(
                    "a node pushed its image but reported no digest; cannot write the manifest list",
                ));
            }
            let steps = Steps::with_printer(printer);
            let step = steps.start(&format!("merging manifest list {}", names.join(",")));
            let merged = merge_pushed(ng, &names, &digests).await;
            step.done(merged.as_ref().err().map(ToString::to_string).as_deref());
            steps.finish();
            println!("{}", merged?);
            Ok(())
        }
        (None, _, printer) => {
            if let Some(p) = printer {
                p.finish();
            }
            for d in digests {
                println!("{d}");
            }
            Ok(())
        }
    }
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
    fn split_oci_and_tar_are_refused_and_unpushed_images_go_to_every_node() {
        let one = share(0, &["linux/amd64"]);
        for (output, text) in [
            (
                Output::Tar { dest: None },
                "tar for multi-node builds currently not supported",
            ),
            (
                Output::Oci {
                    dest: None,
                    names: vec![],
                },
                "oci for multi-node builds currently not supported",
            ),
        ] {
            let err = share_output(Some(&output), &one, true).unwrap_err();
            assert_eq!(err.to_string(), text);
        }
        let to_file = Output::Docker {
            dest: Some("d.tar".into()),
            names: vec![],
        };
        assert!(share_output(Some(&to_file), &one, true).is_err());
        let to_stdout = Output::Docker {
            dest: None,
            names: vec!["app:1".into()],
        };
        assert!(share_output(Some(&to_stdout), &one, true).is_err());
        let image = Output::Image {
            names: vec!["r/i".into()],
            push: false,
        };
        assert_eq!(
            share_output(Some(&image), &one, true).unwrap(),
            Some(image.clone())
        );
        assert_eq!(
            share_output(Some(&image), &one, false).unwrap(),
            Some(image)
        );
        // A split push goes to the names' repositories, by digest, without tags.
        let push = Output::Image {
            names: vec![
                "reg.example:5000/app:1".into(),
                "reg.example:5000/app:latest".into(),
                "busybox:2".into(),
            ],
            push: true,
        };
        assert_eq!(
            share_output(Some(&push), &share(1, &["linux/arm64"]), true).unwrap(),
            Some(Output::Image {
                names: vec![
                    "reg.example:5000/app".into(),
                    "docker.io/library/busybox".into()
                ],
                push: true,
            })
        );
        let untagged = Output::Image {
            names: vec![],
            push: true,
        };
        let err = share_output(Some(&untagged), &share(0, &["linux/amd64"]), true).unwrap_err();
        assert_eq!(err.to_string(), "tag is needed when pushing to registry");
        assert_eq!(
            share_output(None, &share(0, &["linux/amd64"]), true).unwrap(),
            None
        );
    }
}

//! `kbx imagetools create|inspect`: buildx's commands for images in a registry.
//!
//! # Deviation
//! R3: descriptor sources are resolved as `REPO@DIGEST` and their platform is read from the
//! image config. R4: no `--platform`, `--prefer-index`, `--progress` or `--format`; `create`
//! prints one `pushed DIGEST to TAG` line per tag on stderr instead of a progress display.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::sync::Arc;

use clap::{Args, Subcommand};
use kbx_registry::{Client, ClientOptions, CredentialFn, Descriptor, Reference};

use crate::error::Error;

/// `kbx imagetools`.
#[derive(Debug, Args)]
pub(crate) struct ImagetoolsArgs {
    /// Override the configured builder instance (its `buildkitd.toml` decides which registries
    /// are spoken to over plain HTTP).
    #[arg(long, global = true)]
    builder: Option<String>,
    #[command(subcommand)]
    command: ImagetoolsCommand,
}

#[derive(Debug, Subcommand)]
enum ImagetoolsCommand {
    /// Create a new image based on source images.
    Create(CreateArgs),
    /// Show details of an image in the registry.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Set reference for new image.
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Read source descriptor from file (`-` for standard input).
    #[arg(short = 'f', long = "file")]
    files: Vec<String>,
    /// Show final image instead of pushing.
    #[arg(long)]
    dry_run: bool,
    /// Append to existing manifest.
    #[arg(long)]
    append: bool,
    /// Add annotation to the image (`index:KEY=VALUE`, `manifest-descriptor[PLATFORM]:KEY=VALUE`).
    #[arg(long = "annotation")]
    annotations: Vec<String>,
    /// Source images: references, digests (in the first tag's repository) or descriptor JSON.
    sources: Vec<String>,
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// Show original, unformatted JSON manifest.
    #[arg(long)]
    raw: bool,
    /// The image to inspect.
    name: String,
}

/// Runs `kbx imagetools …`.
pub(crate) async fn run(args: ImagetoolsArgs) -> Result<(), Error> {
    let client = client_with(current_builder_plain_http_hosts(args.builder.as_deref()))?;
    match args.command {
        ImagetoolsCommand::Create(a) => create(a, &client).await,
        ImagetoolsCommand::Inspect(a) => inspect(a, &client).await,
    }
}

/// Registries the builder's nodes reach over plain HTTP (`http = true` in their
/// `buildkitd.toml`); kbx talks to them the same way, as buildx's imagetools do.
pub(crate) fn plain_http_hosts(ng: &kbx_store::NodeGroup) -> Vec<String> {
    let mut hosts = Vec::new();
    for n in ng.nodes() {
        let config = n
            .files
            .as_ref()
            .and_then(|f| f.get(kbx_manifest::CONFIG_FILE))
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| kbx_opts::BuildkitdConfig::parse(t).ok());
        for h in config
            .map(|c| c.plain_http_registries())
            .unwrap_or_default()
        {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// The selected builder's plain-HTTP registries; none when no builder can be read.
fn current_builder_plain_http_hosts(builder: Option<&str>) -> Vec<String> {
    let Ok(store) = kbx_store::Store::open_default() else {
        return Vec::new();
    };
    let Ok(txn) = store.txn() else {
        return Vec::new();
    };
    crate::builders::find_builder(&txn, builder)
        .map(|ng| plain_http_hosts(&ng))
        .unwrap_or_default()
}

/// A client whose credentials come from the Docker CLI configuration and its helpers, and
/// that also speaks plain HTTP to `plain_http_hosts`.
pub(crate) fn client_with(plain_http_hosts: Vec<String>) -> Result<Client, Error> {
    let creds = kbx_buildkit::DockerCredentials::load().map_err(Error::Credentials)?;
    let creds = Arc::new(creds);
    let callback: CredentialFn = Arc::new(move |host: &str| {
        let creds = creds.clone();
        let host = host.to_owned();
        Box::pin(async move {
            let c = creds.get(&host).await.ok()?;
            match (c.username.is_empty(), c.secret.is_empty()) {
                (_, true) => None,
                (true, false) => Some(kbx_registry::Credential::new("<token>", c.secret)),
                (false, false) => Some(kbx_registry::Credential::new(c.username, c.secret)),
            }
        })
    });
    Ok(Client::new(ClientOptions {
        credentials: Some(callback),
        plain_http_hosts,
        ..ClientOptions::default()
    }))
}

/// One source as buildx reads it: a digest (in `repo`), a reference, or descriptor JSON.
fn parse_source(text: &str, repo: Option<&Reference>) -> Result<Reference, Error> {
    let text = text.trim();
    let in_repo = |digest: &str| {
        repo.map(|r| r.with_digest(digest)).ok_or_else(|| {
            Error::msg(format!(
                "source {digest} is a bare digest: set --tag so it names a repository"
            ))
        })
    };
    if text.starts_with("sha256:") {
        Reference::parse(&format!("x/y@{text}"))?;
        return in_repo(text);
    }
    if text.starts_with('{') {
        let d: Descriptor = serde_json::from_str(text).map_err(|source| Error::Descriptor {
            text: text.to_owned(),
            source,
        })?;
        return in_repo(&d.digest);
    }
    Ok(Reference::parse(text)?)
}

async fn create(a: CreateArgs, client: &Client) -> Result<(), Error> {
    if a.sources.is_empty() && a.files.is_empty() {
        return Err(Error::msg("no sources specified"));
    }
    if !a.dry_run && a.tags.is_empty() {
        return Err(Error::msg(
            "can't push with no tags specified, please set --tag or --dry-run",
        ));
    }
    let tags = a
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let repo = tags.first();
    let mut sources = Vec::new();
    if a.append
        && let Some(first) = repo
    {
        sources.push(first.clone());
    }
    for f in &a.files {
        let text = if f == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|source| Error::Read {
                    path: "standard input".into(),
                    source,
                })?;
            s
        } else {
            std::fs::read_to_string(f).map_err(|source| Error::Read {
                path: f.clone(),
                source,
            })?
        };
        sources.push(parse_source(&text, repo)?);
    }
    for s in &a.sources {
        sources.push(parse_source(s, repo)?);
    }
    let mut annotations = BTreeMap::new();
    for an in &a.annotations {
        let Some((k, v)) = an.split_once('=') else {
            return Err(Error::msg(format!(
                "invalid annotation {an:?}: expected KEY=VALUE"
            )));
        };
        annotations.insert(k.to_owned(), v.to_owned());
    }
    let created = client
        .create_index(&sources, &tags, &annotations, a.dry_run)
        .await?;
    if a.dry_run {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&created.bytes);
        let _ = writeln!(out);
        return Ok(());
    }
    for t in &tags {
        eprintln!("pushed {} to {t}", created.descriptor.digest);
    }
    Ok(())
}

async fn inspect(a: InspectArgs, client: &Client) -> Result<(), Error> {
    let r = Reference::parse(&a.name)?;
    let inspection = client.inspect(&r).await?;
    let mut out = std::io::stdout().lock();
    if a.raw {
        // No newline: the output hashes to the manifest's digest, as in buildx.
        let _ = out.write_all(&inspection.raw);
    } else {
        let _ = write!(out, "{inspection}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_hosts_come_from_every_nodes_buildkitd_config() {
        let mut ng = kbx_store::NodeGroup::new("b", "kubernetes");
        let files = |text: &str| {
            Some(BTreeMap::from([(
                kbx_manifest::CONFIG_FILE.to_owned(),
                text.as_bytes().to_vec(),
            )]))
        };
        for (name, config) in [
            (
                "n1",
                files(
                    "[registry.\"10.0.0.5:5000\"]\nhttp = true\n[registry.\"secure.io\"]\nca = [\"/c.pem\"]\n",
                ),
            ),
            (
                "n2",
                files(
                    "[registry.\"10.0.0.5:5000\"]\nhttp = true\n[registry.\"reg.lan\"]\nhttp = true\n",
                ),
            ),
            ("n3", None),
        ] {
            ng.update(kbx_store::NodeUpdate {
                name: name.into(),
                endpoint: format!("kubernetes:///b?deployment={name}"),
                append: name != "n1",
                files: config,
                ..Default::default()
            })
            .unwrap();
        }
        assert_eq!(plain_http_hosts(&ng), ["10.0.0.5:5000", "reg.lan"]);
        assert!(plain_http_hosts(&kbx_store::NodeGroup::new("c", "kubernetes")).is_empty());
    }
}

//! `kbx imagetools create|inspect`: buildx's commands for images in a registry.
//!
//! # Deviation
//! R3: descriptor sources are resolved as `REPO@DIGEST` and their platform is read from the
//! image config. R4: no `--platform`, `--prefer-index`, `--progress` or `--format`; `create`
//! prints one `pushed DIGEST to TAG` line per tag on stderr instead of a progress display.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};

use clap::{Args, Subcommand};
use kbx_registry::{Client, Descriptor, Reference};

use crate::error::Error;
use crate::registry::{client_with, current_builder_plain_http_hosts};

/// `kbx imagetools`.
#[derive(Debug, Args)]
pub(crate) struct ImagetoolsArgs {
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

/// Runs `kbx imagetools …`; the `buildkitd.toml` of `builder` (the current one when `None`)
/// decides which registries are spoken to over plain HTTP.
pub(crate) async fn run(args: ImagetoolsArgs, builder: Option<String>) -> Result<(), Error> {
    let client = client_with(current_builder_plain_http_hosts(builder.as_deref()))?;
    match args.command {
        ImagetoolsCommand::Create(a) => create(a, &client).await,
        ImagetoolsCommand::Inspect(a) => inspect(a, &client).await,
    }
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

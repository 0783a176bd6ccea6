//! The `docker` driver: the BuildKit embedded in the Docker Engine at `DOCKER_HOST` (the
//! implicit `default` builder), and pushes through the Engine.

use kbx_buildkit::Client;

use super::{Loaded, daemon_status};
use crate::builders::docker_host;
use crate::error::Error;
use crate::progress::Steps;

/// The Docker Engine's BuildKit. An engine that cannot be reached gets the Docker CLI's
/// message.
pub(crate) async fn client() -> Result<Client, Error> {
    match Client::connect("docker").await {
        Ok(c) => Ok(c),
        Err(
            source @ (kbx_buildkit::Error::Connect { .. } | kbx_buildkit::Error::Transport { .. }),
        ) => Err(Error::DockerUnreachable {
            host: docker_host(),
            denied: false,
            source: Box::new(source),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The Engine's BuildKit version and workers' platforms.
pub(super) async fn status() -> Result<Loaded, Error> {
    let client = client().await?;
    daemon_status(&client, true).await
}

/// buildx's docker driver pushes what the `moby` exporter stored through the Engine, one step
/// per name (`pushing NAME with docker`), one sub-item per layer. Returns the manifest digest
/// the registry stored for the last name.
pub(crate) async fn push(
    client: &Client,
    names: &[String],
    steps: &Steps,
) -> Result<Option<String>, Error> {
    let Some(addr) = client.docker_address() else {
        return Err(Error::msg("pushing needs the Docker Engine's API"));
    };
    let creds = kbx_buildkit::DockerCredentials::load()?;
    let mut digest = None;
    for name in names {
        let step = steps.start(&format!("pushing {name} with docker"));
        let host = kbx_buildkit::engine::registry_host(name);
        let cred = match creds.get(host).await {
            Ok(c) => c,
            Err(e) => {
                step.done(Some(&e.to_string()));
                return Err(e.into());
            }
        };
        let mut layers: Vec<String> = Vec::new();
        let pushed = kbx_buildkit::engine::push_image(addr, name, &cred, |m| {
            if let Some(id) = &m.id
                && (m.progress.is_some() || m.status == "Pushed")
                && !layers.contains(id)
            {
                layers.push(id.clone());
                step.begin(&format!("pushing layer {id}"));
            }
        })
        .await;
        match pushed {
            Ok(p) => {
                step.done(None);
                digest = p.digest.or(digest);
            }
            Err(e) => {
                step.done(Some(&e.to_string()));
                return Err(e.into());
            }
        }
    }
    Ok(digest)
}

//! Which builder a command works on: the one named, the current one, or the implicit
//! `default` builder of the Docker Engine, and the Docker host that builder reaches.

use kbx_store::{Node, NodeGroup, Store, Txn};

use crate::context;
use crate::driver::Driver;
use crate::error::Error;

/// The name of the implicit Docker builder.
pub(crate) const DEFAULT_BUILDER: &str = "default";

/// The implicit builder of the Docker Engine, as buildx shows the `default` context: one node
/// named `default` whose endpoint is the context name. Never saved in the store.
///
/// # Deviation
/// buildx has one such builder per Docker context and reaches the engine of the current
/// context; kbx has only `default`, reaching `DOCKER_HOST` (or the default socket), and `ls`
/// lists it only when that engine answers (buildx lists it with an error).
pub(crate) fn default_builder() -> NodeGroup {
    let mut ng = NodeGroup::new(DEFAULT_BUILDER, Driver::Docker.name());
    ng.nodes = Some(vec![Node {
        name: DEFAULT_BUILDER.to_owned(),
        endpoint: DEFAULT_BUILDER.to_owned(),
        platforms: None,
        driver_opts: None,
        buildkitd_flags: None,
        files: None,
    }]);
    ng
}

/// The builder called `name`, or the current one, falling back to the implicit `default`
/// (Docker) builder as buildx does.
pub(crate) fn find_builder(txn: &Txn<'_>, name: Option<&str>) -> Result<NodeGroup, Error> {
    match name {
        Some(n) => match txn.node_group(n) {
            Ok(ng) => Ok(ng),
            Err(kbx_store::Error::NotFound(_)) if n == DEFAULT_BUILDER => {
                default_with_activity(txn)
            }
            Err(e) => Err(e.into()),
        },
        None => {
            let key = context::current_key(|k| std::env::var_os(k));
            match txn.current(&key)? {
                Some(ng) => Ok(ng),
                None => default_with_activity(txn),
            }
        }
    }
}

/// [`default_builder`] with its last activity from the store, as buildx loads it.
pub(crate) fn default_with_activity(txn: &Txn<'_>) -> Result<NodeGroup, Error> {
    let mut ng = default_builder();
    ng.last_activity = txn.last_activity(DEFAULT_BUILDER)?;
    Ok(ng)
}

/// The Docker host kbx talks to: `DOCKER_HOST` or the default socket.
pub(crate) fn docker_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// The builder called `name` (or the current one) from the default store.
pub(crate) fn load(name: Option<&str>) -> Result<NodeGroup, Error> {
    let store = Store::open_default()?;
    let txn = store.txn()?;
    find_builder(&txn, name)
}

/// [`load`], recording the builder's last activity (a build uses it).
pub(crate) fn load_active(name: Option<&str>) -> Result<NodeGroup, Error> {
    let store = Store::open_default()?;
    let txn = store.txn()?;
    let ng = find_builder(&txn, name)?;
    txn.update_last_activity(&ng.name)?;
    Ok(ng)
}

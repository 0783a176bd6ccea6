//! `kbx stop`: stops a builder's nodes.
//!
//! Buildx's kubernetes driver has nothing to stop (its `Stop` keeps the Deployment and its
//! pods as they are, "a future version may scale the replicas to zero"), nor have the remote and
//! docker drivers; so, as Buildx, `stop` checks that the builder exists and changes nothing.

use kbx_store::Store;

use crate::builders;
use crate::cli::StopArgs;
use crate::error::Error;

/// Runs `kbx stop`: the named builder, else `builder` (`--builder`), else the current one.
pub(crate) fn run(args: StopArgs, builder: Option<String>) -> Result<(), Error> {
    let name = args.name.or(builder);
    let store = Store::open_default()?;
    let txn = store.txn()?;
    builders::find_builder(&txn, name.as_deref())?;
    Ok(())
}

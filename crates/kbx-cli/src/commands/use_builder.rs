//! `kbx use`: set the current builder.

use kbx_store::Store;

use crate::builders::DEFAULT_BUILDER;
use crate::cli::UseArgs;
use crate::context;
use crate::error::Error;

/// Runs `kbx use`: the named builder, else `builder` (`--builder`).
pub(crate) fn run(args: UseArgs, builder: Option<String>) -> Result<(), Error> {
    let name = args.name.or(builder).unwrap_or_default();
    let store = Store::open_default()?;
    let key = context::current_key(|k| std::env::var_os(k));
    let txn = store.txn()?;
    let ng = match txn.node_group(&name) {
        Ok(ng) => ng,
        // The Docker Engine's builder: no current builder means `default`.
        Err(kbx_store::Error::NotFound(_)) if name == DEFAULT_BUILDER => {
            txn.set_current(&key, "", false, false)?;
            return Ok(());
        }
        Err(kbx_store::Error::NotFound(_)) => return Err(Error::UnknownBuilder(name)),
        Err(e) => return Err(e.into()),
    };
    txn.set_current(&key, &ng.name, args.global, args.default)?;
    Ok(())
}

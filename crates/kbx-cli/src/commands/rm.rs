//! `kbx rm`: forget builders and delete their cluster objects.

use std::io::{BufRead as _, Write as _};

use kbx_store::Store;

use crate::builders::DEFAULT_BUILDER;
use crate::cli::RmArgs;
use crate::context;
use crate::driver::{self, Driver, kubernetes};
use crate::error::{Error, chain};

/// Runs `kbx rm`: the named builders, else `builder` (`--builder`), else the current one.
pub(crate) async fn run(args: RmArgs, builder: Option<String>) -> Result<(), Error> {
    let store = Store::open_default()?;
    let key = context::current_key(|k| std::env::var_os(k));
    if args.all_inactive {
        if !args.names.is_empty() {
            return Err(Error::msg(
                "cannot specify builder name when --all-inactive is set",
            ));
        }
        if !args.force
            && !confirm(
                "WARNING! This will remove all builders that are not in running state. Are you sure you want to continue? [y/N] ",
            )
        {
            return Ok(());
        }
        let builders = store.txn()?.list()?;
        let mut failed = false;
        for ng in builders {
            let mut running = false;
            for n in ng.nodes() {
                let st = driver::status_of(&ng, n, std::time::Duration::from_secs(20)).await;
                running |= st.running();
            }
            if !running {
                failed |= remove_one(&store, &ng.name, &args).await.is_err();
            }
        }
        return if failed {
            Err(Error::Summary(
                "failed to remove one or more builders".into(),
            ))
        } else {
            Ok(())
        };
    }
    let names = if !args.names.is_empty() {
        args.names.clone()
    } else if let Some(b) = builder {
        vec![b]
    } else {
        let current = store.txn()?.current(&key)?;
        vec![current.map_or_else(|| DEFAULT_BUILDER.to_owned(), |c| c.name)]
    };
    let mut failed = false;
    for name in &names {
        failed |= remove_one(&store, name, &args).await.is_err();
    }
    if failed {
        Err(Error::Summary(
            "failed to remove one or more builders".into(),
        ))
    } else {
        Ok(())
    }
}

async fn remove_one(store: &Store, name: &str, args: &RmArgs) -> Result<(), Error> {
    let result = async {
        let txn = store.txn()?;
        let ng = match txn.node_group(name) {
            Err(kbx_store::Error::NotFound(_)) if name == DEFAULT_BUILDER => {
                return Err(Error::msg(format!(
                    "context builder cannot be removed, run `docker context rm {name}` to remove this context"
                )));
            }
            other => other?,
        };
        let mut first_error = None;
        // Only kubernetes nodes own something to delete; a remote daemon is never touched.
        if !args.keep_daemon && Driver::from_name(&ng.driver) == Some(Driver::Kubernetes) {
            for n in ng.nodes() {
                if let Err(e) = kubernetes::remove(n, args.keep_state).await {
                    first_error.get_or_insert(Error::RemoveNode {
                        node: n.name.clone(),
                        source: Box::new(e),
                    });
                }
            }
        }
        match first_error {
            // Keep the record so the cluster objects are not orphaned: fix access and retry,
            // or use --keep-daemon to forget the builder anyway.
            Some(e) => Err(e),
            None => {
                txn.remove(name)?;
                Ok(())
            }
        }
    }
    .await;
    match &result {
        Ok(()) => eprintln!("{name} removed"),
        Err(e) => {
            eprintln!("failed to remove {name}: {}", chain(e));
            if let Error::RemoveNode { .. } = e {
                if let Some(hint) = crate::error::hint(e) {
                    eprintln!("hint: {hint}");
                }
                eprintln!(
                    "hint: {name} stays in the store so that its objects are not orphaned; run `kbx rm {name}` again once the cluster answers, or `kbx rm --keep-daemon {name}` to forget it and leave its objects"
                );
            }
        }
    }
    result
}

fn confirm(prompt: &str) -> bool {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "Yes")
}

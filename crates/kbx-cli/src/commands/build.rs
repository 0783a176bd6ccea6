//! `kbx build`: send a local context to the builder's BuildKit (a pod, the Docker Engine or a
//! remote daemon; see [`crate::driver`]). The flags become build options in
//! [`crate::build_options`]; a builder with several nodes builds through [`crate::multi`].

use kbx_buildkit::Output;

use crate::build_options::{build_options, context_key, default_output, load_error, solve_error};
use crate::builders;
use crate::cli::BuildArgs;
use crate::driver;
use crate::error::Error;
use crate::multi;
use crate::output::outln;
use crate::progress::{self, Printer};

/// Runs `kbx build` on `builder` (the current one when `None`).
pub(crate) async fn run(args: BuildArgs, builder: Option<String>) -> Result<(), Error> {
    let mode = progress::resolve_for_stderr(args.progress)?;
    let mut opts = build_options(&args)?;
    let ng = builders::load_active(builder.as_deref())?;
    let Some(n) = ng.nodes().first().cloned() else {
        return Err(Error::msg(format!("builder {:?} has no nodes", ng.name)));
    };
    if opts.platforms.len() > 1 {
        for e in opts.outputs() {
            match e.output {
                Output::DockerLoad { .. } => {
                    return Err(Error::msg(
                        "docker exporter does not currently support exporting manifest lists",
                    ));
                }
                Output::Docker { .. } => {
                    return Err(Error::msg(
                        "docker exporter does not support exporting manifest lists, use the oci exporter instead",
                    ));
                }
                _ => {}
            }
        }
    }
    let push_with_engine = default_output(&mut opts, &ng.driver, &args.tags)?;
    if ng.nodes().len() > 1 && !opts.platforms.is_empty() {
        return multi::run(&args, opts, &ng, mode).await;
    }
    let key = context_key(&args)?;
    let connected =
        driver::connect(&ng, &n, key.as_os_str().as_encoded_bytes(), Some(mode)).await?;
    if mode.takes_notes() {
        eprintln!("#0 building on {}", connected.description);
    }
    let mut printer = Printer::new(mode);
    let result = connected
        .client
        .build_with_status(&opts, |status, events| printer.update(status, events))
        .await;
    let res = match result {
        Ok(res) => res,
        Err(err @ kbx_buildkit::Error::EngineLoad { .. }) => {
            printer.finish();
            return Err(load_error(err));
        }
        Err(err) => {
            printer.finish();
            return Err(solve_error(err));
        }
    };
    let mut digest = res.image_digest().map(str::to_owned);
    if !push_with_engine.is_empty() {
        let steps = progress::Steps::with_printer(printer);
        let pushed = driver::docker::push(&connected.client, &push_with_engine, &steps).await;
        steps.finish();
        if let Some(d) = pushed? {
            digest = Some(d);
        }
    } else {
        printer.finish();
    }
    if let Some(digest) = digest {
        outln!("{digest}");
    }
    Ok(())
}

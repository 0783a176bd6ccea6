//! `kbx build`: send a local context to the builder's BuildKit (a pod, the Docker Engine or a
//! remote daemon; see [`crate::driver`]). The flags become build options in
//! [`crate::build_options`]; a builder with several nodes builds through [`crate::multi`].

use clap::ValueEnum as _;
use kbx_buildkit::Output;

use crate::build_options::{
    build_options, context_key, default_output, load_error, resolve_host_gateway, solve_error,
};
use crate::builders;
use crate::cli::{BuildArgs, ProgressMode};
use crate::debug::debugln;
use crate::driver;
use crate::error::Error;
use crate::multi;
use crate::output::outln;
use crate::progress::{self, Printer};

/// Runs `kbx build` on `builder` (the current one when `None`): the build, then, as buildx,
/// the image ID on stdout in `quiet` mode (`-q`) unless an output's archive went there, the
/// `--iidfile` and the `--metadata-file`.
///
/// # Deviation
/// (K20) On a build split among several nodes, `--iidfile` and `--metadata-file` are refused
/// and `-q` prints no image ID.
pub(crate) async fn run(args: BuildArgs, builder: Option<String>) -> Result<(), Error> {
    let requested = requested_progress(&args)?;
    let mode = progress::resolve_for_stderr(requested)?;
    let mut opts = build_options(&args)?;
    let call = crate::call::CallFunc::parse(&args.call, args.check)?;
    if let Some(c) = &call {
        opts.request_id = Some(c.request_id());
    }
    // As buildx, the metadata file gets the build record's provenance unless
    // BUILDX_METADATA_PROVENANCE turns it off; fetched below as a step of its own.
    let provenance = args.metadata_file.as_ref().and_then(|_| {
        kbx_buildkit::MetadataProvenance::from_env(
            std::env::var("BUILDX_METADATA_PROVENANCE").ok().as_deref(),
        )
    });
    // As buildx, a stale image ID file goes before the build, so a failure leaves none.
    if let Some(iidfile) = &args.iidfile {
        match std::fs::remove_file(iidfile) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::msg(format!("removing image ID file: {e}"))),
        }
    }
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
    // As buildx, a call request exports nothing by default.
    let push_with_engine = if call.is_some() {
        Vec::new()
    } else {
        default_output(&mut opts, &ng.driver, &args.tags)?
    };
    let archive_on_stdout = opts.outputs().iter().any(|e| e.output.writes_stdout());
    if call.is_none() && ng.nodes().len() > 1 && !opts.platforms.is_empty() {
        if args.iidfile.is_some() || args.metadata_file.is_some() {
            return Err(Error::msg(
                "--iidfile and --metadata-file are not supported for builds split among several nodes",
            ));
        }
        if opts.add_hosts.iter().any(|h| h.ends_with("=host-gateway")) {
            return Err(Error::msg(format!(
                "unable to derive the IP value for host-gateway: host-gateway is not supported by the {} driver",
                ng.driver
            )));
        }
        return multi::run(&args, opts, &ng, mode).await;
    }
    let key = context_key(&args)?;
    let connected =
        driver::connect(&ng, &n, key.as_os_str().as_encoded_bytes(), Some(mode)).await?;
    resolve_host_gateway(&mut opts, &ng.driver, &connected.client).await?;
    progress::building_with(mode, &ng.name, &ng.driver);
    if mode.takes_notes() {
        eprintln!("#0 building on {}", connected.description);
    }
    progress::end_of_header(mode);
    debugln!(
        "building on builder {:?} node {:?} ({})",
        ng.name,
        n.name,
        connected.description
    );
    let mut printer = Printer::for_builder(mode, &ng.name, &ng.driver);
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
            return Err(match connected.pod_lost(err).await {
                Ok(lost) => lost,
                Err(err) => solve_error(err),
            });
        }
    };
    debugln!(
        "solve {} exported {:?}",
        res.build_ref,
        res.exporter_response
    );
    if let Some(c) = &call {
        printer.finish();
        let (text, status) = c.print(&res.exporter_response)?;
        crate::output::out!("{text}");
        return match status {
            0 => Ok(()),
            n => Err(Error::Status(n)),
        };
    }
    crate::commands::history::save_build_state(
        &ng.name,
        &n.name,
        &res.build_ref,
        &args.context,
        args.file.as_deref(),
        args.target.as_deref(),
    );
    let mut res = res;
    let steps = progress::Steps::with_printer(printer);
    // As buildx: the build record's provenance for the metadata file, as a step of its own.
    if let Some(mode) = provenance {
        let step = steps.start("resolving provenance for metadata file");
        let found = connected
            .client
            .record_provenance(&res.build_ref, mode)
            .await;
        step.done(found.as_ref().err().map(ToString::to_string).as_deref());
        match found {
            Ok(found) => res.exporter_response.extend(found),
            Err(e) => {
                steps.finish();
                return Err(Error::Buildkit(e));
            }
        }
    }
    let mut digest = res.image_digest().map(str::to_owned);
    if !push_with_engine.is_empty() {
        let pushed = driver::docker::push(&connected.client, &push_with_engine, &steps).await;
        steps.finish();
        if let Some(d) = pushed? {
            digest = Some(d);
        }
    } else {
        steps.finish();
    }
    let image_id = res.image_id().unwrap_or_default();
    // What goes to stdout follows the flags, not BUILDKIT_PROGRESS (buildx reads the variable
    // only to pick the display).
    let shown = if args.quiet || args.progress_from_flag {
        requested
    } else {
        ProgressMode::Auto
    };
    match shown {
        // buildx prints the image ID, even an empty one, and nothing else; nothing at all
        // when an output's archive went to stdout.
        ProgressMode::Quiet if archive_on_stdout => {}
        ProgressMode::Quiet => outln!("{image_id}"),
        ProgressMode::None => {}
        _ => {
            if let Some(digest) = digest {
                outln!("{digest}");
            }
        }
    }
    if let Some(iidfile) = &args.iidfile {
        write_file(iidfile, image_id.as_bytes())
            .map_err(|e| Error::msg(format!("writing image ID file: {e}")))?;
    }
    if let Some(file) = &args.metadata_file {
        let json = res.metadata(&ng.name, &n.name);
        write_atomically(file, json.as_bytes()).map_err(|e| Error::msg(e.to_string()))?;
    }
    Ok(())
}

/// The progress mode asked for: `-q` is `quiet`, and conflicts with a `--progress` other than
/// `auto`, `quiet` or `none` given on the command line (`BUILDKIT_PROGRESS` does not count),
/// as Buildx 0.29.
fn requested_progress(args: &BuildArgs) -> Result<ProgressMode, Error> {
    if !args.quiet {
        return Ok(args.progress);
    }
    if args.progress_from_flag
        && !matches!(
            args.progress,
            ProgressMode::Auto | ProgressMode::Quiet | ProgressMode::None
        )
    {
        let name = args
            .progress
            .to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default();
        return Err(Error::msg(format!(
            "progress={name} and quiet cannot be used together"
        )));
    }
    Ok(ProgressMode::Quiet)
}

/// Writes `data` to `path` with mode 0644 (before the umask), as buildx's `os.WriteFile`.
fn write_file(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    f.write_all(data)
}

/// Writes `data` to a temporary file next to `path`, then renames it over `path`, as the
/// Docker CLI's `AtomicWriteFile` (mode 0644).
fn write_atomically(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_file(&tmp, data).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

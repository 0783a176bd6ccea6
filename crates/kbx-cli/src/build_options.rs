//! What `kbx build` sends to BuildKit, from its flags: the [`BuildOptions`], the output each
//! driver exports to by default, and how a failed solve or load is reported. Shared by builds
//! on one node and builds split among several ([`crate::multi`]).

use std::io::IsTerminal as _;

use kbx_buildkit::{BuildOptions, Output};

use crate::builders;
use crate::cli::{AttestArgs, BuildArgs};
use crate::driver::Driver;
use crate::error::Error;

/// As buildx, an archive never goes to a terminal: `-o -` or `type=tar` without `dest` needs
/// standard output redirected; and only one output may write to it.
fn refuse_console(outputs: &[&Output], stdout_is_terminal: bool) -> Result<(), Error> {
    let mut stdout_used = false;
    for output in outputs {
        let kind = match output {
            Output::Tar { dest: None } => "tar",
            Output::Oci { dest: None, .. } => "oci",
            Output::Docker { dest: None, .. } => "docker",
            _ => continue,
        };
        if stdout_used {
            return Err(Error::msg("multiple outputs configured to write to stdout"));
        }
        if stdout_is_terminal {
            return Err(Error::msg(format!(
                "dest file is required for {kind} exporter. refusing to write to console"
            )));
        }
        stdout_used = true;
    }
    Ok(())
}

/// `--push` and `--load` next to `--output`s, as buildx does: `--push` pushes every `image`
/// output, or adds one (`type=image,push=true`) when there is none; `--load` adds a load into
/// the Docker Engine unless a `docker` output is already there. Both may be given.
fn push_and_load(exports: &mut Vec<kbx_buildkit::Export>, push: bool, load: bool) {
    if push {
        let mut pushed = false;
        for e in exports.iter_mut() {
            if let Output::Image { push, .. } = &mut e.output {
                *push = true;
                pushed = true;
            }
        }
        if !pushed {
            exports.push(
                Output::Image {
                    names: Vec::new(),
                    push: true,
                }
                .into(),
            );
        }
    }
    if load {
        let loaded = exports.iter().any(|e| {
            matches!(
                e.output,
                Output::Docker { .. } | Output::DockerDir { .. } | Output::DockerLoad { .. }
            )
        });
        if !loaded {
            exports.push(
                Output::DockerLoad {
                    engine: None,
                    names: Vec::new(),
                }
                .into(),
            );
        }
    }
}

/// `-t` on the outputs, as buildx does: with tags, every `image`, `oci` and `docker` output is
/// named by all of them, whatever its own `name=` says; without, an image push that names
/// nothing is refused (`tag is needed when pushing to registry`).
fn apply_tags(outputs: &mut [&mut Output], tags: &[String]) -> Result<(), Error> {
    for output in outputs.iter_mut() {
        if !tags.is_empty() {
            if let Some(names) = output.names_mut() {
                *names = tags.to_vec();
            }
        } else if let Output::Image { names, push: true } = &**output
            && names.is_empty()
        {
            return Err(Error::msg("tag is needed when pushing to registry"));
        }
    }
    Ok(())
}

/// The entries of every `--cache-from`/`--cache-to` value; as buildx, a value without `=` is a
/// comma-separated list of registry references.
fn cache_entries(values: &[String]) -> Result<Vec<kbx_buildkit::CacheEntry>, Error> {
    let mut all = Vec::new();
    for v in values {
        all.extend(kbx_buildkit::CacheEntry::parse_list(v)?);
    }
    Ok(all)
}

/// buildx's pod-choice key: the absolute context path.
pub(crate) fn context_key(args: &BuildArgs) -> Result<std::path::PathBuf, Error> {
    std::path::absolute(&args.context).map_err(|source| Error::Read {
        path: args.context.display().to_string(),
        source,
    })
}

/// The build options of `kbx build`'s flags (and `BUILDX_NO_DEFAULT_ATTESTATIONS`).
///
/// # Deviation
/// (K21) Every flag value is checked here, before the builder is looked up; buildx checks
/// `--add-host`, `--allow`, `--annotation` and `--no-cache` with `--no-cache-filter` after it
/// has reached the builder.
pub(crate) fn build_options(args: &BuildArgs) -> Result<BuildOptions, Error> {
    let (attests, no_default_attestations) = attestations(
        &args.attest,
        std::env::var("BUILDX_NO_DEFAULT_ATTESTATIONS")
            .ok()
            .as_deref(),
    )?;
    if args.no_cache && !args.no_cache_filter.is_empty() {
        return Err(Error::msg(
            "--no-cache and --no-cache-filter cannot currently be used together",
        ));
    }
    // As buildx, empty values are skipped.
    let mut exports = args
        .output
        .iter()
        .filter(|s| !s.is_empty())
        .map(|spec| kbx_buildkit::Export::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;
    if args.iidfile.is_some()
        && exports
            .iter()
            .any(|e| matches!(e.output, Output::Local { .. } | Output::Tar { .. }))
    {
        return Err(Error::msg(
            "local and tar exporters are incompatible with image ID file",
        ));
    }
    push_and_load(&mut exports, args.push, args.load);
    apply_tags(
        &mut exports
            .iter_mut()
            .map(|e| &mut e.output)
            .collect::<Vec<_>>(),
        &args.tags,
    )?;
    refuse_console(
        &exports.iter().map(|e| &e.output).collect::<Vec<_>>(),
        std::io::stdout().is_terminal(),
    )?;
    // As buildx, annotations go to every output the flags name (not to a driver's default).
    let annotations = kbx_opts::annotation_attrs(&args.annotations)?;
    for e in &mut exports {
        e.attrs.extend(annotations.clone());
    }
    let run = run_settings(args)?;
    let mut exports = exports.into_iter();
    let (output, export_attrs) = match exports.next() {
        Some(first) => (Some(first.output), first.attrs),
        None => (None, std::collections::BTreeMap::new()),
    };
    let extra_outputs: Vec<kbx_buildkit::Export> = exports.collect();
    Ok(BuildOptions {
        context: args.context.clone(),
        dockerfile: args.file.clone(),
        target: args.target.clone(),
        build_args: with_source_date_epoch(
            key_values(&args.build_args, "--build-arg")?,
            std::env::var("SOURCE_DATE_EPOCH").ok(),
        ),
        labels: key_values(&args.labels, "--label")?,
        platforms: platforms(&args.platforms)?
            .iter()
            .map(ToString::to_string)
            .collect(),
        no_cache: args.no_cache,
        network: args.network.clone(),
        named_contexts: args
            .build_contexts
            .iter()
            .map(|c| kbx_buildkit::NamedContext::parse(c))
            .collect::<Result<_, _>>()
            .map_err(Error::from)?,
        output,
        cache_from: cache_entries(&args.cache_from)?,
        cache_to: cache_entries(&args.cache_to)?,
        secrets: args
            .secrets
            .iter()
            .map(|s| kbx_buildkit::Secret::parse(s))
            .collect::<Result<_, _>>()
            .map_err(Error::from)?,
        ssh: args
            .ssh
            .iter()
            .map(|s| {
                let mut agent = kbx_buildkit::SshAgent::parse(s)?;
                agent.load_keys(ask_passphrase)?;
                Ok(agent)
            })
            .collect::<Result<_, kbx_buildkit::Error>>()?,
        credentials: kbx_buildkit::DockerCredentials::load().ok(),
        attests,
        no_default_attestations,
        export_attrs,
        extra_outputs,
        image_resolve_mode: args.pull.then(|| "pull".to_owned()),
        no_cache_filter: args.no_cache_filter.clone(),
        add_hosts: run.add_hosts,
        shm_size: run.shm_size,
        ulimits: run.ulimits,
        cgroup_parent: args.cgroup_parent.clone().filter(|c| !c.is_empty()),
        entitlements: run.entitlements,
        ..BuildOptions::default()
    })
}

/// `--add-host`, `--shm-size`, `--ulimit` and `--allow`, checked with buildx's grammars.
struct RunSettings {
    add_hosts: Vec<String>,
    shm_size: i64,
    ulimits: Vec<String>,
    entitlements: Vec<String>,
}

/// Parses the flags that shape `RUN` containers and the entitlements. A `host-gateway`
/// address stays `HOST=host-gateway` until [`resolve_host_gateway`] knows the builder.
fn run_settings(args: &BuildArgs) -> Result<RunSettings, Error> {
    let mut add_hosts = Vec::new();
    for v in &args.add_hosts {
        for h in kbx_opts::ExtraHost::parse_flag(v)? {
            add_hosts.push(h.to_string());
        }
    }
    let shm_size = match &args.shm_size {
        Some(v) => kbx_opts::parse_mem_bytes("--shm-size", v)?,
        None => 0,
    };
    let ulimits = kbx_opts::Ulimit::parse_all(&args.ulimits)?
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut entitlements = Vec::new();
    for v in &args.allow {
        entitlements.extend(
            kbx_opts::Entitlement::parse_flag(v)?
                .into_iter()
                .map(|e| e.0),
        );
    }
    Ok(RunSettings {
        add_hosts,
        shm_size,
        ulimits,
        entitlements,
    })
}

/// The attestations to request, and whether buildx's default provenance is turned off
/// (`BUILDX_NO_DEFAULT_ATTESTATIONS`, a Go boolean).
pub(crate) fn attestations(
    args: &AttestArgs,
    no_default_env: Option<&str>,
) -> Result<(std::collections::BTreeMap<String, Option<String>>, bool), Error> {
    let attests = kbx_buildkit::parse_attests(
        &args.attest,
        args.provenance.as_deref(),
        args.sbom.as_deref(),
    )?;
    let no_default = match no_default_env {
        None => false,
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => true,
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => false,
        Some(v) => {
            return Err(Error::msg(format!(
                "invalid BUILDX_NO_DEFAULT_ATTESTATIONS: strconv.ParseBool: parsing {v:?}: invalid syntax"
            )));
        }
    };
    Ok((attests, no_default))
}

/// As buildx: `SOURCE_DATE_EPOCH` from the environment (even empty) becomes the build argument
/// of that name unless `--build-arg` gives one, so reproducible builds need no extra flag.
fn with_source_date_epoch(
    mut args: std::collections::BTreeMap<String, String>,
    env: Option<String>,
) -> std::collections::BTreeMap<String, String> {
    if let Some(v) = env {
        args.entry("SOURCE_DATE_EPOCH".to_owned()).or_insert(v);
    }
    args
}

fn key_values(
    list: &[String],
    flag: &str,
) -> Result<std::collections::BTreeMap<String, String>, Error> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            // buildx takes a bare KEY's value from the environment.
            None => std::env::var(kv)
                .map(|v| (kv.clone(), v))
                .map_err(|_| Error::msg(format!("invalid {flag} {kv:?}: expected KEY=VALUE"))),
        })
        .collect()
}

/// `--platform` values (comma lists allowed), parsed and normalised.
///
/// # Deviation
/// A platform given twice is built once (buildx passes the duplicate on to BuildKit).
pub(crate) fn platforms(values: &[String]) -> Result<Vec<kbx_opts::Platform>, Error> {
    let all =
        kbx_opts::Platform::parse_list(values, &kbx_opts::Platform::local()).map_err(|source| {
            Error::InvalidValue {
                what: "invalid --platform".to_owned(),
                source: Box::new(source),
            }
        })?;
    let mut out: Vec<kbx_opts::Platform> = Vec::new();
    for p in all {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Asks for the passphrase of an `--ssh` key file on the terminal, as buildx does, without
/// echoing it; fails when stdin or stderr is not a terminal.
fn ask_passphrase(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::IsTerminal;
    let term = console::Term::stderr();
    if !std::io::stdin().is_terminal() || !term.is_term() {
        return Err(std::io::Error::other(
            "stdin is not a terminal to ask for the passphrase on",
        ));
    }
    term.write_str(&format!("Enter passphrase for {}: ", path.display()))?;
    term.read_secure_line()
}

/// Replaces `HOST=host-gateway` entries of `--add-host` with the address of the builder's
/// host, as buildx does: the Engine's BuildKit names it in its worker label
/// `org.mobyproject.buildkit.worker.moby.host-gateway-ip`; other drivers have none.
pub(crate) async fn resolve_host_gateway(
    opts: &mut BuildOptions,
    driver: &str,
    client: &kbx_buildkit::Client,
) -> Result<(), Error> {
    const SUFFIX: &str = "=host-gateway";
    if !opts.add_hosts.iter().any(|h| h.ends_with(SUFFIX)) {
        return Ok(());
    }
    let derive = |why: String| {
        Error::msg(format!(
            "unable to derive the IP value for host-gateway: {why}"
        ))
    };
    if Driver::from_name(driver) != Some(Driver::Docker) {
        return Err(derive(format!(
            "host-gateway is not supported by the {driver} driver"
        )));
    }
    let workers = client
        .list_workers()
        .await
        .map_err(|e| derive(format!("listing workers: {e}")))?;
    let label = "org.mobyproject.buildkit.worker.moby.host-gateway-ip";
    let ip = workers
        .iter()
        .find_map(|w| w.labels.get(label).filter(|v| !v.is_empty()))
        .ok_or_else(|| derive("host-gateway IP not found".to_owned()))?;
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| derive(format!("failed to parse host-gateway IP: {ip}")))?;
    for h in &mut opts.add_hosts {
        if let Some(host) = h.strip_suffix(SUFFIX) {
            *h = format!("{host}={ip}");
        }
    }
    Ok(())
}

/// What a build exports to when the flags leave a choice, per driver, as buildx does: the
/// docker driver loads into the Engine (`moby`), others keep the result in the cache only.
/// An image push on the docker driver becomes a `moby` export whose names the Engine pushes
/// afterwards; those names are returned. On other drivers, `--load` (a `docker` export without
/// `dest`) streams the archive into the Engine at `DOCKER_HOST`.
pub(crate) fn default_output(
    opts: &mut BuildOptions,
    driver: &str,
    tags: &[String],
) -> Result<Vec<String>, Error> {
    if Driver::from_name(driver) == Some(Driver::Docker) {
        // The Engine's own images are used unless --pull, as buildx's docker driver does.
        if opts.image_resolve_mode.is_none() {
            opts.image_resolve_mode = Some("local".to_owned());
        }
        if let Some(Output::Image { names, push: true }) = &opts.output {
            let names = if names.is_empty() {
                tags.to_vec()
            } else {
                names.clone()
            };
            if names.is_empty() {
                return Err(Error::msg("tag is needed when pushing to registry"));
            }
            opts.output = Some(Output::Moby {
                names: names.clone(),
            });
            return Ok(names);
        }
        let load = matches!(
            &opts.output,
            None | Some(Output::DockerLoad { .. } | Output::Image { push: false, .. })
        );
        if load {
            let names = match &opts.output {
                Some(Output::Image { names, .. } | Output::DockerLoad { names, .. })
                    if !names.is_empty() =>
                {
                    names.clone()
                }
                _ => tags.to_vec(),
            };
            opts.output = Some(Output::Moby { names });
        }
    } else if let Some(Output::DockerLoad { engine, .. }) = &mut opts.output {
        *engine = Some(load_engine()?);
    } else if opts.output.is_none() {
        eprintln!(
            "WARNING: No output specified with {driver} driver. Build result will only remain in the build cache. To push result image into registry use --push or to load image into docker use --load"
        );
    }
    Ok(Vec::new())
}

/// The Engine `--load` (and `type=docker` without `dest`) loads into on non-docker drivers:
/// `DOCKER_HOST`, or the default socket.
///
/// # Deviation
/// (K16) buildx loads into the current Docker context's Engine (or the output's `context=`),
/// sends an `oci` archive to Engines with the containerd image store and finds an unreachable
/// Engine only when the export starts. kbx always sends a `docker` archive to this address and
/// checks the Engine before the build.
fn load_engine() -> Result<kbx_buildkit::Address, Error> {
    let host = builders::docker_host();
    kbx_buildkit::Address::parse_docker_host(&host).map_err(|source| Error::DockerHost {
        host,
        source: Box::new(source),
    })
}

/// A failed load into the Docker Engine (`--load` on a non-docker driver). An Engine that cannot
/// be reached gets the Docker CLI's message naming `DOCKER_HOST` (what buildx reports, and what
/// the docker driver says); otherwise the whole cause chain, e.g. the Engine's refusal.
pub(crate) fn load_error(err: kbx_buildkit::Error) -> Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut unreachable = false;
    while let Some(e) = cause {
        // A boxed source (`EngineLoad`'s) is a `Box<Error>` to `downcast_ref`.
        let ours = e.downcast_ref::<kbx_buildkit::Error>().or_else(|| {
            e.downcast_ref::<Box<kbx_buildkit::Error>>()
                .map(AsRef::as_ref)
        });
        unreachable |= matches!(ours, Some(kbx_buildkit::Error::Connect { .. }));
        cause = e.source();
    }
    if unreachable {
        Error::DockerUnreachable {
            host: builders::docker_host(),
            denied: true,
            source: Box::new(err),
        }
    } else {
        Error::Buildkit(err)
    }
}

/// A failed solve: the step, its last log lines, then the daemon's message.
pub(crate) fn solve_error(err: kbx_buildkit::Error) -> Error {
    if let Some(block) = err.failed_step() {
        eprint!("{block}");
    }
    Error::Buildkit(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_date_epoch_comes_from_the_environment_unless_given() {
        let given = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            with_source_date_epoch(given(&[("A", "1")]), Some("1700000000".into())),
            given(&[("A", "1"), ("SOURCE_DATE_EPOCH", "1700000000")])
        );
        // An empty value is passed too (it resets an ARG default), as buildx does.
        assert_eq!(
            with_source_date_epoch(given(&[]), Some(String::new())),
            given(&[("SOURCE_DATE_EPOCH", "")])
        );
        assert_eq!(
            with_source_date_epoch(given(&[("SOURCE_DATE_EPOCH", "5")]), Some("9".into())),
            given(&[("SOURCE_DATE_EPOCH", "5")])
        );
        assert_eq!(with_source_date_epoch(given(&[]), None), given(&[]));
    }

    #[test]
    fn archives_never_go_to_a_terminal() {
        let tar = Output::parse("-").unwrap();
        assert_eq!(
            refuse_console(&[&tar], true).unwrap_err().to_string(),
            "dest file is required for tar exporter. refusing to write to console"
        );
        assert!(refuse_console(&[&tar], false).is_ok());
        let oci = Output::parse("type=oci").unwrap();
        assert!(refuse_console(&[&oci], true).is_err());
        let file = Output::parse("type=tar,dest=o.tar").unwrap();
        assert!(refuse_console(&[&file], true).is_ok());
        assert!(refuse_console(&[], true).is_ok());
        // One output at most writes to stdout (checked first, as buildx).
        assert_eq!(
            refuse_console(&[&file, &tar, &oci], false)
                .unwrap_err()
                .to_string(),
            "multiple outputs configured to write to stdout"
        );
    }

    #[test]
    fn tags_replace_the_names_of_image_oci_and_docker_outputs() {
        let parse = |s: &str| Output::parse(s).unwrap();
        let mut outs = [
            parse("type=oci,name=x,dest=o.tar"),
            parse("type=image,name=r/x"),
            parse("type=docker,tar=false,dest=d"),
            parse("type=local,dest=l"),
            parse("type=moby,name=m"),
        ];
        let tags = vec!["a".to_owned(), "b".to_owned()];
        apply_tags(&mut outs.iter_mut().collect::<Vec<_>>(), &tags).unwrap();
        assert_eq!(
            outs[0],
            Output::Oci {
                dest: Some("o.tar".into()),
                names: tags.clone()
            }
        );
        assert_eq!(
            outs[1],
            Output::Image {
                names: tags.clone(),
                push: false
            }
        );
        assert_eq!(
            outs[2],
            Output::DockerDir {
                dest: "d".into(),
                names: tags.clone()
            }
        );
        assert_eq!(outs[3], parse("type=local,dest=l"));
        assert_eq!(outs[4], parse("type=moby,name=m"), "not a type -t names");

        // Without tags: names stay; a push that names nothing is refused.
        let mut named = parse("type=registry,name=r/x");
        apply_tags(&mut [&mut named], &[]).unwrap();
        assert_eq!(named, parse("type=image,name=r/x,push=true"));
        let mut unnamed = parse("type=registry");
        assert_eq!(
            apply_tags(&mut [&mut unnamed], &[])
                .unwrap_err()
                .to_string(),
            "tag is needed when pushing to registry"
        );
        let mut kept = parse("type=image");
        assert!(
            apply_tags(&mut [&mut kept], &[]).is_ok(),
            "no push, no tag needed"
        );
    }

    #[test]
    fn push_and_load_join_the_outputs_as_buildx() {
        let kinds = |specs: &[&str], push: bool, load: bool| {
            let mut e: Vec<kbx_buildkit::Export> = specs
                .iter()
                .map(|s| kbx_buildkit::Export::parse(s).unwrap())
                .collect();
            push_and_load(&mut e, push, load);
            e.into_iter().map(|e| e.output).collect::<Vec<_>>()
        };
        let push = Output::Image {
            names: vec![],
            push: true,
        };
        let load = Output::DockerLoad {
            engine: None,
            names: vec![],
        };
        let local = Output::Local { dest: "d".into() };
        assert_eq!(kinds(&[], true, false), std::slice::from_ref(&push));
        assert_eq!(kinds(&[], false, true), std::slice::from_ref(&load));
        assert_eq!(kinds(&[], true, true), [push.clone(), load.clone()]);
        assert_eq!(
            kinds(&["type=local,dest=d"], true, true),
            [local.clone(), push.clone(), load]
        );
        // An image output is pushed instead of adding one; a docker output is the load.
        assert_eq!(kinds(&["type=image"], true, false), [push]);
        assert_eq!(
            kinds(&["type=docker,dest=d.tar"], false, true),
            [Output::parse("type=docker,dest=d.tar").unwrap()]
        );
        assert_eq!(kinds(&["type=local,dest=d"], false, false), [local]);
    }

    /// The build options of `kbx build ARGS .`.
    fn options_of(args: &[&str]) -> Result<BuildOptions, Error> {
        use clap::Parser as _;
        let mut all = vec!["kbx", "build"];
        all.extend_from_slice(args);
        all.push(".");
        let cli = crate::cli::Cli::try_parse_from(all).expect("valid syntax");
        let crate::cli::Command::Build(args) = cli.command else {
            unreachable!("a build command line")
        };
        build_options(&args)
    }

    #[test]
    fn annotations_go_to_every_output_and_run_flags_are_parsed() {
        let o = options_of(&[
            "-o",
            "type=oci,dest=a.tar,annotation.k=own",
            "-o",
            "type=image,name=r/x",
            "--annotation",
            "k=v",
            "--annotation",
            "manifest:m=w",
            "--pull",
            "--add-host",
            "a:10.0.0.1,b=::1",
            "--allow",
            "network.host",
            "--shm-size",
            "1g",
            "--ulimit",
            "nproc=5",
            "--ulimit",
            "nofile=1:2",
            "--no-cache-filter",
            "s1",
            "--cgroup-parent",
            "/ci",
        ])
        .unwrap();
        assert_eq!(
            o.export_attrs["annotation.k"], "v",
            "the flag wins over --output"
        );
        assert_eq!(o.export_attrs["annotation-manifest.m"], "w");
        assert_eq!(o.extra_outputs.len(), 1);
        assert_eq!(o.extra_outputs[0].attrs["annotation.k"], "v");
        assert_eq!(o.image_resolve_mode.as_deref(), Some("pull"));
        assert_eq!(o.add_hosts, ["a=10.0.0.1", "b=::1"]);
        assert_eq!(o.entitlements, ["network.host"]);
        assert_eq!(o.shm_size, 1 << 30);
        assert_eq!(o.ulimits, ["nofile=1:2", "nproc=5:5"]);
        assert_eq!(o.no_cache_filter, ["s1"]);
        assert_eq!(o.cgroup_parent.as_deref(), Some("/ci"));
        // No output named: the annotations are still checked.
        assert!(options_of(&["--annotation", "bad"]).is_err());
        // An image ID file needs no local or tar output among several.
        let e = options_of(&[
            "-o",
            "type=oci,dest=a.tar",
            "-o",
            "type=local,dest=d",
            "--iidfile",
            "i",
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "local and tar exporters are incompatible with image ID file"
        );
    }

    #[test]
    fn cache_reference_lists_are_split() {
        let e = cache_entries(&["r/a,r/b".into(), r#"type=local,"src=/c,d""#.into()]).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].attrs["ref"], "r/b");
        assert_eq!(e[2].attrs["src"], "/c,d");
        assert!(cache_entries(&[String::new()]).unwrap().is_empty());
    }

    #[test]
    fn attestation_flags_and_the_default_switch() {
        let args = AttestArgs {
            attest: vec!["type=sbom,disabled=true".into()],
            provenance: Some("mode=max".into()),
            sbom: None,
        };
        let (a, no_default) = attestations(&args, None).unwrap();
        assert_eq!(a["provenance"].as_deref(), Some("type=provenance,mode=max"));
        assert_eq!(a["sbom"], None);
        assert!(!no_default);
        assert!(attestations(&AttestArgs::default(), Some("1")).unwrap().1);
        assert!(
            !attestations(&AttestArgs::default(), Some("false"))
                .unwrap()
                .1
        );
        let e = attestations(&AttestArgs::default(), Some("yes")).unwrap_err();
        assert!(
            e.to_string().contains("BUILDX_NO_DEFAULT_ATTESTATIONS"),
            "{e}"
        );
        let dup = AttestArgs {
            attest: vec!["type=provenance".into()],
            provenance: Some("false".into()),
            sbom: None,
        };
        let e = attestations(&dup, None).unwrap_err();
        assert!(e.to_string().contains("duplicate attestation field"), "{e}");
    }
}

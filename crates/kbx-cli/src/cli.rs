//! Command-line syntax: the commands and flags of `docker buildx`, for the Kubernetes driver.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kbx: BuildKit builders on Kubernetes, compatible with `docker buildx`.
#[derive(Debug, Parser)]
#[command(
    name = "kbx",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_long_help = crate::error::EXIT_CODES_HELP
)]
pub(crate) struct Cli {
    /// Override the configured builder instance (`BUILDX_BUILDER` sets the default); a name
    /// given to `inspect`, `use` or `rm` wins over both.
    #[arg(
        long,
        global = true,
        env = "BUILDX_BUILDER",
        value_name = "NAME",
        add = clap_complete::ArgValueCandidates::new(crate::complete::builder_names)
    )]
    pub(crate) builder: Option<String>,
    /// Enable debug logging: `debug:` lines on stderr saying what kbx does (the builder and
    /// node, the solve reference, the exporter's response) and every error with its full cause
    /// chain in Rust's debug form. A non-empty `DEBUG` turns it on too, as in buildx.
    #[arg(short = 'D', long, global = true)]
    pub(crate) debug: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a new builder instance, or change one.
    Create(CreateArgs),
    /// List builder instances.
    Ls(LsArgs),
    /// Inspect a builder instance.
    Inspect(InspectArgs),
    /// Set the current builder instance.
    Use(UseArgs),
    /// Remove one or more builder instances.
    Rm(RmArgs),
    /// Stop a builder instance (nothing to stop on the kubernetes, remote and docker drivers).
    Stop(StopArgs),
    /// Proxy standard input and output to the builder's BuildKit (e.g. for `buildctl`).
    #[command(name = "dial-stdio")]
    DialStdio(DialStdioArgs),
    /// Start a build on a builder.
    #[command(visible_alias = "b")]
    Build(Box<BuildArgs>),
    /// Disk usage of the build cache.
    Du(DuArgs),
    /// Remove build cache.
    Prune(PruneArgs),
    /// Commands to work on images in a registry.
    Imagetools(crate::commands::imagetools::ImagetoolsArgs),
    /// Commands to work on build records.
    History(HistoryArgs),
    /// Show the kbx version.
    Version,
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Output of `create --dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DryRunFormat {
    /// Multi-document YAML of every object.
    Yaml,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Builder instance name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Driver to use: `kubernetes` (default) or `remote` (`docker` is the implicit `default`
    /// builder and cannot be created).
    #[arg(long, add = clap_complete::ArgValueCandidates::new(crate::complete::driver_names))]
    pub(crate) driver: Option<String>,
    /// Create or modify this node.
    #[arg(long)]
    pub(crate) node: Option<String>,
    /// Fixed platforms for the node (comma lists allowed).
    #[arg(long = "platform")]
    pub(crate) platforms: Vec<String>,
    /// Append a node to the builder instead of changing it.
    #[arg(long)]
    pub(crate) append: bool,
    /// Remove a node from the builder (and, unless --keep-daemon, its cluster objects).
    #[arg(long)]
    pub(crate) leave: bool,
    /// With --leave: keep the node's cluster objects.
    #[arg(long)]
    pub(crate) keep_daemon: bool,
    /// Boot the builder after creating it.
    #[arg(long)]
    pub(crate) bootstrap: bool,
    /// Flags for the BuildKit daemon (`--buildkitd-flags '--debug'` and `--buildkitd-flags=--debug`).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) buildkitd_flags: Option<String>,
    /// BuildKit daemon config file.
    #[arg(long, visible_alias = "config")]
    pub(crate) buildkitd_config: Option<String>,
    /// Options for the driver (CSV records; repeatable).
    #[arg(long = "driver-opt")]
    pub(crate) driver_opts: Vec<String>,
    /// Set the current builder instance.
    #[arg(long = "use")]
    pub(crate) use_: bool,
    /// Timeout for loading builder status.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Print the objects that would be created and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Output format of --dry-run.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
    pub(crate) output: DryRunFormat,
    /// The remote driver's BuildKit address (`tcp://HOST:PORT` or `unix:///PATH`); not
    /// supported by the kubernetes driver.
    pub(crate) endpoint: Option<String>,
}

/// Output format of `ls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LsFormat {
    /// The buildx table.
    Table,
    /// One JSON object per builder.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: LsFormat,
    /// Do not truncate the platforms column.
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Timeout for loading builder status.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The builder (default: `--builder`, else the current one).
    #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::builder_names))]
    pub(crate) name: Option<String>,
    /// Boot the builder before inspecting it.
    #[arg(long)]
    pub(crate) bootstrap: bool,
    /// Timeout for loading builder status.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct DialStdioArgs {
    /// Target platform: the first node that lists it is used (default: the first node).
    #[arg(long)]
    pub(crate) platform: Option<String>,
    /// Progress of booting a builder that does not run (`none`, `auto`, `plain`, `rawjson`,
    /// `tty`).
    #[arg(long, value_enum, default_value = "none")]
    pub(crate) progress: ProgressMode,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// The builder (default: `--builder`, else the current one).
    pub(crate) name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UseArgs {
    /// The builder (default: `--builder`).
    #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::builder_names))]
    pub(crate) name: Option<String>,
    /// Also make it the default for the current context.
    #[arg(long)]
    pub(crate) default: bool,
    /// Make it current for every context.
    #[arg(long)]
    pub(crate) global: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Builders to remove (default: `--builder`, else the current one).
    #[arg(add = clap_complete::ArgValueCandidates::new(crate::complete::builder_names))]
    pub(crate) names: Vec<String>,
    /// Keep the cluster objects; only forget the builder.
    #[arg(long)]
    pub(crate) keep_daemon: bool,
    /// Keep BuildKit state (a StatefulSet's volume claims).
    #[arg(long)]
    pub(crate) keep_state: bool,
    /// Remove every builder that is not running.
    #[arg(long)]
    pub(crate) all_inactive: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub(crate) force: bool,
}

/// Go duration syntax (`20s`, `1m30s`), as buildx's flags.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = kbx_opts::GoDuration::parse(text).map_err(|e| e.to_string())?;
    d.to_std()
        .ok_or_else(|| format!("invalid duration {text:?}: must not be negative"))
}

/// `--progress` values, as buildx's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    /// `tty` when stderr is a terminal (and `TERM` is not `dumb`), else `plain`.
    Auto,
    /// A redrawn block of steps with timers and their last log lines.
    Tty,
    /// One line per event (`#N …`).
    Plain,
    /// One JSON object per line on stderr (BuildKit's `client.SolveStatus`).
    #[value(name = "rawjson")]
    RawJson,
    /// Nothing but errors; `build` prints the image ID on stdout at the end.
    Quiet,
    /// Nothing but errors, and no image ID either.
    None,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The build context directory, or `-` for an archive or a Dockerfile on standard input.
    pub(crate) context: std::path::PathBuf,
    /// Name of the Dockerfile (default: `CONTEXT/Dockerfile`).
    #[arg(short = 'f', long = "file")]
    pub(crate) file: Option<std::path::PathBuf>,
    /// Image names (`name:tag`).
    #[arg(short = 't', long = "tag")]
    pub(crate) tags: Vec<String>,
    /// Build-time variables (`KEY=VALUE`).
    #[arg(long = "build-arg")]
    pub(crate) build_args: Vec<String>,
    /// Image labels (`KEY=VALUE`).
    #[arg(long = "label")]
    pub(crate) labels: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Additional build contexts (`name=DIR|docker-image://REF|target:STAGE|URL`).
    #[arg(long = "build-context")]
    pub(crate) build_contexts: Vec<String>,
    /// Networking mode for `RUN` steps (`default`, `none`, `host`).
    #[arg(long)]
    pub(crate) network: Option<String>,
    /// Target platforms.
    #[arg(long = "platform")]
    pub(crate) platforms: Vec<String>,
    /// Output destination (`type=local,dest=DIR`, `type=tar,dest=FILE`, `type=image,…`);
    /// repeat for several outputs of one build (BuildKit v0.13+).
    #[arg(short = 'o', long = "output")]
    pub(crate) output: Vec<String>,
    /// Shorthand for `--output=type=image,push=true`.
    #[arg(long)]
    pub(crate) push: bool,
    /// Shorthand for `--output=type=docker` (load into Docker).
    #[arg(long)]
    pub(crate) load: bool,
    /// External cache sources.
    #[arg(long = "cache-from")]
    pub(crate) cache_from: Vec<String>,
    /// Cache export destinations.
    #[arg(long = "cache-to")]
    pub(crate) cache_to: Vec<String>,
    /// Secrets for the build (`id=…,src=…` or `id=…,env=…`).
    #[arg(long = "secret")]
    pub(crate) secrets: Vec<String>,
    /// SSH agent sockets or private key files for the build (`default`, `id=socket` or
    /// `id=key[,key…]`; passphrases are asked for on the terminal).
    #[arg(long = "ssh")]
    pub(crate) ssh: Vec<String>,
    /// Progress output (`BUILDKIT_PROGRESS` sets the default).
    #[arg(long, value_enum, env = "BUILDKIT_PROGRESS", default_value = "auto")]
    pub(crate) progress: ProgressMode,
    /// Whether `--progress` was given on the command line (not the default or
    /// `BUILDKIT_PROGRESS`): `-q` conflicts only with the flag, as in buildx.
    #[arg(skip)]
    pub(crate) progress_from_flag: bool,
    /// Suppress the build output and print the image ID on success.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Always attempt to pull all referenced images.
    #[arg(long)]
    pub(crate) pull: bool,
    /// Add a custom host-to-IP mapping (`host:ip` or `host=ip`; comma lists allowed).
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub(crate) add_hosts: Vec<String>,
    /// Allow an extra privileged entitlement (`network.host`, `security.insecure`; one per
    /// flag, repeatable).
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub(crate) allow: Vec<String>,
    /// Add an annotation to the image (`KEY=VALUE`, `manifest:KEY=VALUE`,
    /// `manifest[linux/amd64]:KEY=VALUE`, …).
    #[arg(long = "annotation", value_name = "ANNOTATION")]
    pub(crate) annotations: Vec<String>,
    /// Do not cache the specified stages.
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub(crate) no_cache_filter: Vec<String>,
    /// Shared memory size for build containers (`64m`, `1g`, bytes without a unit).
    #[arg(long = "shm-size", value_name = "BYTES")]
    pub(crate) shm_size: Option<String>,
    /// Ulimit options (`nofile=1024:2048`).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub(crate) ulimits: Vec<String>,
    /// Set the parent cgroup for the `RUN` instructions during build.
    #[arg(long = "cgroup-parent", value_name = "CGROUP")]
    pub(crate) cgroup_parent: Option<String>,
    /// Write the image ID to a file.
    #[arg(long = "iidfile", value_name = "FILE")]
    pub(crate) iidfile: Option<std::path::PathBuf>,
    /// Write build result metadata to a file (JSON, as buildx writes it).
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub(crate) metadata_file: Option<std::path::PathBuf>,
    /// Set method for evaluating build: `build` (the default), `check`, `outline`, `targets`,
    /// with options after a comma (`check,format=json`, `check,ignorestatus=true`).
    #[arg(long = "call", value_name = "METHOD", default_value = "build")]
    pub(crate) call: String,
    /// Shorthand for `--call=check`.
    #[arg(long)]
    pub(crate) check: bool,
    #[command(flatten)]
    pub(crate) attest: AttestArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DuArgs {
    /// Provide filter values (`KEY=VALUE`, e.g. `type=regular`, `until=24h`).
    #[arg(long = "filter")]
    pub(crate) filters: Vec<String>,
    /// Shorthand for "--format=pretty".
    #[arg(long)]
    pub(crate) verbose: bool,
    /// Format the output: `table` (the default), `pretty`, `json`, or a template
    /// (`table {{.ID}}\t{{.Size}}`; fields `ID`, `Parents`, `CreatedAt`, `Mutable`,
    /// `Reclaimable`, `Shared`, `Size`, `Description`, `UsageCount`, `LastUsedAt`, `Type`).
    #[arg(long)]
    pub(crate) format: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Include internal/frontend images.
    #[arg(short, long)]
    pub(crate) all: bool,
    /// Provide filter values (`KEY=VALUE`, e.g. `type=regular`, `until=24h`).
    #[arg(long = "filter")]
    pub(crate) filters: Vec<String>,
    /// Amount of disk space always allowed to keep for cache (e.g. `512mb`, `10GB`).
    #[arg(long)]
    pub(crate) reserved_space: Option<String>,
    /// Amount of disk space to keep for cache (deprecated name of --reserved-space).
    #[arg(long)]
    pub(crate) keep_storage: Option<String>,
    /// Provide a more verbose output.
    #[arg(long)]
    pub(crate) verbose: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    pub(crate) force: bool,
}

/// `--attest`, `--provenance` and `--sbom`, as buildx takes them.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct AttestArgs {
    /// Attestation parameters (`type=provenance,mode=max`, `type=sbom`, `…,disabled=true`).
    #[arg(long = "attest")]
    pub(crate) attest: Vec<String>,
    /// Shorthand for `--attest=type=provenance` (`true`, `false`, `mode=min`, `mode=max`).
    #[arg(long)]
    pub(crate) provenance: Option<String>,
    /// Shorthand for `--attest=type=sbom` (`true`, `false`, or its attributes).
    #[arg(long)]
    pub(crate) sbom: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    #[command(subcommand)]
    pub(crate) command: HistoryCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HistoryCommand {
    /// List build records.
    Ls(HistoryLsArgs),
    /// Inspect a build record.
    Inspect(HistoryInspectArgs),
    /// Print the logs of a build record.
    Logs(HistoryLogsArgs),
    /// Remove build records.
    Rm(HistoryRmArgs),
}

#[derive(Debug, Args)]
pub(crate) struct HistoryLsArgs {
    /// Format the output: `table`, `json`, or a template (`table {{.Ref}}\t{{.Name}}`, fields
    /// `Ref`, `FullRef`, `Name`, `Status`, `CreatedAt`, `Duration`, `Link`).
    #[arg(long, default_value = "table")]
    pub(crate) format: String,
    /// Don't truncate output.
    #[arg(long)]
    pub(crate) no_trunc: bool,
    /// Provide filter values (e.g., "status=error").
    #[arg(long = "filter")]
    pub(crate) filters: Vec<String>,
    /// List records for current repository only (not supported by kbx).
    #[arg(long, hide = true)]
    pub(crate) local: bool,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryInspectArgs {
    /// The record: its ID, or `^N` for the N-th newest (default: the newest).
    #[arg(value_name = "REF")]
    pub(crate) reference: Option<String>,
    /// Format the output: `pretty`, `json`, or a template (`{{.Name}}`).
    #[arg(long, default_value = "pretty")]
    pub(crate) format: String,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryLogsArgs {
    /// The record: its ID, or `^N` for the N-th newest (default: the newest).
    #[arg(value_name = "REF")]
    pub(crate) reference: Option<String>,
    /// Set type of progress output (plain, rawjson, tty).
    #[arg(long, value_enum, default_value = "plain")]
    pub(crate) progress: ProgressMode,
}

#[derive(Debug, Args)]
pub(crate) struct HistoryRmArgs {
    /// The records' IDs.
    #[arg(value_name = "REF")]
    pub(crate) refs: Vec<String>,
    /// Remove all build records.
    #[arg(long)]
    pub(crate) all: bool,
}

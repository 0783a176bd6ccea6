//! Command-line syntax: the commands and flags of `docker buildx`, for the Kubernetes driver.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// kbx: BuildKit builders on Kubernetes, compatible with `docker buildx`.
#[derive(Debug, Parser)]
#[command(name = "kbx", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
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
    /// Driver to use (only `kubernetes` here).
    #[arg(long)]
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
    /// Flags for the BuildKit daemon.
    #[arg(long)]
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
    /// Context or endpoint (not supported by the kubernetes driver).
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
    /// The builder (default: the current one).
    pub(crate) name: Option<String>,
    /// Boot the builder before inspecting it.
    #[arg(long)]
    pub(crate) bootstrap: bool,
    /// Timeout for loading builder status.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Args)]
pub(crate) struct UseArgs {
    /// The builder.
    pub(crate) name: String,
    /// Also make it the default for the current context.
    #[arg(long)]
    pub(crate) default: bool,
    /// Make it current for every context.
    #[arg(long)]
    pub(crate) global: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Builders to remove (default: the current one).
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

//! `kbx`: BuildKit builders on Kubernetes (and the Docker Engine's or a remote BuildKit),
//! compatible with `docker buildx`.
//!
//! Exit codes: 0 success; 1 the command failed (bad input, cluster or store error); 2 bad
//! command-line syntax; 141 the reader of stdout went away (see `error::EXIT_CODES_HELP`,
//! printed by `kbx --help`, and `output`).

#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI is the only crate that prints"
)]

mod build_options;
mod builders;
mod cache;
mod call;
mod cli;
mod commands;
mod complete;
mod context;
mod debug;
mod driver;
mod error;
mod multi;
mod names;
mod output;
mod platforms;
mod plugin;
mod progress;
mod registry;
mod routing;
mod tabwriter;
mod template;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // `COMPLETE=SHELL kbx -- ARGS…`: the shell asks for completions (see `kbx completion`).
    clap_complete::CompleteEnv::with_factory(Cli::command).complete();
    let args = match plugin::args(std::env::args_os().collect()) {
        plugin::Args::Metadata(json) => {
            println!("{json}");
            return ExitCode::SUCCESS;
        }
        plugin::Args::Run(args) => args,
    };
    let matches = Cli::command().get_matches_from(args);
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Command::Build(args) = &mut cli.command {
        args.progress_from_flag = matches
            .subcommand_matches("build")
            .and_then(|m| m.value_source("progress"))
            == Some(clap::parser::ValueSource::CommandLine);
    }
    // As buildx (through the Docker CLI), a non-empty DEBUG turns debug output on too.
    debug::set(cli.debug || std::env::var_os("DEBUG").is_some_and(|v| !v.is_empty()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ERROR: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_FAILURE);
        }
    };
    // `--builder`, else BUILDX_BUILDER; empty means the current builder, as in buildx.
    let builder = cli.builder.filter(|b| !b.is_empty());
    let result = runtime.block_on(async {
        match cli.command {
            Command::Create(args) => commands::create::run(args).await,
            Command::Ls(args) => commands::ls::run(args).await,
            Command::Inspect(args) => commands::inspect::run(args, builder).await,
            Command::Use(args) => commands::use_builder::run(args, builder),
            Command::Stop(args) => commands::stop::run(args, builder),
            Command::DialStdio(args) => commands::dial_stdio::run(args, builder).await,
            Command::Rm(args) => commands::rm::run(args, builder).await,
            Command::Build(args) => commands::build::run(*args, builder).await,
            Command::Du(args) => commands::du::run(args, builder).await,
            Command::Prune(args) => commands::prune::run(args, builder).await,
            Command::Imagetools(args) => commands::imagetools::run(args, builder).await,
            Command::History(args) => commands::history::run(args, builder).await,
            Command::Version => commands::version::run(),
            Command::Completion { shell } => commands::completion::run(shell),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error::report(&e);
            if debug::enabled() {
                eprintln!("debug: {e:#?}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

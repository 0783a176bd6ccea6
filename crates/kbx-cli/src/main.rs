//! `kbx`: BuildKit builders on Kubernetes (and the Docker Engine's or a remote BuildKit),
//! compatible with `docker buildx`.
//!
//! Exit codes: 0 success; 1 the command failed (bad input, cluster or store error); 2 bad
//! command-line syntax (see `error::EXIT_CODES_HELP`, printed by `kbx --help`).

#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI is the only crate that prints"
)]

mod build;
mod builders;
mod cache;
mod cli;
mod context;
mod create;
mod driver;
mod error;
mod imagetools;
mod ls;
mod manage;
mod multi;
mod names;
mod platforms;
mod progress;
mod routing;
mod tabwriter;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Create(args) => create::run(args).await,
            Command::Ls(args) => ls::ls(args).await,
            Command::Inspect(args) => ls::inspect(args).await,
            Command::Use(args) => manage::use_builder(args),
            Command::Rm(args) => manage::rm(args).await,
            Command::Build(args) => build::run(*args).await,
            Command::Du(args) => cache::du(args).await,
            Command::Prune(args) => cache::prune(args).await,
            Command::Imagetools(args) => imagetools::run(args).await,
            Command::Version => {
                println!(
                    "kbx {} (buildx-compatible kubernetes driver)",
                    env!("CARGO_PKG_VERSION")
                );
                Ok(())
            }
            Command::Completion { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "kbx", &mut std::io::stdout());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error::report(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

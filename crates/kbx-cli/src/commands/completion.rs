//! `kbx completion SHELL`.

use clap::CommandFactory as _;

use crate::cli::Cli;
use crate::error::Error;

/// Prints the completion script of `shell` on stdout.
pub(crate) fn run(shell: clap_complete::Shell) -> Result<(), Error> {
    clap_complete::generate(shell, &mut Cli::command(), "kbx", &mut std::io::stdout());
    Ok(())
}

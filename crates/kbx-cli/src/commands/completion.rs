//! `kbx completion SHELL`.

use clap::CommandFactory as _;

use crate::cli::Cli;
use crate::error::Error;
use crate::output;

/// Prints the completion script of `shell` on stdout.
pub(crate) fn run(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kbx", &mut script);
    output::write_all(&script);
    Ok(())
}

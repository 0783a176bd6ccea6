//! `kbx completion SHELL`.

use crate::error::Error;
use crate::output;

/// Prints the completion script of `shell` on stdout: it registers `kbx` with the shell, which
/// then asks `kbx` itself for completions (`COMPLETE=SHELL kbx -- ARGS…`), so builder names
/// (`--builder`, `inspect`, `use`, `rm`) and driver names (`create --driver`) are offered as
/// they are when the user presses Tab.
pub(crate) fn run(shell: clap_complete::Shell) -> Result<(), Error> {
    let name = shell.to_string();
    let shells = clap_complete::env::Shells::builtins();
    let Some(completer) = shells.completer(&name) else {
        return Err(Error::msg(format!("no completion for shell {name:?}")));
    };
    let mut script = Vec::new();
    completer
        .write_registration("COMPLETE", "kbx", "kbx", "kbx", &mut script)
        .map_err(|e| Error::msg(format!("cannot write the completion script: {e}")))?;
    output::write_all(&script);
    Ok(())
}

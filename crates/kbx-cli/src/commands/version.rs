//! `kbx version`.

use crate::error::Error;
use crate::output::outln;

/// Prints the version line.
pub(crate) fn run() -> Result<(), Error> {
    outln!(
        "kbx {} (buildx-compatible kubernetes driver)",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}

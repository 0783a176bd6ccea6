//! `kbx version`.

use crate::error::Error;

/// Prints the version line.
pub(crate) fn run() -> Result<(), Error> {
    println!(
        "kbx {} (buildx-compatible kubernetes driver)",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}

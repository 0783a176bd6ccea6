//! `-D/--debug` (or a non-empty `DEBUG`, which the Docker CLI sets for `docker -D`, as buildx
//! reads it): debug-level diagnostics on stderr.
//!
//! With the flag, kbx prints `debug: …` lines about what it does (which builder and node a
//! build goes to, the solve reference, the exporter's response) and, when a command fails, the
//! error in Rust's debug form after the usual `ERROR:` lines, which shows every cause with its
//! structured fields. Without it, nothing changes.
//!
//! # Deviation
//! (K19) buildx's `--debug` turns on its logrus debug logs, expands warnings and prints a Go
//! stack trace after an error; kbx has no logger, so only the lines above are printed.

use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns debug output on or off (from `-D/--debug`).
pub(crate) fn set(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether `-D/--debug` was given.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Prints `debug: MESSAGE` on stderr when debug output is on.
macro_rules! debugln {
    ($($arg:tt)*) => {
        if $crate::debug::enabled() {
            eprintln!("debug: {}", format_args!($($arg)*));
        }
    };
}
pub(crate) use debugln;

//! Standard output that ends quietly when its reader goes away (`kbx ls | head -1`).
//!
//! `println!` panics when stdout is a closed pipe. buildx, a Go program, is killed by `SIGPIPE`
//! instead, which a shell reports as status 141; kbx (which resets no signal handler, the crate
//! forbids `unsafe`) exits with that status, printing nothing. Every command writes its
//! results through [`out!`] and [`outln!`], or [`write_all`].

use std::io::{ErrorKind, Write as _};

/// The exit status of a write to a closed pipe: 128 + `SIGPIPE` (13), as a shell reports a
/// process that the signal killed.
pub(crate) const EXIT_BROKEN_PIPE: i32 = 141;

/// Writes `bytes` to stdout and flushes it; a closed reader ends the process with
/// [`EXIT_BROKEN_PIPE`], any other write error with 1.
pub(crate) fn write_all(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        failed(&e);
    }
}

/// Formats `args` to stdout, as [`write_all`].
pub(crate) fn write_fmt(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        failed(&e);
    }
}

fn failed(e: &std::io::Error) -> ! {
    if e.kind() == ErrorKind::BrokenPipe {
        std::process::exit(EXIT_BROKEN_PIPE);
    }
    eprintln!("ERROR: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// `print!` that ends quietly on a closed pipe ([`write_fmt`]).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_fmt(format_args!($($arg)*))
    };
}

/// `println!` that ends quietly on a closed pipe ([`write_fmt`]).
macro_rules! outln {
    () => {
        $crate::output::write_all(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

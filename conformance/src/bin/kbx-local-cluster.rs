//! `kbx-local-cluster sweep [DIR]`: tears down every local conformance cluster under DIR (default:
//! the system temporary directory) whose owning process is gone, e.g. after a test run was
//! killed. Prints the work directories it swept.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, dir) = match args.as_slice() {
        [c] => (c.as_str(), std::env::temp_dir()),
        [c, d] => (c.as_str(), PathBuf::from(d)),
        _ => ("", PathBuf::new()),
    };
    if command != "sweep" {
        let _ = writeln!(std::io::stderr(), "usage: kbx-local-cluster sweep [DIR]");
        return ExitCode::from(2);
    }
    let mut out = std::io::stdout().lock();
    for swept in kbx_conformance::local::sweep_abandoned(&dir) {
        let _ = writeln!(out, "swept {}", swept.display());
    }
    ExitCode::SUCCESS
}

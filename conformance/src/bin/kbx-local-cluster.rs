//! `kbx-local-cluster sweep [DIR]`: tears down every local conformance cluster under DIR (default:
//! the system temporary directory) whose owning process is gone, e.g. after a test run was
//! killed. Prints the work directories it swept.
//!
//! `kbx-local-cluster up`: boots a local cluster with the test images (root), prints
//! `KUBECONFIG=PATH` and `KBX_CONFORMANCE_SHARED_DIR=DIR` (its work directory, for scenarios
//! that share it), keeps it running until standard input ends or a line is read, then tears it
//! down; exits 1 when the teardown left anything. For trying kbx or Buildx by hand against the
//! same cluster the scenarios use, and for `just conformance`.

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
    if command == "up" && args.len() == 1 {
        return up();
    }
    if command != "sweep" {
        let _ = writeln!(
            std::io::stderr(),
            "usage: kbx-local-cluster sweep [DIR] | kbx-local-cluster up"
        );
        return ExitCode::from(2);
    }
    let mut out = std::io::stdout().lock();
    for swept in kbx_conformance::local::sweep_abandoned(&dir) {
        let _ = writeln!(out, "swept {}", swept.display());
    }
    ExitCode::SUCCESS
}

fn up() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = kbx_conformance::LocalOptions::new();
    let cluster = match runtime.block_on(kbx_conformance::LocalCluster::start(&options)) {
        Ok(c) => c,
        Err(e) => {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            let _ = writeln!(std::io::stderr(), "error: {chain}");
            return ExitCode::FAILURE;
        }
    };
    let _ = writeln!(
        std::io::stdout(),
        "KUBECONFIG={}\nKBX_CONFORMANCE_SHARED_DIR={}",
        cluster.kubeconfig().display(),
        cluster.layout().dir.display()
    );
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let left = cluster.teardown();
    if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(std::io::stderr(), "teardown left {left}");
        ExitCode::FAILURE
    }
}

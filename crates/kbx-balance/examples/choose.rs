//! Chooses a pod for a key, the way a build would.
//!
//! ```text
//! cargo run -p kbx-balance --example choose -- --strategy sticky --key /home/user/project pod-a pod-b pod-c
//! ```
//!
//! Every pod given is taken as `Running`, `Ready` and not terminating. Prints the chosen pod's
//! name and exits 0; with no pod it prints buildx's error (`no running buildkit pods found`) to
//! stderr and exits 1; on bad usage (unknown flag, bad strategy, missing value) it exits 2.
//! `--strategy` defaults to `sticky` and `--key` to `""` (what `buildx ls` uses).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line example

use std::process::ExitCode;

use kbx_balance::{LoadBalance, Pod, PodChooser};

struct Args {
    strategy: LoadBalance,
    key: String,
    pods: Vec<Pod>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        strategy: LoadBalance::Sticky,
        key: String::new(),
        pods: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    let mut only_pods = false;
    while let Some(arg) = it.next() {
        if only_pods || !arg.starts_with("--") {
            args.pods.push(Pod::running(arg));
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--strategy" => args.strategy = value()?.parse().map_err(|e| format!("{e}"))?,
            "--key" => args.key = value()?,
            "--" => only_pods = true,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("{problem}");
            eprintln!("usage: choose [--strategy sticky|random|rendezvous] [--key KEY] POD...");
            return ExitCode::from(2);
        }
    };
    match PodChooser::new(args.strategy).choose(&args.key, &args.pods) {
        Ok(pod) => {
            println!("{}", pod.name);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(1)
        }
    }
}

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

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        strategy: LoadBalance::Sticky,
        key: String::new(),
        pods: Vec::new(),
    };
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

/// What the program prints and its exit code: (code, stdout, stderr).
fn run(args: impl Iterator<Item = String>) -> (u8, String, String) {
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(problem) => return (2, String::new(), format!("{problem}\n{USAGE}\n")),
    };
    match PodChooser::new(args.strategy).choose(&args.key, &args.pods) {
        Ok(pod) => (0, format!("{}\n", pod.name), String::new()),
        Err(err) => (1, String::new(), format!("{err}\n")),
    }
}

const USAGE: &str = "usage: choose [--strategy sticky|random|rendezvous] [--key KEY] POD...";

fn main() -> ExitCode {
    let (code, stdout, stderr) = run(std::env::args().skip(1));
    print!("{stdout}");
    eprint!("{stderr}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::run;

    fn choose(args: &[&str]) -> (u8, String, String) {
        run(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn prints_the_pod_buildx_would_choose() {
        let out = choose(&[
            "--strategy",
            "sticky",
            "--key",
            "some-context-path-hash",
            "pod-b",
            "pod-c",
        ]);
        assert_eq!(out, (0, "pod-b\n".to_owned(), String::new()));
        let out = choose(&["--key=/home/user/project", "p0-0", "p0-1", "p0-2"]);
        assert_eq!(out.1, "p0-1\n");
    }

    #[test]
    fn every_strategy_chooses_a_given_pod() {
        for strategy in ["sticky", "random", "rendezvous"] {
            let (code, stdout, _) = choose(&["--strategy", strategy, "--key", "/w", "a", "b", "c"]);
            assert_eq!(code, 0);
            assert!(
                ["a\n", "b\n", "c\n"].contains(&stdout.as_str()),
                "{strategy}: {stdout:?}"
            );
        }
    }

    #[test]
    fn no_pod_is_buildx_error_and_exit_1() {
        let out = choose(&["--strategy", "random"]);
        assert_eq!(
            out,
            (
                1,
                String::new(),
                "no running buildkit pods found\n".to_owned()
            )
        );
    }

    #[test]
    fn bad_usage_exits_2() {
        let (code, _, stderr) = choose(&["--strategy", "round-robin", "a"]);
        assert_eq!(code, 2);
        assert!(
            stderr.starts_with("invalid loadbalance \"round-robin\"\n"),
            "{stderr}"
        );
        assert_eq!(choose(&["--key"]).0, 2);
        assert_eq!(choose(&["--bogus", "a"]).0, 2);
        // After `--`, everything is a pod name.
        assert_eq!(choose(&["--", "--key"]).1, "--key\n");
    }
}

//! Renders the objects a `kbx create` of one node would apply, as multi-document YAML.
//!
//! ```text
//! cargo run -p kbx-manifest --example render -- --name kube_amd64 \
//!     --driver-opt 'namespace=buildkit,replicas=2,requests.cpu=500m' \
//!     --platform linux/amd64 --buildkitd-flags '--debug' --buildkitd-config ./buildkitd.toml
//! ```
//!
//! `--name` is the node name (objects are named after it with `_` → `-`); `--driver-opt` and
//! `--platform` may repeat. On success it prints the ConfigMaps, then the Deployment or
//! StatefulSet, separated by `---`, and exits 0. On bad input it prints every problem to stderr
//! (one `error:` line each, with its causes) and exits 1; on bad usage it exits 2.

#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line example prints its result"
)]

use std::process::ExitCode;

use kbx_manifest::{ConfigFiles, Node, render};
use kbx_opts::{BuildkitdConfig, KubernetesOptions, Platform, buildkitd_args};

#[derive(Default)]
struct Args {
    name: Option<String>,
    driver_opts: Vec<String>,
    platforms: Vec<String>,
    buildkitd_flags: Option<String>,
    buildkitd_config: Option<String>,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: render --name NODE [--driver-opt K=V,...]... [--platform P,...]... \
         [--buildkitd-flags FLAGS] [--buildkitd-config FILE]"
    );
    ExitCode::from(2)
}

fn parse_args() -> Option<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next());
        match flag.as_str() {
            "--name" => args.name = Some(value()?),
            "--driver-opt" => args.driver_opts.push(value()?),
            "--platform" => args.platforms.push(value()?),
            "--buildkitd-flags" => args.buildkitd_flags = Some(value()?),
            "--buildkitd-config" => args.buildkitd_config = Some(value()?),
            _ => return None,
        }
    }
    args.name.is_some().then_some(args)
}

fn run(args: &Args) -> Result<String, Box<dyn std::error::Error>> {
    let options = KubernetesOptions::parse(&args.driver_opts)?;
    let platforms = Platform::parse_list(&args.platforms, &Platform::local())?;
    let config = match &args.buildkitd_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("failed to read buildkitd config {path}: {e}"))?;
            Some(BuildkitdConfig::parse(&text)?)
        }
        None => None,
    };
    let mut node = Node::new(args.name.clone().unwrap_or_default(), options);
    node.platforms = platforms;
    node.flags = buildkitd_args(args.buildkitd_flags.as_deref(), config.as_ref())?;
    if let Some(config) = &config {
        node.files = ConfigFiles::from_config(config, |path| std::fs::read(path))?;
    }
    Ok(render(&node)?.to_yaml()?)
}

/// Prints each problem of `err` on its own line, followed by its causes.
fn report(err: &(dyn std::error::Error + 'static)) {
    let problems: Vec<&(dyn std::error::Error + 'static)> =
        match err.downcast_ref::<kbx_manifest::Error>() {
            Some(e) => e
                .errors()
                .iter()
                .map(|e| e as &(dyn std::error::Error + 'static))
                .collect(),
            None => vec![err],
        };
    for problem in problems {
        eprintln!("error: {problem}");
        let mut source = problem.source();
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
    }
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        return usage();
    };
    match run(&args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            report(err.as_ref());
            ExitCode::FAILURE
        }
    }
}

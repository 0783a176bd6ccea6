//! Parses what a user would pass to `kbx create` and prints the typed, validated result as JSON.
//!
//! ```text
//! cargo run -p kbx-opts --example parse -- \
//!     --driver-opt 'namespace=buildkit,replicas=2' --driver-opt '"nodeselector=a=b,c=d"' \
//!     --platform linux/amd64,linux/arm --buildkitd-flags '--debug'
//! ```
//!
//! On success it prints one JSON object and exits 0; on bad input it prints buildx's error text
//! (one line per problem) to stderr and exits 1; on bad usage it exits 2.
//!
//! # Output fields (stable)
//! - `driver-opts`: the merged `--driver-opt` map as `[key, value]` pairs, in input order.
//! - `options`: the typed Kubernetes options; field names are the option names in kebab-case
//!   (`image`, `namespace`, `replicas`, `requests`, `limits`, `persistent-volume-claim-storage`,
//!   `buildkit-root-volume-memory`, `rootless`, `scheduler-name`, `service-account`,
//!   `node-selector`, `annotations`, `labels`, `tolerations`, `load-balance`, `qemu-install`,
//!   `qemu-image`, `default-load`, `timeout`, `env`). Quantities are in the form Kubernetes stores
//!   (`0.5` → `500m`), durations Go strings (`2m0s`), key/value lists JSON objects.
//! - `platforms`: normalised OCI platforms (`os`, `architecture`, `variant`), in input order.
//! - `buildkitd-args`: the buildkitd arguments after shell-word splitting, with the default
//!   `--allow-insecure-entitlement=network.host` added as buildx does.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example prints its result

use std::process::ExitCode;

use kbx_opts::{DriverOpts, KubernetesOptions, Platform, buildkitd_args};
use serde_json::{Value, json};

struct Args {
    driver_opts: Vec<String>,
    platforms: Vec<String>,
    buildkitd_flags: Option<String>,
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: parse [--driver-opt K=V,...]... [--platform P,...]... [--buildkitd-flags FLAGS]"
    );
    ExitCode::from(2)
}

fn parse_args() -> Option<Args> {
    let mut args = Args {
        driver_opts: Vec::new(),
        platforms: Vec::new(),
        buildkitd_flags: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next());
        match flag.as_str() {
            "--driver-opt" => args.driver_opts.push(value()?),
            "--platform" => args.platforms.push(value()?),
            "--buildkitd-flags" => args.buildkitd_flags = Some(value()?),
            _ => return None,
        }
    }
    Some(args)
}

fn run(args: &Args) -> Result<Value, kbx_opts::Error> {
    let driver_opts = DriverOpts::parse(&args.driver_opts)?;
    let options = KubernetesOptions::from_driver_opts(&driver_opts)?;
    let platforms = Platform::parse_list(&args.platforms, &Platform::local())?;
    let buildkitd = buildkitd_args(args.buildkitd_flags.as_deref(), None)?;
    let pairs: Vec<[&str; 2]> = driver_opts.iter().map(|o| [o.key(), o.value()]).collect();
    Ok(json!({
        "driver-opts": pairs,
        "options": options,
        "platforms": platforms,
        "buildkitd-args": buildkitd,
    }))
}

fn main() -> ExitCode {
    let Some(args) = parse_args() else {
        return usage();
    };
    match run(&args) {
        Ok(value) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            for problem in err.iter() {
                eprintln!("error: {problem}");
            }
            ExitCode::FAILURE
        }
    }
}

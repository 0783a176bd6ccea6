//! Runs one Dockerfile build with plain progress on stderr.
//!
//! ```text
//! cargo run -p kbx-buildkit --example build -- \
//!     --addr unix:///run/buildkit/buildkitd.sock|tcp://HOST:PORT|docker-unix:///var/run/docker.sock|docker \
//!     [-f Dockerfile] [--build-arg K=V]... [--target T] [--platform P] [--no-cache] \
//!     [--network none|host|default] [--secret id=ID,src=FILE|env=VAR]... [--ssh default|ID=SOCK|ID=KEY,...]... \
//!     [--build-context NAME=DIR|docker-image://REF]... \
//!     --output type=local,dest=DIR|type=tar,dest=FILE|type=moby,name=N CONTEXT
//! ```
//!
//! Exits 0 and prints the exporter response (`key=value` lines) on stdout on success; exits 1
//! with the error (and the failing step's last log lines) on stderr on failure; 2 on bad usage.

#![allow(clippy::print_stdout, clippy::print_stderr)] // an example prints its result

use std::process::ExitCode;

use kbx_buildkit::{BuildOptions, Client, Error, Export, PlainRenderer};

const USAGE: &str = "usage: build --addr ADDR [-f DOCKERFILE] [--build-arg K=V]... [--target T] \
[--platform P] [--no-cache] [--network MODE] [--secret SPEC]... [--ssh SPEC]... \
[--build-context NAME=VALUE]... [--output SPEC] CONTEXT";

fn parse() -> Result<(String, BuildOptions), String> {
    let mut addr = None;
    let mut opts = BuildOptions::default();
    let mut context = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--addr" => addr = Some(value("--addr")?),
            "-f" | "--file" => opts.dockerfile = Some(value("-f")?.into()),
            "--target" => opts.target = Some(value("--target")?),
            "--platform" => opts.platforms.push(value("--platform")?),
            "--network" => opts.network = Some(value("--network")?),
            "--no-cache" => opts.no_cache = true,
            "--secret" => opts
                .secrets
                .push(kbx_buildkit::Secret::parse(&value("--secret")?).map_err(|e| e.to_string())?),
            "--ssh" => opts
                .ssh
                .push(kbx_buildkit::SshAgent::parse(&value("--ssh")?).map_err(|e| e.to_string())?),
            "--build-context" => opts.named_contexts.push(
                kbx_buildkit::NamedContext::parse(&value("--build-context")?)
                    .map_err(|e| e.to_string())?,
            ),
            "--build-arg" => {
                let kv = value("--build-arg")?;
                let (k, v) = match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    // `--build-arg NAME` takes the value from the environment, as in buildx.
                    None => (kv.clone(), std::env::var(&kv).unwrap_or_default()),
                };
                opts.build_args.insert(k, v);
            }
            "-o" | "--output" => {
                let export = Export::parse(&value("--output")?).map_err(|e| e.to_string())?;
                opts.output = Some(export.output);
                opts.export_attrs = export.attrs;
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') && s != "-" => return Err(format!("unknown flag {s}")),
            _ if context.is_none() => context = Some(arg),
            _ => return Err("only one CONTEXT".to_owned()),
        }
    }
    opts.context = context.ok_or("CONTEXT is required")?.into();
    Ok((addr.ok_or("--addr is required")?, opts))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let (addr, opts) = match parse() {
        Ok(v) => v,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("error: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = async {
        let client = Client::connect(&addr).await?;
        let mut plain = PlainRenderer::new(std::io::stderr());
        client
            .build(&opts, |ev| {
                let _ = plain.render(ev);
            })
            .await
    }
    .await;
    match result {
        Ok(res) => {
            for (k, v) in &res.exporter_response {
                println!("{k}={v}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            if let Some(block) = err.failed_step() {
                eprint!("{block}");
            }
            let mut msg = format!("error: {err}");
            // A solve error's message already is the daemon's; other errors get their causes.
            let mut src = match &err {
                Error::Solve { .. } => None,
                _ => std::error::Error::source(&err),
            };
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

//! `buildctl` for the kbx test builder image: answers `buildctl dial-stdio` and
//! `buildctl debug workers` against Docker Engine's embedded BuildKit.
//! See [`kbx_conformance::buildctl`].

use std::io::Write;
use std::process::ExitCode;

use kbx_conformance::buildctl::{parse_args, run};

fn main() -> ExitCode {
    let invocation = match parse_args(
        std::env::args().skip(1),
        std::env::var("BUILDKIT_HOST").ok(),
    ) {
        Ok(inv) => inv,
        Err(err) => return fail(&err),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return fail(&err),
    };
    match runtime.block_on(run(&invocation)) {
        Ok(Some(text)) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Ok(None) => {
            // The daemon closed its side: exit without waiting for stdin, like upstream.
            runtime.shutdown_background();
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

fn fail(err: &dyn std::error::Error) -> ExitCode {
    let mut text = format!("buildctl: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let _ = writeln!(std::io::stderr(), "{text}");
    ExitCode::FAILURE
}

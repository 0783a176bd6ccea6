//! The `render` example: same YAML as the library, errors on stderr with exit code 1.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::common::{Result, fixtures, render_checked};
use crate::snapshots::SPEC_FULL_EXAMPLE;

/// The example binary cargo builds next to this test binary (`target/<profile>/examples/`).
fn example() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or("test binary has no profile directory")?;
    let path = profile_dir
        .join("examples")
        .join(format!("render{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} was not built", path.display());
    Ok(path)
}

fn run(args: &[&str]) -> Result<Output> {
    Ok(Command::new(example()?).args(args).output()?)
}

#[test]
fn prints_the_library_yaml() -> Result {
    let config = fixtures().join("buildkitd-debug.toml");
    let config = config.to_str().ok_or("non-UTF-8 path")?;
    let mut args = vec![
        "--name",
        SPEC_FULL_EXAMPLE.node,
        "--buildkitd-config",
        config,
    ];
    for p in SPEC_FULL_EXAMPLE.platforms {
        args.extend(["--platform", p]);
    }
    for o in SPEC_FULL_EXAMPLE.opts {
        args.extend(["--driver-opt", o]);
    }
    let out = run(&args)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, yaml) = render_checked(&SPEC_FULL_EXAMPLE)?;
    assert_eq!(String::from_utf8(out.stdout)?, yaml);
    Ok(())
}

#[test]
fn reports_every_problem_and_exits_1() -> Result {
    let out = run(&["--name", "Bad", "--driver-opt", "labels=app=x"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr)?;
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with(r#"error: invalid Deployment name "Bad": "#));
    assert_eq!(
        lines[1],
        r#"error: the label "app" is reserved and cannot be customized"#
    );

    let out = run(&["--name", "b0", "--driver-opt", "replicas=many"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)?.contains(r#"parsing "many": invalid syntax"#));
    Ok(())
}

#[test]
fn bad_usage_exits_2() -> Result {
    assert_eq!(run(&[])?.status.code(), Some(2));
    assert_eq!(run(&["--name", "b0", "--bogus"])?.status.code(), Some(2));
    Ok(())
}

//! Component processes: started with a clean, egress-free environment, logged to files, and
//! stopped with SIGTERM then SIGKILL.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::config::no_egress_env;
use crate::Error;

/// The `PATH` components run with.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A running component of the local cluster.
#[derive(Debug)]
pub struct Component {
    name: &'static str,
    child: Child,
    log: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    home: PathBuf,
}

/// Builds the command for a component: clean environment (`PATH`, `HOME` and the no-egress
/// variables only), its own process group, output appended to `log`.
pub fn command(program: &Path, args: &[String], home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", home);
    for (key, value) in no_egress_env() {
        cmd.env(key, value);
    }
    cmd.stdin(Stdio::null()).process_group(0);
    cmd
}

impl Component {
    /// Starts `program` with `args`; its stdout and stderr go to `<logs>/<name>.log`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        home: &Path,
        logs: &Path,
    ) -> Result<Self, Error> {
        let log = logs.join(format!("{name}.log"));
        let child = Self::start(name, program, args, home, &log)?;
        Ok(Component {
            name,
            child,
            log,
            program: program.to_path_buf(),
            args: args.to_vec(),
            home: home.to_path_buf(),
        })
    }

    fn start(
        name: &str,
        program: &Path,
        args: &[String],
        home: &Path,
        log: &Path,
    ) -> Result<Child, Error> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| Error::io(format!("opening {}", log.display()), source))?;
        let err_file = file
            .try_clone()
            .map_err(|source| Error::io("duplicating a log file handle", source))?;
        command(program, args, home)
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err_file))
            .spawn()
            .map_err(|source| Error::io(format!("starting {name} ({})", program.display()), source))
    }

    /// Starts the component again with the same program, arguments and log (appended to), after
    /// [`Component::stop`]. Does nothing while it still runs.
    pub fn restart(&mut self) -> Result<(), Error> {
        if self.exited().is_none() {
            return Ok(());
        }
        self.child = Self::start(self.name, &self.program, &self.args, &self.home, &self.log)?;
        Ok(())
    }

    /// The component's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the component's process group: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if self.exited().is_some() {
                let _ = killpg(group, Signal::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a log file (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_carry_only_path_home_and_the_no_egress_variables() {
        let cmd = command(Path::new("/bin/true"), &[], Path::new("/tmp/x"));
        let env: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(get("AWS_EC2_METADATA_DISABLED").as_deref(), Some("true"));
        assert_eq!(get("HTTPS_PROXY").as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(get("HOME").as_deref(), Some("/tmp/x"));
        assert_eq!(env.len(), 2 + no_egress_env().len());
    }

    #[test]
    fn a_spawned_component_sees_exactly_that_environment_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Component::spawn(
            "envdump",
            Path::new("/bin/sh"),
            &["-c".into(), "env | sort; exec sleep 30".into()],
            dir.path(),
            dir.path(),
        )
        .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !tail(c.log(), 100).contains("https_proxy=") && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = tail(c.log(), 100);
        assert!(log.contains("AWS_EC2_METADATA_DISABLED=true"), "{log}");
        assert!(log.contains("HTTP_PROXY=http://127.0.0.1:9"), "{log}");
        assert!(!log.contains("CARGO"), "{log}");
        c.stop(Duration::from_secs(5));
        assert!(c.exited().is_some());
        let first = c.pid();
        c.restart().unwrap();
        assert_ne!(c.pid(), first, "a restart starts a new process");
        assert!(c.exited().is_none(), "the restarted process runs");
        let until = Instant::now() + Duration::from_secs(10);
        while tail(c.log(), 200).matches("https_proxy=").count() < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            tail(c.log(), 200).matches("https_proxy=").count(),
            2,
            "the restarted process appends to the same log with the same environment"
        );
        c.stop(Duration::from_secs(5));
        assert!(c.exited().is_some());
    }
}

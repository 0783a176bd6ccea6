//! `--progress` printers for `kbx build`, as `docker buildx build --progress`:
//!
//! - `tty`: a redrawn block — `[+] Building 12.3s (5/7)` with `DRIVER:BUILDER` on the right,
//!   one ` => ` row per step with its time, sub-progress rows ` => => …`, the last lines of
//!   running steps ` => => # …` — drawn with `indicatif`, rate-limited, and left on screen when
//!   done, headed `… FINISHED`;
//! - `plain`: `kbx_buildkit::PlainRenderer` (`#N name`, `#N DONE 0.1s`);
//! - `rawjson`: one `client.SolveStatus` JSON object per daemon message and line;
//! - `quiet`: nothing (errors and the result are printed by the caller);
//! - `none`: nothing either (Buildx 0.29's mode; unlike `quiet`, `build` prints no image ID);
//! - `auto`: `tty` when stderr is a terminal and `TERM` is not `dumb`, else `plain`.
//!
//! # Deviation
//! - The tty view is laid out as buildkit's (the order steps started in, `DRIVER:BUILDER` on
//!   the right of the header, which running steps get log lines, which rows a short terminal
//!   drops, timers shifted by the daemon's clock offset), but draws each step's last log lines
//!   itself instead of through a virtual terminal: cursor movement inside a step's output is
//!   reduced to "text after the last carriage return", long lines are cut rather than wrapped,
//!   `BUILDKIT_TTY_LOG_LINES` is not read (6 lines), and the rows of a progress group are not
//!   merged into one. Colours are buildkit's defaults, off with `NO_COLOR`; `BUILDKIT_COLORS`
//!   is not read. (`docs/deviations.md` K8.)
//! - Warnings are not summarised after the build (K9).
//! - `rawjson` leaves the LLB `definition` out of a warning's `sourceInfo` (K10).

//!
//! [`Printer`] picks the renderer of a [`Mode`]: [`tty`] draws the redrawn block, [`json`]
//! writes `rawjson` lines, `plain` is `kbx_buildkit::PlainRenderer`; [`steps`] shows work kbx
//! does itself (booting a builder, pushing through the Engine) as build steps on any of them.

pub(crate) mod json;
pub(crate) mod steps;
pub(crate) mod tty;

#[cfg(test)]
pub(crate) mod fixtures;

use std::io::{self, IsTerminal as _, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::ProgressDrawTarget;
use kbx_buildkit::{PlainRenderer, ProgressEvent, SolveStatus};

pub(crate) use self::json::JsonPrinter;
pub(crate) use self::steps::{Step, Steps};
pub(crate) use self::tty::TtyPrinter;
use crate::cli::ProgressMode;
use crate::error::Error;

/// A `--progress` value with `auto` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The redrawn block.
    Tty,
    /// `#N` lines.
    Plain,
    /// JSON lines.
    RawJson,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Whether free-form notes (`#0 building on …`) may go to stderr before the build.
    pub(crate) fn takes_notes(self) -> bool {
        matches!(self, Mode::Plain | Mode::Tty)
    }
}

/// Decides `auto` and checks `tty`: `stderr_terminal` is whether stderr is a terminal, `term`
/// the value of `TERM`.
///
/// # Errors
/// `tty` when stderr is not a terminal, in buildx's words.
pub(crate) fn resolve(
    requested: ProgressMode,
    stderr_terminal: bool,
    term: Option<&str>,
) -> Result<Mode, Error> {
    Ok(match requested {
        ProgressMode::Auto if stderr_terminal && term != Some("dumb") => Mode::Tty,
        ProgressMode::Auto | ProgressMode::Plain => Mode::Plain,
        ProgressMode::Tty if stderr_terminal => Mode::Tty,
        ProgressMode::Tty => {
            return Err(Error::msg(
                "failed to get console: provided file is not a console",
            ));
        }
        ProgressMode::RawJson => Mode::RawJson,
        ProgressMode::Quiet | ProgressMode::None => Mode::Quiet,
    })
}

/// [`resolve`] for this process' stderr and environment.
pub(crate) fn resolve_for_stderr(requested: ProgressMode) -> Result<Mode, Error> {
    let term = std::env::var("TERM").ok();
    resolve(requested, io::stderr().is_terminal(), term.as_deref())
}

/// Prints a build's progress on stderr in one [`Mode`].
pub(crate) struct Printer {
    kind: Kind,
}

/// Where `plain` and `rawjson` output goes.
pub(super) type Sink = Box<dyn Write + Send>;

enum Kind {
    Quiet,
    Plain(PlainTicker),
    Json(JsonPrinter<Sink>),
    Tty(TtyPrinter),
}

impl Printer {
    /// A printer on stderr.
    pub(crate) fn new(mode: Mode) -> Self {
        Self::with_sink(mode, "", Box::new(io::stderr()))
    }

    /// A printer on stderr for a build on `builder`, whose `tty` header names it on the right
    /// as buildx does (`DRIVER:BUILDER`).
    pub(crate) fn for_builder(mode: Mode, builder: &str, driver: &str) -> Self {
        Self::with_sink(mode, &format!("{driver}:{builder}"), Box::new(io::stderr()))
    }

    /// A printer writing `plain` and `rawjson` output to `sink` (`tty` always draws on stderr,
    /// with `desc` on the right of its header).
    pub(super) fn with_sink(mode: Mode, desc: &str, sink: Sink) -> Self {
        let kind = match mode {
            Mode::Quiet => Kind::Quiet,
            Mode::Plain => Kind::Plain(PlainTicker::start(PlainRenderer::new(sink))),
            Mode::RawJson => Kind::Json(JsonPrinter::new(sink)),
            Mode::Tty => {
                let term = console::Term::stderr();
                let size = Arc::new(move || term.size_checked().map(|(h, w)| (w, h)));
                Kind::Tty(TtyPrinter::new(
                    ProgressDrawTarget::stderr_with_hz(tty::REFRESH_HZ),
                    desc,
                    size,
                    tty::color_enabled(),
                    true,
                ))
            }
        };
        Printer { kind }
    }

    /// One daemon message and the events it caused. Write errors of stderr are ignored: a
    /// closed terminal must not fail the build.
    pub(crate) fn update(&mut self, status: &SolveStatus, events: &[ProgressEvent]) {
        match &mut self.kind {
            Kind::Quiet => {}
            Kind::Plain(p) => {
                let _ = p.lock().update(events);
            }
            Kind::Json(j) => {
                let _ = j.update(status);
            }
            Kind::Tty(t) => t.update(status),
        }
    }

    /// Ends the output: the tty view is drawn one last time and left on screen.
    pub(crate) fn finish(self) {
        match self.kind {
            Kind::Tty(t) => t.finish(),
            Kind::Plain(p) => p.finish(),
            Kind::Quiet | Kind::Json(_) => {}
        }
    }
}

/// The plain renderer with a thread that lets it print every 150 ms, as buildx's printer
/// does between daemon messages: output that came too soon after the last print, or a step
/// that has waited long enough, is shown without waiting for the next message.
struct PlainTicker {
    renderer: Arc<Mutex<PlainRenderer<Sink>>>,
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// How often the plain renderer may print without a daemon message (buildx's ticker).
const PLAIN_TICK: Duration = Duration::from_millis(150);

impl PlainTicker {
    fn start(renderer: PlainRenderer<Sink>) -> Self {
        let renderer = Arc::new(Mutex::new(renderer));
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = renderer.clone();
        let thread = std::thread::Builder::new()
            .name("plain-progress".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PLAIN_TICK) {
                    let _ = shared.lock().unwrap_or_else(PoisonError::into_inner).tick();
                }
            })
            .ok();
        PlainTicker {
            renderer,
            stop,
            thread,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PlainRenderer<Sink>> {
        self.renderer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the thread and prints what waits.
    fn finish(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.lock().finish();
    }
}

/// In `plain` mode, buildx's first line: `#0 building with "NAME" instance using DRIVER driver`.
/// kbx's own `#0 building on …` lines (node and pod) follow it, then [`end_of_header`].
pub(crate) fn building_with(mode: Mode, builder: &str, driver: &str) {
    if mode == Mode::Plain {
        eprintln!("#0 building with {builder:?} instance using {driver} driver");
    }
}

/// In `plain` mode, the empty line buildx leaves between the `#0` lines and the first step.
pub(crate) fn end_of_header(mode: Mode) {
    if mode == Mode::Plain {
        eprintln!();
    }
}

/// The mode of commands without `--progress` (`create --bootstrap`, `inspect --bootstrap`):
/// `auto`, or `BUILDKIT_PROGRESS` when it names a mode, as buildx. A `tty` that stderr cannot
/// honour becomes `plain`.
pub(crate) fn default_mode() -> Mode {
    use clap::ValueEnum as _;
    let requested = std::env::var("BUILDKIT_PROGRESS")
        .ok()
        .and_then(|v| ProgressMode::from_str(&v, true).ok())
        .unwrap_or(ProgressMode::Auto);
    resolve_for_stderr(requested).unwrap_or(Mode::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_tty_only_on_a_real_terminal() {
        use ProgressMode as P;
        assert_eq!(resolve(P::Auto, true, Some("xterm")).ok(), Some(Mode::Tty));
        assert_eq!(resolve(P::Auto, true, None).ok(), Some(Mode::Tty));
        assert_eq!(resolve(P::Auto, true, Some("dumb")).ok(), Some(Mode::Plain));
        assert_eq!(
            resolve(P::Auto, false, Some("xterm")).ok(),
            Some(Mode::Plain)
        );
        assert_eq!(resolve(P::Tty, true, Some("dumb")).ok(), Some(Mode::Tty));
        assert_eq!(resolve(P::Plain, true, None).ok(), Some(Mode::Plain));
        assert_eq!(resolve(P::RawJson, true, None).ok(), Some(Mode::RawJson));
        assert_eq!(resolve(P::Quiet, false, None).ok(), Some(Mode::Quiet));
        let err = resolve(P::Tty, false, None).expect_err("no console");
        assert_eq!(
            err.to_string(),
            "failed to get console: provided file is not a console"
        );
    }
}

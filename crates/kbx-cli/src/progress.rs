//! `--progress` printers for `kbx build`, as `docker buildx build --progress`:
//!
//! - `tty`: a redrawn block — `[+] Building 12.3s (5/7)`, one ` => ` row per step with its
//!   time, sub-progress rows ` => => …`, the last lines of running steps ` => => # …` — drawn with
//!   `indicatif`, rate-limited, and left on screen when done, headed `… FINISHED`;
//! - `plain`: `kbx_buildkit::PlainRenderer` (`#N name`, `#N DONE 0.1s`);
//! - `rawjson`: one `client.SolveStatus` JSON object per daemon message and line;
//! - `quiet`: nothing (errors and the result are printed by the caller);
//! - `auto`: `tty` when stderr is a terminal and `TERM` is not `dumb`, else `plain`.
//!
//! # Deviation
//! - The tty view draws each step's sub-progress and last log lines itself instead of through a
//!   virtual terminal: cursor movement inside a step's output is reduced to "text after the last
//!   carriage return", `BUILDKIT_TTY_LOG_LINES` is not read (6 lines), and the rows of a
//!   progress group are not merged into one. The timer of a running step counts from when kbx
//!   saw it start (buildx corrects the daemon's clock by the offset it measured); finished steps
//!   use the daemon's own timestamps, as buildx. Colours are buildkit's defaults, off with
//!   `NO_COLOR`; `BUILDKIT_COLORS` is not read. (`docs/deviations.md` K8.)
//! - Warnings are not summarised after the build (K9).
//! - `rawjson` leaves the LLB `definition` out of a warning's `sourceInfo` (K10).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IsTerminal as _, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use kbx_buildkit::progress::{Vertex, VertexLog, VertexStatus, VertexWarning};
use kbx_buildkit::{PlainRenderer, ProgressEvent, SolveStatus};
use serde::Serialize;

use crate::cli::ProgressMode;
use crate::error::Error;

/// Log lines of a running step shown under it (buildkit's default `BUILDKIT_TTY_LOG_LINES`).
const LOG_LINES: usize = 6;
/// At most this many redraws a second for updates (buildkit: one per 100 ms).
const REFRESH_HZ: u8 = 10;
/// Redraws for the timers when nothing happens (buildkit: every 150 ms).
const TICK: Duration = Duration::from_millis(150);

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
        ProgressMode::Quiet => Mode::Quiet,
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
type Sink = Box<dyn Write + Send>;

enum Kind {
    Quiet,
    Plain(PlainRenderer<Sink>),
    Json(JsonPrinter<Sink>),
    Tty(TtyPrinter),
}

impl Printer {
    /// A printer on stderr.
    pub(crate) fn new(mode: Mode) -> Self {
        Self::with_sink(mode, Box::new(io::stderr()))
    }

    /// A printer writing `plain` and `rawjson` output to `sink` (`tty` always draws on stderr).
    fn with_sink(mode: Mode, sink: Sink) -> Self {
        let kind = match mode {
            Mode::Quiet => Kind::Quiet,
            Mode::Plain => Kind::Plain(PlainRenderer::new(sink)),
            Mode::RawJson => Kind::Json(JsonPrinter::new(sink)),
            Mode::Tty => {
                let term = console::Term::stderr();
                let size = Arc::new(move || term.size_checked().map(|(h, w)| (w, h)));
                Kind::Tty(TtyPrinter::new(
                    ProgressDrawTarget::stderr_with_hz(REFRESH_HZ),
                    size,
                    color_enabled(),
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
                for ev in events {
                    let _ = p.render(ev);
                }
            }
            Kind::Json(j) => {
                let _ = j.update(status);
            }
            Kind::Tty(t) => t.update(status),
        }
    }

    /// Ends the output: the tty view is drawn one last time and left on screen.
    pub(crate) fn finish(self) {
        if let Kind::Tty(t) = self.kind {
            t.finish();
        }
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

/// Work kbx does itself (booting a builder) shown as build steps in any [`Mode`], like buildx's
/// `[internal] booting buildkit`. Cloning shares the printer; steps may run in parallel.
#[derive(Clone)]
pub(crate) struct Steps {
    printer: Arc<Mutex<Option<Printer>>>,
}

impl Steps {
    /// Steps printed in `mode` on stderr.
    pub(crate) fn new(mode: Mode) -> Self {
        Self::with_printer(Printer::new(mode))
    }

    /// Steps printed by `printer`, e.g. after a build's own progress on the same printer.
    pub(crate) fn with_printer(printer: Printer) -> Self {
        Steps {
            printer: Arc::new(Mutex::new(Some(printer))),
        }
    }

    fn send(&self, status: SolveStatus, events: &[ProgressEvent]) {
        let mut printer = self.printer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = printer.as_mut() {
            p.update(&status, events);
        }
    }

    /// Starts a step named `name`.
    pub(crate) fn start(&self, name: &str) -> Step {
        use rand::RngExt as _;
        let bytes: [u8; 32] = rand::rng().random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let step = Step {
            steps: self.clone(),
            digest: format!("sha256:{hex}"),
            name: name.to_owned(),
            started: SystemTime::now(),
            open: Arc::default(),
        };
        self.send(
            SolveStatus {
                vertexes: vec![step.vertex(None, String::new())],
                ..SolveStatus::default()
            },
            &[ProgressEvent::Started {
                digest: step.digest.clone(),
                name: step.name.clone(),
            }],
        );
        step
    }

    /// Ends the output (the tty view is left on screen); later steps print nothing.
    pub(crate) fn finish(&self) {
        let printer = self
            .printer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(p) = printer {
            p.finish();
        }
    }
}

/// One running step of [`Steps`]; clones are the same step.
#[derive(Clone)]
pub(crate) struct Step {
    steps: Steps,
    digest: String,
    name: String,
    started: SystemTime,
    /// Sub-progress items not finished yet: id and start.
    open: Arc<Mutex<Vec<(String, SystemTime)>>>,
}

impl Step {
    fn item(&self, id: &str, started: SystemTime, completed: Option<SystemTime>) -> VertexStatus {
        VertexStatus {
            id: id.to_owned(),
            vertex: self.digest.clone(),
            timestamp: Some(completed.unwrap_or(started)),
            started: Some(started),
            completed,
            ..VertexStatus::default()
        }
    }

    /// Starts a sub-progress item (` => => waiting for …`); it ends with the step.
    pub(crate) fn begin(&self, id: &str) {
        let now = SystemTime::now();
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id.to_owned(), now));
        self.steps.send(
            SolveStatus {
                statuses: vec![self.item(id, now, None)],
                ..SolveStatus::default()
            },
            &[ProgressEvent::Status {
                digest: self.digest.clone(),
                id: id.to_owned(),
                current: 0,
                total: 0,
                done: false,
            }],
        );
    }

    fn vertex(&self, completed: Option<SystemTime>, error: String) -> Vertex {
        Vertex {
            digest: self.digest.clone(),
            name: self.name.clone(),
            started: Some(self.started),
            completed,
            error,
            ..Vertex::default()
        }
    }

    /// One line of the step's output.
    pub(crate) fn log(&self, line: &str) {
        let data = format!("{line}\n").into_bytes();
        self.steps.send(
            SolveStatus {
                logs: vec![VertexLog {
                    vertex: self.digest.clone(),
                    stream: 1,
                    data: data.clone(),
                    timestamp: Some(SystemTime::now()),
                }],
                ..SolveStatus::default()
            },
            &[ProgressEvent::Log {
                digest: self.digest.clone(),
                stream: 1,
                data,
            }],
        );
    }

    /// Ends the step, failed when `error` is given.
    pub(crate) fn done(&self, error: Option<&str>) {
        let now = SystemTime::now();
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(PoisonError::into_inner));
        for (id, started) in open {
            self.steps.send(
                SolveStatus {
                    statuses: vec![self.item(&id, started, Some(now))],
                    ..SolveStatus::default()
                },
                &[ProgressEvent::Status {
                    digest: self.digest.clone(),
                    id,
                    current: 0,
                    total: 0,
                    done: true,
                }],
            );
        }
        let event = match error {
            Some(e) => ProgressEvent::Failed {
                digest: self.digest.clone(),
                name: self.name.clone(),
                error: e.to_owned(),
            },
            None => ProgressEvent::Completed {
                digest: self.digest.clone(),
                name: self.name.clone(),
                duration: now.duration_since(self.started).ok(),
            },
        };
        let vertex = self.vertex(Some(now), error.unwrap_or_default().to_owned());
        self.steps.send(
            SolveStatus {
                vertexes: vec![vertex],
                ..SolveStatus::default()
            },
            &[event],
        );
    }
}

/// Colours unless `NO_COLOR` is set (buildkit honours it too).
fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

// ---------------------------------------------------------------------------------------------
// rawjson

/// Writes each [`SolveStatus`] as one line of JSON with the Go client's field names and
/// `omitempty` rules: byte slices in standard base64, times in RFC 3339 with nanoseconds (UTC).
///
/// # Deviation
/// A warning's `sourceInfo` has no `definition` (the LLB of the source); see
/// `docs/deviations.md` K10.
pub(crate) struct JsonPrinter<W: Write> {
    out: W,
}

impl<W: Write> JsonPrinter<W> {
    /// A printer writing to `out`.
    pub(crate) fn new(out: W) -> Self {
        JsonPrinter { out }
    }

    /// Writes one line; empty messages are written too (`{}`), as buildx does.
    pub(crate) fn update(&mut self, status: &SolveStatus) -> io::Result<()> {
        let line = serde_json::to_string(&JsonStatus::from(status)).map_err(io::Error::other)?;
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[derive(Serialize)]
struct JsonStatus<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    vertexes: Vec<JsonVertex<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    statuses: Vec<JsonVertexStatus<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logs: Vec<JsonVertexLog<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<JsonVertexWarning<'a>>,
}

impl<'a> From<&'a SolveStatus> for JsonStatus<'a> {
    fn from(s: &'a SolveStatus) -> Self {
        JsonStatus {
            vertexes: s.vertexes.iter().map(JsonVertex::from).collect(),
            statuses: s.statuses.iter().map(JsonVertexStatus::from).collect(),
            logs: s.logs.iter().map(JsonVertexLog::from).collect(),
            warnings: s.warnings.iter().map(JsonVertexWarning::from).collect(),
        }
    }
}

#[derive(Serialize)]
struct JsonVertex<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    digest: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    inputs: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    cached: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    error: &'a str,
    #[serde(rename = "progressGroup", skip_serializing_if = "Option::is_none")]
    progress_group: Option<JsonProgressGroup<'a>>,
}

impl<'a> From<&'a Vertex> for JsonVertex<'a> {
    fn from(v: &'a Vertex) -> Self {
        JsonVertex {
            digest: &v.digest,
            inputs: &v.inputs,
            name: &v.name,
            started: v.started.map(rfc3339_nano),
            completed: v.completed.map(rfc3339_nano),
            cached: v.cached,
            error: &v.error,
            progress_group: v.progress_group.as_ref().map(|g| JsonProgressGroup {
                id: &g.id,
                name: &g.name,
                weak: g.weak,
            }),
        }
    }
}

#[derive(Serialize)]
struct JsonProgressGroup<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    weak: bool,
}

#[derive(Serialize)]
struct JsonVertexStatus<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    vertex: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    total: i64,
    current: i64,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
}

impl<'a> From<&'a VertexStatus> for JsonVertexStatus<'a> {
    fn from(s: &'a VertexStatus) -> Self {
        JsonVertexStatus {
            id: &s.id,
            vertex: &s.vertex,
            name: &s.name,
            total: s.total,
            current: s.current,
            timestamp: rfc3339_nano(s.timestamp.unwrap_or(SystemTime::UNIX_EPOCH)),
            started: s.started.map(rfc3339_nano),
            completed: s.completed.map(rfc3339_nano),
        }
    }
}

#[derive(Serialize)]
struct JsonVertexLog<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    vertex: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    stream: i64,
    /// Go's nil `[]byte` is `null`.
    data: Option<String>,
    timestamp: String,
}

impl<'a> From<&'a VertexLog> for JsonVertexLog<'a> {
    fn from(l: &'a VertexLog) -> Self {
        JsonVertexLog {
            vertex: &l.vertex,
            stream: l.stream,
            data: (!l.data.is_empty()).then(|| b64(&l.data)),
            timestamp: rfc3339_nano(l.timestamp.unwrap_or(SystemTime::UNIX_EPOCH)),
        }
    }
}

#[derive(Serialize)]
struct JsonVertexWarning<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    vertex: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    level: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    short: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detail: Vec<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    url: &'a str,
    #[serde(rename = "sourceInfo", skip_serializing_if = "Option::is_none")]
    source_info: Option<JsonSourceInfo<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    range: Vec<JsonRange>,
}

impl<'a> From<&'a VertexWarning> for JsonVertexWarning<'a> {
    fn from(w: &'a VertexWarning) -> Self {
        JsonVertexWarning {
            vertex: &w.vertex,
            level: w.level,
            short: (!w.short.is_empty()).then(|| b64(&w.short)),
            detail: w.detail.iter().map(|d| b64(d)).collect(),
            url: &w.url,
            source_info: w.source_info.as_ref().map(|i| JsonSourceInfo {
                filename: &i.filename,
                data: (!i.data.is_empty()).then(|| b64(&i.data)),
                language: &i.language,
            }),
            range: w
                .ranges
                .iter()
                .map(|r| JsonRange {
                    start: JsonPosition {
                        line: r.start.line,
                        character: r.start.character,
                    },
                    end: JsonPosition {
                        line: r.end.line,
                        character: r.end.character,
                    },
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct JsonSourceInfo<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    filename: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    language: &'a str,
}

#[derive(Serialize)]
struct JsonRange {
    start: JsonPosition,
    end: JsonPosition,
}

#[derive(Serialize)]
struct JsonPosition {
    #[serde(skip_serializing_if = "is_zero32")]
    line: i32,
    #[serde(skip_serializing_if = "is_zero32")]
    character: i32,
}

fn is_zero32(n: &i32) -> bool {
    *n == 0
}

/// Go's `time.RFC3339Nano` of a UTC time: `2024-01-02T03:04:05.123456789Z`, trailing zeros of
/// the fraction dropped, no fraction when it is zero.
pub(crate) fn rfc3339_nano(t: SystemTime) -> String {
    let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - d.subsec_nanos())
            }
        }
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is in 1..=31 and m in 1..=12 by construction.
    (y, m as u32, d as u32)
}

// ---------------------------------------------------------------------------------------------
// tty

/// How a row of the tty view is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tone {
    /// The header and running steps.
    Normal,
    /// Finished steps (buildkit: blue).
    Done,
    /// Failed steps (red).
    Error,
    /// Cancelled steps (yellow).
    Canceled,
    /// Log lines (faint).
    Log,
}

/// One line of the tty view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// The text, without colours.
    pub(crate) text: String,
    /// Its colour.
    pub(crate) tone: Tone,
}

impl Line {
    fn styled(&self, color: bool) -> String {
        let code = match self.tone {
            _ if !color => return self.text.clone(),
            Tone::Normal => return self.text.clone(),
            Tone::Done => "34",
            Tone::Error => "31",
            Tone::Canceled => "33",
            Tone::Log => "2",
        };
        format!("\x1b[{code}m{}\x1b[0m", self.text)
    }
}

#[derive(Debug)]
struct StatusRow {
    id: String,
    current: i64,
    total: i64,
    started: Option<SystemTime>,
    completed: Option<SystemTime>,
    seen: Instant,
    seen_done: Option<Instant>,
}

#[derive(Debug, Default)]
struct VertexRow {
    name: String,
    started: Option<SystemTime>,
    completed: Option<SystemTime>,
    seen_started: Option<Instant>,
    seen_done: Option<Instant>,
    cached: bool,
    error: String,
    statuses: Vec<StatusRow>,
    logs: VecDeque<String>,
    partial: Vec<u8>,
}

impl VertexRow {
    fn done(&self) -> bool {
        self.completed.is_some() || self.cached
    }

    fn shown(&self) -> bool {
        self.started.is_some() || self.done()
    }

    fn elapsed(&self, now: Instant) -> Duration {
        if let (Some(s), Some(c)) = (self.started, self.completed) {
            return c.duration_since(s).unwrap_or_default();
        }
        match (self.seen_started, self.seen_done) {
            (Some(s), Some(d)) => d.saturating_duration_since(s),
            (Some(s), None) if !self.done() => now.saturating_duration_since(s),
            _ => Duration::ZERO,
        }
    }

    fn push_log(&mut self, data: &[u8]) {
        self.partial.extend_from_slice(data);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.logs.push_back(screen_text(&line[..line.len() - 1]));
            if self.logs.len() > LOG_LINES {
                self.logs.pop_front();
            }
        }
    }

    /// The last log lines, the unfinished one included.
    fn tail(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.logs.iter().cloned().collect();
        if !self.partial.is_empty() {
            lines.push(screen_text(&self.partial));
        }
        let skip = lines.len().saturating_sub(LOG_LINES);
        lines.split_off(skip)
    }
}

/// What a terminal would show of one line: the text after the last carriage return, without
/// other control characters.
fn screen_text(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let after = match raw.iter().rposition(|b| *b == b'\r') {
        Some(i) => &raw[i + 1..],
        None => raw,
    };
    String::from_utf8_lossy(after)
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect()
}

/// The state behind the tty view: every vertex in first-seen order, with its sub-progress
/// items and last log lines. Pure: times come in as arguments, so frames can be tested.
#[derive(Debug)]
pub(crate) struct TtyModel {
    start: Instant,
    end: Option<Instant>,
    order: Vec<String>,
    vertices: HashMap<String, VertexRow>,
}

impl TtyModel {
    /// An empty view whose header timer starts at `start`.
    pub(crate) fn new(start: Instant) -> Self {
        TtyModel {
            start,
            end: None,
            order: Vec::new(),
            vertices: HashMap::new(),
        }
    }

    fn row(&mut self, digest: &str) -> &mut VertexRow {
        if !self.vertices.contains_key(digest) {
            self.order.push(digest.to_owned());
        }
        self.vertices.entry(digest.to_owned()).or_default()
    }

    /// Applies one daemon message received at `now`.
    pub(crate) fn update(&mut self, status: &SolveStatus, now: Instant) {
        for v in &status.vertexes {
            let row = self.row(&v.digest);
            if !v.name.is_empty() {
                row.name.clone_from(&v.name);
            }
            if v.started.is_some() {
                if row.seen_started.is_none() || v.started != row.started {
                    row.seen_started = Some(now);
                    row.seen_done = None;
                }
                row.started = v.started;
            }
            row.cached |= v.cached;
            if v.completed.is_some() {
                row.completed = v.completed;
                if !v.error.is_empty() {
                    row.error.clone_from(&v.error);
                }
            }
            if row.done() && row.seen_done.is_none() {
                row.seen_done = Some(now);
            }
        }
        for s in &status.statuses {
            let row = self.row(&s.vertex);
            let item = match row.statuses.iter().position(|i| i.id == s.id) {
                Some(i) => &mut row.statuses[i],
                None => {
                    row.statuses.push(StatusRow {
                        id: s.id.clone(),
                        current: 0,
                        total: 0,
                        started: None,
                        completed: None,
                        seen: now,
                        seen_done: None,
                    });
                    let last = row.statuses.len() - 1;
                    &mut row.statuses[last]
                }
            };
            item.current = s.current;
            item.total = s.total;
            item.started = s.started.or(item.started);
            item.completed = s.completed;
            if s.completed.is_some() && item.seen_done.is_none() {
                item.seen_done = Some(now);
            }
        }
        for l in &status.logs {
            self.row(&l.vertex).push_log(&l.data);
        }
    }

    /// Stops the header timer at `now`; the next frame is the final one.
    pub(crate) fn finish(&mut self, now: Instant) {
        self.end.get_or_insert(now);
    }

    /// (finished, total) vertices, as buildx's header counts them.
    fn counts(&self) -> (usize, usize) {
        let done = self.vertices.values().filter(|v| v.done()).count();
        (done, self.vertices.len())
    }

    /// The view at `now` for a terminal of `width` columns and `height` rows (`None`: no
    /// limit). While running, finished steps are dropped (oldest first) so that running ones
    /// fit; the final frame (after [`TtyModel::finish`]) has every step and no log lines.
    pub(crate) fn frame(&self, now: Instant, width: usize, height: Option<usize>) -> Vec<Line> {
        let final_frame = self.end.is_some();
        let now = self.end.unwrap_or(now);
        let (done, total) = self.counts();
        let mut header = format!(
            "[+] Building {:.1}s ({done}/{total})",
            now.saturating_duration_since(self.start).as_secs_f64()
        );
        if final_frame && done > 0 && done == total {
            header.push_str(" FINISHED");
        }
        let mut blocks: Vec<(bool, Vec<Line>)> = Vec::new();
        for digest in &self.order {
            let Some(v) = self.vertices.get(digest) else {
                continue;
            };
            if !v.shown() {
                continue;
            }
            let (prefix, tone) = if v.cached {
                ("CACHED ", Tone::Done)
            } else if v.error.ends_with("context canceled") {
                ("CANCELED ", Tone::Canceled)
            } else if !v.error.is_empty() {
                ("ERROR ", Tone::Error)
            } else if v.done() {
                ("", Tone::Done)
            } else {
                ("", Tone::Normal)
            };
            let mut lines = vec![Line {
                text: row_text(
                    " => ",
                    &format!("{prefix}{}", v.name),
                    v.elapsed(now),
                    width,
                ),
                tone,
            }];
            for s in &v.statuses {
                let elapsed = match (s.started, s.completed) {
                    (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default(),
                    _ => s
                        .seen_done
                        .unwrap_or(if v.done() { s.seen } else { now })
                        .saturating_duration_since(s.seen),
                };
                lines.push(Line {
                    text: row_text(" => => ", &status_text(s), elapsed, width),
                    tone,
                });
            }
            if !v.done() && !final_frame {
                for l in v.tail() {
                    lines.push(Line {
                        text: truncate(&format!(" => => # {l}"), width.saturating_sub(1)),
                        tone: Tone::Log,
                    });
                }
            }
            blocks.push((v.done(), lines));
        }
        if !final_frame && let Some(h) = height {
            let room = h.saturating_sub(2);
            let mut used: usize = blocks.iter().map(|(_, l)| l.len()).sum();
            let mut i = 0;
            while used > room && i < blocks.len() {
                if blocks[i].0 {
                    used -= blocks[i].1.len();
                    blocks.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        let mut out = vec![Line {
            text: truncate(&header, width.saturating_sub(1)),
            tone: Tone::Normal,
        }];
        out.extend(blocks.into_iter().flat_map(|(_, l)| l));
        out
    }
}

/// `prefix + text`, padded so that the timer ends one column before `width`; `text` is cut to
/// fit.
fn row_text(prefix: &str, text: &str, elapsed: Duration, width: usize) -> String {
    let mut secs = elapsed.as_secs_f64();
    if secs < 0.05 {
        secs = 0.0;
    }
    let timer = format!(" {secs:3.1}s");
    let room = width
        .saturating_sub(1)
        .saturating_sub(prefix.chars().count() + timer.len());
    let text = truncate(text, room);
    let pad = room.saturating_sub(text.chars().count());
    format!("{prefix}{text}{}{timer}", " ".repeat(pad))
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// `transferring context: 2B`, `sha256:… 1.23MB / 4.56MB`, like buildkit's status rows.
fn status_text(s: &StatusRow) -> String {
    if s.total != 0 {
        format!("{} {} / {}", s.id, bytes(s.current), bytes(s.total))
    } else if s.current != 0 {
        format!("{} {}", s.id, bytes(s.current))
    } else {
        s.id.clone()
    }
}

/// Decimal byte sizes: `123B`, `1.23kB`, `28.58MB`.
fn bytes(n: i64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n.abs() < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v.abs() >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.2}{}", UNITS[unit])
}

type SizeFn = Arc<dyn Fn() -> Option<(u16, u16)> + Send + Sync>;

/// The tty view drawn by `indicatif`: one bar whose template is the whole frame, recomputed
/// at every draw so that timers run; draws are rate-limited by the target.
pub(crate) struct TtyPrinter {
    model: Arc<Mutex<TtyModel>>,
    bar: ProgressBar,
    size: SizeFn,
    color: bool,
}

impl TtyPrinter {
    /// A printer drawing on `target`; `size` gives (columns, rows) of the terminal; `tick`
    /// redraws the timers every 150 ms when nothing happens.
    pub(crate) fn new(target: ProgressDrawTarget, size: SizeFn, color: bool, tick: bool) -> Self {
        let model = Arc::new(Mutex::new(TtyModel::new(Instant::now())));
        let frame = {
            let model = model.clone();
            let size = size.clone();
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let (cols, rows) = size().unwrap_or((80, 24));
                let model = model.lock().unwrap_or_else(PoisonError::into_inner);
                let lines = model.frame(Instant::now(), cols.into(), Some(rows.into()));
                let text: Vec<String> = lines.iter().map(|l| l.styled(color)).collect();
                let _ = w.write_str(&text.join("\n"));
            }
        };
        let style = ProgressStyle::with_template("{frame}")
            .expect("a constant template with one key")
            .with_key("frame", frame);
        let bar = ProgressBar::with_draw_target(None, target).with_style(style);
        if tick {
            bar.enable_steady_tick(TICK);
        }
        TtyPrinter {
            model,
            bar,
            size,
            color,
        }
    }

    /// Applies one daemon message and redraws (when the rate limit allows).
    pub(crate) fn update(&mut self, status: &SolveStatus) {
        self.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update(status, Instant::now());
        self.bar.tick();
    }

    /// Prints the final frame, every step of it, and removes the live view.
    pub(crate) fn finish(self) {
        let text = {
            let mut model = self.model.lock().unwrap_or_else(PoisonError::into_inner);
            model.finish(Instant::now());
            let (cols, _) = (self.size)().unwrap_or((80, 24));
            let lines = model.frame(Instant::now(), cols.into(), None);
            let text: Vec<String> = lines.iter().map(|l| l.styled(self.color)).collect();
            text.join("\n")
        };
        self.bar.disable_steady_tick();
        self.bar.println(text);
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbx_buildkit::progress::{ProgressGroup, Range, SourceInfo};

    fn at(secs: u64, millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn vertex(d: &str, name: &str) -> Vertex {
        Vertex {
            digest: d.into(),
            name: name.into(),
            ..Vertex::default()
        }
    }

    /// A recorded build: context load, a cached base, a RUN with output that succeeds, and a
    /// last step that is known but not started yet.
    fn recording() -> Vec<SolveStatus> {
        vec![
            SolveStatus {
                vertexes: vec![
                    Vertex {
                        started: Some(at(100, 0)),
                        ..vertex("sha256:ctx", "[internal] load build context")
                    },
                    vertex("sha256:base", "[1/3] FROM docker.io/library/alpine"),
                    vertex("sha256:run", "[2/3] RUN make"),
                    vertex("sha256:copy", "[3/3] COPY out /out"),
                ],
                ..SolveStatus::default()
            },
            SolveStatus {
                vertexes: vec![
                    Vertex {
                        started: Some(at(100, 0)),
                        completed: Some(at(100, 300)),
                        ..vertex("sha256:ctx", "")
                    },
                    Vertex {
                        started: Some(at(100, 0)),
                        completed: Some(at(100, 0)),
                        cached: true,
                        ..vertex("sha256:base", "[1/3] FROM docker.io/library/alpine")
                    },
                    Vertex {
                        started: Some(at(100, 400)),
                        ..vertex("sha256:run", "[2/3] RUN make")
                    },
                ],
                statuses: vec![VertexStatus {
                    id: "transferring context:".into(),
                    vertex: "sha256:ctx".into(),
                    current: 1234,
                    started: Some(at(100, 0)),
                    completed: Some(at(100, 200)),
                    ..VertexStatus::default()
                }],
                logs: vec![VertexLog {
                    vertex: "sha256:run".into(),
                    stream: 1,
                    data: b"line 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\n 10%\r 50%"
                        .to_vec(),
                    ..VertexLog::default()
                }],
                ..SolveStatus::default()
            },
        ]
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.text.trim_end().to_owned()).collect()
    }

    #[test]
    fn tty_frame_while_running() {
        let t0 = Instant::now();
        let mut m = TtyModel::new(t0);
        for (i, s) in recording().iter().enumerate() {
            m.update(s, t0 + Duration::from_millis(100 * i as u64));
        }
        let lines = m.frame(t0 + Duration::from_millis(2_500), 60, None);
        let t = texts(&lines);
        assert_eq!(
            t,
            [
                "[+] Building 2.5s (2/4)",
                " => [internal] load build context                      0.3s",
                " => => transferring context: 1.23kB                    0.2s",
                " => CACHED [1/3] FROM docker.io/library/alpine         0.0s",
                // Seen started at 0.1s; now is 2.5s.
                " => [2/3] RUN make                                     2.4s",
                " => => # line 3",
                " => => # line 4",
                " => => # line 5",
                " => => # line 6",
                " => => # line 7",
                " => => #  50%",
            ]
        );
        assert!(lines.iter().all(|l| l.text.chars().count() <= 59));
        assert_eq!(lines[1].tone, Tone::Done);
        assert_eq!(lines[4].tone, Tone::Normal);
        assert_eq!(lines[5].tone, Tone::Log);
    }

    #[test]
    fn tty_frame_drops_finished_steps_to_fit_the_terminal() {
        let t0 = Instant::now();
        let mut m = TtyModel::new(t0);
        for s in recording() {
            m.update(&s, t0);
        }
        let t = texts(&m.frame(t0, 60, Some(9)));
        assert_eq!(t[0], "[+] Building 0.0s (2/4)");
        assert!(t[1].starts_with(" => [2/3] RUN make"), "{t:?}");
        assert_eq!(t.len(), 8);
    }

    #[test]
    fn tty_final_frame_has_finished_error_and_cancel_marks() {
        let t0 = Instant::now();
        let mut m = TtyModel::new(t0);
        for s in recording() {
            m.update(&s, t0);
        }
        m.update(
            &SolveStatus {
                vertexes: vec![
                    Vertex {
                        started: Some(at(100, 400)),
                        completed: Some(at(101, 600)),
                        error: "process \"/bin/sh -c make\" did not complete successfully: exit code: 2".into(),
                        ..vertex("sha256:run", "")
                    },
                    Vertex {
                        started: Some(at(101, 0)),
                        completed: Some(at(101, 600)),
                        error: "context canceled".into(),
                        ..vertex("sha256:copy", "")
                    },
                ],
                ..SolveStatus::default()
            },
            t0 + Duration::from_secs(1),
        );
        m.finish(t0 + Duration::from_millis(3_210));
        // The final frame ignores the clock and the height.
        let lines = m.frame(t0 + Duration::from_secs(99), 50, Some(3));
        let t = texts(&lines);
        assert_eq!(
            t,
            [
                "[+] Building 3.2s (4/4) FINISHED",
                " => [internal] load build context            0.3s",
                " => => transferring context: 1.23kB          0.2s",
                " => CACHED [1/3] FROM docker.io/library/alpi 0.0s",
                " => ERROR [2/3] RUN make                     1.2s",
                " => CANCELED [3/3] COPY out /out             0.6s",
            ]
        );
        assert_eq!(lines[4].tone, Tone::Error);
        assert_eq!(lines[5].tone, Tone::Canceled);
        assert_eq!(
            lines[4].styled(true),
            format!("\x1b[31m{}\x1b[0m", lines[4].text)
        );
        assert_eq!(lines[4].styled(false), lines[4].text);
    }

    #[test]
    fn tty_header_is_not_finished_while_steps_remain() {
        let t0 = Instant::now();
        let mut m = TtyModel::new(t0);
        m.update(&recording()[0], t0);
        m.finish(t0);
        assert_eq!(
            texts(&m.frame(t0, 80, None))[0],
            "[+] Building 0.0s (0/4)",
            "FINISHED needs every step done"
        );
    }

    #[test]
    fn tty_printer_leaves_the_final_frame_on_the_terminal() {
        let term = indicatif::InMemoryTerm::new(20, 60);
        let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
        let mut p = TtyPrinter::new(target, Arc::new(|| Some((60, 20))), false, false);
        for s in recording() {
            p.update(&s);
        }
        let live = term.contents();
        assert!(live.starts_with("[+] Building "), "{live}");
        assert!(live.contains(" => => # line 7"), "{live}");
        p.update(&SolveStatus {
            vertexes: vec![
                Vertex {
                    started: Some(at(100, 400)),
                    completed: Some(at(101, 400)),
                    ..vertex("sha256:run", "")
                },
                Vertex {
                    started: Some(at(101, 400)),
                    completed: Some(at(101, 500)),
                    ..vertex("sha256:copy", "")
                },
            ],
            ..SolveStatus::default()
        });
        p.finish();
        let out = term.contents();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("[+] Building ") && lines[0].ends_with("(4/4) FINISHED"),
            "{out}"
        );
        assert_eq!(
            &lines[1..],
            [
                " => [internal] load build context                      0.3s",
                " => => transferring context: 1.23kB                    0.2s",
                " => CACHED [1/3] FROM docker.io/library/alpine         0.0s",
                " => [2/3] RUN make                                     1.0s",
                " => [3/3] COPY out /out                                0.1s",
            ],
            "{out}"
        );
    }

    #[test]
    fn screen_text_keeps_what_a_terminal_shows() {
        assert_eq!(screen_text(b"a\tb\x07c"), "a bc");
        assert_eq!(screen_text(b"10%\r50%"), "50%");
        assert_eq!(screen_text(b"dos line\r"), "dos line");
        assert_eq!(screen_text(&[0xff, b'x']), "\u{fffd}x");
    }

    #[test]
    fn byte_sizes_like_buildkit() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(123), "123B");
        assert_eq!(bytes(1234), "1.23kB");
        assert_eq!(bytes(28_580_000), "28.58MB");
        assert_eq!(bytes(i64::MAX), "9.22EB");
    }

    #[test]
    fn rfc3339_nano_like_go() {
        assert_eq!(rfc3339_nano(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000)),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(
            rfc3339_nano(SystemTime::UNIX_EPOCH + Duration::new(951_782_400, 1)),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339_nano(SystemTime::UNIX_EPOCH - Duration::from_millis(500)),
            "1969-12-31T23:59:59.5Z"
        );
    }

    fn json_lines(statuses: &[SolveStatus]) -> Vec<serde_json::Value> {
        let mut p = JsonPrinter::new(Vec::new());
        for s in statuses {
            p.update(s).expect("write to a Vec");
        }
        let text = String::from_utf8(p.into_inner()).expect("utf8");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON value"))
            .collect()
    }

    #[test]
    fn rawjson_lines_have_go_field_names_and_omit_empty_fields() {
        let lines = json_lines(&recording());
        assert_eq!(lines.len(), 2);
        let first = &lines[0];
        assert_eq!(
            first["vertexes"][0],
            serde_json::json!({
                "digest": "sha256:ctx",
                "name": "[internal] load build context",
                "started": "1970-01-01T00:01:40Z",
            })
        );
        assert_eq!(
            first
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["vertexes".to_owned()]),
            "empty statuses, logs and warnings are omitted"
        );
        let second = &lines[1];
        assert_eq!(second["vertexes"][1]["cached"], true);
        assert_eq!(second["vertexes"][1]["completed"], "1970-01-01T00:01:40Z");
        assert_eq!(
            second["statuses"][0],
            serde_json::json!({
                "id": "transferring context:",
                "vertex": "sha256:ctx",
                "current": 1234,
                "timestamp": "1970-01-01T00:00:00Z",
                "started": "1970-01-01T00:01:40Z",
                "completed": "1970-01-01T00:01:40.2Z",
            })
        );
        let log = &second["logs"][0];
        assert_eq!(log["vertex"], "sha256:ctx".replace("ctx", "run"));
        assert_eq!(log["stream"], 1);
        let data = base64::engine::general_purpose::STANDARD
            .decode(log["data"].as_str().expect("data is a string"))
            .expect("base64");
        assert!(data.starts_with(b"line 1\n"));
        assert!(log.get("timestamp").is_some());
    }

    #[test]
    fn rawjson_warning_and_group_fields() {
        let s = SolveStatus {
            vertexes: vec![Vertex {
                inputs: vec!["sha256:a".into()],
                error: "boom".into(),
                progress_group: Some(ProgressGroup {
                    id: "g1".into(),
                    name: "group".into(),
                    weak: false,
                }),
                ..vertex("sha256:b", "x")
            }],
            warnings: vec![VertexWarning {
                vertex: "sha256:b".into(),
                level: 1,
                short: b"bad".to_vec(),
                detail: vec![b"more".to_vec()],
                url: "https://example.invalid/w".into(),
                source_info: Some(SourceInfo {
                    filename: "Dockerfile".into(),
                    data: b"FROM x".to_vec(),
                    language: "Dockerfile".into(),
                }),
                ranges: vec![Range::default()],
            }],
            ..SolveStatus::default()
        };
        let v = &json_lines(&[s, SolveStatus::default()]);
        assert_eq!(v[0]["vertexes"][0]["inputs"][0], "sha256:a");
        assert_eq!(v[0]["vertexes"][0]["error"], "boom");
        assert_eq!(
            v[0]["vertexes"][0]["progressGroup"],
            serde_json::json!({"id": "g1", "name": "group"})
        );
        let w = &v[0]["warnings"][0];
        assert_eq!(w["short"], "YmFk");
        assert_eq!(w["detail"], serde_json::json!(["bW9yZQ=="]));
        assert_eq!(w["url"], "https://example.invalid/w");
        assert_eq!(w["sourceInfo"]["filename"], "Dockerfile");
        assert_eq!(w["sourceInfo"]["data"], "RlJPTSB4");
        assert_eq!(w["range"][0], serde_json::json!({"start": {}, "end": {}}));
        assert_eq!(v[1], serde_json::json!({}));
    }

    #[test]
    fn rawjson_empty_log_data_is_null_like_a_nil_go_slice() {
        let v = json_lines(&[SolveStatus {
            logs: vec![VertexLog::default()],
            ..SolveStatus::default()
        }]);
        assert_eq!(
            v[0]["logs"][0],
            serde_json::json!({"data": null, "timestamp": "1970-01-01T00:00:00Z"})
        );
    }

    /// A `Write` whose bytes stay readable after the printer took it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("utf8")
        }
    }

    #[test]
    fn steps_print_like_a_build_in_plain_mode() {
        let out = Shared::default();
        let steps = Steps::with_printer(Printer::with_sink(Mode::Plain, Box::new(out.clone())));
        let boot = steps.start("[internal] booting buildkit");
        boot.log("Deployment kube0 created");
        boot.begin("waiting for 1 pods to be ready, timeout: 2m0s");
        boot.done(None);
        let other = steps.start("[node1 internal] booting buildkit");
        other.done(Some("expected 1 replicas to be ready, got 0"));
        steps.finish();
        // After finish nothing more is printed.
        steps.start("late").done(None);
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#1 [internal] booting buildkit");
        assert_eq!(lines[1], "#1 Deployment kube0 created");
        assert_eq!(
            lines[2],
            "#1 waiting for 1 pods to be ready, timeout: 2m0s done"
        );
        assert!(
            lines[3].starts_with("#1 DONE ") && lines[3].ends_with('s'),
            "{text}"
        );
        assert_eq!(
            &lines[4..],
            [
                "",
                "#2 [node1 internal] booting buildkit",
                "#2 ERROR: expected 1 replicas to be ready, got 0",
            ]
        );
    }

    #[test]
    fn steps_in_the_tty_model_show_their_sub_progress() {
        let out = Shared::default();
        let steps = Steps::with_printer(Printer::with_sink(Mode::RawJson, Box::new(out.clone())));
        let boot = steps.start("[internal] booting buildkit");
        boot.begin("waiting for 1 pods to be ready, timeout: 2m0s");
        boot.done(None);
        steps.finish();
        // Replay what was printed into the tty model: the same statuses, read back.
        let t0 = Instant::now();
        let mut m = TtyModel::new(t0);
        let text = out.text();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
            let mut s = SolveStatus::default();
            for x in v["vertexes"].as_array().into_iter().flatten() {
                s.vertexes.push(Vertex {
                    digest: x["digest"].as_str().unwrap_or_default().into(),
                    name: x["name"].as_str().unwrap_or_default().into(),
                    started: x.get("started").map(|_| at(1, 0)),
                    completed: x.get("completed").map(|_| at(3, 0)),
                    ..Vertex::default()
                });
            }
            for x in v["statuses"].as_array().into_iter().flatten() {
                s.statuses.push(VertexStatus {
                    id: x["id"].as_str().unwrap_or_default().into(),
                    vertex: x["vertex"].as_str().unwrap_or_default().into(),
                    started: Some(at(1, 500)),
                    completed: x.get("completed").map(|_| at(3, 0)),
                    ..VertexStatus::default()
                });
            }
            m.update(&s, t0);
        }
        m.finish(t0 + Duration::from_secs(2));
        assert_eq!(
            texts(&m.frame(t0, 70, None)),
            [
                "[+] Building 2.0s (1/1) FINISHED",
                " => [internal] booting buildkit                                  2.0s",
                " => => waiting for 1 pods to be ready, timeout: 2m0s             1.5s",
            ]
        );
    }

    #[test]
    fn steps_in_rawjson_are_solve_statuses() {
        let out = Shared::default();
        let steps = Steps::with_printer(Printer::with_sink(Mode::RawJson, Box::new(out.clone())));
        let boot = steps.start("[internal] booting buildkit");
        boot.log("1/1 pods ready");
        boot.done(None);
        steps.finish();
        let lines: Vec<serde_json::Value> = out
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(lines.len(), 3);
        let digest = lines[0]["vertexes"][0]["digest"].as_str().expect("digest");
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        assert_eq!(
            lines[0]["vertexes"][0]["name"],
            "[internal] booting buildkit"
        );
        assert!(lines[0]["vertexes"][0].get("completed").is_none());
        assert_eq!(lines[1]["logs"][0]["vertex"], digest);
        assert_eq!(lines[1]["logs"][0]["data"], b64(b"1/1 pods ready\n"));
        assert_eq!(lines[2]["vertexes"][0]["digest"], digest);
        assert!(lines[2]["vertexes"][0]["completed"].is_string());
    }

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

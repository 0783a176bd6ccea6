//! Build progress: the daemon's `Status` stream merged by vertex digest into typed events, and a
//! plain-text renderer in the style of `buildx --progress plain`.
//!
//! Each `Status` message is also available unmerged as a [`SolveStatus`] (the shape of the Go
//! client's `client.SolveStatus`), for printers that need every field, e.g. timestamps or the
//! vertices that have not started yet.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::StatusResponse;

/// How many log lines of each step are kept for error reports.
const LOG_TAIL: usize = 20;

/// One change in the state of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// A step started running.
    Started {
        /// The vertex digest.
        digest: String,
        /// The step's name, e.g. `[2/3] RUN make`.
        name: String,
    },
    /// A step was satisfied from the cache.
    Cached {
        /// The vertex digest.
        digest: String,
        /// The step's name.
        name: String,
    },
    /// A step finished successfully.
    Completed {
        /// The vertex digest.
        digest: String,
        /// The step's name.
        name: String,
        /// How long it ran, when the daemon gave both timestamps.
        duration: Option<Duration>,
    },
    /// A step failed.
    Failed {
        /// The vertex digest.
        digest: String,
        /// The step's name.
        name: String,
        /// The daemon's error text.
        error: String,
    },
    /// A step was cancelled (another step failed).
    Canceled {
        /// The vertex digest.
        digest: String,
        /// The step's name.
        name: String,
    },
    /// Sub-progress of a step (`transferring context`, `exporting layers`, …).
    Status {
        /// The vertex digest.
        digest: String,
        /// The item, e.g. `transferring context:`.
        id: String,
        /// Bytes or items done.
        current: i64,
        /// Total, 0 when unknown.
        total: i64,
        /// Whether the item is complete.
        done: bool,
        /// From the item's start to its completion (or to this update), when the daemon gave
        /// both times.
        elapsed: Option<Duration>,
    },
    /// Output of a step (not line-aligned).
    Log {
        /// The vertex digest.
        digest: String,
        /// 1 = stdout, 2 = stderr.
        stream: i64,
        /// The raw bytes.
        data: Vec<u8>,
        /// When the chunk was written, from the step's (last) start, when the daemon gave both
        /// times: buildx prints it in front of each line (`#5 0.066 hello`).
        offset: Option<Duration>,
    },
    /// A warning (BuildKit v0.10+).
    Warning {
        /// The vertex digest.
        digest: String,
        /// The short text.
        message: String,
    },
}

impl ProgressEvent {
    /// The digest of the step (vertex) the event is about.
    pub fn digest(&self) -> &str {
        match self {
            ProgressEvent::Started { digest, .. }
            | ProgressEvent::Cached { digest, .. }
            | ProgressEvent::Completed { digest, .. }
            | ProgressEvent::Failed { digest, .. }
            | ProgressEvent::Canceled { digest, .. }
            | ProgressEvent::Status { digest, .. }
            | ProgressEvent::Log { digest, .. }
            | ProgressEvent::Warning { digest, .. } => digest,
        }
    }
}

/// One `Status` message of the daemon, unmerged: the vertices, sub-progress items, log chunks
/// and warnings it carries, like the Go client's `client.SolveStatus`.
///
/// ```
/// use kbx_buildkit::progress::{SolveStatus, Vertex};
/// let status = SolveStatus {
///     vertexes: vec![Vertex { digest: "sha256:a".into(), name: "[1/2] FROM scratch".into(), ..Vertex::default() }],
///     ..SolveStatus::default()
/// };
/// assert!(!status.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SolveStatus {
    /// Vertices that changed.
    pub vertexes: Vec<Vertex>,
    /// Sub-progress items that changed.
    pub statuses: Vec<VertexStatus>,
    /// Output chunks of steps.
    pub logs: Vec<VertexLog>,
    /// Warnings (BuildKit v0.10+).
    pub warnings: Vec<VertexWarning>,
}

impl SolveStatus {
    /// Whether the message carries nothing.
    pub fn is_empty(&self) -> bool {
        self.vertexes.is_empty()
            && self.statuses.is_empty()
            && self.logs.is_empty()
            && self.warnings.is_empty()
    }

    /// The typed copy of a daemon message.
    pub(crate) fn from_response(resp: &StatusResponse) -> Self {
        SolveStatus {
            vertexes: resp
                .vertexes
                .iter()
                .map(|v| Vertex {
                    digest: v.digest.clone(),
                    inputs: v.inputs.clone(),
                    name: v.name.clone(),
                    started: time(v.started.as_ref()),
                    completed: time(v.completed.as_ref()),
                    cached: v.cached,
                    error: v.error.clone(),
                    progress_group: v.progress_group.as_ref().map(|g| ProgressGroup {
                        id: g.id.clone(),
                        name: g.name.clone(),
                        weak: g.weak,
                    }),
                })
                .collect(),
            statuses: resp
                .statuses
                .iter()
                .map(|s| VertexStatus {
                    id: s.id.clone(),
                    vertex: s.vertex.clone(),
                    name: s.name.clone(),
                    current: s.current,
                    total: s.total,
                    timestamp: time(s.timestamp.as_ref()),
                    started: time(s.started.as_ref()),
                    completed: time(s.completed.as_ref()),
                })
                .collect(),
            logs: resp
                .logs
                .iter()
                .map(|l| VertexLog {
                    vertex: l.vertex.clone(),
                    stream: l.stream,
                    data: l.msg.clone(),
                    timestamp: time(l.timestamp.as_ref()),
                })
                .collect(),
            warnings: resp
                .warnings
                .iter()
                .map(|w| VertexWarning {
                    vertex: w.vertex.clone(),
                    level: w.level,
                    short: w.short.clone(),
                    detail: w.detail.clone(),
                    url: w.url.clone(),
                    source_info: w.info.as_ref().map(|i| SourceInfo {
                        filename: i.filename.clone(),
                        data: i.data.clone(),
                        language: i.language.clone(),
                    }),
                    ranges: w
                        .ranges
                        .iter()
                        .map(|r| Range {
                            start: position(r.start.as_ref()),
                            end: position(r.end.as_ref()),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A step of the build graph (Go: `client.Vertex`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vertex {
    /// The vertex digest.
    pub digest: String,
    /// Digests of the vertices it depends on.
    pub inputs: Vec<String>,
    /// The step's name, e.g. `[2/3] RUN make` (empty when unchanged).
    pub name: String,
    /// When it started on the daemon.
    pub started: Option<SystemTime>,
    /// When it finished on the daemon.
    pub completed: Option<SystemTime>,
    /// Whether it was satisfied from the cache.
    pub cached: bool,
    /// The daemon's error text, empty on success.
    pub error: String,
    /// The group that displays it together with others.
    pub progress_group: Option<ProgressGroup>,
}

/// Vertices shown as one row (Go: `pb.ProgressGroup`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgressGroup {
    /// The group's ID.
    pub id: String,
    /// The group's display name.
    pub name: String,
    /// Whether this member alone does not count.
    pub weak: bool,
}

/// Sub-progress of a step (Go: `client.VertexStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VertexStatus {
    /// The item, e.g. `transferring context:`.
    pub id: String,
    /// The vertex digest.
    pub vertex: String,
    /// The item's name.
    pub name: String,
    /// Bytes or items done.
    pub current: i64,
    /// Total, 0 when unknown.
    pub total: i64,
    /// When this update was made.
    pub timestamp: Option<SystemTime>,
    /// When the item started.
    pub started: Option<SystemTime>,
    /// When the item finished.
    pub completed: Option<SystemTime>,
}

/// A chunk of a step's output, not line-aligned (Go: `client.VertexLog`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VertexLog {
    /// The vertex digest.
    pub vertex: String,
    /// 1 = stdout, 2 = stderr.
    pub stream: i64,
    /// The raw bytes.
    pub data: Vec<u8>,
    /// When it was written.
    pub timestamp: Option<SystemTime>,
}

/// A warning about the build (Go: `client.VertexWarning`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VertexWarning {
    /// The vertex digest.
    pub vertex: String,
    /// Severity.
    pub level: i64,
    /// The short text.
    pub short: Vec<u8>,
    /// Paragraphs of detail.
    pub detail: Vec<Vec<u8>>,
    /// A link to more information.
    pub url: String,
    /// The source file the warning is about.
    pub source_info: Option<SourceInfo>,
    /// The places in that file.
    pub ranges: Vec<Range>,
}

/// A source file a warning points into (Go: `pb.SourceInfo`, without the LLB definition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInfo {
    /// The file's name, e.g. `Dockerfile`.
    pub filename: String,
    /// The file's contents.
    pub data: Vec<u8>,
    /// The file's language, e.g. `Dockerfile`.
    pub language: String,
}

/// A span in a source file (Go: `pb.Range`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    /// The first position.
    pub start: Position,
    /// The last position.
    pub end: Position,
}

/// A line and column in a source file (Go: `pb.Position`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: i32,
    /// Column.
    pub character: i32,
}

fn position(p: Option<&bollard_buildkit_proto::pb::Position>) -> Position {
    p.map(|p| Position {
        line: p.line,
        character: p.character,
    })
    .unwrap_or_default()
}

/// A protobuf timestamp as a `SystemTime` (`None` when absent or out of range).
fn time(ts: Option<&Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    if ts.seconds >= 0 {
        let d = Duration::new(u64::try_from(ts.seconds).ok()?, nanos);
        SystemTime::UNIX_EPOCH.checked_add(d)
    } else {
        let d = Duration::from_secs(ts.seconds.unsigned_abs());
        SystemTime::UNIX_EPOCH
            .checked_sub(d)?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

#[derive(Debug, Default, Clone)]
struct VertexState {
    name: String,
    started: bool,
    completed: bool,
    cached: bool,
    error: Option<String>,
    /// The daemon's runs of the step (a step may run more than once, e.g. `load build
    /// definition`): start and end, by start.
    intervals: Vec<(SystemTime, Option<SystemTime>)>,
    status_done: HashMap<String, bool>,
    partial: Vec<u8>,
    lines: Vec<String>,
}

/// Merges `StatusResponse`s by digest and turns them into [`ProgressEvent`]s, keeping the last
/// log lines of each step for error reports.
#[derive(Debug, Default)]
pub struct ProgressTracker {
    vertices: HashMap<String, VertexState>,
    failed: Option<String>,
}

impl ProgressTracker {
    /// A tracker with no vertices.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one status message; returns the events it caused, in order.
    pub fn update(&mut self, resp: &StatusResponse) -> Vec<ProgressEvent> {
        let mut events = Vec::new();
        // Completions go last so that logs in the same message come before them.
        let mut completions = Vec::new();
        // As buildx, a vertex's state is what all its entries in the message leave: a step
        // that completed and started again in one message is running.
        let mut touched: Vec<(String, bool, String)> = Vec::new();
        for v in &resp.vertexes {
            let st = self.vertices.entry(v.digest.clone()).or_default();
            if !v.name.is_empty() {
                st.name = v.name.clone();
            }
            if let Some(start) = time(v.started.as_ref()) {
                let end = time(v.completed.as_ref());
                match st.intervals.iter_mut().find(|(s, _)| *s == start) {
                    Some(iv) => iv.1 = end,
                    None => st.intervals.push((start, end)),
                }
            }
            match touched.iter_mut().find(|(d, _, _)| *d == v.digest) {
                Some(t) => {
                    t.1 |= v.cached;
                    t.2.clone_from(&v.error);
                }
                None => touched.push((v.digest.clone(), v.cached, v.error.clone())),
            }
        }
        for (digest, cached, error) in touched {
            let st = self.vertices.entry(digest.clone()).or_default();
            let name = st.name.clone();
            if cached && !st.cached {
                st.cached = true;
                st.completed = true;
                events.push(ProgressEvent::Cached { digest, name });
                continue;
            }
            if st.cached || st.intervals.is_empty() {
                continue;
            }
            let running = st.intervals.iter().any(|(_, e)| e.is_none());
            if !st.started || (running && st.completed) {
                st.started = true;
                st.completed = false;
                events.push(ProgressEvent::Started {
                    digest: digest.clone(),
                    name: name.clone(),
                });
            }
            if running || st.completed {
                continue;
            }
            st.completed = true;
            if !error.is_empty() {
                st.error = Some(error.clone());
                if error.ends_with("context canceled") {
                    completions.push(ProgressEvent::Canceled { digest, name });
                } else {
                    if self.failed.is_none() {
                        self.failed = Some(digest.clone());
                    }
                    completions.push(ProgressEvent::Failed {
                        digest,
                        name,
                        error,
                    });
                }
            } else {
                completions.push(ProgressEvent::Completed {
                    digest,
                    name,
                    duration: Some(
                        merged(&st.intervals)
                            .iter()
                            .map(|(s, e)| {
                                e.and_then(|e| e.duration_since(*s).ok())
                                    .unwrap_or_default()
                            })
                            .sum(),
                    ),
                });
            }
        }
        for s in &resp.statuses {
            let st = self.vertices.entry(s.vertex.clone()).or_default();
            let done = s.completed.is_some();
            let was_done = st.status_done.insert(s.id.clone(), done);
            if was_done == Some(true) {
                continue;
            }
            let end = s.completed.as_ref().or(s.timestamp.as_ref());
            events.push(ProgressEvent::Status {
                digest: s.vertex.clone(),
                id: s.id.clone(),
                current: s.current,
                total: s.total,
                done,
                elapsed: duration(s.started.as_ref(), end),
            });
        }
        for l in &resp.logs {
            let st = self.vertices.entry(l.vertex.clone()).or_default();
            st.partial.extend_from_slice(&l.msg);
            while let Some(i) = st.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = st.partial.drain(..=i).collect();
                st.lines
                    .push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
                if st.lines.len() > LOG_TAIL {
                    st.lines.remove(0);
                }
            }
            events.push(ProgressEvent::Log {
                digest: l.vertex.clone(),
                stream: l.stream,
                data: l.msg.clone(),
                offset: merged(&st.intervals)
                    .last()
                    .and_then(|(start, _)| time(l.timestamp.as_ref())?.duration_since(*start).ok()),
            });
        }
        for w in &resp.warnings {
            events.push(ProgressEvent::Warning {
                digest: w.vertex.clone(),
                message: String::from_utf8_lossy(&w.short).into_owned(),
            });
        }
        events.extend(completions);
        events
    }

    /// The first step that failed (not cancelled): its name and last log lines.
    pub fn failed_step(&self) -> Option<(String, Vec<String>)> {
        let d = self.failed.as_ref()?;
        let st = self.vertices.get(d)?;
        let mut lines = st.lines.clone();
        if !st.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&st.partial).into_owned());
        }
        Some((st.name.clone(), lines))
    }
}

/// A step's runs with those that overlap made one, by start; a run without an end takes in
/// every later one.
fn merged(intervals: &[(SystemTime, Option<SystemTime>)]) -> Vec<(SystemTime, Option<SystemTime>)> {
    let mut sorted = intervals.to_vec();
    sorted.sort_by_key(|(s, _)| *s);
    let mut out: Vec<(SystemTime, Option<SystemTime>)> = Vec::new();
    for (start, end) in sorted {
        match out.last_mut() {
            Some((_, None)) => break,
            Some((_, Some(last))) if *last >= start => {
                *last = match end {
                    Some(e) if e > *last => e,
                    Some(_) => *last,
                    None => {
                        out.last_mut().expect("just matched").1 = None;
                        break;
                    }
                };
            }
            _ => out.push((start, end)),
        }
    }
    out
}

fn duration(start: Option<&Timestamp>, end: Option<&Timestamp>) -> Option<Duration> {
    let (s, e) = (start?, end?);
    let ns = (e.seconds - s.seconds) as i128 * 1_000_000_000 + (e.nanos - s.nanos) as i128;
    u64::try_from(ns).ok().map(Duration::from_nanos)
}

/// Writes events as plain text, like `buildx --progress plain`: `#N name`, `#N 0.066 <log
/// line>`, `#N transferring context: 2.05kB 0.3s done`, `#N DONE 0.1s`, `#N CACHED`,
/// `#N ERROR: …`. Steps are numbered in the order they are first printed.
///
/// It prints as buildx's `textMux` does. Each print takes the changes that came since the
/// last one: finished steps first (in the order they finished), each with its header, the
/// statuses, warnings and log lines it had not printed, and its end line. One running step at a
/// time is *current*: its output is printed as it comes while the output of other running steps
/// waits; the printer switches to another step (`#N ...` marks where the current one was left)
/// when the current one finishes, when another has waited over 10 seconds, or when the current
/// one has had more than its fair share of the screen (5 seconds, scaled by how much of all
/// output it produces). A running status (`transferring context: 30.5MB 2.1s`) is printed when
/// it first comes and then again once it moved by 5% or 5 seconds.
///
/// [`PlainRenderer::update`] prints at most ten times a second, as buildx; events that come
/// in between wait for the next print, which [`PlainRenderer::tick`] (call it every 150 ms
/// or so) or the next update makes. [`PlainRenderer::render`] prints after every event.
///
/// # Deviation
/// Where buildx picks among steps at random (two running steps that print equally fast, two
/// open steps to make current), kbx takes the one that started first. A log line is printed
/// once its newline came, or when its step ends; buildx prints the beginning of a line at once
/// and prints it again whole when it switched away before the line ended. A warning is
/// printed like a log line; buildx shows it only with its step's next change, and lists all
/// warnings after the build (`docs/deviations.md` K24, K9).
#[derive(Debug)]
pub struct PlainRenderer<W: Write> {
    out: W,
    steps: HashMap<String, PlainStep>,
    /// Digests in the order they were first seen (ties are broken in this order).
    order: Vec<String>,
    /// The last number given to a printed step.
    last_index: usize,
    /// The step whose lines are being printed.
    current: Option<String>,
    /// Whether a step was printed (a blank line goes before each later header).
    not_first: bool,
    /// Steps with changes not printed yet.
    updated: Vec<String>,
    /// What each status ID showed when it was last printed: its amount and elapsed time.
    last_status: HashMap<String, (i64, Option<Duration>)>,
    /// When the last print was made, for the rate limit.
    last_print: Option<Instant>,
    /// How many steps have finished (orders the finished steps of one print).
    finished: u64,
    /// `PROGRESS_NO_TRUNC=0`: names are cut after 72 characters.
    truncate: bool,
}

/// A step as the plain printer knows it.
#[derive(Debug, Default)]
struct PlainStep {
    name: String,
    /// Its `#N`, 0 until it is first printed.
    index: usize,
    started: bool,
    end: Option<(u64, StepEnd)>,
    /// Sub-progress items in the order they first came.
    statuses: Vec<PlainStatus>,
    warnings: Vec<String>,
    /// Whole log lines not printed yet, offsets in front.
    logs: Vec<String>,
    /// The unfinished log line and the offset of its first chunk.
    partial: Option<(Option<Duration>, Vec<u8>)>,
    /// Changes since the step last stopped waiting, and since when it has them.
    count: u32,
    since: Option<Instant>,
}

impl PlainStep {
    fn changed(&mut self, now: Instant) {
        if self.count == 0 {
            self.since = Some(now);
        }
        self.count += 1;
    }

    fn open(&self) -> bool {
        self.started && self.end.is_none()
    }
}

#[derive(Debug)]
enum StepEnd {
    Done(Option<Duration>),
    Cached,
    Failed(String),
    Canceled,
}

/// How a step with changes produces output, for the choice of the step to show.
#[derive(Debug)]
struct Pace {
    digest: String,
    /// Since its first change not shown.
    blocked: Duration,
    /// Changes a second.
    speed: f64,
    /// Waited longer than [`MAX_WAIT`] while another step was current.
    over: bool,
}

#[derive(Debug)]
struct PlainStatus {
    id: String,
    current: i64,
    total: i64,
    done: bool,
    elapsed: Option<Duration>,
    /// Changed since the step was last printed.
    fresh: bool,
}

/// The shortest time between two prints (buildx's `displayTimeout`).
const PRINT_EVERY: Duration = Duration::from_millis(100);
/// How long a running step's output waits at most for the current step (buildx's `maxDelay`).
const MAX_WAIT: Duration = Duration::from_secs(10);
/// The current step's base share of the screen (buildx's `antiFlicker`).
const FAIR_SHARE: Duration = Duration::from_secs(5);
/// A running status is printed again once it moved this much of its total…
const STATUS_STEP: f64 = 0.05;
/// …or once this much time passed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

impl<W: Write> PlainRenderer<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        PlainRenderer {
            out,
            steps: HashMap::new(),
            order: Vec::new(),
            last_index: 0,
            current: None,
            not_first: false,
            updated: Vec::new(),
            last_status: HashMap::new(),
            last_print: None,
            finished: 0,
            truncate: std::env::var("PROGRESS_NO_TRUNC").is_ok_and(|v| v == "0"),
        }
    }

    /// Renders one event and prints at once.
    ///
    /// # Errors
    /// Errors of the writer.
    pub fn render(&mut self, ev: &ProgressEvent) -> std::io::Result<()> {
        let now = Instant::now();
        self.apply(ev, now);
        self.print(now)?;
        self.last_print = Some(now);
        self.out.flush()
    }

    /// Takes the events of one daemon message; prints unless the last print was less than
    /// 100 ms ago.
    ///
    /// # Errors
    /// Errors of the writer.
    pub fn update(&mut self, events: &[ProgressEvent]) -> std::io::Result<()> {
        self.update_at(events, Instant::now())
    }

    /// [`PlainRenderer::update`] at the time `now` (for replaying a recorded build).
    ///
    /// # Errors
    /// Errors of the writer.
    pub fn update_at(&mut self, events: &[ProgressEvent], now: Instant) -> std::io::Result<()> {
        for ev in events {
            self.apply(ev, now);
        }
        self.tick_at(now)
    }

    /// Prints what waits, unless the last print was less than 100 ms ago.
    ///
    /// # Errors
    /// Errors of the writer.
    pub fn tick(&mut self) -> std::io::Result<()> {
        self.tick_at(Instant::now())
    }

    /// [`PlainRenderer::tick`] at the time `now`.
    ///
    /// # Errors
    /// Errors of the writer.
    pub fn tick_at(&mut self, now: Instant) -> std::io::Result<()> {
        if self
            .last_print
            .is_some_and(|t| now.saturating_duration_since(t) < PRINT_EVERY)
        {
            return Ok(());
        }
        self.print(now)?;
        self.last_print = Some(now);
        self.out.flush()
    }

    /// Prints everything that waits. Call it when the build ends.
    ///
    /// # Errors
    /// Errors of the writer.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let now = Instant::now();
        // Nothing waits past the end: a print that leaves every waiting step waiting (the
        // current one still runs) is followed by a switch to the first of them.
        while let Some(first) = self.updated.first().cloned() {
            let before = self.updated.len();
            self.print(now)?;
            if self.updated.len() == before {
                self.print_step(&first)?;
            }
        }
        self.last_print = Some(now);
        self.out.flush()
    }

    /// The writer back, after [`PlainRenderer::finish`].
    pub fn into_inner(mut self) -> W {
        let _ = self.finish();
        self.out
    }

    fn step(&mut self, digest: &str) -> &mut PlainStep {
        if !self.steps.contains_key(digest) {
            self.order.push(digest.to_owned());
        }
        self.steps.entry(digest.to_owned()).or_default()
    }

    fn mark(&mut self, digest: &str) {
        if !self.updated.iter().any(|d| d == digest) {
            self.updated.push(digest.to_owned());
        }
    }

    fn end(&mut self, digest: &str, name: &str, end: StepEnd, now: Instant) {
        self.finished += 1;
        let seq = self.finished;
        let st = self.step(digest);
        if !name.is_empty() {
            name.clone_into(&mut st.name);
        }
        st.started = true;
        st.end = Some((seq, end));
        st.changed(now);
        self.mark(digest);
    }

    /// Records one event.
    fn apply(&mut self, ev: &ProgressEvent, now: Instant) {
        match ev {
            ProgressEvent::Started { digest, name } => {
                let st = self.step(digest);
                name.clone_into(&mut st.name);
                st.started = true;
                st.end = None;
                st.changed(now);
                self.mark(digest);
            }
            ProgressEvent::Cached { digest, name } => {
                self.end(digest, name, StepEnd::Cached, now);
            }
            ProgressEvent::Completed {
                digest,
                name,
                duration,
            } => self.end(digest, name, StepEnd::Done(*duration), now),
            ProgressEvent::Failed {
                digest,
                name,
                error,
            } => self.end(digest, name, StepEnd::Failed(error.clone()), now),
            ProgressEvent::Canceled { digest, name } => {
                self.end(digest, name, StepEnd::Canceled, now);
            }
            ProgressEvent::Status {
                digest,
                id,
                current,
                total,
                done,
                elapsed,
            } => {
                let st = self.step(digest);
                let s = PlainStatus {
                    id: id.clone(),
                    current: *current,
                    total: *total,
                    done: *done,
                    elapsed: *elapsed,
                    fresh: true,
                };
                match st.statuses.iter_mut().find(|s| s.id == *id) {
                    Some(old) => *old = s,
                    None => st.statuses.push(s),
                }
                st.changed(now);
                self.mark(digest);
            }
            ProgressEvent::Log {
                digest,
                data,
                offset,
                ..
            } => {
                let st = self.step(digest);
                let (ts, buf) = st.partial.get_or_insert_with(|| (*offset, Vec::new()));
                buf.extend_from_slice(data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    st.logs.push(log_line(*ts, &line[..line.len() - 1]));
                    *ts = *offset;
                }
                if buf.is_empty() {
                    st.partial = None;
                }
                st.changed(now);
                self.mark(digest);
            }
            ProgressEvent::Warning { digest, message } => {
                let st = self.step(digest);
                st.warnings.push(message.clone());
                st.changed(now);
                self.mark(digest);
            }
        }
    }

    /// One print: finished steps, then the current one, then maybe a switch.
    fn print(&mut self, now: Instant) -> std::io::Result<()> {
        let mut finished: Vec<(u64, String)> = Vec::new();
        let mut rest: Vec<String> = Vec::new();
        for d in &self.updated {
            match self.steps.get(d).and_then(|s| s.end.as_ref()) {
                Some((seq, _)) => finished.push((*seq, d.clone())),
                None => rest.push(d.clone()),
            }
        }
        finished.sort();
        let current = self.current.clone();
        let current_finished = current
            .as_ref()
            .is_some_and(|c| finished.iter().any(|(_, d)| d == c));
        if let Some(c) = current.as_ref().filter(|_| current_finished) {
            self.print_step(c)?;
        }
        for (_, d) in &finished {
            if current.as_ref() != Some(d) {
                self.print_step(d)?;
            }
        }
        if rest.is_empty() {
            let current_open = current
                .as_ref()
                .and_then(|c| self.steps.get(c))
                .is_some_and(PlainStep::open);
            if current_open {
                return Ok(());
            }
            let open = self
                .order
                .iter()
                .find(|d| self.steps.get(*d).is_some_and(PlainStep::open))
                .cloned();
            if let Some(d) = open {
                self.print_step(&d)?;
            }
            return Ok(());
        }
        if let Some(c) = current.as_ref().filter(|c| rest.contains(c)) {
            self.print_step(c)?;
        }
        // How fast each step with changes (and the current one) produces output.
        let mut candidates: Vec<&String> = self
            .order
            .iter()
            .filter(|d| rest.contains(d) || current.as_ref() == Some(*d))
            .collect();
        candidates.dedup();
        let mut stats: Vec<Pace> = Vec::new();
        for d in candidates {
            let Some(st) = self.steps.get(d) else {
                continue;
            };
            let Some(since) = st.since else {
                continue;
            };
            let blocked = now.saturating_duration_since(since);
            stats.push(Pace {
                digest: d.clone(),
                blocked,
                speed: f64::from(st.count) / blocked.as_secs_f64().max(1e-9),
                over: blocked > MAX_WAIT && current.as_ref() != Some(d),
            });
        }
        let sum: f64 = stats.iter().map(|p| p.speed).sum();
        // The fastest, or one that waited too long; the first started on a tie.
        let mut fastest: Option<&Pace> = None;
        for p in &stats {
            let better = match fastest {
                None => true,
                Some(f) if f.over => false,
                Some(f) => p.over || f.speed < p.speed,
            };
            if better {
                fastest = Some(p);
            }
        }
        let fastest = fastest.map(|p| p.digest.clone());
        if current.is_none() || current_finished {
            if let Some(d) = fastest {
                self.print_step(&d)?;
            }
            return Ok(());
        }
        if let Some(d) = stats
            .iter()
            .find(|p| p.over && rest.contains(&p.digest))
            .map(|p| p.digest.clone())
        {
            return self.print_step(&d);
        }
        let Some(cur) = stats.iter().find(|p| current.as_ref() == Some(&p.digest)) else {
            return Ok(());
        };
        let share = if sum > 0.0 { cur.speed / sum } else { 0.0 };
        if share < 1.0
            && FAIR_SHARE.as_secs_f64() / (1.0 - share) < cur.blocked.as_secs_f64()
            && let Some(d) = fastest
        {
            self.print_step(&d)?;
        }
        Ok(())
    }

    /// Prints what step `digest` has not printed; a switch from the current step first.
    fn print_step(&mut self, digest: &str) -> std::io::Result<()> {
        self.updated.retain(|d| d != digest);
        if !self.steps.contains_key(digest) {
            return Ok(());
        }
        if self.steps[digest].index == 0 {
            self.last_index += 1;
            let n = self.last_index;
            self.step(digest).index = n;
        }
        if self.current.as_deref() != Some(digest) {
            if let Some(old) = self.current.take()
                && let Some(o) = self.steps.get_mut(&old)
            {
                o.count = 0;
                writeln!(self.out, "#{} ...", o.index)?;
            }
            if self.not_first {
                writeln!(self.out)?;
            }
            self.not_first = true;
            let st = &self.steps[digest];
            let name = if self.truncate && st.name.len() > 72 {
                let cut = (0..=72).rev().find(|i| st.name.is_char_boundary(*i));
                format!("{}...", &st.name[..cut.unwrap_or(0)])
            } else {
                st.name.clone()
            };
            writeln!(self.out, "#{} {name}", st.index)?;
        }
        let st = self.steps.get_mut(digest).expect("checked above");
        let n = st.index;
        let mut open_status = false;
        for s in &mut st.statuses {
            if !std::mem::take(&mut s.fresh) {
                continue;
            }
            if !s.done
                && let Some((current, elapsed)) = self.last_status.get(&s.id)
            {
                #[allow(clippy::cast_precision_loss)]
                let moved = if s.total > 0 {
                    (s.current - current) as f64 / s.total as f64
                } else {
                    0.0
                };
                let waited = match (s.elapsed, elapsed) {
                    (Some(now), Some(then)) => now.saturating_sub(*then),
                    _ => Duration::ZERO,
                };
                if moved < STATUS_STEP && waited < STATUS_EVERY {
                    continue;
                }
            }
            self.last_status
                .insert(s.id.clone(), (s.current, s.elapsed));
            open_status |= !s.done;
            writeln!(self.out, "#{n} {}", status_line(s))?;
        }
        for w in st.warnings.drain(..) {
            writeln!(self.out, "#{n} WARN: {w}")?;
        }
        for l in st.logs.drain(..) {
            writeln!(self.out, "#{n} {l}")?;
        }
        self.current = Some(digest.to_owned());
        if let Some((_, end)) = &st.end
            && !open_status
        {
            self.current = None;
            st.count = 0;
            if let Some((ts, rest)) = st.partial.take() {
                writeln!(self.out, "#{n} {}", log_line(ts, &rest))?;
            }
            match end {
                StepEnd::Failed(e) => writeln!(self.out, "#{n} ERROR: {e}")?,
                StepEnd::Canceled => writeln!(self.out, "#{n} CANCELED")?,
                StepEnd::Cached => writeln!(self.out, "#{n} CACHED")?,
                StepEnd::Done(d) => match d {
                    Some(d) => writeln!(self.out, "#{n} DONE {:.1}s", d.as_secs_f64())?,
                    None => writeln!(self.out, "#{n} DONE")?,
                },
            }
        }
        Ok(())
    }
}

/// A status as buildx prints it after `#N `: `exporting layers 0.3s done`,
/// `transferring context: 2.05kB / 4.10kB 1.2s` (no double space where a part is missing).
fn status_line(s: &PlainStatus) -> String {
    let mut line = s.id.clone();
    if s.total != 0 {
        line.push_str(&format!(" {} / {}", bytes(s.current), bytes(s.total)));
    } else if s.current != 0 {
        line.push_str(&format!(" {}", bytes(s.current)));
    }
    if let Some(d) = s.elapsed
        && d.as_secs_f64() > 0.01
    {
        line.push_str(&format!(" {:.1}s", d.as_secs_f64()));
    }
    if s.done {
        line.push_str(" done");
    }
    line
}

/// A log line as buildx prints it after `#N `: seconds since the step started (three decimals
/// below 10 s, two below 100 s, else one), then the text.
fn log_line(offset: Option<Duration>, text: &[u8]) -> String {
    let secs = offset.map_or(0.0, |d| d.as_secs_f64());
    let prec = if secs < 10.0 {
        3
    } else if secs < 100.0 {
        2
    } else {
        1
    };
    format!("{secs:.prec$} {}", String::from_utf8_lossy(text))
}

/// A byte count as buildx prints it (`fmt.Sprintf("%.2f", units.Bytes(n))` of
/// `github.com/tonistiigi/units`): below 1000 a whole number of `B`, else two decimals of the
/// largest decimal unit it reaches (`kB`, `MB`, `GB`, …).
pub(crate) fn bytes(n: i64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut unit = 0;
    let mut base: i128 = 1;
    let n128 = i128::from(n);
    while unit + 1 < UNITS.len() && n128.abs() >= base * 1000 {
        base *= 1000;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        // Exact enough: i64 fits f64's 53 bits up to 9 PB, and the printed value has 2 decimals.
        #[allow(clippy::cast_precision_loss)]
        let v = n as f64 / base as f64;
        format!("{v:.2}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::moby::buildkit::v1::{Vertex, VertexLog, VertexStatus};

    /// Replays daemon messages, each at its time in milliseconds, through a tracker and a
    /// renderer that prints at most every 100 ms, as buildx's plain printer.
    fn replay(msgs: &[(u64, StatusResponse)]) -> String {
        let t0 = Instant::now();
        let mut t = ProgressTracker::new();
        let mut r = PlainRenderer::new(Vec::new());
        for (ms, m) in msgs {
            let events = t.update(m);
            r.update_at(&events, t0 + Duration::from_millis(*ms))
                .expect("render");
        }
        String::from_utf8(r.into_inner()).expect("utf8")
    }

    fn started(d: &str, name: &str, at: i64) -> Vertex {
        Vertex {
            started: ts(at, 0),
            ..vertex(d, name)
        }
    }

    fn log(d: &str, at: i64, msg: &str) -> VertexLog {
        VertexLog {
            vertex: d.into(),
            stream: 1,
            msg: msg.as_bytes().to_vec(),
            timestamp: ts(at, 0),
        }
    }

    /// The daemon completes a step and sends the step's last status just after: both come
    /// within one print, which shows the status (with its size and time) before `DONE`; a
    /// running status that came earlier was printed with its time so far.
    #[test]
    fn done_follows_the_steps_last_statuses() {
        let ctx = "[internal] load build context";
        let transfer = |current: i64, at: i64, done: bool| VertexStatus {
            id: "transferring context:".into(),
            vertex: "sha256:c".into(),
            current,
            started: ts(10, 0),
            timestamp: ts(at, 0),
            completed: if done { ts(at, 0) } else { None },
            ..VertexStatus::default()
        };
        let text = replay(&[
            (
                0,
                StatusResponse {
                    vertexes: vec![started("sha256:c", ctx, 10)],
                    ..StatusResponse::default()
                },
            ),
            (
                3_950,
                StatusResponse {
                    statuses: vec![transfer(200_000_000, 13, false)],
                    ..StatusResponse::default()
                },
            ),
            (
                4_000,
                StatusResponse {
                    vertexes: vec![Vertex {
                        completed: ts(14, 0),
                        ..started("sha256:c", ctx, 10)
                    }],
                    ..StatusResponse::default()
                },
            ),
            (
                4_001,
                StatusResponse {
                    statuses: vec![transfer(213_870_000, 14, true)],
                    ..StatusResponse::default()
                },
            ),
            (
                4_200,
                StatusResponse {
                    vertexes: vec![Vertex {
                        completed: ts(14, 0),
                        ..started("sha256:d", "[1/1] COPY . /", 14)
                    }],
                    ..StatusResponse::default()
                },
            ),
        ]);
        assert_eq!(
            text,
            "#1 [internal] load build context\n#1 transferring context: 200.00MB 3.0s\n#1 transferring context: 213.87MB 4.0s done\n#1 DONE 4.0s\n\n\
             #2 [1/1] COPY . /\n#2 DONE 0.0s\n"
        );
    }

    /// A running status is printed again only once it moved by 5% of its total or by 5
    /// seconds; its completion always is.
    #[test]
    fn running_statuses_print_when_they_move() {
        let pull = |current: i64, at: i64, done: bool| VertexStatus {
            id: "sha256:layer".into(),
            vertex: "sha256:p".into(),
            current,
            total: 1_000_000,
            started: ts(0, 0),
            timestamp: ts(at, 0),
            completed: if done { ts(at, 0) } else { None },
            ..VertexStatus::default()
        };
        let mut msgs = vec![(
            0,
            StatusResponse {
                vertexes: vec![started("sha256:p", "[1/1] FROM base", 0)],
                ..StatusResponse::default()
            },
        )];
        for (i, (current, done)) in [
            (10_000, false),
            (40_000, false),   // 3%: not printed
            (70_000, false),   // 6% since the last printed: printed
            (80_000, false),   // 1%, but 5 s later: printed
            (90_000, false),   // 1%, 1 s later: not printed
            (1_000_000, true), // done: printed
        ]
        .into_iter()
        .enumerate()
        {
            let at = [1, 2, 3, 8, 9, 10][i];
            msgs.push((
                at as u64 * 1000,
                StatusResponse {
                    statuses: vec![pull(current, at, done)],
                    ..StatusResponse::default()
                },
            ));
        }
        msgs.push((
            11_000,
            StatusResponse {
                vertexes: vec![Vertex {
                    completed: ts(11, 0),
                    ..started("sha256:p", "[1/1] FROM base", 0)
                }],
                ..StatusResponse::default()
            },
        ));
        assert_eq!(
            replay(&msgs),
            "#1 [1/1] FROM base\n#1 sha256:layer 10.00kB / 1.00MB 1.0s\n#1 sha256:layer 70.00kB / 1.00MB 3.0s\n#1 sha256:layer 80.00kB / 1.00MB 8.0s\n#1 sha256:layer 1.00MB / 1.00MB 10.0s done\n#1 DONE 11.0s\n"
        );
    }

    /// A long build with two steps running side by side: the first printed step stays current
    /// while the other's output waits; after 10 seconds of waiting the other is shown (`#1 ...`
    /// marks where the first was left); a step that finishes is printed at once, and a step
    /// still running then becomes current again. Log lines carry their time since the step
    /// started (`1.000`, `11.00`).
    #[test]
    fn long_build_interleaves_steps_as_buildx() {
        let (a, b) = ("[a 1/1] RUN a", "[b 1/1] RUN b");
        let msg = |vertexes: Vec<Vertex>, logs: Vec<VertexLog>| StatusResponse {
            vertexes,
            logs,
            ..StatusResponse::default()
        };
        let text = replay(&[
            (
                0,
                msg(
                    vec![started("sha256:a", a, 100), started("sha256:b", b, 100)],
                    vec![],
                ),
            ),
            (1_000, msg(vec![], vec![log("sha256:a", 101, "a1\n")])),
            (2_000, msg(vec![], vec![log("sha256:b", 102, "b1\n")])),
            (3_000, msg(vec![], vec![log("sha256:a", 103, "a2\n")])),
            (11_000, msg(vec![], vec![log("sha256:a", 111, "a3\n")])),
            (
                12_000,
                msg(
                    vec![Vertex {
                        completed: ts(112, 0),
                        ..started("sha256:a", a, 100)
                    }],
                    vec![],
                ),
            ),
            (
                13_000,
                msg(
                    vec![Vertex {
                        completed: ts(113, 500_000_000),
                        ..started("sha256:b", b, 100)
                    }],
                    vec![log("sha256:b", 113, "b2\nb")],
                ),
            ),
        ]);
        assert_eq!(
            text,
            "#1 [a 1/1] RUN a\n#1 1.000 a1\n#1 3.000 a2\n#1 11.00 a3\n#1 ...\n\n\
             #2 [b 1/1] RUN b\n#2 2.000 b1\n#2 ...\n\n\
             #1 [a 1/1] RUN a\n#1 DONE 12.0s\n\n\
             #2 [b 1/1] RUN b\n#2 13.00 b2\n#2 13.00 b\n#2 DONE 13.5s\n"
        );
    }

    /// At the end nothing is left unprinted: the output of a step that waited for the
    /// current one, and a warning that came after its step finished.
    #[test]
    fn finish_prints_what_waits() {
        use bollard_buildkit_proto::moby::buildkit::v1::VertexWarning as PbWarning;
        let text = replay(&[
            (
                0,
                StatusResponse {
                    vertexes: vec![
                        started("sha256:a", "[a 1/1] RUN a", 100),
                        started("sha256:b", "[b 1/1] RUN b", 100),
                    ],
                    ..StatusResponse::default()
                },
            ),
            (
                1_000,
                StatusResponse {
                    logs: vec![log("sha256:b", 101, "b1\n")],
                    ..StatusResponse::default()
                },
            ),
        ]);
        assert_eq!(
            text,
            "#1 [a 1/1] RUN a\n#1 ...\n\n#2 [b 1/1] RUN b\n#2 1.000 b1\n"
        );
        let text = replay(&[
            (
                0,
                StatusResponse {
                    vertexes: vec![Vertex {
                        completed: ts(100, 0),
                        ..started("sha256:c", "[internal] load build definition", 100)
                    }],
                    ..StatusResponse::default()
                },
            ),
            (
                1_000,
                StatusResponse {
                    warnings: vec![PbWarning {
                        vertex: "sha256:c".into(),
                        short: b"JSONArgsRecommended".to_vec(),
                        ..PbWarning::default()
                    }],
                    ..StatusResponse::default()
                },
            ),
        ]);
        assert_eq!(
            text,
            "#1 [internal] load build definition\n#1 DONE 0.0s\n\n\
             #1 [internal] load build definition\n#1 WARN: JSONArgsRecommended\n#1 DONE 0.0s\n"
        );
    }

    #[test]
    fn bytes_print_as_buildx_prints_them() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(60), "60B");
        assert_eq!(bytes(999), "999B");
        assert_eq!(bytes(1000), "1.00kB");
        assert_eq!(bytes(2048), "2.05kB");
        assert_eq!(bytes(213_821_304), "213.82MB");
        assert_eq!(bytes(1_000_000_000), "1.00GB");
        assert_eq!(bytes(-1500), "-1.50kB");
    }

    fn ts(s: i64, n: i32) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: s,
            nanos: n,
        })
    }

    fn vertex(d: &str, name: &str) -> Vertex {
        Vertex {
            digest: d.into(),
            name: name.into(),
            ..Vertex::default()
        }
    }

    #[test]
    fn merges_by_digest_and_renders_plain() {
        let mut t = ProgressTracker::new();
        let msgs = vec![
            StatusResponse {
                vertexes: vec![
                    Vertex {
                        started: ts(10, 0),
                        ..vertex("sha256:a", "[1/2] FROM scratch")
                    },
                    Vertex {
                        cached: true,
                        ..vertex("sha256:b", "[internal] load .dockerignore")
                    },
                ],
                ..StatusResponse::default()
            },
            StatusResponse {
                // The same vertex again, unchanged: no new event.
                vertexes: vec![Vertex {
                    started: ts(10, 0),
                    ..vertex("sha256:a", "[1/2] FROM scratch")
                }],
                statuses: vec![VertexStatus {
                    id: "transferring context:".into(),
                    vertex: "sha256:a".into(),
                    current: 42,
                    completed: ts(10, 5),
                    ..VertexStatus::default()
                }],
                logs: vec![VertexLog {
                    vertex: "sha256:a".into(),
                    stream: 1,
                    msg: b"hello\nwor".to_vec(),
                    ..VertexLog::default()
                }],
                ..StatusResponse::default()
            },
            StatusResponse {
                vertexes: vec![Vertex {
                    started: ts(10, 0),
                    completed: ts(11, 500_000_000),
                    error: "exit code: 1".into(),
                    ..vertex("sha256:a", "")
                }],
                logs: vec![VertexLog {
                    vertex: "sha256:a".into(),
                    stream: 2,
                    msg: b"ld\n".to_vec(),
                    ..VertexLog::default()
                }],
                ..StatusResponse::default()
            },
        ];
        let mut all = Vec::new();
        for m in &msgs {
            all.extend(t.update(m));
        }
        assert_eq!(
            all.iter()
                .filter(|e| matches!(e, ProgressEvent::Started { .. }))
                .count(),
            1
        );
        // Printed a second apart: the cached step first (it finished in the first message),
        // then the running one, which takes the rest.
        let timed: Vec<_> = msgs
            .iter()
            .cloned()
            .zip([0, 1000, 2000])
            .map(|(m, t)| (t, m))
            .collect();
        assert_eq!(
            replay(&timed),
            "#1 [internal] load .dockerignore\n#1 CACHED\n\n\
             #2 [1/2] FROM scratch\n\
             #2 transferring context: 42B done\n#2 0.000 hello\n#2 0.000 world\n\
             #2 ERROR: exit code: 1\n"
        );
        let (name, lines) = t.failed_step().expect("failed");
        assert_eq!(name, "[1/2] FROM scratch");
        assert_eq!(lines, ["hello", "world"]);
    }

    #[test]
    fn solve_status_keeps_every_field() {
        use bollard_buildkit_proto::moby::buildkit::v1::VertexWarning as PbWarning;
        use bollard_buildkit_proto::pb;
        let resp = StatusResponse {
            vertexes: vec![Vertex {
                inputs: vec!["sha256:0".into()],
                started: ts(10, 5),
                completed: ts(-1, 0),
                error: "boom".into(),
                progress_group: Some(pb::ProgressGroup {
                    id: "g".into(),
                    name: "group".into(),
                    weak: true,
                }),
                ..vertex("sha256:a", "[1/2] RUN x")
            }],
            statuses: vec![VertexStatus {
                id: "layer".into(),
                vertex: "sha256:a".into(),
                current: 3,
                total: 9,
                timestamp: ts(11, 0),
                ..VertexStatus::default()
            }],
            logs: vec![VertexLog {
                vertex: "sha256:a".into(),
                stream: 2,
                msg: b"out".to_vec(),
                timestamp: ts(12, 0),
            }],
            warnings: vec![PbWarning {
                vertex: "sha256:a".into(),
                level: 1,
                short: b"short".to_vec(),
                detail: vec![b"d".to_vec()],
                url: "u".into(),
                info: Some(pb::SourceInfo {
                    filename: "Dockerfile".into(),
                    data: b"FROM x".to_vec(),
                    language: "Dockerfile".into(),
                    ..pb::SourceInfo::default()
                }),
                ranges: vec![pb::Range {
                    start: Some(pb::Position {
                        line: 1,
                        character: 2,
                    }),
                    end: None,
                }],
            }],
        };
        let s = SolveStatus::from_response(&resp);
        let epoch = SystemTime::UNIX_EPOCH;
        let v = &s.vertexes[0];
        assert_eq!(v.inputs, ["sha256:0"]);
        assert_eq!(v.started, Some(epoch + Duration::new(10, 5)));
        assert_eq!(v.completed, Some(epoch - Duration::from_secs(1)));
        assert_eq!(v.error, "boom");
        assert_eq!(v.progress_group.as_ref().map(|g| g.weak), Some(true));
        assert_eq!((s.statuses[0].current, s.statuses[0].total), (3, 9));
        assert_eq!(s.statuses[0].started, None);
        assert_eq!(s.logs[0].data, b"out");
        assert_eq!(s.logs[0].timestamp, Some(epoch + Duration::from_secs(12)));
        let w = &s.warnings[0];
        assert_eq!(w.short, b"short");
        assert_eq!(
            w.source_info.as_ref().map(|i| i.filename.as_str()),
            Some("Dockerfile")
        );
        assert_eq!(
            w.ranges[0].start,
            Position {
                line: 1,
                character: 2
            }
        );
        assert_eq!(w.ranges[0].end, Position::default());
        assert!(!s.is_empty());
        assert!(SolveStatus::default().is_empty());
        // A malformed timestamp is dropped, not a panic.
        assert_eq!(time(ts(1, -5).as_ref()), None);
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration(ts(1, 900_000_000).as_ref(), ts(3, 100_000_000).as_ref()),
            Some(Duration::from_millis(1200))
        );
        assert_eq!(duration(None, ts(3, 0).as_ref()), None);
    }
}

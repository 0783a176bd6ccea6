//! Build progress: the daemon's `Status` stream merged by vertex digest into typed events, and a
//! plain-text renderer in the style of `buildx --progress plain`.
//!
//! Each `Status` message is also available unmerged as a [`SolveStatus`] (the shape of the Go
//! client's `client.SolveStatus`), for printers that need every field, e.g. timestamps or the
//! vertices that have not started yet.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

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
        for v in &resp.vertexes {
            let st = self.vertices.entry(v.digest.clone()).or_default();
            if !v.name.is_empty() {
                st.name = v.name.clone();
            }
            let name = st.name.clone();
            let digest = v.digest.clone();
            if v.cached && !st.cached {
                st.cached = true;
                st.completed = true;
                events.push(ProgressEvent::Cached { digest, name });
                continue;
            }
            if v.started.is_some() && !st.started && !st.cached {
                st.started = true;
                events.push(ProgressEvent::Started {
                    digest: digest.clone(),
                    name: name.clone(),
                });
            }
            if v.completed.is_some() && !st.completed {
                st.completed = true;
                if !v.error.is_empty() {
                    st.error = Some(v.error.clone());
                    if v.error.ends_with("context canceled") {
                        completions.push(ProgressEvent::Canceled { digest, name });
                    } else {
                        if self.failed.is_none() {
                            self.failed = Some(v.digest.clone());
                        }
                        completions.push(ProgressEvent::Failed {
                            digest,
                            name,
                            error: v.error.clone(),
                        });
                    }
                } else {
                    completions.push(ProgressEvent::Completed {
                        digest,
                        name,
                        duration: duration(v.started.as_ref(), v.completed.as_ref()),
                    });
                }
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

fn duration(start: Option<&Timestamp>, end: Option<&Timestamp>) -> Option<Duration> {
    let (s, e) = (start?, end?);
    let ns = (e.seconds - s.seconds) as i128 * 1_000_000_000 + (e.nanos - s.nanos) as i128;
    u64::try_from(ns).ok().map(Duration::from_nanos)
}

/// Writes events as plain text, like `buildx --progress plain`: `#N name`, `#N <log line>`,
/// `#N DONE 0.1s`, `#N CACHED`, `#N ERROR: …`. Steps are numbered in first-seen order.
#[derive(Debug)]
pub struct PlainRenderer<W: Write> {
    out: W,
    numbers: HashMap<String, usize>,
    names: HashMap<String, String>,
    last: Option<String>,
    partial: HashMap<String, Vec<u8>>,
    /// A finished step's `DONE` line, held back so that the step's last status lines (which
    /// the daemon often sends just after the step's completion) come before it, as in buildx.
    pending_done: Option<(String, String)>,
}

impl<W: Write> PlainRenderer<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        PlainRenderer {
            out,
            numbers: HashMap::new(),
            names: HashMap::new(),
            last: None,
            partial: HashMap::new(),
            pending_done: None,
        }
    }

    /// Writes what is held back (a finished step's `DONE` line). Call it when the build ends.
    ///
    /// # Errors
    /// Errors of the writer.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some((_, line)) = self.pending_done.take() {
            writeln!(self.out, "{line}")?;
        }
        self.out.flush()
    }

    /// The writer back, after [`PlainRenderer::finish`].
    pub fn into_inner(mut self) -> W {
        let _ = self.finish();
        self.out
    }

    fn number(&mut self, digest: &str) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(digest.to_owned()).or_insert(next)
    }

    fn switch_to(&mut self, digest: &str) -> std::io::Result<usize> {
        let known = self.numbers.contains_key(digest);
        let n = self.number(digest);
        if self.last.as_deref() != Some(digest) {
            if self.last.is_some() {
                writeln!(self.out)?;
            }
            if known && let Some(name) = self.names.get(digest) {
                writeln!(self.out, "#{n} {name}")?;
            }
            self.last = Some(digest.to_owned());
        }
        Ok(n)
    }

    /// Renders one event.
    ///
    /// # Errors
    /// Errors of the writer.
    pub fn render(&mut self, ev: &ProgressEvent) -> std::io::Result<()> {
        // The held-back DONE line goes out before anything but its own step's statuses.
        let same_step = match ev {
            ProgressEvent::Status { digest, .. } => Some(digest),
            _ => None,
        };
        if let Some((digest, _)) = &self.pending_done
            && same_step != Some(digest)
        {
            self.finish()?;
        }
        match ev {
            ProgressEvent::Started { digest, name } | ProgressEvent::Cached { digest, name }
                if !self.numbers.contains_key(digest) =>
            {
                self.names.insert(digest.clone(), name.clone());
                let n = self.switch_to(digest)?;
                writeln!(self.out, "#{n} {name}")?;
                if matches!(ev, ProgressEvent::Cached { .. }) {
                    writeln!(self.out, "#{n} CACHED")?;
                }
            }
            ProgressEvent::Started { .. } => {}
            ProgressEvent::Cached { digest, .. } => {
                let n = self.switch_to(digest)?;
                writeln!(self.out, "#{n} CACHED")?;
            }
            ProgressEvent::Completed {
                digest, duration, ..
            } => {
                self.flush_partial(digest)?;
                let n = self.switch_to(digest)?;
                let secs = duration.map(|d| d.as_secs_f64()).unwrap_or(0.0);
                self.pending_done = Some((digest.clone(), format!("#{n} DONE {secs:.1}s")));
                return Ok(());
            }
            ProgressEvent::Failed { digest, error, .. } => {
                self.flush_partial(digest)?;
                let n = self.switch_to(digest)?;
                writeln!(self.out, "#{n} ERROR: {error}")?;
            }
            ProgressEvent::Canceled { digest, .. } => {
                let n = self.switch_to(digest)?;
                writeln!(self.out, "#{n} CANCELED")?;
            }
            // Like buildx's throttling taken to the end: one line per finished item.
            ProgressEvent::Status { done: false, .. } => {}
            ProgressEvent::Status {
                digest,
                id,
                current,
                total,
                done,
                elapsed,
            } => {
                let n = self.switch_to(digest)?;
                // buildx's `%.2f` of `units.Bytes`: `60B`, `2.05kB`, `213.82MB / 1.00GB`.
                let amount = if *total != 0 {
                    format!("{} / {}", bytes(*current), bytes(*total))
                } else if *current != 0 {
                    bytes(*current)
                } else {
                    String::new()
                };
                let time = match elapsed {
                    Some(d) if d.as_secs_f64() > 0.01 => format!("{:.1}s", d.as_secs_f64()),
                    _ => String::new(),
                };
                // `#5 exporting layers 0.3s done`: no double space where a part is missing.
                let mut line = format!("#{n} {id}");
                for part in [
                    amount.as_str(),
                    time.as_str(),
                    if *done { "done" } else { "" },
                ] {
                    if !part.is_empty() {
                        line.push(' ');
                        line.push_str(part);
                    }
                }
                writeln!(self.out, "{line}")?;
            }
            ProgressEvent::Log { digest, data, .. } => {
                let n = self.switch_to(digest)?;
                let buf = self.partial.entry(digest.clone()).or_default();
                buf.extend_from_slice(data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    writeln!(
                        self.out,
                        "#{n} {}",
                        String::from_utf8_lossy(&line[..line.len() - 1])
                    )?;
                }
            }
            ProgressEvent::Warning { digest, message } => {
                let n = self.switch_to(digest)?;
                writeln!(self.out, "#{n} WARN: {message}")?;
            }
        }
        self.out.flush()
    }

    fn flush_partial(&mut self, digest: &str) -> std::io::Result<()> {
        if self.pending_done.as_ref().is_some_and(|(d, _)| d != digest) {
            self.finish()?;
        }
        if let Some(rest) = self.partial.remove(digest)
            && !rest.is_empty()
        {
            let n = self.switch_to(digest)?;
            writeln!(self.out, "#{n} {}", String::from_utf8_lossy(&rest))?;
        }
        Ok(())
    }
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

    /// The daemon completes a step, then sends the step's last status: buildx prints the
    /// status (with its size and time) before `DONE`, and kbx holds `DONE` back to do the same.
    #[test]
    fn done_follows_the_steps_last_statuses() {
        let mut t = ProgressTracker::new();
        let mut r = PlainRenderer::new(Vec::new());
        let msgs = vec![
            StatusResponse {
                vertexes: vec![Vertex {
                    started: ts(10, 0),
                    ..vertex("sha256:c", "[internal] load build context")
                }],
                ..StatusResponse::default()
            },
            StatusResponse {
                vertexes: vec![Vertex {
                    started: ts(10, 0),
                    completed: ts(14, 0),
                    ..vertex("sha256:c", "[internal] load build context")
                }],
                ..StatusResponse::default()
            },
            StatusResponse {
                statuses: vec![VertexStatus {
                    id: "transferring context:".into(),
                    vertex: "sha256:c".into(),
                    current: 213_870_000,
                    started: ts(10, 0),
                    completed: ts(14, 0),
                    ..VertexStatus::default()
                }],
                ..StatusResponse::default()
            },
            StatusResponse {
                vertexes: vec![Vertex {
                    started: ts(14, 0),
                    completed: ts(14, 0),
                    ..vertex("sha256:d", "[1/1] COPY . /")
                }],
                ..StatusResponse::default()
            },
        ];
        for m in &msgs {
            for e in t.update(m) {
                r.render(&e).expect("render");
            }
        }
        let text = String::from_utf8(r.into_inner()).expect("utf8");
        assert_eq!(
            text,
            "#1 [internal] load build context\n#1 transferring context: 213.87MB 4.0s done\n\
             #1 DONE 4.0s\n\n#2 [1/1] COPY . /\n#2 DONE 0.0s\n"
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
        let mut r = PlainRenderer::new(Vec::new());
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
            for e in t.update(m) {
                r.render(&e).expect("render");
                all.push(e);
            }
        }
        assert_eq!(
            all.iter()
                .filter(|e| matches!(e, ProgressEvent::Started { .. }))
                .count(),
            1
        );
        let text = String::from_utf8(r.into_inner()).expect("utf8");
        assert_eq!(
            text,
            "#1 [1/2] FROM scratch\n\n#2 [internal] load .dockerignore\n#2 CACHED\n\n\
             #1 [1/2] FROM scratch\n#1 transferring context: 42B done\n#1 hello\n#1 world\n\
             #1 ERROR: exit code: 1\n"
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

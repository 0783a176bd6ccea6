//! Build progress: the daemon's `Status` stream merged by vertex digest into typed events, and a
//! plain-text renderer in the style of `buildx --progress plain`.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

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
            events.push(ProgressEvent::Status {
                digest: s.vertex.clone(),
                id: s.id.clone(),
                current: s.current,
                total: s.total,
                done,
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
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
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
                writeln!(self.out, "#{n} DONE {secs:.1}s")?;
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
            } => {
                let n = self.switch_to(digest)?;
                let amount = if *total > 0 {
                    format!("{current} / {total}")
                } else if *current > 0 {
                    current.to_string()
                } else {
                    String::new()
                };
                let done = if *done { " done" } else { "" };
                let line = format!("#{n} {id} {amount}{done}");
                writeln!(self.out, "{}", line.trim_end())?;
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
        if let Some(rest) = self.partial.remove(digest)
            && !rest.is_empty()
        {
            let n = self.switch_to(digest)?;
            writeln!(self.out, "#{n} {}", String::from_utf8_lossy(&rest))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::moby::buildkit::v1::{Vertex, VertexLog, VertexStatus};

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
             #1 [1/2] FROM scratch\n#1 transferring context: 42 done\n#1 hello\n#1 world\n\
             #1 ERROR: exit code: 1\n"
        );
        let (name, lines) = t.failed_step().expect("failed");
        assert_eq!(name, "[1/2] FROM scratch");
        assert_eq!(lines, ["hello", "world"]);
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

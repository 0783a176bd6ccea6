//! A recorded build and helpers shared by the progress tests.

use std::time::{Duration, SystemTime};

use kbx_buildkit::SolveStatus;
use kbx_buildkit::progress::{Vertex, VertexLog, VertexStatus};

use super::tty::Line;

pub(crate) fn at(secs: u64, millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
}

pub(crate) fn vertex(d: &str, name: &str) -> Vertex {
    Vertex {
        digest: d.into(),
        name: name.into(),
        ..Vertex::default()
    }
}

/// A recorded build: context load, a cached base, a RUN with output that succeeds, and a
/// last step that is known but not started yet.
pub(crate) fn recording() -> Vec<SolveStatus> {
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

pub(crate) fn texts(lines: &[Line]) -> Vec<String> {
    lines.iter().map(|l| l.text.trim_end().to_owned()).collect()
}

//! `--progress rawjson`: each [`SolveStatus`] as one line of JSON, as buildx writes
//! BuildKit's `client.SolveStatus`.

use std::io::{self, Write};
use std::time::SystemTime;

use base64::Engine as _;
use kbx_buildkit::SolveStatus;
use kbx_buildkit::progress::{Vertex, VertexLog, VertexStatus, VertexWarning};
use serde::Serialize;

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

pub(super) fn b64(data: &[u8]) -> String {
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
    // jiff covers years -9999 to 9999; a daemon's clock outside them is shown as the epoch.
    jiff::Timestamp::try_from(t)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%S%.fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kbx_buildkit::progress::{ProgressGroup, Range, SourceInfo};

    use super::*;
    use crate::progress::fixtures::{recording, vertex};

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
}

//! Work kbx does itself shown as build steps: booting a builder (`[internal] booting
//! buildkit`), pushing through the Docker Engine.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use kbx_buildkit::progress::{Vertex, VertexLog, VertexStatus};
use kbx_buildkit::{ProgressEvent, SolveStatus};

use super::{Mode, Printer};

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
                elapsed: None,
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
                offset: SystemTime::now().duration_since(self.started).ok(),
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
                    elapsed: now.duration_since(started).ok(),
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

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use kbx_buildkit::SolveStatus;
    use kbx_buildkit::progress::{Vertex, VertexStatus};

    use super::*;
    use crate::progress::fixtures::{at, texts};
    use crate::progress::json::b64;
    use crate::progress::tty::TtyModel;

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
        let steps = Steps::with_printer(Printer::with_sink(Mode::Plain, "", Box::new(out.clone())));
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
        // The log line (with its time since the step started) and the item come in the order
        // of their prints: one print puts statuses before logs, as buildx.
        let log = lines[1..3]
            .iter()
            .find(|l| l.ends_with(" Deployment kube0 created"))
            .unwrap_or_else(|| panic!("{text}"));
        let offset = log["#1 ".len()..].split(' ').next().unwrap_or_default();
        assert!(offset.len() == 5 && offset.parse::<f64>().is_ok(), "{text}");
        // The item's time shows when it took over 10 ms, as buildx.
        assert!(
            lines[1..3].iter().any(|l| l
                .starts_with("#1 waiting for 1 pods to be ready, timeout: 2m0s")
                && l.ends_with(" done")),
            "{text}"
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
        let steps =
            Steps::with_printer(Printer::with_sink(Mode::RawJson, "", Box::new(out.clone())));
        let boot = steps.start("[internal] booting buildkit");
        boot.begin("waiting for 1 pods to be ready, timeout: 2m0s");
        boot.done(None);
        steps.finish();
        // Replay what was printed into the tty model: the same statuses, read back.
        let t0 = Instant::now();
        let mut m = TtyModel::new("");
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
        let steps =
            Steps::with_printer(Printer::with_sink(Mode::RawJson, "", Box::new(out.clone())));
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
}

//! `--progress tty`: the redrawn block of steps with timers, sub-progress rows and the last log
//! lines of running steps, drawn with `indicatif`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use kbx_buildkit::SolveStatus;

/// Log lines of a running step shown under it (buildkit's default `BUILDKIT_TTY_LOG_LINES`).
const LOG_LINES: usize = 6;
/// At most this many redraws a second for updates (buildkit: one per 100 ms).
pub(super) const REFRESH_HZ: u8 = 10;
/// Redraws for the timers when nothing happens (buildkit: every 150 ms).
const TICK: Duration = Duration::from_millis(150);

/// Colours unless `NO_COLOR` is set (buildkit honours it too).
pub(super) fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

// ---------------------------------------------------------------------------------------------

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
    use kbx_buildkit::progress::Vertex;

    use super::*;
    use crate::progress::fixtures::{at, recording, texts, vertex};

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
}

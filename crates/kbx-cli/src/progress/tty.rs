//! `--progress tty`: the redrawn block of steps with timers, sub-progress rows and the last log
//! lines of running steps, drawn with `indicatif`.

use std::collections::{BTreeMap, HashMap, VecDeque};
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
}

#[derive(Debug, Default)]
struct VertexRow {
    name: String,
    cached: bool,
    error: String,
    /// Each run of the vertex by its start time (buildkit keeps them as intervals).
    intervals: BTreeMap<SystemTime, Option<SystemTime>>,
    /// Every sub-progress item seen.
    statuses: Vec<StatusRow>,
    /// Indices into `statuses` in the order the items started: the rows shown.
    status_order: Vec<usize>,
    /// Short texts of the warnings about this step.
    warnings: Vec<String>,
    logs: VecDeque<String>,
    partial: Vec<u8>,
    /// Log bytes received and frames that showed log lines: which running steps get room for
    /// their lines (buildkit's `termBytes + termCount*50`).
    log_bytes: usize,
    log_frames: usize,
}

impl VertexRow {
    fn started(&self) -> bool {
        !self.intervals.is_empty()
    }

    /// Whether the last run has ended (buildkit's `isCompleted`).
    fn done(&self) -> bool {
        merge(&self.intervals)
            .last()
            .is_some_and(|(_, stop)| stop.is_some())
    }

    fn push_log(&mut self, data: &[u8]) {
        self.log_bytes += data.len();
        self.partial.extend_from_slice(data);
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.logs.push_back(screen_text(&line[..line.len() - 1]));
            if self.logs.len() > LOG_LINES {
                self.logs.pop_front();
            }
        }
    }

    /// The last `max` log lines, the unfinished one included and blank ones left out
    /// (buildkit shows the non-blank rows of a small terminal).
    fn tail(&self, max: usize) -> Vec<String> {
        let mut lines: Vec<String> = self.logs.iter().cloned().collect();
        if !self.partial.is_empty() {
            lines.push(screen_text(&self.partial));
        }
        let skip = lines.len().saturating_sub(max);
        lines
            .split_off(skip)
            .into_iter()
            .filter(|l| !l.trim_matches(' ').is_empty())
            .collect()
    }
}

type Interval = (SystemTime, Option<SystemTime>);

/// Overlapping intervals merged, as buildkit's `mergeIntervals`: in start order, an open one
/// swallows every later one.
fn merge(intervals: &BTreeMap<SystemTime, Option<SystemTime>>) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::new();
    let mut iter = intervals.iter().map(|(a, b)| (*a, *b));
    let Some(mut cur) = iter.next() else {
        return out;
    };
    for next in iter {
        let Some(stop) = cur.1 else {
            out.push(cur);
            return out;
        };
        if stop < next.0 {
            out.push(cur);
            cur = next;
            continue;
        }
        match next.1 {
            None => {
                out.push((cur.0, None));
                return out;
            }
            Some(next_stop) if stop >= next_stop => {}
            Some(next_stop) => cur = (cur.0, Some(next_stop)),
        }
    }
    out.push(cur);
    out
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

/// One row of buildkit's job list before it is laid out: a step, one of its sub-progress
/// items or one of its warnings.
struct Job<'a> {
    name: String,
    status: String,
    intervals: Vec<Interval>,
    completed: bool,
    /// The colour once completed.
    tone: Tone,
    /// The step whose log lines may follow the row.
    vertex: Option<&'a str>,
    show_log: bool,
}

/// The state behind the tty view, as buildkit's `progressui` keeps it: every vertex seen (the
/// header counts them), shown in the order they started, each with its sub-progress items in
/// the order they started, its warnings and its last log lines. Pure: times come in as
/// arguments, so frames can be tested.
#[derive(Debug)]
pub(crate) struct TtyModel {
    /// Right-aligned in the header, as buildx's `DRIVER:BUILDER` (empty: none).
    desc: String,
    /// The daemon's time of the first vertex that started and when kbx saw it: the daemon's
    /// times are shown shifted by this offset (buildkit's `localTimeDiff`).
    anchor: Option<(SystemTime, Instant)>,
    /// The first start time the daemon reported: the header timer's zero.
    first_started: Option<SystemTime>,
    end: Option<Instant>,
    order: Vec<String>,
    vertices: HashMap<String, VertexRow>,
}

impl TtyModel {
    /// An empty view whose header names `desc` on the right (buildx: `DRIVER:BUILDER`; empty:
    /// nothing).
    pub(crate) fn new(desc: &str) -> Self {
        TtyModel {
            desc: desc.to_owned(),
            anchor: None,
            first_started: None,
            end: None,
            order: Vec::new(),
            vertices: HashMap::new(),
        }
    }

    /// Applies one daemon message received at `now`.
    pub(crate) fn update(&mut self, status: &SolveStatus, now: Instant) {
        for v in &status.vertexes {
            if self.first_started.is_none() {
                self.first_started = v.started;
            }
            let row = self.vertices.entry(v.digest.clone()).or_default();
            let was_started = row.started();
            if let Some(started) = v.started
                && !was_started
            {
                self.anchor.get_or_insert((started, now));
                self.order.push(v.digest.clone());
            }
            // A repeated announcement of a running step changes nothing.
            if !(was_started && v.started.is_none()) {
                if !v.name.is_empty() {
                    row.name.clone_from(&v.name);
                }
                row.cached = v.cached;
                row.error.clone_from(&v.error);
            }
            if let Some(started) = v.started {
                row.intervals.insert(started, v.completed);
            }
        }
        for s in &status.statuses {
            let Some(row) = self.vertices.get_mut(&s.vertex) else {
                continue;
            };
            let i = match row.statuses.iter().position(|i| i.id == s.id) {
                Some(i) => i,
                None => {
                    row.statuses.push(StatusRow {
                        id: s.id.clone(),
                        current: 0,
                        total: 0,
                        started: None,
                        completed: None,
                    });
                    row.statuses.len() - 1
                }
            };
            let item = &mut row.statuses[i];
            if s.started.is_some() && item.started.is_none() {
                row.status_order.push(i);
            }
            item.current = s.current;
            item.total = s.total;
            item.started = s.started;
            item.completed = s.completed;
        }
        for w in &status.warnings {
            if let Some(row) = self.vertices.get_mut(&w.vertex) {
                row.warnings
                    .push(String::from_utf8_lossy(&w.short).into_owned());
            }
        }
        for l in &status.logs {
            if let Some(row) = self.vertices.get_mut(&l.vertex) {
                row.push_log(&l.data);
            }
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

    /// Seconds from the daemon's time `t` to `now`, through the offset measured at the first
    /// start.
    fn since(&self, t: SystemTime, now: Instant) -> f64 {
        let Some((anchor_daemon, anchor_local)) = self.anchor else {
            return 0.0;
        };
        let local = now.saturating_duration_since(anchor_local).as_secs_f64();
        let daemon = match anchor_daemon.duration_since(t) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        };
        local + daemon
    }

    fn seconds(&self, intervals: &[Interval], now: Instant) -> f64 {
        intervals
            .iter()
            .map(|(start, stop)| match stop {
                Some(stop) => stop.duration_since(*start).map_or(0.0, |d| d.as_secs_f64()),
                None => self.since(*start, now),
            })
            .sum()
    }

    fn jobs(&self) -> Vec<Job<'_>> {
        let mut jobs = Vec::new();
        for digest in &self.order {
            let Some(v) = self.vertices.get(digest) else {
                continue;
            };
            let mut name = v.name.replace('\t', " ");
            let mut tone = Tone::Done;
            if !v.error.is_empty() {
                if v.error.ends_with("context canceled") {
                    name = format!("CANCELED {name}");
                    tone = Tone::Canceled;
                } else {
                    name = format!("ERROR {name}");
                    tone = Tone::Error;
                }
            }
            if v.cached {
                name = format!("CACHED {name}");
            }
            let merged = merge(&v.intervals);
            jobs.push(Job {
                name,
                status: String::new(),
                completed: v.intervals.values().all(Option::is_some),
                intervals: merged.clone(),
                tone,
                vertex: Some(digest),
                show_log: false,
            });
            for &i in &v.status_order {
                let s = &v.statuses[i];
                let status = if s.total != 0 {
                    format!("{} / {}", bytes(s.current), bytes(s.total))
                } else if s.current != 0 {
                    bytes(s.current)
                } else {
                    String::new()
                };
                jobs.push(Job {
                    name: format!("=> {}", s.id),
                    status,
                    intervals: s.started.map(|a| (a, s.completed)).into_iter().collect(),
                    completed: s.completed.is_some(),
                    tone: Tone::Done,
                    vertex: None,
                    show_log: false,
                });
            }
            for w in &v.warnings {
                jobs.push(Job {
                    name: format!("WARN: {w}"),
                    status: String::new(),
                    intervals: merged.last().copied().into_iter().collect(),
                    completed: false,
                    tone: Tone::Canceled,
                    vertex: None,
                    show_log: false,
                });
            }
        }
        jobs
    }

    /// The view at `now` for a terminal of `width` columns and `height` rows (`None`: no
    /// limit), laid out as buildkit's tty display: running steps with log output get up to six
    /// of their last lines while the terminal has room, and rows that do not fit are dropped
    /// from the top, running ones kept. The final frame (after [`TtyModel::finish`]) has every
    /// row.
    pub(crate) fn frame(&mut self, now: Instant, width: usize, height: Option<usize>) -> Vec<Line> {
        let all = self.end.is_some();
        let now = self.end.unwrap_or(now);
        let (done, total) = self.counts();
        let header_secs = self
            .first_started
            .map_or(0.0, |t| self.since(t, now).max(0.0));
        let finished = if all && done > 0 && done == total {
            "FINISHED"
        } else {
            ""
        };
        let header = format!("[+] Building {header_secs:.1}s ({done}/{total}) {finished}");
        let header = if self.desc.is_empty() {
            align(&header, "", width)
        } else {
            align(&header, &self.desc, width.saturating_sub(1))
        };
        let mut out = vec![Line {
            text: truncate(header.trim_end(), width.saturating_sub(1)),
            tone: Tone::Normal,
        }];

        let height = height.unwrap_or(usize::MAX / 4);
        let mut jobs = self.jobs();
        // Room for log lines (buildkit's `setupTerminals`): the steps that printed the most,
        // and were shown the longest, first.
        let in_use = jobs.iter().filter(|j| !j.completed).count();
        let log_height = LOG_LINES.min(height.saturating_sub(4)).max(3);
        let mut candidates: Vec<usize> = (0..jobs.len())
            .filter(|&i| {
                !jobs[i].completed
                    && jobs[i]
                        .vertex
                        .is_some_and(|d| self.vertices.get(d).is_some_and(|v| v.log_bytes > 0))
            })
            .collect();
        let weight = |j: &Job<'_>| {
            j.vertex
                .and_then(|d| self.vertices.get(d))
                .map_or(0, |v| v.log_bytes + v.log_frames * 50)
        };
        candidates.sort_by_key(|&i| std::cmp::Reverse(weight(&jobs[i])));
        let mut free = height as isize - 2 - in_use as isize;
        let mut hidden = 0;
        for i in candidates {
            if free <= (log_height + 3) as isize {
                break;
            }
            jobs[i].show_log = true;
            hidden += jobs[i]
                .vertex
                .and_then(|d| self.vertices.get(d))
                .map_or(0, |v| v.tail(log_height).len());
            free -= (log_height + 3) as isize;
        }
        if !all {
            jobs = wrap_height(jobs, height as isize - 2 - hidden as isize);
        }

        let mut shown_logs = Vec::new();
        for j in &jobs {
            if j.intervals.is_empty() {
                continue;
            }
            let mut secs = self.seconds(&j.intervals, now);
            if secs < 0.05 {
                secs = 0.0;
            }
            let timer = format!(" {secs:3.1}s");
            // Go counts the newline of `timer` too.
            let mut left = width as isize - 4 - (timer.len() as isize + 1) - 1;
            let mut show_status = false;
            if !j.status.is_empty() && left + j.status.len() as isize > 20 {
                show_status = true;
                left -= j.status.len() as isize + 1;
            }
            if left < 12 {
                continue;
            }
            let mut row = format!(" => {}", truncate(&j.name, left as usize));
            if show_status {
                row.push(' ');
                row.push_str(&j.status);
            }
            out.push(Line {
                text: align(&row, &timer, width.saturating_sub(1)),
                tone: if j.completed { j.tone } else { Tone::Normal },
            });
            if j.show_log
                && let Some(v) = j.vertex.and_then(|d| self.vertices.get(d))
            {
                for l in v.tail(log_height) {
                    out.push(Line {
                        text: format!(" => => # {}", truncate(&l, width.saturating_sub(10))),
                        tone: Tone::Log,
                    });
                }
                shown_logs.extend(j.vertex.map(str::to_owned));
            }
        }
        for d in shown_logs {
            if let Some(v) = self.vertices.get_mut(&d) {
                v.log_frames += 1;
            }
        }
        out
    }
}

/// Go's `fmt.Sprintf("%-*s %s", l, w-len(r)-1, r)`: `l` padded so that `r` ends at column
/// `w` (or just after `l` when it is too long).
fn align(l: &str, r: &str, w: usize) -> String {
    let pad = w.saturating_sub(r.chars().count() + 1);
    format!("{l:<pad$} {r}")
}

/// buildkit's `wrapHeight`: the last `limit` rows, with running steps cut from the top put
/// back in place of finished ones.
fn wrap_height(jobs: Vec<Job<'_>>, limit: isize) -> Vec<Job<'_>> {
    let Ok(limit) = usize::try_from(limit) else {
        return Vec::new();
    };
    if jobs.len() <= limit {
        return jobs;
    }
    let mut jobs = jobs;
    let wrapped = jobs.split_off(jobs.len() - limit);
    let invisible: Vec<Job<'_>> = jobs.into_iter().filter(|j| !j.completed).collect();
    if invisible.is_empty() {
        return wrapped;
    }
    let mut l = invisible.len() as isize;
    let before = wrapped.len();
    let mut rewrapped = Vec::with_capacity(before);
    for j in wrapped {
        if !j.completed || l <= 0 {
            rewrapped.push(j);
        }
        l -= 1;
    }
    let free = before - rewrapped.len();
    let mut out: Vec<Job<'_>> = invisible.into_iter().rev().take(free).collect();
    out.reverse();
    out.extend(rewrapped);
    out
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
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
    /// A printer drawing on `target` with `desc` on the right of the header; `size` gives
    /// (columns, rows) of the terminal; `tick` redraws the timers every 150 ms when nothing
    /// happens.
    pub(crate) fn new(
        target: ProgressDrawTarget,
        desc: &str,
        size: SizeFn,
        color: bool,
        tick: bool,
    ) -> Self {
        let model = Arc::new(Mutex::new(TtyModel::new(desc)));
        let frame = {
            let model = model.clone();
            let size = size.clone();
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let (cols, rows) = size().unwrap_or((80, 24));
                let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
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
        let mut m = TtyModel::new("");
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
                // Started 0.4s after the first step, which kbx saw at 0.0s; now is 2.5s.
                " => [2/3] RUN make                                     2.1s",
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
    fn tty_frame_shows_log_lines_only_with_room_and_keeps_running_steps() {
        let t0 = Instant::now();
        let mut m = TtyModel::new("");
        for s in recording() {
            m.update(&s, t0);
        }
        // 20 rows: 17 free after the header, the running step and its margin, more than the
        // 6 + 3 a step's log lines need.
        let t = texts(&m.frame(t0, 60, Some(20)));
        assert_eq!(t.len(), 1 + 4 + 6, "{t:?}");
        assert_eq!(t[5], " => => # line 3");
        // 9 rows: no room for log lines (buildkit's `setupTerminals`).
        let t = texts(&m.frame(t0, 60, Some(9)));
        assert_eq!(t.len(), 5, "{t:?}");
        // 4 rows: the last two rows only (buildkit's `wrapHeight`).
        let t = texts(&m.frame(t0, 60, Some(4)));
        assert_eq!(t[0], "[+] Building 0.0s (2/4)");
        assert!(t[1].starts_with(" => CACHED [1/3] FROM"), "{t:?}");
        assert!(t[2].starts_with(" => [2/3] RUN make"), "{t:?}");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn tty_wrap_height_puts_running_steps_back_in_place_of_finished_ones() {
        let job = |name: &str, completed: bool| Job {
            name: name.to_owned(),
            status: String::new(),
            intervals: Vec::new(),
            completed,
            tone: Tone::Done,
            vertex: None,
            show_log: false,
        };
        let jobs = vec![
            job("a", false),
            job("b", true),
            job("c", true),
            job("d", true),
            job("e", false),
        ];
        let names = |j: Vec<Job<'_>>| j.into_iter().map(|j| j.name).collect::<Vec<_>>();
        assert_eq!(names(wrap_height(jobs, 3)), ["a", "d", "e"]);
        assert!(wrap_height(vec![job("a", true)], -1).is_empty());
    }

    #[test]
    fn tty_header_names_the_builder_on_the_right() {
        let t0 = Instant::now();
        let mut m = TtyModel::new("remote:tt");
        m.update(&recording()[0], t0);
        let t = texts(&m.frame(t0, 40, None));
        assert_eq!(t[0], "[+] Building 0.0s (0/4)       remote:tt");
        assert_eq!(t[0].len(), 39);
    }

    #[test]
    fn tty_final_frame_has_finished_error_and_cancel_marks() {
        let t0 = Instant::now();
        let mut m = TtyModel::new("");
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
                // The name is cut two columns before the timer, as buildkit does.
                " => CACHED [1/3] FROM docker.io/library/alp  0.0s",
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
        let mut m = TtyModel::new("");
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
        let mut p = TtyPrinter::new(target, "", Arc::new(|| Some((60, 20))), false, false);
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

//! Progress of long commands: bars on a terminal, JSON lines on stderr for front ends
//! (`--json-progress`), or nothing.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kura_client::progress::Progress;
use serde_json::json;

use crate::output::Shown;

/// How often a JSON status line is written at most.
const STATUS_EVERY: Duration = Duration::from_millis(500);

/// JSON status lines: `{"type":"status",...}` at most every half second, then one `done`.
struct Lines {
    verb: &'static str,
    unit: &'static str,
    started: Instant,
    last: Mutex<Option<Instant>>,
}

impl Lines {
    fn new(verb: &'static str, unit: &'static str) -> Lines {
        Lines {
            verb,
            unit,
            started: Instant::now(),
            last: Mutex::new(None),
        }
    }

    /// Writes a line if the last was long enough ago (or `last` says this is the end).
    fn write(&self, done: (u64, u64), total: (u64, u64), end: bool) {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if !end && last.is_some_and(|t| t.elapsed() < STATUS_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let percent = match (total.1, total.0) {
            (0, 0) => None,
            (0, items) => Some(done.0 as f64 * 100.0 / items as f64),
            (bytes, _) => Some(done.1 as f64 * 100.0 / bytes as f64),
        };
        let line = json!({
            "type": if end { "done" } else { "status" }, "verb": self.verb, "unit": self.unit,
            "done": done.0, "total": total.0, "bytes_done": done.1, "bytes_total": total.1,
            "percent": percent.map(|p| (p * 10.0).round() / 10.0),
            "elapsed_secs": (self.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        });
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

/// A byte-based progress bar with an item count, rate and ETA; or JSON lines; or nothing.
pub struct Bar {
    bar: Option<ProgressBar>,
    lines: Option<Lines>,
    /// What is counted: `files`, `packs`.
    unit: &'static str,
    done: AtomicU64,
    total: AtomicU64,
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
}

/// A bar counting things (objects checked, users settled); or JSON lines; or nothing.
pub struct Counter {
    bar: Option<ProgressBar>,
    lines: Option<Lines>,
    last: AtomicU64,
}

/// A bar on stderr, if `shown` asks for one and stderr is a terminal.
fn terminal_bar(shown: Shown, template: &str, verb: &'static str) -> Option<ProgressBar> {
    (shown == Shown::Bar && std::io::stderr().is_terminal()).then(|| {
        let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
        b.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_prefix(verb);
        b.enable_steady_tick(Duration::from_millis(250));
        b
    })
}

impl Counter {
    /// Progress labelled `verb`, counting `label` ("objects"), shown as `shown` says.
    pub fn new(verb: &'static str, label: &'static str, shown: Shown) -> Counter {
        let template = format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {label} {{per_sec}} ETA {{eta}}"
        );
        Counter {
            bar: terminal_bar(shown, &template, verb),
            lines: (shown == Shown::JsonLines).then(|| Lines::new(verb, label)),
            last: AtomicU64::new(0),
        }
    }

    /// `done` of `total` so far.
    pub fn update(&self, done: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_position(done);
        }
        self.last.store(total, Ordering::Relaxed);
        if let Some(l) = &self.lines {
            l.write((done, 0), (total, 0), false);
        }
    }

    /// Removes the bar from the screen, or writes the last JSON line.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(l) = &self.lines {
            let total = self.last.load(Ordering::Relaxed);
            l.write((total, 0), (total, 0), true);
        }
    }
}

impl Bar {
    /// Progress labelled `verb` ("backup", "restore") counting `unit` ("files"), shown as
    /// `shown` says.
    pub fn new(verb: &'static str, unit: &'static str, shown: Shown) -> Bar {
        Bar {
            bar: terminal_bar(
                shown,
                "{prefix} {msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                verb,
            ),
            lines: (shown == Shown::JsonLines).then(|| Lines::new(verb, unit)),
            unit,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
        }
    }

    fn status(&self, end: bool) {
        if let Some(l) = &self.lines {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            l.write(
                (load(&self.done), load(&self.bytes_done)),
                (load(&self.total), load(&self.bytes_total)),
                end,
            );
        }
    }

    /// Removes the bar from the screen, or writes the last JSON line.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.status(true);
    }
}

impl Progress for Bar {
    fn start(&self, items: u64, bytes: u64) {
        self.total.store(items, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.done.store(0, Ordering::Relaxed);
        self.bytes_done.store(0, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_position(0);
            b.set_length(bytes);
            b.set_message(format!("0/{items} {}", self.unit));
        }
        self.status(false);
    }

    fn bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        self.status(false);
    }

    fn item(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed);
        if let Some(b) = &self.bar
            && (done.is_multiple_of(64) || done == total)
        {
            b.set_message(format!("{done}/{total} {}", self.unit));
        }
        self.status(false);
    }

    fn warn(&self, message: &str) {
        match &self.bar {
            Some(b) => b.println(format!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}

impl kura_repo::check::CheckProgress for Bar {
    fn start(&self, packs: u64, bytes: u64) {
        Progress::start(self, packs, bytes);
    }

    fn pack(&self, bytes: u64) {
        self.bytes(bytes);
        self.item();
    }
}

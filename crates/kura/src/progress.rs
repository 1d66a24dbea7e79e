//! Progress bars on a terminal; nothing when stderr is not a terminal or output is JSON.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kura_client::progress::Progress;

/// A byte-based progress bar with a file count, rate and ETA, or nothing.
pub struct Bar {
    bar: Option<ProgressBar>,
    /// What is counted: `files`, `packs`.
    unit: &'static str,
    done: AtomicU64,
    total: AtomicU64,
}

/// A bar counting things (objects checked, users settled), or nothing when stderr is not
/// a terminal or output is JSON.
pub struct Counter(Option<ProgressBar>);

impl Counter {
    /// A bar labelled `verb`, counting `label` ("objects"), when `show`.
    pub fn new(verb: &'static str, label: &'static str, show: bool) -> Counter {
        Counter((show && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {label} {{per_sec}} ETA {{eta}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_prefix(verb);
            b.enable_steady_tick(Duration::from_millis(250));
            b
        }))
    }

    /// `done` of `total` so far.
    pub fn update(&self, done: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(done);
        }
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl Bar {
    /// A bar labelled `verb` ("backup", "restore") counting `unit` ("files"), when `show`
    /// and stderr is a terminal.
    pub fn new(verb: &'static str, unit: &'static str, show: bool) -> Bar {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(8));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} {msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_prefix(verb);
            b.enable_steady_tick(Duration::from_millis(250));
            b
        });
        Bar {
            bar,
            unit,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// Removes the bar from the screen.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn start(&self, items: u64, bytes: u64) {
        self.total.store(items, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(bytes);
            b.set_message(format!("0/{items} {}", self.unit));
        }
    }

    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    fn item(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed);
        if let Some(b) = &self.bar
            && (done.is_multiple_of(64) || done == total)
        {
            b.set_message(format!("{done}/{total} {}", self.unit));
        }
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

//! One way to print a command's result: JSON on stdout for scripts (`--json`), text for
//! people otherwise, nothing but errors with `--quiet`. A closed stdout (`kura ls | head`)
//! ends the output quietly instead of failing.

use std::io::Write;

use serde::Serialize;

/// How results are printed: the global `--json` and `--quiet`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Output {
    /// Print JSON.
    pub json: bool,
    /// Print nothing but errors.
    pub quiet: bool,
    /// Progress as JSON lines on stderr.
    pub json_progress: bool,
}

/// How a long command shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Not at all.
    Hidden,
    /// A bar, when stderr is a terminal.
    Bar,
    /// JSON lines on stderr (`--json-progress`).
    JsonLines,
}

impl Output {
    /// Prints a result: `value` as JSON with `--json`, else `text()` unless `--quiet`.
    pub fn emit(&self, value: &impl Serialize, text: impl FnOnce() -> String) {
        if self.json {
            let json = serde_json::to_string_pretty(value).unwrap_or_default();
            write_stdout(&json);
        } else if !self.quiet {
            write_stdout(text().trim_end_matches('\n'));
        }
    }

    /// Prints a line for people (never with `--json` or `--quiet`).
    pub fn say(&self, text: impl AsRef<str>) {
        if !self.quiet && !self.json {
            write_stdout(text.as_ref());
        }
    }

    /// Whether progress bars may be drawn.
    pub fn show_progress(&self) -> bool {
        !self.json && !self.quiet
    }

    /// How a long command shows its progress.
    pub fn progress(&self) -> Shown {
        if self.json_progress {
            Shown::JsonLines
        } else if self.show_progress() {
            Shown::Bar
        } else {
            Shown::Hidden
        }
    }
}

/// Writes `text` and a newline to stdout; a reader that went away is not an error.
fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Lines of a table or listing, joined for [`Output::emit`].
pub fn lines(rows: impl IntoIterator<Item = String>) -> String {
    rows.into_iter().collect::<Vec<_>>().join("\n")
}

/// A table for [`Output::emit`]: a header line, then the rows.
pub fn table(header: String, rows: impl IntoIterator<Item = String>) -> String {
    lines(std::iter::once(header).chain(rows))
}

/// A run that finished but with problems: exit code 3.
#[derive(Debug)]
pub struct Partial(pub String);

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Partial {}

pub use kura_core::{count, human_bytes as human};

/// A timestamp in local time, `YYYY-MM-DD HH:MM:SS`.
pub fn local_time(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Sends log lines (`tracing`) to stderr, at `level` unless `KURA_LOG` says otherwise: for
/// the long-running commands (the service, the phone) and the mail terminal's refusals.
pub fn init_logs(level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KURA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

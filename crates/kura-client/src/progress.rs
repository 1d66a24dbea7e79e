//! How long operations report progress; the command line draws it, tests ignore it.

/// Receives progress from a long operation. Called from worker threads.
pub trait Progress: Sync {
    /// The work is known: this many items and bytes.
    fn start(&self, _items: u64, _bytes: u64) {}
    /// More bytes done.
    fn bytes(&self, _n: u64) {}
    /// One more item done.
    fn item(&self) {}
    /// A non-fatal problem (an unreadable file, a damaged blob), already counted.
    fn warn(&self, _message: &str) {}
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {}

//! Kura's device side: the backup pipeline with change detection by backup type, baselines,
//! restore, and the tree walks behind `ls`, `diff`, `find`, `dump` and `stats`.

pub mod backup;
pub mod copy;
pub mod dump;
pub mod find;
pub mod job;
pub mod pattern;
pub mod progress;
pub mod restore;
pub mod schedule;
pub mod state;
pub mod stats;
mod sys;
pub mod walk;
pub mod xattr;

use kura_repo::RepoError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The user asked for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// The backup was stopped (a signal or a cancellation) before its snapshot was committed.
    #[error("stopped before the snapshot was committed")]
    Stopped,
    /// Not enough free space (bytes or inodes) at the restore target.
    #[error(
        "not enough free space at {target}: the restore needs {}, {} available",
        amount(*needed, unit),
        amount(*available, unit)
    )]
    NoSpace {
        /// Where.
        target: String,
        /// How much is needed.
        needed: u64,
        /// How much is available.
        available: u64,
        /// `bytes` or `inodes`.
        unit: &'static str,
    },
}

/// `n` of `unit` (`bytes` or `inodes`) for people.
fn amount(n: u64, unit: &str) -> String {
    match unit {
        "bytes" => kura_core::human_bytes(n),
        _ => format!("{n} {unit}"),
    }
}

/// Shorthand for client results.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

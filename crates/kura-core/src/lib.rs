//! Kura's pure core: everything about the repository format that needs no I/O.
//!
//! - [`id`]: content ids, plain for stored files and keyed for blobs.
//! - [`crypto`]: authenticated encryption of blobs and files.
//! - [`keys`]: the key hierarchy (common key, device keys, passphrase and recovery code).
//! - [`chunker`]: content-defined chunking (FastCDC with a per-repository gear seed).
//! - [`compress`]: zstd with a bound on what a decoder will produce.
//! - [`pack`], [`index`], [`sealed`]: the binary formats of stored objects.
//! - [`tree`], [`snapshot`]: the metadata formats.
//! - [`notice`]: the notices of a user's message history.
//! - [`policy`]: which snapshots a retention policy keeps.
//! - [`conditions`]: the storage conditions the service reports of each stored object.
//! - [`job`]: backup jobs, which are also the entries of the backup log.
//! - [`schedule`]: when scheduled backups run (times, intervals, cron expressions).
//!
//! `docs/FORMAT.md` describes every byte these modules read and write.

pub mod chunker;
pub mod compress;
pub mod conditions;
pub mod crypto;
pub mod damage;
pub mod id;
pub mod index;
pub mod job;
pub mod keys;
pub mod notice;
pub mod pack;
pub mod policy;
pub mod schedule;
pub mod sealed;
pub mod snapshot;
pub mod tree;

pub use id::Id;

/// The repository format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Why a stored object could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// The object is shorter than its format requires, or a length field points past its end.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A magic number or version field does not match.
    #[error("not a {0} (bad magic or version)")]
    BadMagic(&'static str),
    /// Authentication failed: wrong key, or the bytes were changed.
    #[error("{0} failed authentication (damaged, tampered with, or wrong key)")]
    Authentication(&'static str),
    /// The object decoded but its contents are not valid.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// Which object.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

impl FormatError {
    /// An [`FormatError::Invalid`] with a reason.
    pub fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        FormatError::Invalid {
            what,
            why: why.into(),
        }
    }
}

/// A little-endian reader over a byte slice that turns every overrun into [`FormatError::Truncated`].
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.data.len() < n {
            return Err(FormatError::Truncated(self.what));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FormatError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn id(&mut self) -> Result<Id, FormatError> {
        let mut id = [0u8; 32];
        id.copy_from_slice(self.take(32)?);
        Ok(Id(id))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// A byte count for people: `512 B`, `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `n` things, in the singular for one: `1 file`, `2 files`, `0 files`.
pub fn count(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

#[cfg(test)]
mod people {
    use super::*;

    #[test]
    fn sizes_and_counts_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
        assert_eq!(count(1, "snapshot"), "1 snapshot");
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(2, "dir"), "2 dirs");
    }
}

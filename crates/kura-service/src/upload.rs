//! Resumable uploads (`docs/requirements/terminal-backup.md` requirement 8): a large object arrives
//! in pieces, each with its own SHA-256, appended to a partial file in the user's area. A piece
//! whose checksum does not match is refused with a resend request; a piece at the wrong offset is
//! refused with the offset the service has, so a client that lost its connection (or a service that
//! restarted) carries on from there. Only a commit whose whole-object checksum matches stores the
//! object, so no half object is ever visible.
//!
//! Every accepted piece is on disk (fdatasync) before it is acknowledged.

use kura_api::Upload;
use kura_sites::Source;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};

use crate::spool::{SPILL, Spool};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest object that may be assembled from pieces (the service's body limit for one PUT).
pub const MAX_OBJECT: u64 = kura_api::MAX_BODY as u64;
/// Most unfinished uploads one user may have at once, so partial files cannot fill the disk.
pub const MAX_OPEN: usize = 64;
/// Unfinished uploads untouched for this long are removed.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Why a piece or a commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The piece does not start where the partial file ends.
    #[error("piece at offset {offset}, but the service has {received} bytes")]
    Offset {
        /// Where the piece claimed to start.
        offset: u64,
        /// Where it must start.
        received: u64,
    },
    /// The piece or the whole object does not match its checksum; the client should resend.
    #[error("checksum mismatch")]
    Checksum,
    /// The object would exceed [`MAX_OBJECT`].
    #[error("the object would be larger than {MAX_OBJECT} bytes")]
    TooLarge,
    /// The user has [`MAX_OPEN`] unfinished uploads already.
    #[error("too many unfinished uploads (at most {MAX_OPEN})")]
    TooMany,
    /// Nothing is being uploaded under that name.
    #[error("no such upload")]
    NotFound,
    /// A malformed checksum.
    #[error("malformed checksum {0:?}")]
    BadChecksum(String),
    /// The disk failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A finished upload: its bytes, and which file they came from.
#[derive(Debug)]
pub struct Finished {
    /// The whole object, read from the upload's file as it is stored.
    pub object: Spool,
    /// Names the file, so that only it is dropped.
    pub mark: Mark,
}

/// One file of an upload as it was when finished: a later first piece makes a new file, a
/// later piece makes it longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    dev: u64,
    ino: u64,
    len: u64,
}

impl Mark {
    fn of(m: &fs::Metadata) -> Mark {
        use std::os::unix::fs::MetadataExt;
        Mark {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
        }
    }
}

/// A user's unfinished uploads, in one directory per user.
#[derive(Debug, Clone)]
pub struct Uploads {
    dir: PathBuf,
}

pub use kura_repo::transfer::sha256_hex;

fn check_sum_format(sum: &str) -> Result<(), UploadError> {
    if sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(UploadError::BadChecksum(sum.chars().take(80).collect()))
    }
}

impl Uploads {
    /// The uploads kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Uploads {
        Uploads { dir: dir.into() }
    }

    /// Kind and name must already be validated by the caller (hex names, known kinds).
    fn path(&self, kind: &str, name: &str) -> PathBuf {
        self.dir.join(format!("{kind}.{name}"))
    }

    /// Bytes received so far for an upload.
    pub fn received(&self, kind: &str, name: &str) -> Result<u64, UploadError> {
        match fs::metadata(self.path(kind, name)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(UploadError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// All unfinished uploads.
    pub fn list(&self) -> Result<Vec<Upload>, UploadError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e?;
            let file = e.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') {
                continue;
            }
            if let Some((kind, name)) = file.split_once('.') {
                out.push(Upload {
                    kind: kind.to_string(),
                    name: name.to_string(),
                    received: e.metadata()?.len(),
                });
            }
        }
        out.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        Ok(out)
    }

    /// Appends a piece at `offset` after checking its SHA-256 (`sum`, hex); returns the bytes
    /// received so far. A piece at offset 0 starts the upload over.
    pub fn append(
        &self,
        kind: &str,
        name: &str,
        offset: u64,
        piece: &Spool,
        sum: &str,
    ) -> Result<u64, UploadError> {
        check_sum_format(sum)?;
        let end = offset
            .checked_add(piece.len())
            .filter(|&e| e <= MAX_OBJECT)
            .ok_or(UploadError::TooLarge)?;
        if !piece.sha256().eq_ignore_ascii_case(sum) {
            return Err(UploadError::Checksum);
        }
        let path = self.path(kind, name);
        let file = if offset == 0 {
            self.create(&path)?
        } else {
            match OpenOptions::new().write(true).open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(UploadError::Offset {
                        offset,
                        received: 0,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        // Two requests for the same upload (a client retrying while its first attempt is still
        // being served) take turns; the offset check then refuses the late one.
        file.lock()?;
        // A commit may have taken the file away while this request waited for the lock.
        if !same_file(&file, &path)? {
            return Err(UploadError::Offset {
                offset,
                received: 0,
            });
        }
        let received = file.metadata()?.len();
        if offset == 0 {
            file.set_len(0)?;
        } else if offset != received {
            return Err(UploadError::Offset { offset, received });
        }
        let mut buf = vec![0u8; SPILL.min(piece.len() as usize)];
        let mut done = 0;
        while done < piece.len() {
            let n = buf.len().min((piece.len() - done) as usize);
            piece.read_at(&mut buf[..n], done)?;
            file.write_all_at(&buf[..n], offset + done)?;
            done += n as u64;
        }
        file.sync_data()?;
        Ok(end)
    }

    /// Takes the lock under which uploads are made and dropped, one at a time per user.
    fn lock_dir(&self) -> io::Result<File> {
        let guard = File::create(self.dir.join(".lock"))?;
        guard.lock()?;
        Ok(guard)
    }

    /// Creates the upload at `path` (durably) for a first piece, replacing any earlier one,
    /// within the limit on unfinished uploads.
    fn create(&self, path: &Path) -> Result<File, UploadError> {
        fs::create_dir_all(&self.dir)?;
        // New uploads are counted and made one at a time per user.
        let guard = self.lock_dir()?;
        // A first piece always starts a new file: a commit still storing the old one then
        // drops only what it stored (see `drop_finished`).
        let existed = remove_if_exists(path)?;
        if !existed && self.list()?.len() >= MAX_OPEN {
            self.sweep(STALE_AFTER)?;
            if self.list()?.len() >= MAX_OPEN {
                return Err(UploadError::TooMany);
            }
        }
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        drop(guard);
        File::open(&self.dir)?.sync_all()?;
        Ok(file)
    }

    /// Bytes held in unfinished uploads but `except` (they count against the storage limit).
    pub fn pending_bytes(&self, except: Option<(&str, &str)>) -> Result<u64, UploadError> {
        Ok(self
            .list()?
            .iter()
            .filter(|p| except != Some((p.kind.as_str(), p.name.as_str())))
            .map(|p| p.received)
            .sum())
    }

    /// Checks the whole upload against `sum` and returns it, to be read from its file. The
    /// bytes returned cannot change: later pieces only add to the file. The upload stays until the
    /// caller has stored the object and drops it with [`Uploads::drop_finished`], so a service
    /// killed in between finds it again when the client repeats the commit. A mismatch removes the upload:
    /// its pieces were each right, so the client sent the wrong pieces and must start over.
    pub fn finish(&self, kind: &str, name: &str, sum: &str) -> Result<Finished, UploadError> {
        check_sum_format(sum)?;
        let path = self.path(kind, name);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(UploadError::NotFound),
            Err(e) => return Err(e.into()),
        };
        // Pieces wait while the object is read: what is checked is what is returned.
        file.lock()?;
        if !same_file(&file, &path)? {
            return Err(UploadError::NotFound);
        }
        let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; SPILL];
        let mut len = 0u64;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    sha.update(&buf[..n]);
                    len += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let found = kura_core::id::hex(sha.finish().as_ref());
        if !found.eq_ignore_ascii_case(sum) {
            remove_if_exists(&path)?;
            return Err(UploadError::Checksum);
        }
        let mark = Mark::of(&file.metadata()?);
        file.unlock()?;
        Ok(Finished {
            object: Spool::from_file(file, len, found),
            mark,
        })
    }

    /// Drops a finished upload once its object is stored, unless a new upload of the same
    /// object has begun (or gone on) since: that one is not the caller's to drop.
    pub fn drop_finished(&self, kind: &str, name: &str, mark: Mark) -> Result<(), UploadError> {
        let path = self.path(kind, name);
        let _guard = self.lock_dir()?;
        match fs::metadata(&path) {
            Ok(m) if Mark::of(&m) == mark => {
                remove_if_exists(&path)?;
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Drops an unfinished upload; dropping a missing one is not an error.
    pub fn abort(&self, kind: &str, name: &str) -> Result<(), UploadError> {
        match fs::remove_file(self.path(kind, name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes uploads untouched for longer than `age`; returns how many.
    pub fn sweep(&self, age: Duration) -> Result<usize, UploadError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let mut removed = 0;
        for e in entries.flatten() {
            if e.file_name() == ".lock" {
                continue;
            }
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|el| el > age));
            if stale && remove_if_exists(&e.path())? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Whether `file` is still the file at `path`.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(m) => {
            let f = file.metadata()?;
            Ok(m.ino() == f.ino() && m.dev() == f.dev())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn remove_if_exists(p: &Path) -> io::Result<bool> {
    match fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(bytes: &[u8]) -> Spool {
        Spool::from(bytes.to_vec())
    }

    trait ReadAll {
        fn read_all(&self) -> Vec<u8>;
    }

    impl ReadAll for Spool {
        fn read_all(&self) -> Vec<u8> {
            let mut all = vec![0u8; self.len() as usize];
            self.read_at(&mut all, 0).unwrap();
            all
        }
    }

    fn uploads() -> (tempfile::TempDir, Uploads) {
        let d = tempfile::tempdir().unwrap();
        let u = Uploads::new(d.path().join("uploads"));
        (d, u)
    }

    #[test]
    fn pieces_assemble_and_commit() {
        let (_d, u) = uploads();
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut off = 0;
        for part in data.chunks(1000) {
            off = u
                .append("data", "ab", off, &piece(part), &sha256_hex(part))
                .unwrap();
        }
        assert_eq!(u.received("data", "ab").unwrap(), 3000);
        assert_eq!(
            u.finish("data", "ab", &sha256_hex(&data))
                .unwrap()
                .object
                .read_all(),
            data
        );
    }

    #[test]
    fn bad_piece_is_refused_and_changes_nothing() {
        let (_d, u) = uploads();
        u.append("data", "ab", 0, &piece(b"hello"), &sha256_hex(b"hello"))
            .unwrap();
        let err = u
            .append("data", "ab", 5, &piece(b"world"), &sha256_hex(b"w0rld"))
            .unwrap_err();
        assert!(matches!(err, UploadError::Checksum), "{err}");
        assert_eq!(u.received("data", "ab").unwrap(), 5);
        let err = u
            .append("data", "ab", 3, &piece(b"world"), &sha256_hex(b"world"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                UploadError::Offset {
                    offset: 3,
                    received: 5
                }
            ),
            "{err}"
        );
        assert!(matches!(
            u.append("data", "ab", 0, &piece(b"x"), "nothex")
                .unwrap_err(),
            UploadError::BadChecksum(_)
        ));
        assert_eq!(u.received("data", "ab").unwrap(), 5);
    }

    #[test]
    fn piece_without_a_start_is_refused() {
        let (_d, u) = uploads();
        let err = u
            .append("data", "cd", 10, &piece(b"x"), &sha256_hex(b"x"))
            .unwrap_err();
        assert!(matches!(err, UploadError::Offset { received: 0, .. }));
        assert!(u.list().unwrap().is_empty());
    }

    #[test]
    fn a_finished_upload_stays_until_it_is_dropped() {
        let (_d, u) = uploads();
        u.append("data", "ab", 0, &piece(b"hello"), &sha256_hex(b"hello"))
            .unwrap();
        // A commit repeated after a crash finds the same object.
        assert_eq!(
            u.finish("data", "ab", &sha256_hex(b"hello"))
                .unwrap()
                .object
                .read_all(),
            b"hello"
        );
        assert_eq!(
            u.finish("data", "ab", &sha256_hex(b"hello"))
                .unwrap()
                .object
                .read_all(),
            b"hello"
        );
        assert_eq!(u.pending_bytes(None).unwrap(), 5);
        u.abort("data", "ab").unwrap();
        assert!(matches!(
            u.finish("data", "ab", &sha256_hex(b"hello")),
            Err(UploadError::NotFound)
        ));
        assert!(u.list().unwrap().is_empty());
        assert!(matches!(
            u.append("data", "ab", u64::MAX, &piece(b"x"), &sha256_hex(b"x")),
            Err(UploadError::TooLarge)
        ));
    }

    #[test]
    fn dropping_a_finished_upload_spares_one_begun_since() {
        let (_d, u) = uploads();
        let hello = sha256_hex(b"hello");
        u.append("data", "ab", 0, &piece(b"hello"), &hello).unwrap();
        let first = u.finish("data", "ab", &hello).unwrap();
        // A second upload of the same object starts while the first is being stored.
        u.append("data", "ab", 0, &piece(b"hel"), &sha256_hex(b"hel"))
            .unwrap();
        u.drop_finished("data", "ab", first.mark).unwrap();
        assert_eq!(
            u.received("data", "ab").unwrap(),
            3,
            "the second upload stays"
        );
        u.append("data", "ab", 3, &piece(b"lo"), &sha256_hex(b"lo"))
            .unwrap();
        let second = u.finish("data", "ab", &hello).unwrap();
        // A piece added after the finish makes it another file too.
        u.append("data", "ab", 5, &piece(b"!"), &sha256_hex(b"!"))
            .unwrap();
        u.drop_finished("data", "ab", second.mark).unwrap();
        assert_eq!(u.received("data", "ab").unwrap(), 6);
        let third = u.finish("data", "ab", &sha256_hex(b"hello!")).unwrap();
        u.drop_finished("data", "ab", third.mark).unwrap();
        assert!(u.list().unwrap().is_empty());
    }

    #[test]
    fn wrong_whole_checksum_discards_the_upload() {
        let (_d, u) = uploads();
        u.append("data", "ab", 0, &piece(b"hello"), &sha256_hex(b"hello"))
            .unwrap();
        assert!(matches!(
            u.finish("data", "ab", &sha256_hex(b"other")).unwrap_err(),
            UploadError::Checksum
        ));
        assert!(matches!(
            u.received("data", "ab").unwrap_err(),
            UploadError::NotFound
        ));
    }

    #[test]
    fn too_large_and_too_many_are_refused() {
        let (_d, u) = uploads();
        assert!(matches!(
            u.append("data", "ab", MAX_OBJECT, &piece(b"x"), &sha256_hex(b"x"))
                .unwrap_err(),
            UploadError::TooLarge
        ));
        for i in 0..MAX_OPEN {
            u.append(
                "data",
                &format!("{i:04x}"),
                0,
                &piece(b"x"),
                &sha256_hex(b"x"),
            )
            .unwrap();
        }
        assert!(matches!(
            u.append("data", "ffff", 0, &piece(b"x"), &sha256_hex(b"x"))
                .unwrap_err(),
            UploadError::TooMany
        ));
        assert_eq!(u.sweep(Duration::ZERO).unwrap(), MAX_OPEN);
        assert!(u.list().unwrap().is_empty());
    }
}

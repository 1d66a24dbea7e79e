//! Where a repository's files live. [`Backend`] is the one I/O seam of a repository; [`LocalDir`]
//! is the embedded default (a directory), and the service's HTTP API is another.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The kinds of stored file, each in its own namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// The single `config` file.
    Config,
    /// Passphrase-wrapped common keys.
    Key,
    /// Device keys wrapped by the common key.
    Device,
    /// Snapshots.
    Snapshot,
    /// Index files.
    Index,
    /// Packs.
    Pack,
    /// Lock files.
    Lock,
    /// The backup log: one sealed [`kura_core::job::Job`] per job, named by the job id.
    Log,
    /// What checks found damaged: sealed [`kura_core::damage::Damage`] records.
    Damage,
}

impl FileType {
    /// Every kind of stored file.
    pub const ALL: [FileType; 9] = [
        FileType::Config,
        FileType::Key,
        FileType::Device,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
        FileType::Lock,
        FileType::Log,
        FileType::Damage,
    ];

    /// The kinds kept each in one flat directory named after the kind.
    const FLAT: [FileType; 7] = [
        FileType::Key,
        FileType::Device,
        FileType::Snapshot,
        FileType::Index,
        FileType::Lock,
        FileType::Log,
        FileType::Damage,
    ];

    /// The kind's name: its directory in a repository (packs are spread below theirs, the
    /// config is one file) and its path in the service's API.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Config => "config",
            FileType::Key => "keys",
            FileType::Device => "devices",
            FileType::Snapshot => "snapshots",
            FileType::Index => "index",
            FileType::Pack => "data",
            FileType::Lock => "locks",
            FileType::Log => "logs",
            FileType::Damage => "damage",
        }
    }

    /// The kind with this [`FileType::name`].
    pub fn from_name(name: &str) -> Option<FileType> {
        FileType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The file does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The storage is full.
    #[error("no space left on the repository's storage while writing {0}")]
    NoSpace(String),
    /// The service refused the request (authentication, contract, bad request).
    #[error("the service refused the request ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The service's reason.
        message: String,
    },
    /// Any other I/O failure.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which file.
        path: String,
        /// The cause.
        source: io::Error,
    },
}

impl BackendError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> BackendError {
        let path = path.display().to_string();
        match source.kind() {
            io::ErrorKind::NotFound => BackendError::NotFound(path),
            io::ErrorKind::StorageFull => BackendError::NoSpace(path),
            _ => BackendError::Io { op, path, source },
        }
    }
}

/// Storage for a repository's files. Writes are atomic (a reader sees the whole file or none)
/// and durable when `write` returns.
pub trait Backend: Send + Sync {
    /// Where this is, for messages.
    fn location(&self) -> String;
    /// Creates the empty layout; fails if a repository is already there.
    fn create(&self) -> Result<(), BackendError>;
    /// Names of all files of one type.
    fn list(&self, t: FileType) -> Result<Vec<String>, BackendError>;
    /// A whole file.
    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>, BackendError>;
    /// `len` bytes from `offset`.
    fn read_at(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, BackendError>;
    /// A file's size.
    fn size(&self, t: FileType, name: &str) -> Result<u64, BackendError>;
    /// Stores a file, replacing any file of that name.
    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<(), BackendError>;
    /// Removes a file; removing a missing file is not an error.
    fn remove(&self, t: FileType, name: &str) -> Result<(), BackendError>;
    /// Removes the partial files that writers killed mid-write left behind; returns how many
    /// and their bytes. Called only under an exclusive lock, which no writer (every one holds
    /// a lock while it writes) can be alive beside. Storage that never leaves such files (the
    /// service cleans its own) has nothing to do.
    fn remove_partials(&self) -> Result<(usize, u64), BackendError> {
        Ok((0, 0))
    }
    /// Whether the storage is (nearly) full: less than twice [`RESERVE`] left. Storage that
    /// cannot tell (the service answers for its own space) never is.
    fn is_full(&self) -> Result<bool, BackendError> {
        Ok(false)
    }
    /// Frees the space kept in reserve so that a full repository can still be cleaned (its
    /// lock, its new index); returns whether there was any. Storage without a reserve has
    /// none.
    fn release_reserve(&self) -> Result<bool, BackendError> {
        Ok(false)
    }
    /// Sets [`RESERVE`] bytes aside again, unless they are already or the storage is full
    /// (a [`BackendError::NoSpace`] then).
    fn keep_reserve(&self) -> Result<(), BackendError> {
        Ok(())
    }
    /// The storage provider behind this storage (the Kura service), for what a repository
    /// tells it and asks of it; plain storage has none.
    fn provider(&self) -> Option<&dyn crate::provider::Provider> {
        None
    }
}

/// Free space on a filesystem, as this user may use it.
#[derive(Debug, Clone, Copy)]
pub struct FreeSpace {
    /// Bytes available.
    pub bytes: u64,
    /// Allocation unit: every file takes a whole number of these.
    pub block: u64,
    /// Inodes available, when the filesystem limits them.
    pub inodes: Option<u64>,
}

/// Free space on the filesystem holding `path`.
pub fn free_space(path: &Path) -> io::Result<FreeSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FreeSpace {
        bytes: st.f_bavail as u64 * st.f_frsize as u64,
        block: st.f_frsize as u64,
        // Filesystems without an inode limit (btrfs, for one) report zero inodes in total.
        inodes: (st.f_files > 0).then_some(st.f_favail as u64),
    })
}

/// Bytes a local repository keeps in its `reserve` file, given back when its disk is full so
/// that `forget` and `prune` can still take their lock and write a new index.
pub const RESERVE: u64 = 4 << 20;

/// Creates `dir` (and its parents) private to its owner (0700). An existing one is tightened,
/// and so are the files directly in it that others could read (to 0600): databases, caches and
/// state hold names, paths and hashes that are nobody else's business.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    for entry in fs::read_dir(dir)?.flatten() {
        let Ok(m) = entry.metadata() else { continue };
        if m.is_file() && m.permissions().mode() & 0o077 != 0 {
            let mode = m.permissions().mode() & 0o700;
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// A repository in a local directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// A backend rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> LocalDir {
        LocalDir { root: root.into() }
    }

    /// The 256 directories packs are spread over, by the first two hex digits of their names.
    fn pack_dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let data = self.root.join(FileType::Pack.name());
        (0..256).map(move |i| data.join(format!("{i:02x}")))
    }

    fn path(&self, t: FileType, name: &str) -> PathBuf {
        match t {
            FileType::Config => self.root.join("config"),
            FileType::Pack => self
                .root
                .join(FileType::Pack.name())
                .join(name.get(..2).unwrap_or("00"))
                .join(name),
            _ => self.root.join(t.name()).join(name),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Backend for LocalDir {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<(), BackendError> {
        if self.root.join("config").exists() {
            return Err(BackendError::Io {
                op: "create repository",
                path: self.location(),
                source: io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a repository already exists here",
                ),
            });
        }
        let mk = |p: PathBuf| fs::create_dir_all(&p).map_err(|e| BackendError::io("create", &p, e));
        for t in FileType::FLAT {
            mk(self.root.join(t.name()))?;
        }
        for dir in self.pack_dirs() {
            mk(dir)?;
        }
        Ok(())
    }

    fn list(&self, t: FileType) -> Result<Vec<String>, BackendError> {
        let dirs: Vec<PathBuf> = match t {
            FileType::Config => {
                return Ok(if self.root.join("config").exists() {
                    vec!["config".into()]
                } else {
                    vec![]
                });
            }
            FileType::Pack => self.pack_dirs().collect(),
            _ => vec![self.root.join(t.name())],
        };
        let mut names = Vec::new();
        for dir in dirs {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BackendError::io("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| BackendError::io("list", &dir, e))?;
                if let Some(name) = entry.file_name().to_str()
                    && !name.starts_with('.')
                {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>, BackendError> {
        let p = self.path(t, name);
        fs::read(&p).map_err(|e| BackendError::io("read", &p, e))
    }

    fn read_at(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, BackendError> {
        let p = self.path(t, name);
        let f = File::open(&p).map_err(|e| BackendError::io("open", &p, e))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| BackendError::io("read", &p, e))?;
        Ok(buf)
    }

    fn size(&self, t: FileType, name: &str) -> Result<u64, BackendError> {
        let p = self.path(t, name);
        Ok(fs::metadata(&p)
            .map_err(|e| BackendError::io("stat", &p, e))?
            .len())
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let p = self.path(t, name);
        let dir = p.parent().unwrap_or(&self.root);
        // Repositories made before the log or damage records existed have no directory for them.
        if matches!(t, FileType::Pack | FileType::Log | FileType::Damage) {
            fs::create_dir_all(dir).map_err(|e| BackendError::io("create", dir, e))?;
        }
        let tmp = dir.join(format!(
            ".tmp-{}",
            kura_core::id::hex(&kura_core::crypto::random_bytes::<8>())
        ));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &p)?;
            sync_dir(dir)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(BackendError::io("write", &p, e));
        }
        Ok(())
    }

    fn remove_partials(&self) -> Result<(usize, u64), BackendError> {
        // A lock file being written is another process asking for a lock, not a writer's
        // leftover: it fails to get one and goes.
        let mut dirs: Vec<PathBuf> = FileType::FLAT
            .iter()
            .filter(|t| **t != FileType::Lock)
            .map(|t| self.root.join(t.name()))
            .collect();
        dirs.push(self.root.clone());
        dirs.extend(self.pack_dirs());
        let (mut removed, mut bytes) = (0, 0);
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if !e.file_name().to_string_lossy().starts_with(".tmp-") {
                    continue;
                }
                let len = e.metadata().map_or(0, |m| m.len());
                match fs::remove_file(e.path()) {
                    Ok(()) => {
                        removed += 1;
                        bytes += len;
                    }
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(BackendError::io("remove", &e.path(), err)),
                }
            }
        }
        Ok((removed, bytes))
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        let p = self.path(t, name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackendError::io("remove", &p, e)),
        }
    }

    fn release_reserve(&self) -> Result<bool, BackendError> {
        let p = self.root.join("reserve");
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BackendError::io("remove", &p, e)),
        }
    }

    fn is_full(&self) -> Result<bool, BackendError> {
        let free =
            free_space(&self.root).map_err(|e| BackendError::io("statvfs", &self.root, e))?;
        Ok(free.bytes < 2 * RESERVE)
    }

    fn keep_reserve(&self) -> Result<(), BackendError> {
        use std::io::Write;
        let p = self.root.join("reserve");
        if fs::metadata(&p).is_ok_and(|m| m.len() == RESERVE) {
            return Ok(());
        }
        // Taking the last of the space back would leave the next write nowhere to go.
        if self.is_full()? {
            return Err(BackendError::NoSpace(p.display().to_string()));
        }
        let tmp = self.root.join(".tmp-reserve");
        // Written, not just sized: a sparse file would set nothing aside.
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..RESERVE / zeros.len() as u64 {
                f.write_all(&zeros)?;
            }
            f.sync_all()?;
            fs::rename(&tmp, &p)
        })();
        written.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            BackendError::io("write", &p, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dir_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalDir::new(dir.path().join("repo"));
        b.create().unwrap();
        b.write(FileType::Config, "config", b"{}").unwrap();
        assert!(b.create().is_err(), "refuses to create over a repository");
        b.write(FileType::Pack, "abcdef", b"0123456789").unwrap();
        assert_eq!(b.list(FileType::Pack).unwrap(), vec!["abcdef"]);
        assert_eq!(b.read_at(FileType::Pack, "abcdef", 2, 3).unwrap(), b"234");
        assert_eq!(b.size(FileType::Pack, "abcdef").unwrap(), 10);
        assert!(matches!(
            b.read(FileType::Pack, "nope"),
            Err(BackendError::NotFound(_))
        ));
        assert!(b.read_at(FileType::Pack, "abcdef", 8, 3).is_err());
        b.remove(FileType::Pack, "abcdef").unwrap();
        b.remove(FileType::Pack, "abcdef").unwrap();
        assert!(b.list(FileType::Pack).unwrap().is_empty());
    }
}

//! The provider side of Kura (`docs/requirements/terminal-backup.md` requirements 1-4,
//! `docs/requirements/placement.md`): users and their contracts in SQLite, authentication before
//! anything else, and an HTTPS API that stores each user's encrypted repository as opaque objects,
//! two copies of each on storage sites chosen by the user's level and the sites' disaster risk. The
//! service never holds a key that decrypts the objects.

pub mod api;
pub mod config;
pub mod joblog;
pub mod notice;
pub mod password;
pub mod registry;
pub mod serve;
pub mod settlement;
pub mod sites;
pub mod spool;
pub mod storage;
pub mod tasks;
pub mod tls;
pub mod upload;

use std::fs;
use std::io;
use std::path::Path;

/// Where the service keeps each user's own files (unfinished uploads, a repository imported
/// from an older version): `DATA/users`, one directory per user id.
pub fn users_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("users")
}

/// The directory of user `id` under [`users_dir`].
pub fn user_dir(data_dir: &Path, id: i64) -> std::path::PathBuf {
    users_dir(data_dir).join(id.to_string())
}

/// Writes a file only the service's user can read (keys, secrets), atomically and durably.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

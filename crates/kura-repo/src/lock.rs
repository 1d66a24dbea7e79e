//! Repository locks: many shared holders (backups) or one exclusive holder (prune, forget).
//! Every process that writes to the repository holds one (shared for backups, device and key
//! changes and recording damage; exclusive for prune, forget and repair), so under an
//! exclusive lock a partial file has no live writer.
//!
//! A lock is a small JSON file under `locks/`, refreshed every five minutes while held. A lock
//! is stale when its process is gone (same host) or it was not refreshed for 30 minutes.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FileType};
use crate::{RepoError, Result};

const REFRESH: Duration = Duration::from_secs(300);
const STALE_AFTER_SECS: i64 = 1800;

#[derive(Debug, Serialize, Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    time: jiff::Timestamp,
    exclusive: bool,
}

/// A held lock; dropping it releases it.
pub struct RepoLock {
    backend: Arc<dyn Backend>,
    name: String,
    stop: Option<mpsc::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn write_info(backend: &dyn Backend, name: &str, exclusive: bool) -> Result<()> {
    let info = LockInfo {
        host: hostname(),
        pid: std::process::id(),
        time: jiff::Timestamp::now(),
        exclusive,
    };
    backend.write(
        FileType::Lock,
        name,
        &serde_json::to_vec(&info).unwrap_or_default(),
    )?;
    Ok(())
}

/// Whether a process of this host is running.
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let status = unsafe { libc::kill(pid as i32, 0) };
    status == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A lock of this host is stale exactly when its process is gone (a suspended process keeps
/// its lock however long it sleeps); a lock of another host when it was not refreshed for 30
/// minutes.
fn is_stale(info: &LockInfo) -> bool {
    if info.host == hostname() {
        return !process_alive(info.pid);
    }
    (jiff::Timestamp::now() - info.time).get_seconds() > STALE_AFTER_SECS
}

impl RepoLock {
    /// Takes a shared or exclusive lock, or fails naming the holder of a conflicting one.
    pub fn acquire(backend: Arc<dyn Backend>, exclusive: bool) -> Result<RepoLock> {
        let name = kura_core::id::hex(&kura_core::crypto::random_bytes::<16>());
        write_info(backend.as_ref(), &name, exclusive)?;
        let mut lock = RepoLock {
            backend: backend.clone(),
            name: name.clone(),
            stop: None,
            refresher: None,
        };
        for other in backend.list(FileType::Lock)? {
            if other == name {
                continue;
            }
            let bytes = match backend.read(FileType::Lock, &other) {
                Ok(b) => b,
                // Released between listing and reading.
                Err(crate::BackendError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(info) = serde_json::from_slice::<LockInfo>(&bytes) else {
                // An unreadable lock might be exclusive: refuse rather than guess.
                return Err(RepoError::Locked(format!(
                    "lock file locks/{other} is unreadable; if no kura process is using the repository, `kura unlock` removes it"
                )));
            };
            if is_stale(&info) {
                backend.remove(FileType::Lock, &other)?;
                continue;
            }
            if exclusive || info.exclusive {
                // `lock` is dropped here, removing our own lock file.
                return Err(RepoError::Locked(format!(
                    "{} lock held by pid {} on {} since {} (if that process is gone, `kura unlock --remove-all`)",
                    if info.exclusive {
                        "an exclusive"
                    } else {
                        "a shared"
                    },
                    info.pid,
                    info.host,
                    info.time
                )));
            }
        }
        let (tx, rx) = mpsc::channel::<()>();
        let refresher = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(REFRESH) {
                let _ = write_info(backend.as_ref(), &name, exclusive);
            }
        });
        lock.stop = Some(tx);
        lock.refresher = Some(refresher);
        Ok(lock)
    }
}

impl RepoLock {
    /// [`RepoLock::acquire`], trying again for up to `patience` while another process holds a
    /// conflicting lock (restic's `--retry-lock`); `waiting` is told of the holder once.
    pub fn acquire_waiting(
        backend: Arc<dyn Backend>,
        exclusive: bool,
        patience: Duration,
        waiting: &dyn Fn(&RepoError),
    ) -> Result<RepoLock> {
        let deadline = std::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(250);
        let mut told = false;
        loop {
            match RepoLock::acquire(backend.clone(), exclusive) {
                Err(e @ RepoError::Locked(_)) if std::time::Instant::now() < deadline => {
                    if !told {
                        waiting(&e);
                        told = true;
                    }
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    std::thread::sleep(pause.min(left));
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    /// Fails unless this lock is still in place (a process on another host may have judged it
    /// stale and removed it); checked before a backup commits.
    pub fn check_held(&self) -> Result<()> {
        match self.backend.size(FileType::Lock, &self.name) {
            Ok(_) => Ok(()),
            Err(crate::BackendError::NotFound(_)) => Err(RepoError::Locked(
                "this process's lock was removed by another process (it was judged stale); not committing".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// One lock file as `kura unlock` sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Holder {
    /// The lock file's name.
    pub name: String,
    /// The host that holds it (`None`: the file is unreadable).
    pub host: Option<String>,
    /// Its process there.
    pub pid: Option<u32>,
    /// When it was last refreshed.
    pub time: Option<jiff::Timestamp>,
    /// Whether it is exclusive.
    pub exclusive: bool,
    /// Whether its holder is gone: its process is not running (this host) or it was not
    /// refreshed for 30 minutes (another host), or the file is unreadable.
    pub stale: bool,
}

/// Every lock file in the repository, read.
pub fn holders(backend: &dyn Backend) -> Result<Vec<Holder>> {
    let mut out = Vec::new();
    for name in backend.list(FileType::Lock)? {
        let bytes = match backend.read(FileType::Lock, &name) {
            Ok(b) => b,
            Err(crate::BackendError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push(match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(info) => Holder {
                stale: is_stale(&info),
                name,
                host: Some(info.host),
                pid: Some(info.pid),
                time: Some(info.time),
                exclusive: info.exclusive,
            },
            Err(_) => Holder {
                name,
                host: None,
                pid: None,
                time: None,
                exclusive: false,
                stale: true,
            },
        });
    }
    Ok(out)
}

/// Removes the stale lock files (or, with `all`, every one: for a process on another host
/// known to be gone before its lock went stale); the holders removed.
pub fn remove_locks(backend: &dyn Backend, all: bool) -> Result<Vec<Holder>> {
    let mut removed = Vec::new();
    for h in holders(backend)? {
        if all || h.stale {
            match backend.remove(FileType::Lock, &h.name) {
                Ok(()) | Err(crate::BackendError::NotFound(_)) => removed.push(h),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(removed)
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.refresher.take() {
            let _ = h.join();
        }
        let _ = self.backend.remove(FileType::Lock, &self.name);
    }
}

//! The client's own state, per repository: which device this machine is, the file cache that
//! recognises unchanged files from metadata, and the backed-up markers of the backup types.
//!
//! Modern filesystems have no archive bit, so the markers of `docs/requirements/terminal-backup.md`
//! requirement 5 live here: the `full` set records each file's fingerprint at the last full
//! backup (or baseline), the `incremental` set at the last full or incremental backup.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use kura_core::Id;
use kura_core::keys::DeviceId;
use serde::{Deserialize, Serialize};

use crate::{Result, io_err};

/// What identifies a file's version without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
}

/// Files by absolute path: fingerprint and (in the cache) content blob ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// The entries.
    pub files: HashMap<Vec<u8>, (Fingerprint, Vec<Id>)>,
}

const CATALOG_MAGIC: &[u8; 5] = b"KCAT1";

impl Catalog {
    fn encode_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(CATALOG_MAGIC)?;
        out.write_all(&(self.files.len() as u64).to_le_bytes())?;
        for (path, (fp, ids)) in &self.files {
            out.write_all(&(path.len() as u32).to_le_bytes())?;
            out.write_all(path)?;
            out.write_all(&fp.size.to_le_bytes())?;
            out.write_all(&fp.mtime_ns.to_le_bytes())?;
            out.write_all(&fp.ctime_ns.to_le_bytes())?;
            out.write_all(&fp.inode.to_le_bytes())?;
            out.write_all(&(ids.len() as u32).to_le_bytes())?;
            for id in ids {
                out.write_all(&id.0)?;
            }
        }
        Ok(())
    }

    /// Decodes a catalog; `None` if it is damaged (the caller then starts from empty, which
    /// only costs re-reading files).
    fn decode(data: &[u8]) -> Option<Catalog> {
        let mut pos = 0usize;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = data.get(pos..pos.checked_add(n)?)?;
            pos += n;
            Some(s)
        };
        if take(5)? != CATALOG_MAGIC {
            return None;
        }
        let u64_of = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let n = u64_of(take(8)?);
        let mut files = HashMap::with_capacity((n as usize).min(data.len() / 40));
        for _ in 0..n {
            let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let path = take(len)?.to_vec();
            let fp = Fingerprint {
                size: u64_of(take(8)?),
                mtime_ns: u64_of(take(8)?) as i64,
                ctime_ns: u64_of(take(8)?) as i64,
                inode: u64_of(take(8)?),
            };
            let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let mut ids = Vec::with_capacity(count.min(data.len() / 32));
            for _ in 0..count {
                ids.push(Id(take(32)?.try_into().ok()?));
            }
            files.insert(path, (fp, ids));
        }
        Some(Catalog { files })
    }

    /// Drops every entry under one of `roots` (the caller then adds the current state).
    pub fn clear_under(&mut self, roots: &[Vec<u8>]) {
        self.files
            .retain(|p, _| !roots.iter().any(|r| is_under(p, r)));
    }
}

/// Whether `path` is `root` or inside it.
pub fn is_under(path: &[u8], root: &[u8]) -> bool {
    path.starts_with(root) && (path.len() == root.len() || path[root.len()] == b'/' || root == b"/")
}

/// What a marker set rests on: for each root, the chain of snapshots that recorded it (the
/// full backup first, then the incrementals since). A backup relative to these markers is only
/// sound while every snapshot of the chain still exists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MarkerInfo {
    /// Root → snapshot chain.
    pub roots: std::collections::BTreeMap<String, Vec<Id>>,
}

impl MarkerInfo {
    /// The recorded root that covers `root` (the deepest one).
    fn covering(&self, root: &str) -> Option<&String> {
        self.roots
            .keys()
            .filter(|m| is_under(root.as_bytes(), m.as_bytes()))
            .max_by_key(|m| m.len())
    }

    /// The chains of the recorded roots covering every one of `roots`, or `None` if a root is
    /// not covered.
    pub fn chains_for(&self, roots: &[String]) -> Option<Vec<&[Id]>> {
        if roots.is_empty() {
            return None;
        }
        roots
            .iter()
            .map(|r| self.covering(r).map(|m| self.roots[m].as_slice()))
            .collect()
    }

    /// A full backup (or baseline) of `roots` became snapshot `id`.
    pub fn record_full(&mut self, roots: &[String], id: Id) {
        for r in roots {
            self.roots
                .retain(|m, _| !is_under(m.as_bytes(), r.as_bytes()));
            self.roots.insert(r.clone(), vec![id]);
        }
    }

    /// An incremental backup of `roots` became snapshot `id`.
    pub fn record_incremental(&mut self, roots: &[String], id: Id) {
        for r in roots {
            if let Some(m) = self.covering(r).cloned()
                && let Some(chain) = self.roots.get_mut(&m)
                && chain.last() != Some(&id)
            {
                chain.push(id);
            }
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DeviceFile {
    device: DeviceId,
}

/// The state directory of one repository on this machine.
pub struct ClientState {
    dir: PathBuf,
}

/// Which marker set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Markers {
    /// Set by full backups and baselines.
    Full,
    /// Set by full and incremental backups and baselines.
    Incremental,
}

impl Markers {
    fn stem(self) -> &'static str {
        match self {
            Markers::Full => "markers-full",
            Markers::Incremental => "markers-incremental",
        }
    }
}

impl ClientState {
    /// The state for repository `repo_id` under `base` (see [`default_base`]).
    pub fn open(base: &Path, repo_id: &str) -> Result<ClientState> {
        let dir = base.join(repo_id);
        // The cache names every path backed up: private to this user.
        kura_repo::backend::private_dir(base).map_err(io_err(base))?;
        kura_repo::backend::private_dir(&dir).map_err(io_err(&dir))?;
        Ok(ClientState { dir })
    }

    /// The state directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// This machine's device id for the repository, if it is one.
    pub fn device(&self) -> Option<DeviceId> {
        let bytes = fs::read(self.dir.join("device.json")).ok()?;
        serde_json::from_slice::<DeviceFile>(&bytes)
            .ok()
            .map(|d| d.device)
    }

    /// Records this machine's device id.
    pub fn set_device(&self, device: DeviceId) -> Result<()> {
        let json = serde_json::to_vec_pretty(&DeviceFile { device }).unwrap_or_default();
        self.write("device.json", |w| w.write_all(&json))
    }

    /// The file cache.
    pub fn cache(&self) -> Catalog {
        self.catalog("cache")
    }

    /// Stores the file cache.
    pub fn set_cache(&self, c: &Catalog) -> Result<()> {
        self.write("cache.bin", |w| c.encode_to(w))
    }

    /// A marker set.
    pub fn markers(&self, which: Markers) -> (MarkerInfo, Catalog) {
        let info = fs::read(self.dir.join(format!("{}.json", which.stem())))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        (info, self.catalog(which.stem()))
    }

    /// Stores a marker set (catalog first, so a crash leaves the old info pointing at a
    /// superset, which only makes the next backup include more).
    pub fn set_markers(&self, which: Markers, info: &MarkerInfo, files: &Catalog) -> Result<()> {
        self.write(&format!("{}.bin", which.stem()), |w| files.encode_to(w))?;
        let json = serde_json::to_vec_pretty(info).unwrap_or_default();
        self.write(&format!("{}.json", which.stem()), |w| w.write_all(&json))
    }

    fn catalog(&self, stem: &str) -> Catalog {
        fs::read(self.dir.join(format!("{stem}.bin")))
            .ok()
            .and_then(|b| Catalog::decode(&b))
            .unwrap_or_default()
    }

    /// Replaces a state file atomically with what `fill` writes.
    fn write(
        &self,
        name: &str,
        fill: impl FnOnce(&mut std::io::BufWriter<fs::File>) -> std::io::Result<()>,
    ) -> Result<()> {
        replace_file(&self.dir.join(name), fill)
    }

    /// Runs `f` while holding this state directory's lock, so that concurrent backups on one
    /// machine update the cache and markers one after the other.
    pub fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        use std::os::fd::AsRawFd;
        let path = self.dir.join("lock");
        let file = fs::File::create(&path).map_err(io_err(&path))?;
        // SAFETY: flock on a file descriptor we own; released when `file` is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_err(&path)(std::io::Error::last_os_error()));
        }
        f()
    }
}

/// Replaces `path` atomically and durably with what `fill` writes: a crash leaves the old file
/// or the new one, never a mix.
pub(crate) fn replace_file(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{file_name}.{}.tmp",
        kura_core::id::hex(&kura_core::crypto::random_bytes::<6>())
    ));
    (|| {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })()
    .map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(path)(e)
    })
}

/// The latest storage conditions the service reported for a repository, as the client keeps them
/// (`docs/requirements/placement.md` requirement 6). Kept by the repository's location, so they can
/// be shown when the service cannot be reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedConditions {
    /// Where the repository is.
    pub location: String,
    /// When the service reported them.
    pub fetched: jiff::Timestamp,
    /// What they cover: `all`, `backup JOB` or `snapshot ID`.
    pub scope: String,
    /// Per object.
    pub objects: Vec<kura_core::conditions::ObjectConditions>,
}

impl SavedConditions {
    fn path(base: &Path, location: &str) -> PathBuf {
        let key = kura_core::Id::of_bytes(location.as_bytes()).to_hex();
        base.join("conditions").join(format!("{}.json", &key[..16]))
    }

    /// The conditions kept for the repository at `location`, if any.
    pub fn load(base: &Path, location: &str) -> Option<SavedConditions> {
        let bytes = fs::read(Self::path(base, location)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps these as the latest conditions of their repository.
    pub fn save(&self, base: &Path) -> Result<()> {
        let path = Self::path(base, &self.location);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        replace_file(&path, |w| w.write_all(&json))
    }
}

/// A per-user directory of Kura's: `$XDG/kura` when the XDG variable `xdg` is set, else
/// `$HOME/under_home/kura`. A `HOME` that is unset, empty or relative is refused rather than
/// scattering state under whatever directory kura happens to run in.
pub fn user_dir(xdg: &str, under_home: &str) -> Result<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(x) = absolute(xdg) {
        return Ok(x.join("kura"));
    }
    match absolute("HOME") {
        Some(home) => Ok(home.join(under_home).join("kura")),
        None => Err(crate::ClientError::Usage(format!(
            "HOME is not set to an absolute path and neither is {xdg}: set one, or give the \
             directory explicitly"
        ))),
    }
}

/// The default state directory: `$XDG_STATE_HOME/kura`, else `~/.local/state/kura`.
pub fn default_base() -> Result<PathBuf> {
    user_dir("XDG_STATE_HOME", ".local/state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_round_trip_and_damage() {
        let mut c = Catalog::default();
        c.files.insert(
            b"/a/b".to_vec(),
            (
                Fingerprint {
                    size: 1,
                    mtime_ns: -2,
                    ctime_ns: 3,
                    inode: 4,
                },
                vec![Id([5; 32])],
            ),
        );
        c.files
            .insert(b"/a/\xff".to_vec(), (Fingerprint::default(), vec![]));
        let mut bytes = Vec::new();
        c.encode_to(&mut bytes).unwrap();
        assert_eq!(Catalog::decode(&bytes).unwrap(), c);
        for cut in 0..bytes.len() {
            assert!(Catalog::decode(&bytes[..cut]).is_none());
        }
    }

    #[test]
    fn markers_cover_roots_and_keep_chains() {
        let mut m = MarkerInfo::default();
        m.record_full(&["/home/u".into()], Id([1; 32]));
        assert!(m.chains_for(&["/home/u".into()]).is_some());
        assert!(m.chains_for(&["/home/u/docs".into()]).is_some());
        assert!(m.chains_for(&["/home/user".into()]).is_none());
        assert!(m.chains_for(&[]).is_none());
        m.record_incremental(&["/home/u/docs".into()], Id([2; 32]));
        assert_eq!(
            m.chains_for(&["/home/u".into()]).unwrap(),
            vec![&[Id([1; 32]), Id([2; 32])][..]]
        );
        m.record_full(&["/home".into()], Id([3; 32]));
        assert_eq!(
            m.roots.len(),
            1,
            "a full of a parent replaces the roots under it"
        );
        assert!(is_under(b"/x", b"/"));
    }

    #[test]
    fn state_persists() {
        let dir = tempfile::tempdir().unwrap();
        let s = ClientState::open(dir.path(), "r1").unwrap();
        assert_eq!(s.device(), None);
        let d = DeviceId::random();
        s.set_device(d).unwrap();
        assert_eq!(
            ClientState::open(dir.path(), "r1").unwrap().device(),
            Some(d)
        );
        let mut info = MarkerInfo::default();
        info.record_full(&["/r".into()], Id([1; 32]));
        let mut cat = Catalog::default();
        cat.files
            .insert(b"/r/f".to_vec(), (Fingerprint::default(), vec![]));
        s.set_markers(Markers::Full, &info, &cat).unwrap();
        assert_eq!(s.markers(Markers::Full), (info, cat));
        assert_eq!(s.markers(Markers::Incremental).0, MarkerInfo::default());
    }
}

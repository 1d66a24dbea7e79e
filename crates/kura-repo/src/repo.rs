//! Creating and unlocking a repository, its devices, and reading its objects.

use std::collections::HashMap;
use std::sync::Arc;

use kura_core::chunker::{Chunker, ChunkerParams};
use kura_core::crypto::Key;
use kura_core::damage::Damage;
use kura_core::index::IndexFile;
use kura_core::job::Job;
use kura_core::keys::{BlobKey, CommonKey, DeviceId, KdfParams, KeyFile, RecoveryCode};
use kura_core::pack;
use kura_core::sealed::{self, FileKind};
use kura_core::snapshot::Snapshot;
use kura_core::tree::Tree;
use kura_core::{FORMAT_VERSION, Id};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, FileType};
use crate::index::MasterIndex;
use crate::{RepoError, Result, corrupt};
use kura_core::job::JobReport;

/// The repository's plaintext `config` file. It holds nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Format version ([`FORMAT_VERSION`] when written by this build).
    pub version: u32,
    /// Random repository id (hex).
    pub id: String,
    /// When the repository was created.
    pub created: jiff::Timestamp,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// zstd level for new blobs.
    pub compression_level: i32,
    /// [`CommonKey::config_mac`] over [`Config::canonical`].
    pub mac: String,
}

impl Config {
    /// The bytes the config MAC covers.
    pub fn canonical(&self) -> Vec<u8> {
        format!(
            "kura config v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.version,
            self.id,
            self.created,
            self.chunker.min,
            self.chunker.avg,
            self.chunker.max,
            self.compression_level
        )
        .into_bytes()
    }
}

/// A device's entry under `devices/`: its key wrapped by the common key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device id (also the file name).
    pub device: DeviceId,
    /// A name the user chose (default: the host name).
    pub name: String,
    /// The host it was added on.
    pub host: String,
    /// When it was added.
    pub created: jiff::Timestamp,
    /// The device key sealed by the common key, hex.
    pub wrapped_key: String,
    /// When the device was removed. Its key stays, wrapped, so the data it stored can still be
    /// read; it may not add data any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<jiff::Timestamp>,
}

/// Files read, by name, and the errors of those that are damaged, by name.
type ReadEach<T> = (Vec<(String, T)>, Vec<(String, RepoError)>);

/// Reads each named file with `read`, setting aside the ones that are damaged
/// ([`RepoError::is_damage`]): one damaged file costs only itself. A failure to reach the
/// storage ends it.
fn read_each<T>(
    names: Vec<String>,
    mut read: impl FnMut(&str) -> Result<T>,
) -> Result<ReadEach<T>> {
    let (mut good, mut damaged) = (Vec::new(), Vec::new());
    for name in names {
        match read(&name) {
            Ok(v) => good.push((name, v)),
            Err(e) if e.is_damage() => damaged.push((name, e)),
            Err(e) => return Err(e),
        }
    }
    Ok((good, damaged))
}

/// What is told that a lock has to be waited for.
pub type LockWaiting = Arc<dyn Fn(&RepoError) + Send + Sync>;

/// The key files that parse, by name, and the names of those that do not.
type KeyFiles = (Vec<(String, KeyFile)>, Vec<String>);

/// Snapshots that could be read (oldest first), and why the others could not.
pub type Readable = (Vec<(Id, Snapshot)>, Vec<RepoError>);

/// What the storage provider reports lost (no good copy left).
#[derive(Debug, Default)]
pub struct Lost {
    /// Packs.
    pub packs: std::collections::HashSet<Id>,
    /// Index files, by name.
    pub index: std::collections::HashSet<String>,
    /// Anything else (`snapshots/…`, `keys/…`, `config`).
    pub other: Vec<String>,
}

/// How the user proves they hold the common key.
#[derive(Clone)]
pub enum Credential {
    /// The passphrase of a key file.
    Passphrase(Vec<u8>),
    /// The recovery code printed by `init`.
    RecoveryCode(String),
}

/// An unlocked repository.
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    common: CommonKey,
    blob_key: BlobKey,
    devices: HashMap<DeviceId, (DeviceRecord, Key)>,
    /// Device records that could not be read, by file name: what their devices sealed cannot
    /// be opened, the rest of the repository can.
    damaged_devices: Vec<(String, RepoError)>,
    /// How long [`Repository::lock`] waits for a conflicting lock to go.
    lock_patience: std::time::Duration,
    /// Told once when a lock has to be waited for.
    lock_waiting: Option<LockWaiting>,
    /// The key file that unlocked it, and whether by passphrase (`false`: recovery code).
    unlocked_by: Option<(String, bool)>,
}

/// One key file, as `kura key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEntry {
    /// File name under `keys/`.
    pub name: String,
    /// `passphrase` or `recovery code`.
    pub kind: &'static str,
    /// When it was made.
    pub created: String,
    /// The host that made it.
    pub host: String,
    /// Whether it is the one that unlocked the repository now.
    pub in_use: bool,
}

impl Repository {
    /// Creates a repository; returns it, the first device's id, and the recovery code (to show
    /// once).
    pub fn init(
        backend: Arc<dyn Backend>,
        passphrase: &[u8],
        kdf: KdfParams,
        device_name: &str,
        host: &str,
    ) -> Result<(Repository, DeviceId, String)> {
        if backend
            .list(FileType::Config)?
            .iter()
            .any(|n| n == "config")
        {
            return Err(RepoError::AlreadyExists(backend.location()));
        }
        backend.create().map_err(|e| match e {
            BackendError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::AlreadyExists =>
            {
                RepoError::AlreadyExists(backend.location())
            }
            e => RepoError::Backend(e),
        })?;
        let common = CommonKey::generate();
        let id = kura_core::id::hex(&kura_core::crypto::random_bytes::<16>());
        let now = jiff::Timestamp::now();
        let mut config = Config {
            version: FORMAT_VERSION,
            mac: String::new(),
            id,
            created: now,
            chunker: ChunkerParams::default(),
            compression_level: 3,
        };
        config.mac = common.config_mac(&config.canonical());
        let mut repo = Repository::unlocked(backend, config, common);
        let name = repo.add_passphrase(passphrase, kdf, host)?;
        repo.unlocked_by = Some((name, true));
        let code = repo.new_recovery_code(host)?;
        let device = repo.add_device(device_name, host)?;
        // On a disk too full for it, the first backup with room sets it aside.
        match repo.backend.keep_reserve() {
            Ok(()) | Err(BackendError::NoSpace(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // The config is written last: a repository without it does not exist yet.
        let config_json = serde_json::to_vec_pretty(&repo.config).unwrap_or_default();
        repo.backend
            .write(FileType::Config, "config", &config_json)?;
        Ok((repo, device, code))
    }

    /// Opens and unlocks a repository.
    pub fn open(backend: Arc<dyn Backend>, credential: &Credential) -> Result<Repository> {
        let config = Self::read_config(backend.as_ref())?;
        let (common, by) = Self::unlock(backend.as_ref(), &config, credential)?;
        // Only an authenticated version counts: anyone could write a larger number.
        if config.version > FORMAT_VERSION {
            return Err(RepoError::NewerFormat {
                location: backend.location(),
                found: config.version,
                supported: FORMAT_VERSION,
            });
        }
        let mut repo = Repository::unlocked(backend, config, common);
        repo.unlocked_by = Some(by);
        repo.load_devices()?;
        Ok(repo)
    }

    fn unlocked(backend: Arc<dyn Backend>, config: Config, common: CommonKey) -> Repository {
        Repository {
            blob_key: common.blob_key(),
            backend,
            config,
            common,
            devices: HashMap::new(),
            damaged_devices: Vec::new(),
            lock_patience: std::time::Duration::ZERO,
            lock_waiting: None,
            unlocked_by: None,
        }
    }

    /// Reads and checks the config without unlocking anything. Its MAC is checked once the
    /// common key is known, and so is a version newer than this build's (only a config that
    /// does not parse at all is called newer unchecked: there is nothing else to go on).
    pub fn read_config(backend: &dyn Backend) -> Result<Config> {
        let bytes = match backend.read(FileType::Config, "config") {
            Ok(b) => b,
            Err(BackendError::NotFound(_)) => return Err(RepoError::NotFound(backend.location())),
            Err(e) => return Err(e.into()),
        };
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: VersionOnly = serde_json::from_slice(&bytes).map_err(|e| {
            corrupt("config", "config")(kura_core::FormatError::invalid("json", e.to_string()))
        })?;
        let config: Config = match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            Err(_) if v.version > FORMAT_VERSION => {
                return Err(RepoError::NewerFormat {
                    location: backend.location(),
                    found: v.version,
                    supported: FORMAT_VERSION,
                });
            }
            Err(e) => {
                return Err(corrupt("config", "config")(
                    kura_core::FormatError::invalid("json", e.to_string()),
                ));
            }
        };
        let id_ok = config.id.len() == 32
            && config
                .id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !id_ok || !config.chunker.is_valid() || !(1..=19).contains(&config.compression_level) {
            return Err(corrupt("config", "config")(
                kura_core::FormatError::Invalid {
                    what: "config",
                    why: "chunker or compression settings out of range".into(),
                },
            ));
        }
        Ok(config)
    }

    /// Every key file that parses, by name; the names of those that do not (they open
    /// nothing, but a user whose passphrase was theirs must be told).
    fn key_files(backend: &dyn Backend) -> Result<KeyFiles> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for name in backend.list(FileType::Key)? {
            let bytes = backend.read(FileType::Key, &name)?;
            match serde_json::from_slice::<KeyFile>(&bytes) {
                Ok(kf) => out.push((name, kf)),
                Err(_) => damaged.push(name),
            }
        }
        Ok((out, damaged))
    }

    /// Tries every key file of the credential's kind; only a common key that authenticates the
    /// config is accepted. Returns it with the key file's name and whether it is a passphrase.
    fn unlock(
        backend: &dyn Backend,
        config: &Config,
        credential: &Credential,
    ) -> Result<(CommonKey, (String, bool))> {
        let code = match credential {
            Credential::RecoveryCode(text) => Some(RecoveryCode::parse(text)?),
            Credential::Passphrase(_) => None,
        };
        let mut unlocked_other = false;
        let (files, damaged) = Self::key_files(backend)?;
        for (name, kf) in files {
            let opened = match (credential, &code) {
                (Credential::Passphrase(p), _) if !kf.is_recovery() => kf.unlock(p),
                (_, Some(code)) if kf.is_recovery() => kf.unlock_recovery(code),
                _ => continue,
            };
            if let Ok(common) = opened {
                if common.config_mac(&config.canonical()) == config.mac {
                    return Ok((common, (name, code.is_none())));
                }
                unlocked_other = true;
            }
        }
        if unlocked_other && config.version > FORMAT_VERSION {
            return Err(corrupt("config", "config")(
                kura_core::FormatError::invalid(
                    "repository config",
                    format!(
                        "it says format {}, newer than this kura's {FORMAT_VERSION}, but its tag does not check: upgrade kura if a newer one made it; otherwise it was changed by someone without the key",
                        config.version
                    ),
                ),
            ));
        }
        if unlocked_other {
            return Err(corrupt("config", "config")(
                kura_core::FormatError::Authentication(
                    "repository config (changed by someone without the key, or left from another repository)",
                ),
            ));
        }
        if let Some(name) = damaged.first() {
            let other = match code {
                Some(_) => "a passphrase",
                None => "the recovery code (--recovery-code-file or KURA_RECOVERY_CODE)",
            };
            return Err(corrupt("key file", name)(kura_core::FormatError::invalid(
                "key file",
                format!(
                    "it does not parse, and no other key file opens with this credential: if it was this one's, open the repository with {other} and add a new one"
                ),
            )));
        }
        Err(match code {
            Some(_) => kura_core::keys::KeyError::WrongRecoveryCode,
            None => kura_core::keys::KeyError::WrongPassphrase,
        }
        .into())
    }

    /// The key files: passphrases and the recovery code.
    pub fn keys(&self) -> Result<Vec<KeyEntry>> {
        let in_use = self.unlocked_by.as_ref().map(|(n, _)| n.as_str());
        Ok(Self::key_files(self.backend.as_ref())?
            .0
            .into_iter()
            .map(|(name, kf)| KeyEntry {
                kind: if kf.is_recovery() {
                    "recovery code"
                } else {
                    "passphrase"
                },
                in_use: Some(name.as_str()) == in_use,
                created: kf.created,
                host: kf.host,
                name,
            })
            .collect())
    }

    /// Replaces the passphrase: the new key file is written first, then the one that unlocked
    /// the repository is removed (all passphrase key files, when a recovery code unlocked it:
    /// the user lost the passphrase). A crash in between leaves both passphrases working.
    pub fn change_passphrase(
        &mut self,
        passphrase: &[u8],
        kdf: KdfParams,
        host: &str,
    ) -> Result<()> {
        let new = self.add_passphrase(passphrase, kdf, host)?;
        let old: Vec<String> = match &self.unlocked_by {
            Some((name, true)) => vec![name.clone()],
            _ => Self::key_files(self.backend.as_ref())?
                .0
                .into_iter()
                .filter(|(name, kf)| !kf.is_recovery() && *name != new)
                .map(|(name, _)| name)
                .collect(),
        };
        for name in old.iter().filter(|n| **n != new) {
            self.backend.remove(FileType::Key, name)?;
        }
        self.unlocked_by = Some((new, true));
        Ok(())
    }

    /// Issues a new recovery code and retires every other: returns the code, to show once.
    pub fn replace_recovery_code(&mut self, host: &str) -> Result<String> {
        let old: Vec<String> = Self::key_files(self.backend.as_ref())?
            .0
            .into_iter()
            .filter(|(_, kf)| kf.is_recovery())
            .map(|(name, _)| name)
            .collect();
        let code = self.new_recovery_code(host)?;
        for name in &old {
            self.backend.remove(FileType::Key, name)?;
        }
        if self
            .unlocked_by
            .as_ref()
            .is_some_and(|(n, _)| old.contains(n))
        {
            self.unlocked_by = None;
        }
        Ok(code)
    }

    /// Adds `code` as a recovery code beside the ones there are (`kura key escrow` splits it
    /// in shares). [`Repository::replace_recovery_code`] retires it with the others.
    pub fn add_recovery_code(&self, code: &RecoveryCode, host: &str) -> Result<()> {
        let kf = KeyFile::create_recovery(
            &self.common,
            code,
            jiff::Timestamp::now().to_string(),
            host.into(),
        );
        self.write_key_file(&kf)?;
        Ok(())
    }

    fn new_recovery_code(&self, host: &str) -> Result<String> {
        let code = RecoveryCode::generate();
        self.add_recovery_code(&code, host)?;
        Ok(code.text())
    }

    /// Reads every device record; one that cannot be read is set aside (see
    /// [`Repository::damaged_devices`]), so it costs only what its device sealed.
    fn load_devices(&mut self) -> Result<()> {
        let names = self.backend.list(FileType::Device)?;
        let (read, damaged) = read_each(names, |name| self.read_device(name))?;
        for (_, (rec, key)) in read {
            self.devices.insert(rec.device, (rec, key));
        }
        self.damaged_devices = damaged;
        Ok(())
    }

    fn read_device(&self, name: &str) -> Result<(DeviceRecord, Key)> {
        let bytes = self.backend.read(FileType::Device, name)?;
        let rec: DeviceRecord = serde_json::from_slice(&bytes).map_err(|e| {
            corrupt("device record", name)(kura_core::FormatError::invalid("json", e.to_string()))
        })?;
        if rec.device.to_string() != name {
            return Err(corrupt("device record", name)(
                kura_core::FormatError::invalid(
                    "device record",
                    "stored under another device's name",
                ),
            ));
        }
        let wrapped = kura_core::id::unhex(&rec.wrapped_key).ok_or_else(|| {
            corrupt("device record", name)(kura_core::FormatError::invalid(
                "device record",
                "bad hex",
            ))
        })?;
        let key = self
            .common
            .unwrap_device_key(rec.device, &wrapped)
            .map_err(corrupt("device record", name))?;
        Ok((rec, key))
    }

    /// Makes [`Repository::lock`] wait up to `patience` for a conflicting lock to go,
    /// telling `waiting` once.
    pub fn set_lock_patience(&mut self, patience: std::time::Duration, waiting: LockWaiting) {
        self.lock_patience = patience;
        self.lock_waiting = Some(waiting);
    }

    /// Takes a shared or exclusive lock on the repository, waiting as
    /// [`Repository::set_lock_patience`] said.
    pub fn lock(&self, exclusive: bool) -> Result<crate::lock::RepoLock> {
        let quiet = |_: &RepoError| {};
        let waiting: &dyn Fn(&RepoError) = match &self.lock_waiting {
            Some(w) => w.as_ref(),
            None => &quiet,
        };
        crate::lock::RepoLock::acquire_waiting(
            self.backend.clone(),
            exclusive,
            self.lock_patience,
            waiting,
        )
    }

    /// Takes the exclusive lock of a command that frees space (`forget`, `prune`): on a full
    /// disk, the space kept in reserve is given back first, so that the lock and a new index
    /// can be written. Returns the lock and whether the disk was full (the caller then writes
    /// as little as it can, and calls [`Backend::keep_reserve`] at the end).
    pub fn lock_to_clean(&self) -> Result<(crate::lock::RepoLock, bool)> {
        let full = self.backend.is_full()?;
        if full {
            self.backend.release_reserve()?;
        }
        match self.lock(true) {
            Err(RepoError::Backend(BackendError::NoSpace(_)))
                if self.backend.release_reserve()? =>
            {
                Ok((self.lock(true)?, true))
            }
            other => Ok((other?, full)),
        }
    }

    /// The device records that could not be read, and why.
    pub fn damaged_devices(&self) -> &[(String, RepoError)] {
        &self.damaged_devices
    }

    /// Makes a new device key, wraps it with the common key, and stores it.
    pub fn add_device(&mut self, name: &str, host: &str) -> Result<DeviceId> {
        let device = DeviceId::random();
        let key = Key::random();
        let rec = DeviceRecord {
            device,
            name: name.to_string(),
            host: host.to_string(),
            created: jiff::Timestamp::now(),
            wrapped_key: kura_core::id::hex(&self.common.wrap_device_key(device, &key)),
            removed: None,
        };
        self.write_device(&rec)?;
        self.devices.insert(device, (rec, key));
        Ok(device)
    }

    fn write_device(&self, rec: &DeviceRecord) -> Result<()> {
        let json = serde_json::to_vec_pretty(rec).unwrap_or_default();
        self.backend
            .write(FileType::Device, &rec.device.to_string(), &json)?;
        Ok(())
    }

    /// The device that `spec` names: a unique prefix of its id, or its exact name.
    pub fn find_device(&self, spec: &str) -> Result<DeviceId> {
        let by_name: Vec<DeviceId> = self
            .devices()
            .filter(|d| d.name == spec)
            .map(|d| d.device)
            .collect();
        let by_id: Vec<DeviceId> = self
            .devices()
            .filter(|d| !spec.is_empty() && d.device.to_string().starts_with(spec))
            .map(|d| d.device)
            .collect();
        match (by_id.as_slice(), by_name.as_slice()) {
            ([one], _) | ([], [one]) => Ok(*one),
            ([], []) => Err(RepoError::NoSuchDevice(format!(
                "no device {spec:?} (`kura device list` shows them)"
            ))),
            _ => Err(RepoError::NoSuchDevice(format!(
                "{spec:?} names more than one device: give more of its id"
            ))),
        }
    }

    /// Changes a device's name.
    pub fn rename_device(&mut self, device: DeviceId, name: &str) -> Result<()> {
        let (rec, _) = self.devices.get_mut(&device).ok_or(RepoError::NotADevice)?;
        rec.name = name.to_string();
        let rec = rec.clone();
        self.write_device(&rec)
    }

    /// Removes a device: from now on it may not add data. Its key is kept (wrapped by the
    /// common key) because the snapshots it made need it to be read.
    pub fn remove_device(&mut self, device: DeviceId) -> Result<()> {
        let (rec, _) = self.devices.get_mut(&device).ok_or(RepoError::NotADevice)?;
        rec.removed.get_or_insert_with(jiff::Timestamp::now);
        let rec = rec.clone();
        self.write_device(&rec)
    }

    /// Adds a key file so that another passphrase also unlocks the repository; returns its name.
    pub fn add_passphrase(&self, passphrase: &[u8], kdf: KdfParams, host: &str) -> Result<String> {
        let kf = KeyFile::create(
            &self.common,
            passphrase,
            kdf,
            jiff::Timestamp::now().to_string(),
            host.into(),
        )
        .map_err(corrupt("key file", "new"))?;
        self.write_key_file(&kf)
    }

    fn write_key_file(&self, kf: &KeyFile) -> Result<String> {
        let json = serde_json::to_vec_pretty(kf).unwrap_or_default();
        let name = Id::of_bytes(&json).to_hex();
        self.backend.write(FileType::Key, &name, &json)?;
        Ok(name)
    }

    /// The devices of this repository.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values().map(|(r, _)| r)
    }

    /// A device's key, if the device is known.
    pub fn device_key(&self, device: DeviceId) -> Option<&Key> {
        self.devices.get(&device).map(|(_, k)| k)
    }

    /// The key of a device that may add data: [`RepoError::NotADevice`] unless `device`
    /// belongs to this repository, [`RepoError::DeviceRemoved`] if it was removed.
    pub fn require_device(&self, device: DeviceId) -> Result<&Key> {
        match self.devices.get(&device) {
            None => match self
                .damaged_devices
                .iter()
                .find(|(name, _)| *name == device.to_string())
            {
                Some((name, e)) => Err(corrupt("device record", name)(
                    kura_core::FormatError::invalid(
                        "device record",
                        format!(
                            "{e}: this machine's device key cannot be read; add it again as a new device (`kura device add`)"
                        ),
                    ),
                )),
                None => Err(RepoError::NotADevice),
            },
            Some((rec, key)) => match rec.removed {
                Some(when) => Err(RepoError::DeviceRemoved(device, when)),
                None => Ok(key),
            },
        }
    }

    /// The storage backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The blob-id key.
    pub fn blob_key(&self) -> &BlobKey {
        &self.blob_key
    }

    /// A chunker with this repository's bounds and secret seed.
    pub fn chunker(&self) -> Chunker {
        Chunker::new(self.config.chunker, self.common.chunker_seed())
    }

    /// Reads every index file into memory. What the storage provider lost, what checks
    /// recorded as damaged and index files that cannot be read are left out: a lost or
    /// unreadable index file's packs count as unindexed (the next backup adopts the ones it
    /// can read), and a lost or damaged blob as not stored (the next backup stores it anew).
    pub fn load_index(&self) -> Result<MasterIndex> {
        Ok(self.load_index_reporting(&())?.0)
    }

    /// [`Repository::load_index`], telling `progress` of each index file read (a large
    /// repository's index takes a while, on the service more so).
    pub fn load_index_with(
        &self,
        progress: &dyn crate::check::CheckProgress,
    ) -> Result<MasterIndex> {
        Ok(self.load_index_reporting(progress)?.0)
    }

    /// [`Repository::load_index_with`], with the errors of the index files it left out as
    /// unreadable: what would delete unindexed packs must not run past them.
    pub fn load_index_reporting(
        &self,
        progress: &dyn crate::check::CheckProgress,
    ) -> Result<(MasterIndex, Vec<RepoError>)> {
        let lost = self.lost()?;
        let mut names = self.backend.list(FileType::Index)?;
        names.retain(|n| !lost.index.contains(n));
        progress.start(names.len() as u64, 0);
        let (read, unreadable) = read_each(names, |name| {
            let file = self.read_index_file(name);
            progress.pack(0);
            file
        })?;
        let mut index = MasterIndex::default();
        for (name, file) in read {
            index.add_file(name, file);
        }
        index.forget_packs(&lost.packs);
        index.forget_damage(&self.damage()?.0);
        Ok((index, unreadable.into_iter().map(|(_, e)| e).collect()))
    }

    /// Records what a check found damaged (what earlier records lack), sealed with `device`'s
    /// key; returns whether there was anything new.
    pub fn record_damage(&self, device: DeviceId, found: &Damage) -> Result<bool> {
        let new = found.beyond(&self.damage()?.0);
        if new.is_empty() {
            return Ok(false);
        }
        self.write_sealed(device, FileKind::Damage, FileType::Damage, &new.encode())?;
        Ok(true)
    }

    /// What checks have recorded as damaged, from every record that can be read, and the
    /// errors of those that cannot (one damaged record hides only what it said).
    pub fn damage(&self) -> Result<(Damage, Vec<RepoError>)> {
        let names = self.backend.list(FileType::Damage)?;
        let (read, unreadable) = read_each(names, |name| {
            let plain = self.read_sealed(FileType::Damage, FileKind::Damage, name)?;
            Damage::decode(&plain).map_err(corrupt("damage record", name))
        })?;
        let mut all = Damage::default();
        for (_, d) in read {
            all.merge(d);
        }
        Ok((all, unreadable.into_iter().map(|(_, e)| e).collect()))
    }

    /// What the storage provider has no good copy of any more.
    pub fn lost(&self) -> Result<Lost> {
        let mut lost = Lost::default();
        let objects = match self.backend.provider() {
            Some(p) => p.lost()?,
            None => Vec::new(),
        };
        for object in objects {
            match object.split_once('/') {
                Some(("data", name)) => {
                    if let Ok(id) = name.parse() {
                        lost.packs.insert(id);
                    }
                }
                Some(("index", name)) => {
                    lost.index.insert(name.to_string());
                }
                _ => lost.other.push(object),
            }
        }
        Ok(lost)
    }

    /// Reads and decodes one index file.
    pub fn read_index_file(&self, name: &str) -> Result<IndexFile> {
        let plain = self.read_sealed(FileType::Index, FileKind::Index, name)?;
        IndexFile::decode(&plain).map_err(corrupt("index file", name))
    }

    /// Stores an index file sealed with `device`'s key; returns its name.
    pub fn write_index_file(&self, device: DeviceId, file: &IndexFile) -> Result<String> {
        self.write_sealed(device, FileKind::Index, FileType::Index, &file.encode())
    }

    /// Reads the sealed file `name` of type `t` and opens it.
    fn read_sealed(&self, t: FileType, kind: FileKind, name: &str) -> Result<Vec<u8>> {
        let bytes = self.backend.read(t, name)?;
        self.open_sealed(kind, name, &bytes)
    }

    fn open_sealed(&self, kind: FileKind, name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        let what = match kind {
            FileKind::Snapshot => "snapshot",
            FileKind::Index => "index file",
            FileKind::Job => "backup log entry",
            FileKind::Damage => "damage record",
        };
        // Log entries are named by their job and rewritten as it goes; the rest by contents.
        if kind != FileKind::Job && Id::of_bytes(bytes).to_hex() != name {
            return Err(corrupt(what, name)(kura_core::FormatError::invalid(
                what,
                "contents do not match the name",
            )));
        }
        let device = sealed::sealed_by(bytes, kind).map_err(corrupt(what, name))?;
        let key = self.device_key(device).ok_or_else(|| {
            corrupt(what, name)(kura_core::FormatError::invalid(
                what,
                format!("sealed by unknown device {device}"),
            ))
        })?;
        sealed::open_file(key, kind, bytes).map_err(corrupt(what, name))
    }

    fn write_sealed(
        &self,
        device: DeviceId,
        kind: FileKind,
        t: FileType,
        plain: &[u8],
    ) -> Result<String> {
        let key = self.require_device(device)?;
        let (bytes, id) = sealed::seal_file(key, device, kind, plain);
        let name = id.to_hex();
        self.backend.write(t, &name, &bytes)?;
        Ok(name)
    }

    /// Writes a job's backup log entry (replacing the previous one) and tells the storage
    /// provider how it stands.
    pub fn save_job(&self, job: &Job) -> Result<()> {
        let key = self.require_device(job.device)?;
        let (bytes, _) = sealed::seal_file(key, job.device, FileKind::Job, &job.encode());
        self.backend
            .write(FileType::Log, &job.id.to_string(), &bytes)?;
        if let Some(p) = self.backend.provider() {
            p.report_job(&JobReport::of(job))?;
        }
        Ok(())
    }

    /// The backup log, oldest first, and the errors of entries that cannot be read.
    pub fn jobs(&self) -> Result<(Vec<Job>, Vec<RepoError>)> {
        let names = self.backend.list(FileType::Log)?;
        let (read, damaged) = read_each(names, |name| {
            let plain = self.read_sealed(FileType::Log, FileKind::Job, name)?;
            let job = Job::decode(&plain).map_err(corrupt("backup log entry", name))?;
            if job.id.to_string() != name {
                return Err(corrupt("backup log entry", name)(
                    kura_core::FormatError::invalid(
                        "backup log entry",
                        "stored under another job's name",
                    ),
                ));
            }
            Ok(job)
        })?;
        let mut out: Vec<Job> = read.into_iter().map(|(_, j)| j).collect();
        out.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        Ok((out, damaged.into_iter().map(|(_, e)| e).collect()))
    }

    /// Stores a snapshot; this is the commit point of a backup.
    pub fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        let name = self.write_sealed(
            snapshot.device,
            FileKind::Snapshot,
            FileType::Snapshot,
            &snapshot.encode(),
        )?;
        name.parse().map_err(|_| RepoError::NoSnapshot(name))
    }

    /// Every snapshot, oldest first.
    pub fn load_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let (snaps, mut damaged) = self.readable_snapshots()?;
        match damaged.pop() {
            Some(e) => Err(e),
            None => Ok(snaps),
        }
    }

    /// Every snapshot that can be read, oldest first, and the errors of those that cannot:
    /// for commands that only read, one damaged snapshot must not hide the others.
    pub fn readable_snapshots(&self) -> Result<Readable> {
        let names = self.backend.list(FileType::Snapshot)?;
        let (read, damaged) = read_each(names, |name| self.load_snapshot(name))?;
        let mut out: Vec<(Id, Snapshot)> = read.into_iter().map(|(_, s)| s).collect();
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((out, damaged.into_iter().map(|(_, e)| e).collect()))
    }

    /// Reads one snapshot by its file name (as `list` gives it).
    pub fn load_snapshot(&self, name: &str) -> Result<(Id, Snapshot)> {
        let plain = self.read_sealed(FileType::Snapshot, FileKind::Snapshot, name)?;
        let snap = Snapshot::decode(&plain).map_err(corrupt("snapshot", name))?;
        let id = name.parse().map_err(|_| {
            corrupt("snapshot", name)(kura_core::FormatError::invalid("snapshot", "bad name"))
        })?;
        Ok((id, snap))
    }

    /// Finds a snapshot by unique id prefix, or `latest` for the newest.
    pub fn find_snapshot(&self, spec: &str) -> Result<(Id, Snapshot)> {
        self.find_snapshot_where(spec, |_| true)
    }

    /// [`Repository::find_snapshot`] among the snapshots `considered` accepts: `latest` is the
    /// newest of them, and an id of another is not found.
    pub fn find_snapshot_where(
        &self,
        spec: &str,
        considered: impl Fn(&Snapshot) -> bool,
    ) -> Result<(Id, Snapshot)> {
        if spec == "latest" {
            return self
                .readable_snapshots()?
                .0
                .into_iter()
                .rfind(|(_, s)| considered(s))
                .ok_or_else(|| RepoError::NoSnapshot(spec.into()));
        }
        let found = self.load_snapshot(&self.snapshot_file(spec)?)?;
        match considered(&found.1) {
            true => Ok(found),
            false => Err(RepoError::NoSnapshot(spec.into())),
        }
    }

    /// The snapshot another names as its base: by id, or, if that one was rewritten (its
    /// tags changed, or repaired), the one that had that id first.
    pub fn find_base(&self, base: &Id) -> Result<(Id, Snapshot)> {
        match self.find_snapshot(&base.to_hex()) {
            Err(RepoError::NoSnapshot(spec)) => self
                .readable_snapshots()?
                .0
                .into_iter()
                .find(|(_, s)| s.original == Some(*base))
                .ok_or(RepoError::NoSnapshot(spec)),
            found => found,
        }
    }

    /// The name of the one snapshot file whose name starts with `spec`, without reading it
    /// (a damaged one can be named too).
    pub fn snapshot_file(&self, spec: &str) -> Result<String> {
        let spec_lc = spec.to_ascii_lowercase();
        let matches: Vec<String> = self
            .backend
            .list(FileType::Snapshot)?
            .into_iter()
            .filter(|n| !spec_lc.is_empty() && n.starts_with(&spec_lc))
            .collect();
        match <[String; 1]>::try_from(matches) {
            Ok([one]) => Ok(one),
            Err(m) if m.is_empty() => Err(RepoError::NoSnapshot(spec.into())),
            Err(_) => Err(RepoError::AmbiguousSnapshot(spec.into())),
        }
    }

    /// Removes a snapshot file by name, readable or not.
    pub fn remove_snapshot_file(&self, name: &str) -> Result<()> {
        Ok(self.backend.remove(FileType::Snapshot, name)?)
    }

    /// What is to take the place of snapshot `old` (read as `s`) once changed: the same, keeping
    /// the first id it had as `original` (what other snapshots name as their base), sealed by
    /// `device` if the device that made it has since been removed.
    pub fn successor(&self, old: Id, s: &Snapshot, device: DeviceId) -> Snapshot {
        let mut new = Snapshot {
            original: s.original.or(Some(old)),
            ..s.clone()
        };
        if self.require_device(new.device).is_err() {
            new.device = device;
        }
        new
    }

    /// Puts `new` in the place of snapshot `old`: the new file first, then the old one goes,
    /// so a cut in between leaves both, never neither.
    pub fn replace_snapshot(&self, old: &Id, new: &Snapshot) -> Result<Id> {
        let id = self.save_snapshot(new)?;
        self.remove_snapshot(old)?;
        Ok(id)
    }

    /// Removes a snapshot.
    pub fn remove_snapshot(&self, id: &Id) -> Result<()> {
        Ok(self.backend.remove(FileType::Snapshot, &id.to_hex())?)
    }

    /// Reads, decrypts and verifies one blob.
    pub fn read_blob(&self, index: &MasterIndex, id: &Id) -> Result<Vec<u8>> {
        let (pack_id, entry) = index.locate(id).ok_or(RepoError::MissingBlob(*id))?;
        let name = pack_id.to_hex();
        let sealed = self.backend.read_at(
            FileType::Pack,
            &name,
            entry.offset as u64,
            entry.length as usize,
        )?;
        self.open_blob(&name, &pack_id, entry, &sealed, index)
    }

    /// Decrypts and verifies a sealed blob read from `pack`.
    pub fn open_blob(
        &self,
        pack_name: &str,
        pack_id: &Id,
        entry: &pack::Entry,
        sealed: &[u8],
        index: &MasterIndex,
    ) -> Result<Vec<u8>> {
        let device = index.pack_device(pack_id).ok_or_else(|| {
            corrupt("pack", pack_name)(kura_core::FormatError::invalid(
                "pack",
                "index does not say which device sealed it",
            ))
        })?;
        let key = self.device_key(device).ok_or_else(|| {
            corrupt("pack", pack_name)(kura_core::FormatError::invalid(
                "pack",
                format!("sealed by unknown device {device}"),
            ))
        })?;
        pack::open_blob(key, &self.blob_key, entry, sealed).map_err(|e| RepoError::Corrupt {
            what: "blob",
            name: format!("{} in pack {}", entry.id.short(), pack_name),
            source: e,
        })
    }

    /// Reads and decodes a tree.
    pub fn load_tree(&self, index: &MasterIndex, id: &Id) -> Result<Tree> {
        let bytes = self.read_blob(index, id)?;
        Tree::decode(&bytes).map_err(corrupt("tree", id.short()))
    }

    /// Every stored pack's name and size.
    pub fn stored_packs(&self) -> Result<HashMap<String, u64>> {
        let mut out = HashMap::new();
        for name in self.backend.list(FileType::Pack)? {
            let size = self.backend.size(FileType::Pack, &name)?;
            out.insert(name, size);
        }
        Ok(out)
    }

    /// Reads the header of a stored pack: which device sealed it and its entries.
    pub fn read_pack_header(&self, name: &str) -> Result<(DeviceId, Vec<pack::Entry>)> {
        let size = self.backend.size(FileType::Pack, name)?;
        if size > pack::MAX_SIZE {
            return Err(corrupt("pack", name)(kura_core::FormatError::invalid(
                "pack",
                format!("{size} bytes is larger than any pack"),
            )));
        }
        if size < pack::TRAILER_LEN as u64 {
            return Err(corrupt("pack", name)(kura_core::FormatError::Truncated(
                "pack",
            )));
        }
        let tail = self.backend.read_at(
            FileType::Pack,
            name,
            size - pack::TRAILER_LEN as u64,
            pack::TRAILER_LEN,
        )?;
        let trailer = pack::read_trailer(&tail, size).map_err(corrupt("pack", name))?;
        let key = self.device_key(trailer.device).ok_or_else(|| {
            corrupt("pack", name)(kura_core::FormatError::invalid(
                "pack",
                "sealed by an unknown device",
            ))
        })?;
        let header_start = size - pack::TRAILER_LEN as u64 - trailer.header_len as u64;
        let sealed = self.backend.read_at(
            FileType::Pack,
            name,
            header_start,
            trailer.header_len as usize,
        )?;
        let entries = pack::decode_header(key, &trailer, &sealed, header_start)
            .map_err(corrupt("pack", name))?;
        Ok((trailer.device, entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalDir;

    #[test]
    fn a_newer_format_is_told_only_when_its_tag_checks() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalDir::new(dir.path().join("repo")));
        let kdf = KdfParams::insecure_for_tests();
        let (repo, _, _) = Repository::init(backend.clone(), b"pass", kdf, "d", "h").unwrap();
        // A newer kura's config, authenticated with the repository's key.
        let mut newer = repo.config().clone();
        newer.version = FORMAT_VERSION + 1;
        newer.mac = repo.common.config_mac(&newer.canonical());
        let json = serde_json::to_vec(&newer).unwrap();
        backend.write(FileType::Config, "config", &json).unwrap();
        let credential = Credential::Passphrase(b"pass".to_vec());
        let e = Repository::open(backend.clone(), &credential)
            .err()
            .unwrap();
        assert!(matches!(e, RepoError::NewerFormat { found, .. } if found == FORMAT_VERSION + 1));
        // The same number without the key's tag is not believed.
        newer.mac = repo.config().mac.clone();
        let json = serde_json::to_vec(&newer).unwrap();
        backend.write(FileType::Config, "config", &json).unwrap();
        let e = Repository::open(backend, &credential).err().unwrap();
        assert!(matches!(e, RepoError::Corrupt { .. }), "{e}");
    }
}

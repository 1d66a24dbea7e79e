//! Where users' objects live (`docs/requirements/placement.md` requirements 3-8): every object the
//! service accepts is stored as two copies on the storage sites the placement rule picks for
//! the user, each sealed under its site's key, and recorded in the catalog.
//!
//! - A site is written only after it has proved its identity (re-checked every
//!   [`VERIFIED_FOR`]); a site that fails is counted and placed last.
//! - A site that cannot be written is set aside for [`DOWN_FOR`] and the copy goes to the next
//!   site by the rule; with fewer than two usable sites the object is stored degraded.
//! - Reads go to the primary and fall back to the other copy; a copy that fails its check is
//!   marked failed.
//! - [`Storage::place_all`] brings every object to the placement the rule gives now (after a site
//!   returns, a risk feed, or a change of level or home region): it copies, checks, and only
//!   then deletes the old copy, so an interrupted run never leaves fewer good copies.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use kura_placement::envelope::Keyring;
use kura_placement::{Candidate, Degraded, place};
use kura_repo::transfer::sha256_hex;
use kura_repo::{Backend, FileType, LocalDir};
use kura_sites::{Site, SiteError, Source};

use crate::registry::catalog::ObjectEntry;
use crate::registry::{Registry, RegistryError, User};
use crate::sites::{Placement, PlacementConfig};
use kura_core::conditions::{CopyCondition, CopyStatus};

mod verify;
pub use verify::{Scope, Verified};

/// How long a site's proof of identity is trusted before it is checked again.
pub const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a site that failed is left out of placement before it is tried again.
pub const DOWN_FOR: std::time::Duration = std::time::Duration::from_secs(10);
/// Added to a site's risk per counted authentication failure: larger than any risk a feed can
/// give, so a site that has failed is used only when nothing else is.
pub const FAILURE_PENALTY: f64 = 1e9;
/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No such object.
    #[error("not found")]
    NotFound,
    /// A range that starts past the object's end.
    #[error("the range starts past the end")]
    OutOfRange,
    /// No site could take the object.
    #[error("no storage site is available: {0}")]
    NoSite(String),
    /// No copy is good any more: the object is lost.
    #[error("{0} is lost: no copy of it is good")]
    Lost(String),
    /// No copy could be read.
    #[error("no copy of {name} could be read: {reasons}")]
    Unreadable {
        /// Which object.
        name: String,
        /// What each site said.
        reasons: String,
    },
    /// The catalog failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Files of the service failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A notice could not be kept or queued.
    #[error(transparent)]
    Notice(#[from] crate::notice::NoticeError),
    /// Another maintenance run (placement, integrity check, settlement) holds the lock.
    #[error("another placement run or integrity check is in progress; try again when it ends")]
    Busy,
}

/// What a placement run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PlacementRun {
    /// Objects looked at.
    pub objects: u64,
    /// Copies written to a new site.
    pub copied: u64,
    /// Old copies deleted once their replacements were good.
    pub deleted: u64,
    /// Objects still short of their placement (a site is down).
    pub pending: u64,
    /// Objects with no readable copy.
    pub unreadable: u64,
    /// Users told of new conditions.
    pub notified: u64,
}

#[derive(Debug, Default)]
struct Health {
    verified: Option<Instant>,
    down_until: Option<Instant>,
    /// The last check found the site not to be the configured one.
    impostor: bool,
}

/// One maintenance run's hold: the in-process lock and the data directory's lock file.
struct Maintenance<'a> {
    _one: tokio::sync::MutexGuard<'a, ()>,
    _file: std::fs::File,
}

/// What a read wants of an object.
#[derive(Debug, Clone, Copy)]
enum Part {
    Whole,
    /// Bytes `start..end`.
    Range(u64, u64),
}

/// Where an object of a user lives on every site.
pub fn site_path(user: i64, kind: FileType, name: &str) -> String {
    format!("users/{user}/{}/{name}", kind.name())
}

fn degraded_name(d: Degraded) -> String {
    serde_json::to_value(d)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A site as the placement rule sees it, from a user's candidates (a site no longer among
/// them counts as the riskiest).
fn as_candidate<'a>(candidates: &'a [(String, String, f64)], site: &'a str) -> Candidate<'a> {
    match candidates.iter().find(|c| c.0 == site) {
        Some((site, region, risk)) => Candidate {
            site,
            region,
            risk: *risk,
            usable: true,
        },
        None => Candidate {
            site,
            region: "",
            risk: f64::INFINITY,
            usable: false,
        },
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes of an object read and sent at a time when it is too long to hold whole.
pub const READ_WINDOW: u64 = 4 << 20;

/// Where a read a window at a time has got to.
struct Windows {
    storage: Arc<Storage>,
    user: i64,
    kind: FileType,
    entry: ObjectEntry,
    at: u64,
    end: u64,
    /// The checksum so far, when the whole object is read.
    sha: Option<ring::digest::Context>,
}

impl Windows {
    async fn next(mut self) -> Result<Option<(Bytes, Windows)>, StorageError> {
        if self.at >= self.end {
            return Ok(None);
        }
        let end = (self.at + READ_WINDOW).min(self.end);
        // Looked up again for each window: a copy found damaged by the last one is marked
        // failed, and this one goes to the other copy first.
        let (user, kind) = (self.user, self.kind);
        let entry = self.storage.entry(user, kind, &self.entry.name).await?;
        let part = self
            .storage
            .get_range(user, kind, &entry, self.at, end)
            .await?;
        if part.len() as u64 != end - self.at {
            return Err(self.unreadable("it ended early"));
        }
        self.at = end;
        if let Some(sha) = &mut self.sha {
            sha.update(&part);
            if self.at == self.end {
                let sum = kura_core::id::hex(sha.clone().finish().as_ref());
                if !sum.eq_ignore_ascii_case(&self.entry.sha256) {
                    return Err(self.unreadable("its parts are not the object stored"));
                }
            }
        }
        Ok(Some((part, self)))
    }

    fn unreadable(&self, why: &str) -> StorageError {
        StorageError::Unreadable {
            name: format!("{}/{}", self.entry.kind, self.entry.name),
            reasons: why.to_string(),
        }
    }
}

/// The service's sites, keyring and catalog, as one place to store and read objects.
pub struct Storage {
    data_dir: PathBuf,
    placement: RwLock<Placement>,
    sites: Vec<Arc<Site>>,
    keyring: RwLock<(Option<SystemTime>, Arc<Keyring>)>,
    health: Mutex<HashMap<String, Health>>,
    registry: Arc<Registry>,
    maintaining: tokio::sync::Mutex<()>,
    /// Authentication failures of a site at which its users are told.
    fraud_threshold: u64,
    /// How long a maintenance run waits for another to end.
    patience: std::time::Duration,
}

impl Storage {
    /// Opens the configured sites, making the marker of a new one and a key for every one.
    /// A site that cannot be reached now is tried again when it is needed.
    pub async fn open(
        data_dir: &Path,
        config: &PlacementConfig,
        registry: Arc<Registry>,
    ) -> Result<Storage, StorageError> {
        let placement = Placement::load(data_dir, config)?;
        let keyring = placement.keyring_for_sites()?;
        let mut sites = Vec::new();
        for c in &placement.sites {
            let site = Site::open(c.clone())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            if let Err(e) = site.initialize().await {
                tracing::warn!("{e}");
            }
            sites.push(Arc::new(site));
        }
        Ok(Storage {
            data_dir: data_dir.to_path_buf(),
            keyring: RwLock::new((placement.keyring_changed(), Arc::new(keyring))),
            placement: RwLock::new(placement),
            sites,
            health: Mutex::new(HashMap::new()),
            registry,
            maintaining: tokio::sync::Mutex::new(()),
            fraud_threshold: config.fraud_threshold.unwrap_or(1).max(1),
            patience: std::time::Duration::ZERO,
        })
    }

    /// The service's database.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The service's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A user's level on `day` by the rule table (the default level without a contract).
    pub fn level_of(&self, user: &User, day: jiff::civil::Date) -> String {
        let placement = self.placement.read().unwrap_or_else(|e| e.into_inner());
        match &user.contract {
            Some(c) => placement.level_of(c, day).to_string(),
            None => crate::sites::DEFAULT_LEVEL.to_string(),
        }
    }

    fn site(&self, id: &str) -> Option<&Arc<Site>> {
        self.sites.iter().find(|s| s.id() == id)
    }

    /// The keyring, read again if the operator rotated a key since.
    fn keyring(&self) -> Result<Arc<Keyring>, StorageError> {
        let placement = self.placement.read().unwrap_or_else(|e| e.into_inner());
        let changed = placement.keyring_changed();
        {
            let k = self.keyring.read().unwrap_or_else(|e| e.into_inner());
            if k.0 == changed {
                return Ok(k.1.clone());
            }
        }
        let ring = Arc::new(placement.keyring()?);
        *self.keyring.write().unwrap_or_else(|e| e.into_inner()) = (changed, ring.clone());
        Ok(ring)
    }

    /// Runs a database call on the blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || f(&registry))
            .await
            .map_err(std::io::Error::other)?
            .map_err(StorageError::from)
    }

    /// Whether a site may be written now: not set aside, and its identity proved lately.
    async fn ready(&self, site: &Site) -> bool {
        {
            let h = lock(&self.health);
            if let Some(h) = h.get(site.id()) {
                if h.down_until.is_some_and(|t| t > Instant::now()) {
                    return false;
                }
                if h.verified.is_some_and(|t| t.elapsed() < VERIFIED_FOR) {
                    return true;
                }
            }
        }
        self.prove(site).await.is_ok()
    }

    /// Has a site prove its identity now, and records the outcome: trusted for
    /// [`VERIFIED_FOR`], or set aside (a failed authentication counted).
    async fn prove(&self, site: &Site) -> Result<(), SiteError> {
        match site.authenticate().await {
            Ok(()) => {
                let mut h = lock(&self.health);
                let e = h.entry(site.id().to_string()).or_default();
                e.verified = Some(Instant::now());
                e.down_until = None;
                e.impostor = false;
                Ok(())
            }
            Err(e) => {
                self.set_aside(site.id(), &e).await;
                Err(e)
            }
        }
    }

    /// Leaves a site out for a while after it failed; counts a failed authentication.
    async fn set_aside(&self, site: &str, e: &SiteError) {
        tracing::warn!("{e}");
        let impostor = matches!(e, SiteError::Authentication { .. });
        {
            let mut h = lock(&self.health);
            let entry = h.entry(site.to_string()).or_default();
            entry.down_until = Some(Instant::now() + DOWN_FOR);
            entry.verified = None;
            entry.impostor |= impostor;
        }
        if impostor {
            let (id, reason) = (site.to_string(), e.to_string());
            match self
                .blocking(move |s| s.count_site_failure(&id, &reason))
                .await
            {
                Ok(n) => {
                    tracing::warn!(site, failures = n, "site authentication failure counted");
                    if n == self.fraud_threshold
                        && let Err(err) = self.fraud_alert(site, n, &e.to_string()).await
                    {
                        tracing::error!("telling the users of {site}'s failures: {err}");
                    }
                }
                Err(err) => tracing::error!("counting a failure of {site}: {err}"),
            }
        }
    }

    /// Tells every user with data at a site that it has failed to prove its identity as
    /// often as the operator's threshold allows, and records it in their incident history.
    async fn fraud_alert(&self, site: &str, count: u64, reason: &str) -> Result<(), StorageError> {
        tracing::error!(site, failures = count, "site reached the fraud threshold");
        let id = site.to_string();
        let users = self.blocking(move |s| s.users_on_site(&id)).await?;
        let summary = format!(
            "site {site} failed to prove its identity ({count} failure(s), the last: {reason}); \
             no more of your data is written there, and what it holds is being placed elsewhere"
        );
        for user_id in users {
            let user = self.blocking(move |s| s.user_by_id(user_id)).await?;
            let (sites, text) = (vec![site.to_string()], summary.clone());
            let detail = serde_json::json!({"site": site, "failures": count, "reason": reason});
            self.blocking(move |s| {
                s.add_incident(&crate::registry::integrity::NewIncident {
                    user: user_id,
                    kind: crate::registry::integrity::IncidentKind::FraudulentSite,
                    object: None,
                    sites: &sites,
                    summary: &text,
                    detail,
                })
            })
            .await?;
            crate::notice::send(
                &self.registry,
                &self.data_dir,
                &user,
                "fraudulent_site",
                &format!("Storage site {site} failed authentication"),
                &format!(
                    "A storage site holding copies of your data, {site}, could not prove it is \
                     the site the service configured.\n\n{summary}.\n\nYour data stays \
                     readable from its other copy. `kura conditions` shows where each object \
                     is kept.\n"
                ),
            )?;
        }
        Ok(())
    }

    /// The sites a user may use, with their risk now (penalised by counted failures).
    async fn candidates(&self, user: &User) -> Result<Vec<(String, String, f64)>, StorageError> {
        let failures: HashMap<String, u64> = self.blocking(|s| s.site_failures()).await?;
        // A feed the operator imported since counts from the next object on.
        self.placement
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .reload_feed()?;
        let level = self.level_of(user, jiff::Zoned::now().date());
        let placement = self.placement.read().unwrap_or_else(|e| e.into_inner());
        Ok(placement
            .sites_of_level(&level)
            .into_iter()
            .map(|s| {
                let penalty = failures.get(&s.id).copied().unwrap_or(0) as f64 * FAILURE_PENALTY;
                (s.id.clone(), s.region.clone(), placement.risk(s) + penalty)
            })
            .collect())
    }

    /// The rule's placement for a user over the sites `usable` admits.
    fn placement_for(
        user: &User,
        candidates: &[(String, String, f64)],
        usable: impl Fn(&str) -> bool,
    ) -> kura_placement::Placement {
        let table: Vec<Candidate> = candidates
            .iter()
            .map(|(site, region, risk)| Candidate {
                site,
                region,
                risk: *risk,
                usable: usable(site),
            })
            .collect();
        let home = user
            .contract
            .as_ref()
            .map_or("", |c| c.home_region.as_str());
        place(&table, home)
    }

    /// Stores an object of a user as two copies and records where. `sha256` is the object's
    /// checksum (hex), already checked against it. The object is read from `object` a block
    /// at a time for each site, so a body received into a file is never held whole.
    pub async fn put(
        &self,
        user: &User,
        kind: FileType,
        name: &str,
        object: Arc<dyn Source>,
        sha256: String,
    ) -> Result<(), StorageError> {
        let path = site_path(user.id, kind, name);
        let candidates = self.candidates(user).await?;
        let mut ready = HashSet::new();
        for (id, _, _) in &candidates {
            if let Some(site) = self.site(id)
                && self.ready(site).await
            {
                ready.insert(id.clone());
            }
        }
        let keyring = self.keyring()?;
        let mut done: Vec<CopyCondition> = Vec::new();
        let mut failed: Vec<CopyCondition> = Vec::new();
        let degraded = loop {
            let p = Self::placement_for(user, &candidates, |s| ready.contains(s));
            let todo: Vec<Arc<Site>> = [&p.primary, &p.secondary]
                .into_iter()
                .flatten()
                .filter(|s| !done.iter().any(|c| &c.site == *s))
                .filter_map(|s| self.site(s).cloned())
                .collect();
            if todo.is_empty() || done.len() >= 2 {
                break p.degraded;
            }
            let mut writes = tokio::task::JoinSet::new();
            for site in todo {
                let (keyring, object, path) = (keyring.clone(), object.clone(), path.clone());
                writes.spawn(async move {
                    let Some(key) = keyring.latest(site.id()) else {
                        let e = SiteError::Config {
                            site: site.id().to_string(),
                            message: "no key in the keyring".into(),
                        };
                        return (site, Err(e));
                    };
                    let r = site.put((key.0, &key.1), &path, object).await;
                    (site, r)
                });
            }
            while let Some(joined) = writes.join_next().await {
                let (site, result) = joined.map_err(std::io::Error::other)?;
                match result {
                    Ok(copy) => done.push(copy),
                    Err(e) => {
                        ready.remove(site.id());
                        failed.push(CopyCondition {
                            site: site.id().to_string(),
                            region: site.region().to_string(),
                            status: CopyStatus::Failed,
                            algorithm: kura_placement::envelope::ALGORITHM.into(),
                            key_ref: String::new(),
                            detail: Some(e.to_string()),
                        });
                        self.set_aside(site.id(), &e).await;
                    }
                }
            }
        };
        if done.is_empty() {
            let why: Vec<String> = failed.iter().filter_map(|c| c.detail.clone()).collect();
            return Err(StorageError::NoSite(if why.is_empty() {
                "no site is usable".into()
            } else {
                why.join("; ")
            }));
        }
        // Primary first: the safest site that took a copy, in the rule's order.
        done.sort_by(|a, b| {
            kura_placement::place::safer(
                &as_candidate(&candidates, &a.site),
                &as_candidate(&candidates, &b.site),
            )
        });
        let degraded = match done.len() {
            1 => Some(Degraded::OneCopy),
            _ => degraded.filter(|d| *d == Degraded::SecondaryInHomeRegion),
        };
        let mut copies = done;
        copies.extend(failed);
        let (size, recorded) = (object.size(), copies.clone());
        let (user_id, kind_name, object) = (user.id, kind.name(), name.to_string());
        let degraded_text = degraded.map(degraded_name);
        let old = self
            .blocking(move |s| {
                s.record_object(
                    user_id,
                    kind_name,
                    &object,
                    size,
                    &sha256,
                    degraded_text.as_deref(),
                    &recorded,
                )
            })
            .await?;
        if let Some(old) = &old {
            // Copies of what this replaced on sites that did not take the new one.
            for stale in old.copies.iter().filter(|c| {
                !copies
                    .iter()
                    .any(|n| n.site == c.site && n.status == CopyStatus::Ok)
            }) {
                self.delete_copy(&stale.site, &path).await;
            }
        }
        Ok(())
    }

    /// Deletes one copy; one that cannot be deleted now is noted and deleted later.
    async fn delete_copy(&self, site: &str, path: &str) {
        let result = match self.site(site) {
            Some(s) => s.delete(path).await,
            None => return,
        };
        if let Err(e) = result {
            tracing::warn!("{e}; deleting it later");
            let (site, path) = (site.to_string(), path.to_string());
            if let Err(e) = self.blocking(move |s| s.add_orphan(&site, &path)).await {
                tracing::error!("noting a copy to delete: {e}");
            }
        }
    }

    /// Reads a user's object from its primary, or from the other copy; a copy that fails its
    /// check is marked failed (the next placement run repairs it).
    pub async fn get(
        &self,
        user: i64,
        kind: FileType,
        entry: &ObjectEntry,
    ) -> Result<Bytes, StorageError> {
        let path = site_path(user, kind, &entry.name);
        self.read_copies(user, entry, &path, Part::Whole).await
    }

    /// Reads bytes `start..end` of a user's object (fewer if it ends sooner), from the
    /// segments of one copy that hold them.
    pub async fn get_range(
        &self,
        user: i64,
        kind: FileType,
        entry: &ObjectEntry,
        start: u64,
        end: u64,
    ) -> Result<Bytes, StorageError> {
        if start >= entry.size {
            return Err(StorageError::OutOfRange);
        }
        let part = Part::Range(start, end.min(entry.size));
        let path = site_path(user, kind, &entry.name);
        self.read_copies(user, entry, &path, part).await
    }

    /// Reads bytes `start..end` of a user's object (fewer if it ends sooner) a window of
    /// [`READ_WINDOW`] bytes at a time, for a part too long to hold at once. Each window comes
    /// from a copy that opens, as [`Storage::get_range`] reads it. When the whole object is
    /// read, its checksum is checked before the last window is given: a read that mixed two
    /// versions of the object (it was replaced meanwhile) fails rather than ends.
    pub fn windows(
        self: &Arc<Self>,
        user: i64,
        kind: FileType,
        entry: ObjectEntry,
        start: u64,
        end: u64,
    ) -> Result<impl futures_util::Stream<Item = Result<Bytes, StorageError>> + use<>, StorageError>
    {
        if start >= entry.size && entry.size > 0 {
            return Err(StorageError::OutOfRange);
        }
        let end = end.min(entry.size);
        let whole = start == 0 && end == entry.size;
        let reading = Windows {
            storage: self.clone(),
            user,
            kind,
            at: start,
            end,
            sha: whole.then(|| ring::digest::Context::new(&ring::digest::SHA256)),
            entry,
        };
        Ok(futures_util::stream::try_unfold(reading, Windows::next))
    }

    /// The catalog's entry of a user's object.
    pub async fn entry(
        &self,
        user: i64,
        kind: FileType,
        name: &str,
    ) -> Result<ObjectEntry, StorageError> {
        let object = name.to_string();
        self.blocking(move |s| s.object(user, kind.name(), &object))
            .await?
            .ok_or(StorageError::NotFound)
    }

    async fn read_copies(
        &self,
        user: i64,
        entry: &ObjectEntry,
        path: &str,
        part: Part,
    ) -> Result<Bytes, StorageError> {
        if entry.good_sites().next().is_none() {
            return Err(StorageError::Lost(format!("{}/{}", entry.kind, entry.name)));
        }
        let keyring = self.keyring()?;
        let mut reasons = Vec::new();
        for copy in entry.copies.iter().filter(|c| c.status == CopyStatus::Ok) {
            let Some(site) = self.site(&copy.site) else {
                reasons.push(format!("site {} is no longer configured", copy.site));
                continue;
            };
            let read = match part {
                Part::Whole => site.get(&keyring, path).await.map(Bytes::from),
                Part::Range(a, b) => site.get_range(&keyring, path, entry.size, a, b).await,
            };
            let damage = match read {
                // The envelope proves the copy is this site's copy of this name; the checksum,
                // that it is the object the catalog has (not an older one of the same name).
                Ok(data)
                    if matches!(part, Part::Range(..)) || sha256_hex(&data) == entry.sha256 =>
                {
                    return Ok(data);
                }
                Ok(_) => format!(
                    "site {}: {path}: opens but is not the object stored",
                    copy.site
                ),
                Err(e @ (SiteError::NotFound { .. } | SiteError::Damaged { .. })) => e.to_string(),
                Err(e) => {
                    reasons.push(e.to_string());
                    self.set_aside(site.id(), &e).await;
                    continue;
                }
            };
            tracing::warn!("{damage}; reading the other copy");
            reasons.push(damage.clone());
            let failed = CopyCondition {
                status: CopyStatus::Failed,
                detail: Some(damage),
                ..copy.clone()
            };
            let (kind, name, sum) = (entry.kind.clone(), entry.name.clone(), entry.sha256.clone());
            let rank = entry
                .copies
                .iter()
                .position(|c| c.site == copy.site)
                .unwrap_or(0);
            self.blocking(move |s| s.set_copy(user, &kind, &name, &sum, rank, &failed))
                .await?;
        }
        Err(StorageError::Unreadable {
            name: format!("{}/{}", entry.kind, entry.name),
            reasons: if reasons.is_empty() {
                "it has no good copy".into()
            } else {
                reasons.join("; ")
            },
        })
    }

    /// Removes a user's object and its copies; returns its size.
    pub async fn delete(&self, user: i64, kind: FileType, name: &str) -> Result<u64, StorageError> {
        let object = name.to_string();
        let entry = self
            .blocking(move |s| s.remove_object(user, kind.name(), &object))
            .await?
            .ok_or(StorageError::NotFound)?;
        let path = site_path(user, kind, name);
        for c in &entry.copies {
            self.delete_copy(&c.site, &path).await;
        }
        Ok(entry.size)
    }

    /// Holds off other maintenance runs (placement, integrity checks), in this process and
    /// in others on the same data directory, until the guard is dropped. Waits for a run in
    /// progress as long as [`Storage::wait_for_others`] allows (by default not at all).
    async fn maintenance(&self) -> Result<Maintenance<'_>, StorageError> {
        let deadline = Instant::now() + self.patience;
        let pause = std::time::Duration::from_millis(200);
        let one = loop {
            match self.maintaining.try_lock() {
                Ok(g) => break g,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(pause).await,
                Err(_) => return Err(StorageError::Busy),
            }
        };
        let file = std::fs::File::create(self.data_dir.join("maintenance.lock"))?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(pause).await,
                Err(_) => return Err(StorageError::Busy),
            }
        }
        Ok(Maintenance {
            _one: one,
            _file: file,
        })
    }

    /// Makes maintenance runs wait up to `patience` for one in progress (an operator's
    /// command) instead of giving up at once (the service's periodic runs).
    pub fn wait_for_others(mut self, patience: std::time::Duration) -> Storage {
        self.patience = patience;
        self
    }

    /// Brings every user's objects to the placement the rule gives now, deletes copies left
    /// from sites that were down, and tells users whose conditions changed.
    pub async fn place_all(&self) -> Result<PlacementRun, StorageError> {
        self.place_users(None).await
    }

    /// [`Storage::place_all`] for one user only (or everyone): what the settlement runs after
    /// a user's check, so copies the check could not repair in place are stored again.
    pub async fn place_users(&self, only: Option<i64>) -> Result<PlacementRun, StorageError> {
        let _one = self.maintenance().await?;
        // Every site proves its identity before anything is moved: one that fails is left out
        // of the targets (and counted).
        for site in &self.sites {
            self.ready(site).await;
        }
        self.placement
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .reload_feed()?;
        for (site, path) in self.blocking(|s| s.orphans()).await? {
            if let Some(s) = self.site(&site)
                && s.delete(&path).await.is_ok()
            {
                self.blocking(move |st| st.remove_orphan(&site, &path))
                    .await?;
            }
        }
        let mut report = PlacementRun::default();
        let users = self.blocking(|s| s.users()).await?;
        for user in users.iter().filter(|u| only.is_none_or(|id| u.id == id)) {
            let deleted_before = report.deleted;
            self.place_user(user, &mut report).await?;
            // Repairs in place are not news; copies that left a site are.
            if report.deleted > deleted_before {
                let entries = {
                    let id = user.id;
                    self.blocking(move |s| s.objects(id, None)).await?
                };
                crate::notice::send(
                    &self.registry,
                    &self.data_dir,
                    user,
                    "placement",
                    "Your data was moved: new storage conditions",
                    &crate::notice::conditions_text(
                        "Your data was moved to the sites the placement rule now gives (a site \
                         returned, risk scores changed, or your level or home region changed).",
                        &entries,
                    ),
                )?;
                report.notified += 1;
            }
        }
        Ok(report)
    }

    async fn place_user(&self, user: &User, report: &mut PlacementRun) -> Result<(), StorageError> {
        let candidates = self.candidates(user).await?;
        let impostors: HashSet<String> = lock(&self.health)
            .iter()
            .filter(|(_, h)| h.impostor)
            .map(|(id, _)| id.clone())
            .collect();
        // Sites that are only unreachable stay in the target: their copies wait for them.
        let target = Self::placement_for(user, &candidates, |s| !impostors.contains(s));
        let id = user.id;
        let entries = self.blocking(move |s| s.objects(id, None)).await?;
        let keyring = self.keyring()?;
        for entry in entries {
            report.objects += 1;
            let Some(kind) = FileType::from_name(&entry.kind) else {
                continue;
            };
            let path = site_path(user.id, kind, &entry.name);
            // A copy kept as evidence of tampering is never overwritten or deleted: the
            // object's copies go to the next sites by the rule instead.
            let evidence: Vec<&str> = entry
                .copies
                .iter()
                .filter(|c| c.status == CopyStatus::Tampered)
                .map(|c| c.site.as_str())
                .collect();
            let object_target;
            let target = if evidence.is_empty() {
                &target
            } else {
                object_target = Self::placement_for(user, &candidates, |s| {
                    !impostors.contains(s) && !evidence.contains(&s)
                });
                &object_target
            };
            let want: Vec<&String> = [&target.primary, &target.secondary]
                .into_iter()
                .flatten()
                .collect();
            let good: Vec<&str> = entry.good_sites().collect();
            let settled = want.iter().all(|s| good.contains(&s.as_str()))
                && entry
                    .copies
                    .iter()
                    .all(|c| want.contains(&&c.site) || c.status == CopyStatus::Tampered);
            if settled {
                continue;
            }
            let mut complete = true;
            let mut data: Option<Bytes> = None;
            for (rank, site_id) in want.iter().enumerate() {
                if good.contains(&site_id.as_str()) {
                    continue;
                }
                let Some(site) = self.site(site_id) else {
                    complete = false;
                    continue;
                };
                if !self.ready(site).await {
                    complete = false;
                    continue;
                }
                if data.is_none() {
                    match self.read_copies(user.id, &entry, &path, Part::Whole).await {
                        Ok(d) => data = Some(d),
                        Err(e) => {
                            tracing::error!(user = user.id, "{e}");
                            report.unreadable += 1;
                            complete = false;
                            break;
                        }
                    }
                }
                let Some(bytes) = &data else { break };
                let Some(key) = keyring.latest(site_id) else {
                    complete = false;
                    continue;
                };
                match site
                    .put((key.0, &key.1), &path, Arc::new(bytes.clone()))
                    .await
                {
                    Ok(copy) => {
                        let (k, n, sum) =
                            (entry.kind.clone(), entry.name.clone(), entry.sha256.clone());
                        let current = self
                            .blocking(move |s| s.set_copy(id, &k, &n, &sum, rank, &copy))
                            .await?;
                        if !current {
                            // Removed or replaced meanwhile: this copy belongs to nothing.
                            self.delete_copy(site_id, &path).await;
                            complete = false;
                            break;
                        }
                        report.copied += 1;
                    }
                    Err(e) => {
                        self.set_aside(site_id, &e).await;
                        complete = false;
                    }
                }
            }
            if !complete {
                report.pending += 1;
                continue;
            }
            for old in entry
                .copies
                .iter()
                .filter(|c| !want.contains(&&c.site) && c.status != CopyStatus::Tampered)
            {
                self.delete_copy(&old.site, &path).await;
                let (k, n, s) = (entry.kind.clone(), entry.name.clone(), old.site.clone());
                self.blocking(move |st| st.drop_copy(id, &k, &n, &s))
                    .await?;
                report.deleted += 1;
            }
            let degraded = match want.len() {
                0 | 1 => Some(Degraded::OneCopy),
                _ => target.degraded,
            }
            .map(degraded_name);
            let (k, n) = (entry.kind.clone(), entry.name.clone());
            self.blocking(move |s| s.set_degraded(id, &k, &n, degraded.as_deref()))
                .await?;
        }
        Ok(())
    }

    /// Stores on the sites the repositories an earlier version kept in one directory per user
    /// (`DATA/users/<id>/repo`), then renames each to `repo.imported` for the operator to
    /// remove; returns how many objects it stored. An interrupted import starts over and skips
    /// what the catalog has.
    pub async fn import_local_repositories(&self) -> Result<u64, StorageError> {
        let mut imported = 0;
        for user in self.blocking(|s| s.users()).await? {
            let root = crate::user_dir(&self.data_dir, user.id).join("repo");
            if !root.is_dir() {
                continue;
            }
            tracing::info!(user = user.id, "storing {} on the sites", root.display());
            let dir = LocalDir::new(&root);
            // Locks belong to processes of the old service's time; none is alive now.
            for t in FileType::ALL.into_iter().filter(|t| *t != FileType::Lock) {
                let d = dir.clone();
                let names = tokio::task::spawn_blocking(move || d.list(t))
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(std::io::Error::other)?;
                for name in names {
                    let (id, n) = (user.id, name.clone());
                    if self
                        .blocking(move |s| s.object(id, t.name(), &n))
                        .await?
                        .is_some()
                    {
                        continue;
                    }
                    let (d, n) = (dir.clone(), name.clone());
                    let data = tokio::task::spawn_blocking(move || d.read(t, &n))
                        .await
                        .map_err(std::io::Error::other)?
                        .map_err(std::io::Error::other)?;
                    let sum = sha256_hex(&data);
                    self.put(&user, t, &name, Arc::new(Bytes::from(data)), sum)
                        .await?;
                    imported += 1;
                }
            }
            std::fs::rename(&root, root.with_file_name("repo.imported"))?;
        }
        if imported > 0 {
            tracing::info!(objects = imported, "local repositories stored on the sites");
        }
        Ok(imported)
    }

    /// Each site with its state: id, region, risk now, counted failures, copies held, and
    /// whether it proves its identity now.
    pub async fn sites_report(&self) -> Result<Vec<serde_json::Value>, StorageError> {
        let mut rows = Vec::new();
        for site in &self.sites {
            let status = match self.prove(site).await {
                Ok(()) => "ok".to_string(),
                Err(e) => e.to_string(),
            };
            let id = site.id().to_string();
            let record = self.blocking(move |s| s.site_record(&id)).await?;
            let placement = self.placement.read().unwrap_or_else(|e| e.into_inner());
            let Some(config) = placement.sites.iter().find(|c| c.id == site.id()) else {
                continue;
            };
            rows.push(serde_json::json!({
                "id": config.id, "region": config.region, "risk": placement.risk(config),
                "url": config.url, "status": status, "auth_failures": record.auth_failures,
                "last_failure": record.last_failure.map(|(at, why)| serde_json::json!({"at": at, "reason": why})),
                "copies": record.copies,
            }));
        }
        Ok(rows)
    }
}

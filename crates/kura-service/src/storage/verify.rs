//! Integrity checks (`docs/requirements/placement.md` requirements 9 and 10): every copy of every
//! object is read, its site's envelope removed, and what is inside compared with the checksum
//! recorded when the object was stored ([`kura_placement::integrity`] judges). A copy found wanting
//! is re-read by its site before anything is concluded. Then:
//!
//! - a damaged or missing copy beside a good one is a **media fault**: it is written again from
//!   the good copy and read back;
//! - a copy that opens but holds other bytes is **tampering**: the differing range is recorded,
//!   the copy is kept untouched (and saved under `DATA/evidence`) and the user is told;
//! - with no good copy the object is **lost**: the operator's log and the user hear of it,
//!   with the snapshots that need it.
//!
//! Nothing here needs a user's keys: the service compares ciphertext.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use kura_core::conditions::{CopyCondition, CopyStatus};
use kura_placement::envelope::Keyring;
use kura_placement::integrity::{Finding, Reading, Verdict, differing_range, judge, verdict};
use kura_repo::FileType;
use kura_repo::transfer::sha256_hex;
use kura_sites::SiteError;
use serde::Serialize;

use super::{Storage, StorageError, site_path};
use crate::registry::User;
use crate::registry::catalog::{ObjectEntry, object_label};
use crate::registry::integrity::{Incident, IncidentKind, NewIncident};

/// Objects checked at once.
const PARALLEL: usize = 4;

/// What an integrity check covers.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// One user only.
    pub user: Option<String>,
    /// The share of objects to check, least recently checked first (100 without).
    pub sample: Option<f64>,
}

/// What an integrity check did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verified {
    /// Objects checked.
    pub objects: u64,
    /// Copies read.
    pub copies: u64,
    /// Bytes of copies read (opened).
    pub bytes: u64,
    /// Objects whose copies are all good.
    pub sound: u64,
    /// Damaged or missing copies found.
    pub media_faults: u64,
    /// Of those, copies written again and read back good.
    pub repaired: u64,
    /// Copies found tampered with (a site that failed authentication counts each copy).
    pub tampered: u64,
    /// Objects with no good copy.
    pub lost: u64,
    /// Objects left undecided because a site could not be reached.
    pub unchecked: u64,
    /// Users told of tampering or loss.
    pub notified: u64,
    /// Seconds the check took.
    pub seconds: f64,
    /// What was found, as recorded in the users' incident histories.
    pub incidents: Vec<Incident>,
}

/// One copy as the check read it.
struct Read {
    copy: CopyCondition,
    reading: Reading,
    /// The opened copy, when it opened.
    plain: Option<Bytes>,
    /// The copy as stored, when it opened but is not the object stored (evidence).
    sealed: Option<Bytes>,
}

/// What checking one object found.
#[derive(Default)]
struct ObjectCheck {
    copies: u64,
    bytes: u64,
    verdict: Option<Verdict>,
    media_faults: u64,
    repaired: u64,
    tampered: u64,
    incidents: Vec<Incident>,
}

impl Storage {
    /// Checks the copies of the objects in `scope`, repairs media faults, records tampering
    /// and loss, and tells the users concerned. One maintenance run (this or a placement
    /// run) at a time. `progress` is told (done, total) as objects finish.
    pub async fn verify(
        self: &Arc<Self>,
        scope: &Scope,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Verified, StorageError> {
        let _one = self.maintenance().await?;
        let started = Instant::now();
        let user = match &scope.user {
            Some(name) => {
                let name = name.clone();
                Some(self.blocking(move |s| s.user(&name)).await?)
            }
            None => None,
        };
        let users: BTreeMap<i64, User> = self
            .blocking(|s| s.users())
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        let (only, sample) = (user.map(|u| u.id), scope.sample.unwrap_or(100.0));
        let queue = self.blocking(move |s| s.verify_queue(only, sample)).await?;
        let keyring = self.keyring()?;
        // Each site proves its identity once per run; a site that fails holds only copies that
        // cannot be trusted.
        let mut impostors = BTreeMap::new();
        for site in &self.sites {
            if let Err(e @ SiteError::Authentication { .. }) = self.prove(site).await {
                impostors.insert(site.id().to_string(), e.to_string());
            }
        }
        let impostors = Arc::new(impostors);
        let total = queue.len() as u64;
        let mut report = Verified::default();
        let mut work = queue.into_iter();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < PARALLEL {
                let Some((user, entry)) = work.next() else {
                    break;
                };
                let (this, keyring, impostors) = (self.clone(), keyring.clone(), impostors.clone());
                running.spawn(
                    async move { this.check_object(user, entry, &keyring, &impostors).await },
                );
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let c = done.map_err(std::io::Error::other)??;
            report.objects += 1;
            report.copies += c.copies;
            report.bytes += c.bytes;
            report.media_faults += c.media_faults;
            report.repaired += c.repaired;
            report.tampered += c.tampered;
            match c.verdict {
                Some(Verdict::Sound) => report.sound += 1,
                Some(Verdict::Lost) => report.lost += 1,
                Some(Verdict::Unknown) => report.unchecked += 1,
                Some(Verdict::Faulty) | None => {}
            }
            report.incidents.extend(c.incidents);
            progress(report.objects, total);
        }
        report.incidents.sort_by_key(|i| i.id);
        report.notified = self.tell_users(&users, &report.incidents).await?;
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Reads one copy, and when it is wanting, has its site read it again.
    async fn read_copy(
        &self,
        copy: &CopyCondition,
        path: &str,
        expected: &str,
        keyring: &Keyring,
        impostors: &BTreeMap<String, String>,
    ) -> Read {
        let mut read = Read {
            copy: copy.clone(),
            reading: Reading::Missing,
            plain: None,
            sealed: None,
        };
        if let Some(why) = impostors.get(&copy.site) {
            read.reading = Reading::Impostor(why.clone());
            return read;
        }
        let Some(site) = self.site(&copy.site) else {
            read.reading = Reading::Unreachable(format!("site {} is not configured", copy.site));
            return read;
        };
        let first = match site.fetch(path).await {
            Ok(sealed) => match site.unseal(keyring, path, &sealed) {
                Ok(plain) if sha256_hex(&plain) == expected => {
                    read.reading = Reading::Opened {
                        sha256: expected.to_string(),
                    };
                    read.plain = Some(Bytes::from(plain));
                    return read;
                }
                _ => Some(sealed),
            },
            Err(_) => None,
        };
        // The site checks its own media: the copy read again, and opened again.
        match site.get(keyring, path).await {
            Ok(plain) => {
                let sha256 = sha256_hex(&plain);
                if sha256 != expected {
                    read.sealed = match first {
                        Some(sealed) => Some(sealed),
                        None => site.fetch(path).await.ok(),
                    };
                }
                read.reading = Reading::Opened { sha256 };
                read.plain = Some(Bytes::from(plain));
            }
            Err(SiteError::NotFound { .. }) => read.reading = Reading::Missing,
            Err(SiteError::Damaged { reason, .. }) => read.reading = Reading::Damaged(reason),
            Err(e) => read.reading = Reading::Unreachable(e.to_string()),
        }
        read
    }

    async fn check_object(
        self: Arc<Self>,
        user: i64,
        entry: ObjectEntry,
        keyring: &Arc<Keyring>,
        impostors: &Arc<BTreeMap<String, String>>,
    ) -> Result<ObjectCheck, StorageError> {
        let mut out = ObjectCheck::default();
        let Some(kind) = FileType::from_name(&entry.kind) else {
            return Ok(out);
        };
        let path = site_path(user, kind, &entry.name);
        let object = object_label(&entry.kind, &entry.name);
        // The copies are read at once: at S3 sites most of the time is waiting.
        let mut reading = tokio::task::JoinSet::new();
        for (i, copy) in entry.copies.iter().enumerate() {
            if copy.status == CopyStatus::Tampered {
                // Already on record, and kept as evidence: not read again.
                continue;
            }
            let (this, copy, path, sum) = (
                self.clone(),
                copy.clone(),
                path.clone(),
                entry.sha256.clone(),
            );
            let (keyring, impostors) = (keyring.clone(), impostors.clone());
            reading.spawn(async move {
                let r = this
                    .read_copy(&copy, &path, &sum, &keyring, &impostors)
                    .await;
                (i, r)
            });
        }
        let mut reads = Vec::new();
        while let Some(done) = reading.join_next().await {
            reads.push(done.map_err(std::io::Error::other)?);
        }
        reads.sort_by_key(|(i, _)| *i);
        let reads: Vec<Read> = reads.into_iter().map(|(_, r)| r).collect();
        out.copies = reads.len() as u64;
        out.bytes = reads
            .iter()
            .map(|r| r.plain.as_ref().map_or(0, |p| p.len() as u64))
            .sum();
        let findings: Vec<Finding> = reads
            .iter()
            .map(|r| judge(&entry.sha256, &r.reading))
            .collect();
        let v = verdict(&findings);
        out.verdict = Some(v);
        // A user may have replaced or deleted the object while it was read: what was read
        // then says nothing of what is stored now.
        let current = {
            let (k, n) = (entry.kind.clone(), entry.name.clone());
            self.blocking(move |s| s.object(user, &k, &n)).await?
        };
        if current.as_ref().map(|e| &e.sha256) != Some(&entry.sha256) {
            out.verdict = None;
            return Ok(out);
        }
        let good = reads
            .iter()
            .zip(&findings)
            .find(|(_, f)| **f == Finding::Good)
            .and_then(|(r, _)| r.plain.clone());
        let good_sites: Vec<String> = reads
            .iter()
            .zip(&findings)
            .filter(|(_, f)| **f == Finding::Good)
            .map(|(r, _)| r.copy.site.clone())
            .collect();
        for (r, f) in reads.iter().zip(&findings) {
            match f {
                Finding::Good | Finding::Unchecked => {}
                Finding::Damaged => {
                    let why = match &r.reading {
                        Reading::Damaged(why) => format!("damaged ({why})"),
                        _ => "missing".to_string(),
                    };
                    let Some(plain) = &good else {
                        // Nothing to repair from: the object is lost (reported below, once),
                        // or waits for the site that could not be reached.
                        self.mark_copy(user, &entry, &r.copy, CopyStatus::Failed, &why)
                            .await?;
                        continue;
                    };
                    out.media_faults += 1;
                    let repaired = self.repair(user, &entry, &r.copy, &path, plain).await;
                    if repaired.is_ok() {
                        out.repaired += 1;
                    } else {
                        self.mark_copy(user, &entry, &r.copy, CopyStatus::Failed, &why)
                            .await?;
                    }
                    let summary = match &repaired {
                        Ok(()) => {
                            format!("{object}: the copy at {} was {why}; repaired", r.copy.site)
                        }
                        Err(e) => format!(
                            "{object}: the copy at {} was {why}; not repaired: {e}",
                            r.copy.site
                        ),
                    };
                    let detail = serde_json::json!({
                        "site": r.copy.site, "reason": why, "repaired": repaired.is_ok(),
                        "repair_error": repaired.err(),
                    });
                    out.incidents.push(
                        self.incident(
                            user,
                            IncidentKind::MediaFault,
                            Some(&object),
                            vec![r.copy.site.clone()],
                            summary,
                            detail,
                        )
                        .await?,
                    );
                }
                // A copy at a site that failed authentication: counted against the site,
                // whose users hear of it at the operator's threshold.
                Finding::Untrusted => out.tampered += 1,
                Finding::Tampered => {
                    out.tampered += 1;
                    let Reading::Opened { sha256 } = &r.reading else {
                        continue;
                    };
                    let range = match (&good, &r.plain) {
                        (Some(a), Some(b)) => differing_range(a, b),
                        _ => None,
                    };
                    let evidence =
                        self.keep_evidence(user, &entry, &r.copy.site, r.sealed.as_ref())?;
                    let where_ = match range {
                        Some((a, b)) => format!("bytes {a}..{b} differ"),
                        None => "its bytes differ".to_string(),
                    };
                    let summary = format!(
                        "{object}: the copy at {} opens under the site's key but is not the object stored ({where_}); kept as evidence",
                        r.copy.site
                    );
                    self.mark_copy(user, &entry, &r.copy, CopyStatus::Tampered, &summary)
                        .await?;
                    let mut sites = vec![r.copy.site.clone()];
                    sites.extend(good_sites.iter().cloned());
                    let detail = serde_json::json!({
                        "site": r.copy.site, "compared_with": good_sites,
                        "range": range.map(|(a, b)| [a, b]),
                        "stored_sha256": entry.sha256, "found_sha256": sha256,
                        "size": entry.size, "found_size": r.plain.as_ref().map(Bytes::len),
                        "evidence": evidence,
                    });
                    tracing::error!(user, "tampering: {summary}");
                    out.incidents.push(
                        self.incident(
                            user,
                            IncidentKind::Tampering,
                            Some(&object),
                            sites,
                            summary,
                            detail,
                        )
                        .await?,
                    );
                }
            }
        }
        if v == Verdict::Lost {
            let known = {
                let o = object.clone();
                self.blocking(move |s| s.has_incident(user, IncidentKind::Lost, &o))
                    .await?
            };
            if !known {
                let snapshots = self.snapshots_needing(user, kind, &entry.name).await?;
                let sites: Vec<String> = entry.copies.iter().map(|c| c.site.clone()).collect();
                let reasons: Vec<String> = reads
                    .iter()
                    .map(|r| format!("{}: {}", r.copy.site, reading_text(&r.reading)))
                    .collect();
                let summary = format!(
                    "{object} is lost: no copy is good ({}); {}",
                    reasons.join("; "),
                    match snapshots.len() {
                        0 => "no snapshot is known to need it".to_string(),
                        n => format!("{n} snapshot(s) need it: {}", snapshots.join(", ")),
                    }
                );
                tracing::error!(user, "LOST: {summary}");
                let detail = serde_json::json!({"copies": reasons, "snapshots": snapshots});
                out.incidents.push(
                    self.incident(
                        user,
                        IncidentKind::Lost,
                        Some(&object),
                        sites,
                        summary,
                        detail,
                    )
                    .await?,
                );
            }
        }
        if v != Verdict::Unknown {
            let (k, n) = (entry.kind.clone(), entry.name.clone());
            self.blocking(move |s| s.mark_verified(user, &k, &n))
                .await?;
        }
        Ok(out)
    }

    /// Lets go of copies kept as evidence of tampering at `site` (of one user's objects, or
    /// one object, or all), once the operator has looked into them: each is deleted from the
    /// site (the copy saved under `DATA/evidence` stays) and forgotten, so the next placement
    /// run puts a good copy where the rule wants one. Returns how many were released.
    pub async fn release_evidence(
        &self,
        site: &str,
        user: Option<&str>,
        object: Option<&str>,
    ) -> Result<u64, StorageError> {
        let _one = self.maintenance().await?;
        let user = match user {
            Some(name) => {
                let name = name.to_string();
                Some(self.blocking(move |s| s.user(&name)).await?.id)
            }
            None => None,
        };
        let at = site.to_string();
        let copies = self
            .blocking(move |s| s.tampered_copies(Some(&at), user))
            .await?;
        let mut released = 0;
        for (user, kind, name, site) in copies {
            let Some(t) = FileType::from_name(&kind) else {
                continue;
            };
            if object.is_some_and(|o| o != object_label(&kind, &name)) {
                continue;
            }
            self.delete_copy(&site, &site_path(user, t, &name)).await;
            self.blocking(move |s| s.drop_copy(user, &kind, &name, &site))
                .await?;
            released += 1;
        }
        Ok(released)
    }

    /// Writes a damaged copy again from a good one, then reads it back as a check would.
    async fn repair(
        &self,
        user: i64,
        entry: &ObjectEntry,
        copy: &CopyCondition,
        path: &str,
        plain: &Bytes,
    ) -> Result<(), String> {
        let site = self
            .site(&copy.site)
            .ok_or_else(|| format!("site {} is not configured", copy.site))?;
        if !self.ready(site).await {
            return Err(format!("site {} is not available", copy.site));
        }
        let keyring = self.keyring().map_err(|e| e.to_string())?;
        let key = keyring
            .latest(site.id())
            .ok_or_else(|| format!("no key for site {}", copy.site))?;
        let written = site
            .put((key.0, &key.1), path, Arc::new(plain.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let back = site.get(&keyring, path).await.map_err(|e| e.to_string())?;
        if sha256_hex(&back) != entry.sha256 {
            return Err("the repaired copy does not read back as the object".into());
        }
        let (k, n, sum) = (entry.kind.clone(), entry.name.clone(), entry.sha256.clone());
        let rank = rank_of(entry, &copy.site);
        self.blocking(move |s| s.set_copy(user, &k, &n, &sum, rank, &written))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn mark_copy(
        &self,
        user: i64,
        entry: &ObjectEntry,
        copy: &CopyCondition,
        status: CopyStatus,
        why: &str,
    ) -> Result<(), StorageError> {
        let marked = CopyCondition {
            status,
            detail: Some(why.to_string()),
            ..copy.clone()
        };
        let (k, n, sum) = (entry.kind.clone(), entry.name.clone(), entry.sha256.clone());
        let rank = rank_of(entry, &copy.site);
        self.blocking(move |s| s.set_copy(user, &k, &n, &sum, rank, &marked))
            .await?;
        Ok(())
    }

    /// Saves a tampered copy as read under `DATA/evidence`, so deleting the object later (or
    /// the site's operator) cannot take the evidence with it; returns where.
    fn keep_evidence(
        &self,
        user: i64,
        entry: &ObjectEntry,
        site: &str,
        sealed: Option<&Bytes>,
    ) -> Result<Option<String>, StorageError> {
        let Some(sealed) = sealed.filter(|b| !b.is_empty()) else {
            return Ok(None);
        };
        let dir = self.data_dir.join("evidence").join(user.to_string());
        std::fs::create_dir_all(&dir)?;
        let at = jiff::Timestamp::now().as_second();
        let file = dir.join(format!("{}-{}.{site}.{at}.copy", entry.kind, entry.name));
        crate::write_private(&file, sealed)?;
        Ok(Some(file.display().to_string()))
    }

    async fn incident(
        &self,
        user: i64,
        kind: IncidentKind,
        object: Option<&str>,
        sites: Vec<String>,
        summary: String,
        detail: serde_json::Value,
    ) -> Result<Incident, StorageError> {
        let object = object.map(str::to_string);
        self.blocking(move |s| {
            s.add_incident(&NewIncident {
                user,
                kind,
                object: object.as_deref(),
                sites: &sites,
                summary: &summary,
                detail,
            })
        })
        .await
    }

    /// The user's snapshots that cannot be restored whole without the object.
    async fn snapshots_needing(
        &self,
        user: i64,
        kind: FileType,
        name: &str,
    ) -> Result<Vec<String>, StorageError> {
        let name = name.to_string();
        self.blocking(move |s| match kind {
            FileType::Snapshot => Ok(vec![name]),
            FileType::Pack => match kura_core::id::unhex_array(&name) {
                Some(id) => s.snapshots_needing(user, &id),
                None => Ok(Vec::new()),
            },
            // Without these no snapshot opens (the recovery code still unlocks the keys).
            FileType::Config | FileType::Key | FileType::Device => {
                s.object_names(user, FileType::Snapshot.name())
            }
            FileType::Index | FileType::Log | FileType::Lock | FileType::Damage => Ok(Vec::new()),
        })
        .await
    }

    /// One notice per user whose data was tampered with or lost in this run.
    async fn tell_users(
        &self,
        users: &BTreeMap<i64, User>,
        incidents: &[Incident],
    ) -> Result<u64, StorageError> {
        let mut notified = 0;
        for (id, user) in users {
            let mine: Vec<&Incident> = incidents
                .iter()
                .filter(|i| i.user == *id && i.kind != IncidentKind::MediaFault)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let lost = mine.iter().any(|i| i.kind == IncidentKind::Lost);
            let subject = if lost {
                "Data lost: some of your backed-up objects have no good copy"
            } else {
                "Tampering found in a copy of your data"
            };
            let mut body = String::from(
                "The service's integrity check of your stored data found the following.\n\n",
            );
            for i in &mine {
                body.push_str(&format!("- [{}] {}\n", i.kind.as_str(), i.summary));
            }
            if lost {
                body.push_str(
                    "\nA lost object cannot be read back. `kura incidents` names the files of \
                     each snapshot that cannot be restored whole; the next backup stores them \
                     again (and with them, the older snapshots become whole again).\n",
                );
            } else {
                body.push_str(
                    "\nYour data is still served from the good copy; the altered copy is kept \
                     as evidence and never read.\n",
                );
            }
            crate::notice::send(
                &self.registry,
                &self.data_dir,
                user,
                "integrity",
                subject,
                &body,
            )?;
            notified += 1;
        }
        Ok(notified)
    }
}

/// Where a copy stands among the object's copies (the primary is 0).
fn rank_of(entry: &ObjectEntry, site: &str) -> usize {
    entry
        .copies
        .iter()
        .position(|c| c.site == site)
        .unwrap_or(entry.copies.len())
}

fn reading_text(r: &Reading) -> String {
    match r {
        Reading::Opened { sha256 } => format!("opens with checksum {sha256}"),
        Reading::Missing => "missing".into(),
        Reading::Damaged(why) => why.clone(),
        Reading::Impostor(why) => why.clone(),
        Reading::Unreachable(why) => why.clone(),
    }
}

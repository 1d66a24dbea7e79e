//! The catalog: every object the service stores for a user, with the state of each of its
//! copies on the storage sites; authentication failures per site; copies left to delete on a
//! site that was down; and each user's message history.
//!
//! An object's size, checksum and copies change in one transaction with the user's usage, so a
//! crash never leaves the usage count out of step with what is stored.

use kura_core::conditions::{CopyCondition, CopyStatus, ObjectConditions};
use kura_core::notice::Notice;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::quota::charge;
use super::{Registry, Result, lock};

/// Times in the catalog: fixed width (nanoseconds, UTC), so text order is time order.
pub fn time_text(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

fn now_text() -> String {
    time_text(jiff::Timestamp::now())
}

fn parse_status(s: &str) -> CopyStatus {
    match s {
        "ok" => CopyStatus::Ok,
        "tampered" => CopyStatus::Tampered,
        _ => CopyStatus::Failed,
    }
}

/// A stored object and its copies, primary first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectEntry {
    /// The repository file kind (`data`, `index`, ...).
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Bytes as the client sent them.
    pub size: u64,
    /// SHA-256 (hex) of the bytes as the client sent them.
    pub sha256: String,
    /// When it was stored.
    pub stored: String,
    /// How its placement falls short of the rule, if it does.
    pub degraded: Option<String>,
    /// Its copies, primary first.
    pub copies: Vec<CopyCondition>,
}

/// How users and reports name an object: `kind/name`, or `config` (there is one).
pub fn object_label(kind: &str, name: &str) -> String {
    if kind == "config" {
        kind.to_string()
    } else {
        format!("{kind}/{name}")
    }
}

impl ObjectEntry {
    /// The object's storage conditions, as the user sees them.
    pub fn conditions(&self) -> ObjectConditions {
        ObjectConditions {
            object: object_label(&self.kind, &self.name),
            size: self.size,
            stored: self.stored.clone(),
            degraded: self.degraded.clone(),
            copies: self.copies.clone(),
        }
    }

    /// The sites holding a good copy.
    pub fn good_sites(&self) -> impl Iterator<Item = &str> {
        self.copies
            .iter()
            .filter(|c| c.status == CopyStatus::Ok)
            .map(|c| c.site.as_str())
    }
}

/// A site's record: authentication failures and what it holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SiteRecord {
    /// Authentication failures counted so far.
    pub auth_failures: u64,
    /// The last failure's time and reason.
    pub last_failure: Option<(String, String)>,
    /// Good copies held.
    pub copies: u64,
}

const OBJECT_COLUMNS: &str = "o.kind, o.name, o.size, o.sha256, o.stored, o.degraded,
    c.site, c.region, c.status, c.algorithm, c.key_ref, c.detail";

/// Folds rows of `OBJECT_COLUMNS` (ordered by object, then rank) into entries.
fn entries(rows: &mut rusqlite::Rows<'_>) -> rusqlite::Result<Vec<ObjectEntry>> {
    let mut out: Vec<ObjectEntry> = Vec::new();
    while let Some(r) = rows.next()? {
        let (kind, name): (String, String) = (r.get(0)?, r.get(1)?);
        let same = out.last().is_some_and(|e| e.kind == kind && e.name == name);
        if !same {
            out.push(ObjectEntry {
                kind,
                name,
                size: r.get::<_, i64>(2)? as u64,
                sha256: r.get(3)?,
                stored: r.get(4)?,
                degraded: r.get(5)?,
                copies: Vec::new(),
            });
        }
        if let (Some(site), Some(entry)) = (r.get::<_, Option<String>>(6)?, out.last_mut()) {
            entry.copies.push(CopyCondition {
                site,
                region: r.get(7)?,
                status: parse_status(&r.get::<_, String>(8)?),
                algorithm: r.get(9)?,
                key_ref: r.get(10)?,
                detail: r.get(11)?,
            });
        }
    }
    Ok(out)
}

fn insert_copy(
    db: &rusqlite::Connection,
    user: i64,
    kind: &str,
    name: &str,
    rank: usize,
    c: &CopyCondition,
) -> rusqlite::Result<()> {
    db.execute(
        "INSERT INTO copies (user_id, kind, name, site, rank, status, region, algorithm, key_ref, detail, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (user_id, kind, name, site) DO UPDATE SET rank = ?5, status = ?6, region = ?7,
             algorithm = ?8, key_ref = ?9, detail = ?10, at = ?11",
        params![
            user,
            kind,
            name,
            c.site,
            rank as i64,
            c.status.as_str(),
            c.region,
            c.algorithm,
            c.key_ref,
            c.detail,
            now_text(),
        ],
    )?;
    Ok(())
}

/// Forgets every copy of an object.
fn drop_copies(
    db: &rusqlite::Connection,
    user: i64,
    kind: &str,
    name: &str,
) -> rusqlite::Result<()> {
    db.execute(
        "DELETE FROM copies WHERE user_id = ?1 AND kind = ?2 AND name = ?3",
        params![user, kind, name],
    )?;
    Ok(())
}

/// Counts an object of `size` bytes in (`sign` 1) or out (-1) of a user's usage.
fn count(db: &rusqlite::Connection, user: i64, size: u64, sign: i64) -> rusqlite::Result<()> {
    db.execute(
        "UPDATE users SET bytes = MAX(0, bytes + ?1), objects = MAX(0, objects + ?2) WHERE id = ?3",
        params![sign * charge(size) as i64, sign, user],
    )?;
    Ok(())
}

/// One object of a user, with its copies, as `db` (a connection or a transaction) sees it.
fn object_in(
    db: &rusqlite::Connection,
    user: i64,
    kind: &str,
    name: &str,
) -> Result<Option<ObjectEntry>> {
    let mut stmt = db.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects o LEFT JOIN copies c
             ON c.user_id = o.user_id AND c.kind = o.kind AND c.name = o.name
         WHERE o.user_id = ?1 AND o.kind = ?2 AND o.name = ?3 ORDER BY c.rank"
    ))?;
    let mut rows = stmt.query(params![user, kind, name])?;
    Ok(entries(&mut rows)?.pop())
}

impl Registry {
    /// One object of a user, with its copies.
    pub fn object(&self, user: i64, kind: &str, name: &str) -> Result<Option<ObjectEntry>> {
        object_in(&lock(&self.db), user, kind, name)
    }

    /// A user's objects stored since `since` (all of them without), with their copies.
    pub fn objects(&self, user: i64, since: Option<jiff::Timestamp>) -> Result<Vec<ObjectEntry>> {
        let since = since.map(time_text);
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects o LEFT JOIN copies c
                 ON c.user_id = o.user_id AND c.kind = o.kind AND c.name = o.name
             WHERE o.user_id = ?1 AND (?2 IS NULL OR o.stored >= ?2)
             ORDER BY o.kind, o.name, c.rank"
        ))?;
        let mut rows = stmt.query(params![user, since])?;
        Ok(entries(&mut rows)?)
    }

    /// The names of a user's objects of one kind.
    pub fn object_names(&self, user: i64, kind: &str) -> Result<Vec<String>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(
            "SELECT name FROM objects WHERE user_id = ?1 AND kind = ?2 ORDER BY name",
        )?;
        let names = stmt.query_map(params![user, kind], |r| r.get(0))?;
        Ok(names.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Records a newly stored object (replacing what was stored under its name), counts its
    /// bytes and settles a reservation made for it; returns the entry it replaced.
    #[allow(clippy::too_many_arguments)]
    pub fn record_object(
        &self,
        user: i64,
        kind: &str,
        name: &str,
        size: u64,
        sha256: &str,
        degraded: Option<&str>,
        copies: &[CopyCondition],
    ) -> Result<Option<ObjectEntry>> {
        let mut db = lock(&self.db);
        // What this replaces is read in the same transaction that counts the change, so two
        // stores of one name cannot both count it as new.
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let old = object_in(&tx, user, kind, name)?;
        drop_copies(&tx, user, kind, name)?;
        tx.execute(
            "INSERT INTO objects (user_id, kind, name, size, sha256, stored, degraded)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (user_id, kind, name) DO UPDATE SET size = ?4, sha256 = ?5, stored = ?6,
                 degraded = ?7",
            params![user, kind, name, size as i64, sha256, now_text(), degraded],
        )?;
        for (rank, c) in copies.iter().enumerate() {
            insert_copy(&tx, user, kind, name, rank, c)?;
        }
        if let Some(o) = &old {
            count(&tx, user, o.size, -1)?;
        }
        count(&tx, user, size, 1)?;
        // The room reserved for this store is now counted as stored (see `quota`).
        tx.execute(
            "DELETE FROM reservations WHERE id = (SELECT id FROM reservations
                 WHERE user_id = ?1 AND kind = ?2 AND name = ?3 LIMIT 1)",
            params![user, kind, name],
        )?;
        tx.commit()?;
        Ok(old)
    }

    /// Forgets an object and uncounts its bytes; returns what was recorded (its copies are
    /// for the caller to delete).
    pub fn remove_object(&self, user: i64, kind: &str, name: &str) -> Result<Option<ObjectEntry>> {
        let Some(old) = self.object(user, kind, name)? else {
            return Ok(None);
        };
        let mut db = lock(&self.db);
        let tx = db.transaction()?;
        drop_copies(&tx, user, kind, name)?;
        tx.execute(
            "DELETE FROM objects WHERE user_id = ?1 AND kind = ?2 AND name = ?3",
            params![user, kind, name],
        )?;
        tx.execute(
            "DELETE FROM snapshot_packs WHERE user_id = ?1 AND ?2 = 'snapshots' AND snapshot = ?3",
            params![user, kind, name],
        )?;
        count(&tx, user, old.size, -1)?;
        tx.commit()?;
        Ok(Some(old))
    }

    /// Records a copy of an object, if the object is still the one with checksum `sha256`;
    /// returns false if it was removed or replaced meanwhile (the copy is then stale).
    pub fn set_copy(
        &self,
        user: i64,
        kind: &str,
        name: &str,
        sha256: &str,
        rank: usize,
        copy: &CopyCondition,
    ) -> Result<bool> {
        let mut db = lock(&self.db);
        let tx = db.transaction()?;
        let current: Option<String> = tx
            .query_row(
                "SELECT sha256 FROM objects WHERE user_id = ?1 AND kind = ?2 AND name = ?3",
                params![user, kind, name],
                |r| r.get(0),
            )
            .optional()?;
        if current.as_deref() != Some(sha256) {
            return Ok(false);
        }
        insert_copy(&tx, user, kind, name, rank, copy)?;
        tx.commit()?;
        Ok(true)
    }

    /// Forgets one copy of an object.
    pub fn drop_copy(&self, user: i64, kind: &str, name: &str, site: &str) -> Result<()> {
        lock(&self.db).execute(
            "DELETE FROM copies WHERE user_id = ?1 AND kind = ?2 AND name = ?3 AND site = ?4",
            params![user, kind, name, site],
        )?;
        Ok(())
    }

    /// Records how an object's placement falls short of the rule (`None`: it does not).
    pub fn set_degraded(
        &self,
        user: i64,
        kind: &str,
        name: &str,
        degraded: Option<&str>,
    ) -> Result<()> {
        lock(&self.db).execute(
            "UPDATE objects SET degraded = ?4 WHERE user_id = ?1 AND kind = ?2 AND name = ?3",
            params![user, kind, name, degraded],
        )?;
        Ok(())
    }

    /// Counts an authentication failure of a site; returns its count so far.
    pub fn count_site_failure(&self, site: &str, reason: &str) -> Result<u64> {
        let db = lock(&self.db);
        db.execute(
            "INSERT INTO site_failures (site, count, last, reason) VALUES (?1, 1, ?2, ?3)
             ON CONFLICT (site) DO UPDATE SET count = count + 1, last = ?2, reason = ?3",
            params![site, now_text(), reason],
        )?;
        let n: i64 = db.query_row(
            "SELECT count FROM site_failures WHERE site = ?1",
            [site],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Authentication failures counted per site (sites with none are absent).
    pub fn site_failures(&self) -> Result<std::collections::HashMap<String, u64>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached("SELECT site, count FROM site_failures")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// What the catalog says of one site.
    pub fn site_record(&self, site: &str) -> Result<SiteRecord> {
        let db = lock(&self.db);
        let failures: Option<(i64, String, String)> = db
            .query_row(
                "SELECT count, last, reason FROM site_failures WHERE site = ?1",
                [site],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let copies: i64 = db.query_row(
            "SELECT COUNT(*) FROM copies WHERE site = ?1 AND status = 'ok'",
            [site],
            |r| r.get(0),
        )?;
        Ok(SiteRecord {
            auth_failures: failures.as_ref().map_or(0, |f| f.0 as u64),
            last_failure: failures.map(|(_, at, why)| (at, why)),
            copies: copies as u64,
        })
    }

    /// Notes a copy to delete from a site that could not be reached.
    pub fn add_orphan(&self, site: &str, path: &str) -> Result<()> {
        lock(&self.db).execute(
            "INSERT OR IGNORE INTO orphans (site, path) VALUES (?1, ?2)",
            params![site, path],
        )?;
        Ok(())
    }

    /// Copies still to delete, as (site, path).
    pub fn orphans(&self) -> Result<Vec<(String, String)>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare("SELECT site, path FROM orphans ORDER BY site, path")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Forgets a deleted orphan.
    pub fn remove_orphan(&self, site: &str, path: &str) -> Result<()> {
        lock(&self.db).execute(
            "DELETE FROM orphans WHERE site = ?1 AND path = ?2",
            params![site, path],
        )?;
        Ok(())
    }

    /// Keeps a notice in a user's message history; returns its number.
    pub fn add_message(&self, user: i64, kind: &str, subject: &str, body: &str) -> Result<i64> {
        let db = lock(&self.db);
        db.execute(
            "INSERT INTO messages (user_id, at, kind, subject, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user, now_text(), kind, subject, body],
        )?;
        Ok(db.last_insert_rowid())
    }

    /// How many notices of `kind` a user was sent since `since`.
    pub fn messages_since(&self, user: i64, kind: &str, since: jiff::Timestamp) -> Result<u64> {
        let n: i64 = lock(&self.db).query_row(
            "SELECT COUNT(*) FROM messages WHERE user_id = ?1 AND kind = ?2 AND at >= ?3",
            params![user, kind, time_text(since)],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// A user's message history, oldest first.
    pub fn messages(&self, user: i64) -> Result<Vec<Notice>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare(
            "SELECT id, at, kind, subject, body FROM messages WHERE user_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([user], |r| {
            Ok(Notice {
                id: r.get(0)?,
                at: r.get(1)?,
                kind: r.get(2)?,
                subject: r.get(3)?,
                body: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::quota::MIN_CHARGE;

    fn copy(site: &str, status: CopyStatus) -> CopyCondition {
        CopyCondition {
            site: site.into(),
            region: format!("{site}-region"),
            status,
            algorithm: "XChaCha20-Poly1305".into(),
            key_ref: format!("{site}/v1"),
            detail: None,
        }
    }

    #[test]
    fn objects_copies_and_usage_change_together() {
        let (_dir, s, u) = crate::registry::scratch();
        let both = [copy("a", CopyStatus::Ok), copy("b", CopyStatus::Ok)];
        assert!(
            s.record_object(u, "data", "aa", 100, "s1", None, &both)
                .unwrap()
                .is_none()
        );
        // Small objects are charged the minimum.
        assert_eq!(s.user("ann").unwrap().bytes, MIN_CHARGE);
        assert_eq!(s.user("ann").unwrap().objects, 1);
        let e = s.object(u, "data", "aa").unwrap().unwrap();
        assert_eq!(e.good_sites().collect::<Vec<_>>(), ["a", "b"]);
        // Replacing counts only the difference, and returns what it replaced.
        let one = [copy("c", CopyStatus::Ok), copy("a", CopyStatus::Failed)];
        let old = s
            .record_object(u, "data", "aa", 5000, "s2", Some("one_copy"), &one)
            .unwrap()
            .unwrap();
        assert_eq!(old.size, 100);
        assert_eq!(s.user("ann").unwrap().bytes, 5000);
        assert_eq!(s.user("ann").unwrap().objects, 1);
        let e = s.object(u, "data", "aa").unwrap().unwrap();
        assert_eq!(e.copies, one);
        assert_eq!(e.degraded.as_deref(), Some("one_copy"));
        // A copy of a replaced object is refused.
        assert!(
            !s.set_copy(u, "data", "aa", "s1", 1, &copy("b", CopyStatus::Ok))
                .unwrap()
        );
        assert!(
            s.set_copy(u, "data", "aa", "s2", 1, &copy("a", CopyStatus::Ok))
                .unwrap()
        );
        assert_eq!(s.site_record("a").unwrap().copies, 1);
        assert_eq!(s.object_names(u, "data").unwrap(), ["aa"]);
        assert_eq!(s.objects(u, None).unwrap().len(), 1);
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
        assert!(s.objects(u, Some(later)).unwrap().is_empty());
        let earlier = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
        assert_eq!(s.objects(u, Some(earlier)).unwrap().len(), 1);
        // Fixed width, so that text order is time order.
        let whole = "2026-01-01T00:00:00Z".parse().unwrap();
        let fraction = "2026-01-01T00:00:00.5Z".parse().unwrap();
        assert!(
            time_text(whole) < time_text(fraction),
            "{}",
            time_text(whole)
        );
        s.remove_object(u, "data", "aa").unwrap().unwrap();
        assert_eq!(s.user("ann").unwrap().bytes, 0);
        assert!(s.object(u, "data", "aa").unwrap().is_none());
        assert_eq!(s.site_record("a").unwrap().copies, 0);
    }

    #[test]
    fn site_failures_orphans_and_messages() {
        let dir = tempfile::tempdir().unwrap();
        let s = Registry::open(&dir.path().join("db.sqlite")).unwrap();
        assert_eq!(s.count_site_failure("x", "wrong marker").unwrap(), 1);
        assert_eq!(s.count_site_failure("x", "no marker").unwrap(), 2);
        let r = s.site_record("x").unwrap();
        assert_eq!(r.auth_failures, 2);
        assert_eq!(s.site_failures().unwrap()["x"], 2);
        assert_eq!(r.last_failure.unwrap().1, "no marker");
        s.add_orphan("x", "users/1/data/aa").unwrap();
        s.add_orphan("x", "users/1/data/aa").unwrap();
        assert_eq!(s.orphans().unwrap().len(), 1);
        s.remove_orphan("x", "users/1/data/aa").unwrap();
        assert!(s.orphans().unwrap().is_empty());
        let u = s.add_user("bob", b"correct horse").unwrap();
        s.add_message(u, "conditions", "subject", "body").unwrap();
        let m = s.messages(u).unwrap();
        assert_eq!((m.len(), m[0].kind.as_str()), (1, "conditions"));
    }
}

//! What the integrity checks need to remember: when each object was last checked, the incidents
//! they found (media faults, tampering, lost objects, fraudulent sites) as each user's
//! incident history, and which packs each snapshot needs, so a lost pack names the snapshots
//! it takes with it.

pub use kura_core::notice::{Incident, IncidentKind};
use rusqlite::{OptionalExtension, params};

use super::catalog::{ObjectEntry, time_text};
use super::{Registry, Result, lock};

/// An incident about to be recorded.
#[derive(Debug, Clone)]
pub struct NewIncident<'a> {
    /// Whose data.
    pub user: i64,
    /// What it was.
    pub kind: IncidentKind,
    /// The object (`kind/name`), if it is about one.
    pub object: Option<&'a str>,
    /// The sites involved.
    pub sites: &'a [String],
    /// One line for people.
    pub summary: &'a str,
    /// The particulars.
    pub detail: serde_json::Value,
}

impl Registry {
    /// Records an incident; returns it as recorded.
    pub fn add_incident(&self, i: &NewIncident<'_>) -> Result<Incident> {
        let db = lock(&self.db);
        let at = time_text(jiff::Timestamp::now());
        db.execute(
            "INSERT INTO incidents (user_id, at, kind, object, sites, summary, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                i.user,
                at,
                i.kind.as_str(),
                i.object,
                i.sites.join(","),
                i.summary,
                i.detail.to_string(),
            ],
        )?;
        Ok(Incident {
            id: db.last_insert_rowid(),
            at,
            user: i.user,
            kind: i.kind,
            object: i.object.map(str::to_string),
            sites: i.sites.to_vec(),
            summary: i.summary.to_string(),
            detail: i.detail.clone(),
        })
    }

    /// Whether an incident of `kind` about `object` of a user is already on record (a lost
    /// object is reported once, not on every check).
    pub fn has_incident(&self, user: i64, kind: IncidentKind, object: &str) -> Result<bool> {
        let found: Option<i64> = lock(&self.db)
            .query_row(
                "SELECT id FROM incidents WHERE user_id = ?1 AND kind = ?2 AND object = ?3",
                params![user, kind.as_str(), object],
                |r| r.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    /// A user's incidents (every user's without one) found in `from..to` (all without),
    /// oldest first.
    pub fn incidents(
        &self,
        user: Option<i64>,
        from: Option<jiff::Timestamp>,
        to: Option<jiff::Timestamp>,
    ) -> Result<Vec<Incident>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(
            "SELECT id, at, user_id, kind, object, sites, summary, detail FROM incidents
             WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR at >= ?2)
                 AND (?3 IS NULL OR at < ?3)
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![user, from.map(time_text), to.map(time_text)], |r| {
            let kind: String = r.get(3)?;
            let sites: String = r.get(5)?;
            let detail: String = r.get(7)?;
            Ok(Incident {
                id: r.get(0)?,
                at: r.get(1)?,
                user: r.get(2)?,
                kind: kind.parse::<IncidentKind>().map_err(|_| {
                    rusqlite::Error::InvalidColumnType(
                        3,
                        "kind".into(),
                        rusqlite::types::Type::Text,
                    )
                })?,
                object: r.get(4)?,
                sites: sites
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                summary: r.get(6)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The objects a check should read next: every user's (or one user's), the least
    /// recently checked first, `percent` of them (at least one, when there are any).
    pub fn verify_queue(&self, user: Option<i64>, percent: f64) -> Result<Vec<(i64, ObjectEntry)>> {
        let keys: Vec<(i64, String, String)> = {
            let db = lock(&self.db);
            let total: i64 = db.query_row(
                "SELECT COUNT(*) FROM objects WHERE ?1 IS NULL OR user_id = ?1",
                [user],
                |r| r.get(0),
            )?;
            let take = ((total as f64) * percent.clamp(0.0, 100.0) / 100.0).ceil() as i64;
            let mut stmt = db.prepare_cached(
                "SELECT user_id, kind, name FROM objects WHERE ?1 IS NULL OR user_id = ?1
                 ORDER BY verified IS NOT NULL, verified, user_id, kind, name LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![user, take], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let mut out = Vec::with_capacity(keys.len());
        for (u, kind, name) in keys {
            if let Some(e) = self.object(u, &kind, &name)? {
                out.push((u, e));
            }
        }
        Ok(out)
    }

    /// A user's objects with no good copy left (`kind/name`, or `config`).
    pub fn lost_objects(&self, user: i64) -> Result<Vec<String>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(
            "SELECT o.kind, o.name FROM objects o WHERE o.user_id = ?1 AND NOT EXISTS (
                 SELECT 1 FROM copies c WHERE c.user_id = o.user_id AND c.kind = o.kind
                     AND c.name = o.name AND c.status = 'ok')
             ORDER BY o.kind, o.name",
        )?;
        let rows = stmt.query_map([user], |r| {
            Ok(super::catalog::object_label(
                &r.get::<_, String>(0)?,
                &r.get::<_, String>(1)?,
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Copies kept as evidence of tampering at `site` (every site's without one), of one
    /// user's objects or everyone's: (user, kind, name, site).
    pub fn tampered_copies(
        &self,
        site: Option<&str>,
        user: Option<i64>,
    ) -> Result<Vec<(i64, String, String, String)>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(
            "SELECT user_id, kind, name, site FROM copies WHERE status = 'tampered'
                 AND (?1 IS NULL OR site = ?1) AND (?2 IS NULL OR user_id = ?2)
             ORDER BY user_id, kind, name, site",
        )?;
        let rows = stmt.query_map(params![site, user], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Notes that an object was checked now.
    pub fn mark_verified(&self, user: i64, kind: &str, name: &str) -> Result<()> {
        lock(&self.db).execute(
            "UPDATE objects SET verified = ?4 WHERE user_id = ?1 AND kind = ?2 AND name = ?3",
            params![user, kind, name, time_text(jiff::Timestamp::now())],
        )?;
        Ok(())
    }

    /// The users with a copy of anything at `site`.
    pub fn users_on_site(&self, site: &str) -> Result<Vec<i64>> {
        let db = lock(&self.db);
        let mut stmt =
            db.prepare_cached("SELECT DISTINCT user_id FROM copies WHERE site = ?1 ORDER BY 1")?;
        let rows = stmt.query_map([site], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Records which packs (32-byte ids) a user's snapshot needs, as its client reported.
    pub fn set_snapshot_packs(&self, user: i64, snapshot: &str, packs: &[[u8; 32]]) -> Result<()> {
        lock(&self.db).execute(
            "INSERT INTO snapshot_packs (user_id, snapshot, packs) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, snapshot) DO UPDATE SET packs = ?3",
            params![user, snapshot, packs.concat()],
        )?;
        Ok(())
    }

    /// The user's snapshots that need the pack `pack` (by their clients' reports), by name.
    pub fn snapshots_needing(&self, user: i64, pack: &[u8; 32]) -> Result<Vec<String>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(
            "SELECT snapshot, packs FROM snapshot_packs WHERE user_id = ?1 ORDER BY snapshot",
        )?;
        let rows = stmt.query_map([user], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (snapshot, packs) = row?;
            if packs.chunks_exact(32).any(|p| p == pack) {
                out.push(snapshot);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_core::conditions::{CopyCondition, CopyStatus};

    fn copy(site: &str) -> CopyCondition {
        CopyCondition {
            site: site.into(),
            region: "r".into(),
            status: CopyStatus::Ok,
            algorithm: "x".into(),
            key_ref: format!("{site}/v1"),
            detail: None,
        }
    }

    #[test]
    fn incidents_are_kept_and_filtered() {
        let (_d, s, ann) = crate::registry::scratch();
        let bob = s.add_user("bob", b"another password").unwrap();
        let sites = ["east".to_string()];
        let before = jiff::Timestamp::now();
        for (user, kind) in [
            (ann, IncidentKind::MediaFault),
            (bob, IncidentKind::Lost),
            (ann, IncidentKind::Tampering),
        ] {
            s.add_incident(&NewIncident {
                user,
                kind,
                object: Some("data/ab"),
                sites: &sites,
                summary: "found",
                detail: serde_json::json!({"range": [1, 2]}),
            })
            .unwrap();
        }
        let ann_all = s.incidents(Some(ann), None, None).unwrap();
        assert_eq!(ann_all.len(), 2);
        assert_eq!(ann_all[1].kind, IncidentKind::Tampering);
        assert_eq!(ann_all[1].sites, sites);
        assert_eq!(ann_all[1].detail["range"][1], 2);
        assert_eq!(s.incidents(None, Some(before), None).unwrap().len(), 3);
        assert!(s.incidents(None, None, Some(before)).unwrap().is_empty());
        assert!(s.has_incident(bob, IncidentKind::Lost, "data/ab").unwrap());
        assert!(!s.has_incident(ann, IncidentKind::Lost, "data/ab").unwrap());
    }

    #[test]
    fn the_queue_takes_the_least_recently_checked_share() {
        let (_d, s, ann) = crate::registry::scratch();
        for n in ["a", "b", "c", "d"] {
            s.record_object(ann, "data", n, 1, "00", None, &[copy("east")])
                .unwrap();
        }
        let names = |q: Vec<(i64, ObjectEntry)>| -> Vec<String> {
            q.into_iter().map(|(_, e)| e.name).collect()
        };
        assert_eq!(names(s.verify_queue(None, 50.0).unwrap()), ["a", "b"]);
        s.mark_verified(ann, "data", "a").unwrap();
        s.mark_verified(ann, "data", "b").unwrap();
        assert_eq!(names(s.verify_queue(Some(ann), 50.0).unwrap()), ["c", "d"]);
        assert_eq!(names(s.verify_queue(None, 1.0).unwrap()), ["c"]);
        assert_eq!(s.verify_queue(None, 100.0).unwrap().len(), 4);
        assert_eq!(s.users_on_site("east").unwrap(), [ann]);
        assert!(s.users_on_site("west").unwrap().is_empty());
    }

    #[test]
    fn a_pack_names_the_snapshots_that_need_it() {
        let (_d, s, ann) = crate::registry::scratch();
        let (p1, p2, p3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        s.set_snapshot_packs(ann, "s1", &[p1, p2]).unwrap();
        s.set_snapshot_packs(ann, "s2", &[p2, p3]).unwrap();
        assert_eq!(s.snapshots_needing(ann, &p2).unwrap(), ["s1", "s2"]);
        assert_eq!(s.snapshots_needing(ann, &p3).unwrap(), ["s2"]);
        s.set_snapshot_packs(ann, "s2", &[p1]).unwrap();
        assert!(s.snapshots_needing(ann, &p3).unwrap().is_empty());
    }
}

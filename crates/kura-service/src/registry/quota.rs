//! Limits that hold under parallel requests. Before a store, the room it needs is reserved in
//! the database, in the same transaction that checks it against the limits. Recording the
//! object settles one reservation of its name in the same transaction, so nothing is counted
//! twice or not at all; a store that failed drops its reservation with its guard.
//!
//! Every object is charged at least [`MIN_CHARGE`] bytes, so that millions of empty objects
//! cannot cost the provider site files, blocks and catalog rows for nothing.

use std::sync::Arc;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{Registry, RegistryError, Result, lock};

/// The least an object is charged: one filesystem block on each site it is copied to.
pub const MIN_CHARGE: u64 = 4096;

/// What an object of `size` bytes counts against the storage limit (and is billed for).
pub fn charge(size: u64) -> u64 {
    size.max(MIN_CHARGE)
}

/// A user's limits; 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes stored (charged), unfinished uploads included.
    pub max_bytes: u64,
    /// Snapshots.
    pub max_archives: u64,
    /// Objects of any kind.
    pub max_objects: u64,
}

/// A limit a store would pass; the message is for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    /// The storage limit.
    #[error("the contract's storage limit of {0} bytes would be exceeded")]
    Bytes(u64),
    /// The snapshot limit.
    #[error("the contract's limit of {0} archives is reached (forget one first)")]
    Archives(u64),
    /// The object count limit.
    #[error("the service's limit of {0} objects per user is reached")]
    Objects(u64),
}

/// What a store needs room for.
#[derive(Debug, Clone, Copy)]
pub enum Room<'a> {
    /// A whole object, replacing any stored under its name.
    Object {
        /// Its kind (`data`, `snapshots`, ...).
        kind: &'a str,
        /// Its name.
        name: &'a str,
        /// Its size in bytes.
        size: u64,
    },
    /// A piece of an unfinished upload.
    Piece(u64),
}

/// Room reserved for one store, released when dropped.
pub struct Reservation {
    registry: Arc<Registry>,
    id: i64,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({})", self.id)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // A row left behind (the database failing here) only refuses early, and
        // `clear_reservations` removes it at the next start.
        let _ =
            lock(&self.registry.db).execute("DELETE FROM reservations WHERE id = ?1", [self.id]);
    }
}

impl Registry {
    /// Reserves `room` for `user` if, with what is stored, what is reserved and `pending()`
    /// (bytes of unfinished uploads, read while no other reservation can change), it stays
    /// within `limits`. The outer `Err` is a database failure; the inner one a refusal.
    pub fn reserve(
        self: &Arc<Self>,
        user: i64,
        room: Room<'_>,
        limits: Limits,
        pending: impl FnOnce() -> std::io::Result<u64>,
    ) -> Result<Result<Reservation, OverLimit>> {
        let mut db = lock(&self.db);
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (bytes, objects): (i64, i64) = tx.query_row(
            "SELECT bytes, objects FROM users WHERE id = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (r_bytes, r_objects, r_archives): (i64, i64, i64) = tx.query_row(
            "SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(objects), 0), COALESCE(SUM(archives), 0)
             FROM reservations WHERE user_id = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let (need, new_objects, new_archives) = match room {
            Room::Piece(len) => (len, 0, 0),
            Room::Object { kind, name, size } => {
                let old: Option<i64> = tx
                    .query_row(
                        "SELECT size FROM objects WHERE user_id = ?1 AND kind = ?2 AND name = ?3",
                        params![user, kind, name],
                        |r| r.get(0),
                    )
                    .optional()?;
                let freed = old.map_or(0, |s| charge(s as u64));
                let new = u64::from(old.is_none());
                let archives = if kind == "snapshots" { new } else { 0 };
                (charge(size).saturating_sub(freed), new, archives)
            }
        };
        let pending = pending().map_err(|e| RegistryError::Invalid(format!("uploads: {e}")))?;
        let over = |max: u64, used: i64, reserved: i64, more: u64| {
            max > 0
                && more > 0
                && (used.max(0) as u64)
                    .saturating_add(reserved.max(0) as u64)
                    .saturating_add(more)
                    > max
        };
        if over(
            limits.max_bytes,
            bytes,
            r_bytes,
            need.saturating_add(pending),
        ) {
            return Ok(Err(OverLimit::Bytes(limits.max_bytes)));
        }
        if over(limits.max_objects, objects, r_objects, new_objects) {
            return Ok(Err(OverLimit::Objects(limits.max_objects)));
        }
        if new_archives > 0 && limits.max_archives > 0 {
            let stored: i64 = tx.query_row(
                "SELECT COUNT(*) FROM objects WHERE user_id = ?1 AND kind = 'snapshots'",
                [user],
                |r| r.get(0),
            )?;
            if over(limits.max_archives, stored, r_archives, new_archives) {
                return Ok(Err(OverLimit::Archives(limits.max_archives)));
            }
        }
        let (kind, name) = match room {
            Room::Object { kind, name, .. } => (Some(kind), Some(name)),
            Room::Piece(_) => (None, None),
        };
        tx.execute(
            "INSERT INTO reservations (user_id, kind, name, bytes, objects, archives)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                user,
                kind,
                name,
                need as i64,
                new_objects as i64,
                new_archives as i64
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Ok(Reservation {
            registry: self.clone(),
            id,
        }))
    }

    /// Drops every reservation; for a service starting, when no store can be under way.
    pub fn clear_reservations(&self) -> Result<()> {
        lock(&self.db).execute("DELETE FROM reservations", [])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, Arc<Registry>, i64) {
        let d = tempfile::tempdir().unwrap();
        let r = Arc::new(Registry::open(&d.path().join("kura.sqlite")).unwrap());
        let id = r.add_user("ann", b"password1").unwrap();
        (d, r, id)
    }

    fn object(name: &str, size: u64) -> Room<'_> {
        Room::Object {
            kind: "data",
            name,
            size,
        }
    }

    const BYTES: Limits = Limits {
        max_bytes: 3 * MIN_CHARGE,
        max_archives: 0,
        max_objects: 0,
    };

    #[test]
    fn held_reservations_count_until_dropped() {
        let (_d, r, ann) = registry();
        let a = r
            .reserve(ann, object("a", 1), BYTES, || Ok(0))
            .unwrap()
            .unwrap();
        let b = r
            .reserve(ann, object("b", 0), BYTES, || Ok(0))
            .unwrap()
            .unwrap();
        let third = r.reserve(ann, object("c", 5000), BYTES, || Ok(0)).unwrap();
        assert_eq!(third.unwrap_err(), OverLimit::Bytes(3 * MIN_CHARGE));
        drop(a);
        r.reserve(ann, object("c", 5000), BYTES, || Ok(0))
            .unwrap()
            .unwrap();
        drop(b);
    }

    #[test]
    fn recording_an_object_settles_its_reservation() {
        let (_d, r, ann) = registry();
        let limits = Limits {
            max_objects: 1,
            ..BYTES
        };
        let held = r
            .reserve(ann, object("a", 1), limits, || Ok(0))
            .unwrap()
            .unwrap();
        r.record_object(ann, "data", "a", 1, &"0".repeat(64), None, &[])
            .unwrap();
        // Held still, but counted once: replacing "a" fits, a second object does not.
        assert!(
            r.reserve(ann, object("a", 2), limits, || Ok(0))
                .unwrap()
                .is_ok()
        );
        let other = r.reserve(ann, object("b", 1), limits, || Ok(0)).unwrap();
        assert_eq!(other.unwrap_err(), OverLimit::Objects(1));
        drop(held);
    }

    #[test]
    fn a_settled_reservation_dropped_later_leaves_the_next_one_alone() {
        let (_d, r, ann) = registry();
        let limits = Limits {
            max_bytes: 0,
            max_archives: 0,
            max_objects: 2,
        };
        let a = r
            .reserve(ann, object("a", 1), limits, || Ok(0))
            .unwrap()
            .unwrap();
        r.record_object(ann, "data", "a", 1, &"0".repeat(64), None, &[])
            .unwrap();
        // "b" is reserved after "a"'s row was settled: a reused id would make dropping a's
        // guard delete b's room.
        let b = r
            .reserve(ann, object("b", 1), limits, || Ok(0))
            .unwrap()
            .unwrap();
        drop(a);
        let c = r.reserve(ann, object("c", 1), limits, || Ok(0)).unwrap();
        assert_eq!(c.unwrap_err(), OverLimit::Objects(2));
        drop(b);
    }

    #[test]
    fn an_earlier_reservations_table_is_remade_with_ids_never_reused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("kura.sqlite");
        drop(Registry::open(&path).unwrap());
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "DROP TABLE reservations;
             CREATE TABLE reservations (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
                 kind TEXT, name TEXT, bytes INTEGER NOT NULL, objects INTEGER NOT NULL,
                 archives INTEGER NOT NULL);",
        )
        .unwrap();
        drop(db);
        drop(Registry::open(&path).unwrap());
        let sql: String = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'reservations'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("AUTOINCREMENT"), "{sql}");
    }

    #[test]
    fn pending_uploads_count_against_the_storage_limit() {
        let (_d, r, ann) = registry();
        let piece = r.reserve(ann, Room::Piece(100), BYTES, || Ok(3 * MIN_CHARGE - 100));
        let _held = piece.unwrap().unwrap();
        let more = r.reserve(ann, Room::Piece(1), BYTES, || Ok(3 * MIN_CHARGE - 100));
        assert_eq!(more.unwrap().unwrap_err(), OverLimit::Bytes(3 * MIN_CHARGE));
    }

    #[test]
    fn replacing_an_object_needs_only_the_difference() {
        let (_d, r, ann) = registry();
        r.record_object(ann, "data", "a", 2 * MIN_CHARGE, &"0".repeat(64), None, &[])
            .unwrap();
        assert_eq!(r.user("ann").unwrap().bytes, 2 * MIN_CHARGE);
        let again = r.reserve(ann, object("a", 3 * MIN_CHARGE), BYTES, || Ok(0));
        assert!(again.unwrap().is_ok());
        let other = r.reserve(ann, object("b", 2 * MIN_CHARGE), BYTES, || Ok(0));
        assert!(other.unwrap().is_err());
    }

    #[test]
    fn objects_and_archives_are_capped_with_those_reserved() {
        let (_d, r, ann) = registry();
        let limits = Limits {
            max_bytes: 0,
            max_archives: 1,
            max_objects: 2,
        };
        let snap = |n| Room::Object {
            kind: "snapshots",
            name: n,
            size: 10,
        };
        let s1 = r
            .reserve(ann, snap("s1"), limits, || Ok(0))
            .unwrap()
            .unwrap();
        let s2 = r.reserve(ann, snap("s2"), limits, || Ok(0)).unwrap();
        assert_eq!(s2.unwrap_err(), OverLimit::Archives(1));
        let _d1 = r
            .reserve(ann, object("d1", 1), limits, || Ok(0))
            .unwrap()
            .unwrap();
        let d2 = r.reserve(ann, object("d2", 1), limits, || Ok(0)).unwrap();
        assert_eq!(d2.unwrap_err(), OverLimit::Objects(2));
        drop(s1);
        assert!(
            r.reserve(ann, object("d2", 1), limits, || Ok(0))
                .unwrap()
                .is_ok()
        );
    }
}

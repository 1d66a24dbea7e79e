//! What both agents keep in their SQLite file besides their own tables: the `Message-Id`s
//! already taken in (`seen`), small numbers by name (`meta`), and among them where reading
//! the mailbox stopped ([`Mark`]).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::MailError;
use crate::inbox::Mark;

/// Opens (or makes) an agent's state file with the shared tables and `schema`'s own.
pub fn open(path: &Path, schema: &str) -> Result<Connection, MailError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let db = Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);",
    )?;
    db.execute_batch(schema)?;
    Ok(db)
}

/// The number named `k` (0 if never set).
pub fn meta(db: &Connection, k: &str) -> Result<i64, MailError> {
    Ok(db
        .query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Sets the number named `k`.
pub fn set_meta(db: &Connection, k: &str, v: i64) -> Result<(), MailError> {
    db.execute(
        "INSERT INTO meta (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        params![k, v],
    )?;
    Ok(())
}

/// Where reading the mailbox stopped.
pub fn mark(db: &Connection) -> Result<Mark, MailError> {
    Ok(Mark {
        validity: meta(db, "validity")? as u32,
        uid: meta(db, "uid")? as u32,
    })
}

/// Moves the mark to `uid` of the mailbox with UID validity `validity`.
pub fn set_mark(db: &Connection, validity: u32, uid: u32) -> Result<(), MailError> {
    set_meta(db, "validity", i64::from(validity))?;
    set_meta(db, "uid", i64::from(uid))
}

/// Records `id` as taken in at `at` (seconds); whether it was already.
pub fn record_seen(db: &Connection, id: &str, at: i64) -> Result<bool, MailError> {
    Ok(db.execute(
        "INSERT OR IGNORE INTO seen (id, at) VALUES (?1, ?2)",
        params![id, at],
    )? == 0)
}

/// Whether `id` was taken in.
pub fn was_seen(db: &Connection, id: &str) -> Result<bool, MailError> {
    Ok(db
        .query_row("SELECT 1 FROM seen WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

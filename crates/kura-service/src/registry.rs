//! Users, contracts, sessions, the backup log, and where every stored object's copies are
//! ([`catalog`]), what integrity checks found ([`integrity`]), and statements and the ledger
//! ([`billing`]), in one SQLite file.

pub mod access;
pub mod billing;
pub mod catalog;
pub mod integrity;
pub mod quota;

use std::path::Path;
use std::sync::Mutex;

use kura_core::job::{JobReport, JobStatus};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A user name is taken.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// No such user.
    #[error("no user {0:?}")]
    NoUser(String),
    /// Invalid input.
    #[error("{0}")]
    Invalid(String),
    /// A request that the current state does not allow (an objection after its deadline).
    #[error("{0}")]
    Conflict(String),
}

/// Shorthand.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A user's contract: what the service lets them do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contract {
    /// The fee plan.
    pub plan: String,
    /// Last day of the access period (inclusive).
    pub until: jiff::civil::Date,
    /// Whether the fee is paid.
    pub paid: bool,
    /// Most bytes stored; 0 for no limit.
    pub max_bytes: u64,
    /// Most snapshots (archives); 0 for no limit.
    pub max_archives: u64,
    /// Most sessions (logins) over the contract; 0 for no limit.
    pub max_accesses: u64,
    /// The user's home region (the second copy of their data goes elsewhere).
    pub home_region: String,
    /// When the membership began (contract years count from here); `None` keeps the date
    /// already recorded, or today for a new contract.
    pub member_since: Option<jiff::civil::Date>,
}

/// A user as the operator sees them.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Numeric id (names the storage area).
    pub id: i64,
    /// Login name.
    pub name: String,
    /// When the user was added.
    pub created: String,
    /// Sessions opened so far.
    pub accesses: u64,
    /// Bytes stored, as charged: each object counts at least [`quota::MIN_CHARGE`].
    pub bytes: u64,
    /// Objects stored.
    pub objects: u64,
    /// Whether the user's devices may only add: deleting or replacing an object needs the
    /// maintenance password (see [`access`]).
    pub append_only: bool,
    /// When the operator removed the user, if so (the name stays taken, the history kept).
    pub removed: Option<String>,
    /// Where notices are mailed.
    pub email: Option<String>,
    /// The contract, if any.
    pub contract: Option<Contract>,
}

/// What a credential lets its holder do: whose data, and whether only adding to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The user's id.
    pub user: i64,
    /// Whether deleting and replacing objects is refused.
    pub append_only: bool,
}

/// One line of the service's backup log: a job as its client reported it.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Whose job.
    pub user: String,
    /// The user's numeric id (names the storage area).
    pub user_id: i64,
    /// The client's report.
    #[serde(flatten)]
    pub report: JobReport,
    /// When the service last heard of the job.
    pub updated: String,
}

/// Jobs kept per user in the service's log; the oldest go first.
pub const MAX_LOGGED_JOBS: i64 = 10_000;

/// The service's database.
pub struct Registry {
    db: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    created TEXT NOT NULL,
    accesses INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    email TEXT,
    objects INTEGER NOT NULL DEFAULT 0,
    append_only INTEGER NOT NULL DEFAULT 0,
    maintenance TEXT,
    removed TEXT
);
CREATE TABLE IF NOT EXISTS reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id),
    kind TEXT,
    name TEXT,
    bytes INTEGER NOT NULL,
    objects INTEGER NOT NULL,
    archives INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS contracts (
    user_id INTEGER PRIMARY KEY REFERENCES users(id),
    plan TEXT NOT NULL,
    until TEXT NOT NULL,
    paid INTEGER NOT NULL,
    max_bytes INTEGER NOT NULL,
    max_archives INTEGER NOT NULL,
    max_accesses INTEGER NOT NULL,
    home_region TEXT NOT NULL DEFAULT '',
    member_since TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    user_id INTEGER NOT NULL REFERENCES users(id),
    job TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    ended TEXT,
    files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    stored_added INTEGER NOT NULL,
    snapshot TEXT,
    updated TEXT NOT NULL,
    PRIMARY KEY (user_id, job)
);
CREATE TABLE IF NOT EXISTS certs (
    fingerprint TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id)
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    expires TEXT NOT NULL,
    append_only INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS objects (
    user_id INTEGER NOT NULL REFERENCES users(id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    stored TEXT NOT NULL,
    degraded TEXT,
    verified TEXT,
    PRIMARY KEY (user_id, kind, name)
);
CREATE INDEX IF NOT EXISTS objects_stored ON objects (user_id, stored);
CREATE TABLE IF NOT EXISTS copies (
    user_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    site TEXT NOT NULL,
    rank INTEGER NOT NULL,
    status TEXT NOT NULL,
    region TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_ref TEXT NOT NULL,
    detail TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, name, site),
    FOREIGN KEY (user_id, kind, name) REFERENCES objects (user_id, kind, name) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS copies_site ON copies (site);
CREATE TABLE IF NOT EXISTS site_failures (
    site TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    last TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orphans (
    site TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (site, path)
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    object TEXT,
    sites TEXT NOT NULL,
    summary TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_user ON incidents (user_id, at);
CREATE INDEX IF NOT EXISTS messages_user ON messages (user_id, at);
CREATE TABLE IF NOT EXISTS statements (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    period_start TEXT NOT NULL,
    period_end TEXT NOT NULL,
    issued TEXT NOT NULL,
    deadline TEXT NOT NULL,
    currency TEXT NOT NULL,
    decimals INTEGER NOT NULL DEFAULT 0,
    lines TEXT NOT NULL,
    total INTEGER NOT NULL,
    status TEXT NOT NULL,
    objection TEXT,
    resolution TEXT,
    told TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    txn TEXT NOT NULL,
    at TEXT NOT NULL,
    statement TEXT NOT NULL REFERENCES statements(id),
    account TEXT NOT NULL,
    debit INTEGER NOT NULL CHECK (debit >= 0),
    credit INTEGER NOT NULL CHECK (credit >= 0),
    UNIQUE (txn, account)
);
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TABLE IF NOT EXISTS usage_days (
    user_id INTEGER NOT NULL REFERENCES users(id),
    day TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
);
CREATE TABLE IF NOT EXISTS snapshot_packs (
    user_id INTEGER NOT NULL REFERENCES users(id),
    snapshot TEXT NOT NULL,
    packs BLOB NOT NULL,
    PRIMARY KEY (user_id, snapshot)
);
";

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Brings a database made by an earlier version up to the current schema.
fn migrate(db: &Connection) -> rusqlite::Result<()> {
    let has = |table: &str, column: &str| -> rusqlite::Result<bool> {
        let mut stmt = db.prepare(&format!("PRAGMA table_info({table})"))?;
        let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
        for n in names {
            if n? == column {
                return Ok(true);
            }
        }
        Ok(false)
    };
    if !has("users", "email")? {
        db.execute_batch("ALTER TABLE users ADD COLUMN email TEXT;")?;
    }
    if !has("users", "objects")? {
        // Usage became charged bytes (each object at least `quota::MIN_CHARGE`) with a count.
        db.execute_batch(&format!(
            "ALTER TABLE users ADD COLUMN objects INTEGER NOT NULL DEFAULT 0;
             UPDATE users SET
                 objects = (SELECT COUNT(*) FROM objects o WHERE o.user_id = users.id),
                 bytes = (SELECT COALESCE(SUM(MAX(o.size, {min})), 0) FROM objects o
                          WHERE o.user_id = users.id);",
            min = quota::MIN_CHARGE
        ))?;
    }
    if !has("users", "append_only")? {
        db.execute_batch(
            "ALTER TABLE users ADD COLUMN append_only INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE users ADD COLUMN maintenance TEXT;
             ALTER TABLE users ADD COLUMN removed TEXT;",
        )?;
    }
    if !has("sessions", "append_only")? {
        db.execute_batch(
            "ALTER TABLE sessions ADD COLUMN append_only INTEGER NOT NULL DEFAULT 0;",
        )?;
    }
    if !has("objects", "verified")? {
        db.execute_batch("ALTER TABLE objects ADD COLUMN verified TEXT;")?;
    }
    if !has("contracts", "home_region")? {
        db.execute_batch(
            "ALTER TABLE contracts ADD COLUMN home_region TEXT NOT NULL DEFAULT '';
             ALTER TABLE contracts ADD COLUMN member_since TEXT;",
        )?;
    }
    // A reservation settled by its store and then dropped by its guard is deleted twice, by
    // name and then by id: ids must never be reused, or the second delete would take another
    // store's room. Reservations hold nothing across starts, so the table is simply remade.
    let reservations: String = db.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'reservations'",
        [],
        |r| r.get(0),
    )?;
    if !reservations.contains("AUTOINCREMENT") {
        db.execute_batch("DROP TABLE reservations;")?;
        db.execute_batch(SCHEMA)?;
    }
    Ok(())
}

/// Refuses what is not a plain e-mail address (it goes into a message header).
pub fn check_email(e: &str) -> Result<()> {
    let plausible = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !e
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c));
    if plausible {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{e:?} is not an e-mail address (name@domain.example)"
        )))
    }
}

/// Hashes a password with Argon2id (PHC string).
pub fn hash_password(password: &[u8]) -> Result<String> {
    crate::password::hash(password).map_err(RegistryError::Invalid)
}

/// Sessions are stored by hash, so a copy of the database does not hold usable tokens.
fn token_hash(token: &str) -> String {
    kura_core::Id::of_bytes(token.as_bytes()).to_hex()
}

impl Registry {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Registry> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.execute_batch(SCHEMA)?;
        migrate(&db)?;
        Ok(Registry { db: Mutex::new(db) })
    }

    /// Adds a user with an Argon2id-hashed password.
    pub fn add_user(&self, name: &str, password: &[u8]) -> Result<i64> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        {
            return Err(RegistryError::Invalid(format!(
                "invalid user name {name:?} (letters, digits, - _ . @; at most 64)"
            )));
        }
        if password.len() < 8 {
            return Err(RegistryError::Invalid(
                "the password must have at least 8 characters".into(),
            ));
        }
        let hash = hash_password(password)?;
        let db = lock(&self.db);
        match db.execute(
            "INSERT INTO users (name, password, created) VALUES (?1, ?2, ?3)",
            params![name, hash, jiff::Timestamp::now().to_string()],
        ) {
            Ok(_) => Ok(db.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(RegistryError::UserExists(name.into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets (replaces) a user's contract.
    pub fn set_contract(&self, name: &str, c: &Contract) -> Result<()> {
        let id = self.user_id(name)?;
        lock(&self.db).execute(
            "INSERT INTO contracts (user_id, plan, until, paid, max_bytes, max_archives, max_accesses, home_region, member_since)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, COALESCE(?9, ?10))
             ON CONFLICT(user_id) DO UPDATE SET plan=?2, until=?3, paid=?4, max_bytes=?5, max_archives=?6,
                 max_accesses=?7, home_region=?8, member_since=COALESCE(?9, member_since, ?10)",
            params![
                id,
                c.plan,
                c.until.to_string(),
                c.paid,
                c.max_bytes as i64,
                c.max_archives as i64,
                c.max_accesses as i64,
                c.home_region,
                c.member_since.map(|d| d.to_string()),
                jiff::Zoned::now().date().to_string(),
            ],
        )?;
        Ok(())
    }

    /// Sets (or with `None` clears) the address a user's notices are mailed to.
    pub fn set_email(&self, name: &str, email: Option<&str>) -> Result<()> {
        if let Some(e) = email {
            check_email(e)?;
        }
        let id = self.user_id(name)?;
        lock(&self.db).execute(
            "UPDATE users SET email = ?1 WHERE id = ?2",
            params![email, id],
        )?;
        Ok(())
    }

    fn user_id(&self, name: &str) -> Result<i64> {
        lock(&self.db)
            .query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
            .optional()?
            .ok_or_else(|| RegistryError::NoUser(name.into()))
    }

    /// Every user with their contract.
    pub fn users(&self) -> Result<Vec<User>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare(
            "SELECT u.id, u.name, u.created, u.accesses, u.bytes, c.plan, c.until, c.paid, c.max_bytes, c.max_archives, c.max_accesses,
                    c.home_region, c.member_since, u.email, u.objects, u.append_only, u.removed
             FROM users u LEFT JOIN contracts c ON c.user_id = u.id ORDER BY u.name",
        )?;
        let rows = stmt.query_map([], |r| {
            let plan: Option<String> = r.get(5)?;
            let contract = match plan {
                Some(plan) => {
                    let until: String = r.get(6)?;
                    Some(Contract {
                        plan,
                        until: until.parse().unwrap_or_default(),
                        paid: r.get(7)?,
                        max_bytes: r.get::<_, i64>(8)? as u64,
                        max_archives: r.get::<_, i64>(9)? as u64,
                        max_accesses: r.get::<_, i64>(10)? as u64,
                        home_region: r.get(11)?,
                        member_since: r.get::<_, Option<String>>(12)?.and_then(|d| d.parse().ok()),
                    })
                }
                None => None,
            };
            Ok(User {
                id: r.get(0)?,
                name: r.get(1)?,
                created: r.get(2)?,
                accesses: r.get::<_, i64>(3)? as u64,
                bytes: r.get::<_, i64>(4)? as u64,
                objects: r.get::<_, i64>(14)? as u64,
                append_only: r.get(15)?,
                removed: r.get(16)?,
                email: r.get(13)?,
                contract,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The user with this name.
    pub fn user(&self, name: &str) -> Result<User> {
        self.users()?
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| RegistryError::NoUser(name.into()))
    }

    /// The user with this id.
    pub fn user_by_id(&self, id: i64) -> Result<User> {
        self.users()?
            .into_iter()
            .find(|u| u.id == id)
            .ok_or_else(|| RegistryError::NoUser(id.to_string()))
    }

    /// Checks a password, or the user's maintenance password: what it grants, or `None` for a
    /// wrong name or password. No session is opened and no access counted until the caller has
    /// checked the contract ([`Registry::open_session`]).
    pub fn check_password(&self, name: &str, password: &[u8]) -> Result<Option<Grant>> {
        let row: Option<(i64, String, Option<String>, bool)> = lock(&self.db)
            .query_row(
                "SELECT id, password, maintenance, append_only FROM users
                 WHERE name = ?1 AND removed IS NULL",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((user, phc, maintenance, append_only)) = row else {
            // Spend the same time as a real check, so timing does not reveal which names exist.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy =
                DUMMY.get_or_init(|| hash_password(b"kura timing guard").unwrap_or_default());
            let _ = crate::password::verify(password, dummy);
            return Ok(None);
        };
        if crate::password::verify(password, &phc) {
            return Ok(Some(Grant { user, append_only }));
        }
        let full = maintenance.is_some_and(|m| crate::password::verify(password, &m));
        Ok(full.then_some(Grant {
            user,
            append_only: false,
        }))
    }

    /// What the registered client certificate with `fingerprint` grants (the TLS handshake
    /// proved the client holds its key); `None` if it is not registered. A certificate is a
    /// device's credential: it follows the user's append-only setting.
    pub fn user_by_cert(&self, fingerprint: &str) -> Result<Option<Grant>> {
        Ok(lock(&self.db)
            .query_row(
                "SELECT c.user_id, u.append_only FROM certs c JOIN users u ON u.id = c.user_id
                 WHERE c.fingerprint = ?1 AND u.removed IS NULL",
                [fingerprint.to_ascii_lowercase()],
                |r| {
                    Ok(Grant {
                        user: r.get(0)?,
                        append_only: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Registers a client certificate (by its SHA-256 fingerprint) as `name`'s credential.
    pub fn add_cert(&self, name: &str, fingerprint: &str) -> Result<()> {
        let fp = fingerprint.trim().to_ascii_lowercase();
        if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RegistryError::Invalid(format!(
                "{fingerprint:?} is not a SHA-256 fingerprint (64 hex digits)"
            )));
        }
        let id = self.user_id(name)?;
        let db = lock(&self.db);
        let taken: Option<i64> = db
            .query_row(
                "SELECT user_id FROM certs WHERE fingerprint = ?1",
                [&fp],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some_and(|other| other != id) {
            return Err(RegistryError::Invalid(
                "that certificate is registered to another user".into(),
            ));
        }
        db.execute(
            "INSERT OR IGNORE INTO certs (fingerprint, user_id) VALUES (?1, ?2)",
            params![fp, id],
        )?;
        Ok(())
    }

    /// Withdraws a client certificate from `name`; its sessions end too.
    pub fn remove_cert(&self, name: &str, fingerprint: &str) -> Result<()> {
        let id = self.user_id(name)?;
        let db = lock(&self.db);
        let n = db.execute(
            "DELETE FROM certs WHERE fingerprint = ?1 AND user_id = ?2",
            params![fingerprint.trim().to_ascii_lowercase(), id],
        )?;
        if n == 0 {
            return Err(RegistryError::Invalid(format!(
                "{name} has no client certificate {fingerprint}"
            )));
        }
        db.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
        Ok(())
    }

    /// Counts an access by the user of `grant` and opens a session valid for `ttl`: the user
    /// (as counted) and the session token.
    pub fn open_session(&self, grant: Grant, ttl: jiff::SignedDuration) -> Result<(User, String)> {
        let id = grant.user;
        let token = kura_core::id::hex(&kura_core::crypto::random_bytes::<32>());
        let expires = jiff::Timestamp::now() + ttl;
        {
            let db = lock(&self.db);
            db.execute(
                "UPDATE users SET accesses = accesses + 1 WHERE id = ?1",
                [id],
            )?;
            db.execute(
                "DELETE FROM sessions WHERE expires < ?1",
                [jiff::Timestamp::now().to_string()],
            )?;
            db.execute(
                "INSERT INTO sessions (token_hash, user_id, expires, append_only)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    token_hash(&token),
                    id,
                    expires.to_string(),
                    grant.append_only
                ],
            )?;
        }
        Ok((self.user_by_id(id)?, token))
    }

    /// The user a session token belongs to and what the session may do, if it is valid.
    pub fn session(&self, token: &str) -> Result<Option<(User, Grant)>> {
        let row: Option<(i64, String, bool)> = lock(&self.db)
            .query_row(
                "SELECT user_id, expires, append_only FROM sessions WHERE token_hash = ?1",
                [token_hash(token)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        match row {
            Some((id, expires, append_only))
                if expires
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|e| e > jiff::Timestamp::now()) =>
            {
                let grant = Grant {
                    user: id,
                    append_only,
                };
                Ok(Some((self.user_by_id(id)?, grant)))
            }
            _ => Ok(None),
        }
    }

    /// Records a client's report of one of its jobs, replacing the previous report; whether
    /// this report is the one that first told of its completion (so it is told to the user
    /// once, however often the client repeats it).
    pub fn record_job(&self, user: i64, r: &JobReport) -> Result<bool> {
        let db = lock(&self.db);
        let before: Option<String> = db
            .query_row(
                "SELECT status FROM jobs WHERE user_id = ?1 AND job = ?2",
                params![user, r.job.to_string()],
                |row| row.get(0),
            )
            .optional()?;
        let completed = JobStatus::Completed.to_string();
        let newly_completed = r.status.to_string() == completed && before != Some(completed);
        db.execute(
            "INSERT INTO jobs (user_id, job, type, status, started, ended, files, bytes, stored_added, snapshot, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (user_id, job) DO UPDATE SET type = ?3, status = ?4, started = ?5, ended = ?6,
                 files = ?7, bytes = ?8, stored_added = ?9, snapshot = ?10, updated = ?11",
            params![
                user,
                r.job.to_string(),
                r.kind.to_string(),
                r.status.to_string(),
                r.started.to_string(),
                r.ended.map(|t| t.to_string()),
                r.files as i64,
                r.bytes as i64,
                r.stored_added as i64,
                r.snapshot,
                jiff::Timestamp::now().to_string(),
            ],
        )?;
        db.execute(
            "DELETE FROM jobs WHERE user_id = ?1 AND job NOT IN
                (SELECT job FROM jobs WHERE user_id = ?1 ORDER BY started DESC LIMIT ?2)",
            params![user, MAX_LOGGED_JOBS],
        )?;
        Ok(newly_completed)
    }

    /// The backup log, oldest first: everyone's, or one user's.
    pub fn job_log(&self, user: Option<&str>) -> Result<Vec<LogLine>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare(
            "SELECT u.name, u.id, j.job, j.type, j.status, j.started, j.ended, j.files, j.bytes, j.stored_added, j.snapshot, j.updated
             FROM jobs j JOIN users u ON u.id = j.user_id
             WHERE ?1 IS NULL OR u.name = ?1 ORDER BY j.started, j.job",
        )?;
        let rows = stmt.query_map([user], |r| {
            let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
            let parse_err = |i: usize, e: String| {
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            };
            let json = serde_json::json!({
                "job": text(2)?, "type": text(3)?, "status": text(4)?, "started": text(5)?,
                "ended": r.get::<_, Option<String>>(6)?, "files": r.get::<_, i64>(7)?,
                "bytes": r.get::<_, i64>(8)?, "stored_added": r.get::<_, i64>(9)?,
                "snapshot": r.get::<_, Option<String>>(10)?,
            });
            Ok(LogLine {
                user: text(0)?,
                user_id: r.get(1)?,
                report: serde_json::from_value(json).map_err(|e| parse_err(2, e.to_string()))?,
                updated: text(11)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// A new database in a scratch directory, with one user, `ann` (for tests).
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Registry, i64) {
    let dir = tempfile::tempdir().unwrap();
    let s = Registry::open(&dir.path().join("kura.sqlite")).unwrap();
    let id = s.add_user("ann", b"a long password").unwrap();
    (dir, s, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_home_regions_is_brought_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                    password TEXT NOT NULL, created TEXT NOT NULL,
                    accesses INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE contracts (user_id INTEGER PRIMARY KEY REFERENCES users(id),
                    plan TEXT NOT NULL, until TEXT NOT NULL, paid INTEGER NOT NULL,
                    max_bytes INTEGER NOT NULL, max_archives INTEGER NOT NULL,
                    max_accesses INTEGER NOT NULL);
                 INSERT INTO users (name, password, created) VALUES ('old', 'x', '2020-01-01');
                 INSERT INTO contracts VALUES (1, 'basic', '2030-01-01', 1, 0, 0, 0);",
            )
            .unwrap();
        let s = Registry::open(&path).unwrap();
        let c = s.user("old").unwrap().contract.unwrap();
        assert_eq!((c.home_region.as_str(), c.member_since), ("", None));
        s.set_contract(
            "old",
            &Contract {
                home_region: "kansai".into(),
                ..c
            },
        )
        .unwrap();
        let c = s.user("old").unwrap().contract.unwrap();
        assert_eq!(c.home_region, "kansai");
        assert_eq!(
            c.member_since,
            Some(jiff::Zoned::now().date()),
            "today when not given"
        );
        drop(s);
        Registry::open(&path).unwrap();
    }

    #[test]
    fn users_contracts_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let s = Registry::open(&dir.path().join("db.sqlite")).unwrap();
        s.add_user("alice", b"correct horse").unwrap();
        assert!(matches!(
            s.add_user("alice", b"another pw"),
            Err(RegistryError::UserExists(_))
        ));
        assert!(s.add_user("bad name!", b"long enough").is_err());
        assert!(s.add_user("bob", b"short").is_err());
        let c = Contract {
            plan: "basic".into(),
            until: "2030-01-01".parse().unwrap(),
            paid: true,
            max_bytes: 10,
            max_archives: 2,
            max_accesses: 0,
            home_region: "kanto".into(),
            member_since: Some("2020-04-01".parse().unwrap()),
        };
        s.set_contract("alice", &c).unwrap();
        assert!(s.set_contract("nobody", &c).is_err());
        for bad in ["alice", "a@b", "a b@c.d", "a@b.c\r\nBcc: x@y.z", "<a@b.c>"] {
            assert!(s.set_email("alice", Some(bad)).is_err(), "{bad:?}");
        }
        s.set_email("alice", Some("alice@example.com")).unwrap();
        assert_eq!(
            s.user("alice").unwrap().email.as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(s.user("alice").unwrap().contract, Some(c));
        let ttl = jiff::SignedDuration::from_secs(60);
        assert!(
            s.check_password("alice", b"wrong password")
                .unwrap()
                .is_none()
        );
        assert!(
            s.check_password("nobody", b"correct horse")
                .unwrap()
                .is_none()
        );
        let id = s
            .check_password("alice", b"correct horse")
            .unwrap()
            .unwrap();
        let (u, token) = s.open_session(id, ttl).unwrap();
        assert_eq!(u.accesses, 1);
        assert_eq!(s.session(&token).unwrap().unwrap().0.name, "alice");
        assert!(s.session("forged").unwrap().is_none());
        let (_, old) = s
            .open_session(id, jiff::SignedDuration::from_secs(-1))
            .unwrap();
        assert!(s.session(&old).unwrap().is_none(), "expired session");
        let raw: String = lock(&s.db)
            .query_row("SELECT password FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(raw.starts_with("$argon2id$"), "{raw}");
    }
}

//! The key manager's SQLite file: each wallet's escrowed share with the owner's
//! authentication (password and identity-card data as Argon2id hashes, a biometric template),
//! the failures that make the next try wait, and a log of every attempt.
//!
//! A try is counted as a failure when it starts and forgiven when it succeeds, so parallel
//! guesses cannot all slip in before the first failure is written: of 32 at once, exactly
//! [`FREE_FAILURES`] are checked. Failures are kept in the file, so a restart forgives
//! nothing.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use kura_service::api::throttle::backoff;
use kura_wallet::biometric::{THRESHOLD, Template};
use kura_wallet::sign::SigningKey;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use kura_wallet::escrow::{Credentials, Delivery, Enrol, Rule};

/// Failures that cost no wait.
pub const FREE_FAILURES: u32 = 3;
/// The wait after the first failure beyond them; each further one doubles it.
pub const FIRST_WAIT: Duration = Duration::from_secs(60);
/// The longest wait.
pub const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Attempts the log keeps; older ones are dropped.
pub const LOG_ROWS: i64 = 100_000;

/// Why the key manager refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum KeymanError {
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The request is not what it should be.
    #[error("{0}")]
    Invalid(String),
    /// The credentials do not match (or there is no such escrow: the answer is the same).
    #[error("the credentials do not match this wallet's escrow")]
    Refused,
    /// Too many recent failures.
    #[error("too many failed attempts for this wallet: try again in {} s", .0.as_secs().max(1))]
    Backoff(Duration),
    /// As many checks as may wait are waiting.
    #[error("the key manager is busy checking credentials: try again shortly")]
    Busy,
    /// A body past its bound.
    #[error("the request is larger than {0} bytes")]
    TooLarge(usize),
    /// An address enrolled as many escrows as one may.
    #[error("this address enrolled its limit of {0} escrows")]
    PerAddress(u64),
    /// The key manager holds as many escrows as it may.
    #[error("the key manager holds its limit of {0} escrows")]
    Full(u64),
    /// The value was redeemed, or restored to another wallet, already.
    #[error("this certificate's value was redeemed, or restored to another wallet, already")]
    Redeemed,
    /// The vault could not give the value.
    #[error("{0}")]
    Vault(String),
}

/// One wallet's escrow as stored.
#[derive(Clone)]
pub struct Escrow {
    /// The wallet's public key.
    pub wallet: [u8; 32],
    /// The escrowed share.
    pub share: Vec<u8>,
    /// Argon2id hash of the password.
    pub password: Option<String>,
    /// Argon2id hash of the identity-card data.
    pub id_card: Option<String>,
    /// The enrolled biometric template.
    pub biometric: Option<Template>,
    /// All methods or any one.
    pub rule: Rule,
    /// The enrolment's sequence: a later one must carry a larger one.
    pub sequence: u64,
}

impl Escrow {
    /// Hashes an enrolment's secrets (slow: Argon2id, on a checking thread).
    pub fn from_enrolment(e: &Enrol) -> Result<Escrow, KeymanError> {
        let hash = |s: &Option<String>| {
            s.as_ref()
                .map(|p| kura_service::password::hash(p.as_bytes()))
                .transpose()
                .map_err(KeymanError::Invalid)
        };
        Ok(Escrow {
            wallet: e.wallet,
            share: e.share.clone(),
            password: hash(&e.credentials.password)?,
            id_card: hash(&e.credentials.id_card)?,
            biometric: e.credentials.biometric.clone().map(Template),
            rule: e.rule,
            sequence: e.sequence,
        })
    }

    /// Whether `c` releases this escrow (slow: Argon2id). Each enrolled method is checked
    /// when offered; under [`Rule::All`] every one must be offered and match, under
    /// [`Rule::Any`] one match is enough.
    pub fn admits(&self, c: &Credentials) -> bool {
        let secret = |stored: &Option<String>, given: &Option<String>| {
            stored.as_ref().map(|phc| {
                given
                    .as_ref()
                    .is_some_and(|g| kura_service::password::verify(g.as_bytes(), phc))
            })
        };
        let checks = [
            secret(&self.password, &c.password),
            secret(&self.id_card, &c.id_card),
            self.biometric.as_ref().map(|t| {
                c.biometric
                    .as_ref()
                    .is_some_and(|b| t.matches(&Template(b.clone()), THRESHOLD))
            }),
        ];
        let enrolled = checks.iter().flatten();
        match self.rule {
            Rule::All => enrolled.clone().count() > 0 && enrolled.clone().all(|ok| *ok),
            Rule::Any => enrolled.clone().any(|ok| *ok),
        }
    }
}

/// Whether a try may start at `now_ms` after `failures` failures, the last at `last_ms`.
fn admit(failures: u32, last_ms: i64, now_ms: i64) -> Result<(), KeymanError> {
    let wait = backoff(failures, FREE_FAILURES, FIRST_WAIT, LONGEST_WAIT);
    let free_at = last_ms.saturating_add(wait.as_millis() as i64);
    if free_at > now_ms {
        return Err(KeymanError::Backoff(Duration::from_millis(
            (free_at - now_ms) as u64,
        )));
    }
    Ok(())
}

/// Failures against wallets that have no escrow, kept in memory by the same rule as real
/// ones, so the answers (403, then 429 after three) do not tell which escrows exist. At most
/// [`PHANTOMS`] are remembered.
#[derive(Default)]
pub struct Phantoms(Mutex<std::collections::HashMap<[u8; 32], (u32, i64)>>);

/// The most wallets without an escrow whose failures are remembered.
pub const PHANTOMS: usize = 10_000;

impl Phantoms {
    /// Starts a try for `wallet` at `now_ms`, as [`Store::begin`] does for a real escrow.
    pub fn begin(&self, wallet: &[u8; 32], now_ms: i64) -> Result<(), KeymanError> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (failures, last) = map.get(wallet).copied().unwrap_or((0, 0));
        admit(failures, last, now_ms)?;
        if map.len() >= PHANTOMS && !map.contains_key(wallet) {
            let oldest = map.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k);
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(*wallet, (failures + 1, now_ms));
        Ok(())
    }
}

/// Spends the time a real password check takes, so an unknown wallet answers as slowly as a
/// known one.
pub fn check_nothing(c: &Credentials) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| kura_service::password::hash(b"kura").unwrap_or_default());
    let given = c.password.as_deref().unwrap_or_default();
    let _ = kura_service::password::verify(given.as_bytes(), dummy);
}

/// A re-keying as the key manager keeps it.
pub struct Rekeying {
    /// The replacement asked of the vault (none when the wallet had no deposits).
    pub replacement: Option<Vec<u8>>,
    /// What the owner gets: the new keys, and once done the new certificates.
    pub delivery: Delivery,
    /// The key manager's share of the new value key.
    pub new_share: Vec<u8>,
    /// Whether the vault replaced the records.
    pub done: bool,
}

/// One logged attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// When (RFC 3339).
    pub at: String,
    /// The wallet (hex).
    pub wallet: String,
    /// What was asked: enrol, release, restore.
    pub what: String,
    /// From where.
    pub address: String,
    /// ok, refused, backoff.
    pub outcome: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS escrows (
    wallet BLOB PRIMARY KEY,
    share BLOB NOT NULL,
    password TEXT,
    id_card TEXT,
    biometric TEXT,
    rule TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    last_failure_ms INTEGER NOT NULL DEFAULT 0,
    enrolled TEXT NOT NULL,
    sequence INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS rekeys (
    wallet BLOB PRIMARY KEY,
    replacement BLOB,
    delivery TEXT NOT NULL,
    new_share BLOB NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    confirmed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS restores (
    hash BLOB PRIMARY KEY,
    recipient BLOB NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    wallet TEXT NOT NULL,
    what TEXT NOT NULL,
    address TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_address ON attempts(address, what);
";

/// The key manager's store.
pub struct Store {
    db: Mutex<Connection>,
    key: SigningKey,
    max_escrows: u64,
    log_rows: i64,
}

impl Store {
    /// Opens (or makes) the store in `dir`: `keyman.sqlite` and the key manager's signing
    /// key `keyman.key` (vaults trust it for emergency withdrawals), owner-only.
    pub fn open(dir: &Path, max_escrows: u64) -> Result<Store, KeymanError> {
        let (key, db) =
            kura_vault::store::open_files(dir, "keyman").map_err(KeymanError::Invalid)?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(SCHEMA)?;
        // Key managers made before enrolments carried a sequence.
        kura_vault::store::add_column(&db, "escrows", "sequence", "INTEGER NOT NULL DEFAULT 0")?;
        Ok(Store {
            db: Mutex::new(db),
            key,
            max_escrows,
            log_rows: LOG_ROWS,
        })
    }

    /// The key manager's signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite's own state consistent.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps (or replaces) a wallet's escrow; its failures start afresh. A new one is refused
    /// when the store holds its most escrows.
    pub fn enrol(&self, e: &Escrow) -> Result<(), KeymanError> {
        let biometric = e
            .biometric
            .as_ref()
            .map(|t| serde_json::to_string(&t.0).unwrap_or_default());
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let held: u64 = tx.query_row("SELECT COUNT(*) FROM escrows", [], |r| r.get(0))?;
        let last: Option<u64> = tx
            .query_row(
                "SELECT sequence FROM escrows WHERE wallet = ?1",
                params![e.wallet.as_slice()],
                |r| r.get(0),
            )
            .optional()?;
        match last {
            None if held >= self.max_escrows => return Err(KeymanError::Full(self.max_escrows)),
            // A captured enrolment sent again must not undo a later one.
            Some(last) if e.sequence <= last => {
                return Err(KeymanError::Invalid(
                    "this enrolment is no later than the escrow it would replace (a replay?)"
                        .into(),
                ));
            }
            _ => {}
        }
        // A re-keyed wallet's old key may be in a thief's hands: it enrols nothing more.
        let rekeyed: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM rekeys WHERE wallet = ?1",
            params![e.wallet.as_slice()],
            |r| r.get(0),
        )?;
        if rekeyed {
            return Err(KeymanError::Invalid(
                "this wallet was re-keyed: its old key enrols nothing; the new one may".into(),
            ));
        }
        tx.execute(
            "INSERT INTO escrows (wallet, share, password, id_card, biometric, rule, enrolled,
                sequence)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(wallet) DO UPDATE SET share = excluded.share,
                password = excluded.password, id_card = excluded.id_card,
                biometric = excluded.biometric, rule = excluded.rule,
                failures = 0, last_failure_ms = 0, enrolled = excluded.enrolled,
                sequence = excluded.sequence",
            params![
                e.wallet.as_slice(),
                e.share,
                e.password,
                e.id_card,
                biometric,
                e.rule.name(),
                jiff::Timestamp::now().to_string(),
                e.sequence
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Starts a try for `wallet` at `now_ms` (milliseconds since the epoch): refused while
    /// its failures make it wait, otherwise counted as a failure until [`Store::succeeded`].
    /// `None` when there is no such escrow.
    pub fn begin(&self, wallet: &[u8; 32], now_ms: i64) -> Result<Option<Escrow>, KeymanError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = tx
            .query_row(
                "SELECT share, password, id_card, biometric, rule, failures, last_failure_ms,
                    sequence
                 FROM escrows WHERE wallet = ?1",
                params![wallet.as_slice()],
                |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, u32>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, u64>(7)?,
                    ))
                },
            )
            .optional()?;
        let Some((share, password, id_card, biometric, rule, failures, last, sequence)) = row
        else {
            return Ok(None);
        };
        admit(failures, last, now_ms)?;
        tx.execute(
            "UPDATE escrows SET failures = failures + 1, last_failure_ms = ?2 WHERE wallet = ?1",
            params![wallet.as_slice(), now_ms],
        )?;
        tx.commit()?;
        let damaged =
            |what: &str| KeymanError::Invalid(format!("a stored escrow's {what} is damaged"));
        Ok(Some(Escrow {
            wallet: *wallet,
            share,
            password,
            id_card,
            biometric: biometric
                .map(|b| serde_json::from_str(&b).map(Template))
                .transpose()
                .map_err(|_| damaged("template"))?,
            rule: Rule::from_name(&rule).ok_or_else(|| damaged("rule"))?,
            sequence,
        }))
    }

    /// A try for `wallet` succeeded: its failures are forgiven.
    pub fn succeeded(&self, wallet: &[u8; 32]) -> Result<(), KeymanError> {
        self.db().execute(
            "UPDATE escrows SET failures = 0, last_failure_ms = 0 WHERE wallet = ?1",
            params![wallet.as_slice()],
        )?;
        Ok(())
    }

    /// The re-keying of `wallet` begun or done, if any.
    pub fn rekey(&self, wallet: &[u8; 32]) -> Result<Option<Rekeying>, KeymanError> {
        let row = self
            .db()
            .query_row(
                "SELECT replacement, delivery, new_share, done FROM rekeys WHERE wallet = ?1",
                params![wallet.as_slice()],
                |r| {
                    Ok((
                        r.get::<_, Option<Vec<u8>>>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((replacement, delivery, new_share, done)) = row else {
            return Ok(None);
        };
        Ok(Some(Rekeying {
            replacement,
            delivery: serde_json::from_str(&delivery)
                .map_err(|_| KeymanError::Invalid("a stored re-keying is damaged".into()))?,
            new_share,
            done,
        }))
    }

    /// Keeps a re-keying of `wallet` before the vault is asked, so a retry after any failure
    /// asks again for the same replacement.
    pub fn rekey_begin(&self, wallet: &[u8; 32], r: &Rekeying) -> Result<(), KeymanError> {
        self.db().execute(
            "INSERT INTO rekeys (wallet, replacement, delivery, new_share) VALUES (?1, ?2, ?3, ?4)",
            params![
                wallet.as_slice(),
                r.replacement,
                serde_json::to_string(&r.delivery).unwrap_or_default(),
                r.new_share
            ],
        )?;
        Ok(())
    }

    /// Forgets a re-keying the vault refused (the wallet's values changed since it began).
    pub fn rekey_abandon(&self, wallet: &[u8; 32]) -> Result<(), KeymanError> {
        self.db().execute(
            "DELETE FROM rekeys WHERE wallet = ?1 AND done = 0",
            params![wallet.as_slice()],
        )?;
        Ok(())
    }

    /// The vault replaced the records: the new wallet's escrow (the old one's credentials, the
    /// new share) is kept and the re-keying marked done with what was delivered, in one
    /// transaction. The old escrow stays, so a retry by the owner gets the same delivery.
    pub fn rekey_finish(
        &self,
        old: &Escrow,
        new: &Escrow,
        delivery: &Delivery,
    ) -> Result<(), KeymanError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR REPLACE INTO escrows
                (wallet, share, password, id_card, biometric, rule, enrolled, sequence)
             SELECT ?2, ?3, password, id_card, biometric, rule, ?4, sequence
             FROM escrows WHERE wallet = ?1",
            params![
                old.wallet.as_slice(),
                new.wallet.as_slice(),
                new.share,
                jiff::Timestamp::now().to_string()
            ],
        )?;
        tx.execute(
            "UPDATE rekeys SET done = 1, delivery = ?2 WHERE wallet = ?1",
            params![
                old.wallet.as_slice(),
                serde_json::to_string(delivery).unwrap_or_default()
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The wallet confirmed it holds what the re-keying of `old` delivered (the caller
    /// checked the new key's signature): the delivered secrets and the replacement are
    /// forgotten and the old escrow is removed, in one transaction. The row stays, so the old
    /// key enrols nothing again.
    pub fn rekey_confirm(&self, old: &[u8; 32], public: &Delivery) -> Result<(), KeymanError> {
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE rekeys SET confirmed = 1, replacement = NULL, delivery = ?2
             WHERE wallet = ?1 AND done = 1",
            params![
                old.as_slice(),
                serde_json::to_string(public).unwrap_or_default()
            ],
        )?;
        tx.execute(
            "DELETE FROM escrows WHERE wallet = ?1",
            params![old.as_slice()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Gives the value whose payload hash is `hash` to the wallet `recipient`: the first
    /// claim holds, a repeat by the same wallet too (its answer was lost), another wallet's
    /// is refused, so a value restored is a thing, not a copy.
    pub fn claim_restore(&self, hash: &[u8; 32], recipient: &[u8; 32]) -> Result<(), KeymanError> {
        let db = self.db();
        db.execute(
            "INSERT OR IGNORE INTO restores (hash, recipient, at) VALUES (?1, ?2, ?3)",
            params![
                hash.as_slice(),
                recipient.as_slice(),
                jiff::Timestamp::now().to_string()
            ],
        )?;
        let holder: Vec<u8> = db.query_row(
            "SELECT recipient FROM restores WHERE hash = ?1",
            params![hash.as_slice()],
            |r| r.get(0),
        )?;
        if holder != recipient {
            return Err(KeymanError::Redeemed);
        }
        Ok(())
    }

    /// Escrows enrolled from `address` (by the attempt log).
    pub fn enrolled_from(&self, address: &str) -> Result<u64, KeymanError> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) FROM attempts WHERE what = 'enrol' AND outcome = 'ok' AND address = ?1",
            params![address],
            |r| r.get(0),
        )?)
    }

    /// Logs an attempt (the log keeps the last [`LOG_ROWS`]).
    pub fn log(&self, a: &Attempt) -> Result<(), KeymanError> {
        let db = self.db();
        db.execute(
            "INSERT INTO attempts (at, wallet, what, address, outcome) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![a.at, a.wallet, a.what, a.address, a.outcome],
        )?;
        db.execute(
            "DELETE FROM attempts WHERE id <= (SELECT MAX(id) FROM attempts) - ?1",
            params![self.log_rows],
        )?;
        Ok(())
    }

    /// The logged attempts, oldest first.
    pub fn attempts(&self) -> Result<Vec<Attempt>, KeymanError> {
        let db = self.db();
        let mut q =
            db.prepare("SELECT at, wallet, what, address, outcome FROM attempts ORDER BY id")?;
        let rows = q.query_map([], |r| {
            Ok(Attempt {
                at: r.get(0)?,
                wallet: r.get(1)?,
                what: r.get(2)?,
                address: r.get(3)?,
                outcome: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Escrows kept, and attempts refused in the log.
    pub fn counts(&self) -> Result<(u64, u64), KeymanError> {
        Ok(self.db().query_row(
            "SELECT (SELECT COUNT(*) FROM escrows),
                    (SELECT COUNT(*) FROM attempts WHERE outcome != 'ok')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(password: &str, bio: Option<Vec<f32>>) -> Credentials {
        Credentials {
            password: Some(password.into()),
            id_card: None,
            biometric: bio,
        }
    }

    #[test]
    fn all_needs_every_enrolled_method_and_any_needs_one() {
        let w = SigningKey::generate();
        let template = vec![0.5f32; 16];
        let near: Vec<f32> = template.iter().map(|x| x + 0.02).collect();
        let far: Vec<f32> = template.iter().map(|x| x + 0.3).collect();
        let enrol = |rule| {
            Escrow::from_enrolment(&Enrol::sign(
                &w,
                vec![1; 33],
                (creds("pw-right", Some(template.clone())), rule),
                1,
            ))
            .unwrap()
        };
        let all = enrol(Rule::All);
        assert!(all.admits(&creds("pw-right", Some(near.clone()))));
        assert!(!all.admits(&creds("pw-right", Some(far.clone()))));
        assert!(!all.admits(&creds("pw-wrong", Some(near.clone()))));
        assert!(
            !all.admits(&creds("pw-right", None)),
            "every method is needed"
        );
        let any = enrol(Rule::Any);
        assert!(any.admits(&creds("pw-wrong", Some(near))));
        assert!(any.admits(&creds("pw-right", None)));
        assert!(!any.admits(&creds("pw-wrong", Some(far))));
    }

    #[test]
    fn a_wallet_without_an_escrow_backs_off_as_one_with_an_escrow_does() {
        let p = Phantoms::default();
        let t0 = 1_000_000;
        for _ in 0..FREE_FAILURES {
            p.begin(&[7; 32], t0).unwrap();
        }
        assert!(matches!(
            p.begin(&[7; 32], t0 + 1),
            Err(KeymanError::Backoff(_))
        ));
        assert!(p.begin(&[8; 32], t0 + 1).is_ok());
    }

    #[test]
    fn a_full_key_manager_refuses_a_new_escrow_and_replaces_a_known_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let enrol = |w: &SigningKey, sequence| {
            let e = Enrol::sign(w, vec![1; 33], (creds("pw", None), Rule::All), sequence);
            Escrow::from_enrolment(&e).unwrap()
        };
        let first = SigningKey::generate();
        store.enrol(&enrol(&first, 1)).unwrap();
        assert!(matches!(
            store.enrol(&enrol(&SigningKey::generate(), 1)),
            Err(KeymanError::Full(1))
        ));
        store.enrol(&enrol(&first, 2)).unwrap();
    }

    #[test]
    fn a_replayed_enrolment_does_not_undo_a_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 10).unwrap();
        let w = SigningKey::generate();
        let enrol = |password, sequence| {
            let e = Enrol::sign(
                &w,
                vec![1; 33],
                (creds(password, None), Rule::All),
                sequence,
            );
            Escrow::from_enrolment(&e).unwrap()
        };
        let old = enrol("old password", 10);
        store.enrol(&old).unwrap();
        store.enrol(&enrol("new password", 20)).unwrap();
        // The old enrolment captured and sent again, or one as old as the escrow: refused.
        for replay in [old, enrol("another", 20)] {
            assert!(matches!(store.enrol(&replay), Err(KeymanError::Invalid(_))));
        }
        let kept = store.begin(&w.public(), 0).unwrap().unwrap();
        assert_eq!(kept.sequence, 20);
        assert!(kept.admits(&creds("new password", None)));
        assert!(!kept.admits(&creds("old password", None)));
    }

    #[test]
    fn a_restored_value_goes_to_one_wallet_and_again_only_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 10).unwrap();
        store.claim_restore(&[1; 32], &[7; 32]).unwrap();
        store.claim_restore(&[1; 32], &[7; 32]).unwrap();
        assert!(matches!(
            store.claim_restore(&[1; 32], &[8; 32]),
            Err(KeymanError::Redeemed)
        ));
        store.claim_restore(&[2; 32], &[8; 32]).unwrap();
    }

    #[test]
    fn the_attempt_log_keeps_its_last_rows_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), 10).unwrap();
        store.log_rows = 5;
        for i in 0..12 {
            store
                .log(&Attempt {
                    at: i.to_string(),
                    wallet: "w".into(),
                    what: "release".into(),
                    address: "-".into(),
                    outcome: "refused".into(),
                })
                .unwrap();
        }
        let kept: Vec<_> = store
            .attempts()
            .unwrap()
            .into_iter()
            .map(|a| a.at)
            .collect();
        assert_eq!(kept, ["7", "8", "9", "10", "11"]);
    }

    #[test]
    fn failures_wait_longer_each_time_survive_a_reopen_and_a_success_forgives_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 10).unwrap();
        let w = SigningKey::generate();
        let e = Escrow::from_enrolment(&Enrol::sign(
            &w,
            vec![1; 33],
            (creds("pw", None), Rule::All),
            1,
        ))
        .unwrap();
        store.enrol(&e).unwrap();
        assert!(store.begin(&[9; 32], 0).unwrap().is_none());
        let t0 = 1_000_000;
        for _ in 0..FREE_FAILURES {
            assert!(store.begin(&e.wallet, t0).unwrap().is_some());
        }
        let first = FIRST_WAIT.as_millis() as i64;
        assert!(matches!(
            store.begin(&e.wallet, t0 + first - 1),
            Err(KeymanError::Backoff(_))
        ));
        drop(store);
        let store = Store::open(dir.path(), 10).unwrap();
        assert!(
            store.begin(&e.wallet, t0 + 10).is_err(),
            "a reopen forgives nothing"
        );
        assert!(store.begin(&e.wallet, t0 + first).unwrap().is_some());
        match store.begin(&e.wallet, t0 + first + 1) {
            Err(KeymanError::Backoff(d)) => assert!(d > FIRST_WAIT, "{d:?} doubles"),
            other => panic!("{:?}", other.map(|e| e.is_some())),
        }
        store.succeeded(&e.wallet).unwrap();
        assert!(store.begin(&e.wallet, t0 + first + 2).unwrap().is_some());
    }
}

//! The vault's SQLite file: every registered value with its certificate, held or retired, the
//! counter, and what each wallet holds (its quota). A withdrawal retires its record in the same
//! transaction that reads it, so a certificate is redeemed once whatever the concurrency
//! (value-vault.md requirement 3).

use std::path::Path;
use std::sync::Mutex;

use kura_wallet::certificate::{Certificate, Counter, Purpose, Withdrawal};
use kura_wallet::registered::Registered;
use kura_wallet::rekey::{Replacement, answer_to_bytes};
use kura_wallet::sign::SigningKey;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// Why the vault refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The request is not what it claims to be.
    #[error("{0}")]
    Invalid(String),
    /// No record for this certificate.
    #[error("no value is registered under this certificate")]
    Unknown,
    /// The record was withdrawn already.
    #[error("this certificate was redeemed already")]
    Redeemed,
    /// A try of a withdrawal sent again as it was (a retry raises its attempt).
    #[error("this withdrawal was answered already: a replayed request gets nothing")]
    Replayed,
    /// A wallet over its quota.
    #[error("{0}")]
    Quota(String),
    /// As many such requests as may run are running.
    #[error("{0}")]
    Busy(&'static str),
    /// A body past its bound.
    #[error("the request is larger than {0} bytes")]
    TooLarge(usize),
}

/// What one wallet may keep at the vault.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// Values held at once.
    pub values: u64,
    /// Bytes held at once.
    pub bytes: u64,
}

/// The vault's store.
pub struct Store {
    db: Mutex<Connection>,
    key: SigningKey,
    max_counter: u64,
    quota: Quota,
    keyman: Option<[u8; 32]>,
    crash_at: Option<CrashAt>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    hash BLOB PRIMARY KEY,
    counter INTEGER NOT NULL,
    signer BLOB NOT NULL,
    wallet TEXT NOT NULL,
    payload BLOB NOT NULL,
    certificate BLOB NOT NULL,
    deposited TEXT NOT NULL,
    retired TEXT,
    redeemed_by BLOB,
    redeemed_attempt INTEGER
);
CREATE INDEX IF NOT EXISTS records_counter ON records(counter);
CREATE INDEX IF NOT EXISTS records_signer ON records(signer, retired);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replacements (
    id BLOB PRIMARY KEY,
    answer BLOB NOT NULL,
    made TEXT NOT NULL
);
";

/// Where a vault started with `--crash-at` stops dead (as a power cut would), to show that a
/// replacement is all or nothing: in the middle of its transaction, or after the commit but
/// before the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashAt {
    /// After writing this many of a replacement's items, before the commit.
    ReplaceItem(usize),
    /// After a replacement's commit, before its answer.
    ReplaceCommit,
    /// After a withdrawal's commit, before its answer.
    WithdrawCommit,
}

impl std::str::FromStr for CrashAt {
    type Err = String;
    fn from_str(s: &str) -> Result<CrashAt, String> {
        match s.split_once(':') {
            Some(("replace-item", n)) => n
                .parse()
                .map(CrashAt::ReplaceItem)
                .map_err(|_| format!("{n:?} is not a number")),
            None if s == "replace-commit" => Ok(CrashAt::ReplaceCommit),
            None if s == "withdraw-commit" => Ok(CrashAt::WithdrawCommit),
            _ => Err("replace-item:N, replace-commit or withdraw-commit".into()),
        }
    }
}

fn crash_if(point: Option<CrashAt>, here: CrashAt) {
    if point == Some(here) {
        eprintln!("crashing at {here:?} as asked (--crash-at)");
        std::process::abort();
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl Store {
    /// Opens (or makes) the store in `dir`: `vault.sqlite` and the vault's signing key
    /// `vault.key`, both readable by the owner only.
    pub fn open(dir: &Path, max_counter: u64, quota: Quota) -> Result<Store, VaultError> {
        let (key, db) = open_files(dir, "vault").map_err(VaultError::Invalid)?;
        db.execute_batch(SCHEMA)?;
        // Vaults made before withdrawals carried a nonce and an attempt.
        add_column(&db, "records", "redeemed_by", "BLOB")?;
        add_column(&db, "records", "redeemed_attempt", "INTEGER")?;
        Ok(Store {
            db: Mutex::new(db),
            key,
            max_counter,
            quota,
            keyman: None,
            crash_at: None,
        })
    }

    /// Stops the process dead at `point` (tests of crash safety).
    pub fn crash_at(mut self, point: Option<CrashAt>) -> Store {
        self.crash_at = point;
        self
    }

    /// Trusts the key manager whose signing key is `key` to withdraw for owners whose devices
    /// are lost (no key manager is trusted unless one is named).
    pub fn trust_keyman(mut self, key: Option<[u8; 32]>) -> Store {
        self.keyman = key;
        self
    }

    /// The vault's public key: what wallets pin.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public()
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite's own state consistent.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a deposit and answers its certificate. The wallet's signature must hold under
    /// the key the value names, and the wallet must have room.
    pub fn deposit(&self, bytes: &[u8]) -> Result<Certificate, VaultError> {
        let r = Registered::parse(bytes).map_err(|e| VaultError::Invalid(e.to_string()))?;
        r.verify(&r.signer)
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (values, used): (u64, u64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM records
             WHERE signer = ?1 AND retired IS NULL",
            params![r.signer.as_slice()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        if values >= self.quota.values || used + bytes.len() as u64 > self.quota.bytes {
            return Err(VaultError::Quota(format!(
                "this wallet holds {values} values ({used} bytes) at the vault, its limit is {} \
                 values and {} bytes",
                self.quota.values, self.quota.bytes
            )));
        }
        let cert = self.insert_record(&tx, &r)?;
        tx.commit()?;
        Ok(cert)
    }

    /// Keeps `r` as a held record under the next counter; its certificate.
    fn insert_record(
        &self,
        tx: &rusqlite::Transaction<'_>,
        r: &Registered,
    ) -> Result<Certificate, VaultError> {
        let cert = Certificate::issue(r, self.next_counter(tx)?, &self.key);
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO records (hash, counter, signer, wallet, payload, certificate, deposited)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                cert.payload_hash.as_slice(),
                cert.counter,
                r.signer.as_slice(),
                r.wallet,
                r.to_bytes(),
                cert.to_bytes(),
                now()
            ],
        )?;
        if inserted == 0 {
            return Err(VaultError::Invalid(
                "this value is registered already".into(),
            ));
        }
        Ok(cert)
    }

    /// Withdraws the value `w` names: found by counter, then hash, then the whole
    /// certificate; signed for `purpose` (by the depositing wallet, or by the trusted key
    /// manager in an emergency); retired in the same transaction. A repeat of the request
    /// that retired it (same nonce, a higher attempt) gets the same bytes again; the same try
    /// sent again, and any other request for it, is refused. Returns the registered value's bytes.
    pub fn withdraw(&self, w: &Withdrawal, purpose: Purpose) -> Result<Vec<u8>, VaultError> {
        let cert = &w.cert;
        cert.verify(&self.key.public())
            .map_err(|e| VaultError::Invalid(e.to_string()))?;
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Held {
            payload,
            signer,
            retired,
            redeemed_by,
            redeemed_attempt,
            ..
        } = Self::held(&tx, cert)?;
        let signer: [u8; 32] = signer
            .try_into()
            .map_err(|_| VaultError::Invalid("a stored signer is damaged".into()))?;
        let signed = match purpose {
            Purpose::Withdraw => w.verify(purpose, &signer),
            Purpose::Emergency | Purpose::Read => {
                self.keyman.is_some_and(|k| w.verify(purpose, &k))
            }
        };
        if !signed {
            return Err(VaultError::Invalid(match purpose {
                Purpose::Withdraw => {
                    "the withdrawal is not signed by the wallet that deposited the value".into()
                }
                Purpose::Emergency | Purpose::Read => {
                    "the request is not signed by a key manager this vault trusts".into()
                }
            }));
        }
        // Who retired it and with which request: a repeat must be the same request by the
        // same kind of signer (a thief holding the lost device's key cannot replay the key
        // manager's nonce as a wallet).
        let mut redemption = vec![purpose as u8];
        redemption.extend_from_slice(&w.nonce);
        if retired {
            if purpose == Purpose::Read || redeemed_by.as_deref() != Some(&redemption[..]) {
                return Err(VaultError::Redeemed);
            }
            // The request that retired it, tried again, gets the same bytes; the same try
            // sent again (a captured request replayed) gets nothing.
            if redeemed_attempt.is_some_and(|last| w.attempt <= last) {
                return Err(VaultError::Replayed);
            }
            tx.execute(
                "UPDATE records SET redeemed_attempt = ?1 WHERE hash = ?2",
                params![w.attempt, cert.payload_hash.as_slice()],
            )?;
            tx.commit()?;
            return Ok(payload);
        }
        if purpose == Purpose::Read {
            return Ok(payload);
        }
        tx.execute(
            "UPDATE records SET retired = ?1, redeemed_by = ?2, redeemed_attempt = ?3
             WHERE hash = ?4 AND retired IS NULL",
            params![now(), redemption, w.attempt, cert.payload_hash.as_slice()],
        )?;
        tx.commit()?;
        crash_if(self.crash_at, CrashAt::WithdrawCommit);
        Ok(payload)
    }

    fn trusted_keyman(&self) -> Result<[u8; 32], VaultError> {
        self.keyman
            .ok_or_else(|| VaultError::Invalid("this vault trusts no key manager".into()))
    }

    /// The next counter value, stored.
    fn next_counter(&self, tx: &rusqlite::Transaction<'_>) -> Result<u64, VaultError> {
        let last: u64 = tx
            .query_row("SELECT value FROM meta WHERE name = 'counter'", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let (counter, next) = Counter {
            value: last,
            max: self.max_counter,
        }
        .next();
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('counter', ?1)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![next.value],
        )?;
        Ok(counter)
    }

    /// The held record `cert` names, checked against the whole certificate.
    fn held(tx: &rusqlite::Transaction<'_>, cert: &Certificate) -> Result<Held, VaultError> {
        let found = tx
            .query_row(
                "SELECT payload, certificate, signer, retired, redeemed_by, redeemed_attempt
                 FROM records
                 WHERE counter = ?1 AND hash = ?2",
                params![cert.counter, cert.payload_hash.as_slice()],
                |r| {
                    Ok(Held {
                        payload: r.get(0)?,
                        certificate: r.get(1)?,
                        signer: r.get(2)?,
                        retired: r.get::<_, Option<String>>(3)?.is_some(),
                        redeemed_by: r.get(4)?,
                        redeemed_attempt: r.get(5)?,
                    })
                },
            )
            .optional()?;
        match found {
            Some(h) if h.certificate == cert.to_bytes() => Ok(h),
            _ => Err(VaultError::Unknown),
        }
    }

    /// Replaces each old record by its new value in one transaction, all or none, for the
    /// trusted key manager; the new certificates in order. A replacement made already is
    /// answered again with the same certificates.
    pub fn replace(&self, r: &Replacement) -> Result<Vec<u8>, VaultError> {
        if !r.verify(&self.trusted_keyman()?) {
            return Err(VaultError::Invalid(
                "the replacement is not signed by the key manager this vault trusts".into(),
            ));
        }
        let signer = r.items[0].1.signer;
        for (cert, new) in &r.items {
            cert.verify(&self.key.public())
                .map_err(|e| VaultError::Invalid(e.to_string()))?;
            if new.signer != signer {
                return Err(VaultError::Invalid(
                    "a replacement's new values are all signed by one new wallet key".into(),
                ));
            }
            new.verify(&signer)
                .map_err(|e| VaultError::Invalid(e.to_string()))?;
        }
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let made: Option<Vec<u8>> = tx
            .query_row(
                "SELECT answer FROM replacements WHERE id = ?1",
                params![r.id.as_slice()],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(answer) = made {
            return Ok(answer);
        }
        let mut certs = Vec::new();
        for (i, (old, new)) in r.items.iter().enumerate() {
            let h = Self::held(&tx, old)?;
            if h.retired {
                return Err(VaultError::Redeemed);
            }
            let cert = self.insert_record(&tx, new)?;
            tx.execute(
                "UPDATE records SET retired = ?1 WHERE hash = ?2",
                params![now(), old.payload_hash.as_slice()],
            )?;
            certs.push(cert);
            crash_if(self.crash_at, CrashAt::ReplaceItem(i + 1));
        }
        let answer = answer_to_bytes(&certs);
        tx.execute(
            "INSERT INTO replacements (id, answer, made) VALUES (?1, ?2, ?3)",
            params![r.id.as_slice(), answer, now()],
        )?;
        tx.commit()?;
        crash_if(self.crash_at, CrashAt::ReplaceCommit);
        Ok(answer)
    }

    /// Forgets values retired, and replacements made, longer than `keep` ago: a record a
    /// wallet redeemed has no use once nobody will ask for it again, and without this the
    /// vault grows with every value it ever held. The records and replacements forgotten.
    pub fn purge(&self, keep: std::time::Duration) -> Result<(u64, u64), VaultError> {
        let cutoff = jiff::Timestamp::now()
            .checked_sub(keep)
            .unwrap_or(jiff::Timestamp::MIN)
            .to_string();
        let mut db = self.db();
        let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let records = tx.execute(
            "DELETE FROM records WHERE retired IS NOT NULL AND julianday(retired) < julianday(?1)",
            params![cutoff],
        )?;
        let replacements = tx.execute(
            "DELETE FROM replacements WHERE julianday(made) < julianday(?1)",
            params![cutoff],
        )?;
        tx.commit()?;
        Ok((records as u64, replacements as u64))
    }

    /// Values held and retired.
    pub fn counts(&self) -> Result<(u64, u64), VaultError> {
        Ok(self.db().query_row(
            "SELECT COUNT(*) - COUNT(retired), COUNT(retired) FROM records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }
}

/// One record as a withdrawal reads it.
struct Held {
    payload: Vec<u8>,
    certificate: Vec<u8>,
    signer: Vec<u8>,
    retired: bool,
    redeemed_by: Option<Vec<u8>>,
    redeemed_attempt: Option<u64>,
}

/// Adds `column` to `table` when a database made by an older version lacks it.
pub fn add_column(
    db: &Connection,
    table: &str,
    column: &str,
    decl: &str,
) -> Result<(), rusqlite::Error> {
    let has: bool = db.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |r| r.get(0),
    )?;
    if !has {
        db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// Opens (or makes) a value service's own files in `dir` (made 0700): its Ed25519 signing
/// key `NAME.key` and its SQLite file `NAME.sqlite` (WAL), both readable by the owner only.
/// The vault and the key manager keep theirs alike.
pub fn open_files(dir: &Path, name: &str) -> Result<(SigningKey, Connection), String> {
    let at = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    kura_repo::backend::private_dir(dir).map_err(|e| at(dir, &e))?;
    let key_path = dir.join(format!("{name}.key"));
    let key = match std::fs::read(&key_path) {
        Ok(doc) => SigningKey::from_pkcs8(&doc).map_err(|e| at(&key_path, &e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = SigningKey::generate();
            write_new_private(&key_path, k.pkcs8()).map_err(|e| at(&key_path, &e))?;
            k
        }
        Err(e) => return Err(at(&key_path, &e)),
    };
    let db_path = dir.join(format!("{name}.sqlite"));
    if let Err(e) = write_new_private(&db_path, b"")
        && !db_path.exists()
    {
        return Err(at(&db_path, &e));
    }
    let sql = |e: rusqlite::Error| at(&db_path, &e);
    let db = Connection::open(&db_path).map_err(sql)?;
    db.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql)?;
    db.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    Ok((key, db))
}

/// Writes a new file only its owner can read (an existing one is left as it is: SQLite keeps
/// the database's mode).
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_core::crypto::Key;
    use kura_wallet::record::{DEFAULT_DIGEST, ValueRecord};
    use std::sync::Arc;

    fn record() -> ValueRecord {
        ValueRecord {
            kind: "prepaid".into(),
            name: "Metro card".into(),
            unit_price: 0,
            quantity: 1,
            total: 5000,
            place: "Tokyo".into(),
            validity: None,
            balance: 5000,
            remarks: String::new(),
        }
    }

    fn deposit(store: &Store, wallet: &SigningKey) -> (Registered, Certificate) {
        let r = Registered::seal(
            "w1",
            &record(),
            &DEFAULT_DIGEST,
            (&[3; 16], &Key::random()),
            wallet,
            None,
        );
        let c = store.deposit(&r.to_bytes()).unwrap();
        c.confirms(&store.public_key(), &r).unwrap();
        (r, c)
    }

    #[test]
    fn a_certificate_is_redeemed_once_by_its_wallet_whatever_the_concurrency() {
        let dir = tempfile::tempdir().unwrap();
        let quota = Quota {
            values: 10,
            bytes: 1 << 20,
        };
        let store = Arc::new(Store::open(dir.path(), 1000, quota).unwrap());
        let wallet = SigningKey::generate();
        let (sent, cert) = deposit(&store, &wallet);
        let thief = SigningKey::generate();
        let stolen = Withdrawal::sign(Purpose::Withdraw, &cert, ([1; 16], 1), &thief);
        assert!(matches!(
            store.withdraw(&stolen, Purpose::Withdraw),
            Err(VaultError::Invalid(_))
        ));
        // No key manager is trusted, so no emergency withdrawal or read holds.
        let keyman = SigningKey::generate();
        for purpose in [Purpose::Emergency, Purpose::Read] {
            let w = Withdrawal::sign(purpose, &cert, ([2; 16], 1), &keyman);
            assert!(matches!(
                store.withdraw(&w, purpose),
                Err(VaultError::Invalid(_))
            ));
        }
        // 32 different requests at once (each its own nonce): one wins.
        let requests: Vec<_> = (0..32u8)
            .map(|i| Withdrawal::sign(Purpose::Withdraw, &cert, ([i; 16], 1), &wallet))
            .collect();
        let handles: Vec<_> = requests
            .iter()
            .map(|w| {
                let (s, w) = (store.clone(), w.clone());
                std::thread::spawn(move || s.withdraw(&w, Purpose::Withdraw))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "exactly one withdrawal succeeds");
        assert_eq!(won[0], &sent.to_bytes());
        assert_eq!(
            results
                .iter()
                .filter(|r| matches!(r, Err(VaultError::Redeemed)))
                .count(),
            31
        );
        assert_eq!(store.counts().unwrap(), (0, 1));
        // The winner's request sent again as it was (a replay) gets nothing; the winner
        // trying again with its nonce and a higher attempt (its answer was lost) gets the
        // same bytes, once per attempt.
        let winner = results.iter().position(|r| r.is_ok()).unwrap();
        assert!(matches!(
            store.withdraw(&requests[winner], Purpose::Withdraw),
            Err(VaultError::Replayed)
        ));
        let retry = |attempt| {
            let nonce = requests[winner].nonce;
            let w = Withdrawal::sign(Purpose::Withdraw, &cert, (nonce, attempt), &wallet);
            store.withdraw(&w, Purpose::Withdraw)
        };
        assert_eq!(retry(2).unwrap(), sent.to_bytes());
        assert!(matches!(retry(2), Err(VaultError::Replayed)));
        assert!(matches!(retry(1), Err(VaultError::Replayed)));
        assert_eq!(retry(7).unwrap(), sent.to_bytes());
    }

    #[test]
    fn a_forged_or_altered_certificate_finds_nothing_and_a_full_wallet_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let quota = Quota {
            values: 2,
            bytes: 1 << 20,
        };
        let store = Store::open(dir.path(), 1000, quota).unwrap();
        let wallet = SigningKey::generate();
        let (sent, cert) = deposit(&store, &wallet);
        let proof = |c: &Certificate| {
            Withdrawal::sign(
                Purpose::Withdraw,
                c,
                (kura_core::crypto::random_bytes(), 1),
                &wallet,
            )
        };
        let take = |s: &Store, w: Withdrawal| s.withdraw(&w, Purpose::Withdraw);
        let forged = Certificate::issue(&sent, cert.counter, &SigningKey::generate());
        assert!(matches!(
            take(&store, proof(&forged)),
            Err(VaultError::Invalid(_))
        ));
        let mut altered = cert.clone();
        altered.counter += 1;
        assert!(take(&store, proof(&altered)).is_err());
        let (_, second) = deposit(&store, &wallet);
        let third = Registered::seal(
            "w1",
            &record(),
            &[],
            (&[3; 16], &Key::random()),
            &wallet,
            None,
        );
        assert!(matches!(
            store.deposit(&third.to_bytes()),
            Err(VaultError::Quota(_))
        ));
        assert!(matches!(
            store.deposit(&sent.to_bytes()),
            Err(VaultError::Quota(_)) | Err(VaultError::Invalid(_))
        ));
        let mut tampered = sent.to_bytes();
        let n = tampered.len();
        tampered[n - 100] ^= 1;
        assert!(matches!(
            store.deposit(&tampered),
            Err(VaultError::Invalid(_))
        ));
        let first = proof(&cert);
        take(&store, first.clone()).unwrap();
        // Reopened, the vault keeps its key, so the certificate it issued still verifies.
        drop(store);
        let again = Store::open(dir.path(), 1000, quota).unwrap();
        assert!(matches!(
            take(&again, proof(&cert)),
            Err(VaultError::Redeemed)
        ));
        let retried = Withdrawal::sign(Purpose::Withdraw, &cert, (first.nonce, 2), &wallet);
        assert_eq!(take(&again, retried).unwrap(), sent.to_bytes());
        // A trusted key manager withdraws for the owner; another key manager does not.
        let keyman = SigningKey::generate();
        let again = again.trust_keyman(Some(keyman.public()));
        let by = |k: &SigningKey, purpose| {
            let w = Withdrawal::sign(purpose, &second, (kura_core::crypto::random_bytes(), 1), k);
            again.withdraw(&w, purpose)
        };
        assert!(matches!(
            by(&SigningKey::generate(), Purpose::Emergency),
            Err(VaultError::Invalid(_))
        ));
        assert!(by(&keyman, Purpose::Read).is_ok(), "a read retires nothing");
        by(&keyman, Purpose::Emergency).unwrap();
        assert!(matches!(
            by(&keyman, Purpose::Emergency),
            Err(VaultError::Redeemed)
        ));
        assert!(matches!(
            by(&keyman, Purpose::Read),
            Err(VaultError::Redeemed)
        ));
    }

    #[test]
    fn retired_values_are_forgotten_after_their_keep_and_held_ones_never() {
        let dir = tempfile::tempdir().unwrap();
        let quota = Quota {
            values: 10,
            bytes: 1 << 20,
        };
        let store = Store::open(dir.path(), 1000, quota).unwrap();
        let wallet = SigningKey::generate();
        let (_, gone) = deposit(&store, &wallet);
        let (kept, held) = deposit(&store, &wallet);
        let take = |cert: &Certificate| {
            let w = Withdrawal::sign(Purpose::Withdraw, cert, ([4; 16], 1), &wallet);
            store.withdraw(&w, Purpose::Withdraw)
        };
        take(&gone).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(store.purge(day).unwrap(), (0, 0), "retired just now");
        assert_eq!(store.counts().unwrap(), (1, 1));
        assert_eq!(store.purge(std::time::Duration::ZERO).unwrap(), (1, 0));
        assert_eq!(store.counts().unwrap(), (1, 0));
        assert!(matches!(take(&gone), Err(VaultError::Unknown)));
        assert_eq!(take(&held).unwrap(), kept.to_bytes());
    }

    #[test]
    fn a_repeat_gets_the_value_only_as_the_same_request_by_the_same_kind_of_signer() {
        let dir = tempfile::tempdir().unwrap();
        let quota = Quota {
            values: 10,
            bytes: 1 << 20,
        };
        let keyman = SigningKey::generate();
        let store = Store::open(dir.path(), 1000, quota)
            .unwrap()
            .trust_keyman(Some(keyman.public()));
        let wallet = SigningKey::generate();
        let (sent, cert) = deposit(&store, &wallet);
        let nonce = [5; 16];
        let emergency = Withdrawal::sign(Purpose::Emergency, &cert, (nonce, 1), &keyman);
        assert_eq!(
            store.withdraw(&emergency, Purpose::Emergency).unwrap(),
            sent.to_bytes()
        );
        // The lost device's key, with the key manager's nonce: nothing.
        let thief = Withdrawal::sign(Purpose::Withdraw, &cert, (nonce, 2), &wallet);
        assert!(matches!(
            store.withdraw(&thief, Purpose::Withdraw),
            Err(VaultError::Redeemed)
        ));
        let retried = Withdrawal::sign(Purpose::Emergency, &cert, (nonce, 2), &keyman);
        assert_eq!(
            store.withdraw(&retried, Purpose::Emergency).unwrap(),
            sent.to_bytes()
        );
    }
}

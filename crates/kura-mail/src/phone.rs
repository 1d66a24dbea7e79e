//! The phone agent (`docs/requirements/mail-instructions.md` flows 1, 2, 3, 5 and 6): reads
//! its mailbox, acts on the instructions that check, answers by mail and tells its owner.
//!
//! An instruction is acted on only if all of these hold, in this order, and otherwise is
//! refused with nothing written or sent back but a line in the log and in the owner's notice:
//! it has an MB field (otherwise it is ordinary mail and left alone); it is not itself an
//! answer (no `In-Reply-To`); it comes from the registered terminal; its
//! `MB-Authentication-Info` checks under the registered key; its `Date` is in the window and
//! its `Message-Id` new; a restore's body opens under the key and names only the items the
//! instruction lists.
//!
//! Each instruction is handled in one SQLite transaction that records its `Message-Id`, the
//! answer to send, the history line and the mailbox mark. A restore writes the memory
//! ([`Store::restore`], all or nothing) before that transaction commits, and the completion is
//! sent only after it: a phone killed in between finds the instruction again, unrecorded, and
//! writes the same items again before answering, so a restore is answered once, after its
//! write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::Deserialize;

use crate::fresh::{self, Seen, Window};
use crate::inbox::{Arrived, Inbox, Mailbox};
use crate::message::{self, Outgoing};
use crate::pairing::Pairing;
use crate::payload::Bundle;
use crate::relay::{Relay, RelayError};
use crate::store::Store;
use crate::{Direction, MailError, new_message_id, state};

/// `phone.toml`: how a phone is set up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneConfig {
    /// The phone's own address.
    pub address: String,
    /// The registered terminal's address: instructions from any other are refused.
    pub terminal: String,
    /// The owner's notification address.
    pub owner: String,
    /// The file holding the registered key (64 hex digits), relative to the phone's folder.
    pub key_file: PathBuf,
    /// `each` (a notice after every pass that handled MB mail) or a period such as `1h` (a
    /// cumulative history that often).
    #[serde(default = "each")]
    pub notices: String,
    /// Check instructions with the source's forgeable checksum instead of HMAC-SHA-256.
    #[serde(default)]
    pub legacy_checksum: bool,
    /// Seconds an instruction's `Date` may be old (default 900).
    pub max_age_secs: Option<u64>,
    /// The mailbox the phone reads.
    pub imap: Mailbox,
    /// The relay the phone sends through.
    pub smtp: Relay,
}

fn each() -> String {
    "each".into()
}

/// When notices go to the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notices {
    /// After every pass that handled MB mail.
    Each,
    /// A cumulative history at this period.
    Every(Duration),
}

impl PhoneConfig {
    /// Reads `DIR/phone.toml`.
    pub fn load(dir: &Path) -> Result<PhoneConfig, MailError> {
        let path = dir.join("phone.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| MailError::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| MailError::Config(format!("{}: {e}", path.display())))
    }

    /// When notices go out.
    pub fn notices(&self) -> Result<Notices, MailError> {
        if self.notices == "each" {
            return Ok(Notices::Each);
        }
        kura_core::schedule::interval(&self.notices)
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .map(Notices::Every)
            .ok_or_else(|| {
                MailError::Config(format!(
                    "notices {:?}: `each` or a period such as 1h or 1d",
                    self.notices
                ))
            })
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ordinary mail, or mail that could not be read: left as it was.
    Left(String),
    /// An instruction refused, and why.
    Refused(String),
    /// A message too large to read: left in the mailbox (it may be ordinary mail), but
    /// noticed, as it may be an instruction.
    Unread(String),
    /// A backup instruction answered.
    BackedUp {
        /// Cards sent back.
        contacts: usize,
        /// Entries sent back.
        entries: usize,
        /// Whether the memory is wiped once the answer is sent (a lost phone).
        wipe: bool,
    },
    /// A restore written and its completion queued.
    Restored {
        /// The items written.
        items: Vec<String>,
        /// Entries written.
        entries: usize,
    },
}

/// A phone: its memory, its key, its state.
pub struct Phone {
    cfg: PhoneConfig,
    dir: PathBuf,
    pairing: Pairing,
    store: Store,
    db: Connection,
}

/// Message ids recorded inside the transaction handling the message.
struct SeenIn<'a>(&'a rusqlite::Transaction<'a>, i64);

impl Seen for SeenIn<'_> {
    fn record(&mut self, id: &str) -> bool {
        // A store that cannot record treats the id as seen: refusing is the safe side.
        state::record_seen(self.0, id, self.1).unwrap_or(true)
    }
}

impl Phone {
    /// Opens the phone in `dir` (`phone.toml`, the key file, `memory/`, `phone.db`).
    pub fn open(dir: &Path) -> Result<Phone, MailError> {
        let cfg = PhoneConfig::load(dir)?;
        cfg.notices()?;
        if cfg.legacy_checksum {
            tracing::warn!("{}", crate::auth::LEGACY_WARNING);
        }
        let pairing = Pairing::load(&dir.join(&cfg.key_file))?;
        let store = Store::open(&dir.join("memory"))?;
        let db = state::open(
            &dir.join("phone.db"),
            "CREATE TABLE IF NOT EXISTS outbox (n INTEGER PRIMARY KEY, rcpt TEXT NOT NULL,
                 message BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS history (n INTEGER PRIMARY KEY, at TEXT NOT NULL,
                 sender TEXT NOT NULL, message_id TEXT NOT NULL, direction TEXT NOT NULL,
                 outcome TEXT NOT NULL, noticed INTEGER NOT NULL DEFAULT 0);",
        )?;
        Ok(Phone {
            cfg,
            dir: dir.to_path_buf(),
            pairing,
            store,
            db,
        })
    }

    /// The phone's memory.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The phone's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mailbox it reads.
    pub fn mailbox(&self) -> &Mailbox {
        &self.cfg.imap
    }

    fn window(&self) -> Window {
        Window::with_max_age(self.cfg.max_age_secs)
    }

    fn meta(&self, k: &str) -> Result<i64, MailError> {
        state::meta(&self.db, k)
    }

    /// Handles one arrived message at `now`, in one transaction that also moves the mark to
    /// it. Returns what became of it; an `Err` is the phone's own failure (disk, database),
    /// after which nothing is recorded and the message is handled again on the next pass.
    pub fn handle(
        &mut self,
        validity: u32,
        arrived: &Arrived,
        now: jiff::Timestamp,
    ) -> Result<Outcome, MailError> {
        let window = self.window();
        let tx = self.db.transaction()?;
        let outcome = {
            let mut seen = SeenIn(&tx, now.as_second());
            let (sender, id, direction, result) = decide(
                &self.cfg,
                &self.pairing,
                &self.store,
                window,
                arrived,
                now,
                &mut seen,
            )?;
            let outcome = match result {
                Decided::Left(why) => Outcome::Left(why),
                Decided::Refused(why) => {
                    tracing::warn!("refused {id} from {sender}: {why}");
                    Outcome::Refused(why)
                }
                Decided::Unread(why) => {
                    tracing::warn!("{why}; left in the mailbox");
                    Outcome::Unread(why)
                }
                Decided::Done(outcome, answer) => {
                    tx.execute(
                        "INSERT INTO outbox (rcpt, message) VALUES (?1, ?2)",
                        params![self.cfg.terminal, answer],
                    )?;
                    if matches!(outcome, Outcome::BackedUp { wipe: true, .. }) {
                        state::set_meta(&tx, "wipe", 1)?;
                    }
                    tracing::info!("{direction} {id} from {sender}: {outcome:?}");
                    outcome
                }
            };
            if !matches!(outcome, Outcome::Left(_)) {
                tx.execute(
                    "INSERT INTO history (at, sender, message_id, direction, outcome)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![now.to_string(), sender, id, direction, describe(&outcome)],
                )?;
            }
            outcome
        };
        state::set_mark(&tx, validity, arrived.uid)?;
        let horizon = now.as_second() - 2 * window.max_age.as_secs() as i64;
        tx.execute("DELETE FROM seen WHERE at < ?1", [horizon])?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Queues a notice to the owner of what was handled and not yet noticed, if notices are
    /// due at `now`. Returns how many history lines it covers.
    pub fn queue_notice(&mut self, now: jiff::Timestamp) -> Result<usize, MailError> {
        if let Notices::Every(period) = self.cfg.notices()? {
            let last = self.meta("noticed_at")?;
            if now.as_second() - last < period.as_secs() as i64 {
                return Ok(0);
            }
        }
        let rows: Vec<(i64, String)> = {
            let mut q = self.db.prepare(
                "SELECT n, at || '  ' || direction || '  from ' || sender || '  ' || message_id
                     || char(10) || '    ' || outcome
                 FROM history WHERE noticed = 0 ORDER BY n",
            )?;
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let Some(last) = rows.last().map(|r| r.0) else {
            return Ok(0);
        };
        let refused = rows.iter().filter(|r| r.1.contains("REFUSED")).count();
        let text = format!(
            "Kura on the phone {} handled {} instruction mail(s){}:\n\n{}\n\n\
             A refused instruction changed nothing and got no data back. If you did not send \
             these, someone else is trying to reach this phone's data.\n",
            self.cfg.address,
            rows.len(),
            if refused > 0 {
                format!(", {refused} of them REFUSED")
            } else {
                String::new()
            },
            rows.iter()
                .map(|r| r.1.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let mail = mail_builder::MessageBuilder::new()
            .from(self.cfg.address.as_str())
            .to(self.cfg.owner.as_str())
            .subject(if refused > 0 {
                "Kura phone: instructions refused"
            } else {
                "Kura phone: instructions handled"
            })
            .date(now.as_second())
            .message_id(new_message_id(&self.cfg.address).trim_matches(['<', '>']))
            .text_body(text)
            .write_to_vec()
            .map_err(|e| MailError::Config(e.to_string()))?;
        let tx = self.db.transaction()?;
        tx.execute(
            "INSERT INTO outbox (rcpt, message) VALUES (?1, ?2)",
            params![self.cfg.owner, mail],
        )?;
        tx.execute("UPDATE history SET noticed = 1 WHERE n <= ?1", [last])?;
        state::set_meta(&tx, "noticed_at", now.as_second())?;
        tx.commit()?;
        Ok(rows.len())
    }

    /// Sends what the outbox holds, oldest first; what the relay does not take stays for the
    /// next pass. Returns how many were sent.
    pub fn send_outbox(&mut self) -> Result<usize, MailError> {
        let queued: Vec<(i64, String, Vec<u8>)> = {
            let mut q = self
                .db
                .prepare("SELECT n, rcpt, message FROM outbox ORDER BY n")?;
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?
        };
        if queued.is_empty() {
            return Ok(0);
        }
        let transport = self.cfg.smtp.transport()?;
        let mut sent = 0;
        for (n, rcpt, mail) in queued {
            match Relay::send(&transport, &self.cfg.address, &rcpt, &mail) {
                Ok(()) => {
                    self.db.execute("DELETE FROM outbox WHERE n = ?1", [n])?;
                    sent += 1;
                }
                Err(e @ RelayError::Send(_)) => {
                    tracing::warn!("sending to {rcpt}: {e}; kept for the next pass");
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(sent)
    }

    /// Messages waiting to be sent.
    pub fn waiting(&self) -> Result<u64, MailError> {
        Ok(self
            .db
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?)
    }

    /// One pass: reads what arrived, handles it, removes handled MB mail from the mailbox,
    /// queues notices and sends. Returns what became of each message.
    pub fn pass(&mut self, inbox: &mut Inbox) -> Result<Vec<Outcome>, MailError> {
        let mut outcomes = Vec::new();
        loop {
            let (validity, arrived) = inbox.arrivals(state::mark(&self.db)?)?;
            if arrived.is_empty() {
                break;
            }
            for a in &arrived {
                let outcome = self.handle(validity, a, jiff::Timestamp::now())?;
                if !matches!(outcome, Outcome::Left(_) | Outcome::Unread(_)) {
                    inbox.remove(a.uid)?;
                }
                outcomes.push(outcome);
            }
        }
        self.send_outbox()?;
        if self.meta("wipe")? == 1 && self.waiting()? == 0 {
            // The backup that came before the wipe has gone out: only now is the memory emptied.
            self.store.wipe()?;
            let tx = self.db.transaction()?;
            state::set_meta(&tx, "wipe", 0)?;
            tx.execute(
                "INSERT INTO history (at, sender, message_id, direction, outcome)
                 VALUES (?1, '-', '-', 'wipe', 'the memory was WIPED after its backup was sent')",
                [jiff::Timestamp::now().to_string()],
            )?;
            tx.commit()?;
            tracing::warn!("the memory was wiped after its backup was sent");
        }
        self.queue_notice(jiff::Timestamp::now())?;
        self.send_outbox()?;
        Ok(outcomes)
    }

    /// Runs until `stop` returns true: a pass, then a wait for new mail (IMAP IDLE, at most
    /// `poll`). A mail server that cannot be reached is retried at that period.
    pub fn run(&mut self, poll: Duration, stop: &dyn Fn() -> bool) -> Result<(), MailError> {
        while !stop() {
            let mut inbox = match Inbox::connect(&self.cfg.imap) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!("{e}; retrying in {} s", poll.as_secs());
                    // The outbox may still go out while the mailbox is unreachable.
                    if let Err(e) = self.send_outbox() {
                        tracing::warn!("{e}");
                    }
                    std::thread::sleep(poll);
                    continue;
                }
            };
            while !stop() {
                if let Err(e) = self.pass(&mut inbox) {
                    tracing::warn!("{e}; reconnecting");
                    break;
                }
                if let Err(e) = wait(&mut inbox, poll, stop) {
                    tracing::warn!("{e}; reconnecting");
                    break;
                }
            }
            inbox.close();
        }
        Ok(())
    }
}

/// Waits for new mail up to `poll`, in IDLE spells of at most [`SPELL`] so that `stop` is
/// looked at that often (a stopped phone does not wait out a long poll).
fn wait(inbox: &mut Inbox, poll: Duration, stop: &dyn Fn() -> bool) -> Result<(), MailError> {
    let until = std::time::Instant::now() + poll;
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stop() || inbox.wait(left.min(SPELL))? {
            return Ok(());
        }
    }
}

/// The longest single IDLE wait.
const SPELL: Duration = Duration::from_secs(5);

enum Decided {
    Left(String),
    Refused(String),
    Unread(String),
    Done(Outcome, Vec<u8>),
}

/// Decides what to do with one message and does it (a restore's write, a wipe): the part of
/// [`Phone::handle`] apart from the database. Returns the sender, the `Message-Id` and the
/// direction as read, for the log.
fn decide(
    cfg: &PhoneConfig,
    pairing: &Pairing,
    store: &Store,
    window: Window,
    arrived: &Arrived,
    now: jiff::Timestamp,
    seen: &mut dyn Seen,
) -> Result<(String, String, String, Decided), MailError> {
    let unknown = |d: Decided| Ok(("?".to_string(), "?".to_string(), "?".to_string(), d));
    let bytes = match &arrived.bytes {
        Ok(b) => b,
        Err(size) => {
            // Not read, so whether it is an instruction is unknown: it stays, and is noticed.
            return unknown(Decided::Unread(format!(
                "a message of {size} bytes (more than the {} read) was not read",
                message::MAX_MESSAGE
            )));
        }
    };
    let m = match message::read(bytes) {
        Ok(m) => m,
        Err(e) => return unknown(Decided::Left(e.to_string())),
    };
    let sender = m.from.clone().unwrap_or_else(|| "?".into());
    let id: String = m
        .field("Message-Id")
        .unwrap_or("?")
        .trim()
        .chars()
        .take(200)
        .collect();
    let direction = match m.direction() {
        Ok(None) => {
            return Ok((
                sender,
                id,
                "-".into(),
                Decided::Left("ordinary mail".into()),
            ));
        }
        Ok(Some(d)) => d,
        Err(e) => return Ok((sender, id, "?".into(), Decided::Refused(e.to_string()))),
    };
    let refuse = |why: String| {
        Ok((
            sender.clone(),
            id.clone(),
            direction.name().to_string(),
            Decided::Refused(why),
        ))
    };
    if m.field("In-Reply-To").is_some() {
        return refuse("an answer, not an instruction".into());
    }
    let terminal = message::address_of(&cfg.terminal).to_ascii_lowercase();
    if m.from.as_deref() != Some(terminal.as_str()) {
        return refuse(format!(
            "from {sender}, not the registered terminal {terminal}"
        ));
    }
    if let Err(e) = m.verify(&pairing.checker(cfg.legacy_checksum)) {
        return refuse(e.to_string());
    }
    let secret = pairing.secret();
    let key = pairing.signer(cfg.legacy_checksum);
    let date = m.field("Date").unwrap_or("");
    if let Err(e) = fresh::check(date, &id, now, window, seen) {
        return refuse(e.to_string());
    }
    let reply_id = new_message_id(&cfg.address);
    // What goes back: the memory (a backup), or an empty body and the digest of what was
    // written (a restore's completion, sent only once the write is done).
    let (outcome, items, digest, reply) = match direction {
        Direction::Backup => {
            let wipe = match m.field(message::AFTER_FIELD).map(str::trim) {
                None | Some("") => false,
                Some("wipe") => true,
                Some(other) => {
                    return refuse(format!("{} {other:?} (only wipe)", message::AFTER_FIELD));
                }
            };
            let memory = store.read()?;
            let outcome = Outcome::BackedUp {
                contacts: memory.contacts(),
                entries: memory.entries.len(),
                wipe,
            };
            (outcome, memory.items(), None, memory)
        }
        Direction::Restore => {
            let bundle = match secret.open(&m.data, &id, Direction::Restore) {
                Ok(b) => b,
                Err(e) => return refuse(e.to_string()),
            };
            let items = m.items();
            if let Some(extra) = bundle
                .items()
                .into_iter()
                .find(|i| !items.is_empty() && !items.contains(i))
            {
                return refuse(format!(
                    "the body carries {extra}, which MB-Items does not name"
                ));
            }
            if let Err(e) = bundle.check_cards() {
                return refuse(e.to_string());
            }
            store.restore(&bundle, &items)?;
            let digest = blake3::hash(&bundle.encode()).to_hex().to_string();
            let outcome = Outcome::Restored {
                items: if items.is_empty() {
                    bundle.items()
                } else {
                    items.clone()
                },
                entries: bundle.entries.len(),
            };
            (outcome, items, Some(digest), Bundle::default())
        }
    };
    let answer = message::write(
        &Outgoing {
            from: &cfg.address,
            to: &cfg.terminal,
            subject: match direction {
                Direction::Backup => "Kura: backup",
                Direction::Restore => "Kura: restore complete",
            },
            direction,
            in_reply_to: Some(&id),
            items: &items,
            digest: digest.as_deref(),
            after: None,
            data: &secret.seal(&reply, &reply_id, direction),
        },
        now,
        &reply_id,
        &key,
    )?;
    Ok((
        sender,
        id,
        direction.name().to_string(),
        Decided::Done(outcome, answer),
    ))
}

impl Outcome {
    /// One line for the log and the owner's notice.
    pub fn describe(&self) -> String {
        describe(self)
    }
}

fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Left(why) => format!("left alone: {why}"),
        Outcome::Refused(why) => format!("REFUSED: {why}"),
        Outcome::Unread(why) => format!("REFUSED: {why}; left in the mailbox"),
        Outcome::BackedUp {
            contacts,
            entries,
            wipe,
        } => format!(
            "sent back {entries} entries ({contacts} contacts){}",
            if *wipe {
                "; the memory is WIPED once the answer is sent"
            } else {
                ""
            }
        ),
        Outcome::Restored { items, entries } => {
            format!(
                "wrote {entries} entries of {}; completion sent",
                items.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::Mark;
    use crate::payload::Bundle;

    const TERMINAL: &str = "terminal@example.org";

    /// A phone in a fresh folder (its servers are never reached here) and the terminal's
    /// keys for it.
    fn phone(notices: &str) -> (tempfile::TempDir, Phone, Pairing) {
        let dir = tempfile::tempdir().unwrap();
        let (terminal, phone) = Pairing::new_pair(false).unwrap();
        std::fs::write(dir.path().join("key"), phone.to_text()).unwrap();
        std::fs::write(
            dir.path().join("phone.toml"),
            format!(
                "address = \"phone@example.org\"\nterminal = \"{TERMINAL}\"\n\
                 owner = \"owner@example.org\"\nkey_file = \"key\"\nnotices = \"{notices}\"\n\
                 [imap]\nhost = \"127.0.0.1\"\nusername = \"p\"\n\
                 [smtp]\nrelay = \"127.0.0.1\"\nsecurity = \"none\"\n"
            ),
        )
        .unwrap();
        let p = Phone::open(dir.path()).unwrap();
        (dir, p, terminal)
    }

    fn instruction(
        keys: &Pairing,
        n: u32,
        bundle: Option<&Bundle>,
        now: jiff::Timestamp,
    ) -> Arrived {
        let id = format!("<{n}@example.org>");
        let direction = if bundle.is_some() {
            Direction::Restore
        } else {
            Direction::Backup
        };
        let empty = Bundle::default();
        let items: Vec<String> = bundle.map(Bundle::items).unwrap_or_default();
        let bytes = message::write(
            &Outgoing {
                from: TERMINAL,
                to: "phone@example.org",
                subject: "Kura",
                direction,
                in_reply_to: None,
                items: &items,
                digest: None,
                after: None,
                data: &keys.secret().seal(bundle.unwrap_or(&empty), &id, direction),
            },
            now,
            &id,
            &keys.signer(false),
        )
        .unwrap();
        Arrived {
            uid: n,
            bytes: Ok(bytes),
        }
    }

    #[test]
    fn a_restore_is_written_and_answered_once_and_its_replay_changes_nothing() {
        let (_dir, mut p, keys) = phone("each");
        let now = jiff::Timestamp::now();
        let mut data = Bundle::default();
        data.insert(
            "contacts/a.vcf",
            b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Aoi\r\nEND:VCARD\r\n".to_vec(),
        )
        .unwrap();
        let restore = instruction(&keys, 1, Some(&data), now);
        assert!(matches!(
            p.handle(7, &restore, now).unwrap(),
            Outcome::Restored { entries: 1, .. }
        ));
        assert_eq!(p.store().read().unwrap(), data);
        assert_eq!(p.waiting().unwrap(), 1, "the completion");
        assert_eq!(
            state::mark(&p.db).unwrap(),
            Mark {
                validity: 7,
                uid: 1
            }
        );
        // The same instruction again (a replay, or a redelivery): refused, nothing queued.
        p.store().wipe().unwrap();
        assert!(matches!(
            p.handle(7, &restore, now).unwrap(),
            Outcome::Refused(_)
        ));
        assert_eq!(p.store().read().unwrap(), Bundle::default());
        assert_eq!(p.waiting().unwrap(), 1);
    }

    #[test]
    fn a_periodic_history_goes_out_once_per_period_with_every_line() {
        let (_dir, mut p, keys) = phone("1h");
        let t0 = jiff::Timestamp::now();
        p.handle(1, &instruction(&keys, 1, None, t0), t0).unwrap();
        assert_eq!(
            p.queue_notice(t0).unwrap(),
            1,
            "the first history goes at once"
        );
        let later = t0 + jiff::SignedDuration::from_mins(10);
        p.handle(1, &instruction(&keys, 2, None, later), later)
            .unwrap();
        p.handle(1, &instruction(&keys, 3, None, later), later)
            .unwrap();
        assert_eq!(p.queue_notice(later).unwrap(), 0, "not due yet");
        let due = t0 + jiff::SignedDuration::from_mins(61);
        assert_eq!(p.queue_notice(due).unwrap(), 2, "both lines, in one notice");
        // Two answers and two notices wait for the relay.
        assert_eq!(p.waiting().unwrap(), 5);
    }
}

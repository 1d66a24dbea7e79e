//! The terminal agent (`docs/requirements/mail-instructions.md` flows 1, 2 and 4): sends
//! instructions to registered phones and takes in their answers.
//!
//! An answer is taken in only if it names (`In-Reply-To`) an instruction this terminal sent to
//! that phone and has not yet seen answered, comes from that phone's address, checks under its
//! key, is fresh, and its body opens; a restore completion must also carry the digest of
//! exactly what was sent. Anything else is refused and logged, and changes nothing.
//!
//! Taking in an answer is two steps so that nothing is lost to a crash: [`Terminal::receive`]
//! checks and decrypts but records nothing; the caller stores a backup (as a Kura snapshot)
//! and only then [`Terminal::settle`]s it, which records the answer, the mailbox mark and the
//! instruction's new state in one transaction. A terminal killed in between reads the answer
//! again and stores it again.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;

use crate::fresh::{self, Seen, Window};
use crate::inbox::{Arrived, Inbox, Mailbox};
use crate::message::address_of;
use crate::message::{self, Outgoing};
use crate::pairing::Pairing;
use crate::payload::Bundle;
use crate::relay::Relay;
use crate::{Direction, MailError, new_message_id, state};

/// `mail.toml`: the terminal's address, mailbox and relay, and the phones registered with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    /// The terminal's own address.
    pub address: String,
    /// The mailbox answers arrive in.
    pub imap: Mailbox,
    /// The relay instructions go out through.
    pub smtp: Relay,
    /// Sign and check with the source's forgeable checksum instead of HMAC-SHA-256.
    #[serde(default)]
    pub legacy_checksum: bool,
    /// Seconds an answer's `Date` may be old (default 900).
    pub max_age_secs: Option<u64>,
    /// The registered phones.
    #[serde(default)]
    pub phone: Vec<PhoneEntry>,
}

/// A phone registered with the terminal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneEntry {
    /// The name the terminal knows it by (and tags its snapshots with).
    pub name: String,
    /// Its address.
    pub address: String,
    /// The file holding the key registered with it (64 hex digits), relative to `mail.toml`.
    pub key_file: PathBuf,
}

/// An instruction and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instruction {
    /// Its `Message-Id`.
    pub message_id: String,
    /// The phone's name.
    pub phone: String,
    /// `backup` or `restore`.
    pub direction: String,
    /// The items named.
    pub items: Vec<String>,
    /// When it was sent (RFC 3339).
    pub sent_at: String,
    /// `sending`, `sent` (no answer yet), `stored` (a backup in snapshot `snapshot`) or
    /// `completed` (a restore the phone confirmed).
    pub state: String,
    /// The snapshot a backup answer was stored as.
    pub snapshot: Option<String>,
}

/// What an arrived answer is.
#[derive(Debug)]
pub enum Received {
    /// Not an MB message: left as it was.
    Left(String),
    /// Refused, and why.
    Refused(String),
    /// A phone's backup, to store.
    Backup {
        /// The instruction it answers.
        instruction: String,
        /// The phone's name.
        phone: String,
        /// What the phone holds.
        bundle: Bundle,
        /// The answer's `Message-Id`.
        answer_id: String,
    },
    /// A phone confirmed a restore.
    Completed {
        /// The instruction it answers.
        instruction: String,
        /// The phone's name.
        phone: String,
        /// The answer's `Message-Id`.
        answer_id: String,
    },
}

/// The terminal: its configuration, keys and state.
pub struct Terminal {
    cfg: TerminalConfig,
    config_dir: PathBuf,
    db: Connection,
}

/// Checks a `Message-Id` against those already taken in, recording nothing (that is
/// [`Terminal::settle`]'s).
struct Unseen<'a>(&'a Connection);

impl Seen for Unseen<'_> {
    fn record(&mut self, id: &str) -> bool {
        state::was_seen(self.0, id).unwrap_or(true)
    }
}

impl Terminal {
    /// Opens the terminal of `config` (`mail.toml`) with its state in `state_db`.
    pub fn open(config: &Path, state_db: &Path) -> Result<Terminal, MailError> {
        let text = std::fs::read_to_string(config)
            .map_err(|e| MailError::Config(format!("{}: {e}", config.display())))?;
        let cfg: TerminalConfig = toml::from_str(&text)
            .map_err(|e| MailError::Config(format!("{}: {e}", config.display())))?;
        if cfg.legacy_checksum {
            tracing::warn!("{}", crate::auth::LEGACY_WARNING);
        }
        let db = state::open(
            state_db,
            "CREATE TABLE IF NOT EXISTS instructions (message_id TEXT PRIMARY KEY,
                 phone TEXT NOT NULL, direction TEXT NOT NULL, items TEXT NOT NULL,
                 digest TEXT, sent_at TEXT NOT NULL, state TEXT NOT NULL, snapshot TEXT);
             CREATE TABLE IF NOT EXISTS log (n INTEGER PRIMARY KEY, at TEXT NOT NULL,
                 phone TEXT NOT NULL, message_id TEXT NOT NULL, event TEXT NOT NULL);",
        )?;
        Ok(Terminal {
            cfg,
            config_dir: config.parent().map(Path::to_path_buf).unwrap_or_default(),
            db,
        })
    }

    /// The registered phones.
    pub fn phones(&self) -> &[PhoneEntry] {
        &self.cfg.phone
    }

    /// The mailbox answers arrive in.
    pub fn mailbox(&self) -> &Mailbox {
        &self.cfg.imap
    }

    /// The registered phone `name`.
    pub fn phone(&self, name: &str) -> Result<&PhoneEntry, MailError> {
        self.cfg
            .phone
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                MailError::Config(format!(
                    "no phone named {name:?} in the terminal's configuration (registered: {})",
                    self.cfg
                        .phone
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    fn pairing(&self, p: &PhoneEntry) -> Result<Pairing, MailError> {
        Pairing::load(&self.config_dir.join(&p.key_file))
    }

    fn log(&self, phone: &str, id: &str, event: &str) -> Result<(), MailError> {
        self.db.execute(
            "INSERT INTO log (at, phone, message_id, event) VALUES (?1, ?2, ?3, ?4)",
            params![jiff::Timestamp::now().to_string(), phone, id, event],
        )?;
        Ok(())
    }

    /// Sends an instruction to the phone `name`: a backup (`bundle` `None`; `wipe` to have a
    /// lost phone empty itself once its backup is sent) or a restore of `items` (all when
    /// empty) from `bundle`. Returns its `Message-Id`.
    pub fn instruct(
        &mut self,
        name: &str,
        items: &[String],
        bundle: Option<&Bundle>,
        wipe: bool,
    ) -> Result<String, MailError> {
        let p = self.phone(name)?.clone();
        let pairing = self.pairing(&p)?;
        let secret = pairing.secret();
        let direction = if bundle.is_some() {
            Direction::Restore
        } else {
            Direction::Backup
        };
        let id = new_message_id(&self.cfg.address);
        let (data, digest) = match bundle {
            Some(b) => {
                let sent = b.only(items);
                (
                    secret.seal(&sent, &id, direction),
                    Some(blake3::hash(&sent.encode()).to_hex().to_string()),
                )
            }
            None => (secret.seal(&Bundle::default(), &id, direction), None),
        };
        let now = jiff::Timestamp::now();
        let mail = message::write(
            &Outgoing {
                from: &self.cfg.address,
                to: &p.address,
                subject: match direction {
                    Direction::Backup => "Kura: back up",
                    Direction::Restore => "Kura: restore",
                },
                direction,
                in_reply_to: None,
                items,
                digest: None,
                after: wipe.then_some("wipe"),
                data: &data,
            },
            now,
            &id,
            &pairing.signer(self.cfg.legacy_checksum),
        )?;
        self.db.execute(
            "INSERT INTO instructions (message_id, phone, direction, items, digest, sent_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'sending')",
            params![
                id,
                name,
                direction.name(),
                items.join(","),
                digest,
                now.to_string()
            ],
        )?;
        let transport = self.cfg.smtp.transport()?;
        Relay::send(&transport, &self.cfg.address, &p.address, &mail)?;
        self.db.execute(
            "UPDATE instructions SET state = 'sent' WHERE message_id = ?1",
            [&id],
        )?;
        self.log(
            name,
            &id,
            &format!(
                "sent {}{}{}",
                direction.name(),
                if items.is_empty() {
                    String::new()
                } else {
                    format!(" of {}", items.join(","))
                },
                if wipe { ", then wipe" } else { "" }
            ),
        )?;
        Ok(id)
    }

    /// Checks an arrived message as an answer, recording nothing.
    pub fn receive(&self, arrived: &Arrived, now: jiff::Timestamp) -> Result<Received, MailError> {
        let bytes = match &arrived.bytes {
            Ok(b) => b,
            Err(size) => {
                return Ok(Received::Refused(format!(
                    "a message of {size} bytes (more than the {} read) was not read",
                    message::MAX_MESSAGE
                )));
            }
        };
        let m = match message::read(bytes) {
            Ok(m) => m,
            Err(e) => return Ok(Received::Left(e.to_string())),
        };
        let direction = match m.direction() {
            Ok(None) => return Ok(Received::Left("ordinary mail".into())),
            Ok(Some(d)) => d,
            Err(e) => return Ok(Received::Refused(e.to_string())),
        };
        let sender = m.from.clone().unwrap_or_default();
        let Some(answers) = m.field("In-Reply-To").map(str::trim) else {
            return Ok(Received::Refused(format!(
                "{} from {sender} answers no instruction",
                direction.name()
            )));
        };
        let instruction: Option<(String, String, String, Option<String>)> = self
            .db
            .query_row(
                "SELECT phone, direction, state, digest FROM instructions WHERE message_id = ?1",
                [answers],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((name, asked, state, digest)) = instruction else {
            return Ok(Received::Refused(format!(
                "an answer from {sender} to {answers}, an instruction this terminal never sent"
            )));
        };
        if !matches!(state.as_str(), "sending" | "sent") {
            return Ok(Received::Refused(format!(
                "a second answer to {answers} (already {state})"
            )));
        }
        if asked != direction.name() {
            return Ok(Received::Refused(format!(
                "a {} answer to a {asked} instruction",
                direction.name()
            )));
        }
        let p = self.phone(&name)?.clone();
        if Some(address_of(&p.address).to_ascii_lowercase()) != m.from {
            return Ok(Received::Refused(format!(
                "an answer to {answers} from {sender}, not from {name} ({})",
                p.address
            )));
        }
        let pairing = self.pairing(&p)?;
        let secret = pairing.secret();
        if let Err(e) = m.verify(&pairing.checker(self.cfg.legacy_checksum)) {
            return Ok(Received::Refused(e.to_string()));
        }
        let answer_id = m.field("Message-Id").unwrap_or("").trim().to_string();
        if let Err(e) = fresh::check(
            m.field("Date").unwrap_or(""),
            &answer_id,
            now,
            Window::with_max_age(self.cfg.max_age_secs),
            &mut Unseen(&self.db),
        ) {
            return Ok(Received::Refused(e.to_string()));
        }
        let bundle = match secret.open(&m.data, &answer_id, direction) {
            Ok(b) => b,
            Err(e) => return Ok(Received::Refused(e.to_string())),
        };
        Ok(match direction {
            Direction::Backup => Received::Backup {
                instruction: answers.to_string(),
                phone: name,
                bundle,
                answer_id,
            },
            Direction::Restore => {
                let wrote = m.field(message::DIGEST_FIELD).map(str::trim);
                if wrote != digest.as_deref() {
                    return Ok(Received::Refused(format!(
                        "the completion of {answers} reports writing other data than was sent"
                    )));
                }
                Received::Completed {
                    instruction: answers.to_string(),
                    phone: name,
                    answer_id,
                }
            }
        })
    }

    /// Records what became of an arrived message: the mark moves past it, and an answer taken
    /// in (`snapshot`: where a backup was stored) settles its instruction. One transaction.
    pub fn settle(
        &mut self,
        validity: u32,
        arrived: &Arrived,
        received: &Received,
        snapshot: Option<&str>,
    ) -> Result<(), MailError> {
        let tx = self.db.transaction()?;
        let now = jiff::Timestamp::now();
        let log = |phone: &str, id: &str, event: String| {
            tx.execute(
                "INSERT INTO log (at, phone, message_id, event) VALUES (?1, ?2, ?3, ?4)",
                params![now.to_string(), phone, id, event],
            )
        };
        match received {
            Received::Left(_) => {}
            Received::Refused(why) => {
                tracing::warn!("refused: {why}");
                log("-", "-", format!("REFUSED: {why}"))?;
            }
            Received::Backup {
                instruction,
                phone,
                bundle,
                answer_id,
            } => {
                log(
                    phone,
                    instruction,
                    format!(
                        "backup stored as snapshot {}: {} entries, {} contacts, {} bytes",
                        snapshot.unwrap_or("?"),
                        bundle.entries.len(),
                        bundle.contacts(),
                        bundle.size()
                    ),
                )?;
                tx.execute(
                    "UPDATE instructions SET state = 'stored', snapshot = ?2 WHERE message_id = ?1",
                    params![instruction, snapshot],
                )?;
                state::record_seen(&tx, answer_id, now.as_second())?;
            }
            Received::Completed {
                instruction,
                phone,
                answer_id,
            } => {
                log(phone, instruction, "restore completed on the phone".into())?;
                tx.execute(
                    "UPDATE instructions SET state = 'completed' WHERE message_id = ?1",
                    [instruction],
                )?;
                state::record_seen(&tx, answer_id, now.as_second())?;
            }
        }
        state::set_mark(&tx, validity, arrived.uid)?;
        tx.commit()?;
        Ok(())
    }

    /// One pass over the mailbox: every answer taken in, backups handed to `store` (which
    /// returns the snapshot id), settled, and removed from the mailbox.
    pub fn pass(
        &mut self,
        inbox: &mut Inbox,
        store: &mut dyn FnMut(&str, &Bundle) -> Result<String, MailError>,
    ) -> Result<Vec<Received>, MailError> {
        let mut out = Vec::new();
        loop {
            let (validity, arrived) = inbox.arrivals(state::mark(&self.db)?)?;
            if arrived.is_empty() {
                return Ok(out);
            }
            for a in &arrived {
                let received = self.receive(a, jiff::Timestamp::now())?;
                let snapshot = match &received {
                    Received::Backup { phone, bundle, .. } => Some(store(phone, bundle)?),
                    _ => None,
                };
                self.settle(validity, a, &received, snapshot.as_deref())?;
                if !matches!(received, Received::Left(_)) {
                    inbox.remove(a.uid)?;
                }
                out.push(received);
            }
        }
    }

    /// The instruction `id`.
    pub fn instruction(&self, id: &str) -> Result<Option<Instruction>, MailError> {
        Ok(self.instructions(Some(id), usize::MAX)?.into_iter().next())
    }

    /// The latest `limit` instructions (or only `id`), newest first.
    pub fn instructions(
        &self,
        id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Instruction>, MailError> {
        let mut q = self.db.prepare(
            "SELECT message_id, phone, direction, items, sent_at, state, snapshot
             FROM instructions WHERE ?1 IS NULL OR message_id = ?1
             ORDER BY rowid DESC LIMIT ?2",
        )?;
        let rows = q.query_map(params![id, limit.min(i64::MAX as usize) as i64], |r| {
            let items: String = r.get(3)?;
            Ok(Instruction {
                message_id: r.get(0)?,
                phone: r.get(1)?,
                direction: r.get(2)?,
                items: items
                    .split(',')
                    .filter(|i| !i.is_empty())
                    .map(String::from)
                    .collect(),
                sent_at: r.get(4)?,
                state: r.get(5)?,
                snapshot: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest `limit` log lines, oldest first: (when, phone, instruction, what happened).
    pub fn log_lines(&self, limit: usize) -> Result<Vec<[String; 4]>, MailError> {
        let mut q = self.db.prepare(
            "SELECT at, phone, message_id, event FROM
                 (SELECT * FROM log ORDER BY n DESC LIMIT ?1) ORDER BY n",
        )?;
        let rows = q.query_map([limit.min(i64::MAX as usize) as i64], |r| {
            Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?])
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

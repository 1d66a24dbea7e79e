//! Notices to users (`docs/requirements/placement.md` requirements 6, 8 and 12): each is kept in
//! the user's message history and queued as an e-mail message (RFC 5322) in the outbox directory,
//! `DATA/outbox`. With a mail relay configured, `kura serve` delivers the queue by SMTP and moves
//! what was accepted to `DATA/outbox/sent`; without one (the embedded default) the messages stay in
//! the outbox. A relay that is down delays a notice, never loses it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::registry::catalog::ObjectEntry;
use crate::registry::{Registry, User};

/// The From header of queued messages; delivery uses the relay's configured sender.
const FROM: &str = "Kura <kura@localhost>";

/// A notice that could not be kept or queued.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    /// The message history could not be written.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The outbox could not be written.
    #[error("outbox: {0}")]
    Io(#[from] std::io::Error),
}

/// Keeps a notice in the user's history and queues it in the outbox; returns its number.
pub fn send(
    registry: &Registry,
    data_dir: &Path,
    user: &User,
    kind: &str,
    subject: &str,
    body: &str,
) -> Result<i64, NoticeError> {
    let id = registry.add_message(user.id, kind, subject, body)?;
    let outbox = data_dir.join("outbox");
    std::fs::create_dir_all(&outbox)?;
    let date = jiff::fmt::rfc2822::to_string(&jiff::Zoned::now()).unwrap_or_default();
    // Without an address the message is kept, addressed by name, and not delivered.
    let to = user.email.as_deref().unwrap_or(&user.name);
    let message = format!(
        "From: {FROM}\r\nTo: {to}\r\nDate: {date}\r\nSubject: {subject}\r\n\
         Message-ID: <{id}.{uid}@kura>\r\nX-Kura-User: {name}\r\nX-Kura-Kind: {kind}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{body}",
        name = user.name,
        uid = user.id,
        body = body.replace('\n', "\r\n"),
    );
    crate::write_private(
        &outbox.join(format!("{id:08}-{}.eml", user.name)),
        message.as_bytes(),
    )?;
    tracing::info!(user = user.id, id, kind, "notice sent");
    Ok(id)
}

/// The storage conditions of `objects`, summed up in lines for a notice.
pub fn conditions_lines(objects: &[ObjectEntry]) -> Vec<String> {
    let conditions: Vec<_> = objects.iter().map(ObjectEntry::conditions).collect();
    kura_core::conditions::summary(&conditions, |b| format!("{b} bytes"))
}

/// A notice's text: `intro`, then the storage conditions of `objects`.
pub fn conditions_text(intro: &str, objects: &[ObjectEntry]) -> String {
    let lines = conditions_lines(objects);
    format!(
        "{intro}\n\n{}\n\n`kura conditions` shows the conditions of each object.\n",
        lines.join("\n")
    )
}

use kura_mail::relay::Relay;
pub use kura_mail::relay::Security;

/// The mail relay, from the service configuration's `[mail]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The relay's host name.
    pub relay: String,
    /// Its port (default: 587 for STARTTLS, 465 for TLS, 25 without).
    pub port: Option<u16>,
    /// How the connection is secured.
    #[serde(default)]
    pub security: Security,
    /// The login at the relay, if it needs one.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// The sender address.
    pub from: String,
    /// Seconds between deliveries of the outbox (default 60).
    pub every_secs: Option<u64>,
}

/// Without the password, so a printed configuration gives none away.
impl std::fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailConfig")
            .field("relay", &self.relay)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// What one delivery of the outbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Messages the relay accepted.
    pub sent: u64,
    /// Messages left in the outbox (no address, or the relay refused or was unreachable).
    pub waiting: u64,
}

/// A delivery failure that stops the run (the relay cannot be used at all).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The configuration cannot be used.
    #[error("mail relay: {0}")]
    Config(String),
    /// The outbox could not be read or moved.
    #[error("outbox: {0}")]
    Io(#[from] std::io::Error),
}

/// The recipient in a queued message's `To` header.
fn recipient(message: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(message).ok()?;
    text.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("To: "))
}

impl MailConfig {
    fn relay(&self) -> Relay {
        Relay {
            relay: self.relay.clone(),
            port: self.port,
            security: self.security,
            username: self.username.clone(),
            password: self.password.clone(),
            password_file: None,
        }
    }

    /// Delivers every queued message of the outbox under `data_dir` through the relay, oldest
    /// first, moving each accepted one to `outbox/sent`. Blocking.
    pub fn deliver(&self, data_dir: &Path) -> Result<Delivered, MailError> {
        let outbox = data_dir.join("outbox");
        let mut queued: Vec<PathBuf> = match std::fs::read_dir(&outbox) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Delivered::default()),
            Err(e) => return Err(e.into()),
        };
        if queued.is_empty() {
            return Ok(Delivered::default());
        }
        queued.sort();
        kura_mail::message::address_of(&self.from)
            .parse::<lettre::Address>()
            .map_err(|e| MailError::Config(format!("from {:?}: {e}", self.from)))?;
        let transport = self
            .relay()
            .transport()
            .map_err(|e| MailError::Config(e.to_string()))?;
        let sent_dir = outbox.join("sent");
        std::fs::create_dir_all(&sent_dir)?;
        let mut done = Delivered::default();
        for path in queued {
            let message = std::fs::read(&path)?;
            let Some(to) = recipient(&message).filter(|t| t.parse::<lettre::Address>().is_ok())
            else {
                tracing::warn!("{}: the user has no e-mail address; kept", path.display());
                done.waiting += 1;
                continue;
            };
            match Relay::send(&transport, &self.from, to, &message) {
                Ok(()) => {
                    if let Some(name) = path.file_name() {
                        std::fs::rename(&path, sent_dir.join(name))?;
                    }
                    done.sent += 1;
                }
                Err(e) => {
                    tracing::warn!(
                        "mailing {}: {e}; kept for the next delivery",
                        path.display()
                    );
                    done.waiting += 1;
                }
            }
        }
        Ok(done)
    }
}

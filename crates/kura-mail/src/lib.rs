//! Phones backed up and restored by e-mail instructions (`docs/requirements/mail-instructions.md`).
//!
//! The pure part: [`Direction`] (what an instruction asks), [`auth`] (the
//! `MB-Authentication-Info` field), [`fresh`] (the rules that keep an instruction from being
//! replayed), [`message`] (instruction and answer mails as bytes) and [`payload`] (the memory
//! items a body carries, sealed under the registered key), [`pairing`] (the keys each side
//! holds). With the feature `agents` (on by default), the I/O at the edges: [`inbox`]
//! (IMAP), [`relay`] (SMTP), [`store`] (a phone's memory on disk). On these, the two agents:
//! [`phone`] and [`terminal`].

pub mod auth;
pub mod fresh;
#[cfg(feature = "agents")]
pub mod inbox;
pub mod message;
pub mod pairing;
pub mod payload;
#[cfg(feature = "agents")]
pub mod phone;
#[cfg(feature = "agents")]
pub mod relay;
#[cfg(feature = "agents")]
pub mod state;
pub mod store;
#[cfg(feature = "agents")]
pub mod terminal;

pub use auth::{AuthError, AuthInfo, Key};

/// Why an agent could not do its work (not a refused instruction: that is an outcome).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A configuration or key file cannot be used.
    #[error("{0}")]
    Config(String),
    /// The local disk.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The agent's state database.
    #[cfg(feature = "agents")]
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Sending.
    #[cfg(feature = "agents")]
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
    /// Receiving.
    #[cfg(feature = "agents")]
    #[error(transparent)]
    Inbox(#[from] inbox::InboxError),
    /// Writing a message.
    #[error(transparent)]
    Message(#[from] message::MessageError),
}

/// A new, unique `Message-Id` for a message from `address`: `<random@domain>`.
pub fn new_message_id(address: &str) -> String {
    let domain = message::address_of(address)
        .rsplit_once('@')
        .map_or("kura.invalid", |(_, d)| d);
    let r: [u8; 16] = kura_core::crypto::random_bytes();
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("<{hex}@{domain}>")
}

/// What an instruction asks the phone to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Send its data back.
    Backup,
    /// Write the data the instruction carries.
    Restore,
}

impl Direction {
    /// The field names that carry it: the source's, and the shorter spelling it also uses.
    pub const FIELDS: [&'static str; 2] = ["MB-Direction-Code", "MB-Direction"];

    /// What a message's fields ask; `None` for ordinary mail (no MB field), which is left
    /// exactly as it is. A field with another value is an error, and so is a message with
    /// both spellings (only the one it carries is covered by its authentication, so the
    /// other could have been added on the way).
    pub fn of(fields: &auth::Fields) -> Result<Option<Direction>, AuthError> {
        let found: Vec<&str> = Direction::FIELDS
            .iter()
            .filter_map(|name| auth::field(fields, name))
            .collect();
        let v = match found[..] {
            [] => return Ok(None),
            [v] => v,
            _ => {
                return Err(AuthError::Malformed(
                    "both MB-Direction-Code and MB-Direction".into(),
                ));
            }
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "backup" => Ok(Some(Direction::Backup)),
            "restore" => Ok(Some(Direction::Restore)),
            other => Err(AuthError::Malformed(format!(
                "MB-Direction-Code {other:?} (backup or restore)"
            ))),
        }
    }

    /// The value written.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Backup => "backup",
            Direction::Restore => "restore",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_spelling_asks_and_ordinary_mail_asks_nothing() {
        assert_eq!(
            Direction::of(&[("MB-Direction-Code", " Backup ")]),
            Ok(Some(Direction::Backup))
        );
        assert_eq!(
            Direction::of(&[("mb-direction", "restore")]),
            Ok(Some(Direction::Restore))
        );
        assert_eq!(Direction::of(&[("Subject", "hello")]), Ok(None));
        assert!(
            Direction::of(&[("MB-Direction-Code", "backup"), ("MB-Direction", "restore")]).is_err()
        );
        assert!(Direction::of(&[("MB-Direction-Code", "wipe")]).is_err());
    }
}

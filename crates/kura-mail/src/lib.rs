//! Phones backed up and restored by e-mail instructions (`docs/requirements/mail-instructions.md`):
//! the pure part, apart from mail servers and stores. [`auth`] is the `MB-Authentication-Info`
//! field; [`fresh`] the rules that keep an instruction from being replayed; [`Direction`] what
//! an instruction asks. The phone and terminal agents build on these (in progress: issue 15).

pub mod auth;
pub mod fresh;
pub mod message;

pub use auth::{AuthError, AuthInfo, Key};

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
    /// exactly as it is. A field with another value is an error.
    pub fn of(fields: &auth::Fields) -> Result<Option<Direction>, AuthError> {
        let Some(v) = Direction::FIELDS
            .iter()
            .find_map(|name| auth::field(fields, name))
        else {
            return Ok(None);
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
        assert!(Direction::of(&[("MB-Direction-Code", "wipe")]).is_err());
    }
}

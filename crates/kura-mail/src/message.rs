//! Instruction and answer mails as bytes: written with mail-builder, read with mail-parser,
//! never by hand. A message is one `application/octet-stream` part, base64 (so it passes 7-bit
//! transport), holding data already encrypted; its `MB-Authentication-Info` field is put first
//! (as a DKIM signature is) and covers the body as sent. [`MAX_MESSAGE`] bounds what is read.

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use crate::Direction;
use crate::auth::{self, AuthError, AuthInfo, Key};

/// The largest message read: a phone's memory, encrypted and base64, with room to spare.
pub const MAX_MESSAGE: usize = 16 << 20;

/// The field naming the items a restore writes (comma-separated).
pub const ITEMS_FIELD: &str = "MB-Items";

/// The field carrying the BLAKE3 of the bundle a restore wrote (in its completion).
pub const DIGEST_FIELD: &str = "MB-Digest";

/// The field telling a lost phone what to do after its backup (`wipe`).
pub const AFTER_FIELD: &str = "MB-After";

/// The fields every message covers: [`auth::REQUIRED`], the recipient, what it answers, the
/// items it names, the digest of what a restore wrote, and what follows a backup.
pub const COVERED: [&str; 9] = [
    "from",
    "to",
    "date",
    "message-id",
    "mb-direction-code",
    "in-reply-to",
    "mb-items",
    "mb-digest",
    "mb-after",
];

/// The address in `Name <addr>` or a bare `addr`.
pub fn address_of(text: &str) -> &str {
    text.rsplit_once('<')
        .map_or(text, |(_, a)| a.trim_end_matches('>'))
        .trim()
}

/// Why a message was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("the message is {0} bytes, more than the {MAX_MESSAGE} read")]
    TooLarge(usize),
    /// Not a mail message.
    #[error("not a mail message")]
    Unparsable,
    /// A field it must have is missing.
    #[error("no {0} field")]
    Missing(&'static str),
    /// Its authentication does not check.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Writing it failed.
    #[error("the message could not be written: {0}")]
    Write(String),
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    /// The sender's address.
    pub from: &'a str,
    /// The recipient's address.
    pub to: &'a str,
    /// A subject for people reading the mailbox.
    pub subject: &'a str,
    /// What it asks (an instruction) or answers (a reply).
    pub direction: Direction,
    /// The `Message-Id` of the instruction this answers, if it is an answer.
    pub in_reply_to: Option<&'a str>,
    /// The items a restore writes, or an answer carries.
    pub items: &'a [String],
    /// The digest of what a restore wrote, in its completion.
    pub digest: Option<&'a str>,
    /// What the phone does after a backup (`wipe`), in an instruction.
    pub after: Option<&'a str>,
    /// The data, already encrypted.
    pub data: &'a [u8],
}

/// A message as read, before its authentication is checked.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Every header field as sent: (name, raw value).
    pub fields: Vec<(String, String)>,
    /// The body as sent (base64 text), which the authentication covers.
    pub raw_body: Vec<u8>,
    /// The body decoded: the encrypted data.
    pub data: Vec<u8>,
    /// The sender's address (of the last `From`), if it parses.
    pub from: Option<String>,
}

impl Incoming {
    /// The value of the last field named `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        auth::field(&self.view(), name)
    }

    fn view(&self) -> Vec<(&str, &str)> {
        self.fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// What it asks; `None` for ordinary mail.
    pub fn direction(&self) -> Result<Option<Direction>, AuthError> {
        Direction::of(&self.view())
    }

    /// The items it names.
    pub fn items(&self) -> Vec<String> {
        self.field(ITEMS_FIELD)
            .map(|v| {
                v.split(',')
                    .map(|i| i.trim().to_string())
                    .filter(|i| !i.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Checks its authentication under `key`.
    pub fn verify(&self, key: &Key) -> Result<AuthInfo, AuthError> {
        auth::verify(&self.view(), &self.raw_body, key)
    }
}

/// Writes `m` as a mail dated `date` with id `message_id` (`<...>`), authenticated with `key`.
pub fn write(
    m: &Outgoing,
    date: jiff::Timestamp,
    message_id: &str,
    key: &Key,
) -> Result<Vec<u8>, MessageError> {
    let id = message_id.trim_matches(['<', '>']);
    let mut b = MessageBuilder::new()
        .from(m.from)
        .to(m.to)
        .subject(m.subject)
        .date(date.as_second())
        .message_id(id)
        .header("MB-Direction-Code", Raw::new(m.direction.name()))
        .header(ITEMS_FIELD, Raw::new(m.items.join(",")));
    if let Some(r) = m.in_reply_to {
        b = b.in_reply_to(r.trim_matches(['<', '>']));
    }
    if let Some(d) = m.digest {
        b = b.header(DIGEST_FIELD, Raw::new(d));
    }
    if let Some(a) = m.after {
        b = b.header(AFTER_FIELD, Raw::new(a));
    }
    let unsigned = b
        .body(MimePart::new("application/octet-stream", m.data))
        .write_to_vec()
        .map_err(|e| MessageError::Write(e.to_string()))?;
    // Read back as any receiver will, and sign what it will see.
    let seen = read(&unsigned)?;
    let value = auth::sign(&seen.view(), &seen.raw_body, &COVERED, key)?;
    let mut out = format!("{}: {value}\r\n", auth::FIELD).into_bytes();
    out.extend_from_slice(&unsigned);
    Ok(out)
}

/// Reads a mail: its fields, its body as sent and decoded. Nothing is checked but the size and
/// the form; see [`Incoming::verify`].
pub fn read(bytes: &[u8]) -> Result<Incoming, MessageError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(MessageError::TooLarge(bytes.len()));
    }
    let msg = mail_parser::MessageParser::default()
        .parse(bytes)
        .ok_or(MessageError::Unparsable)?;
    let fields: Vec<(String, String)> = msg
        .headers_raw()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    if fields.is_empty() {
        return Err(MessageError::Unparsable);
    }
    let root = msg.root_part();
    let raw = msg.raw_message();
    let start = root.raw_body_offset() as usize;
    let end = root.raw_end_offset() as usize;
    let raw_body = raw
        .get(start.min(raw.len())..end.min(raw.len()))
        .unwrap_or_default()
        .to_vec();
    let from = msg
        .header_values(mail_parser::HeaderName::From)
        .last()
        .and_then(|v| v.as_address())
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_ascii_lowercase);
    Ok(Incoming {
        fields,
        raw_body,
        data: root.contents().to_vec(),
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key<'static> {
        Key::Shared {
            secret: b"registered",
            legacy: false,
        }
    }

    fn outgoing<'a>(data: &'a [u8], items: &'a [String]) -> Outgoing<'a> {
        Outgoing {
            from: "terminal@example.org",
            to: "phone@example.org",
            subject: "Kura: restore",
            direction: Direction::Restore,
            in_reply_to: None,
            items,
            digest: None,
            after: None,
            data,
        }
    }

    #[test]
    fn a_written_message_reads_back_and_checks() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 13 % 256) as u8).collect();
        let items = vec!["contacts".to_string(), "memo".to_string()];
        let now = jiff::Timestamp::now();
        let bytes = write(&outgoing(&data, &items), now, "<1@terminal>", &key()).unwrap();
        assert!(bytes.iter().all(|b| b.is_ascii()), "7-bit clean");
        let m = read(&bytes).unwrap();
        assert_eq!(m.data, data);
        assert_eq!(m.items(), items);
        assert_eq!(m.direction(), Ok(Some(Direction::Restore)));
        assert!(m.verify(&key()).is_ok());
        assert_eq!(m.field("Message-Id").map(str::trim), Some("<1@terminal>"));
    }

    #[test]
    fn a_body_or_field_changed_in_transit_is_refused() {
        let items = vec!["contacts".to_string()];
        let bytes = write(
            &outgoing(b"the data", &items),
            jiff::Timestamp::now(),
            "<2@terminal>",
            &key(),
        )
        .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let body_at = text.find("\r\n\r\n").unwrap() + 4;
        let mut changed = text.clone().into_bytes();
        changed[body_at] = if changed[body_at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            read(&changed).unwrap().verify(&key()).unwrap_err(),
            AuthError::Body
        );
        let more = text.replace("MB-Items: contacts", "MB-Items: contacts,keys");
        assert_eq!(
            read(more.as_bytes()).unwrap().verify(&key()).unwrap_err(),
            AuthError::Value
        );
        assert!(matches!(
            read(&vec![b'a'; MAX_MESSAGE + 1]),
            Err(MessageError::TooLarge(_))
        ));
    }
}

//! What a mail's body carries: a phone's memory items as one [`Bundle`], sealed under the
//! registered key (`docs/requirements/mail-instructions.md` wire format, body).
//!
//! A bundle is a list of entries, each a path and its bytes:
//!
//! ```text
//! "KMB1" | count: u32 | count × ( name length: u16 | name (UTF-8) | length: u32 | bytes )
//! ```
//!
//! (little-endian). A path is `contacts/NAME.vcf` (one address-book card) or `items/NAME` (one
//! other memory item); names are short and plain, so a path can never leave the phone's
//! store. The sealed body is XChaCha20-Poly1305 under a key derived from the registered secret,
//! with the message's `Message-Id` and direction as associated data, so a body cannot be moved
//! to another message even by someone who could forge the authentication field.

use std::collections::BTreeMap;

use kura_core::crypto::{self, Key};

use crate::Direction;

const MAGIC: &[u8; 4] = b"KMB1";

/// The most entries a bundle holds.
pub const MAX_ENTRIES: usize = 100_000;

/// The longest name of an item or a card file.
pub const MAX_NAME: usize = 64;

/// The address book's folder.
pub const CONTACTS: &str = "contacts";

/// The other memory items' folder.
pub const ITEMS: &str = "items";

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// It does not open under the key (another key, or changed).
    #[error("the body does not decrypt under the registered key (another key, or changed)")]
    Sealed,
    /// It opened but is not a bundle.
    #[error("the body is not a bundle of items: {0}")]
    Malformed(&'static str),
    /// A path it names is not one a phone keeps.
    #[error("the path {0:?} is not contacts/NAME.vcf or items/NAME")]
    Path(String),
    /// An address-book entry is not one vCard 4.0.
    #[error("{0} is not one vCard 4.0 (RFC 6350): {1}")]
    Card(String, String),
}

/// The registered secret both sides hold, and the keys taken from it.
#[derive(Clone)]
pub struct Secret(Key);

impl Secret {
    /// A new random secret, to register on a phone and its terminal.
    pub fn random() -> Secret {
        Secret(Key::random())
    }

    /// The secret as text (64 hex digits), for a key file.
    pub fn to_hex(&self) -> String {
        self.0.expose().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads [`Secret::to_hex`]'s text.
    pub fn from_hex(text: &str) -> Option<Secret> {
        let t = text.trim();
        if t.len() != 64 || !t.is_ascii() {
            return None;
        }
        let mut b = [0u8; 32];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Secret(Key::from_bytes(b)))
    }

    /// The key the `MB-Authentication-Info` HMAC is computed under.
    pub fn mac_key(&self) -> [u8; 32] {
        *self.0.derive("kura-mail 2026 authentication").expose()
    }

    fn payload_key(&self) -> Key {
        self.0.derive("kura-mail 2026 payload")
    }

    /// Seals `bundle` for the message `message_id` going `direction`.
    pub fn seal(&self, bundle: &Bundle, message_id: &str, direction: Direction) -> Vec<u8> {
        crypto::seal(
            &self.payload_key(),
            &associated(message_id, direction),
            &bundle.encode(),
        )
    }

    /// Opens a body sealed by [`Secret::seal`] for the same message and direction.
    pub fn open(
        &self,
        sealed: &[u8],
        message_id: &str,
        direction: Direction,
    ) -> Result<Bundle, PayloadError> {
        let plain = crypto::open(
            &self.payload_key(),
            &associated(message_id, direction),
            sealed,
            "mail body",
        )
        .map_err(|_| PayloadError::Sealed)?;
        Bundle::decode(&plain)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn associated(message_id: &str, direction: Direction) -> Vec<u8> {
    format!("{}\n{}", message_id.trim(), direction.name()).into_bytes()
}

/// A phone's memory items, by path, in path order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    /// Path → contents.
    pub entries: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// Adds an entry; fails on a path a phone does not keep.
    pub fn insert(&mut self, path: &str, bytes: Vec<u8>) -> Result<(), PayloadError> {
        check_path(path)?;
        self.entries.insert(path.to_string(), bytes);
        Ok(())
    }

    /// The bytes.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .entries
            .iter()
            .map(|(k, v)| 6 + k.len() + v.len())
            .sum();
        let mut out = Vec::with_capacity(8 + size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (path, bytes) in &self.entries {
            out.extend_from_slice(&(path.len() as u16).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Reads [`Bundle::encode`]'s bytes; every path is checked, none may repeat.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, PayloadError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(PayloadError::Malformed("no KMB1 header"));
        }
        let count = u32::from_le_bytes(r.array()?) as usize;
        if count > MAX_ENTRIES {
            return Err(PayloadError::Malformed("too many entries"));
        }
        let mut b = Bundle::default();
        for _ in 0..count {
            let len = u16::from_le_bytes(r.array()?) as usize;
            let path = std::str::from_utf8(r.take(len)?)
                .map_err(|_| PayloadError::Malformed("a path is not UTF-8"))?;
            check_path(path)?;
            let len = u32::from_le_bytes(r.array()?) as usize;
            let data = r.take(len)?.to_vec();
            if b.entries.insert(path.to_string(), data).is_some() {
                return Err(PayloadError::Malformed("a path given twice"));
            }
        }
        if !r.0.is_empty() {
            return Err(PayloadError::Malformed("bytes after the last entry"));
        }
        Ok(b)
    }

    /// The item each entry belongs to: `contacts` for every card, else the item's name.
    pub fn item_of(path: &str) -> &str {
        match path.split_once('/') {
            Some((CONTACTS, _)) => CONTACTS,
            Some((_, name)) => name,
            None => path,
        }
    }

    /// The items it holds, each once, in order.
    pub fn items(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in self.entries.keys() {
            let i = Bundle::item_of(p);
            if out.last().map(String::as_str) != Some(i) && !out.iter().any(|o| o == i) {
                out.push(i.to_string());
            }
        }
        out
    }

    /// Only the entries of `items` (all when `items` is empty).
    pub fn only(&self, items: &[String]) -> Bundle {
        Bundle {
            entries: self
                .entries
                .iter()
                .filter(|(p, _)| items.is_empty() || items.iter().any(|i| i == Bundle::item_of(p)))
                .map(|(p, v)| (p.clone(), v.clone()))
                .collect(),
        }
    }

    /// How many address-book cards it holds.
    pub fn contacts(&self) -> usize {
        self.entries
            .keys()
            .filter(|p| Bundle::item_of(p) == CONTACTS)
            .count()
    }

    /// Checks that every address-book entry is exactly one vCard 4.0 (vcard4's strict
    /// parser), and returns the cards' formatted names in path order.
    pub fn check_cards(&self) -> Result<Vec<String>, PayloadError> {
        self.entries
            .iter()
            .filter(|(p, _)| Bundle::item_of(p) == CONTACTS)
            .map(|(p, bytes)| card_name(bytes).map_err(|why| PayloadError::Card(p.clone(), why)))
            .collect()
    }

    /// The bytes of every entry together.
    pub fn size(&self) -> usize {
        self.entries.values().map(Vec::len).sum()
    }
}

/// The formatted name (FN) of `bytes` if they are exactly one vCard 4.0.
fn card_name(bytes: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut cards = vcard4::parse(text).map_err(|e| e.to_string())?;
    match (cards.pop(), cards.is_empty()) {
        (Some(card), true) => Ok(card
            .formatted_name
            .first()
            .map(|f| f.value.clone())
            .unwrap_or_default()),
        (Some(_), false) => Err("more than one card in one file".into()),
        (None, _) => Err("no card".into()),
    }
}

/// Whether `name` is a plain item or card name: ASCII letters, digits, `.`, `_`, `-`, not
/// starting with a dot, at most [`MAX_NAME`] bytes.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_path(path: &str) -> Result<(), PayloadError> {
    let ok = match path.split_once('/') {
        Some((CONTACTS, name)) => is_plain_name(name) && name.ends_with(".vcf"),
        Some((ITEMS, name)) => is_plain_name(name) && name != CONTACTS,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(PayloadError::Path(path.chars().take(100).collect()))
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PayloadError> {
        if self.0.len() < n {
            return Err(PayloadError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PayloadError> {
        self.take(N)?
            .try_into()
            .map_err(|_| PayloadError::Malformed("truncated"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle() -> Bundle {
        let mut b = Bundle::default();
        b.insert("contacts/a.vcf", b"BEGIN:VCARD\r\n".to_vec())
            .unwrap();
        b.insert("contacts/b.vcf", b"BEGIN:VCARD\r\nFN:B\r\n".to_vec())
            .unwrap();
        b.insert("items/memo", vec![0, 1, 2, 255]).unwrap();
        b.insert("items/empty", Vec::new()).unwrap();
        b
    }

    #[test]
    fn a_bundle_round_trips_and_names_its_items() {
        let b = bundle();
        assert_eq!(Bundle::decode(&b.encode()), Ok(b.clone()));
        assert_eq!(b.items(), ["contacts", "empty", "memo"]);
        assert_eq!(b.contacts(), 2);
        assert_eq!(b.only(&["memo".into()]).entries.len(), 1);
        assert_eq!(b.only(&[]).entries.len(), 4);
    }

    #[test]
    fn paths_that_could_leave_the_store_are_refused() {
        let mut b = Bundle::default();
        for bad in [
            "../x",
            "contacts/../../etc/passwd",
            "contacts/a.txt",
            "items/.hidden",
            "items/a/b",
            "items/contacts",
            "other/x",
            "items/",
        ] {
            assert!(b.insert(bad, vec![]).is_err(), "{bad}");
        }
        let mut bytes = bundle().encode();
        // "contacts/a.vcf" becomes "contacts/a/vcf".
        let at = bytes.windows(5).position(|w| w == b"a.vcf").unwrap();
        bytes[at + 1] = b'/';
        assert!(matches!(Bundle::decode(&bytes), Err(PayloadError::Path(_))));
    }

    #[test]
    fn a_truncated_or_padded_bundle_is_refused() {
        let bytes = bundle().encode();
        for n in 0..bytes.len() {
            assert!(Bundle::decode(&bytes[..n]).is_err(), "{n}");
        }
        let mut more = bytes.clone();
        more.push(0);
        assert!(Bundle::decode(&more).is_err());
    }

    #[test]
    fn address_book_entries_must_each_be_one_vcard() {
        let mut b = Bundle::default();
        b.insert(
            "contacts/a.vcf",
            b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Aoi\r\nEND:VCARD\r\n".to_vec(),
        )
        .unwrap();
        b.insert("items/memo", b"not a card, and need not be".to_vec())
            .unwrap();
        assert_eq!(b.check_cards(), Ok(vec!["Aoi".to_string()]));
        for bad in [
            &b"hello"[..],
            b"",
            b"\xff\xfe",
            b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:A\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:B\r\nEND:VCARD\r\n",
        ] {
            let mut c = b.clone();
            c.insert("contacts/b.vcf", bad.to_vec()).unwrap();
            let r = c.check_cards();
            assert!(
                matches!(&r, Err(PayloadError::Card(p, _)) if p == "contacts/b.vcf"),
                "{:?} {r:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_sealed_body_opens_only_for_its_key_message_and_direction() {
        let s = Secret::random();
        let sealed = s.seal(&bundle(), "<1@t>", Direction::Restore);
        assert_eq!(s.open(&sealed, "<1@t>", Direction::Restore), Ok(bundle()));
        assert_eq!(
            s.open(&sealed, "<2@t>", Direction::Restore),
            Err(PayloadError::Sealed)
        );
        assert_eq!(
            s.open(&sealed, "<1@t>", Direction::Backup),
            Err(PayloadError::Sealed)
        );
        assert_eq!(
            Secret::random().open(&sealed, "<1@t>", Direction::Restore),
            Err(PayloadError::Sealed)
        );
        let again = Secret::from_hex(&s.to_hex()).unwrap();
        assert!(again.open(&sealed, "<1@t>", Direction::Restore).is_ok());
        assert!(Secret::from_hex("00").is_none());
    }
}

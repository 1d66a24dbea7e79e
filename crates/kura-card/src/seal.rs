//! How a backup leaves the card: a plain header, the card-unique key wrapped under the common
//! key, the control information sealed under the card-unique key, then one sealed record
//! `{page, contents}` per page (card.md requirements 4 and 6).
//!
//! Every seal is XChaCha20-Poly1305 (kura-core `crypto`). The header is associated data of the
//! control information and of every record, and each record's index is associated data of
//! that record, so a changed, swapped, reordered or borrowed record does not open.

use kura_core::crypto::{self, Key, OVERHEAD};

/// Whether a backup holds every page or only those changed since the last completed backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupKind {
    /// Every page.
    Full,
    /// The pages changed since the last completed backup.
    Differential,
}

impl BackupKind {
    /// `full` or `differential`.
    pub fn name(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Differential => "differential",
        }
    }

    /// The kind a name means.
    pub fn from_name(name: &str) -> Option<BackupKind> {
        match name {
            "full" => Some(BackupKind::Full),
            "differential" => Some(BackupKind::Differential),
            _ => None,
        }
    }

    /// The kind's byte: in headers and in BACKUP's P1.
    pub fn code(self) -> u8 {
        match self {
            BackupKind::Full => 0,
            BackupKind::Differential => 1,
        }
    }

    /// The kind a byte means.
    pub fn from_code(c: u8) -> Option<BackupKind> {
        [BackupKind::Full, BackupKind::Differential]
            .into_iter()
            .find(|k| k.code() == c)
    }
}

/// The bytes of a header.
pub const HEADER_LEN: usize = 42;
/// The bytes of the wrapped card-unique key.
pub const WRAPPED_LEN: usize = 32 + OVERHEAD;
/// The bytes of the sealed control information.
pub const CONTROL_LEN: usize = CONTROL_PLAIN + OVERHEAD;
/// The bytes the card answers BACKUP with: header, wrapped key, control information.
pub const OPENING_LEN: usize = HEADER_LEN + WRAPPED_LEN + CONTROL_LEN;
const CONTROL_PLAIN: usize = 8 + 1 + 4;
const VERSION: u8 = 1;

/// The plain part of a backup: what the host files it under. The card checks it against the
/// sealed control information and seals every record to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Full or differential.
    pub kind: BackupKind,
    /// The card the backup was made on.
    pub card_number: u64,
    /// This backup's number on that card; every BACKUP takes the next.
    pub sequence: u32,
    /// The last completed backup when this one began (what a differential is relative to).
    pub base: u32,
    /// How many records follow.
    pub records: u32,
    /// The card's page size.
    pub page_size: u16,
    /// The card's page count.
    pub pages: u16,
    /// Random, so no two backups share a record's associated data.
    pub backup_id: [u8; 16],
}

impl Header {
    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = self.kind.code();
        b[2..10].copy_from_slice(&self.card_number.to_be_bytes());
        b[10..14].copy_from_slice(&self.sequence.to_be_bytes());
        b[14..18].copy_from_slice(&self.base.to_be_bytes());
        b[18..22].copy_from_slice(&self.records.to_be_bytes());
        b[22..24].copy_from_slice(&self.page_size.to_be_bytes());
        b[24..26].copy_from_slice(&self.pages.to_be_bytes());
        b[26..42].copy_from_slice(&self.backup_id);
        b
    }

    /// Reads a header; `None` if it is not one.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        if b[0] != VERSION {
            return None;
        }
        let kind = BackupKind::from_code(b[1])?;
        let mut card = [0u8; 8];
        card.copy_from_slice(&b[2..10]);
        let mut backup_id = [0u8; 16];
        backup_id.copy_from_slice(&b[26..42]);
        Some(Header {
            kind,
            card_number: u64::from_be_bytes(card),
            sequence: u32_at(10),
            base: u32_at(14),
            records: u32_at(18),
            page_size: u16_at(22),
            pages: u16_at(24),
            backup_id,
        })
    }

    /// The bytes of one sealed record of this backup.
    pub fn record_len(&self) -> usize {
        record_len(usize::from(self.page_size))
    }

    fn control_plain(&self) -> [u8; CONTROL_PLAIN] {
        let mut p = [0u8; CONTROL_PLAIN];
        p[..8].copy_from_slice(&self.card_number.to_be_bytes());
        p[8] = self.kind.code();
        p[9..].copy_from_slice(&self.sequence.to_be_bytes());
        p
    }
}

/// The bytes of one sealed record for pages of `page_size` bytes.
pub fn record_len(page_size: usize) -> usize {
    2 + page_size + OVERHEAD
}

fn wrap_aad(card_number: u64) -> Vec<u8> {
    let mut a = b"kura-card key v1".to_vec();
    a.extend_from_slice(&card_number.to_be_bytes());
    a
}

fn control_aad(h: &Header) -> Vec<u8> {
    let mut a = b"kura-card control v1".to_vec();
    a.extend_from_slice(&h.to_bytes());
    a
}

fn record_aad(h: &Header, index: u32) -> Vec<u8> {
    let mut a = b"kura-card record v1".to_vec();
    a.extend_from_slice(&h.to_bytes());
    a.extend_from_slice(&index.to_be_bytes());
    a
}

/// What BACKUP answers: the header, the card-unique key wrapped under the common key, and the
/// control information (card number, kind, sequence) sealed under the card-unique key.
pub fn opening(h: &Header, unique: &Key, common: &Key) -> Vec<u8> {
    let mut b = h.to_bytes().to_vec();
    crypto::seal_into(common, &wrap_aad(h.card_number), unique.expose(), &mut b);
    crypto::seal_into(unique, &control_aad(h), &h.control_plain(), &mut b);
    b
}

/// The parts of a backup's opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The plain header.
    pub header: Header,
    /// The card-unique key under the common key.
    pub wrapped: Vec<u8>,
    /// The control information under the card-unique key.
    pub control: Vec<u8>,
}

impl Opening {
    /// Splits an opening into its parts; `None` if it is not one.
    pub fn parse(b: &[u8]) -> Option<Opening> {
        if b.len() != OPENING_LEN {
            return None;
        }
        Some(Opening {
            header: Header::parse(b)?,
            wrapped: b[HEADER_LEN..HEADER_LEN + WRAPPED_LEN].to_vec(),
            control: b[HEADER_LEN + WRAPPED_LEN..].to_vec(),
        })
    }

    /// The opening's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.header.to_bytes().to_vec();
        b.extend_from_slice(&self.wrapped);
        b.extend_from_slice(&self.control);
        b
    }

    /// The source card's unique key, unwrapped with the common key.
    pub fn unwrap_key(&self, common: &Key) -> Option<Key> {
        let plain = crypto::open(
            common,
            &wrap_aad(self.header.card_number),
            &self.wrapped,
            "wrapped card key",
        )
        .ok()?;
        Some(Key::from_bytes(plain.try_into().ok()?))
    }

    /// Whether the control information opens under `unique` and agrees with the header.
    pub fn control_holds(&self, unique: &Key) -> bool {
        crypto::open(
            unique,
            &control_aad(&self.header),
            &self.control,
            "card control information",
        )
        .is_ok_and(|p| p == self.header.control_plain())
    }
}

/// Record `index` of a backup: page `page` and its contents, sealed.
pub fn seal_record(h: &Header, unique: &Key, index: u32, page: u16, contents: &[u8]) -> Vec<u8> {
    let mut plain = page.to_be_bytes().to_vec();
    plain.extend_from_slice(contents);
    crypto::seal(unique, &record_aad(h, index), &plain)
}

/// Opens record `index` of a backup: its page number and contents, or `None` if it does not
/// open as that record or names a page the card does not have.
pub fn open_record(h: &Header, unique: &Key, index: u32, sealed: &[u8]) -> Option<(u16, Vec<u8>)> {
    let plain = crypto::open(unique, &record_aad(h, index), sealed, "card record").ok()?;
    if plain.len() != 2 + usize::from(h.page_size) {
        return None;
    }
    let page = u16::from_be_bytes([plain[0], plain[1]]);
    (page < h.pages).then(|| (page, plain[2..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            kind: BackupKind::Differential,
            card_number: 4_000_100,
            sequence: 7,
            base: 6,
            records: 2,
            page_size: 32,
            pages: 8,
            backup_id: [9; 16],
        }
    }

    #[test]
    fn a_record_opens_only_as_itself() {
        let (h, k) = (header(), Key::random());
        let r = seal_record(&h, &k, 0, 5, &[1; 32]);
        assert_eq!(r.len(), h.record_len());
        assert_eq!(open_record(&h, &k, 0, &r), Some((5, vec![1; 32])));
        assert_eq!(open_record(&h, &k, 1, &r), None, "at another index");
        assert_eq!(open_record(&h, &Key::random(), 0, &r), None, "another key");
        let other = Header { sequence: 8, ..h };
        assert_eq!(open_record(&other, &k, 0, &r), None, "another backup");
        let mut bad = r.clone();
        bad[30] ^= 1;
        assert_eq!(open_record(&h, &k, 0, &bad), None, "a changed byte");
    }

    #[test]
    fn the_opening_unwraps_only_with_the_common_key_and_checks_its_header() {
        let (h, unique, common) = (header(), Key::random(), Key::random());
        let b = opening(&h, &unique, &common);
        let o = Opening::parse(&b).unwrap();
        assert_eq!(o.to_bytes(), b);
        assert_eq!(o.unwrap_key(&common), Some(unique.clone()));
        assert_eq!(o.unwrap_key(&Key::random()), None);
        assert!(o.control_holds(&unique));
        let relabelled = Opening {
            header: Header {
                card_number: 1,
                ..h
            },
            ..o.clone()
        };
        assert!(!relabelled.control_holds(&unique));
        assert_eq!(relabelled.unwrap_key(&common), None);
    }
}

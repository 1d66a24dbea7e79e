//! The chip as bytes: what the emulator keeps in its state file, the card's EEPROM.
//!
//! `KURACARD` and a version, the fields in order, then the BLAKE3 of all of it, so a damaged
//! file is refused as damaged rather than read as a different card.

use kura_core::crypto::Key;

use crate::app::{Application, Kind, Reset};
use crate::card::{Chain, Chip, Load};
use crate::memory::Memory;

const MAGIC: &[u8; 8] = b"KURACARD";
const VERSION: u8 = 1;

/// Why bytes are not a card's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a card state file at all.
    #[error("not a Kura card state (no KURACARD header)")]
    NotState,
    /// A version this build does not read.
    #[error("card state version {0} is not one this kura reads")]
    Version(u8),
    /// The checksum does not match: the file was damaged.
    #[error("the card state is damaged (its checksum does not match)")]
    Damaged,
    /// The fields do not make a card.
    #[error("the card state is malformed: {0}")]
    Malformed(&'static str),
}

/// The chip's bytes.
pub fn encode(c: &Chip) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.push(VERSION);
    let key = |b: &mut Vec<u8>, k: &Option<Key>| match k {
        Some(k) => {
            b.push(1);
            b.extend_from_slice(k.expose());
        }
        None => b.push(0),
    };
    match c.card_number {
        Some(n) => {
            b.push(1);
            b.extend_from_slice(&n.to_be_bytes());
        }
        None => b.push(0),
    }
    key(&mut b, &c.unique_key);
    key(&mut b, &c.common_key);
    b.push(c.pin.len() as u8);
    b.extend_from_slice(&c.pin);
    b.push(c.pin_tries);
    b.extend_from_slice(&(c.memory.page_size() as u16).to_be_bytes());
    b.extend_from_slice(&(c.memory.pages() as u16).to_be_bytes());
    b.extend_from_slice(c.memory.bytes());
    b.extend(c.memory.changed().iter().map(|&f| u8::from(f)));
    b.extend_from_slice(&c.sequence.to_be_bytes());
    b.extend_from_slice(&c.completed.to_be_bytes());
    b.push(u8::from(c.backing_up));
    match c.restoring {
        Some(ch) => {
            b.push(1);
            b.extend_from_slice(&ch.source.to_be_bytes());
            b.extend_from_slice(&ch.applied.to_be_bytes());
        }
        None => b.push(0),
    }
    b.push(c.apps.len() as u8);
    for a in &c.apps {
        b.push(a.name.len() as u8);
        b.extend_from_slice(a.name.as_bytes());
        b.push(a.aid.len() as u8);
        b.extend_from_slice(&a.aid);
        match a.kind {
            Kind::Data => b.push(0),
            Kind::Value { reset, initial } => {
                b.push(1);
                b.push(reset.code());
                b.extend_from_slice(&initial.to_be_bytes());
            }
        }
        b.extend_from_slice(&a.first_page.to_be_bytes());
        b.extend_from_slice(&a.pages.to_be_bytes());
        b.push(u8::from(a.restored));
    }
    b.extend_from_slice(&c.load_count.to_be_bytes());
    b.push(c.loads.len() as u8);
    for l in &c.loads {
        b.extend_from_slice(&l.to_bytes());
    }
    let sum = blake3::hash(&b);
    b.extend_from_slice(sum.as_bytes());
    b
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(StateError::Malformed("cut short"))?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, StateError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u16(&mut self) -> Result<u16, StateError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn flag(&mut self) -> Result<bool, StateError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StateError::Malformed("a flag is neither 0 nor 1")),
        }
    }
    fn key(&mut self) -> Result<Option<Key>, StateError> {
        Ok(if self.flag()? {
            Some(Key::from_bytes(self.array()?))
        } else {
            None
        })
    }
    fn short(&mut self) -> Result<&'a [u8], StateError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
}

/// Reads a chip from its bytes.
pub fn decode(b: &[u8]) -> Result<Chip, StateError> {
    if b.len() < MAGIC.len() + 1 + 32 || &b[..8] != MAGIC {
        return Err(StateError::NotState);
    }
    if b[8] != VERSION {
        return Err(StateError::Version(b[8]));
    }
    let (body, sum) = b.split_at(b.len() - 32);
    if blake3::hash(body).as_bytes() != sum {
        return Err(StateError::Damaged);
    }
    let mut r = Reader(&body[9..]);
    let card_number = if r.flag()? { Some(r.u64()?) } else { None };
    let unique_key = r.key()?;
    let common_key = r.key()?;
    let pin = r.short()?.to_vec();
    let pin_tries = r.u8()?;
    let page_size = usize::from(r.u16()?);
    let pages = usize::from(r.u16()?);
    let bytes = r
        .take(
            page_size
                .checked_mul(pages)
                .ok_or(StateError::Malformed("size"))?,
        )?
        .to_vec();
    let changed = r
        .take(pages)?
        .iter()
        .map(|&f| match f {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StateError::Malformed(
                "a changed-page flag is neither 0 nor 1",
            )),
        })
        .collect::<Result<_, _>>()?;
    let memory = Memory::from_parts(page_size, bytes, changed)
        .ok_or(StateError::Malformed("page geometry"))?;
    let sequence = r.u32()?;
    let completed = r.u32()?;
    let backing_up = r.flag()?;
    let restoring = if r.flag()? {
        Some(Chain {
            source: r.u64()?,
            applied: r.u32()?,
        })
    } else {
        None
    };
    let mut apps = Vec::new();
    for _ in 0..r.u8()? {
        let name = String::from_utf8(r.short()?.to_vec())
            .map_err(|_| StateError::Malformed("application name"))?;
        let aid = r.short()?.to_vec();
        let kind = if r.flag()? {
            let reset = Reset::from_code(r.u8()?).ok_or(StateError::Malformed("reset kind"))?;
            Kind::Value {
                reset,
                initial: r.u64()?,
            }
        } else {
            Kind::Data
        };
        let a = Application {
            name,
            aid,
            kind,
            first_page: r.u16()?,
            pages: r.u16()?,
            restored: r.flag()?,
        };
        if usize::from(a.first_page) + usize::from(a.pages) > memory.pages() || a.pages == 0 {
            return Err(StateError::Malformed("an application outside memory"));
        }
        apps.push(a);
    }
    let load_count = r.u32()?;
    let mut loads = Vec::new();
    for _ in 0..r.u8()? {
        loads.push(Load::parse(&r.array()?));
    }
    if !r.0.is_empty() {
        return Err(StateError::Malformed("bytes after the last field"));
    }
    Ok(Chip {
        card_number,
        unique_key,
        common_key,
        pin,
        pin_tries,
        memory,
        apps,
        sequence,
        completed,
        backing_up,
        restoring,
        loads,
        load_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::default_layout;

    #[test]
    fn a_chip_reads_back_as_saved_and_a_damaged_one_is_refused() {
        let mut c = Chip::blank(Memory::blank(64, 32), default_layout(32));
        c.card_number = Some(77);
        c.unique_key = Some(Key::random());
        c.memory.write(100, b"hello");
        c.restoring = Some(Chain {
            source: 5,
            applied: 2,
        });
        c.loads.push(Load {
            app: 0,
            date: 1_700_000_000,
            amount: 500,
            count: 1,
        });
        let b = encode(&c);
        assert_eq!(decode(&b).unwrap(), c);
        let mut bad = b.clone();
        bad[200] ^= 1;
        assert_eq!(decode(&bad), Err(StateError::Damaged));
        assert_eq!(decode(&b[..b.len() - 1]), Err(StateError::Damaged));
        assert_eq!(decode(b"nonsense"), Err(StateError::NotState));
    }
}

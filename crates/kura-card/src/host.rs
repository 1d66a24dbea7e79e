//! The host's side: Kura's commands to a card through any [`Reader`] (PC/SC, or a card in the
//! same process), spelled as the operations a user asks for. In a backup or restore the host
//! sees no key and no page in clear; it carries sealed backups between the card and the
//! repository. (Personalising a card does send it the common key.)

use kura_core::crypto::Key;

use crate::CardError;
use crate::apdu::{Command, Response, Status};
use crate::app::{MANAGER_AID, Reset};
use crate::card::{CLA_ISO, CLA_KURA, Card, Load, ins};
use crate::image::Image;
use crate::seal::{BackupKind, Header, OPENING_LEN, Opening};

/// Something that carries command APDUs to a card and its answers back.
pub trait Reader {
    /// Sends one command APDU's bytes and returns the response APDU's bytes.
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError>;
}

impl Reader for Card {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        Ok(self.handle_bytes(apdu))
    }
}

/// One application as the card lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStatus {
    /// Its name.
    pub name: String,
    /// Its AID.
    pub aid: Vec<u8>,
    /// `None` for data; the reset for a value application.
    pub value: Option<Reset>,
    /// Its first page.
    pub first_page: u16,
    /// Its pages.
    pub pages: u16,
    /// Whether a restore touched it and it has not reset yet.
    pub restored: bool,
}

/// What GET STATUS tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardStatus {
    /// The card number; `None` for a blank card.
    pub card_number: Option<u64>,
    /// Bytes per page.
    pub page_size: u16,
    /// Pages.
    pub pages: u16,
    /// A backup began and was not completed or abandoned.
    pub backing_up: bool,
    /// A restore chain is under way (value is locked).
    pub restoring: bool,
    /// The PIN was verified in this session.
    pub pin_verified: bool,
    /// Wrong PIN tries left (0: blocked).
    pub pin_tries: u8,
    /// The last backup sequence number given out.
    pub sequence: u32,
    /// The last completed backup.
    pub completed: u32,
    /// Pages written since the last completed backup.
    pub changed_pages: u16,
    /// The applications.
    pub apps: Vec<AppStatus>,
}

impl CardStatus {
    /// Reads GET STATUS's answer; `None` if it is not one.
    pub fn parse(b: &[u8]) -> Option<CardStatus> {
        let mut r = b;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (h, t) = r.split_at_checked(n)?;
            r = t;
            Some(h)
        };
        let u16_of = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
        let u32_of = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if take(1)? != [1] {
            return None;
        }
        let flags = take(1)?[0];
        let number = u64::from_be_bytes(take(8)?.try_into().ok()?);
        let mut s = CardStatus {
            card_number: (flags & 1 != 0).then_some(number),
            backing_up: flags & 2 != 0,
            restoring: flags & 4 != 0,
            pin_verified: flags & 8 != 0,
            page_size: u16_of(take(2)?),
            pages: u16_of(take(2)?),
            pin_tries: take(1)?[0],
            sequence: u32_of(take(4)?),
            completed: u32_of(take(4)?),
            changed_pages: u16_of(take(2)?),
            apps: Vec::new(),
        };
        for _ in 0..take(1)?[0] {
            let n = usize::from(take(1)?[0]);
            let name = String::from_utf8(take(n)?.to_vec()).ok()?;
            let n = usize::from(take(1)?[0]);
            let aid = take(n)?.to_vec();
            let kind = take(2)?;
            let value = match kind[0] {
                0 => None,
                _ => Some(Reset::from_code(kind[1])?),
            };
            s.apps.push(AppStatus {
                name,
                aid,
                value,
                first_page: u16_of(take(2)?),
                pages: u16_of(take(2)?),
                restored: take(1)?[0] != 0,
            });
        }
        Some(s)
    }
}

/// Kura's commands to one card.
pub struct Host<R> {
    reader: R,
}

/// Record bytes one short APDU carries at most.
const SHORT: usize = 255;

impl<R: Reader> Host<R> {
    /// A host speaking through `reader`.
    pub fn new(reader: R) -> Host<R> {
        Host { reader }
    }

    /// The reader back.
    pub fn into_reader(self) -> R {
        self.reader
    }

    /// Sends `c` and returns the card's response, whatever its status.
    pub fn send(&mut self, c: &Command) -> Result<Response, CardError> {
        let r = self.reader.transmit(&c.to_bytes())?;
        Response::parse(&r).map_err(|e| CardError::Malformed(format!("the card's answer: {e}")))
    }

    /// Sends `c` and returns the response data if the card answered 9000.
    fn ok(&mut self, c: Command, what: &'static str) -> Result<Vec<u8>, CardError> {
        let r = self.send(&c)?;
        if r.status != Status::OK {
            return Err(CardError::Refused {
                what,
                status: r.status,
            });
        }
        Ok(r.data)
    }

    fn select_aid(&mut self, aid: &[u8], what: &'static str) -> Result<(), CardError> {
        self.ok(
            Command::new(CLA_ISO, ins::SELECT, 0x04, 0).with_data(aid.to_vec()),
            what,
        )
        .map(drop)
    }

    /// Selects the card manager and reads the card's status.
    pub fn status(&mut self) -> Result<CardStatus, CardError> {
        self.select_aid(&MANAGER_AID, "selecting the card manager")?;
        let b = self.ok(
            Command::new(CLA_KURA, ins::GET_STATUS, 0, 0).expect(256),
            "reading the status",
        )?;
        CardStatus::parse(&b).ok_or_else(|| CardError::Malformed("the card's status".into()))
    }

    /// Selects application `name`.
    pub fn select(&mut self, name: &str) -> Result<AppStatus, CardError> {
        let app = self
            .status()?
            .apps
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| CardError::NoApplication(name.to_string()))?;
        self.select_aid(&app.aid, "selecting the application")?;
        Ok(app)
    }

    /// Verifies the PIN.
    pub fn verify(&mut self, pin: &[u8]) -> Result<(), CardError> {
        self.ok(
            Command::new(CLA_ISO, ins::VERIFY, 0, 0x81).with_data(pin.to_vec()),
            "the PIN",
        )
        .map(drop)
    }

    /// Personalises a blank card: its number, the common key, the PIN. The card makes its
    /// unique key itself.
    pub fn initialize(&mut self, number: u64, common: &Key, pin: &[u8]) -> Result<(), CardError> {
        let mut data = number.to_be_bytes().to_vec();
        data.extend_from_slice(common.expose());
        data.extend_from_slice(pin);
        self.select_aid(&MANAGER_AID, "selecting the card manager")?;
        self.ok(
            Command::new(CLA_KURA, ins::INITIALIZE, 0, 0).with_data(data),
            "initialising",
        )
        .map(drop)
    }

    /// Makes a backup and takes every record; the card keeps its changed-page table until
    /// [`Host::complete`]. `progress` hears (records taken, records in all).
    pub fn backup(
        &mut self,
        kind: BackupKind,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Image, CardError> {
        self.select_aid(&MANAGER_AID, "selecting the card manager")?;
        let b = self.ok(
            Command::new(CLA_KURA, ins::BACKUP, kind.code(), 0).expect(256),
            "starting the backup",
        )?;
        let opening = Opening::parse(&b)
            .ok_or_else(|| CardError::Malformed("the backup's opening".into()))?;
        let h = opening.header;
        let want = h.records as usize * h.record_len();
        // Not reserved: `want` is the card's word, and a hostile card could ask for a terabyte.
        let mut records = Vec::new();
        progress(0, u64::from(h.records));
        loop {
            let r = self.send(&Command::new(CLA_KURA, ins::BACKUP_TRANSFER, 0, 0).expect(256))?;
            if r.status != Status::OK && !r.status.has_more() {
                return Err(CardError::Refused {
                    what: "the backup transfer",
                    status: r.status,
                });
            }
            if !r.data.len().is_multiple_of(h.record_len()) || records.len() + r.data.len() > want {
                return Err(CardError::Malformed("a backup transfer".into()));
            }
            records.extend_from_slice(&r.data);
            progress(
                (records.len() / h.record_len()) as u64,
                u64::from(h.records),
            );
            if r.status == Status::OK {
                break;
            }
            if r.data.is_empty() {
                return Err(CardError::Malformed("an empty backup transfer".into()));
            }
        }
        if records.len() != want {
            return Err(CardError::Malformed(format!(
                "the card sent {} of {} records",
                records.len() / h.record_len(),
                h.records
            )));
        }
        Ok(Image { opening, records })
    }

    /// Tells the card its backup is stored: it clears the table and the in-progress flag.
    pub fn complete(&mut self) -> Result<(), CardError> {
        self.ok(
            Command::new(CLA_KURA, ins::BACKUP_COMPLETE, 0, 0),
            "completing the backup",
        )
        .map(drop)
    }

    /// Abandons a backup: the flag is cleared, the changed pages stay marked.
    pub fn abandon(&mut self) -> Result<(), CardError> {
        self.ok(
            Command::new(CLA_KURA, ins::BACKUP_COMPLETE, 1, 0),
            "abandoning the backup",
        )
        .map(drop)
    }

    /// Restores a chain (a full backup, then differentials in order) as one operation: every
    /// backup is first checked by the card without writing anything, then written. `target`
    /// is the operator's statement of this card's number when the backups are another card's.
    /// `progress` hears (records sent, records in all, counting both passes).
    pub fn restore(
        &mut self,
        chain: &[Image],
        target: Option<u64>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), CardError> {
        check_chain(chain)?;
        self.select_aid(&MANAGER_AID, "selecting the card manager")?;
        let total: u64 = chain
            .iter()
            .map(|i| 2 * u64::from(i.header().records))
            .sum();
        let mut sent = 0u64;
        progress(0, total);
        for write in [false, true] {
            for (n, image) in chain.iter().enumerate() {
                let mut data = image.opening.to_bytes();
                debug_assert_eq!(data.len(), OPENING_LEN);
                let p1 = match target {
                    Some(t) => {
                        data.extend_from_slice(&t.to_be_bytes());
                        1
                    }
                    None => 0,
                };
                let what = if write {
                    "restoring"
                } else {
                    "checking the backup"
                };
                self.ok(
                    Command::new(CLA_KURA, ins::RESTORE, p1, u8::from(!write)).with_data(data),
                    what,
                )?;
                let len = image.header().record_len();
                let per = (SHORT / len).max(1);
                let records: Vec<&[u8]> = image.records().collect();
                for group in records.chunks(per) {
                    self.ok(
                        Command::new(CLA_KURA, ins::RESTORE_TRANSFER, 0, 0)
                            .with_data(group.concat()),
                        "a restored record",
                    )?;
                    sent += group.len() as u64;
                    progress(sent, total);
                }
                let last = !write || n + 1 == chain.len();
                self.ok(
                    Command::new(CLA_KURA, ins::RESTORE_COMPLETE, u8::from(!last), 0),
                    "completing the restore",
                )?;
            }
        }
        Ok(())
    }

    /// Reads `len` bytes at `offset` of application `name`.
    pub fn read(&mut self, name: &str, offset: usize, len: usize) -> Result<Vec<u8>, CardError> {
        self.select(name)?;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = u16::try_from(offset + out.len())
                .map_err(|_| CardError::Malformed("offset beyond 64 KiB".into()))?;
            let n = (len - out.len()).min(256);
            let [p1, p2] = at.to_be_bytes();
            let b = self.ok(
                Command::new(CLA_ISO, ins::READ_BINARY, p1, p2).expect(n),
                "reading",
            )?;
            if b.len() != n {
                return Err(CardError::Malformed("a short read".into()));
            }
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    /// Writes `data` at `offset` of data application `name`.
    pub fn write(&mut self, name: &str, offset: usize, data: &[u8]) -> Result<(), CardError> {
        self.select(name)?;
        for (i, part) in data.chunks(SHORT).enumerate() {
            let at = u16::try_from(offset + i * SHORT)
                .map_err(|_| CardError::Malformed("offset beyond 64 KiB".into()))?;
            let [p1, p2] = at.to_be_bytes();
            self.ok(
                Command::new(CLA_ISO, ins::UPDATE_BINARY, p1, p2).with_data(part.to_vec()),
                "writing",
            )?;
        }
        Ok(())
    }

    /// Carries out a value command on application `name` and returns the value after it.
    pub fn value(&mut self, name: &str, op: ValueOp) -> Result<u64, CardError> {
        self.select(name)?;
        let (ins, data, what) = match op {
            ValueOp::Get => (ins::GET_VALUE, Vec::new(), "reading the value"),
            ValueOp::Credit(n) => (ins::CREDIT, n.to_be_bytes().to_vec(), "the credit"),
            ValueOp::Debit(n) => (ins::DEBIT, n.to_be_bytes().to_vec(), "the debit"),
            ValueOp::Set(n) => (
                ins::SET_VALUE,
                n.to_be_bytes().to_vec(),
                "setting the value",
            ),
            ValueOp::Load { amount, date } => {
                let mut d = amount.to_be_bytes().to_vec();
                d.extend_from_slice(&date.to_be_bytes());
                (ins::LOAD, d, "the load")
            }
        };
        let mut c = Command::new(CLA_KURA, ins, 0, 0).with_data(data);
        if !matches!(op, ValueOp::Set(_)) {
            c = c.expect(8);
        }
        let b = self.ok(c, what)?;
        if let ValueOp::Set(n) = op {
            return Ok(n);
        }
        let b: [u8; 8] = b
            .try_into()
            .map_err(|_| CardError::Malformed("a value".into()))?;
        Ok(u64::from_be_bytes(b))
    }

    /// The card's latest loads from outside, newest first.
    pub fn history(&mut self) -> Result<Vec<Load>, CardError> {
        self.select_aid(&MANAGER_AID, "selecting the card manager")?;
        let b = self.ok(
            Command::new(CLA_KURA, ins::LOAD_HISTORY, 0, 0).expect(256),
            "reading the load history",
        )?;
        b.chunks(Load::LEN)
            .map(|e| {
                e.try_into()
                    .map(Load::parse)
                    .map_err(|_| CardError::Malformed("the load history".into()))
            })
            .collect()
    }
}

/// A value command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueOp {
    /// Read the value.
    Get,
    /// Add to it.
    Credit(u64),
    /// Take from it.
    Debit(u64),
    /// Set it (after a restore reported with 6300).
    Set(u64),
    /// Load value from outside, recorded in the load history.
    Load {
        /// How much.
        amount: u64,
        /// When, seconds since 1970.
        date: i64,
    },
}

/// Checks that backups make one chain: a full backup first, then differentials of the same
/// card in sequence order with no gap (each one's base at most the backup before it).
pub fn check_chain(chain: &[Image]) -> Result<(), CardError> {
    let headers: Vec<&Header> = chain.iter().map(Image::header).collect();
    let Some(first) = headers.first() else {
        return Err(CardError::Chain("no backup to restore".into()));
    };
    if first.kind != BackupKind::Full {
        return Err(CardError::Chain(format!(
            "backup {} is differential; a restore begins with a full backup",
            first.sequence
        )));
    }
    for pair in headers.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.kind != BackupKind::Differential
            || b.card_number != a.card_number
            || b.sequence <= a.sequence
            || b.base > a.sequence
        {
            return Err(CardError::Chain(format!(
                "backup {} of card {} does not follow backup {} of card {}",
                b.sequence, b.card_number, a.sequence, a.card_number
            )));
        }
    }
    Ok(())
}

/// From a card's stored backups, each known by its (sequence, kind), the chain that restores
/// it to backup `upto` (the latest when `None`): the last full backup at or before it and every
/// backup after that, in sequence order. The host reads only these.
pub fn chain_to<T>(
    mut stored: Vec<T>,
    label: impl Fn(&T) -> (u32, BackupKind),
    upto: Option<u32>,
) -> Result<Vec<T>, CardError> {
    stored.sort_by_key(|b| label(b).0);
    if let Some(upto) = upto {
        stored.retain(|b| label(b).0 <= upto);
    }
    let start = stored
        .iter()
        .rposition(|b| label(b).1 == BackupKind::Full)
        .ok_or_else(|| CardError::Chain("no full backup to begin from".into()))?;
    Ok(stored.split_off(start))
}

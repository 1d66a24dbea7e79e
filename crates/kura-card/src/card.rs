//! The card itself: what it keeps (its chip: keys, pages, table, applications, flags) and how
//! it answers each command APDU. Pure: the emulator around it carries APDUs in and saves the
//! chip after every command that changed it.

use kura_core::crypto::{Key, random_bytes};

use crate::apdu::{Command, Response, Status};
use crate::app::{Application, Kind, MANAGER_AID, Reset};
use crate::memory::Memory;
use crate::seal::{self, BackupKind, Header, OPENING_LEN, Opening};

/// Class byte of ISO interindustry commands (SELECT, VERIFY, READ/UPDATE BINARY, GET RESPONSE).
pub const CLA_ISO: u8 = 0x00;
/// Class byte of Kura's own commands.
pub const CLA_KURA: u8 = 0x80;

/// Instruction bytes. docs/CARD-APDU.md gives each one's parameters, data and answers.
pub mod ins {
    /// SELECT by AID (CLA 00, P1 04).
    pub const SELECT: u8 = 0xA4;
    /// VERIFY the PIN (CLA 00, P2 81).
    pub const VERIFY: u8 = 0x20;
    /// READ BINARY from the selected application (CLA 00).
    pub const READ_BINARY: u8 = 0xB0;
    /// UPDATE BINARY of the selected data application (CLA 00).
    pub const UPDATE_BINARY: u8 = 0xD6;
    /// GET RESPONSE: the next records of a backup (CLA 00), as BACKUP TRANSFER.
    pub const GET_RESPONSE: u8 = 0xC0;
    /// INITIALIZE: card number, common key and PIN into a blank card.
    pub const INITIALIZE: u8 = 0x10;
    /// BACKUP: begin (P1 00 full, 01 differential).
    pub const BACKUP: u8 = 0x30;
    /// BACKUP TRANSFER: the next sealed records.
    pub const BACKUP_TRANSFER: u8 = 0x32;
    /// BACKUP COMPLETE (P1 00) or abandon (P1 01).
    pub const BACKUP_COMPLETE: u8 = 0x34;
    /// RESTORE: begin (P1 00 same card, 01 another card; P2 01 check only).
    pub const RESTORE: u8 = 0x40;
    /// RESTORE TRANSFER: sealed records in.
    pub const RESTORE_TRANSFER: u8 = 0x42;
    /// RESTORE COMPLETE (P1 00 the last of the chain, 01 more follow).
    pub const RESTORE_COMPLETE: u8 = 0x44;
    /// GET VALUE of the selected value application.
    pub const GET_VALUE: u8 = 0x50;
    /// CREDIT the selected value application.
    pub const CREDIT: u8 = 0x52;
    /// DEBIT the selected value application.
    pub const DEBIT: u8 = 0x54;
    /// SET VALUE of the selected value application (clears its restored flag).
    pub const SET_VALUE: u8 = 0x56;
    /// LOAD value from outside the card, recorded in the load history.
    pub const LOAD: u8 = 0x58;
    /// GET STATUS: card number, geometry, flags, applications.
    pub const GET_STATUS: u8 = 0x60;
    /// GET LOAD HISTORY.
    pub const LOAD_HISTORY: u8 = 0x62;
}

/// Wrong PIN tries before the PIN blocks.
pub const PIN_TRIES: u8 = 3;
/// Load history entries kept (the oldest go first).
pub const HISTORY_LEN: usize = 32;

/// One load of value from outside the card (card.md requirement 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// The application loaded.
    pub app: u8,
    /// When, in seconds since 1970, as the terminal said.
    pub date: i64,
    /// How much.
    pub amount: u64,
    /// The count of loads on this card, this one included.
    pub count: u32,
}

impl Load {
    /// The bytes of one entry, in GET LOAD HISTORY's answer and in the state file.
    pub const LEN: usize = 21;

    /// The entry's bytes: app (1), date (8), amount (8), count (4).
    pub fn to_bytes(&self) -> [u8; Load::LEN] {
        let mut b = [0u8; Load::LEN];
        b[0] = self.app;
        b[1..9].copy_from_slice(&self.date.to_be_bytes());
        b[9..17].copy_from_slice(&self.amount.to_be_bytes());
        b[17..].copy_from_slice(&self.count.to_be_bytes());
        b
    }

    /// Reads an entry's bytes.
    pub fn parse(b: &[u8; Load::LEN]) -> Load {
        let mut date = [0u8; 8];
        date.copy_from_slice(&b[1..9]);
        let mut amount = [0u8; 8];
        amount.copy_from_slice(&b[9..17]);
        Load {
            app: b[0],
            date: i64::from_be_bytes(date),
            amount: u64::from_be_bytes(amount),
            count: u32::from_be_bytes([b[17], b[18], b[19], b[20]]),
        }
    }
}

/// A restore chain under way: written pages not yet complete, so value stays locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The card whose backups are being restored.
    pub source: u64,
    /// The last backup of that card whose restore completed; 0 until the chain's full backup
    /// has, so no differential can follow a full backup that was cut off.
    pub applied: u32,
}

/// The card's persistent memory: everything that survives pulling the card out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chip {
    /// The card number; `None` until INITIALIZE.
    pub card_number: Option<u64>,
    pub(crate) unique_key: Option<Key>,
    pub(crate) common_key: Option<Key>,
    pub(crate) pin: Vec<u8>,
    /// Wrong PIN tries left.
    pub pin_tries: u8,
    /// The pages and the changed-page table.
    pub memory: Memory,
    /// The applications.
    pub apps: Vec<Application>,
    /// The last backup sequence number given out.
    pub sequence: u32,
    /// The last backup completed.
    pub completed: u32,
    /// A backup began and was neither completed nor abandoned: writes are refused.
    pub backing_up: bool,
    /// A restore chain is under way: writes and value commands are refused.
    pub restoring: Option<Chain>,
    /// Loads from outside, oldest first.
    pub loads: Vec<Load>,
    /// Loads ever made.
    pub load_count: u32,
}

impl Chip {
    /// A blank card: no keys, no number, the given pages and applications.
    pub fn blank(memory: Memory, apps: Vec<Application>) -> Chip {
        Chip {
            card_number: None,
            unique_key: None,
            common_key: None,
            pin: Vec::new(),
            pin_tries: PIN_TRIES,
            memory,
            apps,
            sequence: 0,
            completed: 0,
            backing_up: false,
            restoring: None,
            loads: Vec::new(),
            load_count: 0,
        }
    }

    /// A value application's value (`app` is an index into `apps`).
    fn value(&self, app: usize) -> u64 {
        let (start, _) = self.apps[app].range(self.memory.page_size());
        let mut b = [0u8; 8];
        if let Some(v) = self.memory.read(start, 8) {
            b.copy_from_slice(v);
        }
        u64::from_be_bytes(b)
    }

    fn set_value(&mut self, app: usize, v: u64) {
        let (start, _) = self.apps[app].range(self.memory.page_size());
        self.memory.write(start, &v.to_be_bytes());
    }
}

struct BackupRun {
    header: Header,
    key: Key,
    pages: Vec<u16>,
    next: usize,
}

struct RestoreRun {
    header: Header,
    key: Key,
    received: u32,
    write: bool,
}

/// What lasts only while the card is powered: the selection, the PIN check, a backup or
/// restore being transferred.
#[derive(Default)]
struct Session {
    selected: Option<usize>,
    pin_ok: bool,
    backup: Option<BackupRun>,
    restore: Option<RestoreRun>,
}

/// A card: its chip and its session. [`Card::handle`] answers one command.
pub struct Card {
    chip: Chip,
    session: Session,
    changed: bool,
}

type Answer = Result<Vec<u8>, Status>;

impl Card {
    /// A powered card over `chip`.
    pub fn new(chip: Chip) -> Card {
        Card {
            chip,
            session: Session::default(),
            changed: false,
        }
    }

    /// The chip, to save or inspect.
    pub fn chip(&self) -> &Chip {
        &self.chip
    }

    /// Power off or reset: the session is gone, the chip stays.
    pub fn reset(&mut self) {
        self.session = Session::default();
    }

    /// Whether the chip changed since the last call (so the emulator saves it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Answers one command APDU's bytes.
    pub fn handle_bytes(&mut self, apdu: &[u8]) -> Vec<u8> {
        match Command::parse(apdu) {
            Ok(c) => self.handle(&c).to_bytes(),
            Err(_) => Response::status(Status::WRONG_LENGTH).to_bytes(),
        }
    }

    /// Answers one command.
    pub fn handle(&mut self, c: &Command) -> Response {
        let before = self.chip.clone();
        let r = self.dispatch(c);
        if self.chip != before {
            self.changed = true;
        }
        r
    }

    fn dispatch(&mut self, c: &Command) -> Response {
        let answer = match (c.cla, c.ins) {
            (CLA_ISO, ins::SELECT) => self.select(c),
            (CLA_ISO, ins::VERIFY) => self.verify(c),
            (CLA_ISO, ins::READ_BINARY) => self.read_binary(c),
            (CLA_ISO, ins::UPDATE_BINARY) => self.update_binary(c),
            (CLA_ISO, ins::GET_RESPONSE) | (CLA_KURA, ins::BACKUP_TRANSFER) => {
                return self.backup_transfer(c);
            }
            (CLA_KURA, ins::INITIALIZE) => self.initialize(c),
            (CLA_KURA, ins::GET_STATUS) => Ok(self.status()),
            (CLA_KURA, ins::LOAD_HISTORY) => Ok(self.history()),
            (CLA_KURA, ins::BACKUP) => self.backup(c),
            (CLA_KURA, ins::BACKUP_COMPLETE) => self.backup_complete(c),
            (CLA_KURA, ins::RESTORE) => self.restore(c),
            (CLA_KURA, ins::RESTORE_TRANSFER) => self.restore_transfer(c),
            (CLA_KURA, ins::RESTORE_COMPLETE) => self.restore_complete(c),
            (CLA_KURA, ins::GET_VALUE | ins::CREDIT | ins::DEBIT | ins::SET_VALUE | ins::LOAD) => {
                self.value(c)
            }
            (CLA_ISO | CLA_KURA, _) => Err(Status::UNKNOWN_INS),
            _ => Err(Status::UNKNOWN_CLA),
        };
        match answer {
            Ok(data) => Response::ok(data),
            Err(s) => Response::status(s),
        }
    }

    fn personalised(&self) -> Result<(Key, Key, u64), Status> {
        match (
            &self.chip.unique_key,
            &self.chip.common_key,
            self.chip.card_number,
        ) {
            (Some(u), Some(c), Some(n)) => Ok((u.clone(), c.clone(), n)),
            _ => Err(Status::NOT_ALLOWED),
        }
    }

    fn need_pin(&self) -> Result<(), Status> {
        if self.chip.pin_tries == 0 {
            Err(Status::BLOCKED)
        } else if !self.session.pin_ok {
            Err(Status::SECURITY)
        } else {
            Ok(())
        }
    }

    fn select(&mut self, c: &Command) -> Answer {
        if c.p1 != 0x04 {
            return Err(Status::WRONG_P1P2);
        }
        if c.data == MANAGER_AID {
            self.session.selected = None;
            return Ok(Vec::new());
        }
        let i = self
            .chip
            .apps
            .iter()
            .position(|a| a.aid == c.data)
            .ok_or(Status::NOT_FOUND)?;
        self.session.selected = Some(i);
        Ok(Vec::new())
    }

    fn verify(&mut self, c: &Command) -> Answer {
        if c.p1 != 0 || c.p2 != 0x81 {
            return Err(Status::WRONG_P1P2);
        }
        self.personalised()?;
        if self.chip.pin_tries == 0 {
            return Err(Status::BLOCKED);
        }
        if c.data.is_empty() {
            return if self.session.pin_ok {
                Ok(Vec::new())
            } else {
                Err(Status::tries_left(self.chip.pin_tries))
            };
        }
        // blake3::Hash compares in constant time, so the answer time says nothing of the PIN.
        if blake3::hash(&c.data) == blake3::hash(&self.chip.pin) {
            self.chip.pin_tries = PIN_TRIES;
            self.session.pin_ok = true;
            Ok(Vec::new())
        } else {
            self.chip.pin_tries -= 1;
            self.session.pin_ok = false;
            Err(match self.chip.pin_tries {
                0 => Status::BLOCKED,
                n => Status::tries_left(n),
            })
        }
    }

    fn selected(&self) -> Result<usize, Status> {
        self.session.selected.ok_or(Status::NOT_FOUND)
    }

    /// The offset P1-P2 and length within the selected application, as a memory range.
    fn app_range(&self, app: usize, c: &Command, len: usize) -> Result<usize, Status> {
        let (start, size) = self.chip.apps[app].range(self.chip.memory.page_size());
        let offset = usize::from(u16::from_be_bytes([c.p1, c.p2]));
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Status::OFFSET);
        }
        Ok(start + offset)
    }

    fn read_binary(&mut self, c: &Command) -> Answer {
        let app = self.selected()?;
        let len = c.max_response().min(256);
        let at = self.app_range(app, c, len)?;
        Ok(self
            .chip
            .memory
            .read(at, len)
            .ok_or(Status::OFFSET)?
            .to_vec())
    }

    fn writable(&self) -> Result<(), Status> {
        self.need_pin()?;
        if self.chip.backing_up || self.chip.restoring.is_some() {
            return Err(Status::CONDITIONS);
        }
        Ok(())
    }

    fn update_binary(&mut self, c: &Command) -> Answer {
        let app = self.selected()?;
        if self.chip.apps[app].kind != Kind::Data {
            return Err(Status::NOT_ALLOWED);
        }
        self.writable()?;
        let at = self.app_range(app, c, c.data.len())?;
        self.chip.memory.write(at, &c.data);
        Ok(Vec::new())
    }

    fn initialize(&mut self, c: &Command) -> Answer {
        if self.chip.card_number.is_some() {
            return Err(Status::NOT_ALLOWED);
        }
        let (number, rest) = c.data.split_at_checked(8).ok_or(Status::WRONG_LENGTH)?;
        let (common, pin) = rest.split_at_checked(32).ok_or(Status::WRONG_LENGTH)?;
        if !(4..=16).contains(&pin.len()) {
            return Err(Status::WRONG_DATA);
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(number);
        let mut k = [0u8; 32];
        k.copy_from_slice(common);
        self.chip.card_number = Some(u64::from_be_bytes(n));
        self.chip.common_key = Some(Key::from_bytes(k));
        self.chip.unique_key = Some(Key::random());
        self.chip.pin = pin.to_vec();
        self.chip.pin_tries = PIN_TRIES;
        self.chip.memory.clear_changed();
        Ok(Vec::new())
    }

    fn status(&self) -> Vec<u8> {
        let ch = &self.chip;
        let mut b = vec![1u8];
        let flags = u8::from(ch.card_number.is_some())
            | u8::from(ch.backing_up) << 1
            | u8::from(ch.restoring.is_some()) << 2
            | u8::from(self.session.pin_ok) << 3;
        b.push(flags);
        b.extend_from_slice(&ch.card_number.unwrap_or(0).to_be_bytes());
        b.extend_from_slice(&(ch.memory.page_size() as u16).to_be_bytes());
        b.extend_from_slice(&(ch.memory.pages() as u16).to_be_bytes());
        b.push(ch.pin_tries);
        b.extend_from_slice(&ch.sequence.to_be_bytes());
        b.extend_from_slice(&ch.completed.to_be_bytes());
        b.extend_from_slice(&(ch.memory.changed_pages().len() as u16).to_be_bytes());
        b.push(ch.apps.len() as u8);
        for a in &ch.apps {
            b.push(a.name.len() as u8);
            b.extend_from_slice(a.name.as_bytes());
            b.push(a.aid.len() as u8);
            b.extend_from_slice(&a.aid);
            match a.kind {
                Kind::Data => b.extend_from_slice(&[0, 0]),
                Kind::Value { reset, .. } => b.extend_from_slice(&[1, reset.code()]),
            }
            b.extend_from_slice(&a.first_page.to_be_bytes());
            b.extend_from_slice(&a.pages.to_be_bytes());
            b.push(u8::from(a.restored));
        }
        b
    }

    fn history(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for l in self.chip.loads.iter().rev().take(10) {
            b.extend_from_slice(&l.to_bytes());
        }
        b
    }

    fn backup(&mut self, c: &Command) -> Answer {
        let (unique, common, number) = self.personalised()?;
        let kind = BackupKind::from_code(c.p1).ok_or(Status::WRONG_P1P2)?;
        self.need_pin()?;
        if self.chip.restoring.is_some()
            || (kind == BackupKind::Differential && self.chip.completed == 0)
        {
            return Err(Status::CONDITIONS);
        }
        let sequence = self
            .chip
            .sequence
            .checked_add(1)
            .ok_or(Status::CONDITIONS)?;
        let pages: Vec<u16> = match kind {
            BackupKind::Full => (0..self.chip.memory.pages() as u16).collect(),
            BackupKind::Differential => self.chip.memory.changed_pages(),
        };
        self.chip.sequence = sequence;
        self.chip.backing_up = true;
        let header = Header {
            kind,
            card_number: number,
            sequence,
            base: self.chip.completed,
            records: pages.len() as u32,
            page_size: self.chip.memory.page_size() as u16,
            pages: self.chip.memory.pages() as u16,
            backup_id: random_bytes(),
        };
        let opening = seal::opening(&header, &unique, &common);
        self.session.backup = Some(BackupRun {
            header,
            key: unique,
            pages,
            next: 0,
        });
        Ok(opening)
    }

    fn backup_transfer(&mut self, c: &Command) -> Response {
        let Some(run) = self.session.backup.as_mut() else {
            return Response::status(Status::CONDITIONS);
        };
        let len = run.header.record_len();
        let room = c.max_response().min(256);
        if room < len {
            return Response::status(Status::wrong_le(len));
        }
        let mut data = Vec::with_capacity(room);
        while run.next < run.pages.len() && data.len() + len <= room {
            let page = run.pages[run.next];
            let contents = self.chip.memory.page(usize::from(page));
            data.extend(seal::seal_record(
                &run.header,
                &run.key,
                run.next as u32,
                page,
                contents,
            ));
            run.next += 1;
        }
        let left = (run.pages.len() - run.next) * len;
        Response {
            data,
            status: if left > 0 {
                Status::more(left)
            } else {
                Status::OK
            },
        }
    }

    fn backup_complete(&mut self, c: &Command) -> Answer {
        match c.p1 {
            0 => {
                let run = self.session.backup.as_ref().ok_or(Status::CONDITIONS)?;
                if run.next < run.pages.len() {
                    return Err(Status::CONDITIONS);
                }
                self.chip.completed = run.header.sequence;
                self.chip.memory.clear_changed();
            }
            1 => {}
            _ => return Err(Status::WRONG_P1P2),
        }
        self.session.backup = None;
        self.chip.backing_up = false;
        Ok(Vec::new())
    }

    fn restore(&mut self, c: &Command) -> Answer {
        let (own_unique, common, own_number) = self.personalised()?;
        let write = match c.p2 {
            0 => true,
            1 => false,
            _ => return Err(Status::WRONG_P1P2),
        };
        self.need_pin()?;
        self.session.restore = None;
        let (opening, target) = match c.p1 {
            0 => (&c.data[..], None),
            1 if c.data.len() == OPENING_LEN + 8 => {
                let (o, t) = c.data.split_at(OPENING_LEN);
                let mut n = [0u8; 8];
                n.copy_from_slice(t);
                (o, Some(u64::from_be_bytes(n)))
            }
            1 => return Err(Status::WRONG_LENGTH),
            _ => return Err(Status::WRONG_P1P2),
        };
        let o = Opening::parse(opening).ok_or(Status::WRONG_DATA)?;
        let h = o.header;
        let key = match target {
            None if h.card_number != own_number => return Err(Status::WRONG_CARD),
            None => own_unique,
            Some(t) if t != own_number => return Err(Status::WRONG_CARD),
            Some(_) => o.unwrap_key(&common).ok_or(Status::SEALED)?,
        };
        if !o.control_holds(&key) {
            return Err(Status::SEALED);
        }
        if usize::from(h.page_size) != self.chip.memory.page_size() {
            return Err(Status::WRONG_DATA);
        }
        if usize::from(h.pages) > self.chip.memory.pages() {
            return Err(Status::NO_SPACE);
        }
        if write {
            match (h.kind, self.chip.restoring) {
                (BackupKind::Full, _) => {
                    self.chip.restoring = Some(Chain {
                        source: h.card_number,
                        applied: 0,
                    });
                }
                (BackupKind::Differential, Some(chain))
                    if chain.source == h.card_number
                        && chain.applied > 0
                        && h.sequence > chain.applied
                        && h.base <= chain.applied => {}
                (BackupKind::Differential, _) => return Err(Status::CONDITIONS),
            }
            self.session.backup = None;
            self.chip.backing_up = false;
        }
        self.session.restore = Some(RestoreRun {
            header: h,
            key,
            received: 0,
            write,
        });
        Ok(Vec::new())
    }

    fn restore_transfer(&mut self, c: &Command) -> Answer {
        let run = self.session.restore.as_mut().ok_or(Status::CONDITIONS)?;
        let len = run.header.record_len();
        if c.data.is_empty() || !c.data.len().is_multiple_of(len) {
            return Err(Status::WRONG_LENGTH);
        }
        let mut opened = Vec::new();
        for (i, sealed) in c.data.chunks(len).enumerate() {
            let index = run.received + i as u32;
            if index >= run.header.records {
                self.session.restore = None;
                return Err(Status::WRONG_DATA);
            }
            match seal::open_record(&run.header, &run.key, index, sealed) {
                Some(r) => opened.push(r),
                None => {
                    self.session.restore = None;
                    return Err(Status::SEALED);
                }
            }
        }
        run.received += opened.len() as u32;
        if run.write {
            // Every written page flags its application at once, whatever the backup's kind:
            // a restore cut off after a few pages must not leave restored value unflagged.
            for (page, contents) in opened {
                self.chip.memory.restore_page(usize::from(page), &contents);
                for a in self.chip.apps.iter_mut().filter(|a| a.holds(page)) {
                    a.restored = true;
                }
            }
        }
        Ok(Vec::new())
    }

    fn restore_complete(&mut self, c: &Command) -> Answer {
        let last = match c.p1 {
            0 => true,
            1 => false,
            _ => return Err(Status::WRONG_P1P2),
        };
        let run = self.session.restore.take().ok_or(Status::CONDITIONS)?;
        if run.received != run.header.records {
            return Err(Status::CONDITIONS);
        }
        if !run.write {
            return Ok(Vec::new());
        }
        if run.header.kind == BackupKind::Full {
            for a in &mut self.chip.apps {
                a.restored = true;
            }
        }
        if let Some(chain) = self.chip.restoring.as_mut() {
            chain.applied = run.header.sequence;
        }
        if last {
            self.chip.restoring = None;
            self.chip.backing_up = false;
            // The memory is now the restored backup's, not what the last completed backup
            // left: a differential on that base would miss the restored pages, so the next
            // backup must be full.
            self.chip.completed = 0;
            for i in 0..self.chip.apps.len() {
                let a = &self.chip.apps[i];
                if let Kind::Value {
                    reset: Reset::AtRestore,
                    initial,
                } = a.kind
                    && a.restored
                {
                    self.chip.set_value(i, initial);
                    self.chip.apps[i].restored = false;
                }
            }
            self.chip.memory.clear_changed();
        }
        Ok(Vec::new())
    }

    fn value(&mut self, c: &Command) -> Answer {
        let app = self.selected()?;
        let Kind::Value { reset, initial } = self.chip.apps[app].kind else {
            return Err(Status::NOT_ALLOWED);
        };
        if self.chip.restoring.is_some() {
            return Err(Status::CONDITIONS);
        }
        if c.ins != ins::GET_VALUE {
            self.writable()?;
        }
        if c.ins == ins::SET_VALUE {
            let v = amount(&c.data)?;
            self.chip.set_value(app, v);
            self.chip.apps[app].restored = false;
            return Ok(Vec::new());
        }
        if self.chip.apps[app].restored {
            if reset == Reset::Report {
                return Err(Status::RESTORED);
            }
            // The reset writes the value's page; a backup under way must not miss it.
            if self.chip.backing_up {
                return Err(Status::CONDITIONS);
            }
            self.chip.set_value(app, initial);
            self.chip.apps[app].restored = false;
        }
        let v = self.chip.value(app);
        match c.ins {
            ins::GET_VALUE => return Ok(v.to_be_bytes().to_vec()),
            ins::CREDIT => {
                let n = v.checked_add(amount(&c.data)?).ok_or(Status::WRONG_DATA)?;
                self.chip.set_value(app, n);
            }
            ins::DEBIT => {
                let n = v.checked_sub(amount(&c.data)?).ok_or(Status::CONDITIONS)?;
                self.chip.set_value(app, n);
            }
            _ => {
                let (a, date) = c.data.split_at_checked(8).ok_or(Status::WRONG_LENGTH)?;
                let (a, date) = (amount(a)?, amount(date)? as i64);
                let n = v.checked_add(a).ok_or(Status::WRONG_DATA)?;
                self.chip.set_value(app, n);
                self.chip.load_count = self
                    .chip
                    .load_count
                    .checked_add(1)
                    .ok_or(Status::CONDITIONS)?;
                self.chip.loads.push(Load {
                    app: app as u8,
                    date,
                    amount: a,
                    count: self.chip.load_count,
                });
                if self.chip.loads.len() > HISTORY_LEN {
                    self.chip.loads.remove(0);
                }
            }
        }
        Ok(self.chip.value(app).to_be_bytes().to_vec())
    }
}

fn amount(b: &[u8]) -> Result<u64, Status> {
    let b: [u8; 8] = b.try_into().map_err(|_| Status::WRONG_LENGTH)?;
    Ok(u64::from_be_bytes(b))
}

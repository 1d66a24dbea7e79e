//! ISO 7816-4 command and response APDUs, in short and extended length.
//!
//! A command is `CLA INS P1 P2 [Lc data] [Le]`; a response is `data SW1 SW2`. The four cases of
//! ISO 7816-3 (no data either way, data out, data in, both) are told apart by the length alone.

use std::fmt;

/// Why bytes are not an APDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    /// Fewer than the four header bytes (or two status bytes for a response).
    #[error("APDU too short ({0} bytes)")]
    TooShort(usize),
    /// The length fields do not add up to the bytes given.
    #[error("APDU lengths do not match its {0} bytes")]
    Lengths(usize),
}

/// A command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Class byte: 0x00 for ISO interindustry commands, 0x80 for Kura's own.
    pub cla: u8,
    /// Instruction byte.
    pub ins: u8,
    /// First parameter.
    pub p1: u8,
    /// Second parameter.
    pub p2: u8,
    /// The command data (`Lc` bytes).
    pub data: Vec<u8>,
    /// How many response bytes the sender takes at most; `None` when it expects none.
    pub le: Option<usize>,
}

impl Command {
    /// A command with no data that expects no response data.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8) -> Command {
        Command {
            cla,
            ins,
            p1,
            p2,
            data: Vec::new(),
            le: None,
        }
    }

    /// The same command carrying `data`.
    pub fn with_data(mut self, data: Vec<u8>) -> Command {
        self.data = data;
        self
    }

    /// The same command taking up to `le` response bytes.
    pub fn expect(mut self, le: usize) -> Command {
        self.le = Some(le);
        self
    }

    /// Reads a command APDU.
    pub fn parse(b: &[u8]) -> Result<Command, ApduError> {
        if b.len() < 4 {
            return Err(ApduError::TooShort(b.len()));
        }
        let mut c = Command::new(b[0], b[1], b[2], b[3]);
        let body = &b[4..];
        let short_le = |x: u8| if x == 0 { 256 } else { usize::from(x) };
        let long_le = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
            0 => 65536,
            n => usize::from(n),
        };
        match body {
            [] => {}
            [le] => c.le = Some(short_le(*le)),
            [0, hi, lo] => c.le = Some(long_le(*hi, *lo)),
            [0, hi, lo, rest @ ..] => {
                let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
                if lc == 0 || rest.len() < lc {
                    return Err(ApduError::Lengths(b.len()));
                }
                c.data = rest[..lc].to_vec();
                match &rest[lc..] {
                    [] => {}
                    [hi, lo] => c.le = Some(long_le(*hi, *lo)),
                    _ => return Err(ApduError::Lengths(b.len())),
                }
            }
            [lc, rest @ ..] => {
                let lc = usize::from(*lc);
                if rest.len() < lc {
                    return Err(ApduError::Lengths(b.len()));
                }
                c.data = rest[..lc].to_vec();
                match &rest[lc..] {
                    [] => {}
                    [le] => c.le = Some(short_le(*le)),
                    _ => return Err(ApduError::Lengths(b.len())),
                }
            }
        }
        Ok(c)
    }

    /// The command's bytes: short form when data and `Le` fit it, extended otherwise.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = vec![self.cla, self.ins, self.p1, self.p2];
        let short = self.data.len() <= 255 && self.le.is_none_or(|le| le <= 256);
        if short {
            if !self.data.is_empty() {
                b.push(self.data.len() as u8);
                b.extend_from_slice(&self.data);
            }
            if let Some(le) = self.le {
                b.push(if le >= 256 { 0 } else { le as u8 });
            }
        } else {
            b.push(0);
            if !self.data.is_empty() {
                b.extend_from_slice(&(self.data.len().min(65535) as u16).to_be_bytes());
                b.extend_from_slice(&self.data[..self.data.len().min(65535)]);
            }
            if let Some(le) = self.le {
                let le = if le >= 65536 { 0 } else { le as u16 };
                b.extend_from_slice(&le.to_be_bytes());
            }
        }
        b
    }

    /// How many response bytes the sender takes: `Le`, or none.
    pub fn max_response(&self) -> usize {
        self.le.unwrap_or(0)
    }
}

/// A response APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The response data.
    pub data: Vec<u8>,
    /// The status word.
    pub status: Status,
}

impl Response {
    /// A response with data and status 9000.
    pub fn ok(data: Vec<u8>) -> Response {
        Response {
            data,
            status: Status::OK,
        }
    }

    /// A response with no data.
    pub fn status(status: Status) -> Response {
        Response {
            data: Vec::new(),
            status,
        }
    }

    /// Reads a response APDU.
    pub fn parse(b: &[u8]) -> Result<Response, ApduError> {
        let Some(split) = b.len().checked_sub(2) else {
            return Err(ApduError::TooShort(b.len()));
        };
        Ok(Response {
            data: b[..split].to_vec(),
            status: Status(u16::from_be_bytes([b[split], b[split + 1]])),
        })
    }

    /// The response's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.data.clone();
        b.extend_from_slice(&self.status.0.to_be_bytes());
        b
    }
}

/// A status word, `SW1 SW2`. Each value the card answers is a constant here with its meaning;
/// docs/CARD-APDU.md lists them by command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

impl Status {
    /// 9000: done.
    pub const OK: Status = Status(0x9000);
    /// 6300: the value application was restored and holds its value until the host sets it
    /// again with SET VALUE (an application whose reset is "report").
    pub const RESTORED: Status = Status(0x6300);
    /// 6700: the command data has the wrong length.
    pub const WRONG_LENGTH: Status = Status(0x6700);
    /// 6982: the PIN must be verified first.
    pub const SECURITY: Status = Status(0x6982);
    /// 6983: the PIN is blocked: too many wrong tries.
    pub const BLOCKED: Status = Status(0x6983);
    /// 6985: not now: a backup or restore is in progress, none is, records are missing, or
    /// the balance is too low.
    pub const CONDITIONS: Status = Status(0x6985);
    /// 6986: not allowed for this card or application (not personalised, personalised already,
    /// a raw write to a value application).
    pub const NOT_ALLOWED: Status = Status(0x6986);
    /// 6988: sealed data did not open: tampered with, reordered, or under another key (the
    /// wrong common key, another card's backup).
    pub const SEALED: Status = Status(0x6988);
    /// 6A80: the command data is malformed.
    pub const WRONG_DATA: Status = Status(0x6A80);
    /// 6A82: no application with that AID.
    pub const NOT_FOUND: Status = Status(0x6A82);
    /// 6A84: the backup is larger than this card's memory.
    pub const NO_SPACE: Status = Status(0x6A84);
    /// 6A86: P1 or P2 is not one this command takes.
    pub const WRONG_P1P2: Status = Status(0x6A86);
    /// 6A88: the wrong card: the backup names another card, or the operator's target number is
    /// not this card's.
    pub const WRONG_CARD: Status = Status(0x6A88);
    /// 6B00: the offset is outside the application's memory.
    pub const OFFSET: Status = Status(0x6B00);
    /// 6D00: an instruction this card does not know.
    pub const UNKNOWN_INS: Status = Status(0x6D00);
    /// 6E00: a class this card does not know.
    pub const UNKNOWN_CLA: Status = Status(0x6E00);

    /// 61xx: more response data waits; send the command (or GET RESPONSE) again. `xx` is how
    /// many bytes remain, 00 for 256 or more.
    pub fn more(bytes: usize) -> Status {
        Status(0x6100 | if bytes >= 256 { 0 } else { bytes as u16 })
    }

    /// 63Cx: wrong PIN, `x` tries left.
    pub fn tries_left(n: u8) -> Status {
        Status(0x63C0 | u16::from(n.min(15)))
    }

    /// 6Cxx: `Le` was too small for even one answer; `xx` is the length that fits.
    pub fn wrong_le(exact: usize) -> Status {
        Status(0x6C00 | (exact.min(255) as u16))
    }

    /// Whether this is 61xx: more data waits.
    pub fn has_more(self) -> bool {
        self.0 >> 8 == 0x61
    }

    /// What the status word means, in words.
    pub fn meaning(self) -> &'static str {
        match self {
            Status::OK => "done",
            Status::RESTORED => "the application was restored; its value must be set again",
            Status::WRONG_LENGTH => "wrong length",
            Status::SECURITY => "the PIN must be verified first",
            Status::BLOCKED => "the PIN is blocked",
            Status::CONDITIONS => "conditions of use not satisfied",
            Status::NOT_ALLOWED => "not allowed for this card or application",
            Status::SEALED => {
                "sealed data did not open (tampered with, reordered, or the wrong key)"
            }
            Status::WRONG_DATA => "malformed command data",
            Status::NOT_FOUND => "no such application",
            Status::NO_SPACE => "the backup does not fit this card",
            Status::WRONG_P1P2 => "wrong P1/P2",
            Status::WRONG_CARD => "the wrong card",
            Status::OFFSET => "offset outside the application",
            Status::UNKNOWN_INS => "unknown instruction",
            Status::UNKNOWN_CLA => "unknown class",
            s if s.has_more() => "more data waits",
            s if s.0 >> 4 == 0x63C => "wrong PIN",
            s if s.0 >> 8 == 0x6C => "wrong Le",
            _ => "unknown status",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X} ({})", self.0, self.meaning())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_four_cases_are_read_by_their_lengths() {
        let c = Command::parse(&[0x80, 0x60, 0, 0]).unwrap();
        assert_eq!((c.data.len(), c.le), (0, None));
        let c = Command::parse(&[0x80, 0x60, 0, 0, 0]).unwrap();
        assert_eq!(c.le, Some(256));
        let c = Command::parse(&[0x00, 0xA4, 4, 0, 2, 0xF0, 0x01]).unwrap();
        assert_eq!((c.data, c.le), (vec![0xF0, 0x01], None));
        let c = Command::parse(&[0x00, 0xA4, 4, 0, 1, 0xF0, 0x10]).unwrap();
        assert_eq!((c.data, c.le), (vec![0xF0], Some(16)));
        let c = Command::parse(&[0x80, 0x60, 0, 0, 0, 0x01, 0x00]).unwrap();
        assert_eq!(c.le, Some(256));
        assert_eq!(
            Command::parse(&[0x00, 0xA4, 4, 0, 3, 1]),
            Err(ApduError::Lengths(6))
        );
        assert_eq!(Command::parse(&[0x00]), Err(ApduError::TooShort(1)));
        assert_eq!(Response::parse(&[0x90]), Err(ApduError::TooShort(1)));
    }

    proptest! {
        #[test]
        fn a_command_reads_back_as_written(
            cla: u8, ins: u8, p1: u8, p2: u8,
            data in proptest::collection::vec(any::<u8>(), 0..600),
            le in proptest::option::of(1usize..=65536),
        ) {
            let c = Command { cla, ins, p1, p2, data, le };
            prop_assert_eq!(Command::parse(&c.to_bytes()).unwrap(), c);
        }

        #[test]
        fn parsing_any_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Command::parse(&b);
            let _ = Response::parse(&b);
        }
    }
}

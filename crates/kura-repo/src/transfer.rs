//! How objects travel to the service (`docs/requirements/terminal-backup.md` requirement 8), as
//! logic apart from HTTP: an object larger than one piece goes in pieces, each with its SHA-256; a
//! piece the service received damaged is sent again (a bounded number of times); a piece the
//! service already has is skipped, so an upload cut off by a lost connection or a restarted service
//! carries on from where the service stopped. The piece size follows the measured line speed.
//!
//! | measured line speed         | piece size |
//! |-----------------------------|-----------:|
//! | not yet measured            | 1 MiB      |
//! | under 1 Mbit/s              | 256 KiB    |
//! | 1 to 10 Mbit/s              | 1 MiB      |
//! | 10 to 100 Mbit/s            | 4 MiB      |
//! | 100 Mbit/s and more         | 32 MiB     |
//!
//! A slow line gets small pieces so a lost connection costs little and progress is steady; a
//! fast line gets pieces larger than a pack (16 MiB), so each pack is one request.

use std::time::Duration;

use crate::backend::BackendError;

/// Piece sizes by line speed in bytes per second: the first row whose speed is above the
/// measured one applies.
pub const PIECE_TABLE: [(f64, usize); 4] = [
    (125_000.0, 256 << 10),
    (1_250_000.0, 1 << 20),
    (12_500_000.0, 4 << 20),
    (f64::INFINITY, 32 << 20),
];

/// Piece size before anything was measured.
pub const FIRST_PIECE: usize = 1 << 20;

/// How often one piece may arrive damaged before the upload gives up.
pub const MAX_RESENDS: u32 = 3;

/// The piece size for a line speed (bytes per second), from [`PIECE_TABLE`].
pub fn piece_size(speed: Option<f64>) -> usize {
    let Some(speed) = speed else {
        return FIRST_PIECE;
    };
    PIECE_TABLE
        .iter()
        .find(|(below, _)| speed < *below)
        .map_or(FIRST_PIECE, |(_, size)| *size)
}

/// A running estimate of the line speed from completed transfers.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineSpeed {
    estimate: Option<f64>,
}

impl LineSpeed {
    /// Transfers shorter than this say more about latency than speed and are not counted.
    const MIN_SAMPLE: usize = 64 << 10;

    /// Counts a transfer of `bytes` that took `took`.
    pub fn record(&mut self, bytes: usize, took: Duration) {
        if bytes < Self::MIN_SAMPLE || took.is_zero() {
            return;
        }
        let sample = bytes as f64 / took.as_secs_f64();
        // Weighted towards the recent past so the piece size follows a line that changes.
        self.estimate = Some(match self.estimate {
            Some(e) => 0.7 * e + 0.3 * sample,
            None => sample,
        });
    }

    /// Bytes per second, once something was measured.
    pub fn bytes_per_sec(&self) -> Option<f64> {
        self.estimate
    }
}

/// The service's answer to a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceAnswer {
    /// Stored; the service now has this many bytes.
    Received(u64),
    /// The piece arrived damaged; send it again.
    Resend,
    /// The piece was not where the service's upload ends; it has this many bytes.
    Elsewhere(u64),
}

/// The service's answer to a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitAnswer {
    /// The object is stored.
    Stored,
    /// The assembled object did not match; the service dropped it and it must be sent again.
    Resend,
}

/// One upload's conversation with the service: the I/O seam of [`upload`].
pub trait PieceLine {
    /// Bytes the service already has of this upload (0 if it has none).
    fn received(&mut self) -> Result<u64, BackendError>;
    /// Sends `piece` to go at `offset`, with its SHA-256 in hex.
    fn send(&mut self, offset: u64, piece: &[u8], sum: &str) -> Result<PieceAnswer, BackendError>;
    /// Asks the service to store the whole object, whose SHA-256 is `sum`.
    fn commit(&mut self, sum: &str) -> Result<CommitAnswer, BackendError>;
}

/// The SHA-256 of `data` in lowercase hex, as the service checks it.
pub fn sha256_hex(data: &[u8]) -> String {
    kura_core::id::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn gave_up(what: String) -> BackendError {
    BackendError::Io {
        op: "upload",
        path: String::new(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
    }
}

/// Uploads `data` through `line` in pieces of `piece_len()` bytes (asked before each piece,
/// so a speed measured meanwhile applies), resuming from what the service already has.
pub fn upload(
    line: &mut impl PieceLine,
    data: &[u8],
    mut piece_len: impl FnMut() -> usize,
) -> Result<(), BackendError> {
    let total = data.len() as u64;
    let whole = sha256_hex(data);
    let mut offset = line.received()?;
    let mut resends = 0;
    let mut restarts = 0;
    loop {
        if offset > total {
            // Not this object's bytes (a name reused for other contents): start over.
            offset = 0;
        }
        if offset == total && total > 0 {
            match line.commit(&whole)? {
                CommitAnswer::Stored => return Ok(()),
                CommitAnswer::Resend => {
                    restarts += 1;
                    if restarts > MAX_RESENDS {
                        return Err(gave_up(format!(
                            "the service assembled a different object {restarts} times"
                        )));
                    }
                    offset = 0;
                    continue;
                }
            }
        }
        let start = offset as usize;
        let end = (start + piece_len().max(1)).min(data.len());
        let piece = &data[start..end];
        match line.send(offset, piece, &sha256_hex(piece))? {
            PieceAnswer::Received(n) => {
                offset = n;
                resends = 0;
                if total == 0 {
                    return match line.commit(&whole)? {
                        CommitAnswer::Stored => Ok(()),
                        CommitAnswer::Resend => Err(gave_up("an empty object was refused".into())),
                    };
                }
            }
            PieceAnswer::Resend => {
                resends += 1;
                if resends > MAX_RESENDS {
                    return Err(gave_up(format!(
                        "the piece at offset {offset} arrived damaged {resends} times"
                    )));
                }
            }
            PieceAnswer::Elsewhere(n) if n == offset => {
                return Err(gave_up(format!(
                    "the service refused the piece at offset {offset} but says it has {n} bytes"
                )));
            }
            PieceAnswer::Elsewhere(n) => offset = n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service in memory that damages chosen pieces and loses chosen acknowledgements.
    #[derive(Default)]
    struct Line {
        stored: Vec<u8>,
        done: Option<Vec<u8>>,
        damage: Vec<u64>,
        lose_ack: Vec<u64>,
        sends: usize,
    }

    impl PieceLine for Line {
        fn received(&mut self) -> Result<u64, BackendError> {
            Ok(self.stored.len() as u64)
        }

        fn send(
            &mut self,
            offset: u64,
            piece: &[u8],
            sum: &str,
        ) -> Result<PieceAnswer, BackendError> {
            self.sends += 1;
            let mut arrived = piece.to_vec();
            if let Some(i) = self.damage.iter().position(|&o| o == offset) {
                self.damage.remove(i);
                arrived[0] ^= 1;
            }
            if sha256_hex(&arrived) != sum {
                return Ok(PieceAnswer::Resend);
            }
            if offset != self.stored.len() as u64 {
                return Ok(PieceAnswer::Elsewhere(self.stored.len() as u64));
            }
            self.stored.extend_from_slice(&arrived);
            if let Some(i) = self.lose_ack.iter().position(|&o| o == offset) {
                self.lose_ack.remove(i);
                return Err(gave_up("connection reset".into()));
            }
            Ok(PieceAnswer::Received(self.stored.len() as u64))
        }

        fn commit(&mut self, sum: &str) -> Result<CommitAnswer, BackendError> {
            if sha256_hex(&self.stored) != sum {
                self.stored.clear();
                return Ok(CommitAnswer::Resend);
            }
            self.done = Some(std::mem::take(&mut self.stored));
            Ok(CommitAnswer::Stored)
        }
    }

    fn data() -> Vec<u8> {
        (0..10_000u32).map(|i| (i * 7 % 253) as u8).collect()
    }

    #[test]
    fn table_grows_with_speed() {
        assert_eq!(piece_size(None), FIRST_PIECE);
        assert_eq!(piece_size(Some(50_000.0)), 256 << 10);
        assert_eq!(piece_size(Some(1_000_000.0)), 1 << 20);
        assert_eq!(piece_size(Some(5_000_000.0)), 4 << 20);
        assert_eq!(piece_size(Some(1e9)), 32 << 20);
    }

    #[test]
    fn speed_follows_measurements() {
        let mut s = LineSpeed::default();
        s.record(100, Duration::from_millis(1));
        assert_eq!(s.bytes_per_sec(), None, "tiny transfers are not counted");
        s.record(1 << 20, Duration::from_secs(1));
        assert_eq!(s.bytes_per_sec(), Some((1 << 20) as f64));
        for _ in 0..20 {
            s.record(100 << 20, Duration::from_secs(1));
        }
        assert_eq!(piece_size(s.bytes_per_sec()), 32 << 20);
    }

    #[test]
    fn pieces_arrive_whole() {
        let mut line = Line::default();
        upload(&mut line, &data(), || 1000).unwrap();
        assert_eq!(line.done.unwrap(), data());
        assert_eq!(line.sends, 10);
    }

    #[test]
    fn damaged_pieces_are_sent_again() {
        let mut line = Line {
            damage: vec![3000, 3000, 7000],
            ..Line::default()
        };
        upload(&mut line, &data(), || 1000).unwrap();
        assert_eq!(line.done.unwrap(), data());
        assert_eq!(line.sends, 13);
    }

    #[test]
    fn a_piece_damaged_every_time_gives_up() {
        let mut line = Line {
            damage: vec![2000; 10],
            ..Line::default()
        };
        let err = upload(&mut line, &data(), || 1000).unwrap_err();
        assert!(err.to_string().contains("damaged 4 times"), "{err}");
        assert!(line.done.is_none());
    }

    #[test]
    fn resumes_from_what_the_service_has() {
        let d = data();
        let mut line = Line {
            stored: d[..4000].to_vec(),
            ..Line::default()
        };
        upload(&mut line, &d, || 1000).unwrap();
        assert_eq!(line.done.unwrap(), d);
        assert_eq!(line.sends, 6, "only the missing pieces are sent");
    }

    #[test]
    fn lost_acknowledgement_is_resumed_by_the_caller() {
        let d = data();
        let mut line = Line {
            lose_ack: vec![5000],
            ..Line::default()
        };
        assert!(upload(&mut line, &d, || 1000).is_err());
        // The piece was stored although its answer was lost; a second attempt skips it.
        upload(&mut line, &d, || 1000).unwrap();
        assert_eq!(line.done.unwrap(), d);
        assert_eq!(line.sends, 6 + 4);
    }

    #[test]
    fn stale_partial_of_other_bytes_is_replaced() {
        let d = data();
        let mut line = Line {
            stored: vec![9; 3000],
            ..Line::default()
        };
        upload(&mut line, &d, || 4000).unwrap();
        assert_eq!(line.done.unwrap(), d);
    }

    #[test]
    fn piece_size_changes_between_pieces() {
        let d = data();
        let mut line = Line::default();
        let mut sizes = [500, 1500, 8000].into_iter();
        upload(&mut line, &d, || sizes.next().unwrap_or(100)).unwrap();
        assert_eq!(line.done.unwrap(), d);
        assert_eq!(line.sends, 3);
    }
}

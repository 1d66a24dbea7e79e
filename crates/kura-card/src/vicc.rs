//! The card's side of the vpcd link: vsmartcard's virtual reader driver for pcscd listens on a
//! TCP port, and a virtual card connects to it. Every message either way is a two-byte
//! big-endian length and that many bytes. A one-byte message from the reader is a control:
//! power off (0), power on (1), reset (2), or "send your ATR" (4); anything longer is a command
//! APDU, answered with a response APDU.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::card::Card;

/// The card's answer to reset: T=1, historical bytes "KURA", with its check byte.
pub fn atr() -> Vec<u8> {
    let mut a = vec![0x3B, 0x84, 0x80, 0x01, b'K', b'U', b'R', b'A'];
    let tck = a[1..].iter().fold(0u8, |x, b| x ^ b);
    a.push(tck);
    a
}

/// What the link reports as it goes.
pub enum Event<'a> {
    /// Connected to the reader at this address.
    Connected(&'a str),
    /// The reader went away; the card waits to be inserted again.
    Disconnected,
    /// A command arrived and is about to be answered.
    Command(&'a [u8]),
    /// One command answered: its instruction byte, its status word, bytes in and out.
    Apdu {
        /// The instruction byte.
        ins: u8,
        /// The status word answered.
        status: u16,
        /// Command data bytes.
        data_in: usize,
        /// Response data bytes.
        data_out: usize,
    },
}

const POWER_OFF: u8 = 0;
const POWER_ON: u8 = 1;
const RESET: u8 = 2;
const GET_ATR: u8 = 4;

/// Serves `card` to the vpcd reader at `addr` until `stop` says so, connecting again when the
/// reader goes away. After every command that changed the chip, `save` runs before the answer
/// is sent: a card whose state could not be kept answers nothing and the link ends in error.
pub fn serve(
    addr: &str,
    card: &mut Card,
    save: &mut dyn FnMut(&Card) -> io::Result<()>,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(Event),
) -> io::Result<()> {
    while !stop() {
        let Ok(mut s) = TcpStream::connect(addr) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        s.set_nodelay(true)?;
        report(Event::Connected(addr));
        card.reset();
        let mut buf = Vec::new();
        let ended = loop {
            if stop() {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            quick_ack(&s);
            match s.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                Err(e) => break Err(e),
            }
            while buf.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if buf.len() < 2 + len {
                    break;
                }
                let msg: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
                if let Some(answer) = answer(card, &msg, save, report)? {
                    let mut out = (answer.len() as u16).to_be_bytes().to_vec();
                    out.extend_from_slice(&answer);
                    s.write_all(&out)?;
                }
            }
        };
        card.reset();
        report(Event::Disconnected);
        if let Err(e) = ended
            && !matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            )
        {
            return Err(e);
        }
    }
    Ok(())
}

/// Acknowledges what arrives at once. vpcd sends a length and its bytes in two writes, so with
/// Nagle's algorithm on its side the bytes wait for the length's acknowledgement, which Linux
/// delays by up to 40 ms: 48 ms a command, measured, instead of well under one. Linux clears
/// the flag as it goes, so it is set again before every read.
fn quick_ack(s: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option of the size given. A failure
        // only costs speed.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = s;
}

fn answer(
    card: &mut Card,
    msg: &[u8],
    save: &mut dyn FnMut(&Card) -> io::Result<()>,
    report: &mut dyn FnMut(Event),
) -> io::Result<Option<Vec<u8>>> {
    match msg {
        [GET_ATR] => Ok(Some(atr())),
        [POWER_OFF | POWER_ON | RESET] => {
            card.reset();
            Ok(None)
        }
        [_] => Ok(None),
        apdu => {
            report(Event::Command(apdu));
            let r = card.handle_bytes(apdu);
            if card.take_changed() {
                save(card)?;
            }
            let sw = r
                .len()
                .checked_sub(2)
                .map_or(0, |i| u16::from_be_bytes([r[i], r[i + 1]]));
            report(Event::Apdu {
                ins: apdu.get(1).copied().unwrap_or(0),
                status: sw,
                data_in: apdu.len().saturating_sub(5),
                data_out: r.len().saturating_sub(2),
            });
            Ok(Some(r))
        }
    }
}

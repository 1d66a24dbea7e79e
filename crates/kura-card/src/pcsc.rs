//! Real readers through the system's PC/SC service (pcscd on Linux), with the `pcsc` crate.
//! A physical card running the same applet, or the emulator behind vsmartcard's virtual
//! reader, answer alike.

use std::ffi::CString;

use crate::CardError;
use crate::host::Reader;

/// A card in a PC/SC reader, held exclusively so no other program's commands fall between a
/// backup's or a restore's.
pub struct PcscReader {
    card: pcsc::Card,
    /// The reader's name.
    pub name: String,
}

fn failed(what: &str) -> impl Fn(pcsc::Error) -> CardError + '_ {
    move |e| CardError::Reader(format!("{what}: {e}"))
}

/// The names of the readers PC/SC knows.
pub fn readers() -> Result<Vec<String>, CardError> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)
        .map_err(failed("reaching the PC/SC service (is pcscd running?)"))?;
    match ctx.list_readers_owned() {
        Ok(r) => Ok(r
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(failed("listing readers")(e)),
    }
}

impl PcscReader {
    /// Connects to the card in the reader whose name contains `name`, or in the first reader
    /// that holds a card.
    pub fn connect(name: Option<&str>) -> Result<PcscReader, CardError> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User)
            .map_err(failed("reaching the PC/SC service (is pcscd running?)"))?;
        let all = readers()?;
        if all.is_empty() {
            return Err(CardError::Reader("PC/SC lists no readers".into()));
        }
        let mut last = None;
        for r in all.iter().filter(|r| name.is_none_or(|n| r.contains(n))) {
            let c = CString::new(r.as_str()).map_err(|_| CardError::Reader(r.clone()))?;
            match ctx.connect(&c, pcsc::ShareMode::Exclusive, pcsc::Protocols::ANY) {
                Ok(card) => {
                    return Ok(PcscReader {
                        card,
                        name: r.clone(),
                    });
                }
                Err(e) => last = Some(format!("{r}: {e}")),
            }
        }
        Err(CardError::Reader(match (name, last) {
            (_, Some(why)) => format!("no card to connect to ({why})"),
            (Some(n), None) => format!("no reader named like {n:?} (readers: {})", all.join(", ")),
            (None, None) => "no reader holds a card".into(),
        }))
    }
}

impl Reader for PcscReader {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, CardError> {
        let mut buf = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let r = self
            .card
            .transmit(apdu, &mut buf)
            .map_err(failed("talking to the card"))?;
        Ok(r.to_vec())
    }
}

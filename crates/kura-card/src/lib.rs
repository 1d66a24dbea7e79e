//! Smart cards that back themselves up (docs/requirements/card.md part B).
//!
//! The card ([`card`]) keeps fixed-size pages, a changed-page table beside them, its keys and
//! number, and a table of applications; it answers ISO 7816-4 APDUs ([`apdu`]). A backup is
//! sealed inside the card under its unique key, with that key wrapped under the common key
//! every genuine card holds ([`seal`]), so the host and the repository see only ciphertext,
//! and another card can restore it. After a restore, value applications reset, so money can
//! never be rolled back. The host's side ([`host`]) drives backups and restores through any
//! [`host::Reader`]; [`image`] is the file the host stores. I/O sits at the edges: [`vicc`]
//! links the card to pcscd through vsmartcard's virtual reader, and `pcsc` (feature `pcsc`)
//! reaches real readers.

pub mod apdu;
pub mod app;
pub mod card;
pub mod host;
pub mod image;
pub mod memory;
#[cfg(feature = "pcsc")]
pub mod pcsc;
pub mod seal;
pub mod state;
pub mod vicc;

#[cfg(test)]
mod tests;

pub use apdu::Status;

/// What can go wrong between the host and a card.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// The card answered with a status word other than 9000.
    #[error("the card refused {what}: {status}")]
    Refused {
        /// What was asked.
        what: &'static str,
        /// Its answer.
        status: Status,
    },
    /// The card's answer, or a stored image, is not well formed.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The reader or the PC/SC service failed.
    #[error("{0}")]
    Reader(String),
    /// No application of that name on the card.
    #[error("the card has no application {0:?}")]
    NoApplication(String),
    /// The backups given do not make a restore chain.
    #[error("{0}")]
    Chain(String),
}

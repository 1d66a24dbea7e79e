//! Electronic value that survives a lost device (docs/requirements/value-vault.md): the pure
//! core of the wallet, the vault and the key manager.
//!
//! A value record ([`record`]) is sealed and signed on the device ([`registered`]); the vault
//! answers a deposit with a signed certificate ([`certificate`]) the wallet checks against what
//! it sent; the value key can be split so no single service can rebuild it ([`split`]); the key
//! manager is asked for its share in [`escrow`]'s requests and can release it on a biometric
//! match within a measured tolerance ([`biometric`]); the wallet holds values and certificates
//! within its capacity ([`wallet`]).

pub mod biometric;
pub mod certificate;
pub mod conditions;
pub mod escrow;
pub mod record;
pub mod registered;
pub mod rekey;
pub mod sign;
pub mod split;
pub mod wallet;
mod wire;

/// Milliseconds since 1970: a number that grows from one request to a later one without a
/// counter kept anywhere (enrolment sequences, the key manager's withdrawal attempts).
pub fn now_ms() -> u64 {
    u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// What can go wrong with wallet data.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// Bytes that are not the named thing.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A signature that does not verify under the trusted key.
    #[error("the {0}'s signature does not verify")]
    BadSignature(&'static str),
    /// A certificate that does not name what was sent.
    #[error("the certificate's {0} is not that of the value sent")]
    Mismatch(&'static str),
    /// A value key that does not open the value.
    #[error("the value key does not open the value")]
    WrongKey,
    /// Splitting or combining shares failed.
    #[error("{0}")]
    Shares(String),
    /// Not enough room in the wallet.
    #[error("not enough room in the wallet: {need} bytes needed, {free} free")]
    NoRoom {
        /// Bytes needed.
        need: usize,
        /// Bytes free.
        free: usize,
    },
    /// No holding with that number.
    #[error("the wallet holds no item {0}")]
    NotHeld(u64),
    /// Not enough balance.
    #[error("the balance is {balance}")]
    Balance {
        /// What is left.
        balance: u64,
    },
}

//! Re-keying (value-vault.md requirement 8): the key manager's request that the vault replace
//! a wallet's records by the same values sealed and signed under new keys, all of them or
//! none, and the vault's answer, the new certificates in the same order.

use crate::WalletError;
use crate::certificate::Certificate;
use crate::registered::Registered;
use crate::sign::{SigningKey, verify};
use crate::wire::{Reader, Writer};

const MAGIC: &[u8; 8] = b"KURAREP1";
const ANSWER: &[u8; 8] = b"KURAREA1";

/// Most records one replacement carries (a vault's default quota per wallet).
pub const MAX_ITEMS: usize = 1000;

/// Replace each old certificate's record by a new registered value, signed by the key
/// manager. Its `id` makes a repeat harmless: the vault answers a replacement it made again
/// with the same certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// Names this replacement (random, chosen by the key manager).
    pub id: [u8; 16],
    /// Old certificate, new value.
    pub items: Vec<(Certificate, Registered)>,
    /// The key manager's signature over all of the above.
    pub signature: [u8; 64],
}

impl Replacement {
    /// A replacement signed by `keyman`.
    pub fn sign(
        id: [u8; 16],
        items: Vec<(Certificate, Registered)>,
        keyman: &SigningKey,
    ) -> Replacement {
        let mut r = Replacement {
            id,
            items,
            signature: [0; 64],
        };
        r.signature = keyman.sign(&r.signed_bytes());
        r
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.extend_from_slice(MAGIC);
        w.bytes(&self.id).u64(self.items.len() as u64);
        for (cert, new) in &self.items {
            w.bytes(&cert.to_bytes()).bytes(&new.to_bytes());
        }
        w.0
    }

    /// The request's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.signed_bytes();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Reads a request (the signature is checked by [`Replacement::verify`]).
    pub fn parse(b: &[u8]) -> Result<Replacement, WalletError> {
        let body = b
            .strip_prefix(MAGIC)
            .ok_or(WalletError::Malformed("replacement"))?;
        let mut r = Reader::new(body, "replacement");
        let id = r
            .bytes()?
            .try_into()
            .map_err(|_| WalletError::Malformed("replacement id"))?;
        let n = r.u64()?;
        if n == 0 || n > MAX_ITEMS as u64 {
            return Err(WalletError::Malformed("replacement count"));
        }
        let mut items = Vec::new();
        for _ in 0..n {
            let cert = Certificate::parse(r.bytes()?)?;
            let new = Registered::parse(r.bytes()?)?;
            items.push((cert, new));
        }
        let signature = r.array()?;
        r.end()?;
        Ok(Replacement {
            id,
            items,
            signature,
        })
    }

    /// Whether the key manager `keyman` signed it.
    pub fn verify(&self, keyman: &[u8; 32]) -> bool {
        verify(keyman, &self.signed_bytes(), &self.signature)
    }
}

/// The vault's answer: the new certificates, in the order of the replacement's items.
pub fn answer_to_bytes(certs: &[Certificate]) -> Vec<u8> {
    let mut w = Writer::default();
    w.0.extend_from_slice(ANSWER);
    w.u64(certs.len() as u64);
    for c in certs {
        w.bytes(&c.to_bytes());
    }
    w.0
}

/// Reads the vault's answer.
pub fn parse_answer(b: &[u8]) -> Result<Vec<Certificate>, WalletError> {
    let body = b
        .strip_prefix(ANSWER)
        .ok_or(WalletError::Malformed("replacement answer"))?;
    let mut r = Reader::new(body, "replacement answer");
    let n = r.u64()?;
    if n > MAX_ITEMS as u64 {
        return Err(WalletError::Malformed("replacement answer"));
    }
    let certs = (0..n)
        .map(|_| Certificate::parse(r.bytes()?))
        .collect::<Result<Vec<_>, _>>()?;
    r.end()?;
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DEFAULT_DIGEST;
    use crate::record::tests::ticket;
    use kura_core::crypto::Key;

    #[test]
    fn a_replacement_reads_back_and_holds_only_under_its_signer() {
        let (wallet, vault, keyman) = (
            SigningKey::generate(),
            SigningKey::generate(),
            SigningKey::generate(),
        );
        let seal = || {
            Registered::seal(
                "w",
                &ticket(),
                &DEFAULT_DIGEST,
                (&[1; 16], &Key::random()),
                &wallet,
                None,
            )
        };
        let old = Certificate::issue(&seal(), 7, &vault);
        let r = Replacement::sign([3; 16], vec![(old.clone(), seal())], &keyman);
        let back = Replacement::parse(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert!(back.verify(&keyman.public()));
        assert!(!back.verify(&vault.public()));
        let mut b = r.to_bytes();
        b[20] ^= 1;
        assert!(Replacement::parse(&b).map_or(true, |r| !r.verify(&keyman.public())));
        assert_eq!(
            parse_answer(&answer_to_bytes(std::slice::from_ref(&old))).unwrap(),
            [old]
        );
    }
}

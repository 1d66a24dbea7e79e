//! The vault's registration certificate: the digest, the SHA-256 of the stored payload and the
//! vault's counter, signed by the vault so the wallet can check it offline
//! (value-vault.md, Data, and requirement 2).

use crate::WalletError;
use crate::record::Digest;
use crate::registered::Registered;
use crate::sign::{SigningKey, verify};
use crate::wire::{Reader, Writer};

const MAGIC: &[u8; 8] = b"KURACRT1";

/// A registration certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The deposited value's digest.
    pub digest: Digest,
    /// SHA-256 of the registered value the vault stored.
    pub payload_hash: [u8; 32],
    /// The vault's counter when it stored it.
    pub counter: u64,
    /// The vault's public key.
    pub vault: [u8; 32],
    /// The vault's signature over everything above.
    pub signature: [u8; 64],
}

impl Certificate {
    /// The vault's certificate for `stored`, numbered `counter`.
    pub fn issue(stored: &Registered, counter: u64, vault: &SigningKey) -> Certificate {
        let mut c = Certificate {
            digest: stored.digest.clone(),
            payload_hash: stored.payload_hash(),
            counter,
            vault: vault.public(),
            signature: [0; 64],
        };
        c.signature = vault.sign(&c.signed_bytes());
        c
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.extend_from_slice(MAGIC);
        self.digest.write(&mut w);
        w.bytes(&self.payload_hash)
            .u64(self.counter)
            .bytes(&self.vault);
        w.0
    }

    /// The certificate's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.signed_bytes();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Reads a certificate (its signature is checked by [`Certificate::verify`]).
    pub fn parse(b: &[u8]) -> Result<Certificate, WalletError> {
        let body = b
            .strip_prefix(MAGIC)
            .ok_or(WalletError::Malformed("certificate"))?;
        let mut r = Reader::new(body, "certificate");
        let digest = Digest::read(&mut r)?;
        let payload_hash = r
            .bytes()?
            .try_into()
            .map_err(|_| WalletError::Malformed("certificate hash"))?;
        let counter = r.u64()?;
        let vault = r
            .bytes()?
            .try_into()
            .map_err(|_| WalletError::Malformed("certificate key"))?;
        let signature = r.array()?;
        r.end()?;
        Ok(Certificate {
            digest,
            payload_hash,
            counter,
            vault,
            signature,
        })
    }

    /// Checks that the vault the caller trusts signed it.
    pub fn verify(&self, vault: &[u8; 32]) -> Result<(), WalletError> {
        if &self.vault != vault || !verify(vault, &self.signed_bytes(), &self.signature) {
            return Err(WalletError::BadSignature("certificate"));
        }
        Ok(())
    }

    /// The wallet's check of a deposit's answer: the trusted vault signed it, and its digest
    /// and hash are those of what the wallet sent. Only then may the wallet keep the
    /// certificate and let the value go.
    pub fn confirms(&self, vault: &[u8; 32], sent: &Registered) -> Result<(), WalletError> {
        self.verify(vault)?;
        if self.digest != sent.digest {
            return Err(WalletError::Mismatch("digest"));
        }
        if self.payload_hash != sent.payload_hash() {
            return Err(WalletError::Mismatch("payload hash"));
        }
        Ok(())
    }
}

/// Why a value is asked for, and so who must sign the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// Withdrawn by the wallet that deposited it: a stolen certificate alone retires nothing.
    Withdraw = 1,
    /// Withdrawn by the trusted key manager for an owner whose device is lost
    /// (value-vault.md requirement 7), after it read and opened the value with the owner's
    /// escrowed share.
    Emergency = 2,
    /// Read, not retired, by the trusted key manager, which opens a value before an
    /// emergency withdrawal and re-keys a wallet's values (requirement 8).
    Read = 3,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Withdraw => b"kura-vault withdraw v3",
            Purpose::Emergency => b"kura-vault emergency withdraw v3",
            Purpose::Read => b"kura-vault keyman read v3",
        }
    }
}

/// A request for the value a certificate names. Its nonce names the request and its attempt
/// counts the tries of it: the vault answers a later try of a withdrawal it carried out with
/// the same value (so an answer lost on the way is not a value lost), and refuses the same
/// bytes sent again (a replay) and any other request for a redeemed certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// The certificate.
    pub cert: Certificate,
    /// Chosen by the requester, kept until the answer arrives.
    pub nonce: [u8; 16],
    /// Raised by the requester at every try of the same request.
    pub attempt: u64,
    /// The requester's signature over the purpose, certificate, nonce and attempt.
    pub signature: [u8; 64],
}

/// The bytes after the certificate in a withdrawal's body: nonce, attempt, signature.
const WITHDRAWAL_TAIL: usize = 16 + 8 + 64;

impl Withdrawal {
    fn message(purpose: Purpose, cert: &Certificate, nonce: &[u8; 16], attempt: u64) -> Vec<u8> {
        let mut m = purpose.domain().to_vec();
        m.extend_from_slice(&cert.payload_hash);
        m.extend_from_slice(&cert.counter.to_be_bytes());
        m.extend_from_slice(nonce);
        m.extend_from_slice(&attempt.to_be_bytes());
        m
    }

    /// Try `attempt` of the request `nonce` names, for `purpose`, signed by `key`.
    pub fn sign(
        purpose: Purpose,
        cert: &Certificate,
        (nonce, attempt): ([u8; 16], u64),
        key: &SigningKey,
    ) -> Withdrawal {
        Withdrawal {
            cert: cert.clone(),
            nonce,
            attempt,
            signature: key.sign(&Self::message(purpose, cert, &nonce, attempt)),
        }
    }

    /// Whether `key` signed it for `purpose`.
    pub fn verify(&self, purpose: Purpose, key: &[u8; 32]) -> bool {
        verify(
            key,
            &Self::message(purpose, &self.cert, &self.nonce, self.attempt),
            &self.signature,
        )
    }

    /// The request's body: the certificate, the nonce, the attempt, the signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.cert.to_bytes();
        b.extend_from_slice(&self.nonce);
        b.extend_from_slice(&self.attempt.to_be_bytes());
        b.extend_from_slice(&self.signature);
        b
    }

    /// Reads a body (the signature is checked by [`Withdrawal::verify`]).
    pub fn parse(body: &[u8]) -> Result<Withdrawal, WalletError> {
        let split = body
            .len()
            .checked_sub(WITHDRAWAL_TAIL)
            .ok_or(WalletError::Malformed("withdrawal"))?;
        let (cert, rest) = body.split_at(split);
        let (nonce, rest) = rest.split_at(16);
        let (attempt, signature) = rest.split_at(8);
        let malformed = |_| WalletError::Malformed("withdrawal");
        Ok(Withdrawal {
            cert: Certificate::parse(cert)?,
            nonce: nonce.try_into().map_err(malformed)?,
            attempt: u64::from_be_bytes(attempt.try_into().map_err(malformed)?),
            signature: signature.try_into().map_err(malformed)?,
        })
    }
}

/// The vault's counter: up by one at each use, back to 1 after `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The last value given out (0: none yet).
    pub value: u64,
    /// The largest value before it wraps.
    pub max: u64,
}

impl Counter {
    /// The next value, and the counter after it.
    pub fn next(self) -> (u64, Counter) {
        let v = if self.value >= self.max.max(1) {
            1
        } else {
            self.value + 1
        };
        (v, Counter { value: v, ..self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DEFAULT_DIGEST;
    use crate::record::tests::ticket;
    use kura_core::crypto::Key;

    fn deposit() -> (Registered, SigningKey) {
        let r = Registered::seal(
            "w",
            &ticket(),
            &DEFAULT_DIGEST,
            (&[0; 16], &Key::random()),
            &SigningKey::generate(),
            None,
        );
        (r, SigningKey::generate())
    }

    #[test]
    fn a_certificate_confirms_only_what_was_sent_and_only_from_the_trusted_vault() {
        let (sent, vault) = deposit();
        let c = Certificate::issue(&sent, 7, &vault);
        assert_eq!(Certificate::parse(&c.to_bytes()).unwrap(), c);
        c.confirms(&vault.public(), &sent).unwrap();
        let (other, _) = deposit();
        assert!(matches!(
            c.confirms(&vault.public(), &other),
            Err(WalletError::Mismatch(_))
        ));
        let forger = SigningKey::generate();
        let forged = Certificate::issue(&sent, 7, &forger);
        assert!(forged.confirms(&vault.public(), &sent).is_err());
        let mut altered = c.clone();
        altered.counter = 8;
        assert!(altered.verify(&vault.public()).is_err());
    }

    #[test]
    fn the_counter_wraps_after_its_maximum() {
        let mut c = Counter { value: 0, max: 3 };
        let mut seen = Vec::new();
        for _ in 0..5 {
            let (v, n) = c.next();
            seen.push(v);
            c = n;
        }
        assert_eq!(seen, [1, 2, 3, 1, 2]);
    }
}

//! A registered value: what the vault stores for a deposit. A plain header, the digest, the
//! value sealed on the device under the value key, the device's Ed25519 signature over all of
//! that, and (split-key mode) the vault's share of the value key. The signature is checked
//! before anything is decrypted (value-vault.md requirement 4).

use kura_core::crypto::{self, Key};

use crate::WalletError;
use crate::record::{Digest, Field, ValueRecord};
use crate::sign::{SigningKey, verify};
use crate::wire::{Reader, Writer};

const MAGIC: &[u8; 8] = b"KURAREG1";

/// What the vault stores for one deposited value. Its `Debug` leaves the vault's share out.
#[derive(Clone, PartialEq, Eq)]
pub struct Registered {
    /// The wallet that deposited it.
    pub wallet: String,
    /// Which value key sealed it (changes when the wallet is re-keyed).
    pub key_id: [u8; 16],
    /// The wallet's public key, whose signature this carries.
    pub signer: [u8; 32],
    /// The fields shown without opening it.
    pub digest: Digest,
    /// The value record, sealed under the value key.
    pub sealed: Vec<u8>,
    /// Split-key mode: the vault's share of the value key.
    pub vault_share: Option<Vec<u8>>,
    /// The wallet's signature over everything above.
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("wallet", &self.wallet)
            .field("key_id", &self.key_id)
            .field("digest", &self.digest)
            .field("sealed_bytes", &self.sealed.len())
            .field("vault_share", &self.vault_share.as_ref().map(|_| "…"))
            .finish()
    }
}

fn aad(wallet: &str, key_id: &[u8; 16]) -> Vec<u8> {
    let mut a = b"kura-wallet value v1".to_vec();
    a.extend_from_slice(wallet.as_bytes());
    a.push(0);
    a.extend_from_slice(key_id);
    a
}

impl Registered {
    /// Seals `record` on the device: digest over `fields`, the value under `value_key`, signed
    /// by `signer`, with `vault_share` inside when the key is split.
    pub fn seal(
        wallet: &str,
        record: &ValueRecord,
        fields: &[Field],
        value_key: (&[u8; 16], &Key),
        signer: &SigningKey,
        vault_share: Option<Vec<u8>>,
    ) -> Registered {
        let (key_id, key) = value_key;
        let mut r = Registered {
            wallet: wallet.to_string(),
            key_id: *key_id,
            signer: signer.public(),
            digest: Digest::of(record, fields),
            sealed: crypto::seal(key, &aad(wallet, key_id), &record.to_bytes()),
            vault_share,
            signature: [0; 64],
        };
        r.signature = signer.sign(&r.signed_bytes());
        r
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.extend_from_slice(MAGIC);
        w.bytes(self.wallet.as_bytes())
            .bytes(&self.key_id)
            .bytes(&self.signer);
        self.digest.write(&mut w);
        w.bytes(&self.sealed);
        match &self.vault_share {
            Some(s) => w.u8(1).bytes(s),
            None => w.u8(0),
        };
        w.0
    }

    /// The bytes the vault stores.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.signed_bytes();
        b.extend_from_slice(&self.signature);
        b
    }

    /// Reads stored bytes (the signature is not checked here: see [`Registered::verify`]).
    pub fn parse(b: &[u8]) -> Result<Registered, WalletError> {
        let body = b
            .strip_prefix(MAGIC)
            .ok_or(WalletError::Malformed("registered value"))?;
        let mut r = Reader::new(body, "registered value");
        let wallet = String::from_utf8(r.bytes()?.to_vec())
            .map_err(|_| WalletError::Malformed("registered value"))?;
        let key_id = r
            .bytes()?
            .try_into()
            .map_err(|_| WalletError::Malformed("key id"))?;
        let signer = r
            .bytes()?
            .try_into()
            .map_err(|_| WalletError::Malformed("signer"))?;
        let digest = Digest::read(&mut r)?;
        let sealed = r.bytes()?.to_vec();
        let vault_share = match r.u8()? {
            0 => None,
            1 => Some(r.bytes()?.to_vec()),
            _ => return Err(WalletError::Malformed("registered value")),
        };
        let signature = r.array()?;
        r.end()?;
        Ok(Registered {
            wallet,
            key_id,
            signer,
            digest,
            sealed,
            vault_share,
            signature,
        })
    }

    /// SHA-256 of the stored bytes: what a certificate names.
    pub fn payload_hash(&self) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.to_bytes());
        let mut h = [0u8; 32];
        h.copy_from_slice(d.as_ref());
        h
    }

    /// Checks the signature against the wallet key the caller trusts.
    pub fn verify(&self, wallet_key: &[u8; 32]) -> Result<(), WalletError> {
        if &self.signer != wallet_key || !verify(wallet_key, &self.signed_bytes(), &self.signature)
        {
            return Err(WalletError::BadSignature("registered value"));
        }
        Ok(())
    }

    /// The value, after the signature checks (never before).
    pub fn open(&self, wallet_key: &[u8; 32], value_key: &Key) -> Result<ValueRecord, WalletError> {
        self.verify(wallet_key)?;
        let plain = crypto::open(
            value_key,
            &aad(&self.wallet, &self.key_id),
            &self.sealed,
            "value",
        )
        .map_err(|_| WalletError::WrongKey)?;
        ValueRecord::from_bytes(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DEFAULT_DIGEST;
    use crate::record::tests::ticket;

    #[test]
    fn a_value_opens_only_with_its_signature_intact_and_its_key() {
        let (signer, key) = (SigningKey::generate(), Key::random());
        let r = Registered::seal(
            "w1",
            &ticket(),
            &DEFAULT_DIGEST,
            (&[1; 16], &key),
            &signer,
            Some(vec![9, 9]),
        );
        let back = Registered::parse(&r.to_bytes()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.open(&signer.public(), &key).unwrap(), ticket());
        assert!(matches!(
            back.open(&signer.public(), &Key::random()),
            Err(WalletError::WrongKey)
        ));
        let other = SigningKey::generate();
        assert!(back.verify(&other.public()).is_err());
        for i in [12, 40, r.to_bytes().len() - 70, r.to_bytes().len() - 1] {
            let mut b = r.to_bytes();
            b[i] ^= 1;
            if let Ok(x) = Registered::parse(&b) {
                assert!(
                    matches!(
                        x.open(&signer.public(), &key),
                        Err(WalletError::BadSignature(_))
                    ),
                    "byte {i} changed and the signature still held"
                );
            }
        }
    }
}

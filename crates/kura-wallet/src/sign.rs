//! Ed25519 signing keys: the wallet's (over what it deposits) and the vault's (over the
//! certificates it issues). Each side keeps its own pair; the other holds only the public key.

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::WalletError;

/// An Ed25519 key pair, kept as its PKCS#8 document.
pub struct SigningKey {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", kura_core::id::hex(&self.public()))
    }
}

impl SigningKey {
    /// A new key pair from the operating system's random source.
    pub fn generate() -> SigningKey {
        // Generating from the system's random source fails only if that source does.
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("operating system random source failed");
        SigningKey::from_pkcs8(doc.as_ref()).expect("a key pair ring just made")
    }

    /// A key pair from its PKCS#8 document.
    pub fn from_pkcs8(doc: &[u8]) -> Result<SigningKey, WalletError> {
        let pair = Ed25519KeyPair::from_pkcs8(doc)
            .map_err(|_| WalletError::Malformed("Ed25519 key pair"))?;
        Ok(SigningKey {
            pkcs8: doc.to_vec(),
            pair,
        })
    }

    /// The PKCS#8 document, to keep.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        let mut p = [0u8; 32];
        p.copy_from_slice(self.pair.public_key().as_ref());
        p
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(self.pair.sign(message).as_ref());
        s
    }
}

/// Whether `signature` is `public`'s over `message`.
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, signature)
        .is_ok()
}

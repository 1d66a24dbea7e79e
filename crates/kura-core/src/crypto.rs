//! Authenticated encryption: XChaCha20-Poly1305 with random 192-bit nonces.
//!
//! The extended nonce makes random nonces safe for any number of messages under one key, which
//! matters because a device key encrypts every blob that device ever stores.
//! Sealed bytes are `nonce (24) || ciphertext || tag (16)`.
//!
//! XChaCha20-Poly1305 is ChaCha20-Poly1305 under a subkey: HChaCha20 of the key and the first
//! 16 nonce bytes, with the last 8 as the nonce (draft-irtf-cfrg-xchacha). The subkey comes from
//! the `chacha20` crate and the AEAD from ring, whose vectorised code is about 3.5 times as fast
//! here as the portable one; the bytes are the same (a test checks them against the reference
//! implementation).

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use crate::FormatError;

/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A 256-bit secret key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(pub(crate) [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A fresh key from the operating system's random source.
    pub fn random() -> Key {
        Key(random_bytes())
    }

    /// A key for one purpose, derived from this one (BLAKE3 key derivation).
    pub fn derive(&self, context: &str) -> Key {
        Key(blake3::derive_key(context, &self.0))
    }

    /// The raw bytes, for wrapping under another key.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from raw bytes that were unwrapped or decoded.
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(bytes)
    }
}

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is not recoverable and not reachable from outside input.
    getrandom::getrandom(&mut b).expect("operating system random source failed");
    b
}

/// The ChaCha20-Poly1305 key and nonce XChaCha20-Poly1305 under `key` with `nonce` comes to.
fn chacha_for(key: &Key, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
    use chacha20::cipher::consts::U10;
    use chacha20::cipher::generic_array::GenericArray;
    let sub = chacha20::hchacha::<U10>(
        GenericArray::from_slice(&key.0),
        GenericArray::from_slice(&nonce[..16]),
    );
    let aead = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &sub).expect("a 32-byte key fits ChaCha20-Poly1305"),
    );
    let mut short = [0u8; 12];
    short[4..].copy_from_slice(&nonce[16..]);
    (aead, Nonce::assume_unique_for_key(short))
}

/// Appends the sealed form of `plaintext` to `out`.
pub fn seal_into(key: &Key, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    out.reserve(plaintext.len() + OVERHEAD);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let (aead, short) = chacha_for(key, &nonce);
    let tag = aead
        .seal_in_place_separate_tag(short, Aad::from(aad), &mut out[start..])
        .expect("plaintext within ChaCha20 limits");
    out.extend_from_slice(tag.as_ref());
}

/// Seals `buf` in place: on return it holds `nonce ‖ ciphertext ‖ tag` of what it held.
/// Saves a second buffer the size of the message.
pub fn seal_in_place(key: &Key, aad: &[u8], buf: &mut Vec<u8>) {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    buf.reserve(OVERHEAD);
    buf.splice(0..0, nonce);
    let (aead, short) = chacha_for(key, &nonce);
    let tag = aead
        .seal_in_place_separate_tag(short, Aad::from(aad), &mut buf[NONCE_LEN..])
        .expect("plaintext within ChaCha20 limits");
    buf.extend_from_slice(tag.as_ref());
}

/// The sealed form of `plaintext`.
pub fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    seal_into(key, aad, plaintext, &mut out);
    out
}

/// Opens sealed bytes; fails if the key or `aad` is wrong or a byte was changed.
pub fn open(
    key: &Key,
    aad: &[u8],
    sealed: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, FormatError> {
    if sealed.len() < OVERHEAD {
        return Err(FormatError::Truncated(what));
    }
    let mut plain = Vec::with_capacity(sealed.len());
    open_into(key, aad, sealed, &mut plain, what)?;
    Ok(plain)
}

/// Opens sealed bytes and appends the plaintext to `out` (copying the bytes once); on failure
/// `out` is as it was.
pub fn open_into(
    key: &Key,
    aad: &[u8],
    sealed: &[u8],
    out: &mut Vec<u8>,
    what: &'static str,
) -> Result<(), FormatError> {
    if sealed.len() < OVERHEAD {
        return Err(FormatError::Truncated(what));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| FormatError::Truncated(what))?;
    let (aead, short) = chacha_for(key, nonce);
    // Ciphertext and tag, opened in place; the tag's bytes are cut off after.
    let start = out.len();
    out.extend_from_slice(rest);
    match aead.open_in_place(short, Aad::from(aad), &mut out[start..]) {
        Ok(plain) => {
            let len = plain.len();
            out.truncate(start + len);
            Ok(())
        }
        Err(_) => {
            out.truncate(start);
            Err(FormatError::Authentication(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = Key::random();
        let sealed = seal(&key, b"aad", b"hello");
        assert_eq!(sealed.len(), 5 + OVERHEAD);
        assert_eq!(open(&key, b"aad", &sealed, "t").unwrap(), b"hello");
        assert!(open(&key, b"other", &sealed, "t").is_err());
        assert!(open(&Key::random(), b"aad", &sealed, "t").is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(
                open(&key, b"aad", &bad, "t"),
                Err(FormatError::Authentication("t"))
            );
        }
        assert_eq!(
            open(&key, b"aad", &sealed[..10], "t"),
            Err(FormatError::Truncated("t"))
        );
    }

    #[test]
    fn the_same_bytes_as_the_reference_xchacha20_poly1305() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let key = Key::random();
        let reference = chacha20poly1305::XChaCha20Poly1305::new((&key.0).into());
        for len in [0, 1, 63, 64, 65, 4096, 100_000] {
            let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&key, b"aad", &msg);
            let (nonce, body) = sealed.split_at(NONCE_LEN);
            let theirs = reference
                .encrypt(
                    nonce.into(),
                    Payload {
                        msg: &msg,
                        aad: b"aad",
                    },
                )
                .unwrap();
            assert_eq!(body, theirs.as_slice(), "{len}");
            let mut in_place = msg.clone();
            seal_in_place(&key, b"aad", &mut in_place);
            let (nonce, body) = in_place.split_at(NONCE_LEN);
            let plain = reference
                .decrypt(
                    nonce.into(),
                    Payload {
                        msg: body,
                        aad: b"aad",
                    },
                )
                .unwrap();
            assert_eq!(plain, msg);
        }
    }

    #[test]
    fn derived_keys_differ_by_context() {
        let k = Key::random();
        assert_ne!(k.derive("a"), k.derive("b"));
        assert_eq!(k.derive("a"), k.derive("a"));
        assert_eq!(format!("{k:?}"), "Key(..)");
    }
}

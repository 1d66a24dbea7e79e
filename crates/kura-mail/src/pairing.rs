//! What a phone and its terminal each hold once paired (`kura mail pair`): the shared secret,
//! which seals every body and, by default, keys the HMAC of every message; and, when paired
//! with `--ed25519`, a key pair of one's own and the other side's public key, so that each side
//! signs with Ed25519 (RFC 8463 shape) and neither can forge the other's messages. A side
//! paired that way accepts only Ed25519 signatures, so a message cannot fall back to the HMAC.
//!
//! The key file:
//!
//! ```text
//! kura-mail pairing 1
//! secret <64 hex digits>
//! signing <base64 PKCS#8 Ed25519 key pair>     (only with Ed25519)
//! peer <base64 Ed25519 public key>             (only with Ed25519)
//! ```
//!
//! A file of the 64 hex digits alone is a pairing without Ed25519.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{self, KeyPair};

use crate::MailError;
use crate::auth::Key;
use crate::payload::Secret;

const HEADER: &str = "kura-mail pairing 1";

/// One side's keys.
pub struct Pairing {
    secret: Secret,
    mac: [u8; 32],
    own: Option<(Vec<u8>, signature::Ed25519KeyPair)>,
    peer: Option<Vec<u8>>,
}

impl Pairing {
    fn with(secret: Secret, own: Option<Vec<u8>>, peer: Option<Vec<u8>>) -> Option<Pairing> {
        let own = match own {
            Some(pkcs8) => {
                let pair = signature::Ed25519KeyPair::from_pkcs8(&pkcs8).ok()?;
                Some((pkcs8, pair))
            }
            None => None,
        };
        if own.is_some() != peer.is_some() || peer.as_ref().is_some_and(|p| p.len() != 32) {
            return None;
        }
        Some(Pairing {
            mac: secret.mac_key(),
            secret,
            own,
            peer,
        })
    }

    /// New keys for a terminal and a phone: (the terminal's, the phone's).
    pub fn new_pair(ed25519: bool) -> Result<(Pairing, Pairing), MailError> {
        let secret = Secret::random();
        if !ed25519 {
            let again = Secret::from_hex(&secret.to_hex())
                .ok_or_else(|| MailError::Config("a new secret did not read back".into()))?;
            return Ok((
                Pairing::with(secret, None, None).ok_or_else(bad_new)?,
                Pairing::with(again, None, None).ok_or_else(bad_new)?,
            ));
        }
        let rng = ring::rand::SystemRandom::new();
        let gen_pkcs8 = || {
            signature::Ed25519KeyPair::generate_pkcs8(&rng)
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| MailError::Config("no random numbers for a key pair".into()))
        };
        let (t, p) = (gen_pkcs8()?, gen_pkcs8()?);
        let public = |pkcs8: &[u8]| {
            signature::Ed25519KeyPair::from_pkcs8(pkcs8)
                .map(|k| k.public_key().as_ref().to_vec())
                .map_err(|_| bad_new())
        };
        let (t_pub, p_pub) = (public(&t)?, public(&p)?);
        let again = Secret::from_hex(&secret.to_hex()).ok_or_else(bad_new)?;
        Ok((
            Pairing::with(secret, Some(t), Some(p_pub)).ok_or_else(bad_new)?,
            Pairing::with(again, Some(p), Some(t_pub)).ok_or_else(bad_new)?,
        ))
    }

    /// The key file's text.
    pub fn to_text(&self) -> String {
        let mut out = format!("{HEADER}\nsecret {}\n", self.secret.to_hex());
        if let (Some((pkcs8, _)), Some(peer)) = (&self.own, &self.peer) {
            out.push_str(&format!(
                "signing {}\npeer {}\n",
                B64.encode(pkcs8),
                B64.encode(peer)
            ));
        }
        out
    }

    /// Reads [`Pairing::to_text`]'s text (or a bare secret).
    pub fn from_text(text: &str) -> Option<Pairing> {
        let text = text.trim();
        if !text.starts_with(HEADER) {
            return Pairing::with(Secret::from_hex(text)?, None, None);
        }
        let (mut secret, mut own, mut peer) = (None, None, None);
        for line in text.lines().skip(1) {
            let (k, v) = line.trim().split_once(' ')?;
            match k {
                "secret" => secret = Some(Secret::from_hex(v)?),
                "signing" => own = Some(B64.decode(v.trim()).ok()?),
                "peer" => peer = Some(B64.decode(v.trim()).ok()?),
                _ => return None,
            }
        }
        Pairing::with(secret?, own, peer)
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Pairing, MailError> {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| Pairing::from_text(&t))
            .ok_or_else(|| {
                MailError::Config(format!(
                    "{}: not a key file from `kura mail pair`",
                    path.display()
                ))
            })
    }

    /// The shared secret (it seals the bodies).
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Whether this side signs and checks with Ed25519.
    pub fn is_ed25519(&self) -> bool {
        self.own.is_some()
    }

    /// What this side signs its messages with (`legacy`: the source's checksum, where there
    /// is no Ed25519 key).
    pub fn signer(&self, legacy: bool) -> Key<'_> {
        match &self.own {
            Some((_, pair)) => Key::Ed25519Signer(pair),
            None => Key::Shared {
                secret: &self.mac,
                legacy,
            },
        }
    }

    /// What the other side's messages are checked with.
    pub fn checker(&self, legacy: bool) -> Key<'_> {
        match &self.peer {
            Some(public) => Key::Ed25519Public(public),
            None => Key::Shared {
                secret: &self.mac,
                legacy,
            },
        }
    }
}

fn bad_new() -> MailError {
    MailError::Config("a new key pair did not read back".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{self, AuthError};

    const COVER: [&str; 4] = ["from", "date", "message-id", "mb-direction-code"];

    fn fields() -> Vec<(&'static str, &'static str)> {
        vec![
            ("From", "terminal@example.org"),
            ("Date", "Tue, 1 Dec 2026 07:00:00 +0000"),
            ("Message-Id", "<1@example.org>"),
            ("MB-Direction-Code", "backup"),
        ]
    }

    fn signed(by: &Pairing) -> Vec<(&'static str, String)> {
        let value = auth::sign(&fields(), b"body", &COVER, &by.signer(false)).unwrap();
        let mut f: Vec<(&str, String)> = fields()
            .into_iter()
            .map(|(n, v)| (n, v.to_string()))
            .collect();
        f.push((auth::FIELD, value));
        f
    }

    fn check(f: &[(&'static str, String)], with: &Pairing) -> Result<(), AuthError> {
        let view: Vec<(&str, &str)> = f.iter().map(|(n, v)| (*n, v.as_str())).collect();
        auth::verify(&view, b"body", &with.checker(false)).map(|_| ())
    }

    #[test]
    fn each_side_checks_the_others_signature_and_not_its_own() {
        let (terminal, phone) = Pairing::new_pair(true).unwrap();
        assert!(check(&signed(&terminal), &phone).is_ok());
        assert!(check(&signed(&phone), &terminal).is_ok());
        // The terminal cannot pass for the phone, nor the phone for the terminal.
        assert_eq!(check(&signed(&terminal), &terminal), Err(AuthError::Value));
        // An HMAC under the shared secret is not taken where Ed25519 is paired.
        let (hmac_side, _) = Pairing::new_pair(false).unwrap();
        assert!(matches!(
            check(&signed(&hmac_side), &phone),
            Err(AuthError::Algorithm { .. })
        ));
        // The files read back.
        let again = Pairing::from_text(&phone.to_text()).unwrap();
        assert!(again.is_ed25519());
        assert!(check(&signed(&terminal), &again).is_ok());
        assert_eq!(
            again.secret().to_hex(),
            terminal.secret().to_hex(),
            "one secret for both"
        );
    }

    #[test]
    fn a_bare_secret_is_an_hmac_pairing_and_a_damaged_file_is_refused() {
        let (t, p) = Pairing::new_pair(false).unwrap();
        assert!(!t.is_ed25519());
        assert!(check(&signed(&t), &p).is_ok());
        let bare = Pairing::from_text(&t.secret().to_hex()).unwrap();
        assert!(check(&signed(&t), &bare).is_ok());
        let (_, ed) = Pairing::new_pair(true).unwrap();
        let text = ed.to_text();
        let without_peer: String = text.lines().take(3).collect::<Vec<_>>().join("\n");
        assert!(Pairing::from_text(&without_peer).is_none());
        assert!(Pairing::from_text(&text.replace("secret ", "secret 0")).is_none());
        assert!(Pairing::from_text("kura-mail pairing 1\nsecret\n").is_none());
    }
}

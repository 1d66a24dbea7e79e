//! What the key manager is asked, as JSON (value-vault.md requirements 5 to 7): a wallet
//! enrols an escrow of its share, an owner asks for the share back or, device lost, for a
//! deposited value. Each request is read by a pure `parse` (a fuzz target) that bounds every
//! field before anything else looks at it.

use crate::certificate::Certificate;
use crate::sign::{SigningKey, verify};
use kura_core::id::{hex, unhex, unhex_array};
use serde::{Deserialize, Serialize};

/// Longest password or identity-card data accepted, in bytes.
pub const MAX_SECRET: usize = 1024;
/// Most features in a biometric template.
pub const MAX_FEATURES: usize = 4096;

/// Why a request was not understood.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

fn bad(what: impl Into<String>) -> RequestError {
    RequestError(what.into())
}

/// How an owner proves who they are. Its `Debug` names only which parts are present: the
/// values are secrets and never reach a log.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// A password (kept as an Argon2id hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// What an identity card yields when read (kept as an Argon2id hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_card: Option<String>,
    /// A biometric reading: a feature vector, matched within a tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub biometric: Option<Vec<f32>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials{:?}", self.methods())
    }
}

impl Credentials {
    /// The methods present, by name.
    pub fn methods(&self) -> Vec<&'static str> {
        [
            self.password.as_ref().map(|_| "password"),
            self.id_card.as_ref().map(|_| "id-card"),
            self.biometric.as_ref().map(|_| "biometric"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn check(&self) -> Result<(), RequestError> {
        for (name, s) in [("password", &self.password), ("id_card", &self.id_card)] {
            if let Some(s) = s
                && (s.is_empty() || s.len() > MAX_SECRET)
            {
                return Err(bad(format!("{name}: 1 to {MAX_SECRET} bytes")));
            }
        }
        if let Some(v) = &self.biometric
            && (v.is_empty() || v.len() > MAX_FEATURES || v.iter().any(|x| !x.is_finite()))
        {
            return Err(bad(format!(
                "biometric: 1 to {MAX_FEATURES} finite numbers"
            )));
        }
        Ok(())
    }
}

/// Which of the enrolled methods a release needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Every enrolled method must match.
    All,
    /// Any one enrolled method that matches is enough.
    Any,
}

impl Rule {
    /// The rule's name as stored.
    pub fn name(self) -> &'static str {
        match self {
            Rule::All => "all",
            Rule::Any => "any",
        }
    }

    /// The rule named `n`.
    pub fn from_name(n: &str) -> Option<Rule> {
        match n {
            "all" => Some(Rule::All),
            "any" => Some(Rule::Any),
            _ => None,
        }
    }
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Rule, String> {
        Rule::from_name(s).ok_or_else(|| format!("{s:?}: all or any"))
    }
}

/// A wallet escrowing its share of the value key, with the credentials that release it,
/// signed with the wallet's key: the wallet's public key is the escrow's name, so only the
/// wallet can make or replace it. Its `Debug` leaves the share out.
#[derive(Clone, PartialEq)]
pub struct Enrol {
    /// The wallet's Ed25519 public key.
    pub wallet: [u8; 32],
    /// The key manager's share of the value key.
    pub share: Vec<u8>,
    /// What releases it.
    pub credentials: Credentials,
    /// Whether all of them or any one.
    pub rule: Rule,
    /// Larger in every later enrolment by the same wallet (the time of signing in
    /// milliseconds), so a captured one cannot be sent again to undo a later one.
    pub sequence: u64,
    /// The wallet's signature over all of the above.
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Enrol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Enrol {{ wallet: {}, credentials: {:?}, rule: {:?}, sequence: {} }}",
            hex(&self.wallet),
            self.credentials,
            self.rule,
            self.sequence
        )
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolWire {
    wallet: String,
    share: String,
    credentials: Credentials,
    rule: Rule,
    sequence: u64,
    signature: String,
}

fn enrol_message(e: &Enrol) -> Vec<u8> {
    let Enrol {
        wallet,
        share,
        credentials: c,
        rule,
        sequence,
        ..
    } = e;
    let mut m = b"kura-keyman enrol v2".to_vec();
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(wallet);
    m.push(share.len() as u8);
    m.extend_from_slice(share);
    m.extend_from_slice(rule.name().as_bytes());
    // Serialising a Credentials is deterministic (fixed field order, shortest float form).
    m.extend_from_slice(&serde_json::to_vec(c).unwrap_or_default());
    m
}

fn array<const N: usize>(s: &str, what: &str) -> Result<[u8; N], RequestError> {
    unhex_array(s).ok_or_else(|| bad(format!("{what}: {} hex digits", 2 * N)))
}

fn json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, RequestError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("not a {what} request: {e}")))
}

impl Enrol {
    /// An enrolment signed by `wallet`, `sequence` larger than any before it.
    pub fn sign(
        wallet: &SigningKey,
        share: Vec<u8>,
        (credentials, rule): (Credentials, Rule),
        sequence: u64,
    ) -> Enrol {
        let mut e = Enrol {
            wallet: wallet.public(),
            share,
            credentials,
            rule,
            sequence,
            signature: [0; 64],
        };
        e.signature = wallet.sign(&enrol_message(&e));
        e
    }

    /// The request's body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&EnrolWire {
            wallet: hex(&self.wallet),
            share: hex(&self.share),
            credentials: self.credentials.clone(),
            rule: self.rule,
            sequence: self.sequence,
            signature: hex(&self.signature),
        })
        .unwrap_or_default()
    }

    /// Reads a body: every field bounded, at least one credential, the wallet's signature
    /// holding.
    pub fn parse(body: &[u8]) -> Result<Enrol, RequestError> {
        let w: EnrolWire = json(body, "enrolment")?;
        let share = unhex(&w.share)
            .filter(|s| s.len() == 33)
            .ok_or_else(|| bad("share: 66 hex digits"))?;
        w.credentials.check()?;
        if w.credentials.methods().is_empty() {
            return Err(bad(
                "an escrow needs at least one of password, id_card, biometric",
            ));
        }
        let e = Enrol {
            wallet: array(&w.wallet, "wallet")?,
            share,
            credentials: w.credentials,
            rule: w.rule,
            sequence: w.sequence,
            signature: array(&w.signature, "signature")?,
        };
        if !verify(&e.wallet, &enrol_message(&e), &e.signature) {
            return Err(bad("the enrolment is not signed by the wallet it names"));
        }
        Ok(e)
    }
}

/// An owner asking for the escrowed share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The wallet's public key (hex).
    pub wallet: String,
    /// The owner's credentials.
    pub credentials: Credentials,
}

impl Release {
    /// Reads a body.
    pub fn parse(body: &[u8]) -> Result<(Release, [u8; 32]), RequestError> {
        let r: Release = json(body, "release")?;
        r.credentials.check()?;
        let wallet = array(&r.wallet, "wallet")?;
        Ok((r, wallet))
    }
}

/// An owner whose device is lost asking for a deposited value back, into the wallet whose key
/// is `recipient` (which signs the request): the key manager gives each value to one wallet
/// only, so a restore asked again after a lost answer gets it, and another wallet does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The wallet's public key (hex) and the owner's credentials.
    #[serde(flatten)]
    pub owner: Release,
    /// The certificate (hex).
    pub certificate: String,
    /// The receiving wallet's public key (hex).
    pub recipient: String,
    /// The receiving wallet's signature over the certificate (hex).
    pub proof: String,
}

impl Restore {
    fn message(cert: &[u8]) -> Vec<u8> {
        let mut m = b"kura-keyman restore v1".to_vec();
        m.extend_from_slice(cert);
        m
    }

    /// A request for the value `cert` names, into the wallet whose key is `recipient`.
    pub fn sign(owner: Release, cert: &Certificate, recipient: &SigningKey) -> Restore {
        let cert = cert.to_bytes();
        Restore {
            owner,
            certificate: hex(&cert),
            recipient: hex(&recipient.public()),
            proof: hex(&recipient.sign(&Self::message(&cert))),
        }
    }

    /// Reads a body: the owner's wallet, the certificate and the receiving wallet, whose
    /// signature must hold.
    pub fn parse(body: &[u8]) -> Result<(Restore, [u8; 32], Certificate, [u8; 32]), RequestError> {
        let r: Restore = json(body, "restore")?;
        r.owner.credentials.check()?;
        let wallet = array(&r.owner.wallet, "wallet")?;
        let bytes = unhex(&r.certificate).ok_or_else(|| bad("certificate: hex"))?;
        let cert = Certificate::parse(&bytes).map_err(|e| bad(e.to_string()))?;
        let recipient = array(&r.recipient, "recipient")?;
        let proof = array(&r.proof, "proof")?;
        if !verify(&recipient, &Self::message(&bytes), &proof) {
            return Err(bad("the restore is not signed by the receiving wallet"));
        }
        Ok((r, wallet, cert, recipient))
    }
}

/// An owner whose device's keys are lost asking for every value the certificates name to be
/// sealed and signed again under new keys (value-vault.md requirement 8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rekey {
    /// The wallet's public key (hex) and the owner's credentials.
    #[serde(flatten)]
    pub owner: Release,
    /// The certificates (hex), at most [`crate::rekey::MAX_ITEMS`].
    pub certificates: Vec<String>,
}

impl Rekey {
    /// Reads a body.
    pub fn parse(body: &[u8]) -> Result<(Rekey, [u8; 32], Vec<Certificate>), RequestError> {
        let r: Rekey = json(body, "rekey")?;
        r.owner.credentials.check()?;
        let wallet = array(&r.owner.wallet, "wallet")?;
        if r.certificates.len() > crate::rekey::MAX_ITEMS {
            return Err(bad(format!(
                "at most {} certificates",
                crate::rekey::MAX_ITEMS
            )));
        }
        let certs = r
            .certificates
            .iter()
            .map(|c| {
                unhex(c)
                    .ok_or_else(|| bad("certificate: hex"))
                    .and_then(|b| Certificate::parse(&b).map_err(|e| bad(e.to_string())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((r, wallet, certs))
    }
}

/// The new keys the key manager delivers after re-keying, all hex: the wallet's new signing
/// key, its value key (id and key), the vault's share that new deposits carry, the third
/// share for a new recovery file, and the new certificates in the order of the request's.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The new public key: the wallet's new name.
    pub wallet: String,
    /// The new signing key (PKCS#8).
    pub signing_key: String,
    /// The new value key's id.
    pub key_id: String,
    /// The new value key.
    pub value_key: String,
    /// The share every new deposit carries.
    pub vault_share: String,
    /// The share for the owner's new recovery file.
    pub recovery_share: String,
    /// The new certificates.
    pub certificates: Vec<String>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delivery {{ wallet: {}, .. }}", self.wallet)
    }
}

/// The wallet's word that it holds the keys a re-keying delivered: signed with the new
/// signing key over the old wallet's name. The key manager then forgets the secrets it
/// delivered and retires the old escrow for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyDone {
    /// The old wallet's public key (hex).
    pub wallet: String,
    /// The new signing key's signature (hex).
    pub signature: String,
}

impl RekeyDone {
    fn message(old: &[u8; 32]) -> Vec<u8> {
        let mut m = b"kura-keyman rekey done v1".to_vec();
        m.extend_from_slice(old);
        m
    }

    /// The confirmation for the re-keying of `old`, signed with the new key.
    pub fn sign(old: &[u8; 32], new: &SigningKey) -> RekeyDone {
        RekeyDone {
            wallet: hex(old),
            signature: hex(&new.sign(&Self::message(old))),
        }
    }

    /// Reads a body: the old wallet and the signature.
    pub fn parse(body: &[u8]) -> Result<(RekeyDone, [u8; 32], [u8; 64]), RequestError> {
        let r: RekeyDone = json(body, "rekey done")?;
        let old = array(&r.wallet, "wallet")?;
        let sig = array(&r.signature, "signature")?;
        Ok((r, old, sig))
    }

    /// Whether the key `new` signed it for `old`.
    pub fn verify(old: &[u8; 32], sig: &[u8; 64], new: &[u8; 32]) -> bool {
        verify(new, &Self::message(old), sig)
    }
}

/// A short check that a rebuilt value key is the right one, kept in a recovery file: it says
/// nothing useful about the key itself.
pub fn key_check(key: &kura_core::crypto::Key) -> String {
    let mut b = b"kura-wallet key check v1".to_vec();
    b.extend_from_slice(key.expose());
    kura_core::Id::of_bytes(&b).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enrolment_reads_back_only_as_the_wallet_signed_it() {
        let w = SigningKey::generate();
        let creds = Credentials {
            password: Some("correct horse".into()),
            id_card: None,
            biometric: Some(vec![0.5, 0.25, 0.125]),
        };
        let e = Enrol::sign(&w, vec![7; 33], (creds.clone(), Rule::All), 5);
        assert_eq!(Enrol::parse(&e.to_json()).unwrap(), e);
        assert_eq!(
            format!("{creds:?}"),
            r#"Credentials["password", "biometric"]"#
        );
        let mut other = e.clone();
        other.rule = Rule::Any;
        assert!(
            Enrol::parse(&other.to_json()).is_err(),
            "the rule is signed"
        );
        let mut other = e.clone();
        other.sequence += 1;
        assert!(
            Enrol::parse(&other.to_json()).is_err(),
            "the sequence is signed"
        );
        let mut other = e.clone();
        other.credentials.password = Some("my own".into());
        assert!(
            Enrol::parse(&other.to_json()).is_err(),
            "credentials are signed"
        );
        let none = Enrol::sign(&w, vec![7; 33], (Credentials::default(), Rule::All), 6);
        assert!(Enrol::parse(&none.to_json()).is_err());
        for body in [
            &br#"{"wallet":"00","credentials":{}}"#[..],
            br#"{"wallet":"zz","credentials":{"password":"x"}}"#,
            br#"[1,2"#,
        ] {
            assert!(Release::parse(body).is_err());
        }
        let long = format!(
            r#"{{"wallet":"{}","credentials":{{"password":"{}"}}}}"#,
            hex(&[0; 32]),
            "x".repeat(MAX_SECRET + 1)
        );
        assert!(Release::parse(long.as_bytes()).is_err());
    }
}

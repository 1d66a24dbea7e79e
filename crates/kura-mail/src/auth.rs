//! The `MB-Authentication-Info` field (`docs/requirements/mail-instructions.md` wire format):
//! which header fields it covers, a hash of the body, and a value computed over both, in a
//! DKIM-like tag list (RFC 6376 shape):
//!
//! ```text
//! MB-Authentication-Info: v=1; a=hmac-sha256; h=from:to:date:message-id:mb-direction-code;
//!     bh=<base64 SHA-256 of the body>; b=<base64 value>
//! ```
//!
//! The value covers each named field in the order named, relaxed-canonicalized (RFC 6376
//! 3.4.2: lowercase name, unfolded, runs of white space made one space, trimmed) as
//! `name:value\r\n`, and then this field itself with an empty `b=`, so neither the list nor the
//! body hash can be changed without the key. The body is canonicalized the relaxed way too
//! (3.4.4). Three algorithms:
//!
//! - `hmac-sha256`: HMAC-SHA-256 under the key both sides registered (the source's scheme, read
//!   the modern way);
//! - `ed25519-sha256`: an Ed25519 signature over the SHA-256 of the same data (RFC 8463), so the
//!   phone's answers can be checked with a public key alone;
//! - `legacy-sum`: the source's checksum (the sum of the bytes, times a constant taken from the
//!   key, modulo 2^32). Anyone can forge it; it is accepted only where chosen explicitly.
//!
//! A field that must be covered ([`REQUIRED`]) and is not, is refused: otherwise the date or
//! message id that stop a replay could be changed freely.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac, signature};

/// The field's name.
pub const FIELD: &str = "MB-Authentication-Info";

/// What is said whenever the legacy checksum is configured.
pub const LEGACY_WARNING: &str = "legacy_checksum is on: instructions are checked with the \
    source's checksum, which anyone who sees one instruction can forge; use it only with a \
    phone that cannot do HMAC-SHA-256";

/// Fields every instruction and answer must cover: of each group, the one the message
/// carries (the direction has two spellings, and a message may carry only one of them).
pub const REQUIRED: [&[&str]; 4] = [
    &["from"],
    &["date"],
    &["message-id"],
    &["mb-direction-code", "mb-direction"],
];

/// Whether `field` (lowercase) is one of [`REQUIRED`].
fn is_required(field: &str) -> bool {
    REQUIRED.iter().any(|group| group.contains(&field))
}

/// How the value is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA-256 under the registered key.
    HmacSha256,
    /// Ed25519 over SHA-256 (RFC 8463).
    Ed25519Sha256,
    /// The source's checksum; forgeable, accepted only when chosen.
    LegacySum,
}

impl Algorithm {
    /// The name in `a=`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
            Algorithm::LegacySum => "legacy-sum",
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        [
            Algorithm::HmacSha256,
            Algorithm::Ed25519Sha256,
            Algorithm::LegacySum,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// Why a field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The field is not there.
    #[error("no {FIELD} field")]
    Missing,
    /// The field does not parse.
    #[error("malformed {FIELD}: {0}")]
    Malformed(String),
    /// It does not cover a field it must.
    #[error("{FIELD} does not cover {0}")]
    Uncovered(&'static str),
    /// A field that must be covered is not in the message.
    #[error("the field {0} is not in the message")]
    Absent(String),
    /// The algorithm is not the one this side accepts.
    #[error("algorithm {found} where {wanted} is required")]
    Algorithm {
        /// What the field says.
        found: String,
        /// What was registered.
        wanted: &'static str,
    },
    /// The body is not the one the field covers (changed in transit).
    #[error("the body does not match its hash (changed in transit)")]
    Body,
    /// The value does not check.
    #[error("the authentication value does not check (forged, or another key)")]
    Value,
}

/// What signs or checks: a registered secret, or an Ed25519 key pair or public key.
pub enum Key<'a> {
    /// The shared secret, for `hmac-sha256` (and, chosen explicitly, `legacy-sum`).
    Shared {
        /// The secret.
        secret: &'a [u8],
        /// Whether the forgeable legacy checksum is used instead of the HMAC.
        legacy: bool,
    },
    /// An Ed25519 key pair (PKCS#8), to sign.
    Ed25519Signer(&'a signature::Ed25519KeyPair),
    /// An Ed25519 public key, to check.
    Ed25519Public(&'a [u8]),
}

impl Key<'_> {
    /// The Ed25519 public key, of a public key or a key pair (empty for a shared secret,
    /// which no signature checks under).
    fn ed25519_public(&self) -> &[u8] {
        use signature::KeyPair;
        match self {
            Key::Ed25519Public(public) => public,
            Key::Ed25519Signer(pair) => pair.public_key().as_ref(),
            Key::Shared { .. } => &[],
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Key::Shared { legacy: false, .. } => Algorithm::HmacSha256,
            Key::Shared { legacy: true, .. } => Algorithm::LegacySum,
            Key::Ed25519Signer(_) | Key::Ed25519Public(_) => Algorithm::Ed25519Sha256,
        }
    }
}

/// A parsed `MB-Authentication-Info` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthInfo {
    /// How the value is computed.
    pub algorithm: Algorithm,
    /// The covered fields, lowercase, in order.
    pub headers: Vec<String>,
    /// SHA-256 of the canonical body.
    pub body_hash: [u8; 32],
    /// The value.
    pub value: Vec<u8>,
}

impl AuthInfo {
    /// The field's value as written, with `value` as `b=`.
    pub fn render(&self) -> String {
        format!(
            "v=1; a={}; h={}; bh={}; b={}",
            self.algorithm.name(),
            self.headers.join(":"),
            B64.encode(self.body_hash),
            B64.encode(&self.value)
        )
    }

    /// Reads a field's value.
    pub fn parse(text: &str) -> Result<AuthInfo, AuthError> {
        let bad = |why: &str| AuthError::Malformed(why.to_string());
        let mut tags = std::collections::BTreeMap::new();
        for part in unfold(text).split(';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad("a tag without '='"))?;
            let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            if tags.insert(k.trim().to_ascii_lowercase(), v).is_some() {
                return Err(bad("a tag given twice"));
            }
        }
        if tags.get("v").map(String::as_str) != Some("1") {
            return Err(bad("version is not 1"));
        }
        let a = tags.get("a").ok_or_else(|| bad("no a="))?;
        let algorithm = Algorithm::from_name(a).ok_or_else(|| bad("unknown algorithm"))?;
        let headers: Vec<String> = tags
            .get("h")
            .ok_or_else(|| bad("no h="))?
            .split(':')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        if headers
            .iter()
            .any(|h| h.is_empty() || !h.bytes().all(is_field_char))
        {
            return Err(bad("h= names an invalid field"));
        }
        let body_hash: [u8; 32] = B64
            .decode(tags.get("bh").ok_or_else(|| bad("no bh="))?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("bh= is not a base64 SHA-256"))?;
        let value = B64
            .decode(tags.get("b").ok_or_else(|| bad("no b="))?)
            .map_err(|_| bad("b= is not base64"))?;
        Ok(AuthInfo {
            algorithm,
            headers,
            body_hash,
            value,
        })
    }
}

fn is_field_char(b: u8) -> bool {
    // RFC 5322 field names: printable ASCII but the colon.
    (33..=126).contains(&b) && b != b':'
}

/// A message's header fields as (name, value), in order, values unfolded or not.
pub type Fields<'a> = [(&'a str, &'a str)];

/// Signs: the `MB-Authentication-Info` value for a message with `fields` and `body`,
/// covering `cover` (which must include [`REQUIRED`]).
pub fn sign(fields: &Fields, body: &[u8], cover: &[&str], key: &Key) -> Result<String, AuthError> {
    let mut info = AuthInfo {
        algorithm: key.algorithm(),
        headers: cover.iter().map(|h| h.to_ascii_lowercase()).collect(),
        body_hash: body_hash(body),
        value: Vec::new(),
    };
    required(&info)?;
    let data = signed_data(fields, &info)?;
    info.value = match key {
        Key::Shared {
            secret,
            legacy: false,
        } => hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &data)
            .as_ref()
            .to_vec(),
        Key::Shared {
            secret,
            legacy: true,
        } => legacy_sum(secret, &data).to_be_bytes().to_vec(),
        Key::Ed25519Signer(pair) => pair
            .sign(digest::digest(&digest::SHA256, &data).as_ref())
            .as_ref()
            .to_vec(),
        Key::Ed25519Public(_) => {
            return Err(AuthError::Malformed("a public key cannot sign".into()));
        }
    };
    Ok(info.render())
}

/// Checks the `MB-Authentication-Info` field among `fields` against `body` and `key`: the
/// algorithm must be the key's (so a field cannot downgrade itself to the legacy checksum),
/// every required field covered and present, the body unchanged and the value right.
pub fn verify(fields: &Fields, body: &[u8], key: &Key) -> Result<AuthInfo, AuthError> {
    let text = field(fields, FIELD).ok_or(AuthError::Missing)?;
    let info = AuthInfo::parse(text)?;
    if info.algorithm != key.algorithm() {
        return Err(AuthError::Algorithm {
            found: info.algorithm.name().into(),
            wanted: key.algorithm().name(),
        });
    }
    required(&info)?;
    if body_hash(body) != info.body_hash {
        return Err(AuthError::Body);
    }
    let data = signed_data(fields, &info)?;
    let good = match key {
        Key::Shared {
            secret,
            legacy: false,
        } => hmac::verify(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            &data,
            &info.value,
        )
        .is_ok(),
        Key::Shared {
            secret,
            legacy: true,
        } => info.value == legacy_sum(secret, &data).to_be_bytes(),
        Key::Ed25519Public(_) | Key::Ed25519Signer(_) => {
            signature::UnparsedPublicKey::new(&signature::ED25519, key.ed25519_public())
                .verify(digest::digest(&digest::SHA256, &data).as_ref(), &info.value)
                .is_ok()
        }
    };
    if !good {
        return Err(AuthError::Value);
    }
    Ok(info)
}

/// Each group of [`REQUIRED`] has a member covered; which one is then checked by
/// `signed_data`, where a covered required field must be present.
fn required(info: &AuthInfo) -> Result<(), AuthError> {
    match REQUIRED
        .iter()
        .find(|group| !info.headers.iter().any(|h| group.contains(&h.as_str())))
    {
        Some(group) => Err(AuthError::Uncovered(group[0])),
        None => Ok(()),
    }
}

/// The value of the last field named `name` (a header repeated by an attacker after the
/// signed one must not be the one read: the last is what DKIM signs first, and what this
/// reads).
pub fn field<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .rev()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// What the value covers: each covered field relaxed, then this field with an empty `b=`. A
/// covered field that is absent counts as empty (as in DKIM), so adding it later breaks the
/// value; one of [`REQUIRED`] must be there.
fn signed_data(fields: &Fields, info: &AuthInfo) -> Result<Vec<u8>, AuthError> {
    let mut data = Vec::new();
    for h in &info.headers {
        let v = match field(fields, h) {
            Some(v) => v,
            None if is_required(h) => return Err(AuthError::Absent(h.clone())),
            None => "",
        };
        data.extend_from_slice(format!("{h}:{}\r\n", relaxed(v)).as_bytes());
    }
    let unsigned = AuthInfo {
        value: Vec::new(),
        ..info.clone()
    };
    data.extend_from_slice(
        format!(
            "{}:{}",
            FIELD.to_ascii_lowercase(),
            relaxed(&unsigned.render())
        )
        .as_bytes(),
    );
    Ok(data)
}

fn unfold(v: &str) -> String {
    v.replace("\r\n", "").replace('\n', "")
}

/// A field value the relaxed way: unfolded, white space runs made one space, trimmed.
fn relaxed(v: &str) -> String {
    unfold(v).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// SHA-256 of the body the relaxed way: white space at line ends dropped, runs made one
/// space, empty lines at the end dropped, lines ending in CRLF.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            l.trim_end_matches('\r')
                .split([' ', '\t'])
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    for l in &lines {
        ctx.update(l.as_bytes());
        ctx.update(b"\r\n");
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The source's checksum: the sum of the bytes, times an odd constant taken from the key,
/// modulo 2^32.
fn legacy_sum(secret: &[u8], data: &[u8]) -> u32 {
    let mut k = [0u8; 4];
    for (i, b) in secret.iter().enumerate() {
        k[i % 4] ^= b;
    }
    let constant = u32::from_be_bytes(k) | 1;
    data.iter()
        .fold(0u32, |s, &b| s.wrapping_add(u32::from(b)))
        .wrapping_mul(constant)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COVER: [&str; 5] = ["from", "to", "date", "message-id", "mb-direction-code"];

    fn message() -> Vec<(&'static str, &'static str)> {
        vec![
            ("From", "terminal@example.org"),
            ("To", "phone@example.org"),
            ("Date", "Tue, 1 Dec 2026 07:00:00 +0000"),
            ("Message-Id", "<1@terminal.example.org>"),
            ("MB-Direction-Code", "backup"),
        ]
    }

    fn signed(key: &Key, body: &[u8]) -> Vec<(&'static str, String)> {
        let m = message();
        let value = sign(&m, body, &COVER, key).unwrap();
        let mut out: Vec<(&str, String)> = m.into_iter().map(|(n, v)| (n, v.to_string())).collect();
        out.push((FIELD, value));
        out
    }

    fn view<'a>(m: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        m.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    #[test]
    fn an_hmac_field_checks_and_any_change_is_refused() {
        let key = Key::Shared {
            secret: b"registered secret",
            legacy: false,
        };
        let body = b"encrypted data\r\n";
        let m = signed(&key, body);
        assert_eq!(
            verify(&view(&m), body, &key).unwrap().algorithm,
            Algorithm::HmacSha256
        );
        // Folding and white space do not matter; the body's trailing blank lines neither.
        let mut folded = m.clone();
        folded[0].1 = "terminal@example.org  ".into();
        assert!(verify(&view(&folded), b"encrypted data\r\n\r\n", &key).is_ok());
        let other = Key::Shared {
            secret: b"another secret",
            legacy: false,
        };
        assert_eq!(
            verify(&view(&m), body, &other).unwrap_err(),
            AuthError::Value
        );
        assert_eq!(
            verify(&view(&m), b"changed", &key).unwrap_err(),
            AuthError::Body
        );
        let mut replayed = m.clone();
        replayed[3].1 = "<2@terminal.example.org>".into();
        assert_eq!(
            verify(&view(&replayed), body, &key).unwrap_err(),
            AuthError::Value
        );
        let mut turned = m.clone();
        turned[4].1 = "restore".into();
        assert_eq!(
            verify(&view(&turned), body, &key).unwrap_err(),
            AuthError::Value
        );
        // The covered list cannot be shortened without the key either.
        let mut fewer = m.clone();
        fewer[5].1 = fewer[5].1.replace("h=from:to:", "h=from:");
        assert_eq!(
            verify(&view(&fewer), body, &key).unwrap_err(),
            AuthError::Value
        );
        // A later copy of a covered field is the one read, and it was not signed.
        let mut added = m.clone();
        added.insert(5, ("Date", "Wed, 2 Dec 2026 07:00:00 +0000".into()));
        assert_eq!(
            verify(&view(&added), body, &key).unwrap_err(),
            AuthError::Value
        );
    }

    #[test]
    fn an_ed25519_field_checks_with_the_public_key_alone() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        use signature::KeyPair;
        let public = pair.public_key().as_ref().to_vec();
        let m = signed(&Key::Ed25519Signer(&pair), b"data");
        let info = verify(&view(&m), b"data", &Key::Ed25519Public(&public)).unwrap();
        assert_eq!(info.algorithm, Algorithm::Ed25519Sha256);
        let mut changed = m.clone();
        changed[0].1 = "mallory@example.org".into();
        assert_eq!(
            verify(&view(&changed), b"data", &Key::Ed25519Public(&public)).unwrap_err(),
            AuthError::Value
        );
    }

    #[test]
    fn the_short_spelling_of_the_direction_is_covered_when_it_is_the_one_carried() {
        let key = Key::Shared {
            secret: b"k",
            legacy: false,
        };
        let short = [
            ("From", "terminal@example.org"),
            ("Date", "Tue, 1 Dec 2026 07:00:00 +0000"),
            ("Message-Id", "<1@example.org>"),
            ("MB-Direction", "backup"),
        ];
        let cover = ["from", "date", "message-id", "mb-direction"];
        let value = sign(&short, b"", &cover, &key).unwrap();
        let mut signed = short.to_vec();
        signed.push((FIELD, value.as_str()));
        assert!(verify(&signed, b"", &key).is_ok());
        // Covering the long spelling where the message carries the short one is refused.
        let long = ["from", "date", "message-id", "mb-direction-code"];
        assert_eq!(
            sign(&short, b"", &long, &key),
            Err(AuthError::Absent("mb-direction-code".into()))
        );
    }

    #[test]
    fn the_legacy_checksum_is_taken_only_when_chosen() {
        let legacy = Key::Shared {
            secret: b"k",
            legacy: true,
        };
        let modern = Key::Shared {
            secret: b"k",
            legacy: false,
        };
        let m = signed(&legacy, b"data");
        assert!(verify(&view(&m), b"data", &legacy).is_ok());
        // A field may not choose the weak scheme for itself.
        assert!(matches!(
            verify(&view(&m), b"data", &modern).unwrap_err(),
            AuthError::Algorithm { .. }
        ));
        let h = signed(&modern, b"data");
        assert!(matches!(
            verify(&view(&h), b"data", &legacy).unwrap_err(),
            AuthError::Algorithm { .. }
        ));
    }

    #[test]
    fn what_must_be_covered_is_required_and_malformed_fields_are_named() {
        let key = Key::Shared {
            secret: b"s",
            legacy: false,
        };
        assert_eq!(
            sign(
                &message(),
                b"",
                &["from", "date", "mb-direction-code"],
                &key
            )
            .unwrap_err(),
            AuthError::Uncovered("message-id")
        );
        assert_eq!(
            verify(&message(), b"", &key).unwrap_err(),
            AuthError::Missing
        );
        for bad in [
            "v=2; a=hmac-sha256; h=from; bh=AA==; b=AA==",
            "v=1; a=md5; h=from; bh=AA==; b=AA==",
            "v=1; a=hmac-sha256; h=fr om; bh=AA==; b=AA==",
            "v=1; a=hmac-sha256; h=from; bh=AA==; b=AA==",
            "v=1; v=1; a=hmac-sha256",
            "garbage",
        ] {
            assert!(
                matches!(AuthInfo::parse(bad), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
        let mut m: Vec<(&str, &str)> = message();
        let value = sign(&m, b"", &COVER, &key).unwrap();
        m.push((FIELD, value.as_str()));
        // A covered field taken away counts as empty, and no longer checks.
        let mut no_to = m.clone();
        no_to.retain(|(n, _)| *n != "To");
        assert_eq!(verify(&no_to, b"", &key).unwrap_err(), AuthError::Value);
        let mut no_id = m.clone();
        no_id.retain(|(n, _)| *n != "Message-Id");
        assert_eq!(
            verify(&no_id, b"", &key).unwrap_err(),
            AuthError::Absent("message-id".into())
        );
        // Covering an absent field signs its absence: adding it later breaks the value.
        let cover = [
            "from",
            "date",
            "message-id",
            "mb-direction-code",
            "in-reply-to",
        ];
        let value = sign(&message(), b"", &cover, &key).unwrap();
        let mut added = message();
        added.push((FIELD, value.as_str()));
        assert!(verify(&added, b"", &key).is_ok());
        added.insert(0, ("In-Reply-To", "<9@phone>"));
        assert_eq!(verify(&added, b"", &key).unwrap_err(), AuthError::Value);
    }
}

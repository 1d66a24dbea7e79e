//! The key hierarchy of `docs/requirements/card.md` part A.
//!
//! ```text
//! passphrase ──Argon2id──▶ key-encryption key ──wraps──▶ common key (one per account)
//! recovery code ──BLAKE3──▶ key-encryption key ──wraps──▶ common key (printed once)
//! common key ──derives──▶ blob-id key, chunker seed, device-wrapping key, check value
//! device-wrapping key ──wraps──▶ device key (one per device; encrypts that device's objects)
//! ```
//!
//! A device that holds the common key can unwrap every other device's key, so it can restore
//! any device's backups; the storage side never holds any of these keys.

use serde::{Deserialize, Serialize};

use crate::FormatError;
use crate::crypto::{self, Key};
use crate::id::{Id, hex, unhex};

/// The account's common key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonKey(Key);

/// The key that makes blob ids: BLAKE3 keyed with a secret, so ids do not reveal contents.
#[derive(Clone)]
pub struct BlobKey([u8; 32]);

impl BlobKey {
    /// The id of a blob with these plaintext bytes.
    pub fn id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.0, data).as_bytes())
    }
}

crate::id::random_id! {
    /// A device's identity: 16 random bytes, shown as 32 hex digits.
    DeviceId, "device id"
}

/// Why a key could not be unlocked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The passphrase does not open any key file.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The recovery code is malformed or its checksum does not match.
    #[error("invalid recovery code: {0}")]
    BadRecoveryCode(&'static str),
    /// The recovery code is well-formed but belongs to another repository.
    #[error(
        "the recovery code does not open this repository (it belongs to another one, or was replaced)"
    )]
    WrongRecoveryCode,
    /// A key file is malformed.
    #[error(transparent)]
    Format(#[from] FormatError),
}

impl CommonKey {
    /// A fresh random common key.
    pub fn generate() -> CommonKey {
        CommonKey(Key::random())
    }

    /// The key for blob ids.
    pub fn blob_key(&self) -> BlobKey {
        BlobKey(*self.0.derive("kura 2026 blob id key").expose())
    }

    /// The gear-table seed of this repository's chunker, secret so that chunk boundaries do not
    /// reveal which known files a repository holds.
    pub fn chunker_seed(&self) -> u64 {
        let k = self.0.derive("kura 2026 chunker seed");
        let b = k.expose();
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The MAC stored in the repository config over its other fields: it proves that the
    /// config was written by a holder of this common key (so nobody who can only write the
    /// storage can change chunking or compression), and that a recovery code belongs to it.
    pub fn config_mac(&self, canonical_config: &[u8]) -> String {
        let k = self.0.derive("kura 2026 config mac");
        hex(blake3::keyed_hash(k.expose(), canonical_config).as_bytes())
    }

    /// Wraps a device key under this common key, bound to the device id.
    pub fn wrap_device_key(&self, device: DeviceId, device_key: &Key) -> Vec<u8> {
        crypto::seal(
            &self.wrapping_key(),
            &device_aad(device),
            device_key.expose(),
        )
    }

    /// Unwraps a device key that [`CommonKey::wrap_device_key`] wrapped.
    pub fn unwrap_device_key(&self, device: DeviceId, sealed: &[u8]) -> Result<Key, FormatError> {
        let plain = crypto::open(
            &self.wrapping_key(),
            &device_aad(device),
            sealed,
            "device key",
        )?;
        let arr: [u8; 32] = plain
            .try_into()
            .map_err(|_| FormatError::invalid("device key", "not 32 bytes"))?;
        Ok(Key::from_bytes(arr))
    }

    fn wrapping_key(&self) -> Key {
        self.0.derive("kura 2026 device key wrapping")
    }
}

/// A recovery code: 32 random bytes that wrap the common key in a key file of their own, shown
/// once as Crockford base32 with a 16-bit checksum. A new one can replace it, and the old one
/// then opens nothing.
pub struct RecoveryCode([u8; 32]);

impl RecoveryCode {
    /// A fresh random code.
    pub fn generate() -> RecoveryCode {
        RecoveryCode(crypto::random_bytes())
    }

    /// The code as the user writes it down: groups of five characters joined by `-`.
    pub fn text(&self) -> String {
        let mut bytes = self.0.to_vec();
        bytes.extend_from_slice(&recovery_checksum(&self.0));
        let text = base32_encode(&bytes);
        let groups: Vec<&str> = text
            .as_bytes()
            .chunks(5)
            .map(|g| std::str::from_utf8(g).unwrap_or_default())
            .collect();
        groups.join("-")
    }

    /// The code's 32 secret bytes, to escrow in shares (`kura key escrow`).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The code whose secret bytes are `bytes` (rebuilt from escrowed shares).
    pub fn from_bytes(bytes: [u8; 32]) -> RecoveryCode {
        RecoveryCode(bytes)
    }

    /// Reads a code; spaces, dashes and case are ignored, `O` reads as 0 and `I`/`L` as 1.
    pub fn parse(code: &str) -> Result<RecoveryCode, KeyError> {
        let bytes = base32_decode(code).ok_or(KeyError::BadRecoveryCode("not base32"))?;
        if bytes.len() != 34 {
            return Err(KeyError::BadRecoveryCode("wrong length"));
        }
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&bytes[..32]);
        if bytes[32..] != recovery_checksum(&secret) {
            return Err(KeyError::BadRecoveryCode(
                "checksum does not match (mistyped?)",
            ));
        }
        Ok(RecoveryCode(secret))
    }

    /// The key-encryption key for one key file's salt. The code is 256 random bits, so no
    /// stretching is needed.
    fn kek(&self, salt: &[u8]) -> Key {
        let mut material = self.0.to_vec();
        material.extend_from_slice(salt);
        Key::from_bytes(blake3::derive_key("kura 2026 recovery key", &material))
    }
}

fn device_aad(device: DeviceId) -> Vec<u8> {
    let mut aad = b"kura device key v1 ".to_vec();
    aad.extend_from_slice(&device.0);
    aad
}

fn recovery_checksum(key: &[u8; 32]) -> [u8; 2] {
    let h = blake3::derive_key("kura 2026 recovery code checksum", key);
    [h[0], h[1]]
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(CROCKFORD[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(CROCKFORD[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.chars() {
        let c = c.to_ascii_uppercase();
        let v = match c {
            ' ' | '-' | '\n' | '\t' | '\r' => continue,
            'O' => 0,
            'I' | 'L' => 1,
            _ => CROCKFORD.iter().position(|&d| d as char == c)? as u32,
        };
        acc = ((acc << 5) | v) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Argon2id cost parameters, stored with each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a quarter of a second here, and memory-hard.
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests only; never the default.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn validate(&self) -> Result<(), FormatError> {
        // A key file comes from storage: refuse costs that would exhaust memory or time.
        if self.m_cost_kib > 1024 * 1024 || self.t_cost > 16 || self.p_cost > 16 {
            return Err(FormatError::invalid(
                "key file",
                "KDF parameters out of range",
            ));
        }
        Ok(())
    }

    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<Key, FormatError> {
        self.validate()?;
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| FormatError::invalid("key file", e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(passphrase, salt, &mut out)
            .map_err(|e| FormatError::invalid("key file", e.to_string()))?;
        Ok(Key::from_bytes(out))
    }
}

/// The common key wrapped by a passphrase (`kdf` = `argon2id`) or by a recovery code (`kdf` =
/// `recovery`, cost fields zero): the JSON stored under `keys/` in the repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Always 1 in this format version.
    pub version: u32,
    /// `argon2id` for a passphrase, `recovery` for a recovery code.
    pub kdf: String,
    /// Argon2id costs.
    #[serde(flatten)]
    pub params: KdfParams,
    /// 16 random bytes, hex.
    pub salt: String,
    /// The common key sealed under the derived key, hex.
    pub sealed: String,
    /// When the key file was made (RFC 3339).
    pub created: String,
    /// Which host made it.
    pub host: String,
}

const KEY_FILE_AAD: &[u8] = b"kura key file v1";

impl KeyFile {
    /// Wraps `common` under `passphrase`.
    pub fn create(
        common: &CommonKey,
        passphrase: &[u8],
        params: KdfParams,
        created: String,
        host: String,
    ) -> Result<KeyFile, FormatError> {
        let salt: [u8; 16] = crypto::random_bytes();
        let kek = params.derive(passphrase, &salt)?;
        let sealed = crypto::seal(&kek, KEY_FILE_AAD, common.0.expose());
        Ok(KeyFile {
            version: 1,
            kdf: "argon2id".into(),
            params,
            salt: hex(&salt),
            sealed: hex(&sealed),
            created,
            host,
        })
    }

    /// Wraps `common` under a recovery code.
    pub fn create_recovery(
        common: &CommonKey,
        code: &RecoveryCode,
        created: String,
        host: String,
    ) -> KeyFile {
        let salt: [u8; 16] = crypto::random_bytes();
        let sealed = crypto::seal(&code.kek(&salt), KEY_FILE_AAD, common.0.expose());
        KeyFile {
            version: 1,
            kdf: RECOVERY.into(),
            params: KdfParams {
                m_cost_kib: 0,
                t_cost: 0,
                p_cost: 0,
            },
            salt: hex(&salt),
            sealed: hex(&sealed),
            created,
            host,
        }
    }

    /// Whether this key file is opened by a recovery code rather than a passphrase.
    pub fn is_recovery(&self) -> bool {
        self.kdf == RECOVERY
    }

    /// Unwraps the common key with a recovery code; [`KeyError::WrongRecoveryCode`] if it
    /// does not fit.
    pub fn unlock_recovery(&self, code: &RecoveryCode) -> Result<CommonKey, KeyError> {
        if self.version != 1 || !self.is_recovery() {
            return Err(FormatError::BadMagic("key file").into());
        }
        let (salt, sealed) = self.salt_and_sealed()?;
        let plain = crypto::open(&code.kek(&salt), KEY_FILE_AAD, &sealed, "key file")
            .map_err(|_| KeyError::WrongRecoveryCode)?;
        common_from(plain)
    }

    fn salt_and_sealed(&self) -> Result<(Vec<u8>, Vec<u8>), FormatError> {
        let salt = unhex(&self.salt).ok_or(FormatError::invalid("key file", "salt"))?;
        let sealed = unhex(&self.sealed).ok_or(FormatError::invalid("key file", "sealed key"))?;
        Ok((salt, sealed))
    }

    /// Unwraps the common key; [`KeyError::WrongPassphrase`] if the passphrase does not fit.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<CommonKey, KeyError> {
        if self.version != 1 || self.kdf != "argon2id" {
            return Err(FormatError::BadMagic("key file").into());
        }
        let (salt, sealed) = self.salt_and_sealed()?;
        let kek = self.params.derive(passphrase, &salt)?;
        let plain = crypto::open(&kek, KEY_FILE_AAD, &sealed, "key file")
            .map_err(|_| KeyError::WrongPassphrase)?;
        common_from(plain)
    }
}

const RECOVERY: &str = "recovery";

fn common_from(plain: Vec<u8>) -> Result<CommonKey, KeyError> {
    let arr: [u8; 32] = plain
        .try_into()
        .map_err(|_| FormatError::invalid("key file", "key is not 32 bytes"))?;
    Ok(CommonKey(Key::from_bytes(arr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_wraps_and_unwraps() {
        let common = CommonKey::generate();
        let kf = KeyFile::create(
            &common,
            b"pw",
            KdfParams::insecure_for_tests(),
            "t".into(),
            "h".into(),
        )
        .unwrap();
        assert_eq!(kf.unlock(b"pw").unwrap(), common);
        assert_eq!(kf.unlock(b"wrong"), Err(KeyError::WrongPassphrase));
        let json = serde_json::to_string(&kf).unwrap();
        let back: KeyFile = serde_json::from_str(&json).unwrap();
        assert_eq!(back.unlock(b"pw").unwrap(), common);
    }

    #[test]
    fn hostile_kdf_params_are_refused() {
        let common = CommonKey::generate();
        let mut kf = KeyFile::create(
            &common,
            b"pw",
            KdfParams::insecure_for_tests(),
            "t".into(),
            "h".into(),
        )
        .unwrap();
        kf.params.m_cost_kib = u32::MAX;
        assert!(matches!(kf.unlock(b"pw"), Err(KeyError::Format(_))));
    }

    #[test]
    fn recovery_code_round_trip_and_typos() {
        let code = RecoveryCode::generate();
        let text = code.text();
        assert_eq!(text.len(), 55 + 10);
        assert_eq!(RecoveryCode::parse(&text).unwrap().0, code.0);
        assert_eq!(
            RecoveryCode::parse(&text.to_lowercase().replace('-', " "))
                .unwrap()
                .0,
            code.0
        );
        let mut typo = text.clone().into_bytes();
        typo[3] = if typo[3] == b'7' { b'8' } else { b'7' };
        assert!(matches!(
            RecoveryCode::parse(std::str::from_utf8(&typo).unwrap()),
            Err(KeyError::BadRecoveryCode(_))
        ));
        assert!(RecoveryCode::parse("hello!").is_err());
        assert!(RecoveryCode::parse("ABCDE").is_err());
    }

    #[test]
    fn a_recovery_key_file_opens_only_with_its_code() {
        let common = CommonKey::generate();
        let code = RecoveryCode::generate();
        let kf = KeyFile::create_recovery(&common, &code, "t".into(), "h".into());
        assert!(kf.is_recovery());
        assert_eq!(kf.unlock_recovery(&code).unwrap(), common);
        assert_eq!(
            kf.unlock_recovery(&RecoveryCode::generate()),
            Err(KeyError::WrongRecoveryCode)
        );
        assert!(
            kf.unlock(b"any passphrase").is_err(),
            "not a passphrase file"
        );
    }

    #[test]
    fn device_keys_unwrap_only_for_their_device() {
        let common = CommonKey::generate();
        let (a, b) = (DeviceId::random(), DeviceId::random());
        let key = Key::random();
        let wrapped = common.wrap_device_key(a, &key);
        assert_eq!(common.unwrap_device_key(a, &wrapped).unwrap(), key);
        assert!(common.unwrap_device_key(b, &wrapped).is_err());
        assert!(
            CommonKey::generate()
                .unwrap_device_key(a, &wrapped)
                .is_err()
        );
        assert_eq!(a.to_string().parse::<DeviceId>().unwrap(), a);
    }

    #[test]
    fn derived_values_are_stable_per_key() {
        let common = CommonKey::generate();
        assert_eq!(common.chunker_seed(), common.chunker_seed());
        assert_eq!(common.config_mac(b"r"), common.config_mac(b"r"));
        assert_ne!(
            common.config_mac(b"r"),
            CommonKey::generate().config_mac(b"r")
        );
        assert_eq!(common.blob_key().id(b"x"), common.blob_key().id(b"x"));
    }
}

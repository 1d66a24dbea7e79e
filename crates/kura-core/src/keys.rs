//! The key hierarchy of `docs/requirements/card.md` part A.
//!
//! ```text
//! passphrase ──Argon2id──▶ key-encryption key ──wraps──▶ common key (one per account)
//! recovery code ═══════════ common key, printed once as Crockford base32 with a checksum
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
    #[error("the recovery code does not belong to this repository")]
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

    /// The recovery code: the common key itself in Crockford base32 with a 16-bit checksum,
    /// grouped by five characters.
    pub fn recovery_code(&self) -> String {
        let mut bytes = self.0.expose().to_vec();
        bytes.extend_from_slice(&recovery_checksum(self.0.expose()));
        let text = base32_encode(&bytes);
        let groups: Vec<&str> = text
            .as_bytes()
            .chunks(5)
            .map(|g| std::str::from_utf8(g).unwrap_or_default())
            .collect();
        groups.join("-")
    }

    /// Reads a recovery code; spaces, dashes and case are ignored, `O` reads as 0 and `I`/`L` as 1.
    pub fn from_recovery_code(code: &str) -> Result<CommonKey, KeyError> {
        let bytes = base32_decode(code).ok_or(KeyError::BadRecoveryCode("not base32"))?;
        if bytes.len() != 34 {
            return Err(KeyError::BadRecoveryCode("wrong length"));
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        if bytes[32..] != recovery_checksum(&key) {
            return Err(KeyError::BadRecoveryCode(
                "checksum does not match (mistyped?)",
            ));
        }
        Ok(CommonKey(Key::from_bytes(key)))
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

/// The common key wrapped by a passphrase: the JSON stored under `keys/` in the repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Always 1 in this format version.
    pub version: u32,
    /// Always `argon2id`.
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

    /// Unwraps the common key; [`KeyError::WrongPassphrase`] if the passphrase does not fit.
    pub fn unlock(&self, passphrase: &[u8]) -> Result<CommonKey, KeyError> {
        if self.version != 1 || self.kdf != "argon2id" {
            return Err(FormatError::BadMagic("key file").into());
        }
        let salt = unhex(&self.salt).ok_or(FormatError::invalid("key file", "salt"))?;
        let sealed = unhex(&self.sealed).ok_or(FormatError::invalid("key file", "sealed key"))?;
        let kek = self.params.derive(passphrase, &salt)?;
        let plain = crypto::open(&kek, KEY_FILE_AAD, &sealed, "key file")
            .map_err(|_| KeyError::WrongPassphrase)?;
        let arr: [u8; 32] = plain
            .try_into()
            .map_err(|_| FormatError::invalid("key file", "key is not 32 bytes"))?;
        Ok(CommonKey(Key::from_bytes(arr)))
    }
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
        let common = CommonKey::generate();
        let code = common.recovery_code();
        assert_eq!(code.len(), 55 + 10);
        assert_eq!(CommonKey::from_recovery_code(&code).unwrap(), common);
        assert_eq!(
            CommonKey::from_recovery_code(&code.to_lowercase().replace('-', " ")).unwrap(),
            common
        );
        let mut typo = code.clone().into_bytes();
        typo[3] = if typo[3] == b'7' { b'8' } else { b'7' };
        assert!(matches!(
            CommonKey::from_recovery_code(std::str::from_utf8(&typo).unwrap()),
            Err(KeyError::BadRecoveryCode(_))
        ));
        assert!(CommonKey::from_recovery_code("hello!").is_err());
        assert!(CommonKey::from_recovery_code("ABCDE").is_err());
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

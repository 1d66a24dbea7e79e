//! Envelope encryption per site (`spec/placement.md` requirement 4): the service seals every
//! copy it writes to a site under that site's current key, over the client's own encryption, so
//! a site's operator holds nothing readable and one site's key opens nothing at another. Keys
//! come from the service's [`Keyring`]; rotating a site's key adds a version and makes it
//! current, and the older versions stay to open what they sealed.
//!
//! ```text
//! copy = "KSE1" | key version u32 (BE) | sealed(site key, aad = "KSE1" | version | site | 0 | name, object)
//! ```

use std::collections::BTreeMap;

use kura_core::FormatError;
use kura_core::crypto::{self, Key};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"KSE1";
const HEADER: usize = 8;

/// The algorithm, as the storage conditions name it.
pub const ALGORITHM: &str = "XChaCha20-Poly1305";

/// The service's site keys: every version of every site's key, and which is current.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Keyring {
    /// site id → version → key (hex).
    keys: BTreeMap<String, BTreeMap<u32, String>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: BTreeMap<&String, Vec<&u32>> = self
            .keys
            .iter()
            .map(|(s, v)| (s, v.keys().collect()))
            .collect();
        write!(f, "Keyring({versions:?})")
    }
}

fn key_from_hex(hex: &str) -> Option<Key> {
    let bytes: [u8; 32] = kura_core::id::unhex(hex)?.try_into().ok()?;
    Some(Key::from_bytes(bytes))
}

impl Keyring {
    /// The current version of `site`'s key, making the first one if the site has none.
    pub fn current(&mut self, site: &str) -> (u32, Key) {
        match self.latest(site) {
            Some(found) => found,
            None => self.add_version(site),
        }
    }

    /// The current version of `site`'s key, if it has one.
    pub fn latest(&self, site: &str) -> Option<(u32, Key)> {
        self.keys
            .get(site)
            .and_then(|v| v.iter().next_back())
            .and_then(|(&v, hex)| Some((v, key_from_hex(hex)?)))
    }

    /// Adds a new version of `site`'s key and makes it current; returns its version.
    pub fn rotate(&mut self, site: &str) -> u32 {
        self.add_version(site).0
    }

    fn add_version(&mut self, site: &str) -> (u32, Key) {
        let versions = self.keys.entry(site.to_string()).or_default();
        let next = versions.keys().next_back().map_or(1, |v| v + 1);
        let key = Key::random();
        versions.insert(next, kura_core::id::hex(key.expose()));
        (next, key)
    }

    /// A version of `site`'s key.
    pub fn get(&self, site: &str, version: u32) -> Option<Key> {
        self.keys
            .get(site)?
            .get(&version)
            .and_then(|h| key_from_hex(h))
    }

    /// The JSON form (it holds raw keys: the service keeps it private).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads the JSON form.
    pub fn decode(data: &[u8]) -> Result<Keyring, FormatError> {
        let k: Keyring = serde_json::from_slice(data)
            .map_err(|e| FormatError::invalid("keyring", e.to_string()))?;
        for (site, versions) in &k.keys {
            for (v, hex) in versions {
                if key_from_hex(hex).is_none() {
                    return Err(FormatError::invalid(
                        "keyring",
                        format!("key {site}/v{v} is not 64 hex digits"),
                    ));
                }
            }
        }
        Ok(k)
    }
}

/// How the storage conditions name a key: never the key itself.
pub fn key_ref(site: &str, version: u32) -> String {
    format!("{site}/v{version}")
}

fn aad(version: u32, site: &str, name: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(HEADER + site.len() + 1 + name.len());
    a.extend_from_slice(MAGIC);
    a.extend_from_slice(&version.to_be_bytes());
    a.extend_from_slice(site.as_bytes());
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a
}

/// Seals `object` (stored as `name`) for `site` under its key `version`.
pub fn seal(key: &Key, version: u32, site: &str, name: &str, object: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + object.len() + crypto::OVERHEAD);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
    crypto::seal_into(key, &aad(version, site, name), object, &mut out);
    out
}

/// The key version a sealed copy needs.
pub fn version_of(copy: &[u8]) -> Result<u32, FormatError> {
    if copy.len() < HEADER {
        return Err(FormatError::Truncated("site copy"));
    }
    if &copy[..4] != MAGIC {
        return Err(FormatError::BadMagic("site copy"));
    }
    Ok(u32::from_be_bytes([copy[4], copy[5], copy[6], copy[7]]))
}

/// Opens a copy read back from `site` as `name`; fails if it was changed, moved from another
/// name or site, or sealed under a key the keyring does not have.
pub fn open(
    keyring: &Keyring,
    site: &str,
    name: &str,
    copy: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let version = version_of(copy)?;
    let key = keyring.get(site, version).ok_or_else(|| {
        FormatError::invalid("site copy", format!("no key {}", key_ref(site, version)))
    })?;
    crypto::open(
        &key,
        &aad(version, site, name),
        &copy[HEADER..],
        "site copy",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_open_only_where_they_belong() {
        let mut ring = Keyring::default();
        let (v, key) = ring.current("site-a");
        assert_eq!(v, 1);
        let copy = seal(&key, v, "site-a", "data/ab", b"ciphertext of the client");
        assert_eq!(
            open(&ring, "site-a", "data/ab", &copy).unwrap(),
            b"ciphertext of the client"
        );
        assert!(
            open(&ring, "site-a", "data/cd", &copy).is_err(),
            "moved to another name"
        );
        assert!(
            open(&ring, "site-b", "data/ab", &copy).is_err(),
            "moved to another site"
        );
        let mut bad = copy.clone();
        bad[20] ^= 1;
        assert!(open(&ring, "site-a", "data/ab", &bad).is_err(), "changed");
        assert!(
            open(&ring, "site-a", "data/ab", &copy[..5]).is_err(),
            "truncated"
        );
        assert!(!format!("{ring:?}").contains(&kura_core::id::hex(key.expose())));
    }

    #[test]
    fn rotation_keeps_old_copies_readable() {
        let mut ring = Keyring::default();
        let (v1, k1) = ring.current("s");
        let old = seal(&k1, v1, "s", "n", b"old");
        assert_eq!(ring.rotate("s"), 2);
        let (v2, k2) = ring.current("s");
        assert_eq!(v2, 2);
        assert_ne!(k1, k2);
        let new = seal(&k2, v2, "s", "n", b"new");
        let ring = Keyring::decode(&ring.encode()).unwrap();
        assert_eq!(open(&ring, "s", "n", &old).unwrap(), b"old");
        assert_eq!(open(&ring, "s", "n", &new).unwrap(), b"new");
        assert_eq!(version_of(&new).unwrap(), 2);
        assert_eq!(key_ref("s", 2), "s/v2");
        assert!(Keyring::decode(br#"{"s": {"1": "zz"}}"#).is_err());
    }
}

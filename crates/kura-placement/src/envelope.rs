//! Envelope encryption per site (`docs/requirements/placement.md` requirement 4): the service seals
//! every copy it writes to a site under that site's current key, over the client's own encryption,
//! so a site's operator holds nothing readable and one site's key opens nothing at another. Keys
//! come from the service's [`Keyring`]; rotating a site's key adds a version and makes it current,
//! and the older versions stay to open what they sealed.
//!
//! A copy is sealed in segments of [`SEGMENT`] bytes, so a read of part of an object (a restore
//! reads packs in windows) fetches and opens only the segments it covers:
//!
//! ```text
//! copy    = header | segment 0 | segment 1 | ...        (at least one segment, even when empty)
//! header  = "KSE2" | key version u32 | segment size u32 | object length u64     (all BE)
//! segment = sealed(site key, aad = header | segment number u64 | site | 0 | name, plain part)
//! ```
//!
//! Every segment's AAD holds the whole header and its own number, so a changed header, a
//! segment moved, dropped or taken from another copy, and a copy moved to another name or site
//! all fail to open.

use std::collections::BTreeMap;

use kura_core::FormatError;
use kura_core::crypto::{self, Key};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"KSE2";
/// Bytes of a copy's header.
pub const HEADER: usize = 20;
/// Bytes of the object in one segment.
pub const SEGMENT: u32 = 256 << 10;

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
    kura_core::id::unhex_array(hex).map(Key::from_bytes)
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

/// A copy's header: which key sealed it and how the object is cut into segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The site key's version.
    pub version: u32,
    /// Bytes of the object per segment.
    pub segment: u32,
    /// Bytes of the object.
    pub len: u64,
}

impl Layout {
    fn encode(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&self.version.to_be_bytes());
        h[8..12].copy_from_slice(&self.segment.to_be_bytes());
        h[12..].copy_from_slice(&self.len.to_be_bytes());
        h
    }

    /// Reads a copy's header (its first [`HEADER`] bytes).
    pub fn parse(copy: &[u8]) -> Result<Layout, FormatError> {
        let h = copy
            .get(..HEADER)
            .ok_or(FormatError::Truncated("site copy"))?;
        if &h[..4] != MAGIC {
            return Err(FormatError::BadMagic("site copy"));
        }
        let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&h[12..]);
        let layout = Layout {
            version: word(4),
            segment: word(8),
            len: u64::from_be_bytes(len),
        };
        if layout.segment == 0 {
            return Err(FormatError::invalid("site copy", "segment size 0"));
        }
        Ok(layout)
    }

    /// How many segments the copy has.
    pub fn segments(&self) -> u64 {
        self.len.div_ceil(u64::from(self.segment)).max(1)
    }

    /// Where segment `i` lies in the copy: its offset and length. Saturating: a header read
    /// from a site may claim any length.
    fn sealed_span(&self, i: u64) -> (u64, u64) {
        let seg = u64::from(self.segment);
        let overhead = crypto::OVERHEAD as u64;
        let plain = (self.len - i.saturating_mul(seg).min(self.len)).min(seg);
        let at = (HEADER as u64).saturating_add(i.saturating_mul(seg + overhead));
        (at, plain + overhead)
    }

    /// The bytes of the copy that hold the object's bytes `start..end` (which must lie within
    /// it): an offset and a length, and the number of the first segment they begin with.
    pub fn span(&self, start: u64, end: u64) -> (u64, u64, u64) {
        let seg = u64::from(self.segment);
        let (first, last) = (start / seg, end.saturating_sub(1).max(start) / seg);
        let (at, _) = self.sealed_span(first);
        let (last_at, last_len) = self.sealed_span(last.min(self.segments() - 1));
        (at, last_at.saturating_add(last_len) - at, first)
    }
}

fn aad(header: &[u8; HEADER], segment: u64, site: &str, name: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(HEADER + 8 + site.len() + 1 + name.len());
    a.extend_from_slice(header);
    a.extend_from_slice(&segment.to_be_bytes());
    a.extend_from_slice(site.as_bytes());
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a
}

/// Seals `object` (stored as `name`) for `site` under its key `version`.
pub fn seal(key: &Key, version: u32, site: &str, name: &str, object: &[u8]) -> Vec<u8> {
    seal_in_segments(key, version, site, name, object, SEGMENT)
}

/// [`seal`] with another segment size (copies written by a build with another [`SEGMENT`]).
pub fn seal_in_segments(
    key: &Key,
    version: u32,
    site: &str,
    name: &str,
    object: &[u8],
    segment: u32,
) -> Vec<u8> {
    let sealer = Sealer::with_segment(key, version, site, name, object.len() as u64, segment);
    let mut out = Vec::with_capacity(sealer.sealed_len() as usize);
    out.extend_from_slice(&sealer.header());
    sealer.seal(0, object, &mut out);
    out
}

/// Seals one copy a part at a time, so an object read from a file never needs to be held
/// whole: the header first, then runs of whole segments in order.
#[derive(Clone)]
pub struct Sealer {
    key: Key,
    layout: Layout,
    header: [u8; HEADER],
    site: String,
    name: String,
}

impl Sealer {
    /// A sealer for an object of `len` bytes stored as `name` at `site` under key `version`.
    pub fn new(key: &Key, version: u32, site: &str, name: &str, len: u64) -> Sealer {
        Sealer::with_segment(key, version, site, name, len, SEGMENT)
    }

    fn with_segment(
        key: &Key,
        version: u32,
        site: &str,
        name: &str,
        len: u64,
        segment: u32,
    ) -> Sealer {
        let layout = Layout {
            version,
            segment: segment.max(1),
            len,
        };
        Sealer {
            key: key.clone(),
            header: layout.encode(),
            layout,
            site: site.to_string(),
            name: name.to_string(),
        }
    }

    /// The copy's header: its first [`HEADER`] bytes.
    pub fn header(&self) -> [u8; HEADER] {
        self.header
    }

    /// The copy's layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Bytes of the whole copy.
    pub fn sealed_len(&self) -> u64 {
        let (at, len, _) = self.layout.span(0, self.layout.len);
        at.saturating_add(len)
    }

    /// Seals `plain`, the object's bytes from the start of segment `first` on, into `out`: a
    /// run of whole segments, of which only the object's last may be shorter. The object's
    /// only segment of an empty object is sealed from an empty `plain`.
    pub fn seal(&self, first: u64, plain: &[u8], out: &mut Vec<u8>) {
        let seg = self.layout.segment as usize;
        let mut i = first;
        let mut rest = plain;
        loop {
            let (part, next) = rest.split_at(rest.len().min(seg));
            let aad = aad(&self.header, i, &self.site, &self.name);
            crypto::seal_into(&self.key, &aad, part, out);
            rest = next;
            i += 1;
            if rest.is_empty() {
                break;
            }
        }
    }
}

/// Opens segments read from a copy of `name` at `site`: `sealed` holds whole segments from
/// number `first` on, as [`Layout::span`] located them.
pub fn open_segments(
    keyring: &Keyring,
    site: &str,
    name: &str,
    layout: &Layout,
    first: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let key = keyring.get(site, layout.version).ok_or_else(|| {
        FormatError::invalid(
            "site copy",
            format!("no key {}", key_ref(site, layout.version)),
        )
    })?;
    let header = layout.encode();
    let mut plain = Vec::with_capacity(sealed.len());
    let mut rest = sealed;
    let mut i = first;
    while !rest.is_empty() {
        if i >= layout.segments() {
            return Err(FormatError::invalid(
                "site copy",
                "bytes after the last segment",
            ));
        }
        let (_, len) = layout.sealed_span(i);
        let len = len as usize;
        if rest.len() < len {
            return Err(FormatError::Truncated("site copy"));
        }
        let (this, next) = rest.split_at(len);
        crypto::open_into(
            &key,
            &aad(&header, i, site, name),
            this,
            &mut plain,
            "site copy",
        )?;
        rest = next;
        i += 1;
    }
    Ok(plain)
}

/// Opens a whole copy read back from `site` as `name`; fails if it was changed, truncated,
/// moved from another name or site, or sealed under a key the keyring does not have.
pub fn open(
    keyring: &Keyring,
    site: &str,
    name: &str,
    copy: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let layout = Layout::parse(copy)?;
    let (at, len, _) = layout.span(0, layout.len);
    if copy.len() as u64 != at.saturating_add(len) {
        return Err(FormatError::Truncated("site copy"));
    }
    open_segments(keyring, site, name, &layout, 0, &copy[HEADER..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_sealed_in_runs_of_segments_opens_whole() {
        let mut ring = Keyring::default();
        let (v, key) = ring.current("site-a");
        let object: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        // Segments of 64 bytes, sealed three at a time as a file would be read.
        let sealer = Sealer::with_segment(&key, v, "site-a", "data/ab", 1000, 64);
        let mut copy = sealer.header().to_vec();
        for (n, run) in object.chunks(192).enumerate() {
            sealer.seal(n as u64 * 3, run, &mut copy);
        }
        assert_eq!(copy.len() as u64, sealer.sealed_len());
        assert_eq!(open(&ring, "site-a", "data/ab", &copy).unwrap(), object);
        // Runs out of order do not open.
        let mut swapped = sealer.header().to_vec();
        sealer.seal(3, &object[192..384], &mut swapped);
        sealer.seal(0, &object[..192], &mut swapped);
        sealer.seal(6, &object[384..], &mut swapped);
        assert!(open(&ring, "site-a", "data/ab", &swapped).is_err());
    }

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
        assert!(
            open(&ring, "site-a", "data/ab", &copy[..copy.len() - 1]).is_err(),
            "truncated"
        );
        assert!(!format!("{ring:?}").contains(&kura_core::id::hex(key.expose())));
        let empty = seal(&key, v, "site-a", "data/ab", b"");
        assert_eq!(open(&ring, "site-a", "data/ab", &empty).unwrap(), b"");
        assert!(
            open(&ring, "site-a", "data/ab", &empty[..HEADER]).is_err(),
            "no segment"
        );
    }

    #[test]
    fn parts_open_alone_and_segments_stay_in_place() {
        let mut ring = Keyring::default();
        let (v, key) = ring.current("s");
        let seg = SEGMENT as usize;
        let object: Vec<u8> = (0..seg * 3 + 123).map(|i| (i % 251) as u8).collect();
        let copy = seal(&key, v, "s", "data/ab", &object);
        assert_eq!(open(&ring, "s", "data/ab", &copy).unwrap(), object);
        let layout = Layout::parse(&copy).unwrap();
        assert_eq!(layout.segments(), 4);
        for (start, end) in [
            (0, 1),
            (5, seg as u64 + 9),
            (seg as u64 * 3, object.len() as u64),
        ] {
            let (at, len, first) = layout.span(start, end);
            let part = &copy[at as usize..(at + len) as usize];
            let plain = open_segments(&ring, "s", "data/ab", &layout, first, part).unwrap();
            let skip = (start - first * u64::from(SEGMENT)) as usize;
            assert_eq!(
                &plain[skip..skip + (end - start) as usize],
                &object[start as usize..end as usize]
            );
        }
        // A segment presented as another one, a dropped last segment, a changed length.
        let (at, len, _) = layout.span(0, 1);
        let first = &copy[at as usize..(at + len) as usize];
        assert!(open_segments(&ring, "s", "data/ab", &layout, 1, first).is_err());
        let (at, _, _) = layout.span(seg as u64 * 3, seg as u64 * 3 + 1);
        assert!(open(&ring, "s", "data/ab", &copy[..at as usize]).is_err());
        let mut longer = copy.clone();
        longer[19] ^= 1;
        assert!(open(&ring, "s", "data/ab", &longer).is_err());
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
        assert_eq!(Layout::parse(&new).unwrap().version, 2);
        assert_eq!(key_ref("s", 2), "s/v2");
        assert!(Keyring::decode(br#"{"s": {"1": "zz"}}"#).is_err());
    }
}

//! Content ids.
//!
//! Two kinds of id share one type: a stored file (pack, index, snapshot) is named by the plain
//! BLAKE3 hash of its bytes, so anyone can check a file against its name without keys; a blob
//! (a chunk of file data or a tree) is named by BLAKE3 keyed with a secret derived from the
//! common key, so ids reveal nothing about contents to the storage provider.

use std::fmt;
use std::str::FromStr;

/// A 256-bit content id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// The id of a stored file: the plain BLAKE3 hash of its bytes.
    pub fn of_bytes(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The first 8 hex characters, for display.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a valid id: {0:?}")]
pub struct ParseIdError(pub String);

impl FromStr for Id {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Id, ParseIdError> {
        let bytes = unhex(s).ok_or_else(|| ParseIdError(s.to_string()))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| ParseIdError(s.to_string()))?;
        Ok(Id(arr))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Lower-case hex of any bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Bytes from hex (either case); `None` if `s` is not an even number of hex digits.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Decodes hex that must be exactly `N` bytes (a key, a hash, a signature); `None` otherwise.
pub fn unhex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    unhex(s)?.try_into().ok()
}

/// The most ids [`ids_from_bytes`] takes: a snapshot of 128 TiB in 16 MiB packs.
pub const MAX_ID_LIST: usize = 1 << 23;

/// Reads a list of ids sent as their 32 bytes each, back to back (a snapshot's packs, as the
/// client tells the service).
pub fn ids_from_bytes(data: &[u8]) -> Result<Vec<Id>, crate::FormatError> {
    if !data.len().is_multiple_of(32) {
        return Err(crate::FormatError::invalid(
            "id list",
            format!("{} bytes is not a whole number of 32-byte ids", data.len()),
        ));
    }
    if data.len() / 32 > MAX_ID_LIST {
        return Err(crate::FormatError::invalid(
            "id list",
            format!("more than {MAX_ID_LIST} ids"),
        ));
    }
    Ok(data
        .chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            Id(id)
        })
        .collect())
}

/// The bytes [`ids_from_bytes`] reads.
pub fn ids_to_bytes(ids: &[Id]) -> Vec<u8> {
    ids.iter().flat_map(|id| id.0).collect()
}

/// Defines a 16-byte random identifier type (devices, jobs) shown as 32 hex digits, with
/// `random()`, `Display`, `FromStr` and serde as a hex string.
macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id.
            pub fn random() -> $name {
                $name($crate::crypto::random_bytes())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$crate::id::hex(&self.0))
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::FormatError;
            fn from_str(s: &str) -> Result<Self, $crate::FormatError> {
                let bytes = $crate::id::unhex(s)
                    .ok_or_else(|| $crate::FormatError::invalid($what, s))?;
                let arr: [u8; 16] = bytes
                    .try_into()
                    .map_err(|_| $crate::FormatError::invalid($what, s))?;
                Ok($name(arr))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use random_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_round_trip_and_refuse_partial_ids() {
        let ids = [Id([1; 32]), Id([2; 32])];
        let bytes = ids_to_bytes(&ids);
        assert_eq!(bytes.len(), 64);
        assert_eq!(ids_from_bytes(&bytes).unwrap(), ids);
        assert!(ids_from_bytes(&[]).unwrap().is_empty());
        assert!(ids_from_bytes(&bytes[..63]).is_err());
    }

    #[test]
    fn hex_round_trip() {
        let id = Id::of_bytes(b"kura");
        assert_eq!(id.to_hex().parse::<Id>(), Ok(id));
        assert_eq!(id.short(), id.to_hex()[..8]);
        assert!("zz".parse::<Id>().is_err());
        assert!("abcd".parse::<Id>().is_err());
        assert_eq!(unhex("0aFf"), Some(vec![10, 255]));
        assert_eq!(unhex("0"), None);
    }

    #[test]
    fn serde_as_hex_string() {
        let id = Id([7; 32]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "07".repeat(32)));
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
    }
}

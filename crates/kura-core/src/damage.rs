//! What a check found damaged or missing, as a record kept in the repository: until a repair
//! deals with it, the index leaves those blobs out, so no backup deduplicates against them
//! (it stores them again) and no restore tries them first.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{FormatError, Id};

/// Damage found by one check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// Blobs that failed their check, each as (the pack it was read from, the blob): the same
    /// blob in another pack is not affected.
    pub blobs: BTreeSet<(Id, Id)>,
    /// Packs that are indexed but missing: none of their blobs can be read.
    pub packs: BTreeSet<Id>,
}

impl Damage {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.packs.is_empty()
    }

    /// Adds what `other` found.
    pub fn merge(&mut self, other: Damage) {
        self.blobs.extend(other.blobs);
        self.packs.extend(other.packs);
    }

    /// What this found that `known` does not have yet.
    pub fn beyond(&self, known: &Damage) -> Damage {
        Damage {
            blobs: self.blobs.difference(&known.blobs).copied().collect(),
            packs: self.packs.difference(&known.packs).copied().collect(),
        }
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a record.
    pub fn decode(data: &[u8]) -> Result<Damage, FormatError> {
        serde_json::from_slice(data)
            .map_err(|e| FormatError::invalid("damage record", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_tells_what_is_new() {
        let (p, q, b, c) = (
            Id::of_bytes(b"p"),
            Id::of_bytes(b"q"),
            Id::of_bytes(b"b"),
            Id::of_bytes(b"c"),
        );
        let mut known = Damage::default();
        known.blobs.insert((p, b));
        let mut found = known.clone();
        found.blobs.insert((p, c));
        found.packs.insert(q);
        assert_eq!(Damage::decode(&found.encode()).unwrap(), found);
        let new = found.beyond(&known);
        assert_eq!(new.blobs.len(), 1);
        assert_eq!(new.packs.len(), 1);
        assert!(found.beyond(&found).is_empty());
        known.merge(new);
        assert_eq!(known, found);
        assert!(Damage::decode(b"{").is_err());
    }
}

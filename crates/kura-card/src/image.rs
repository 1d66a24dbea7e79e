//! A card backup as the host keeps it: `KURACB1\n`, the card's opening (header, wrapped key,
//! sealed control information), then every sealed record. The host cannot open any of it; it
//! reads only the plain header to file the backup and to put a chain in order.

use crate::seal::{Header, OPENING_LEN, Opening};

const MAGIC: &[u8; 8] = b"KURACB1\n";

/// Why bytes are not a card backup image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// No `KURACB1` header.
    #[error("not a Kura card backup (no KURACB1 header)")]
    NotImage,
    /// The opening is not one a card writes.
    #[error("the card backup's header is malformed")]
    Header,
    /// Fewer or more record bytes than the header says.
    #[error("the card backup holds {have} record bytes where its header says {want}")]
    Length {
        /// Record bytes present.
        have: usize,
        /// Record bytes the header calls for.
        want: usize,
    },
}

/// One card backup: its opening and its sealed records, each `header.record_len()` long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The opening as the card gave it.
    pub opening: Opening,
    /// The sealed records, one after another.
    pub records: Vec<u8>,
}

impl Image {
    /// The plain header.
    pub fn header(&self) -> &Header {
        &self.opening.header
    }

    /// The sealed records, one by one.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        self.records.chunks(self.header().record_len())
    }

    /// The image's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&self.opening.to_bytes());
        b.extend_from_slice(&self.records);
        b
    }

    /// Reads an image, checking that its length is what its header says.
    pub fn parse(b: &[u8]) -> Result<Image, ImageError> {
        let rest = b.strip_prefix(MAGIC).ok_or(ImageError::NotImage)?;
        let (opening, records) = rest
            .split_at_checked(OPENING_LEN)
            .ok_or(ImageError::Header)?;
        let opening = Opening::parse(opening).ok_or(ImageError::Header)?;
        let want = (opening.header.records as usize)
            .checked_mul(opening.header.record_len())
            .ok_or(ImageError::Header)?;
        if records.len() != want {
            return Err(ImageError::Length {
                have: records.len(),
                want,
            });
        }
        Ok(Image {
            opening,
            records: records.to_vec(),
        })
    }
}

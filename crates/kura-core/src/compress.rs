//! zstd compression of blob payloads, with a bounded decoder.

use crate::FormatError;

/// How a blob payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is (compression did not make it smaller).
    None = 0,
    /// zstd frame.
    Zstd = 1,
}

impl Compression {
    /// The stored byte's meaning.
    pub fn from_u8(b: u8) -> Result<Compression, FormatError> {
        match b {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            _ => Err(FormatError::invalid(
                "blob entry",
                format!("unknown compression {b}"),
            )),
        }
    }
}

/// A reusable zstd compression context (one per worker thread).
pub struct Compressor {
    inner: zstd::bulk::Compressor<'static>,
}

impl Compressor {
    /// A context at this zstd level (3 is zstd's default).
    pub fn new(level: i32) -> Compressor {
        Compressor {
            // Creating a context fails only on allocation failure or a level out of range,
            // and levels come from validated configuration.
            inner: zstd::bulk::Compressor::new(level).expect("zstd context"),
        }
    }

    /// Compresses `data` into `out` (cleared first) if that makes it smaller; returns how it
    /// is stored. When compression does not help, `out` holds a copy of `data`.
    pub fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> Compression {
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        match self.inner.compress_to_buffer(data, out) {
            Ok(n) if n < data.len() => Compression::Zstd,
            _ => {
                out.clear();
                out.extend_from_slice(data);
                Compression::None
            }
        }
    }
}

thread_local! {
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// Decodes a stored payload that must expand to exactly `raw_len` bytes. A frame that claims
/// more is refused before it is expanded (no decompression bombs).
pub fn decompress(
    stored: &[u8],
    compression: Compression,
    raw_len: usize,
) -> Result<Vec<u8>, FormatError> {
    let out = match compression {
        Compression::None => stored.to_vec(),
        // One decompression context per thread: creating one per blob costs more than
        // decompressing a small blob.
        Compression::Zstd => DCTX
            .with(|d| match d.borrow_mut().as_mut() {
                Some(d) => d.decompress(stored, raw_len),
                None => zstd::bulk::decompress(stored, raw_len),
            })
            .map_err(|e| FormatError::invalid("compressed blob", e.to_string()))?,
    };
    if out.len() != raw_len {
        return Err(FormatError::invalid(
            "compressed blob",
            format!("expands to {} bytes, expected {raw_len}", out.len()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_incompressible_fallback() {
        let mut c = Compressor::new(3);
        let mut out = Vec::new();
        let text = b"kura kura kura kura kura kura kura kura".repeat(100);
        assert_eq!(c.compress(&text, &mut out), Compression::Zstd);
        assert!(out.len() < text.len());
        assert_eq!(
            decompress(&out, Compression::Zstd, text.len()).unwrap(),
            text
        );
        assert!(decompress(&out, Compression::Zstd, text.len() - 1).is_err());
        let random: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let kind = c.compress(&random, &mut out);
        assert_eq!(decompress(&out, kind, random.len()).unwrap(), random);
        assert!(decompress(b"garbage", Compression::Zstd, 10).is_err());
    }
}

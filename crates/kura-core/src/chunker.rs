//! Content-defined chunking: FastCDC (2020) with normalisation level 1 and a per-repository
//! gear-table seed.
//!
//! Cut points depend only on the bytes since the previous cut, so an insertion moves the
//! boundaries near it and the rest re-synchronise; a secret seed keeps chunk sizes from
//! fingerprinting known files.

use fastcdc::v2020::{MASKS, cut_gear, get_gear_with_seed, logarithm2};
use serde::{Deserialize, Serialize};

/// Chunk size bounds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is shorter, except the last of a file.
    pub min: u32,
    /// The target average.
    pub avg: u32,
    /// No chunk is longer.
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 512 KiB / 1 MiB / 8 MiB, as restic: big enough to keep the index small, small enough to dedup.
    fn default() -> Self {
        ChunkerParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Whether FastCDC accepts these bounds.
    pub fn is_valid(&self) -> bool {
        use fastcdc::v2020::*;
        (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max
    }
}

/// A chunker for one repository.
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl Chunker {
    /// A chunker with these bounds and gear seed. Panics on bounds that are not
    /// [`ChunkerParams::is_valid`]; callers validate configuration first.
    pub fn new(params: ChunkerParams, seed: u64) -> Chunker {
        assert!(params.is_valid(), "invalid chunker parameters {params:?}");
        let bits = logarithm2(params.avg);
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Chunker {
            min: params.min as usize,
            avg: params.avg as usize,
            max: params.max as usize,
            mask_s: MASKS[(bits + 1) as usize],
            mask_l: MASKS[(bits - 1) as usize],
            gear,
            gear_ls,
        }
    }

    /// The largest chunk this chunker makes.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// The length of the chunk that starts at `data[0]`. `data` must hold at least
    /// [`Chunker::max_size`] bytes, or everything that is left of the stream.
    pub fn next_len(&self, data: &[u8]) -> usize {
        let (_, len) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        len
    }

    /// The chunks of a whole buffer.
    pub fn chunks<'a>(&'a self, mut data: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        std::iter::from_fn(move || {
            if data.is_empty() {
                return None;
            }
            let (chunk, rest) = data.split_at(self.next_len(data));
            data = rest;
            Some(chunk)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 256,
            avg: 1024,
            max: 4096,
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        let c = Chunker::new(small(), 7);
        let data = pseudo_random(100_000, 1);
        let chunks: Vec<&[u8]> = c.chunks(&data).collect();
        assert_eq!(chunks.concat(), data);
        for ch in &chunks[..chunks.len() - 1] {
            assert!(ch.len() >= 256 && ch.len() <= 4096, "{}", ch.len());
        }
        let avg = data.len() / chunks.len();
        assert!((512..=2048).contains(&avg), "average {avg}");
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(100_000, 2);
        let a: Vec<usize> = Chunker::new(small(), 1)
            .chunks(&data)
            .map(|c| c.len())
            .collect();
        let b: Vec<usize> = Chunker::new(small(), 2)
            .chunks(&data)
            .map(|c| c.len())
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn default_params_are_valid() {
        assert!(ChunkerParams::default().is_valid());
        assert!(
            !ChunkerParams {
                min: 10,
                avg: 5,
                max: 1
            }
            .is_valid()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// After an insertion, the chunks after the edit are the same chunks as before.
        #[test]
        fn boundaries_resynchronise_after_insertion(
            seed in any::<u64>(),
            at in 0usize..60_000,
            insert in proptest::collection::vec(any::<u8>(), 1..2000),
        ) {
            let c = Chunker::new(small(), seed);
            let original = pseudo_random(80_000, seed);
            let mut edited = original[..at].to_vec();
            edited.extend_from_slice(&insert);
            edited.extend_from_slice(&original[at..]);
            let before: Vec<&[u8]> = c.chunks(&original).collect();
            let after: Vec<&[u8]> = c.chunks(&edited).collect();
            // Chunks that end well past the edit (beyond one max-size window) are shared.
            let mut end = 0;
            let tail_before: Vec<&[u8]> = before.iter().copied().filter(|ch| { end += ch.len(); end > at + 3 * 4096 }).collect();
            let shared = tail_before.iter().filter(|ch| after.contains(ch)).count();
            prop_assert!(tail_before.len() <= 1 || shared + 1 >= tail_before.len(),
                "only {} of {} later chunks shared", shared, tail_before.len());
        }

        /// Streaming in windows of at least max size gives the same chunks as one buffer.
        #[test]
        fn windowed_cutting_matches_whole_buffer(seed in any::<u64>(), len in 0usize..50_000) {
            let c = Chunker::new(small(), seed);
            let data = pseudo_random(len, seed ^ 5);
            let whole: Vec<usize> = c.chunks(&data).map(|x| x.len()).collect();
            let mut pos = 0;
            let mut windowed = Vec::new();
            while pos < data.len() {
                let end = (pos + c.max_size()).min(data.len());
                let n = c.next_len(&data[pos..end]);
                windowed.push(n);
                pos += n;
            }
            prop_assert_eq!(whole, windowed);
        }
    }
}

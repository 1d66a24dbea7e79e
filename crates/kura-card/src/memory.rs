//! The card's memory: fixed-size pages and the changed-page table beside them.
//!
//! The table lives outside the pages, so a backup never carries it and a restore never
//! overwrites it (card.md requirement 1).

/// Smallest page a card may have.
pub const MIN_PAGE: usize = 16;
/// Largest page a card may have: one sealed record of it still fits a short APDU.
pub const MAX_PAGE: usize = 192;
/// Most pages a card may have (page numbers are 16-bit in records).
pub const MAX_PAGES: usize = 4096;

/// Pages of memory and which of them were written since the last completed backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    page_size: usize,
    bytes: Vec<u8>,
    changed: Vec<bool>,
}

impl Memory {
    /// Blank memory of `pages` pages of `page_size` bytes, none marked changed.
    pub fn blank(page_size: usize, pages: usize) -> Memory {
        Memory {
            page_size,
            bytes: vec![0; page_size * pages],
            changed: vec![false; pages],
        }
    }

    /// Memory from its saved parts; `None` when they do not fit together.
    pub fn from_parts(page_size: usize, bytes: Vec<u8>, changed: Vec<bool>) -> Option<Memory> {
        let fits = (MIN_PAGE..=MAX_PAGE).contains(&page_size)
            && (1..=MAX_PAGES).contains(&changed.len())
            && bytes.len() == page_size * changed.len();
        fits.then_some(Memory {
            page_size,
            bytes,
            changed,
        })
    }

    /// Bytes per page.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.changed.len()
    }

    /// All the bytes, page after page.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The changed-page table, one flag per page.
    pub fn changed(&self) -> &[bool] {
        &self.changed
    }

    /// The numbers of the pages written since the table was last cleared.
    pub fn changed_pages(&self) -> Vec<u16> {
        (0..self.pages())
            .filter(|&p| self.changed[p])
            .map(|p| p as u16)
            .collect()
    }

    /// `len` bytes from `offset`; `None` past the end.
    pub fn read(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.bytes.get(offset..offset.checked_add(len)?)
    }

    /// Writes `data` at `offset` and marks every page it touches as changed; `false` (and
    /// nothing written) past the end.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> bool {
        let Some(end) = offset.checked_add(data.len()) else {
            return false;
        };
        let Some(target) = self.bytes.get_mut(offset..end) else {
            return false;
        };
        target.copy_from_slice(data);
        if !data.is_empty() {
            for p in offset / self.page_size..=(end - 1) / self.page_size {
                self.changed[p] = true;
            }
        }
        true
    }

    /// Page `page`'s bytes.
    pub fn page(&self, page: usize) -> &[u8] {
        &self.bytes[page * self.page_size..(page + 1) * self.page_size]
    }

    /// Puts a restored page back without marking it: restored pages are not changes.
    pub fn restore_page(&mut self, page: usize, contents: &[u8]) {
        self.bytes[page * self.page_size..(page + 1) * self.page_size].copy_from_slice(contents);
    }

    /// Clears the changed-page table.
    pub fn clear_changed(&mut self) {
        self.changed.fill(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn exactly_the_pages_a_write_touches_are_marked(
            writes in proptest::collection::vec((0usize..1100, 0usize..200), 0..20)
        ) {
            let mut m = Memory::blank(16, 64);
            let mut expect = [false; 64];
            for (offset, len) in writes {
                let data = vec![0xAB; len];
                let fits = offset + len <= 1024;
                prop_assert_eq!(m.write(offset, &data), fits);
                if fits && len > 0 {
                    expect[offset / 16..=(offset + len - 1) / 16].fill(true);
                }
            }
            prop_assert_eq!(m.changed(), &expect[..]);
            m.restore_page(3, &[1; 16]);
            prop_assert_eq!(m.changed()[3], expect[3]);
            m.clear_changed();
            prop_assert!(m.changed_pages().is_empty());
        }
    }
}

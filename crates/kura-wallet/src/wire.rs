//! The one byte layout every wallet format uses: fields in order, each variable field behind a
//! four-byte big-endian length, so a reader never guesses where one ends.

use crate::WalletError;

/// Appends fields.
#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
}

/// Takes fields in order; every shortfall is `WalletError::Malformed(what)`.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { rest: b, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], WalletError> {
        let (h, t) = self
            .rest
            .split_at_checked(n)
            .ok_or(WalletError::Malformed(self.what))?;
        self.rest = t;
        Ok(h)
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], WalletError> {
        let n = u32::from_be_bytes(self.array()?);
        self.take(n as usize)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WalletError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub(crate) fn u64(&mut self) -> Result<u64, WalletError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn u8(&mut self) -> Result<u8, WalletError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn end(self) -> Result<(), WalletError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WalletError::Malformed(self.what))
        }
    }
}

//! The wallet's holdings and its capacity (value-vault.md requirement 1): values and
//! certificates, listed whole or filtered, within a fixed number of bytes as a card's memory.

use crate::WalletError;
use crate::certificate::Certificate;
use crate::record::ValueRecord;

/// One thing a wallet holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// A value on the device.
    Value(ValueRecord),
    /// A certificate for a value deposited at the vault.
    Certificate(Certificate),
}

impl Holding {
    /// The bytes it takes.
    pub fn size(&self) -> usize {
        match self {
            Holding::Value(r) => r.to_bytes().len(),
            Holding::Certificate(c) => c.to_bytes().len(),
        }
    }
}

/// What to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only certificates.
    pub certificates_only: bool,
    /// Only values (or certificates whose digest shows it) of this kind.
    pub kind: Option<String>,
    /// Only those whose validity ends on or before this day.
    pub ending_by: Option<jiff::civil::Date>,
}

impl Filter {
    /// Whether `h` passes.
    pub fn admits(&self, h: &Holding) -> bool {
        let (kind, until) = match h {
            Holding::Value(r) => (Some(r.kind.as_str()), r.validity.as_ref().map(|v| v.until)),
            Holding::Certificate(c) => (c.digest.get(crate::record::Field::Kind), c.digest.until()),
        };
        (!self.certificates_only || matches!(h, Holding::Certificate(_)))
            && self.kind.as_deref().is_none_or(|k| kind == Some(k))
            && self
                .ending_by
                .is_none_or(|by| until.is_some_and(|u| u <= by))
    }
}

/// A wallet: numbered holdings within `capacity` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    /// Bytes it can hold.
    pub capacity: usize,
    /// What it holds, by number.
    pub holdings: Vec<(u64, Holding)>,
    /// The number the next holding gets (numbers are never reused).
    pub next: u64,
}

impl Wallet {
    /// An empty wallet of `capacity` bytes.
    pub fn new(capacity: usize) -> Wallet {
        Wallet {
            capacity,
            holdings: Vec::new(),
            next: 1,
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.holdings.iter().map(|(_, h)| h.size()).sum()
    }

    /// Bytes free.
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.used())
    }

    /// Adds `h`; refuses it, with how much room is missing, when it does not fit.
    pub fn add(&mut self, h: Holding) -> Result<u64, WalletError> {
        let need = h.size();
        if need > self.free() {
            return Err(WalletError::NoRoom {
                need,
                free: self.free(),
            });
        }
        let id = self.next;
        self.next += 1;
        self.holdings.push((id, h));
        Ok(id)
    }

    /// Takes holding `id` out.
    pub fn remove(&mut self, id: u64) -> Result<Holding, WalletError> {
        let i = self
            .holdings
            .iter()
            .position(|(n, _)| *n == id)
            .ok_or(WalletError::NotHeld(id))?;
        Ok(self.holdings.remove(i).1)
    }

    /// Replaces holding `id` with `h`, if it fits in the room `id` leaves.
    pub fn replace(&mut self, id: u64, h: Holding) -> Result<(), WalletError> {
        let i = self
            .holdings
            .iter()
            .position(|(n, _)| *n == id)
            .ok_or(WalletError::NotHeld(id))?;
        let free = self.free() + self.holdings[i].1.size();
        if h.size() > free {
            return Err(WalletError::NoRoom {
                need: h.size(),
                free,
            });
        }
        self.holdings[i].1 = h;
        Ok(())
    }

    /// Spends `amount` from value `id`'s balance.
    pub fn spend(&mut self, id: u64, amount: u64) -> Result<u64, WalletError> {
        let h = self
            .holdings
            .iter_mut()
            .find(|(n, _)| *n == id)
            .ok_or(WalletError::NotHeld(id))?;
        let Holding::Value(r) = &mut h.1 else {
            return Err(WalletError::NotHeld(id));
        };
        r.balance = r
            .balance
            .checked_sub(amount)
            .ok_or(WalletError::Balance { balance: r.balance })?;
        Ok(r.balance)
    }

    /// The holdings `filter` admits.
    pub fn list<'a>(&'a self, filter: &'a Filter) -> impl Iterator<Item = &'a (u64, Holding)> {
        self.holdings.iter().filter(|(_, h)| filter.admits(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::ticket;

    #[test]
    fn a_wallet_holds_what_fits_and_lists_by_filter() {
        let t = ticket();
        let size = Holding::Value(t.clone()).size();
        let mut w = Wallet::new(size * 2 + 10);
        let a = w.add(Holding::Value(t.clone())).unwrap();
        let mut prepaid = t.clone();
        prepaid.kind = "prepaid".into();
        prepaid.balance = 3000;
        prepaid.validity = None;
        let b = w.add(Holding::Value(prepaid.clone())).unwrap();
        assert!(matches!(
            w.add(Holding::Value(t.clone())),
            Err(WalletError::NoRoom { .. })
        ));
        let soon = Filter {
            ending_by: Some(jiff::civil::date(2026, 12, 31)),
            ..Filter::default()
        };
        assert_eq!(w.list(&soon).map(|(n, _)| *n).collect::<Vec<_>>(), [a]);
        let prepaid_only = Filter {
            kind: Some("prepaid".into()),
            ..Filter::default()
        };
        assert_eq!(w.list(&prepaid_only).count(), 1);
        assert_eq!(w.spend(b, 1000).unwrap(), 2000);
        assert!(matches!(
            w.spend(b, 5000),
            Err(WalletError::Balance { balance: 2000 })
        ));
        w.remove(a).unwrap();
        assert!(w.remove(a).is_err());
        let certs = Filter {
            certificates_only: true,
            ..Filter::default()
        };
        assert_eq!(w.list(&certs).count(), 0);
    }
}

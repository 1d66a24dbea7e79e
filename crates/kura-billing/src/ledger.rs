//! The postings of every money move, for a double-entry ledger that is only ever appended to.
//!
//! Accounts:
//!
//! - `receivable:<user>`: what the user owes;
//! - `unsettled`: charges issued whose objection period is still open;
//! - `held`: charges the user objected to, until the operator resolves them;
//! - `revenue`: charges that stand.
//!
//! Each transaction's debits equal its credits, so the whole ledger always balances, and a
//! charge's way through the accounts shows where it stands.

use serde::{Deserialize, Serialize};

use crate::BillingError;

/// One posting: an amount debited or credited to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// The account.
    pub account: String,
    /// Debited (at least 0).
    pub debit: i64,
    /// Credited (at least 0).
    pub credit: i64,
}

fn debit(account: impl Into<String>, amount: i64) -> Posting {
    Posting {
        account: account.into(),
        debit: amount,
        credit: 0,
    }
}

fn credit(account: impl Into<String>, amount: i64) -> Posting {
    Posting {
        account: account.into(),
        debit: 0,
        credit: amount,
    }
}

/// The user's receivable account.
pub fn receivable(user: i64) -> String {
    format!("receivable:{user}")
}

/// Issuing a charge: the user owes it, not yet settled. Nothing moves for a zero charge.
pub fn issue(user: i64, amount: i64) -> Vec<Posting> {
    if amount == 0 {
        return Vec::new();
    }
    vec![debit(receivable(user), amount), credit("unsettled", amount)]
}

/// The objection period ended without an objection: the charge stands.
pub fn settle(amount: i64) -> Vec<Posting> {
    if amount == 0 {
        return Vec::new();
    }
    vec![debit("unsettled", amount), credit("revenue", amount)]
}

/// The user objected: the charge is held.
pub fn hold(amount: i64) -> Vec<Posting> {
    if amount == 0 {
        return Vec::new();
    }
    vec![debit("unsettled", amount), credit("held", amount)]
}

/// The operator resolved a held charge of `amount`: it stands at `kept` (the whole of it when
/// upheld, nothing when cancelled); the rest is taken off what the user owes.
pub fn resolve(user: i64, amount: i64, kept: i64) -> Result<Vec<Posting>, BillingError> {
    if !(0..=amount).contains(&kept) {
        return Err(BillingError::Invalid(format!(
            "the charge can be kept at 0 to {amount}, not {kept}"
        )));
    }
    let mut p = Vec::new();
    if amount > 0 {
        p.push(debit("held", amount));
    }
    if kept > 0 {
        p.push(credit("revenue", kept));
    }
    if amount - kept > 0 {
        p.push(credit(receivable(user), amount - kept));
    }
    Ok(p)
}

/// Whether debits equal credits and no amount is negative.
pub fn balanced(postings: &[Posting]) -> bool {
    let (mut d, mut c) = (0i128, 0i128);
    for p in postings {
        if p.debit < 0 || p.credit < 0 {
            return false;
        }
        d += i128::from(p.debit);
        c += i128::from(p.credit);
    }
    d == c
}

/// Each account's balance (debits less credits), by account.
pub fn balances(postings: &[Posting]) -> std::collections::BTreeMap<String, i64> {
    let mut out = std::collections::BTreeMap::new();
    for p in postings {
        *out.entry(p.account.clone()).or_insert(0) += p.debit - p.credit;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_charge_through_its_life_balances() {
        let mut all = issue(7, 520);
        all.extend(settle(520));
        assert!(balanced(&all));
        let b = balances(&all);
        assert_eq!(b["receivable:7"], 520);
        assert_eq!(b["revenue"], -520);
        assert_eq!(b["unsettled"], 0);
    }

    #[test]
    fn an_objection_holds_then_resolves() {
        let mut all = issue(7, 520);
        all.extend(hold(520));
        assert_eq!(balances(&all)["held"], -520);
        all.extend(resolve(7, 520, 200).unwrap());
        assert!(balanced(&all));
        let b = balances(&all);
        assert_eq!((b["held"], b["revenue"], b["receivable:7"]), (0, -200, 200));
        assert!(resolve(7, 520, 521).is_err());
        assert!(resolve(7, 520, -1).is_err());
        assert!(issue(7, 0).is_empty() && settle(0).is_empty());
    }

    proptest! {
        #[test]
        fn every_transaction_balances(user in 0i64..1000, amount in 0i64..1 << 40, kept_share in 0u8..=100) {
            let kept = amount / 100 * i64::from(kept_share);
            prop_assert!(balanced(&issue(user, amount)));
            prop_assert!(balanced(&settle(amount)));
            prop_assert!(balanced(&hold(amount)));
            prop_assert!(balanced(&resolve(user, amount, kept).unwrap()));
        }
    }
}

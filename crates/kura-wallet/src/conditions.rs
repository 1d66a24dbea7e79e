//! Backing values up to the vault by conditions the owner can edit (value-vault.md
//! requirement 9), and what happens when a value arriving or coming back does not fit
//! (requirement 10): which values to deposit, and whether they free enough room.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::WalletError;
use crate::certificate::Certificate;
use crate::escrow::Rule;
use crate::record::{Digest, Field, ValueRecord};
use crate::wallet::{Holding, Wallet};

/// Which values the wallet backs up by itself. Each condition that is set is checked; `rule`
/// says whether a value must meet all of them or any one. A condition missing from a saved
/// file is not set (the shipped defaults are for a wallet that has none saved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Values of these kinds (empty: not a condition).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Values of at least this many bytes.
    #[serde(default)]
    pub min_bytes: Option<usize>,
    /// Values larger than this share (0 to 1) of the free memory.
    #[serde(default)]
    pub over_free_share: Option<f64>,
    /// Values not needed soon: valid for more than this many days yet, or always.
    #[serde(default)]
    pub ending_after_days: Option<i64>,
    /// Values held for at least this many days.
    #[serde(default)]
    pub held_days: Option<i64>,
    /// All the set conditions, or any one.
    #[serde(default = "any")]
    pub rule: Rule,
    /// How often a periodic auto-backup runs, in days.
    #[serde(default)]
    pub every_days: Option<i64>,
}

fn any() -> Rule {
    Rule::Any
}

impl Default for Conditions {
    /// Shipped defaults: values held a month, valid for two more months (or always), or
    /// taking more than half the free memory; a periodic run weekly.
    fn default() -> Conditions {
        Conditions {
            kinds: Vec::new(),
            min_bytes: None,
            over_free_share: Some(0.5),
            ending_after_days: Some(60),
            held_days: Some(30),
            rule: Rule::Any,
            every_days: Some(7),
        }
    }
}

/// What to do when a value arriving or coming back does not fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shortage {
    /// Refuse with a message; nothing changes.
    #[default]
    Abort,
    /// Deposit values chosen by the conditions until it fits, then go on.
    Backup,
    /// Deposit the values the owner picks.
    Choose,
}

impl std::str::FromStr for Shortage {
    type Err = String;
    fn from_str(s: &str) -> Result<Shortage, String> {
        match s {
            "abort" => Ok(Shortage::Abort),
            "backup" => Ok(Shortage::Backup),
            "choose" => Ok(Shortage::Choose),
            _ => Err(format!("{s:?}: abort, backup or choose")),
        }
    }
}

/// One value as the conditions see it.
pub struct Candidate<'a> {
    /// Its number.
    pub id: u64,
    /// The record.
    pub record: &'a ValueRecord,
    /// The bytes it takes.
    pub size: usize,
    /// The day the wallet got it, if known.
    pub since: Option<Date>,
}

impl Conditions {
    /// Whether `c` meets the conditions with `free` bytes free on `today`. With no condition
    /// set, nothing is chosen.
    pub fn admits(&self, c: &Candidate<'_>, free: usize, today: Date) -> bool {
        let days = |d: i64| jiff::Span::new().try_days(d).ok();
        let checks = [
            (!self.kinds.is_empty()).then(|| self.kinds.contains(&c.record.kind)),
            self.min_bytes.map(|m| c.size >= m),
            self.over_free_share
                .map(|s| c.size as f64 > s * free as f64),
            self.ending_after_days.map(|d| {
                c.record.validity.as_ref().is_none_or(|v| {
                    days(d).is_some_and(|span| v.until > today.saturating_add(span))
                })
            }),
            self.held_days.map(|d| {
                c.since
                    .is_some_and(|s| days(d).is_some_and(|span| s.saturating_add(span) <= today))
            }),
        ];
        let set = checks.iter().flatten();
        match self.rule {
            Rule::All => set.clone().count() > 0 && set.clone().all(|ok| *ok),
            Rule::Any => set.clone().any(|ok| *ok),
        }
    }

    /// The values of `wallet` that meet the conditions on `today`, largest first (each
    /// deposit then frees the most room). `since` says when the wallet got a value.
    pub fn select(
        &self,
        wallet: &Wallet,
        since: impl Fn(u64) -> Option<Date>,
        today: Date,
    ) -> Vec<u64> {
        let free = wallet.free();
        let mut chosen: Vec<_> = candidates(wallet, since)
            .filter(|c| self.admits(c, free, today))
            .map(|c| (c.size, c.id))
            .collect();
        chosen.sort_by(|a, b| b.cmp(a));
        chosen.into_iter().map(|(_, id)| id).collect()
    }
}

/// The values of `wallet`.
pub fn candidates<'a>(
    wallet: &'a Wallet,
    since: impl Fn(u64) -> Option<Date> + 'a,
) -> impl Iterator<Item = Candidate<'a>> + 'a {
    wallet.holdings.iter().filter_map(move |(id, h)| match h {
        Holding::Value(record) => Some(Candidate {
            id: *id,
            record,
            size: h.size(),
            since: since(*id),
        }),
        Holding::Certificate(_) => None,
    })
}

/// The bytes depositing `record` frees: the record less the certificate that takes its place
/// (whose digest carries `fields`).
pub fn freed_by(record: &ValueRecord, fields: &[Field]) -> usize {
    let cert = Certificate {
        digest: Digest::of(record, fields),
        payload_hash: [0; 32],
        counter: 0,
        vault: [0; 32],
        signature: [0; 64],
    };
    record
        .to_bytes()
        .len()
        .saturating_sub(cert.to_bytes().len())
}

/// The first of `chosen` whose deposits leave room for `need` bytes in `wallet` (each
/// deposit replacing a value by its certificate); refused, saying how much the most they
/// could free falls short, when all of them are not enough.
pub fn plan(
    wallet: &Wallet,
    chosen: &[u64],
    fields: &[Field],
    need: usize,
) -> Result<Vec<u64>, WalletError> {
    let mut free = wallet.free();
    let mut plan = Vec::new();
    for id in chosen {
        if free >= need {
            break;
        }
        if plan.contains(id) {
            continue;
        }
        if let Some((_, Holding::Value(r))) = wallet.holdings.iter().find(|(n, _)| n == id) {
            free += freed_by(r, fields);
            plan.push(*id);
        }
    }
    if free < need {
        return Err(WalletError::NoRoom { need, free });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DEFAULT_DIGEST;
    use crate::record::tests::ticket;

    #[test]
    fn conditions_choose_by_kind_size_expiry_and_holding_time_combined() {
        let today = jiff::civil::date(2026, 12, 1);
        let mut w = Wallet::new(100_000);
        let mut big = ticket();
        big.remarks = "x".repeat(2000);
        big.kind = "concert-ticket".into();
        big.validity = None;
        let mut t = ticket(); // valid until 2026-12-24
        t.kind = "movie-ticket".into();
        let (a, b) = (
            w.add(Holding::Value(t.clone())).unwrap(),
            w.add(Holding::Value(big)).unwrap(),
        );
        let none = Conditions {
            kinds: vec![],
            min_bytes: None,
            over_free_share: None,
            ending_after_days: None,
            held_days: None,
            rule: Rule::Any,
            every_days: None,
        };
        assert!(
            none.select(&w, |_| None, today).is_empty(),
            "no condition, no choice"
        );
        let by_kind = Conditions {
            kinds: vec!["concert-ticket".into()],
            ..none.clone()
        };
        assert_eq!(by_kind.select(&w, |_| None, today), [b]);
        let long_held = Conditions {
            held_days: Some(30),
            ..none.clone()
        };
        let since = |id| (id == a).then(|| jiff::civil::date(2026, 10, 1));
        assert_eq!(long_held.select(&w, since, today), [a]);
        let not_soon = Conditions {
            ending_after_days: Some(60),
            ..none.clone()
        };
        assert_eq!(
            not_soon.select(&w, |_| None, today),
            [b],
            "a's validity ends within 60 days"
        );
        let both = Conditions {
            rule: Rule::All,
            held_days: Some(30),
            ending_after_days: Some(60),
            ..none.clone()
        };
        assert!(both.select(&w, since, today).is_empty());
        let any = Conditions {
            rule: Rule::Any,
            ..both
        };
        assert_eq!(any.select(&w, since, today), [b, a], "largest first");
        let big_share = Conditions {
            over_free_share: Some(0.01),
            ..none
        };
        assert_eq!(big_share.select(&w, |_| None, today), [b]);
    }

    #[test]
    fn conditions_unset_stay_unset_when_saved_and_read_back() {
        let c = Conditions {
            held_days: None,
            kinds: vec!["prepaid".into()],
            ..Conditions::default()
        };
        let back: Conditions = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let sparse: Conditions = serde_json::from_str(r#"{"kinds":["prepaid"]}"#).unwrap();
        assert_eq!(sparse.held_days, None);
        assert_eq!(sparse.rule, Rule::Any);
    }

    #[test]
    fn a_plan_deposits_only_what_is_needed_or_says_it_cannot_free_enough() {
        let mut t = ticket();
        t.remarks = "seat map and terms ".repeat(20);
        // A small value frees nothing: its certificate is about as large.
        assert_eq!(freed_by(&ticket(), &DEFAULT_DIGEST), 0);
        let size = Holding::Value(t.clone()).size();
        let mut w = Wallet::new(size * 3);
        let ids: Vec<_> = (0..3)
            .map(|_| w.add(Holding::Value(t.clone())).unwrap())
            .collect();
        let freed = freed_by(&t, &DEFAULT_DIGEST);
        assert!(freed > 0 && freed < size);
        assert_eq!(plan(&w, &ids, &DEFAULT_DIGEST, freed).unwrap(), [ids[0]]);
        assert_eq!(
            plan(&w, &ids, &DEFAULT_DIGEST, freed + 1).unwrap(),
            [ids[0], ids[1]]
        );
        let twice = [ids[0], ids[0], ids[0]];
        assert!(
            plan(&w, &twice, &DEFAULT_DIGEST, freed + 1).is_err(),
            "a value picked twice frees its room once"
        );
        assert!(matches!(
            plan(&w, &ids, &DEFAULT_DIGEST, 3 * freed + 1),
            Err(WalletError::NoRoom { .. })
        ));
    }
}

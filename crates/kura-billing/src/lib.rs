//! The billing cycle of the Kura service (`docs/requirements/placement.md` requirement 11), as pure
//! logic:
//!
//! - [`Prices`]: the price table from the service configuration: per membership level a
//!   monthly fee and a price per stored GB-month, and a discount (or surcharge) per incident
//!   the checks found in the user's data;
//! - [`Period`]: the calendar month a settlement date settles;
//! - [`charge`]: the lines of a user's charge for a period;
//! - [`ledger`]: the postings of every money move (issue, settle, hold on objection,
//!   resolution), each transaction balanced, for an append-only double-entry ledger;
//! - [`statement_text`]: what the user is sent ([`Statement`] and its parts are the
//!   API's types, `kura_api::statement`, re-exported here).
//!
//! Money is an integer number of the currency's smallest unit, never a float.

pub mod ledger;

use std::collections::BTreeMap;

pub use kura_api::statement::{Line, Period, Statement, Status, money};
use kura_core::notice::IncidentKind;
use serde::{Deserialize, Serialize};

/// A billing failure.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The price table has no price for a user's level.
    #[error("no price for level {0:?} in [billing] (add a [[billing.levels]] entry for it)")]
    NoPrice(String),
    /// A number does not fit.
    #[error("the charge for {0} does not fit in 64 bits")]
    Overflow(String),
    /// A period or date that cannot be used.
    #[error("{0}")]
    Invalid(String),
}

/// The prices of one membership level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelPrice {
    /// The level (as the placement rule table names it).
    pub level: String,
    /// The fee per month.
    #[serde(default)]
    pub monthly: i64,
    /// The price per gigabyte (10^9 bytes) stored for a month.
    #[serde(default)]
    pub per_gb_month: i64,
}

/// The price table: the `[billing]` part of the service configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// The currency's code, as statements show it.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Digits after the decimal point of the currency (0 for JPY, 2 for EUR): amounts are
    /// counted in its smallest unit.
    #[serde(default)]
    pub decimals: u32,
    /// Days a user has to object to a statement.
    #[serde(default = "default_objection_days")]
    pub objection_days: u32,
    /// Prices per level.
    #[serde(default)]
    pub levels: Vec<LevelPrice>,
    /// Amount per incident in the period, by kind (`media_fault`, `tampering`, `lost`,
    /// `fraudulent_site`): negative for a discount, positive for a surcharge.
    #[serde(default)]
    pub incidents: BTreeMap<IncidentKind, i64>,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            currency: default_currency(),
            decimals: 0,
            objection_days: default_objection_days(),
            levels: Vec::new(),
            incidents: BTreeMap::new(),
        }
    }
}

fn default_currency() -> String {
    "JPY".into()
}

fn default_objection_days() -> u32 {
    14
}

impl Prices {
    /// Shows an amount in the currency (`1234` with 2 decimals is `12.34 EUR`).
    pub fn money(&self, amount: i64) -> String {
        money(amount, &self.currency, self.decimals)
    }
}

/// The lines of a user's charge for `period`: the level's monthly fee, the storage used
/// (`average_bytes` over the period, at the level's GB-month price, rounded half up), each kind
/// of incident found in the period at its price, and, if discounts exceed the charge, a line
/// that brings the total to zero (credits are not paid out).
pub fn charge(
    prices: &Prices,
    level: &str,
    period: &Period,
    average_bytes: u64,
    incidents: &[IncidentKind],
) -> Result<Vec<Line>, BillingError> {
    let price = prices
        .levels
        .iter()
        .find(|p| p.level == level)
        .ok_or_else(|| BillingError::NoPrice(level.to_string()))?;
    let mut lines = vec![Line {
        description: format!("Membership, level {level}, {}", period.label()),
        amount: price.monthly,
    }];
    // price × bytes / 10^9, rounded half up, in 128 bits.
    let per_gb = i128::from(price.per_gb_month);
    let scaled = per_gb * i128::from(average_bytes);
    let storage = (scaled + scaled.signum() * 500_000_000) / 1_000_000_000;
    lines.push(Line {
        description: format!(
            "Storage: {} GB-month at {} per GB-month",
            gb_text(average_bytes),
            prices.money(price.per_gb_month)
        ),
        amount: i64::try_from(storage).map_err(|_| BillingError::Overflow("storage".into()))?,
    });
    let mut counts: BTreeMap<IncidentKind, i64> = BTreeMap::new();
    for k in incidents {
        *counts.entry(*k).or_default() += 1;
    }
    for (kind, n) in counts {
        let each = prices.incidents.get(&kind).copied().unwrap_or(0);
        if each == 0 {
            continue;
        }
        let amount = each
            .checked_mul(n)
            .ok_or_else(|| BillingError::Overflow(kind.as_str().into()))?;
        lines.push(Line {
            description: format!(
                "{n} {} incident(s) at {} each",
                kind.as_str(),
                prices.money(each)
            ),
            amount,
        });
    }
    let sum = total(&lines)?;
    if sum < 0 {
        lines.push(Line {
            description: "Credits beyond the charge (not paid out)".into(),
            amount: -sum,
        });
    }
    Ok(lines)
}

/// The sum of the lines.
pub fn total(lines: &[Line]) -> Result<i64, BillingError> {
    lines.iter().try_fold(0i64, |acc, l| {
        acc.checked_add(l.amount)
            .ok_or_else(|| BillingError::Overflow("the total".into()))
    })
}

/// Bytes as GB with three decimals, exactly (no float).
fn gb_text(bytes: u64) -> String {
    let milli = (u128::from(bytes) + 500_000) / 1_000_000;
    format!("{}.{:03}", milli / 1000, milli % 1000)
}

/// The objection deadline of a statement issued on `issued`.
pub fn deadline(
    prices: &Prices,
    issued: jiff::civil::Date,
) -> Result<jiff::civil::Date, BillingError> {
    issued
        .checked_add(jiff::Span::new().days(i64::from(prices.objection_days)))
        .map_err(|e| BillingError::Invalid(e.to_string()))
}

/// The text of a statement notice: the charge with its lines, the storage conditions, the
/// period's incident history, the objection deadline and how to object.
pub fn statement_text(s: &Statement, conditions: &[String], incidents: &[String]) -> String {
    let mut t = format!(
        "Statement {} for {} ({} to {}), issued {}.\n\n",
        s.id,
        s.period.label(),
        s.period.start,
        s.period.end.yesterday().unwrap_or(s.period.end),
        s.issued
    );
    let width = s
        .lines
        .iter()
        .map(|l| l.description.chars().count())
        .max()
        .unwrap_or(0);
    for l in &s.lines {
        t.push_str(&format!(
            "  {:<width$}  {:>16}\n",
            l.description,
            s.money(l.amount)
        ));
    }
    t.push_str(&format!(
        "  {:<width$}  {:>16}\n\n",
        "Total",
        s.money(s.total)
    ));
    t.push_str("Storage conditions now:\n");
    for c in conditions {
        t.push_str(&format!("  {c}\n"));
    }
    t.push_str("\nIncidents in the period:\n");
    if incidents.is_empty() {
        t.push_str("  none\n");
    }
    for i in incidents {
        t.push_str(&format!("  - {i}\n"));
    }
    t.push_str(&format!(
        "\nYou may object until {} (inclusive): `kura billing object {} --reason TEXT`. An \
         objection holds the charge until the operator resolves it; without one the charge is \
         settled after that day.\n",
        s.deadline, s.id
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn prices() -> Prices {
        Prices {
            currency: "JPY".into(),
            decimals: 0,
            objection_days: 14,
            levels: vec![LevelPrice {
                level: "standard".into(),
                monthly: 500,
                per_gb_month: 20,
            }],
            incidents: [(IncidentKind::Tampering, -300), (IncidentKind::Lost, -1000)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn a_charge_has_the_fee_storage_and_incidents() {
        let p = Period::settled_on(date(2026, 12, 1)).unwrap();
        let lines = charge(
            &prices(),
            "standard",
            &p,
            2_500_000_000,
            &[IncidentKind::Tampering, IncidentKind::MediaFault],
        )
        .unwrap();
        let amounts: Vec<i64> = lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, [500, 50, -300]);
        assert!(lines[1].description.contains("2.500 GB-month"), "{lines:?}");
        assert_eq!(total(&lines).unwrap(), 250);
        // Half a unit rounds up.
        let l = charge(&prices(), "standard", &p, 25_000_000, &[]).unwrap();
        assert_eq!(l[1].amount, 1);
        let l = charge(&prices(), "standard", &p, 24_999_999, &[]).unwrap();
        assert_eq!(l[1].amount, 0);
    }

    #[test]
    fn discounts_never_make_a_negative_charge() {
        let p = Period::settled_on(date(2026, 12, 1)).unwrap();
        let lines = charge(&prices(), "standard", &p, 0, &[IncidentKind::Lost]).unwrap();
        assert_eq!(total(&lines).unwrap(), 0);
        assert_eq!(lines.last().unwrap().amount, 500);
    }

    #[test]
    fn an_unpriced_level_is_refused() {
        let p = Period::settled_on(date(2026, 12, 1)).unwrap();
        let e = charge(&prices(), "gold", &p, 0, &[]).unwrap_err();
        assert!(e.to_string().contains("gold"), "{e}");
    }

    #[test]
    fn money_is_shown_in_the_currency() {
        let mut p = prices();
        assert_eq!(p.money(-300), "-300 JPY");
        p.decimals = 2;
        p.currency = "EUR".into();
        assert_eq!(p.money(1234), "12.34 EUR");
        assert_eq!(p.money(-5), "-0.05 EUR");
    }

    #[test]
    fn the_statement_says_how_to_object() {
        let p = prices();
        let period = Period::settled_on(date(2026, 12, 1)).unwrap();
        let lines = charge(&p, "standard", &period, 1_000_000_000, &[]).unwrap();
        let s = Statement {
            id: Statement::id_for(7, &period),
            user: 7,
            period,
            issued: date(2026, 12, 1),
            deadline: deadline(&p, date(2026, 12, 1)).unwrap(),
            currency: p.currency.clone(),
            decimals: p.decimals,
            total: total(&lines).unwrap(),
            lines,
            status: Status::Open,
            objection: None,
            resolution: None,
        };
        assert_eq!(s.id, "7-2026-11");
        assert_eq!(s.deadline, date(2026, 12, 15));
        let text = statement_text(&s, &["2 objects".into()], &["lost x".into()]);
        for want in [
            "520 JPY",
            "2026-11-30",
            "kura billing object 7-2026-11 --reason",
            "2026-12-15",
            "- lost x",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }

    #[test]
    fn prices_read_from_toml_shaped_json() {
        let p: Prices = serde_json::from_str(
            r#"{"levels":[{"level":"gold","monthly":900}],"incidents":{"tampering":-100}}"#,
        )
        .unwrap();
        assert_eq!(p.currency, "JPY");
        assert_eq!(p.objection_days, 14);
        assert_eq!(p.incidents[&IncidentKind::Tampering], -100);
        assert!(serde_json::from_str::<Prices>(r#"{"incidents":{"flood":1}}"#).is_err());
    }
}

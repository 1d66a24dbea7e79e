//! A user's statement as the API carries it: the charge for one calendar month, its lines,
//! and where it stands. kura-billing computes statements; the service stores and sends them;
//! `kura billing statements` shows them.

use serde::{Deserialize, Serialize};

/// The period one statement covers: a calendar month, `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// The first day.
    pub start: jiff::civil::Date,
    /// The day after the last.
    pub end: jiff::civil::Date,
}

impl Period {
    /// The month a settlement on `date` settles: the last whole month before it.
    pub fn settled_on(date: jiff::civil::Date) -> Result<Period, jiff::Error> {
        Period::month_of(date.first_of_month().yesterday()?)
    }

    /// The calendar month holding `day`.
    pub fn month_of(day: jiff::civil::Date) -> Result<Period, jiff::Error> {
        let start = day.first_of_month();
        let end = start.checked_add(jiff::Span::new().months(1))?;
        Ok(Period { start, end })
    }

    /// `YYYY-MM`.
    pub fn label(&self) -> String {
        self.start.strftime("%Y-%m").to_string()
    }

    /// Days in the period.
    pub fn days(&self) -> i64 {
        i64::from(self.start.days_in_month())
    }
}

/// One line of a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// What it is for.
    pub description: String,
    /// How much (negative for a discount).
    pub amount: i64,
}

/// Where a statement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Issued; the user may object until the deadline.
    Open,
    /// The user objected: the charge is held until the operator resolves it.
    Held,
    /// No objection by the deadline, or upheld: the charge stands.
    Settled,
    /// The operator lowered the charge after an objection.
    Reduced,
    /// The operator cancelled the charge after an objection.
    Cancelled,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 5] = [
        Status::Open,
        Status::Held,
        Status::Settled,
        Status::Reduced,
        Status::Cancelled,
    ];

    /// The name in the database and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Held => "held",
            Status::Settled => "settled",
            Status::Reduced => "reduced",
            Status::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Status, String> {
        Status::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("no statement status {s:?}"))
    }
}

/// A user's statement for one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// Its id: `<user id>-<YYYY-MM>`, one per user and period.
    pub id: String,
    /// Whose.
    pub user: i64,
    /// The period charged.
    pub period: Period,
    /// When it was issued (the settlement date).
    pub issued: jiff::civil::Date,
    /// The last day an objection is taken.
    pub deadline: jiff::civil::Date,
    /// The currency.
    pub currency: String,
    /// Digits after the currency's decimal point (amounts are in its smallest unit).
    #[serde(default)]
    pub decimals: u32,
    /// The lines.
    pub lines: Vec<Line>,
    /// What the user owes.
    pub total: i64,
    /// Where it stands.
    pub status: Status,
    /// The user's objection, if any.
    pub objection: Option<String>,
    /// What the operator decided, if anything.
    pub resolution: Option<String>,
}

impl Statement {
    /// Shows an amount of this statement in its currency.
    pub fn money(&self, amount: i64) -> String {
        money(amount, &self.currency, self.decimals)
    }

    /// The id of a user's statement for a period.
    pub fn id_for(user: i64, period: &Period) -> String {
        format!("{user}-{}", period.label())
    }
}

/// Shows `amount` of the smallest unit of a currency with `decimals` digits after the point.
pub fn money(amount: i64, currency: &str, decimals: u32) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let a = amount.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{a} {currency}");
    }
    let unit = 10u64.pow(decimals.min(18));
    format!(
        "{sign}{}.{:0width$} {currency}",
        a / unit,
        a % unit,
        width = decimals as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn the_period_is_the_month_before_the_settlement_date() {
        let p = Period::settled_on(date(2026, 12, 1)).unwrap();
        assert_eq!((p.start, p.end), (date(2026, 11, 1), date(2026, 12, 1)));
        assert_eq!(p.label(), "2026-11");
        assert_eq!(p.days(), 30);
        let p = Period::settled_on(date(2027, 1, 15)).unwrap();
        assert_eq!(p.label(), "2026-12");
        let p = Period::settled_on(date(2027, 1, 31)).unwrap();
        assert_eq!(p.label(), "2026-12");
        let p = Period::settled_on(date(2027, 3, 1)).unwrap();
        assert_eq!((p.label(), p.days()), ("2027-02".into(), 28));
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("paid".parse::<Status>().is_err());
    }
}

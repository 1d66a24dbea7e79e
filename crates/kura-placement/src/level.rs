//! Membership levels (`docs/requirements/placement.md` requirement 1): a rule table in the service
//! configuration maps a user's fee plan and whole contract years to a level. Rules are tried in
//! order and the first that matches wins, so the best levels are listed first.

use serde::{Deserialize, Serialize};

/// A membership level's name (`gold`, `standard`, ...).
pub type Level = String;

/// One rule of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelRule {
    /// The level this rule gives.
    pub level: Level,
    /// Fee plans it applies to; empty for every plan.
    #[serde(default)]
    pub plans: Vec<String>,
    /// Whole contract years needed.
    #[serde(default)]
    pub min_years: u32,
}

impl LevelRule {
    fn matches(&self, plan: &str, years: u32) -> bool {
        (self.plans.is_empty() || self.plans.iter().any(|p| p == plan)) && years >= self.min_years
    }
}

/// Whole years from `since` to `today` (0 before the first anniversary or for a future date).
pub fn contract_years(since: jiff::civil::Date, today: jiff::civil::Date) -> u32 {
    if today <= since {
        return 0;
    }
    let mut years = (today.year() - since.year()) as i32;
    if (today.month(), today.day()) < (since.month(), since.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

/// The level of a user on `plan` with `years` contract years: the first matching rule's, or
/// `fallback` when none matches.
pub fn level_of<'a>(rules: &'a [LevelRule], plan: &str, years: u32, fallback: &'a str) -> &'a str {
    rules
        .iter()
        .find(|r| r.matches(plan, years))
        .map_or(fallback, |r| r.level.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Vec<LevelRule> {
        vec![
            LevelRule {
                level: "gold".into(),
                plans: vec!["premium".into()],
                min_years: 3,
            },
            LevelRule {
                level: "silver".into(),
                plans: vec!["premium".into(), "family".into()],
                min_years: 0,
            },
            LevelRule {
                level: "loyal".into(),
                plans: vec![],
                min_years: 5,
            },
        ]
    }

    #[test]
    fn first_matching_rule_wins() {
        let r = rules();
        assert_eq!(level_of(&r, "premium", 3, "basic"), "gold");
        assert_eq!(level_of(&r, "premium", 2, "basic"), "silver");
        assert_eq!(level_of(&r, "family", 9, "basic"), "silver");
        assert_eq!(level_of(&r, "standard", 5, "basic"), "loyal");
        assert_eq!(level_of(&r, "standard", 4, "basic"), "basic");
        assert_eq!(level_of(&[], "premium", 10, "basic"), "basic");
    }

    #[test]
    fn years_count_whole_anniversaries() {
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        assert_eq!(contract_years(d("2020-03-15"), d("2023-03-14")), 2);
        assert_eq!(contract_years(d("2020-03-15"), d("2023-03-15")), 3);
        assert_eq!(contract_years(d("2020-02-29"), d("2021-02-28")), 0);
        assert_eq!(contract_years(d("2020-02-29"), d("2021-03-01")), 1);
        assert_eq!(contract_years(d("2030-01-01"), d("2026-01-01")), 0);
    }
}

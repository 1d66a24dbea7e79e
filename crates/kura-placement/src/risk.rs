//! Disaster risk by region (`docs/requirements/placement.md`): a risk feed gives each region hazard
//! scores (earthquake, flood, typhoon, an insurer's premium rate...), and a region's risk is their
//! sum. `kura admin risk import FILE` reads a feed in CSV or JSON:
//!
//! ```text
//! region,earthquake,flood          {"tokyo": {"earthquake": 0.8, "flood": 0.3},
//! tokyo,0.8,0.3                     "osaka": {"earthquake": 0.6}}
//! osaka,0.6,
//! ```
//!
//! In CSV an empty cell is no score for that hazard; `#` starts a comment line. Scores are finite
//! and not negative. Regions in a new feed replace what an older feed said of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most regions in one feed.
pub const MAX_REGIONS: usize = 10_000;
/// Most hazards per region.
pub const MAX_HAZARDS: usize = 64;
/// Longest region or hazard name.
pub const MAX_NAME: usize = 64;
/// Largest score.
pub const MAX_SCORE: f64 = 1e6;

/// Why a feed was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// A line or value could not be read.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The JSON form could not be read.
    #[error("{0}")]
    Json(String),
    /// The feed is too large or names something badly.
    #[error("{0}")]
    Invalid(String),
}

/// Hazard scores per region.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RiskFeed {
    regions: BTreeMap<String, BTreeMap<String, f64>>,
}

fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {:?}: use 1-{MAX_NAME} letters, digits, '-', '_' or '.'",
            name.chars().take(80).collect::<String>()
        ))
    }
}

fn check_score(v: f64) -> Result<f64, String> {
    if v.is_finite() && (0.0..=MAX_SCORE).contains(&v) {
        Ok(v)
    } else {
        Err(format!("score {v} is not between 0 and {MAX_SCORE}"))
    }
}

impl RiskFeed {
    /// Reads a feed, as JSON if it starts with `{`, else as CSV.
    pub fn parse(text: &str) -> Result<RiskFeed, FeedError> {
        if text.trim_start().starts_with('{') {
            Self::parse_json(text)
        } else {
            Self::parse_csv(text)
        }
    }

    fn parse_json(text: &str) -> Result<RiskFeed, FeedError> {
        let feed: RiskFeed =
            serde_json::from_str(text).map_err(|e| FeedError::Json(e.to_string()))?;
        feed.validate()?;
        Ok(feed)
    }

    fn parse_csv(text: &str) -> Result<RiskFeed, FeedError> {
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let err = |line, message: String| FeedError::Line { line, message };
        let (header_line, header) = lines
            .next()
            .ok_or_else(|| FeedError::Invalid("the feed is empty".into()))?;
        let columns: Vec<&str> = header.split(',').map(str::trim).collect();
        if columns.first().map(|c| c.to_ascii_lowercase()) != Some("region".into()) {
            return Err(err(header_line, "the first column must be `region`".into()));
        }
        let hazards = &columns[1..];
        if hazards.is_empty() || hazards.len() > MAX_HAZARDS {
            return Err(err(
                header_line,
                format!("expected 1 to {MAX_HAZARDS} hazard columns"),
            ));
        }
        for h in hazards {
            check_name("hazard", h).map_err(|m| err(header_line, m))?;
        }
        let mut feed = RiskFeed::default();
        for (n, line) in lines {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            if cells.len() != columns.len() {
                return Err(err(
                    n,
                    format!("{} cells, the header has {}", cells.len(), columns.len()),
                ));
            }
            let region = cells[0];
            check_name("region", region).map_err(|m| err(n, m))?;
            let mut scores = BTreeMap::new();
            for (h, cell) in hazards.iter().zip(&cells[1..]) {
                if cell.is_empty() {
                    continue;
                }
                let v = cell
                    .parse::<f64>()
                    .map_err(|_| err(n, format!("{h}: {cell:?} is not a number")))
                    .and_then(|v| check_score(v).map_err(|m| err(n, format!("{h}: {m}"))))?;
                scores.insert(h.to_string(), v);
            }
            if feed.regions.insert(region.to_string(), scores).is_some() {
                return Err(err(n, format!("region {region} appears twice")));
            }
            if feed.regions.len() > MAX_REGIONS {
                return Err(FeedError::Invalid(format!(
                    "more than {MAX_REGIONS} regions"
                )));
            }
        }
        Ok(feed)
    }

    fn validate(&self) -> Result<(), FeedError> {
        if self.regions.len() > MAX_REGIONS {
            return Err(FeedError::Invalid(format!(
                "more than {MAX_REGIONS} regions"
            )));
        }
        for (region, hazards) in &self.regions {
            check_name("region", region).map_err(FeedError::Invalid)?;
            if hazards.len() > MAX_HAZARDS {
                return Err(FeedError::Invalid(format!(
                    "region {region}: more than {MAX_HAZARDS} hazards"
                )));
            }
            for (h, v) in hazards {
                check_name("hazard", h).map_err(FeedError::Invalid)?;
                check_score(*v).map_err(|m| FeedError::Invalid(format!("{region}/{h}: {m}")))?;
            }
        }
        Ok(())
    }

    /// A region's risk: the sum of its hazard scores, if the feed knows the region.
    pub fn risk(&self, region: &str) -> Option<f64> {
        self.regions.get(region).map(|h| h.values().sum())
    }

    /// Takes in a newer feed: its regions replace this one's.
    pub fn update(&mut self, newer: RiskFeed) {
        self.regions.extend(newer.regions);
    }

    /// The regions, in name order.
    pub fn regions(&self) -> impl Iterator<Item = (&str, &BTreeMap<String, f64>)> {
        self.regions.iter().map(|(r, h)| (r.as_str(), h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_say_the_same() {
        let csv = "# hazards 2026\nregion,earthquake,flood\ntokyo,0.8,0.3\nosaka,0.6,\n";
        let json = r#"{"tokyo": {"earthquake": 0.8, "flood": 0.3}, "osaka": {"earthquake": 0.6}}"#;
        let a = RiskFeed::parse(csv).unwrap();
        let b = RiskFeed::parse(json).unwrap();
        assert_eq!(a, b);
        assert!((a.risk("tokyo").unwrap() - 1.1).abs() < 1e-9);
        assert_eq!(a.risk("osaka"), Some(0.6));
        assert_eq!(a.risk("sapporo"), None);
    }

    #[test]
    fn bad_feeds_say_where() {
        let cases = [
            ("", "empty"),
            ("place,quake\n", "first column"),
            ("region\n", "hazard columns"),
            ("region,quake\ntokyo,abc\n", "line 2"),
            ("region,quake\ntokyo,-1\n", "between 0"),
            ("region,quake\ntokyo,NaN\n", "between 0"),
            ("region,quake\ntokyo,1,2\n", "cells"),
            ("region,quake\ntokyo,1\ntokyo,2\n", "twice"),
            ("region,quake\nto kyo,1\n", "region name"),
            ("region,qu ake\n", "hazard name"),
            (r#"{"tokyo": {"quake": -3}}"#, "between 0"),
            (r#"{"tokyo": [1]}"#, "invalid type"),
        ];
        for (text, needle) in cases {
            let e = RiskFeed::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn newer_regions_replace_older_ones() {
        let mut a = RiskFeed::parse("region,quake\ntokyo,0.8\nosaka,0.6\n").unwrap();
        a.update(RiskFeed::parse("region,flood\ntokyo,0.1\n").unwrap());
        assert_eq!(a.risk("tokyo"), Some(0.1));
        assert_eq!(a.risk("osaka"), Some(0.6));
        assert_eq!(a.regions().count(), 2);
    }
}

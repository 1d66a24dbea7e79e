//! Retention: which snapshots a `--keep-*` policy keeps.
//!
//! Snapshots are taken newest first. A rule "keep N per bucket" keeps a snapshot when its
//! bucket (day, ISO week, month, ...) differs from the last bucket that rule kept, until it has
//! kept N. Besides, `within` keeps every snapshot younger than a span counted back from the
//! group's newest, and `tags` every snapshot with one of the tag lists. A snapshot kept by any
//! rule is kept. The caller groups snapshots (by device and paths) and applies the policy to
//! each group.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::Id;
use crate::snapshot::{Filter, Snapshot};

/// How many snapshots to keep, per rule. Zero disables a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// The newest N.
    pub last: u32,
    /// The newest in each of the last N hours that have snapshots.
    pub hourly: u32,
    /// Likewise per day.
    pub daily: u32,
    /// Likewise per ISO week.
    pub weekly: u32,
    /// Likewise per month.
    pub monthly: u32,
    /// Likewise per year.
    pub yearly: u32,
    /// Every snapshot younger than this, counted back from the group's newest.
    pub within: Within,
    /// Every snapshot carrying every tag of one of these lists (`a,b`: both).
    pub tags: Vec<String>,
}

/// A span of calendar time as restic writes it: `1y6m`, `2w`, `30d`, `12h` (years, months,
/// weeks, days, hours, in that order, each at most once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Within {
    /// Years.
    pub years: u16,
    /// Months.
    pub months: u16,
    /// Weeks.
    pub weeks: u16,
    /// Days.
    pub days: u16,
    /// Hours.
    pub hours: u32,
}

impl std::str::FromStr for Within {
    type Err = String;
    fn from_str(s: &str) -> Result<Within, String> {
        let bad = || format!("{s:?}: expected a span such as 1y6m, 2w, 30d or 12h");
        let mut w = Within::default();
        let mut number = String::new();
        let mut last_unit = 0;
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                'y' => 1,
                'm' => 2,
                'w' => 3,
                'd' => 4,
                'h' => 5,
                _ => return Err(bad()),
            };
            if number.is_empty() || unit <= last_unit {
                return Err(bad());
            }
            let n: u32 = number.parse().map_err(|_| bad())?;
            let small = || u16::try_from(n).map_err(|_| bad());
            match unit {
                1 => w.years = small()?,
                2 => w.months = small()?,
                3 => w.weeks = small()?,
                4 => w.days = small()?,
                _ => w.hours = n,
            }
            last_unit = unit;
            number.clear();
        }
        if !number.is_empty() || w == Within::default() {
            return Err(bad());
        }
        Ok(w)
    }
}

impl Within {
    /// Whether it keeps nothing.
    pub fn is_empty(&self) -> bool {
        *self == Within::default()
    }

    /// The oldest time it keeps, counted back from `newest` in `tz` (calendar months and
    /// years, so `1m` back from 31 March is the last day of February).
    pub fn cutoff(&self, newest: Timestamp, tz: &TimeZone) -> Timestamp {
        let span = jiff::Span::new()
            .years(self.years)
            .months(self.months)
            .weeks(self.weeks)
            .days(self.days)
            .hours(self.hours);
        newest
            .to_zoned(tz.clone())
            .checked_sub(span)
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MIN)
    }
}

impl KeepPolicy {
    /// Whether no rule is set (such a policy would forget everything, so callers refuse it).
    pub fn is_empty(&self) -> bool {
        *self == KeepPolicy::default()
    }
}

/// The decision for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot.
    pub id: Id,
    /// Whether it is kept.
    pub keep: bool,
    /// Which rules keep it (`last`, `daily`, ...).
    pub reasons: Vec<&'static str>,
}

/// Applies `policy` to one group of snapshots; the result is newest first.
pub fn apply(policy: &KeepPolicy, snapshots: &[(Id, Timestamp)], tz: &TimeZone) -> Vec<Decision> {
    let mut sorted: Vec<(Id, Timestamp)> = snapshots.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    type Bucket = fn(&jiff::Zoned, u64) -> i64;
    let rules: [(&'static str, u32, Bucket); 6] = [
        ("last", policy.last, |_, i| i as i64),
        ("hourly", policy.hourly, |z, _| {
            z.year() as i64 * 1_000_000 + z.day_of_year() as i64 * 100 + z.hour() as i64
        }),
        ("daily", policy.daily, |z, _| {
            z.year() as i64 * 1000 + z.day_of_year() as i64
        }),
        ("weekly", policy.weekly, |z, _| {
            let w = z.date().iso_week_date();
            w.year() as i64 * 100 + w.week() as i64
        }),
        ("monthly", policy.monthly, |z, _| {
            z.year() as i64 * 100 + z.month() as i64
        }),
        ("yearly", policy.yearly, |z, _| z.year() as i64),
    ];
    let mut kept = [0u32; 6];
    let mut last_bucket: [Option<i64>; 6] = [None; 6];
    sorted
        .iter()
        .enumerate()
        .map(|(i, (id, time))| {
            let zoned = time.to_zoned(tz.clone());
            let mut reasons = Vec::new();
            for (r, (name, limit, bucket)) in rules.iter().enumerate() {
                if kept[r] >= *limit {
                    continue;
                }
                let b = bucket(&zoned, i as u64);
                if last_bucket[r] != Some(b) {
                    last_bucket[r] = Some(b);
                    kept[r] += 1;
                    reasons.push(*name);
                }
            }
            Decision {
                id: *id,
                keep: !reasons.is_empty(),
                reasons,
            }
        })
        .collect()
}

/// What `forget` does with a repository's snapshots under a policy.
#[derive(Debug, Clone, Default)]
pub struct ForgetPlan {
    /// Snapshots to remove.
    pub remove: Vec<(Id, Snapshot)>,
    /// Snapshots kept, each with the rules that keep it.
    pub keep: Vec<(Id, Snapshot, Vec<&'static str>)>,
}

/// Applies `policy` per device and set of paths. Every snapshot holds the whole state of its
/// paths, so none needs another kept for it: an incremental outlives its base.
pub fn forget_plan(policy: &KeepPolicy, all: Vec<(Id, Snapshot)>, tz: &TimeZone) -> ForgetPlan {
    type Group = (String, Vec<String>);
    let mut groups: BTreeMap<Group, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, s) in all {
        let mut paths = s.paths.clone();
        paths.sort();
        groups
            .entry((s.device.to_string(), paths))
            .or_default()
            .push((id, s));
    }
    let mut plan = ForgetPlan::default();
    let tagged = Filter {
        tags: policy.tags.clone(),
        ..Filter::default()
    };
    for (_, group) in groups {
        let times: Vec<(Id, Timestamp)> = group.iter().map(|(id, s)| (*id, s.time)).collect();
        let newest = times
            .iter()
            .map(|(_, t)| *t)
            .max()
            .unwrap_or(Timestamp::MIN);
        let cutoff = policy.within.cutoff(newest, tz);
        for mut d in apply(policy, &times, tz) {
            let Some((_, s)) = group.iter().find(|(id, _)| *id == d.id) else {
                continue;
            };
            if !policy.within.is_empty() && s.time >= cutoff {
                d.reasons.push("within");
            }
            if !policy.tags.is_empty() && tagged.matches(s, None) {
                d.reasons.push("tag");
            }
            if !d.reasons.is_empty() {
                plan.keep.push((d.id, s.clone(), d.reasons));
            } else {
                plan.remove.push((d.id, s.clone()));
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snaps(times: &[&str]) -> Vec<(Id, Timestamp)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| (Id([i as u8; 32]), t.parse().unwrap()))
            .collect()
    }

    fn kept(policy: &KeepPolicy, s: &[(Id, Timestamp)]) -> Vec<u8> {
        let mut v: Vec<u8> = apply(policy, s, &TimeZone::UTC)
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.id.0[0])
            .collect();
        v.sort();
        v
    }

    #[test]
    fn keep_last_and_daily() {
        let s = snaps(&[
            "2026-01-01T10:00:00Z",
            "2026-01-01T12:00:00Z",
            "2026-01-02T09:00:00Z",
            "2026-01-03T09:00:00Z",
            "2026-01-03T23:00:00Z",
        ]);
        assert_eq!(
            kept(
                &KeepPolicy {
                    last: 2,
                    ..Default::default()
                },
                &s
            ),
            vec![3, 4]
        );
        assert_eq!(
            kept(
                &KeepPolicy {
                    daily: 2,
                    ..Default::default()
                },
                &s
            ),
            vec![2, 4]
        );
        assert_eq!(
            kept(
                &KeepPolicy {
                    daily: 10,
                    ..Default::default()
                },
                &s
            ),
            vec![1, 2, 4]
        );
        assert_eq!(
            kept(
                &KeepPolicy {
                    last: 1,
                    daily: 3,
                    ..Default::default()
                },
                &s
            ),
            vec![1, 2, 4]
        );
    }

    #[test]
    fn weekly_monthly_yearly() {
        let s = snaps(&[
            "2024-12-30T10:00:00Z", // ISO week 2025-W01
            "2025-01-05T10:00:00Z", // same ISO week
            "2025-02-10T10:00:00Z",
            "2025-02-20T10:00:00Z",
            "2026-03-01T10:00:00Z",
        ]);
        assert_eq!(
            kept(
                &KeepPolicy {
                    weekly: 10,
                    ..Default::default()
                },
                &s
            ),
            vec![1, 2, 3, 4]
        );
        assert_eq!(
            kept(
                &KeepPolicy {
                    monthly: 10,
                    ..Default::default()
                },
                &s
            ),
            vec![0, 1, 3, 4]
        );
        assert_eq!(
            kept(
                &KeepPolicy {
                    yearly: 10,
                    ..Default::default()
                },
                &s
            ),
            vec![0, 3, 4]
        );
        assert!(KeepPolicy::default().is_empty());
    }

    #[test]
    fn within_counts_back_from_the_newest_and_tags_keep_what_they_name() {
        assert_eq!(
            "1y6m".parse::<Within>(),
            Ok(Within {
                years: 1,
                months: 6,
                ..Within::default()
            })
        );
        assert_eq!("36h".parse::<Within>().map(|w| w.hours), Ok(36));
        for bad in ["", "3", "d", "2d1y", "1d1d", "5x", "0d"] {
            assert!(bad.parse::<Within>().is_err(), "{bad:?}");
        }
        let snap = |t: &str, tags: &[&str]| {
            let mut s = Snapshot::decode(
                br#"{"time":"2026-01-01T00:00:00Z","device":"03030303030303030303030303030303","hostname":"h","paths":["/a"],"type":"full","tree":"0909090909090909090909090909090909090909090909090909090909090909"}"#,
            )
            .unwrap();
            s.time = t.parse().unwrap();
            s.tags = tags.iter().map(|t| t.to_string()).collect();
            s
        };
        let all = vec![
            (Id([0; 32]), snap("2026-03-31T12:00:00Z", &[])),
            (Id([1; 32]), snap("2026-03-01T12:00:00Z", &[])),
            (Id([2; 32]), snap("2026-02-27T12:00:00Z", &[])),
            (
                Id([3; 32]),
                snap("2025-06-01T12:00:00Z", &["monthly", "keep"]),
            ),
            (Id([4; 32]), snap("2025-05-01T12:00:00Z", &["monthly"])),
        ];
        let policy = KeepPolicy {
            within: "1m".parse().unwrap(),
            tags: vec!["keep,monthly".into()],
            ..KeepPolicy::default()
        };
        assert!(!policy.is_empty());
        let plan = forget_plan(&policy, all, &TimeZone::UTC);
        let mut kept: Vec<(u8, Vec<&str>)> = plan
            .keep
            .iter()
            .map(|(id, _, r)| (id.0[0], r.clone()))
            .collect();
        kept.sort();
        // One month back from 31 March is 28 February: 27 February is out.
        assert_eq!(
            kept,
            vec![(0, vec!["within"]), (1, vec!["within"]), (3, vec!["tag"])]
        );
        let mut removed: Vec<u8> = plan.remove.iter().map(|(id, _)| id.0[0]).collect();
        removed.sort();
        assert_eq!(removed, vec![2, 4]);
    }
}

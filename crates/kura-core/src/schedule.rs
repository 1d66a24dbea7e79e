//! When backups run by themselves (`docs/requirements/terminal-backup.md` requirement 7): at a set
//! time, every so often, or by a cron expression. Times are wall-clock times in a time zone (the
//! machine's), so "at 03:00" stays 03:00 across daylight-saving changes.
//!
//! A run that was missed (the machine was asleep or off) is due as soon as the agent looks
//! again, and runs once however many were missed: the next run is reckoned from the last one.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};
use serde::{Deserialize, Serialize};

use crate::snapshot::BackupType;

/// An interval as people write it: `30s`, `30m`, `6h`, `1d`, `1w`, `1h30m` (days of 24 hours),
/// or ISO 8601 (`PT5M`).
pub fn interval(s: &str) -> Option<SignedDuration> {
    s.trim()
        .parse::<Span>()
        .ok()
        .and_then(|span| span.to_duration(SpanRelativeTo::days_are_24_hours()).ok())
}

/// Shortest interval for `every`: a backup every second would never finish before the next.
pub const MIN_EVERY: SignedDuration = SignedDuration::from_secs(1);

/// When a scheduled backup runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timing {
    /// Every day at this time.
    Daily(Time),
    /// Once, at this date and time.
    Once(DateTime),
    /// Every interval after the last run (the first run at once).
    Every(SignedDuration),
    /// By a cron expression.
    Cron(Cron),
}

/// Why a timing could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimingError(String);

fn bad(msg: impl Into<String>) -> TimingError {
    TimingError(msg.into())
}

impl Timing {
    /// `--at`: `HH:MM` (daily) or `YYYY-MM-DD HH:MM` (once).
    pub fn at(s: &str) -> Result<Timing, TimingError> {
        let s = s.trim();
        // A date and time first: jiff reads the time out of a full date-time too.
        if let Ok(dt) = s.replacen(' ', "T", 1).parse::<DateTime>() {
            return Ok(Timing::Once(dt));
        }
        s.parse::<Time>()
            .map(Timing::Daily)
            .map_err(|_| bad(format!("--at {s:?}: expected HH:MM or YYYY-MM-DD HH:MM")))
    }

    /// `--every`: an interval such as `30m`, `6h`, `1d`, `1w` or `1h30m`.
    pub fn every(s: &str) -> Result<Timing, TimingError> {
        let d = interval(s).ok_or_else(|| {
            bad(format!(
                "--every {s:?}: expected an interval like 30m, 6h, 1d or 1w"
            ))
        })?;
        if d < MIN_EVERY {
            return Err(bad(format!(
                "--every {s:?}: the interval must be at least 1s"
            )));
        }
        Ok(Timing::Every(d))
    }

    /// The first run strictly after `after`, in time zone `tz`; `None` when there is none.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // A wall-clock time that never happens (clocks going forward) is the moment just after
        // the gap; one that happens twice (clocks going back) is the first, and for schedules
        // that run every hour or more often also the second, as in cron.
        let second_pass = matches!(self, Timing::Cron(c) if c.hourly);
        let local = |dt: DateTime| {
            let amb = tz.to_ambiguous_zoned(dt);
            let later = second_pass.then(|| amb.clone().later());
            [Some(amb.compatible()), later]
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|z| z.timestamp())
                .find(|t| *t > after)
        };
        let now_local = after.to_zoned(tz.clone()).datetime();
        match self {
            Timing::Every(d) => after.checked_add(*d).ok(),
            Timing::Once(dt) => local(*dt),
            Timing::Daily(time) => local(now_local.date().to_datetime(*time))
                .or_else(|| local(now_local.date().tomorrow().ok()?.to_datetime(*time))),
            Timing::Cron(c) => {
                // Candidates in a gap or an already-past fold are skipped; a fold lasts at most
                // a few hours, so a bounded number of steps finds the next real one.
                let mut from = now_local;
                for _ in 0..(24 * 60) {
                    let next = c.next_after(from)?;
                    match local(next) {
                        Some(t) => return Some(t),
                        None => from = next,
                    }
                }
                None
            }
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timing::Daily(t) => write!(f, "at {}", clock(*t)),
            Timing::Once(dt) => write!(f, "at {} {}", dt.date(), clock(dt.time())),
            Timing::Every(d) => write!(f, "every {d:#}"),
            Timing::Cron(c) => write!(f, "cron {}", c.text),
        }
    }
}

/// `HH:MM`, with seconds (and fractions) only when there are any.
fn clock(t: Time) -> String {
    if t.second() == 0 && t.subsec_nanosecond() == 0 {
        t.strftime("%H:%M").to_string()
    } else {
        t.to_string()
    }
}

impl std::str::FromStr for Timing {
    type Err = TimingError;

    /// The form [`Timing`]'s `Display` writes: `at ...`, `every ...` or `cron ...`.
    fn from_str(s: &str) -> Result<Timing, TimingError> {
        match s.split_once(' ') {
            Some(("at", rest)) => Timing::at(rest),
            Some(("every", rest)) => Timing::every(rest),
            Some(("cron", rest)) => Cron::parse(rest).map(Timing::Cron),
            _ => Err(bad(format!("not a timing: {s:?}"))),
        }
    }
}

impl Serialize for Timing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Timing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Timing, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A standard five-field cron expression: minute, hour, day of month, month, day of week
/// (0 or 7 is Sunday). Each field is `*`, or a comma-separated list of values and ranges
/// (`a-b`), each optionally stepped (`*/15`, `1-5/2`). As in cron, when both day fields are
/// restricted a day matching either runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_any: bool,
    weekdays_any: bool,
    hourly: bool,
    text: String,
}

/// Parses one field into a bit set of the values in `lo..=hi`.
fn field(text: &str, lo: u32, hi: u32, name: &str) -> Result<u64, TimingError> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| bad(format!("cron {name}: bad step {s:?}")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let num = |v: &str| -> Result<u32, TimingError> {
            v.parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| bad(format!("cron {name}: {v:?} is not in {lo}-{hi}")))
        };
        let stepped = part.contains('/');
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                // `5/15` means from 5 to the end, every 15.
                None if stepped => (num(r)?, hi),
                None => {
                    let n = num(r)?;
                    (n, n)
                }
            },
        };
        if a > b {
            return Err(bad(format!("cron {name}: range {range:?} runs backwards")));
        }
        let mut v = Some(a);
        while let Some(x) = v.filter(|&x| x <= b) {
            bits |= 1 << x;
            v = x.checked_add(step);
        }
    }
    Ok(bits)
}

impl Cron {
    /// Parses an expression.
    pub fn parse(expr: &str) -> Result<Cron, TimingError> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields[..] else {
            return Err(bad(format!(
                "cron {expr:?}: expected 5 fields (minute hour day-of-month month day-of-week)"
            )));
        };
        let mut weekdays = field(dow, 0, 7, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & 0x7f;
        }
        Ok(Cron {
            minutes: field(m, 0, 59, "minute")?,
            hours: field(h, 0, 23, "hour")? as u32,
            days: field(dom, 1, 31, "day of month")? as u32,
            months: field(mon, 1, 12, "month")? as u16,
            weekdays: weekdays as u8,
            days_any: dom.starts_with('*'),
            weekdays_any: dow.starts_with('*'),
            hourly: h.starts_with('*'),
            text: fields.join(" "),
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        // As in cron: when either day field starts with `*`, a day must match both; when
        // both are restricted, either will do.
        let day = if self.days_any || self.weekdays_any {
            dom && dow
        } else {
            dom || dow
        };
        day && self.months & (1 << d.month()) != 0
    }

    /// The first matching minute strictly after `after` (wall-clock time), within 5 years.
    pub fn next_after(&self, after: DateTime) -> Option<DateTime> {
        let mut t = after
            .checked_add(SignedDuration::from_mins(1))
            .ok()?
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?;
        let limit = after.checked_add(Span::new().years(5)).ok()?;
        while t <= limit {
            if !self.day_matches(t.date()) {
                t = t.date().tomorrow().ok()?.to_datetime(Time::midnight());
            } else if self.hours & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(SignedDuration::from_hours(1))
                    .ok()?;
            } else if self.minutes & (1 << t.minute()) == 0 {
                t = t.checked_add(SignedDuration::from_mins(1)).ok()?;
            } else {
                return Some(t);
            }
        }
        None
    }
}

/// One scheduled backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Short id, for `kura schedule remove`.
    pub id: String,
    /// What to back up.
    pub paths: Vec<String>,
    /// A phone to back up by mail instruction (`kura mail schedule`) instead of paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The backup type.
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// Tags for the snapshots.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When.
    pub timing: Timing,
    /// When the entry was made.
    pub created: Timestamp,
    /// When it last ran.
    #[serde(default)]
    pub last_run: Option<Timestamp>,
    /// How its last run ended, once one has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<Outcome>,
}

/// How a scheduled run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// When it ended.
    pub at: Timestamp,
    /// Whether it made its snapshot.
    pub ok: bool,
    /// What it made, or why it failed.
    pub detail: String,
    /// Whether it failed before a backup job began (no passphrase, no repository), so the
    /// repository's backup log has no entry of it.
    #[serde(default)]
    pub before_job: bool,
}

impl Entry {
    /// When it runs next (possibly in the past: then it is due); `None` when never again.
    pub fn next_run(&self, tz: &TimeZone) -> Option<Timestamp> {
        match (&self.timing, self.last_run) {
            (Timing::Every(_), None) => Some(self.created),
            (t, last) => t.next_after(last.unwrap_or(self.created), tz),
        }
    }

    /// Whether it should run at `now`.
    pub fn is_due(&self, now: Timestamp, tz: &TimeZone) -> bool {
        self.next_run(tz).is_some_and(|t| t <= now)
    }
}

/// Every scheduled backup of this machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The entries, in the order they were added.
    pub entries: Vec<Entry>,
}

impl Schedule {
    /// The JSON encoding.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decodes a schedule.
    pub fn decode(data: &[u8]) -> Result<Schedule, crate::FormatError> {
        serde_json::from_slice(data)
            .map_err(|e| crate::FormatError::invalid("schedule", e.to_string()))
    }

    /// The entry whose id starts with `prefix` (unique).
    pub fn position(&self, prefix: &str) -> Result<usize, TimingError> {
        let found: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].id.starts_with(prefix))
            .collect();
        match found[..] {
            [i] => Ok(i),
            [] => Err(bad(format!("no scheduled backup {prefix:?}"))),
            _ => Err(bad(format!(
                "several scheduled backups start with {prefix:?}"
            ))),
        }
    }

    /// When the agent must look again after `now`: the earliest next run.
    pub fn next_wake(&self, tz: &TimeZone) -> Option<Timestamp> {
        self.entries.iter().filter_map(|e| e.next_run(tz)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cron_next(expr: &str, after: &str) -> String {
        let c = Cron::parse(expr).unwrap();
        c.next_after(after.parse().unwrap())
            .map(|d| d.strftime("%Y-%m-%d %H:%M %a").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn cron_finds_the_next_minute() {
        assert_eq!(
            cron_next("* * * * *", "2026-11-21T10:00:30"),
            "2026-11-21 10:01 Sat"
        );
        assert_eq!(
            cron_next("0 3 * * *", "2026-11-21T10:00"),
            "2026-11-22 03:00 Sun"
        );
        assert_eq!(
            cron_next("*/15 * * * *", "2026-11-21T10:07"),
            "2026-11-21 10:15 Sat"
        );
        assert_eq!(
            cron_next("30 2 * * 1-5", "2026-11-21T00:00"),
            "2026-11-23 02:30 Mon"
        );
        assert_eq!(
            cron_next("0 0 29 2 *", "2026-03-01T00:00"),
            "2028-02-29 00:00 Tue"
        );
        assert_eq!(
            cron_next("0 12 1 * 0", "2026-11-21T00:00"),
            "2026-11-22 12:00 Sun"
        );
        assert_eq!(
            cron_next("0 12 * * 7", "2026-11-21T00:00"),
            "2026-11-22 12:00 Sun"
        );
        assert_eq!(
            cron_next("5/20 8 * * *", "2026-11-21T08:30"),
            "2026-11-21 08:45 Sat"
        );
        assert_eq!(cron_next("0 0 31 2 *", "2026-01-01T00:00"), "", "never");
    }

    #[test]
    fn cron_rejects_nonsense() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "a * * * *",
            "1,,2 * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn timings_parse_and_print_back() {
        for s in [
            "at 03:00",
            "at 2026-12-24 18:30",
            "every 6h",
            "every 1d",
            "every 1h 30m",
            "cron 0 3 * * 1-5",
        ] {
            let t: Timing = s.parse().unwrap();
            let again: Timing = t.to_string().parse().unwrap();
            assert_eq!(t, again, "{s}");
        }
        assert_eq!(
            Timing::every("1w").unwrap(),
            Timing::Every(SignedDuration::from_hours(168))
        );
        assert!(Timing::every("0s").is_err());
        assert!(Timing::every("soon").is_err());
        assert!(Timing::at("25:00").is_err());
        assert!("weekly".parse::<Timing>().is_err());
    }

    #[test]
    fn next_runs() {
        let tz = utc();
        let daily = Timing::at("03:00").unwrap();
        assert_eq!(
            daily.next_after(ts("2026-11-21T02:00:00Z"), &tz),
            Some(ts("2026-11-21T03:00:00Z"))
        );
        assert_eq!(
            daily.next_after(ts("2026-11-21T03:00:00Z"), &tz),
            Some(ts("2026-11-22T03:00:00Z"))
        );
        let once = Timing::at("2026-11-22 01:00").unwrap();
        assert_eq!(
            once.next_after(ts("2026-11-21T00:00:00Z"), &tz),
            Some(ts("2026-11-22T01:00:00Z"))
        );
        assert_eq!(once.next_after(ts("2026-11-23T00:00:00Z"), &tz), None);
        let every = Timing::every("6h").unwrap();
        assert_eq!(
            every.next_after(ts("2026-11-21T00:00:00Z"), &tz),
            Some(ts("2026-11-21T06:00:00Z"))
        );
    }

    #[test]
    fn daily_time_follows_the_wall_clock_across_daylight_saving() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let daily = Timing::at("03:00").unwrap();
        // The night of 2026-10-25 has 25 hours in Berlin; 03:00 stays 03:00 local.
        let next = daily.next_after(ts("2026-10-24T02:00:00Z"), &tz).unwrap();
        assert_eq!(next, ts("2026-10-25T02:00:00Z"));
        let after = daily.next_after(next, &tz).unwrap();
        assert_eq!(after, ts("2026-10-26T02:00:00Z"));
    }

    #[test]
    fn cron_keeps_running_through_the_autumn_fold() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let every5 = Timing::Cron(Cron::parse("*/5 * * * *").unwrap());
        // 02:20 local in the second pass of the repeated hour (CET) is 01:20Z.
        let after = ts("2026-10-25T01:20:00Z");
        assert_eq!(
            every5.next_after(after, &tz),
            Some(ts("2026-10-25T01:25:00Z"))
        );
        // And in the first pass (CEST), the next run is five minutes on, not an hour.
        let first_pass = ts("2026-10-25T00:20:00Z");
        assert_eq!(
            every5.next_after(first_pass, &tz),
            Some(ts("2026-10-25T00:25:00Z"))
        );
        // A daily run inside the spring gap happens right after it, and in the autumn fold once.
        let daily = Timing::at("02:30").unwrap();
        assert_eq!(
            daily.next_after(ts("2026-03-29T00:00:00Z"), &tz),
            Some(ts("2026-03-29T01:30:00Z"))
        );
        let ran = ts("2026-10-25T00:30:00Z");
        assert_eq!(daily.next_after(ran, &tz), Some(ts("2026-10-26T01:30:00Z")));
        let fixed = Timing::Cron(Cron::parse("30 2 * * *").unwrap());
        assert_eq!(fixed.next_after(ran, &tz), Some(ts("2026-10-26T01:30:00Z")));
    }

    #[test]
    fn cron_day_fields_and_steps_follow_cron() {
        // With `*/2` in the day of month, both day fields must match: Mondays on odd days.
        assert_eq!(
            cron_next("0 0 */2 * 1", "2026-11-21T00:00"),
            "2026-11-23 00:00 Mon"
        );
        assert_eq!(
            cron_next("0 0 */2 * 1", "2026-11-23T00:00"),
            "2026-12-07 00:00 Mon"
        );
        assert_eq!(
            cron_next("5/1 8 * * *", "2026-11-21T08:30"),
            "2026-11-21 08:31 Sat"
        );
        assert_eq!(
            cron_next("*/4294967295 * * * *", "2026-11-21T08:30"),
            "2026-11-21 09:00 Sat"
        );
    }

    #[test]
    fn missed_runs_run_once() {
        let tz = utc();
        let mut e = Entry {
            id: "ab12".into(),
            paths: vec!["/home".into()],
            phone: None,
            kind: BackupType::Incremental,
            tags: vec![],
            timing: Timing::every("1h").unwrap(),
            created: ts("2026-11-21T00:00:00Z"),
            last_run: None,
            last_outcome: None,
        };
        assert!(
            e.is_due(ts("2026-11-21T00:00:00Z"), &tz),
            "a new interval entry runs at once"
        );
        e.last_run = Some(ts("2026-11-21T00:00:00Z"));
        assert!(!e.is_due(ts("2026-11-21T00:30:00Z"), &tz));
        // The machine slept for five hours: one run is due, and after it none.
        let now = ts("2026-11-21T05:10:00Z");
        assert!(e.is_due(now, &tz));
        e.last_run = Some(now);
        assert!(!e.is_due(now, &tz));
        assert_eq!(e.next_run(&tz), Some(ts("2026-11-21T06:10:00Z")));

        e.timing = Timing::at("2026-11-21 01:00").unwrap();
        e.last_run = None;
        assert!(!e.is_due(ts("2026-11-21T00:59:00Z"), &tz));
        assert!(
            e.is_due(ts("2026-11-21T09:00:00Z"), &tz),
            "a missed one-off runs late"
        );
        e.last_run = Some(ts("2026-11-21T09:00:00Z"));
        assert_eq!(e.next_run(&tz), None, "and then never again");

        let s = Schedule {
            entries: vec![e.clone()],
        };
        assert_eq!(Schedule::decode(&s.encode()).unwrap(), s);
        assert_eq!(s.position("ab").unwrap(), 0);
        assert!(s.position("x").is_err());
    }
}

//! Freshness: an instruction is acted on only if its `Date` is recent and its `Message-Id` new,
//! so one captured on the way cannot be sent again. Both fields are covered by the
//! authentication value ([`crate::auth::REQUIRED`]), so neither can be changed to pass.

use std::time::Duration;

/// Why an instruction is not fresh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// The `Date` does not parse (RFC 5322).
    #[error("the Date {0:?} does not parse")]
    BadDate(String),
    /// Older than the window.
    #[error("the Date is {0} s old (more than the {1} s allowed)")]
    TooOld(i64, u64),
    /// Further ahead than clocks differ.
    #[error("the Date is {0} s ahead of this clock (more than the {1} s allowed)")]
    Ahead(i64, u64),
    /// The `Message-Id` was seen before.
    #[error("Message-Id {0} was seen before (a replay)")]
    Replayed(String),
    /// No `Message-Id`, or an empty one.
    #[error("no Message-Id")]
    NoMessageId,
}

/// The window an instruction's `Date` must fall in.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// How old it may be.
    pub max_age: Duration,
    /// How far ahead of this clock it may be.
    pub max_ahead: Duration,
}

impl Default for Window {
    /// A quarter of an hour old, five minutes ahead: mail is slow, clocks are not exact.
    fn default() -> Window {
        Window {
            max_age: Duration::from_secs(15 * 60),
            max_ahead: Duration::from_secs(5 * 60),
        }
    }
}

impl Window {
    /// The default window, with `max_age_secs` as its age where given.
    pub fn with_max_age(max_age_secs: Option<u64>) -> Window {
        let mut w = Window::default();
        if let Some(s) = max_age_secs {
            w.max_age = Duration::from_secs(s);
        }
        w
    }
}

/// Message ids already acted on (kept for at least the window's age, after which a replay is
/// refused by its date).
pub trait Seen {
    /// Records `id`; returns whether it was there already.
    fn record(&mut self, id: &str) -> bool;
}

impl Seen for std::collections::HashSet<String> {
    fn record(&mut self, id: &str) -> bool {
        !self.insert(id.to_string())
    }
}

/// Checks `date` against `now` and records `message_id` in `seen`; the id is recorded only when
/// the date is in the window, so a stale message does not fill the store.
pub fn check(
    date: &str,
    message_id: &str,
    now: jiff::Timestamp,
    window: Window,
    seen: &mut dyn Seen,
) -> Result<(), Stale> {
    let when = jiff::fmt::rfc2822::parse(date.trim())
        .map_err(|_| Stale::BadDate(date.chars().take(80).collect()))?
        .timestamp();
    let age = now.as_second() - when.as_second();
    if age > window.max_age.as_secs() as i64 {
        return Err(Stale::TooOld(age, window.max_age.as_secs()));
    }
    if -age > window.max_ahead.as_secs() as i64 {
        return Err(Stale::Ahead(-age, window.max_ahead.as_secs()));
    }
    let id = message_id.trim();
    if id.is_empty() {
        return Err(Stale::NoMessageId);
    }
    if seen.record(id) {
        return Err(Stale::Replayed(id.chars().take(200).collect()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_fresh_instruction_passes_once_and_old_or_future_ones_never() {
        let now: jiff::Timestamp = "2026-12-01T07:10:00Z".parse().unwrap();
        let w = Window::default();
        let mut seen = HashSet::new();
        let date = "Tue, 1 Dec 2026 07:00:00 +0000";
        assert_eq!(check(date, "<1@t>", now, w, &mut seen), Ok(()));
        assert_eq!(
            check(date, "<1@t>", now, w, &mut seen),
            Err(Stale::Replayed("<1@t>".into()))
        );
        assert!(matches!(
            check("Tue, 1 Dec 2026 06:50:00 +0000", "<2@t>", now, w, &mut seen),
            Err(Stale::TooOld(1200, 900))
        ));
        assert!(matches!(
            check("Tue, 1 Dec 2026 16:20:00 +0900", "<3@t>", now, w, &mut seen),
            Err(Stale::Ahead(600, 300))
        ));
        assert!(matches!(
            check("yesterday", "<4@t>", now, w, &mut seen),
            Err(Stale::BadDate(_))
        ));
        assert_eq!(check(date, " ", now, w, &mut seen), Err(Stale::NoMessageId));
        // Refused for their dates, the others were not recorded.
        assert_eq!(seen.len(), 1);
    }
}

//! What an integrity check makes of an object's copies (`docs/requirements/placement.md`
//! requirement 9).
//!
//! The check reads every copy, removes its site's envelope and compares what is inside with
//! the checksum the service recorded when the object was stored. A copy is then:
//!
//! - **good**: it opens and is the object stored;
//! - **damaged**: it is missing, or does not open (its envelope's own checksums fail) even
//!   after the site re-read it: a media fault, repaired from a good copy;
//! - **tampered**: it opens under the site's key yet holds other bytes: it is kept as evidence
//!   and never overwritten;
//! - **untrusted**: its site failed to prove its identity, so nothing it holds counts;
//! - **unchecked**: its site could not be reached; the next check tries again.
//!
//! With no good copy and none unchecked or untrusted the object is **lost** (a site that
//! proves itself again may still hold a good copy). All of this works on ciphertext: the
//! service never needs a user's keys to check what it stores.

use serde::Serialize;

/// What reading one copy gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// The copy opened; the SHA-256 (hex) of what it holds.
    Opened {
        /// The checksum of the opened copy.
        sha256: String,
    },
    /// The copy is not at the site.
    Missing,
    /// The copy does not open.
    Damaged(String),
    /// The site did not prove its identity.
    Impostor(String),
    /// The site could not be reached.
    Unreachable(String),
}

/// The state of one copy after the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// The object as stored.
    Good,
    /// Missing or unreadable: a media fault.
    Damaged,
    /// Intact by its own checksums but not the object stored.
    Tampered,
    /// At a site that failed authentication.
    Untrusted,
    /// Not checked this time.
    Unchecked,
}

/// Judges one copy against the checksum recorded for the object.
pub fn judge(expected_sha256: &str, reading: &Reading) -> Finding {
    match reading {
        Reading::Opened { sha256 } if sha256.eq_ignore_ascii_case(expected_sha256) => Finding::Good,
        Reading::Opened { .. } => Finding::Tampered,
        Reading::Impostor(_) => Finding::Untrusted,
        Reading::Missing | Reading::Damaged(_) => Finding::Damaged,
        Reading::Unreachable(_) => Finding::Unchecked,
    }
}

/// What the check concludes of the whole object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every copy checked is good.
    Sound,
    /// At least one good copy, and at least one damaged, tampered or untrusted.
    Faulty,
    /// No good copy, and none left unchecked or untrusted.
    Lost,
    /// No good copy found, but a copy could not be checked or its site is not trusted now.
    Unknown,
}

/// The verdict over all copies' findings.
pub fn verdict(findings: &[Finding]) -> Verdict {
    let any = |f: Finding| findings.contains(&f);
    if any(Finding::Good) {
        if any(Finding::Damaged) || any(Finding::Tampered) || any(Finding::Untrusted) {
            Verdict::Faulty
        } else {
            Verdict::Sound
        }
    } else if any(Finding::Unchecked) || any(Finding::Untrusted) {
        Verdict::Unknown
    } else {
        Verdict::Lost
    }
}

/// Where two versions of an object differ: the byte range `start..end` from the first byte
/// that differs to the last (a difference in length counts to the longer one's end), or `None`
/// when they are equal.
pub fn differing_range(a: &[u8], b: &[u8]) -> Option<(u64, u64)> {
    let start = a.iter().zip(b).position(|(x, y)| x != y);
    let start = match start {
        Some(s) => s,
        None if a.len() == b.len() => return None,
        None => a.len().min(b.len()),
    };
    let end = if a.len() == b.len() {
        // Equal lengths: the last differing byte, found from the end.
        let back = a
            .iter()
            .rev()
            .zip(b.iter().rev())
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        a.len() - back
    } else {
        a.len().max(b.len())
    };
    Some((start as u64, end as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUM: &str = "ab12";

    fn opened(s: &str) -> Reading {
        Reading::Opened { sha256: s.into() }
    }

    #[test]
    fn copies_are_judged_by_the_recorded_checksum() {
        assert_eq!(judge(SUM, &opened("AB12")), Finding::Good);
        assert_eq!(judge(SUM, &opened("cd34")), Finding::Tampered);
        assert_eq!(
            judge(SUM, &Reading::Impostor("x".into())),
            Finding::Untrusted
        );
        assert_eq!(judge(SUM, &Reading::Missing), Finding::Damaged);
        assert_eq!(
            judge(SUM, &Reading::Damaged("tag".into())),
            Finding::Damaged
        );
        assert_eq!(
            judge(SUM, &Reading::Unreachable("down".into())),
            Finding::Unchecked
        );
    }

    #[test]
    fn verdicts() {
        use Finding::*;
        assert_eq!(verdict(&[Good, Good]), Verdict::Sound);
        assert_eq!(verdict(&[Good, Unchecked]), Verdict::Sound);
        assert_eq!(verdict(&[Good, Damaged]), Verdict::Faulty);
        assert_eq!(verdict(&[Tampered, Good]), Verdict::Faulty);
        assert_eq!(verdict(&[Damaged, Damaged]), Verdict::Lost);
        assert_eq!(verdict(&[Tampered, Damaged]), Verdict::Lost);
        assert_eq!(verdict(&[]), Verdict::Lost);
        assert_eq!(verdict(&[Damaged, Unchecked]), Verdict::Unknown);
        assert_eq!(verdict(&[Good, Untrusted]), Verdict::Faulty);
        assert_eq!(verdict(&[Damaged, Untrusted]), Verdict::Unknown);
    }

    #[test]
    fn ranges() {
        assert_eq!(differing_range(b"abcdef", b"abcdef"), None);
        assert_eq!(differing_range(b"abcdef", b"abXdef"), Some((2, 3)));
        assert_eq!(differing_range(b"abcdef", b"aXcdYf"), Some((1, 5)));
        assert_eq!(differing_range(b"abc", b"abcde"), Some((3, 5)));
        assert_eq!(differing_range(b"abcde", b"aXc"), Some((1, 5)));
        assert_eq!(differing_range(b"", b""), None);
    }

    proptest! {
        #[test]
        fn the_range_covers_every_difference_and_starts_and_ends_on_one(
            a in proptest::collection::vec(0u8..4, 0..64),
            b in proptest::collection::vec(0u8..4, 0..64),
        ) {
            match differing_range(&a, &b) {
                None => prop_assert_eq!(&a, &b),
                Some((s, e)) => {
                    let (s, e) = (s as usize, e as usize);
                    prop_assert!(s < e);
                    prop_assert_eq!(&a[..s], &b[..s]);
                    prop_assert!(a.get(s) != b.get(s));
                    prop_assert!(a.get(e - 1) != b.get(e - 1));
                    if a.len() == b.len() {
                        prop_assert_eq!(&a[e..], &b[e..]);
                    } else {
                        prop_assert_eq!(e, a.len().max(b.len()));
                    }
                }
            }
        }
    }
}

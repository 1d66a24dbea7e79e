//! The placement rule (`docs/requirements/placement.md` requirement 3). Of the sites a user's level
//! may use (its risk table), the **primary** is the one with the lowest risk, and the **secondary**
//! the one with the lowest risk in a region other than the user's home region, or the next such
//! site if that is the primary. Ties go to the smaller site id, so every server computes the same
//! placement from the same tables.
//!
//! With fewer usable sites than that, the placement says how it is degraded: a second copy in
//! the home region (no site elsewhere), one copy, or none.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// A site the user's level may use, as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate<'a> {
    /// The site's id.
    pub site: &'a str,
    /// Its region.
    pub region: &'a str,
    /// Its risk score (lower is safer), including any penalty for failed authentications.
    pub risk: f64,
    /// Whether it can be written now (reachable, authenticated).
    pub usable: bool,
}

/// How a placement falls short of two copies in two regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Degraded {
    /// Two copies, but no usable site outside the home region took the second.
    SecondaryInHomeRegion,
    /// Only one site is usable.
    OneCopy,
    /// No site is usable.
    NoSite,
}

/// Where an object's two copies go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The site of the first copy.
    pub primary: Option<String>,
    /// The site of the second copy.
    pub secondary: Option<String>,
    /// Set when the placement is short of the rule; the service heals it when sites return.
    pub degraded: Option<Degraded>,
}

/// The rule's order of sites: lower risk first, then the smaller site id (then region), so
/// every server ranks the same sites the same way.
pub fn safer(a: &Candidate, b: &Candidate) -> Ordering {
    a.risk
        .total_cmp(&b.risk)
        .then_with(|| a.site.cmp(b.site))
        .then_with(|| a.region.cmp(b.region))
}

/// Places an object of a user whose home region is `home`.
pub fn place(candidates: &[Candidate], home: &str) -> Placement {
    let mut usable: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.usable && !c.risk.is_nan())
        .collect();
    usable.sort_by(|a, b| safer(a, b));
    // A site listed twice counts once, at its safest entry.
    let mut seen = std::collections::HashSet::new();
    usable.retain(|c| seen.insert(c.site));
    let Some(primary) = usable.first() else {
        return Placement {
            primary: None,
            secondary: None,
            degraded: Some(Degraded::NoSite),
        };
    };
    let away = usable
        .iter()
        .find(|c| c.region != home && c.site != primary.site);
    let (secondary, degraded) = match away {
        Some(c) => (Some(c.site), None),
        None => match usable.iter().find(|c| c.site != primary.site) {
            Some(c) => (Some(c.site), Some(Degraded::SecondaryInHomeRegion)),
            None => (None, Some(Degraded::OneCopy)),
        },
    };
    Placement {
        primary: Some(primary.site.to_string()),
        secondary: secondary.map(str::to_string),
        degraded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c<'a>(site: &'a str, region: &'a str, risk: f64) -> Candidate<'a> {
        Candidate {
            site,
            region,
            risk,
            usable: true,
        }
    }

    fn sites(p: &Placement) -> (Option<&str>, Option<&str>, Option<Degraded>) {
        (p.primary.as_deref(), p.secondary.as_deref(), p.degraded)
    }

    #[test]
    fn primary_is_safest_and_secondary_safest_elsewhere() {
        let t = [
            c("tokyo-1", "kanto", 0.9),
            c("osaka-1", "kansai", 0.5),
            c("sapporo-1", "hokkaido", 0.2),
            c("chiba-1", "kanto", 0.1),
        ];
        // A user at home in kanto: the safest site happens to be in kanto; the second copy
        // must leave it.
        assert_eq!(
            sites(&place(&t, "kanto")),
            (Some("chiba-1"), Some("sapporo-1"), None)
        );
        // At home in hokkaido: the safest outside hokkaido is chiba-1, which is the primary,
        // so the next one (osaka-1) takes the second copy.
        assert_eq!(
            sites(&place(&t, "hokkaido")),
            (Some("chiba-1"), Some("osaka-1"), None)
        );
        // At home elsewhere: the safest outside is the primary, the next is sapporo-1.
        assert_eq!(
            sites(&place(&t, "kyushu")),
            (Some("chiba-1"), Some("sapporo-1"), None)
        );
    }

    #[test]
    fn ties_break_by_site_id_whatever_the_order() {
        let a = [c("b", "r1", 0.3), c("a", "r2", 0.3), c("c", "r3", 0.3)];
        let b = [c("c", "r3", 0.3), c("b", "r1", 0.3), c("a", "r2", 0.3)];
        assert_eq!(place(&a, "r9"), place(&b, "r9"));
        assert_eq!(sites(&place(&a, "r9")), (Some("a"), Some("b"), None));
        assert_eq!(sites(&place(&a, "r1")), (Some("a"), Some("c"), None));
    }

    #[test]
    fn every_site_in_the_home_region() {
        let t = [c("x", "home", 0.4), c("y", "home", 0.2)];
        assert_eq!(
            sites(&place(&t, "home")),
            (Some("y"), Some("x"), Some(Degraded::SecondaryInHomeRegion))
        );
    }

    #[test]
    fn one_site_regions_and_unusable_sites() {
        let mut t = [c("only", "r1", 0.4), c("down", "r2", 0.1)];
        t[1].usable = false;
        assert_eq!(
            sites(&place(&t, "r3")),
            (Some("only"), None, Some(Degraded::OneCopy))
        );
        t[0].usable = false;
        assert_eq!(
            sites(&place(&t, "r3")),
            (None, None, Some(Degraded::NoSite))
        );
        assert_eq!(
            sites(&place(&[], "r3")),
            (None, None, Some(Degraded::NoSite))
        );
    }

    #[test]
    fn a_site_listed_twice_counts_once() {
        let t = [c("a", "r1", 0.5), c("b", "r2", 0.3), c("a", "r1", 0.1)];
        assert_eq!(sites(&place(&t, "r9")), (Some("a"), Some("b"), None));
    }

    #[test]
    fn a_penalised_site_loses_its_place() {
        let honest = [c("a", "r1", 0.2), c("b", "r2", 0.3), c("c", "r3", 0.4)];
        assert_eq!(sites(&place(&honest, "r9")), (Some("a"), Some("b"), None));
        let mut penalised = honest.clone();
        penalised[0].risk += 1.0;
        assert_eq!(
            sites(&place(&penalised, "r9")),
            (Some("b"), Some("c"), None)
        );
    }

    proptest! {
        #[test]
        fn the_rule_holds_for_any_table(
            table in proptest::collection::vec((0u8..4, 0u32..5, any::<bool>()), 0..12),
            home in 0u8..4,
        ) {
            // Sites are unique in a table; ids are numbered out of order to vary the ties.
            let names: Vec<(String, String, f64, bool)> = table
                .iter()
                .enumerate()
                .map(|(i, (r, risk, ok))| {
                    (format!("s{}", (i * 7) % 12), format!("r{r}"), *risk as f64 / 4.0, *ok)
                })
                .collect();
            let cands: Vec<Candidate> = names
                .iter()
                .map(|(s, r, risk, ok)| Candidate { site: s, region: r, risk: *risk, usable: *ok })
                .collect();
            let home = format!("r{home}");
            let p = place(&cands, &home);
            let mut reversed = cands.clone();
            reversed.reverse();
            prop_assert_eq!(&p, &place(&reversed, &home), "order of the table matters");
            let usable: Vec<&Candidate> = cands.iter().filter(|c| c.usable).collect();
            match &p.primary {
                None => prop_assert!(usable.is_empty()),
                Some(primary) => {
                    let min = usable.iter().map(|c| c.risk).fold(f64::INFINITY, f64::min);
                    prop_assert!(usable.iter().any(|c| c.site == primary && c.risk == min));
                }
            }
            if let Some(secondary) = &p.secondary {
                prop_assert_ne!(Some(secondary), p.primary.as_ref());
                let region_of = |s: &str| usable.iter().find(|c| c.site == s).map(|c| c.region);
                if p.degraded.is_none() {
                    prop_assert_ne!(region_of(secondary), Some(home.as_str()));
                }
            }
        }
    }
}

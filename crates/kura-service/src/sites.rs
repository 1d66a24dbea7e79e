//! The service's storage sites and placement tables (`docs/requirements/placement.md`): sites and
//! membership levels come from the service configuration; with none configured, three demo
//! sites in three regions live under the data directory, so placement is visible on one machine
//! without setup. The risk feed and the site keyring are kept in the data directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kura_placement::envelope::Keyring;
use kura_placement::{LevelRule, RiskFeed};
use kura_sites::SiteConfig;
use serde::Deserialize;

use crate::registry::Contract;
use crate::write_private;

/// A membership level as declared in the service configuration (`[[levels]]`): who has it, and
/// which sites it may use (its risk table; empty for every site).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelEntry {
    /// The level's name.
    pub level: String,
    /// Fee plans it applies to; empty for every plan.
    #[serde(default)]
    pub plans: Vec<String>,
    /// Whole contract years needed.
    #[serde(default)]
    pub min_years: u32,
    /// Sites this level may use.
    #[serde(default)]
    pub sites: Vec<String>,
}

impl LevelEntry {
    /// The rule that gives the level.
    pub fn rule(&self) -> LevelRule {
        LevelRule {
            level: self.level.clone(),
            plans: self.plans.clone(),
            min_years: self.min_years,
        }
    }
}

/// The placement part of the service configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PlacementConfig {
    /// Storage sites; none means the three demo sites.
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    /// Level rules, best first; none means one level, `standard`, using every site.
    #[serde(default)]
    pub levels: Vec<LevelEntry>,
    /// Authentication failures of a site at which every user with data there is told
    /// (default 1).
    #[serde(default)]
    pub fraud_threshold: Option<u64>,
}

/// The sites, levels, risk feed and keyring the service works with.
#[derive(Debug)]
pub struct Placement {
    data_dir: PathBuf,
    /// The sites.
    pub sites: Vec<SiteConfig>,
    /// The levels.
    pub levels: Vec<LevelEntry>,
    /// The latest risk feed.
    pub feed: RiskFeed,
    /// When the feed file read had last changed.
    feed_read: Option<std::time::SystemTime>,
}

/// The level of users no rule matches.
pub const DEFAULT_LEVEL: &str = "standard";

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Placement {
    /// Loads the placement state under `data_dir` for `config` (the demo sites when it names
    /// none, with a secret made on first use).
    pub fn load(data_dir: &Path, config: &PlacementConfig) -> io::Result<Placement> {
        fs::create_dir_all(data_dir)?;
        let sites = if config.sites.is_empty() {
            demo_sites(data_dir)?
        } else {
            config.sites.clone()
        };
        let mut seen = std::collections::HashSet::new();
        for s in &sites {
            if !seen.insert(s.id.as_str()) {
                return Err(invalid(format!("site {} is declared twice", s.id)));
            }
            if !s.risk.is_finite() || s.risk < 0.0 {
                return Err(invalid(format!("site {}: risk must be 0 or more", s.id)));
            }
        }
        for l in &config.levels {
            if let Some(unknown) = l.sites.iter().find(|id| !seen.contains(id.as_str())) {
                return Err(invalid(format!(
                    "level {} names an unknown site {unknown}",
                    l.level
                )));
            }
        }
        let mut placement = Placement {
            data_dir: data_dir.to_path_buf(),
            sites,
            levels: config.levels.clone(),
            feed: RiskFeed::default(),
            feed_read: None,
        };
        placement.reload_feed()?;
        Ok(placement)
    }

    /// A site's risk now: the feed's for its region, else the configured one.
    pub fn risk(&self, site: &SiteConfig) -> f64 {
        self.feed.risk(&site.region).unwrap_or(site.risk)
    }

    /// Takes in a newer risk feed and keeps it.
    pub fn import_feed(&mut self, newer: RiskFeed) -> io::Result<()> {
        self.feed.update(newer);
        let json = serde_json::to_vec_pretty(&self.feed).map_err(io::Error::other)?;
        write_private(&self.data_dir.join("risk-feed.json"), &json)
    }

    fn keyring_path(&self) -> PathBuf {
        self.data_dir.join("keyring.json")
    }

    /// The site keyring (empty before the first copy is sealed).
    pub fn keyring(&self) -> io::Result<Keyring> {
        match fs::read(self.keyring_path()) {
            Ok(b) => Keyring::decode(&b).map_err(|e| invalid(format!("keyring: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Keyring::default()),
            Err(e) => Err(e),
        }
    }

    /// Keeps the keyring (mode 0600).
    pub fn save_keyring(&self, keyring: &Keyring) -> io::Result<()> {
        write_private(&self.keyring_path(), &keyring.encode())
    }

    /// The keyring with a key for every site, made and kept for any site that had none, so
    /// that the running service never has to write it (only `kura admin keys rotate` does).
    pub fn keyring_for_sites(&self) -> io::Result<Keyring> {
        let mut ring = self.keyring()?;
        let before = ring.clone();
        for s in &self.sites {
            ring.current(&s.id);
        }
        if ring != before {
            self.save_keyring(&ring)?;
        }
        Ok(ring)
    }

    /// When the keyring file last changed (to notice a rotation by the operator).
    pub fn keyring_changed(&self) -> Option<std::time::SystemTime> {
        fs::metadata(self.keyring_path()).ok()?.modified().ok()
    }

    /// Reads the risk feed again if the operator imported one since it was read (feeds are
    /// imported while the service runs).
    pub fn reload_feed(&mut self) -> io::Result<()> {
        let changed = fs::metadata(self.data_dir.join("risk-feed.json"))
            .and_then(|m| m.modified())
            .ok();
        if changed != self.feed_read {
            self.feed = Placement::load_feed(&self.data_dir)?;
            self.feed_read = changed;
        }
        Ok(())
    }

    fn load_feed(data_dir: &Path) -> io::Result<RiskFeed> {
        match fs::read_to_string(data_dir.join("risk-feed.json")) {
            Ok(text) => RiskFeed::parse(&text).map_err(|e| invalid(format!("risk feed: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RiskFeed::default()),
            Err(e) => Err(e),
        }
    }

    /// A user's level under the configured rules.
    pub fn level_of(&self, contract: &Contract, today: jiff::civil::Date) -> &str {
        let rules: Vec<LevelRule> = self.levels.iter().map(LevelEntry::rule).collect();
        let years = contract.member_since.map_or(0, |since| {
            kura_placement::level::contract_years(since, today)
        });
        let level = kura_placement::level::level_of(&rules, &contract.plan, years, DEFAULT_LEVEL);
        self.levels
            .iter()
            .find(|l| l.level == level)
            .map_or(DEFAULT_LEVEL, |l| l.level.as_str())
    }

    /// The sites a level may use: its risk table, or every site for a level with none.
    pub fn sites_of_level(&self, level: &str) -> Vec<&SiteConfig> {
        match self.levels.iter().find(|l| l.level == level) {
            Some(l) if !l.sites.is_empty() => self
                .sites
                .iter()
                .filter(|s| l.sites.contains(&s.id))
                .collect(),
            _ => self.sites.iter().collect(),
        }
    }
}

/// The embedded default: three directory sites in three demo regions.
fn demo_sites(data_dir: &Path) -> io::Result<Vec<SiteConfig>> {
    let secret_path = data_dir.join("site-secret");
    let master = match fs::read_to_string(&secret_path) {
        Ok(s) => s.trim().to_string(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let s = kura_core::id::hex(&kura_core::crypto::random_bytes::<32>());
            write_private(&secret_path, s.as_bytes())?;
            s
        }
        Err(e) => return Err(e),
    };
    Ok([("east", 0.2), ("west", 0.4), ("north", 0.6)]
        .into_iter()
        .map(|(name, risk)| SiteConfig {
            id: format!("demo-{name}"),
            region: format!("demo-{name}"),
            url: format!("file://{}", data_dir.join("sites").join(name).display()),
            access_key_id: None,
            secret_access_key: None,
            secret: format!("{master}:{name}"),
            risk,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_sites_feed_and_keyring_persist() {
        let d = tempfile::tempdir().unwrap();
        let mut p = Placement::load(d.path(), &PlacementConfig::default()).unwrap();
        assert_eq!(p.sites.len(), 3);
        let again = Placement::load(d.path(), &PlacementConfig::default()).unwrap();
        assert_eq!(
            p.sites[0].secret, again.sites[0].secret,
            "one secret, made once"
        );
        assert_eq!(p.risk(&p.sites[1].clone()), 0.4);
        p.import_feed(RiskFeed::parse("region,flood\ndemo-west,0.05\n").unwrap())
            .unwrap();
        let p = Placement::load(d.path(), &PlacementConfig::default()).unwrap();
        assert_eq!(p.risk(&p.sites[1].clone()), 0.05);
        let mut ring = p.keyring().unwrap();
        ring.rotate("demo-east");
        p.save_keyring(&ring).unwrap();
        assert_eq!(p.keyring().unwrap(), ring);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(d.path().join("keyring.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_tables_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let site = |id: &str| SiteConfig {
            id: id.into(),
            region: "r".into(),
            url: "file:///tmp/x".into(),
            access_key_id: None,
            secret_access_key: None,
            secret: "s".into(),
            risk: 0.1,
        };
        let twice = PlacementConfig {
            sites: vec![site("a"), site("a")],
            ..PlacementConfig::default()
        };
        assert!(Placement::load(d.path(), &twice).is_err());
        let unknown = PlacementConfig {
            sites: vec![site("a")],
            levels: vec![LevelEntry {
                level: "gold".into(),
                plans: vec![],
                min_years: 0,
                sites: vec!["b".into()],
            }],
            ..PlacementConfig::default()
        };
        let e = Placement::load(d.path(), &unknown).unwrap_err().to_string();
        assert!(e.contains("unknown site b"), "{e}");
    }
}

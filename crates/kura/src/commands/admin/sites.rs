//! `kura admin sites|place|risk|keys`: the storage sites, placement runs, risk feeds and
//! site keys.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kura_service::sites::Placement;
use serde_json::json;

use super::Admin;
use crate::output::table;

/// Risk feed commands.
#[derive(Subcommand)]
pub enum RiskCommand {
    /// Load a risk feed (CSV `region,hazard,...` or JSON `{"region": {"hazard": score}}`);
    /// its regions replace what earlier feeds said of them.
    Import {
        /// The feed file.
        file: PathBuf,
    },
}

/// Site key commands.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Start sealing a site's copies under a new key; copies under older keys stay readable.
    Rotate {
        /// The site id.
        site: String,
    },
}

/// `kura admin sites`.
pub fn sites(a: Admin) -> Result<()> {
    let (runtime, storage, out) = a.storage()?;
    let rows = runtime.block_on(storage.sites_report())?;
    out.emit(&rows, || {
        let header = format!(
            "{:<16} {:<16} {:>8} {:>9} {:>8}  status",
            "site", "region", "risk", "failures", "copies"
        );
        table(
            header,
            rows.iter().map(|r| {
                format!(
                    "{:<16} {:<16} {:>8.3} {:>9} {:>8}  {}",
                    r["id"].as_str().unwrap_or_default(),
                    r["region"].as_str().unwrap_or_default(),
                    r["risk"].as_f64().unwrap_or_default(),
                    r["auth_failures"].as_u64().unwrap_or_default(),
                    r["copies"].as_u64().unwrap_or_default(),
                    r["status"].as_str().unwrap_or_default()
                )
            }),
        )
    });
    Ok(())
}

/// `kura admin place`: a placement run.
pub fn place(a: Admin) -> Result<()> {
    let (runtime, storage, out) = a.storage()?;
    let r = runtime.block_on(storage.place_all())?;
    out.emit(&r, || {
        format!(
            "{} objects checked: {} copies made, {} old copies deleted, {} waiting for a site, \
             {} unreadable; {} users notified",
            r.objects, r.copied, r.deleted, r.pending, r.unreadable, r.notified
        )
    });
    if r.unreadable > 0 {
        bail!("{} objects have no readable copy", r.unreadable);
    }
    Ok(())
}

/// `kura admin risk import`.
pub fn risk(a: Admin, c: RiskCommand) -> Result<()> {
    let RiskCommand::Import { file } = c;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let feed = kura_placement::RiskFeed::parse(&text)
        .with_context(|| format!("risk feed {}", file.display()))?;
    let regions = feed.regions().count();
    let mut placement = Placement::load(&a.data_dir, &a.config.placement())?;
    placement.import_feed(feed)?;
    let sites: Vec<_> = placement
        .sites
        .iter()
        .map(|s| json!({"id": s.id, "region": s.region, "risk": placement.risk(s)}))
        .collect();
    a.out
        .emit(&json!({"regions": regions, "sites": sites}), || {
            format!("imported risk scores for {regions} regions")
        });
    Ok(())
}

/// `kura admin keys rotate`.
pub fn keys(a: Admin, c: KeysCommand) -> Result<()> {
    let KeysCommand::Rotate { site } = c;
    let placement = Placement::load(&a.data_dir, &a.config.placement())?;
    if !placement.sites.iter().any(|s| s.id == site) {
        bail!("no site {site:?} (`kura admin sites` lists them)");
    }
    let mut keyring = placement.keyring()?;
    let version = keyring.rotate(&site);
    placement.save_keyring(&keyring)?;
    let key_ref = kura_placement::envelope::key_ref(&site, version);
    a.out.emit(&json!({"site": site, "key_ref": key_ref}), || {
        format!("new copies at {site} are sealed under {key_ref}; older copies stay readable")
    });
    Ok(())
}

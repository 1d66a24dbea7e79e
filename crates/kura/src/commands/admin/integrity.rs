//! `kura admin verify|incidents|evidence`: integrity checks of the stored copies, the
//! incident history they record, and the copies kept as evidence of tampering.

use anyhow::Result;
use clap::{Args, Subcommand};
use kura_service::config::percent;
use kura_service::storage::Scope;
use serde_json::json;

use super::Admin;
use crate::output::{Partial, lines};
use crate::progress::Counter;

/// Options of `kura admin verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// Only this user's objects.
    #[arg(long = "member", id = "member")]
    user: Option<String>,
    /// Percent of the objects to read, least recently checked first (default 100).
    #[arg(long, value_parser = percent)]
    sample: Option<f64>,
}

/// Evidence commands.
#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// The copies kept as evidence: never read, overwritten or deleted by the service (each
    /// object has its good copies elsewhere).
    List,
    /// Let go of the copies kept at SITE once they have been looked into: each is deleted
    /// from the site (the copy saved under DATA/evidence stays) and forgotten, and the next
    /// placement run puts a good copy where the rule wants one.
    Release {
        /// The site.
        site: String,
        /// Only this user's.
        #[arg(long = "member", id = "member")]
        user: Option<String>,
        /// Only this object (`data/…`, `snapshots/…`, `config`).
        #[arg(long)]
        object: Option<String>,
    },
}

/// `kura admin verify`: exits 3 when anything is lost, tampered with or left unrepaired.
pub fn verify(a: Admin, v: VerifyArgs) -> Result<()> {
    let (runtime, storage, out) = a.storage()?;
    let bar = Counter::new("verify", "objects", out.progress());
    let scope = Scope {
        user: v.user,
        sample: v.sample,
    };
    let r = runtime.block_on(storage.verify(&scope, &|done, total| bar.update(done, total)))?;
    bar.finish();
    out.emit(&r, || {
        let found = r
            .incidents
            .iter()
            .map(|i| format!("{:<16} user {:<6} {}", i.kind.as_str(), i.user, i.summary));
        let summary = format!(
            "{} objects checked ({} copies, {} bytes) in {:.1} s: {} sound, {} media faults ({} \
             repaired), {} copies tampered with, {} lost, {} left for a site that could not be \
             reached; {} users notified",
            r.objects,
            r.copies,
            r.bytes,
            r.seconds,
            r.sound,
            r.media_faults,
            r.repaired,
            r.tampered,
            r.lost,
            r.unchecked,
            r.notified
        );
        lines(found.chain([summary]))
    });
    if r.lost > 0 || r.tampered > 0 || r.repaired < r.media_faults {
        return Err(Partial(format!(
            "{} lost, {} tampered with, {} media faults not repaired",
            r.lost,
            r.tampered,
            r.media_faults - r.repaired
        ))
        .into());
    }
    Ok(())
}

/// `kura admin incidents`.
pub fn incidents(a: Admin, user: Option<String>) -> Result<()> {
    let user = user.map(|u| a.registry.user(&u)).transpose()?.map(|u| u.id);
    let list = a.registry.incidents(user, None, None)?;
    a.out.emit(&list, || {
        lines(list.iter().map(|i| {
            format!(
                "{:>5} {} user {:<6} {:<16} {}",
                i.id,
                i.at,
                i.user,
                i.kind.as_str(),
                i.summary
            )
        }))
    });
    Ok(())
}

/// `kura admin evidence list|release`.
pub fn evidence(a: Admin, c: EvidenceCommand) -> Result<()> {
    match c {
        EvidenceCommand::List => {
            let list = a.registry.tampered_copies(None, None)?;
            let rows: Vec<_> = list
                .iter()
                .map(|(u, k, n, s)| json!({"user": u, "kind": k, "name": n, "site": s}))
                .collect();
            a.out.emit(&rows, || {
                lines(
                    list.iter()
                        .map(|(u, k, n, s)| format!("user {u:<6} {s:<16} {k}/{n}")),
                )
            });
        }
        EvidenceCommand::Release { site, user, object } => {
            let (runtime, storage, out) = a.storage()?;
            let n = runtime.block_on(storage.release_evidence(
                &site,
                user.as_deref(),
                object.as_deref(),
            ))?;
            out.emit(&json!({ "released": n }), || {
                format!("{n} copies at {site} released; `kura admin place` places them again")
            });
        }
    }
    Ok(())
}

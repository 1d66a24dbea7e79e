//! `kura check`: the repository's structure, and with `--read-data` every byte.

use anyhow::Result;
use clap::Args;
use kura_core::damage::Damage;
use kura_repo::Repository;

use crate::ctx::Ctx;
use crate::output::{Partial, count};
use crate::progress::Bar;

/// Options of `kura check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Read and verify every pack and blob.
    #[arg(long)]
    pub read_data: bool,
}

/// Records what the check found damaged, so backups store those blobs again; says what was
/// done, if there was anything to record.
fn record(ctx: &Ctx, repo: &Repository, damage: &Damage) -> Result<Option<String>> {
    if damage.is_empty() {
        return Ok(None);
    }
    let what = format!(
        "{} and {}",
        count(damage.blobs.len() as u64, "damaged blob"),
        count(damage.packs.len() as u64, "missing pack")
    );
    let Ok((_, device)) = ctx.this_device(repo) else {
        return Ok(Some(format!(
            "{what} not recorded: this machine is not a device of the repository (run `kura check --read-data` on one, so that its backups store them again)"
        )));
    };
    let _lock = repo.lock(false)?;
    let said = if repo.record_damage(device, damage)? {
        "recorded"
    } else {
        "already recorded"
    };
    Ok(Some(format!(
        "{what} {said}: no backup builds on them; run `kura repair packs`, then back up to store again what the sources still have"
    )))
}

/// `kura check`.
pub fn check(ctx: &Ctx, a: CheckArgs) -> Result<()> {
    let repo = ctx.open()?;
    let shown = match a.read_data {
        true => ctx.out.progress(),
        false => crate::output::Shown::Hidden,
    };
    let bar = Bar::new("check", "packs", shown);
    let r = kura_repo::check::check(&repo, a.read_data, ctx.threads(), &bar);
    bar.finish();
    let r = r?;
    let recorded = record(ctx, &repo, &r.damage)?;
    if !ctx.out.json {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        for e in &r.errors {
            eprintln!("error: {e}");
        }
        if let Some(said) = &recorded {
            eprintln!("{said}");
        }
    }
    ctx.out.emit(&r, || {
        format!(
            "checked {}, {}, {}{}: {}",
            count(r.snapshots as u64, "snapshot"),
            count(r.trees as u64, "tree"),
            count(r.packs as u64, "pack"),
            if a.read_data {
                format!(", {} read", count(r.blobs_read as u64, "blob"))
            } else {
                String::new()
            },
            if r.errors.is_empty() {
                "no errors".to_string()
            } else {
                count(r.errors.len() as u64, "error")
            }
        )
    });
    if !r.errors.is_empty() {
        return Err(Partial(format!("check found {} errors", r.errors.len())).into());
    }
    Ok(())
}

//! `kura forget` and `kura prune`: removing snapshots, and reclaiming what no snapshot needs.

use anyhow::{Result, bail};
use clap::Args;
use kura_core::policy::{self, KeepPolicy};
use serde_json::json;

use crate::ctx::Ctx;
use crate::output::{Partial, count, human, lines};

/// Options of `kura forget`.
#[derive(Args)]
pub struct ForgetArgs {
    /// Snapshots to remove.
    snapshots: Vec<String>,
    /// Keep the newest N snapshots.
    #[arg(long, default_value_t = 0)]
    keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long, default_value_t = 0)]
    keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long, default_value_t = 0)]
    keep_daily: u32,
    /// Keep the newest snapshot of each of the last N weeks.
    #[arg(long, default_value_t = 0)]
    keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long, default_value_t = 0)]
    keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long, default_value_t = 0)]
    keep_yearly: u32,
    /// Keep every snapshot younger than this, counted back from the newest (`1y6m`, `2w`,
    /// `30d`, `12h`).
    #[arg(long)]
    keep_within: Option<kura_core::policy::Within>,
    /// Keep every snapshot with these tags (`a,b`: both; repeatable: any of the lists).
    #[arg(long)]
    keep_tag: Vec<String>,
    /// Only show what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    select: super::snapshots::SelectArgs,
}

/// Options of `kura prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Only report what would be removed.
    #[arg(long)]
    dry_run: bool,
}

/// `kura forget`.
pub fn forget(ctx: &Ctx, a: ForgetArgs) -> Result<()> {
    let policy = KeepPolicy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        within: a.keep_within.unwrap_or_default(),
        tags: a.keep_tag,
    };
    if a.snapshots.is_empty() == policy.is_empty() {
        bail!(
            "name snapshots to forget, or give a policy (--keep-last, --keep-daily, --keep-within, --keep-tag, ...), not both"
        );
    }
    let repo = ctx.open()?;
    let (lock, _) = repo.lock_to_clean()?;
    let considered = a.select.considered(&repo)?;
    // Snapshot files that cannot be read: named ones are removed by name, the others left.
    let mut damaged_named = Vec::new();
    let mut left = Vec::new();
    let plan = if policy.is_empty() {
        let mut plan = policy::ForgetPlan::default();
        for spec in &a.snapshots {
            match repo.find_snapshot_where(spec, &considered) {
                Ok(found) => plan.remove.push(found),
                Err(e) if e.is_damage() && spec != "latest" => {
                    damaged_named.push(repo.snapshot_file(spec)?);
                }
                Err(e) => return Err(e.into()),
            }
        }
        plan
    } else {
        let tz = jiff::tz::TimeZone::system();
        let (mut all, damaged) = repo.readable_snapshots()?;
        left = damaged;
        all.retain(|(_, s)| considered(s));
        policy::forget_plan(&policy, all, &tz)
    };
    if !a.dry_run {
        for (id, _) in &plan.remove {
            repo.remove_snapshot(id)?;
        }
        for name in &damaged_named {
            repo.remove_snapshot_file(name)?;
        }
    }
    // Set aside again what a full disk took (or, on a disk still full, next time).
    let _ = repo.backend().keep_reserve();
    drop(lock);
    for e in &left {
        eprintln!("warning: {e}; left as it is (remove it with `kura forget ID`)");
    }
    ctx.out.emit(
        &json!({
            "dry_run": a.dry_run,
            "removed": plan.remove.iter().map(|(id, _)| id.to_hex()).collect::<Vec<_>>(),
            "removed_damaged": damaged_named,
            "kept": plan.keep.iter().map(|(id, _, r)| json!({"id": id, "reasons": r})).collect::<Vec<_>>(),
        }),
        || {
            let kept = plan.keep.iter().map(|(id, s, reasons)| {
                format!(
                    "keep   {}  {}  {}  ({})",
                    id.short(),
                    s.time,
                    s.paths.join(" "),
                    reasons.join(", ")
                )
            });
            let removed = plan.remove.iter().map(|(id, s)| {
                format!(
                    "{} {}  {}  {}",
                    if a.dry_run { "would remove" } else { "remove" },
                    id.short(),
                    s.time,
                    s.paths.join(" ")
                )
            });
            let damaged = damaged_named.iter().map(|name| {
                format!(
                    "{} {}  (a damaged snapshot file)",
                    if a.dry_run { "would remove" } else { "remove" },
                    &name[..name.len().min(8)]
                )
            });
            lines(kept.chain(removed).chain(damaged))
        },
    );
    if !left.is_empty() {
        return Err(Partial(format!(
            "{} could not be read and were left",
            count(left.len() as u64, "snapshot file")
        ))
        .into());
    }
    if a.prune && !a.dry_run {
        return prune(ctx, PruneArgs { dry_run: false });
    }
    Ok(())
}

/// `kura prune`.
pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<()> {
    let repo = ctx.open()?;
    let (_, device) = ctx.this_device(&repo)?;
    let bar = crate::progress::Bar::new("repack", "packs", ctx.out.progress());
    let r = kura_repo::prune::prune(&repo, device, a.dry_run, &bar)?;
    bar.finish();
    ctx.out.emit(&r, || {
        format!(
            "{}{} packs deleted, {} repacked, {} kept, {} unindexed and {} partial files removed; {} blobs removed; {} freed, {} in use",
            if a.dry_run { "dry run: " } else { "" },
            r.packs_deleted,
            r.packs_repacked,
            r.packs_kept,
            r.orphans_deleted,
            r.partials_deleted,
            r.blobs_removed,
            human(r.bytes_freed),
            human(r.bytes_after)
        ) + &if r.disk_was_full {
            format!(
                "\nthe disk was full: the reserve was used{}, and {} with some unused data were left to repack when there is room (run prune again)",
                if r.reserve_kept { " and set aside again" } else { "" },
                count(r.repack_skipped as u64, "pack")
            )
        } else {
            String::new()
        }
    });
    Ok(())
}

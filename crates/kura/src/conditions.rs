//! `kura conditions` and `kura messages`: what the service says of the copies it keeps, and
//! the notices it sent (`spec/placement.md` requirements 6 and 12).

use std::collections::{BTreeMap, HashSet};

use anyhow::{Result, bail};
use kura_client::state::SavedConditions;
use kura_core::conditions::{CopyStatus, ObjectConditions};
use kura_core::job::Job;
use kura_repo::Backend;
use serde_json::json;

use crate::cli::Ctx;

fn location(ctx: &Ctx) -> String {
    ctx.repo_path().to_string_lossy().into_owned()
}

fn not_a_service() -> anyhow::Error {
    anyhow::anyhow!(
        "storage conditions come from a Kura service; this repository is not on one (--repo https://...)"
    )
}

/// The objects a snapshot needs: the snapshot itself, the index files, and every pack holding
/// one of its trees or data blobs.
fn objects_of_snapshot(ctx: &Ctx, spec: &str) -> Result<(String, HashSet<String>)> {
    let repo = ctx.open()?;
    let (id, snap) = repo.find_snapshot(spec)?;
    let index = repo.load_index()?;
    let used = kura_repo::check::used_blobs(&repo, &index, [snap.tree])?;
    let mut names: HashSet<String> = used
        .iter()
        .filter_map(|b| index.locate(b))
        .map(|(pack, _)| format!("data/{}", pack.to_hex()))
        .collect();
    names.insert(format!("snapshots/{}", id.to_hex()));
    names.extend(index.files().iter().map(|f| format!("index/{f}")));
    Ok((id.to_hex(), names))
}

/// `kura conditions [SNAPSHOT] [--cached]`.
pub fn conditions(ctx: &Ctx, snapshot: Option<String>, cached: bool) -> Result<()> {
    let base = ctx.state_base();
    let saved = if cached {
        match SavedConditions::load(&base, &location(ctx)) {
            Some(s) => s,
            None => bail!("no storage conditions kept for this repository yet"),
        }
    } else {
        let backend = ctx.backend()?;
        let all = backend.conditions(None)?.ok_or_else(not_a_service)?;
        let (scope, objects) = match &snapshot {
            Some(spec) => {
                let (id, wanted) = objects_of_snapshot(ctx, spec)?;
                let objects = all
                    .into_iter()
                    .filter(|o| wanted.contains(&o.object))
                    .collect();
                (format!("snapshot {id}"), objects)
            }
            None => ("all".to_string(), all),
        };
        let saved = SavedConditions {
            location: location(ctx),
            fetched: jiff::Timestamp::now(),
            scope,
            objects,
        };
        saved.save(&base)?;
        saved
    };
    if ctx.json() {
        ctx.print_json(&serde_json::to_value(&saved.objects)?);
        return Ok(());
    }
    if cached {
        println!(
            "as the service reported them at {} ({})",
            saved.fetched.strftime("%Y-%m-%d %H:%M:%S UTC"),
            saved.scope
        );
    }
    for line in summary(&saved.objects) {
        println!("{line}");
    }
    Ok(())
}

/// The conditions as lines of text: how many objects share each set of copies, then every
/// object that is degraded or has a failed copy.
pub fn summary(objects: &[ObjectConditions]) -> Vec<String> {
    let mut groups: BTreeMap<Vec<String>, (u64, u64)> = BTreeMap::new();
    for o in objects {
        let copies = o
            .copies
            .iter()
            .map(|c| {
                format!(
                    "{} (region {}): {}, {}, key {}",
                    c.site,
                    c.region,
                    c.status.as_str(),
                    c.algorithm,
                    if c.key_ref.is_empty() {
                        "-"
                    } else {
                        &c.key_ref
                    }
                )
            })
            .collect();
        let g = groups.entry(copies).or_default();
        g.0 += 1;
        g.1 += o.size;
    }
    let mut lines = vec![format!("{} objects stored", objects.len())];
    for (copies, (count, bytes)) in &groups {
        lines.push(format!(
            "{count} objects ({}) with {} copies:",
            crate::cli::human(*bytes),
            copies.len()
        ));
        lines.extend(copies.iter().map(|c| format!("  {c}")));
    }
    let short: Vec<&ObjectConditions> = objects
        .iter()
        .filter(|o| o.degraded.is_some() || o.copies.iter().any(|c| c.status != CopyStatus::Ok))
        .collect();
    if short.is_empty() {
        lines.push("every object has two good copies as the placement rule requires".into());
    } else {
        lines.push(format!(
            "{} objects are short of their placement (the service completes them when a site returns):",
            short.len()
        ));
        for o in short {
            lines.push(format!(
                "  {} {}",
                o.object,
                o.degraded.as_deref().unwrap_or("failed copy")
            ));
        }
    }
    lines
}

/// After a backup through the service: fetches and keeps the conditions of what it stored,
/// and says where the copies went. A failure here does not fail the backup.
pub fn after_backup(ctx: &Ctx, backend: &dyn Backend, job: &Job) {
    // Objects stored since the job began, with room for a clock that differs from the service's.
    let since = job.started - jiff::SignedDuration::from_mins(5);
    let objects = match backend.conditions(Some(since)) {
        Ok(Some(objects)) => objects,
        Ok(None) => return,
        Err(e) => {
            eprintln!("note: the storage conditions could not be read: {e}");
            return;
        }
    };
    let saved = SavedConditions {
        location: location(ctx),
        fetched: jiff::Timestamp::now(),
        scope: format!("backup {}", job.id.short()),
        objects,
    };
    if let Err(e) = saved.save(&ctx.state_base()) {
        eprintln!("note: the storage conditions could not be kept: {e}");
    }
    if !ctx.show_progress() {
        return;
    }
    let mut sites: Vec<&str> = saved
        .objects
        .iter()
        .flat_map(|o| o.copies.iter())
        .filter(|c| c.status == CopyStatus::Ok)
        .map(|c| c.site.as_str())
        .collect();
    sites.sort();
    sites.dedup();
    let degraded = saved
        .objects
        .iter()
        .filter(|o| o.degraded.is_some())
        .count();
    println!(
        "stored at the service on {}{}; `kura conditions` shows each copy",
        sites.join(", "),
        if degraded > 0 {
            format!(" ({degraded} objects degraded, to be completed)")
        } else {
            String::new()
        }
    );
}

/// `kura messages`: the notices the service sent.
pub fn messages(ctx: &Ctx) -> Result<()> {
    let backend = ctx.backend()?;
    let notices = backend.notices()?.ok_or_else(not_a_service)?;
    if ctx.json() {
        ctx.print_json(&json!(notices));
        return Ok(());
    }
    if notices.is_empty() {
        println!("no messages");
    }
    for n in &notices {
        println!("#{} {} [{}] {}", n.id, n.at, n.kind, n.subject);
        for line in n.body.lines() {
            println!("    {line}");
        }
        println!();
    }
    Ok(())
}

//! `kura conditions`, `kura incidents` and `kura messages`: what the service says of the copies
//! it keeps, what its checks found in them, and the notices it sent
//! (`docs/requirements/placement.md` requirements 6, 9 and 12).

use std::collections::HashSet;

use anyhow::{Result, bail};
use clap::Args;
use kura_client::state::SavedConditions;
use kura_core::conditions::CopyStatus;
use kura_core::job::Job;
use kura_repo::{Backend, FileType};
use serde_json::json;

use crate::ctx::Ctx;
use crate::output::{human, lines};

/// Options of `kura conditions`.
#[derive(Args)]
pub struct ConditionsArgs {
    /// Only the objects this snapshot needs (id prefix or `latest`).
    snapshot: Option<String>,
    /// Show the conditions kept locally, without asking the service.
    #[arg(long, conflicts_with = "snapshot")]
    cached: bool,
}

fn location(ctx: &Ctx) -> Result<String> {
    Ok(ctx.repo_path()?.to_string_lossy().into_owned())
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
pub fn conditions(ctx: &Ctx, a: ConditionsArgs) -> Result<()> {
    let ConditionsArgs { snapshot, cached } = a;
    let base = ctx.state_base()?;
    let location = location(ctx)?;
    let saved = if cached {
        match SavedConditions::load(&base, &location) {
            Some(s) => s,
            None => bail!("no storage conditions kept for this repository yet"),
        }
    } else {
        let all = ctx.with_provider("storage conditions", |p| Ok(p.conditions(None)?))?;
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
            location,
            fetched: jiff::Timestamp::now(),
            scope,
            objects,
        };
        saved.save(&base)?;
        saved
    };
    ctx.out.emit(&saved.objects, || {
        let when = cached.then(|| {
            format!(
                "as the service reported them at {} ({})",
                saved.fetched.strftime("%Y-%m-%d %H:%M:%S UTC"),
                saved.scope
            )
        });
        lines(
            when.into_iter()
                .chain(kura_core::conditions::summary(&saved.objects, human)),
        )
    });
    Ok(())
}

/// After a backup through the service: fetches and keeps the conditions of what it stored,
/// and says where the copies went. A failure here does not fail the backup.
pub fn after_backup(ctx: &Ctx, backend: &dyn Backend, job: &Job) {
    // Objects stored since the job began, with room for a clock that differs from the service's.
    let since = job.started - jiff::SignedDuration::from_mins(5);
    let Some(provider) = backend.provider() else {
        return;
    };
    let objects = match provider.conditions(Some(since)) {
        Ok(objects) => objects,
        Err(e) => {
            eprintln!("note: the storage conditions could not be read: {e}");
            return;
        }
    };
    let saved = SavedConditions {
        location: location(ctx).unwrap_or_default(),
        fetched: jiff::Timestamp::now(),
        scope: format!("backup {}", job.id.short()),
        objects,
    };
    if let Err(e) = ctx.state_base().and_then(|base| Ok(saved.save(&base)?)) {
        eprintln!("note: the storage conditions could not be kept: {e}");
    }
    if !ctx.out.show_progress() {
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
    ctx.out.say(format!(
        "stored at the service on {}{}; `kura conditions` shows each copy",
        sites.join(", "),
        if degraded > 0 {
            format!(" ({degraded} objects degraded, to be completed)")
        } else {
            String::new()
        }
    ));
}

/// `kura messages`: the notices the service sent.
pub fn messages(ctx: &Ctx) -> Result<()> {
    let notices = ctx.with_provider("messages", |p| Ok(p.notices()?))?;
    ctx.out.emit(&notices, || {
        if notices.is_empty() {
            return "no messages".into();
        }
        lines(notices.iter().map(|n| {
            let body: String = n.body.lines().map(|l| format!("    {l}\n")).collect();
            format!("#{} {} [{}] {}\n{body}", n.id, n.at, n.kind, n.subject)
        }))
    });
    Ok(())
}

/// What a lost object takes with it: a snapshot, and its files that need a lost pack.
#[derive(serde::Serialize)]
struct Affected {
    snapshot: String,
    time: String,
    paths: Vec<String>,
    /// The snapshot object itself is lost.
    whole: bool,
    files: Vec<String>,
}

/// A snapshot name's first eight characters, as listings show it (the whole of a shorter one).
fn short(name: &str) -> &str {
    name.get(..8).unwrap_or(name)
}

/// `kura incidents`: what the service's checks found in your data; for lost objects, the
/// snapshots and files that need them (found here, with the repository's keys).
pub fn incidents(ctx: &Ctx) -> Result<()> {
    let (list, lost) = ctx.with_provider("incidents", |p| Ok((p.incidents()?, p.lost()?)))?;
    let mut affected = Vec::new();
    if !lost.is_empty() {
        let repo = ctx.open()?;
        let index = repo.load_index()?;
        for name in repo.backend().list(FileType::Snapshot)? {
            if lost.contains(&format!("snapshots/{name}")) {
                affected.push(Affected {
                    snapshot: name,
                    time: String::new(),
                    paths: Vec::new(),
                    whole: true,
                    files: Vec::new(),
                });
                continue;
            }
            let (id, snap) = repo.load_snapshot(&name)?;
            let files = kura_repo::check::files_missing(&repo, &index, snap.tree)?;
            if !files.is_empty() {
                affected.push(Affected {
                    snapshot: id.to_hex(),
                    time: snap.time.to_string(),
                    paths: snap.paths.clone(),
                    whole: false,
                    files,
                });
            }
        }
    }
    ctx.out
        .emit(&json!({"incidents": list, "affected": affected}), || {
            let mut out = Vec::new();
            if list.is_empty() {
                out.push("no incidents".to_string());
            }
            for i in &list {
                out.push(format!(
                    "#{} {} [{}] {}",
                    i.id,
                    i.at,
                    i.kind.as_str(),
                    i.summary
                ));
            }
            for a in &affected {
                if a.whole {
                    out.push(format!("\nsnapshot {} is lost", short(&a.snapshot)));
                    continue;
                }
                out.push(format!(
                    "\nsnapshot {} ({}, {}): {} file(s) cannot be restored whole:",
                    short(&a.snapshot),
                    a.time,
                    a.paths.join(", "),
                    a.files.len()
                ));
                out.extend(a.files.iter().map(|f| format!("    {f}")));
            }
            if !affected.is_empty() {
                out.push("\nBack these files up again; the next backup stores them anew.".into());
            }
            lines(out)
        });
    Ok(())
}

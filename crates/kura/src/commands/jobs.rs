//! `kura jobs` and `kura log`: unfinished jobs of this device, and the repository's backup log.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Subcommand;
use kura_client::job::{self, status_here};
use kura_core::job::{Job, JobStatus};
use serde_json::{Value, json};

use super::backup::run_backup;
use crate::ctx::Ctx;
use crate::output::{human, table};

/// What to do with a job.
#[derive(Subcommand)]
pub enum JobsCommand {
    /// Stop a running job, or drop an unfinished one, leaving no snapshot (`prune` reclaims
    /// what it sent).
    Cancel {
        /// Job id (or a unique prefix).
        id: String,
    },
    /// Run an unfinished job again; what it already sent is not sent again.
    Resume {
        /// Job id (or a unique prefix).
        id: String,
    },
}

/// How long `jobs cancel` waits for a running job to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(120);

fn job_json(j: &Job) -> Value {
    json!({
        "id": j.id, "short_id": j.id.short(), "status": status_here(j), "type": j.kind,
        "paths": j.paths, "tags": j.tags, "started": j.started, "ended": j.ended,
        "attempts": j.attempts, "device": j.device.to_string(), "hostname": j.hostname,
        "summary": j.summary, "snapshot": j.snapshot, "error": j.error, "location": j.location,
    })
}

/// `kura jobs [cancel|resume ID]`.
pub fn jobs(ctx: &Ctx, action: Option<JobsCommand>) -> Result<()> {
    match action {
        None => list(ctx),
        Some(JobsCommand::Resume { id }) => resume(ctx, &id),
        Some(JobsCommand::Cancel { id }) => cancel(ctx, &id),
    }
}

fn list(ctx: &Ctx) -> Result<()> {
    let list = ctx.state_unlocked()?.jobs().list()?;
    let listing: Vec<Value> = list.iter().map(job_json).collect();
    ctx.out.emit(&listing, || {
        if list.is_empty() {
            return "no unfinished jobs".into();
        }
        let header = format!(
            "{:<8}  {:<11}  {:<12}  {:<20}  {:>8}  paths",
            "job", "status", "type", "started", "attempts"
        );
        table(
            header,
            list.iter().map(|j| {
                format!(
                    "{:<8}  {:<11}  {:<12}  {:<20}  {:>8}  {}{}",
                    j.id.short(),
                    status_here(j).to_string(),
                    j.kind.to_string(),
                    j.started.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                    j.attempts,
                    j.paths.join(", "),
                    j.error
                        .as_deref()
                        .map(|e| format!("  ({e})"))
                        .unwrap_or_default()
                )
            }),
        )
    });
    Ok(())
}

fn resume(ctx: &Ctx, id: &str) -> Result<()> {
    let j = ctx.state_unlocked()?.jobs().find(id)?;
    if status_here(&j) == JobStatus::Running {
        bail!("job {} is running (pid {})", j.id.short(), j.pid);
    }
    let paths = j.paths.iter().map(Into::into).collect();
    let opts = kura_client::backup::BackupOptions {
        paths,
        kind: j.kind,
        excludes: j.excludes,
        tags: j.tags,
        one_file_system: j.one_file_system,
        exclude_caches: j.exclude_caches,
        ..Default::default()
    };
    run_backup(ctx, opts, Some(j.id))
}

fn cancel(ctx: &Ctx, id: &str) -> Result<()> {
    let state = ctx.state_unlocked()?;
    let local = state.jobs();
    let j = local.find(id)?;
    let ended = if status_here(&j) == JobStatus::Running {
        local.request_cancel(j.id)?;
        let deadline = Instant::now() + CANCEL_WAIT;
        while status_here(&j) == JobStatus::Running
            && local.list()?.iter().any(|o| o.id == j.id && o.pid == j.pid)
        {
            if Instant::now() > deadline {
                bail!(
                    "job {} did not stop within {}s; it will stop before committing",
                    j.id.short(),
                    CANCEL_WAIT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        j
    } else {
        let repo = ctx.open()?;
        job::cancel_stopped(&repo, &state, j)?
    };
    ctx.out.emit(
        &json!({"cancelled": ended.id, "short_id": ended.id.short()}),
        || {
            format!(
                "job {} cancelled; no snapshot was made (`kura prune` reclaims what it sent)",
                ended.id.short()
            )
        },
    );
    Ok(())
}

/// `kura log [--last N]`.
pub fn log(ctx: &Ctx, last: Option<usize>) -> Result<()> {
    let repo = ctx.open()?;
    let (mut entries, damaged) = repo.jobs()?;
    for e in &damaged {
        eprintln!("warning: {e}");
    }
    if let Some(n) = last {
        entries.drain(..entries.len().saturating_sub(n));
    }
    // This machine's scheduled runs that failed before a job began are not in the repository.
    let schedule = kura_client::schedule::load(&ctx.state_base()?)?;
    let not_started: Vec<_> = schedule
        .entries
        .iter()
        .filter_map(|e| e.last_outcome.as_ref().map(|o| (e, o)))
        .filter(|(_, o)| !o.ok && o.before_job)
        .collect();
    let listing: Vec<Value> = entries
        .iter()
        .map(job_json)
        .chain(not_started.iter().map(|(e, o)| {
            json!({"id": null, "schedule": e.id, "status": "not started", "type": e.kind,
                   "paths": e.paths, "started": o.at, "error": o.detail})
        }))
        .collect();
    ctx.out.emit(&listing, || {
        if entries.is_empty() && not_started.is_empty() {
            return "the backup log is empty".into();
        }
        let header = format!(
            "{:<8}  {:<20}  {:<11}  {:<12}  {:>9}  {:>10}  {:<8}  paths",
            "job", "started", "status", "type", "files", "added", "snapshot"
        );
        let rows = entries.iter().map(|j| {
            let s = j.summary.clone().unwrap_or_default();
            format!(
                "{:<8}  {:<20}  {:<11}  {:<12}  {:>9}  {:>10}  {:<8}  {}",
                j.id.short(),
                j.started.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                status_here(j).to_string(),
                j.kind.to_string(),
                s.files,
                human(s.stored_added),
                j.snapshot.map(|i| i.short()).unwrap_or_else(|| "-".into()),
                j.paths.join(", ")
            )
        });
        let scheduled = not_started.iter().map(|(e, o)| {
            format!(
                "{:<8}  {:<20}  {:<11}  {:<12}  {:>9}  {:>10}  {:<8}  {}\n          scheduled backup {} could not start: {}",
                "-",
                o.at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                "not started",
                e.kind.to_string(),
                "-",
                "-",
                "-",
                e.paths.join(", "),
                e.id,
                o.detail
            )
        });
        let footer = format!("stored at {}", repo.backend().location());
        table(header, rows.chain(scheduled).chain([footer]))
    });
    Ok(())
}

//! `kura schedule` and `kura agent`: backups that run by themselves.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kura_client::job::{signalled, stop_on_signals};
use kura_client::schedule::{load, update};
use kura_core::schedule::{Cron, Entry, Outcome, Timing};
use serde_json::{Value, json};

use super::backup::{TypeArg, run_backup_in};
use crate::ctx::Ctx;
use crate::output::{local_time, table};

/// When a scheduled backup runs: exactly one of these.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct WhenArgs {
    /// HH:MM (every day at that time) or "YYYY-MM-DD HH:MM" (once), in local time.
    #[arg(long)]
    at: Option<String>,
    /// An interval such as 30m, 6h, 1d or 1w; the first run is at once.
    #[arg(long)]
    every: Option<String>,
    /// A cron expression: "minute hour day-of-month month day-of-week", in local time.
    #[arg(long)]
    cron: Option<String>,
}

impl WhenArgs {
    /// The timing these options give.
    pub fn timing(&self) -> Result<Timing> {
        Ok(match (&self.at, &self.every, &self.cron) {
            (Some(a), _, _) => Timing::at(a)?,
            (_, Some(e), _) => Timing::every(e)?,
            (_, _, Some(c)) => Timing::Cron(Cron::parse(c)?),
            _ => bail!("say when: --at, --every or --cron"),
        })
    }
}

/// Schedule commands.
#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Schedule a backup of PATHS: daily or once with --at, periodically with --every or --cron.
    Add {
        /// Files and directories to back up.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        when: WhenArgs,
        /// The backup type of each run.
        #[arg(long = "type", value_enum, default_value_t = TypeArg::Incremental)]
        kind: TypeArg,
        /// Tag the snapshots.
        #[arg(long)]
        tag: Vec<String>,
    },
    /// List scheduled backups with their next run.
    List,
    /// Remove a scheduled backup.
    Remove {
        /// Its id (or a unique prefix).
        id: String,
    },
}

/// An entry as `--json` shows it.
pub fn entry_json(e: &Entry, tz: &TimeZone) -> serde_json::Value {
    json!({
        "id": e.id, "paths": e.paths, "phone": e.phone, "type": e.kind, "tags": e.tags, "timing": e.timing,
        "created": e.created, "last_run": e.last_run, "next_run": e.next_run(tz),
        "last_outcome": e.last_outcome,
    })
}

/// `kura schedule ...`.
pub fn schedule(ctx: &Ctx, c: ScheduleCommand) -> Result<()> {
    let base = ctx.state_base()?;
    let tz = TimeZone::system();
    match c {
        ScheduleCommand::Add {
            paths,
            when,
            kind,
            tag,
        } => add(ctx, &base, &tz, paths, when.timing()?, kind, tag),
        ScheduleCommand::List => list(ctx, &base, &tz, false),
        ScheduleCommand::Remove { id } => remove(ctx, &base, &id),
    }
}

/// Removes the entry `id` (or a unique prefix of it).
pub fn remove(ctx: &Ctx, base: &Path, id: &str) -> Result<()> {
    let removed = update(base, |s| {
        let i = s
            .position(id)
            .map_err(|e| kura_client::ClientError::Usage(e.to_string()))?;
        Ok(s.entries.remove(i))
    })?;
    ctx.out.emit(&json!({"removed": removed.id}), || {
        format!("removed scheduled backup {}", removed.id)
    });
    Ok(())
}

fn add(
    ctx: &Ctx,
    base: &Path,
    tz: &TimeZone,
    paths: Vec<PathBuf>,
    timing: Timing,
    kind: TypeArg,
    tags: Vec<String>,
) -> Result<()> {
    let roots = kura_client::backup::roots(&paths)?;
    let entry = Entry {
        id: kura_core::id::hex(&kura_core::crypto::random_bytes::<4>()),
        paths: kura_client::backup::root_names(&roots),
        phone: None,
        kind: kind.into(),
        tags,
        timing,
        created: Timestamp::now(),
        last_run: None,
        last_outcome: None,
    };
    let Some(next) = entry.next_run(tz) else {
        bail!("{} is in the past", entry.timing);
    };
    update(base, |s| {
        s.entries.push(entry.clone());
        Ok(())
    })?;
    ctx.out.emit(&entry_json(&entry, tz), || {
        format!(
            "scheduled {} backup {} of {} ({}); next run {}; `kura agent` runs it",
            entry.kind,
            entry.id,
            entry.paths.join(", "),
            entry.timing,
            local_time(next)
        )
    });
    Ok(())
}

/// Lists the scheduled backups: of phones (`kura mail schedule list`) or of paths.
pub fn list(ctx: &Ctx, base: &Path, tz: &TimeZone, phones: bool) -> Result<()> {
    let mut s = load(base)?;
    s.entries.retain(|e| e.phone.is_some() == phones);
    let listing: Vec<Value> = s.entries.iter().map(|e| entry_json(e, tz)).collect();
    ctx.out.emit(&listing, || {
        if s.entries.is_empty() {
            return if phones {
                "no phone backup scheduled (`kura mail schedule add` adds one)".into()
            } else {
                "nothing scheduled (`kura schedule add` adds a backup)".into()
            };
        }
        let when =
            |t: Option<Timestamp>, none: &str| t.map(local_time).unwrap_or_else(|| none.into());
        let header = format!(
            "{:<8}  {:<24}  {:<12}  {:<19}  {:<19}  {:<8}  paths",
            "id", "when", "type", "next run", "last run", "result"
        );
        table(
            header,
            s.entries.iter().map(|e| {
                let (result, why) = match &e.last_outcome {
                    None => ("-", String::new()),
                    Some(o) if o.ok => ("ok", String::new()),
                    Some(o) => ("FAILED", format!("\n          {}", o.detail)),
                };
                format!(
                    "{:<8}  {:<24}  {:<12}  {:<19}  {:<19}  {:<8}  {}{why}",
                    e.id,
                    e.timing.to_string(),
                    e.kind.to_string(),
                    when(e.next_run(tz), "never"),
                    when(e.last_run, "-"),
                    result,
                    e.phone
                        .as_ref()
                        .map_or_else(|| e.paths.join(", "), |p| format!("phone {p}"))
                )
            }),
        )
    });
    Ok(())
}

/// `kura agent [--once]`.
pub fn agent(ctx: &Ctx, once: bool) -> Result<()> {
    stop_on_signals();
    let base = ctx.state_base()?;
    let tz = TimeZone::system();
    if !once {
        ctx.out.say(format!(
            "kura agent: running the schedule in {}",
            kura_client::schedule::path(&base).display()
        ));
    }
    let mut failed = 0;
    kura_client::schedule::run_agent(&base, &tz, once, signalled, |e, now| {
        let what = e
            .phone
            .as_ref()
            .map_or_else(|| e.paths.join(", "), |p| format!("the phone {p}"));
        ctx.out.say(format!(
            "{}: scheduled backup {} ({}) of {what}",
            local_time(now),
            e.id,
            e.timing,
        ));
        let paths = e.paths.iter().map(PathBuf::from).collect();
        let excludes = ctx.config.exclude.clone();
        // A run that cannot open the repository, or is not a device of it, leaves no entry in
        // the repository's log; `kura log` shows it from the outcome recorded here.
        let opened = ctx
            .open()
            .and_then(|repo| ctx.this_device(&repo).map(|_| repo));
        let before_job = opened.is_err();
        let result = opened.and_then(|repo| {
            if let Some(phone) = &e.phone {
                drop(repo);
                return super::mail::scheduled_backup(ctx, phone);
            }
            let opts = kura_client::backup::BackupOptions {
                paths,
                kind: e.kind,
                excludes,
                tags: e.tags,
                ..Default::default()
            };
            run_backup_in(ctx, repo, opts, None)
        });
        let outcome = match result {
            Ok(()) => Outcome {
                at: Timestamp::now(),
                ok: true,
                detail: "completed".into(),
                before_job: false,
            },
            Err(err) => {
                failed += 1;
                eprintln!("kura agent: scheduled backup {} failed: {err:#}", e.id);
                Outcome {
                    at: Timestamp::now(),
                    ok: false,
                    detail: format!("{err:#}"),
                    before_job,
                }
            }
        };
        if let Err(err) = kura_client::schedule::record_outcome(&base, &e.id, outcome) {
            eprintln!(
                "kura agent: the outcome of {} could not be recorded: {err}",
                e.id
            );
        }
    })?;
    if failed > 0 && once {
        bail!("{failed} scheduled backups failed");
    }
    Ok(())
}

//! `kura schedule` and `kura agent`: backups that run by themselves.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{ArgGroup, Subcommand};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kura_client::job::{signalled, stop_on_signals};
use kura_client::schedule::{load, update};
use kura_core::schedule::{Cron, Entry, Timing};
use serde_json::json;

use crate::cli::{Ctx, TypeArg, run_backup};

/// Schedule commands.
#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Schedule a backup of PATHS: daily or once with --at, periodically with --every or --cron.
    #[command(group(ArgGroup::new("when").required(true).args(["at", "every", "cron"])))]
    Add {
        /// Files and directories to back up.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// HH:MM (every day at that time) or "YYYY-MM-DD HH:MM" (once), in local time.
        #[arg(long)]
        at: Option<String>,
        /// An interval such as 30m, 6h, 1d or 1w; the first run is at once.
        #[arg(long)]
        every: Option<String>,
        /// A cron expression: "minute hour day-of-month month day-of-week", in local time.
        #[arg(long)]
        cron: Option<String>,
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

fn local(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn entry_json(e: &Entry, tz: &TimeZone) -> serde_json::Value {
    json!({
        "id": e.id, "paths": e.paths, "type": e.kind, "tags": e.tags, "timing": e.timing,
        "created": e.created, "last_run": e.last_run, "next_run": e.next_run(tz),
    })
}

/// `kura schedule ...`.
pub fn schedule(ctx: &Ctx, c: ScheduleCommand) -> Result<()> {
    let base = ctx.state_base()?;
    let tz = TimeZone::system();
    match c {
        ScheduleCommand::Add {
            paths,
            at,
            every,
            cron,
            kind,
            tag,
        } => {
            let timing = match (at, every, cron) {
                (Some(a), _, _) => Timing::at(&a)?,
                (_, Some(e), _) => Timing::every(&e)?,
                (_, _, Some(c)) => Timing::Cron(Cron::parse(&c)?),
                _ => bail!("say when: --at, --every or --cron"),
            };
            let roots = kura_client::backup::roots(&paths)?;
            let entry = Entry {
                id: kura_core::id::hex(&kura_core::crypto::random_bytes::<4>()),
                paths: kura_client::backup::root_names(&roots),
                kind: kind.into(),
                tags: tag,
                timing,
                created: Timestamp::now(),
                last_run: None,
            };
            if entry.next_run(&tz).is_none() {
                bail!("{} is in the past", entry.timing);
            }
            update(&base, |s| {
                s.entries.push(entry.clone());
                Ok(())
            })?;
            if ctx.json() {
                ctx.print_json(&entry_json(&entry, &tz));
            } else {
                let next = entry
                    .next_run(&tz)
                    .map(|t| local(t, &tz))
                    .unwrap_or_default();
                ctx.say(format!(
                    "scheduled {} backup {} of {} ({}); next run {next}; `kura agent` runs it",
                    entry.kind,
                    entry.id,
                    entry.paths.join(", "),
                    entry.timing
                ));
            }
        }
        ScheduleCommand::List => {
            let s = load(&base)?;
            if ctx.json() {
                let v: Vec<_> = s.entries.iter().map(|e| entry_json(e, &tz)).collect();
                ctx.print_json(&serde_json::Value::Array(v));
            } else if s.entries.is_empty() {
                ctx.say("nothing scheduled (`kura schedule add` adds a backup)");
            } else {
                println!(
                    "{:<8}  {:<24}  {:<12}  {:<19}  {:<19}  paths",
                    "id", "when", "type", "next run", "last run"
                );
                for e in &s.entries {
                    let when = |t: Option<Timestamp>, none: &str| {
                        t.map(|t| local(t, &tz)).unwrap_or_else(|| none.into())
                    };
                    println!(
                        "{:<8}  {:<24}  {:<12}  {:<19}  {:<19}  {}",
                        e.id,
                        e.timing.to_string(),
                        e.kind.to_string(),
                        when(e.next_run(&tz), "never"),
                        when(e.last_run, "-"),
                        e.paths.join(", ")
                    );
                }
            }
        }
        ScheduleCommand::Remove { id } => {
            let removed = update(&base, |s| {
                let i = s
                    .position(&id)
                    .map_err(|e| kura_client::ClientError::Usage(e.to_string()))?;
                Ok(s.entries.remove(i))
            })?;
            ctx.say(format!("removed scheduled backup {}", removed.id));
        }
    }
    Ok(())
}

/// The agent looks at the schedule at least this often, so edits and clock jumps (a machine
/// waking from sleep) are noticed.
const TICK: Duration = Duration::from_secs(30);

/// `kura agent [--once]`.
pub fn agent(ctx: &Ctx, once: bool) -> Result<()> {
    stop_on_signals();
    let base = ctx.state_base()?;
    let tz = TimeZone::system();
    let mut failed = 0;
    if !once {
        ctx.say(format!(
            "kura agent: running the schedule in {}",
            kura_client::schedule::path(&base).display()
        ));
    }
    loop {
        let now = Timestamp::now();
        for id in load(&base)?.entries.into_iter().map(|e| e.id) {
            if signalled() {
                break;
            }
            // Claimed under the schedule's lock: still there, still due, and recorded as run
            // before it starts, so a second agent does not run it too and a run that fails or
            // is killed is not retried in a loop (its job is resumed by the next run).
            let claimed = update(&base, |s| {
                Ok(match s.entries.iter_mut().find(|x| x.id == id) {
                    Some(e) if e.is_due(now, &tz) => {
                        e.last_run = Some(now);
                        Some(e.clone())
                    }
                    _ => None,
                })
            })?;
            let Some(e) = claimed else {
                continue;
            };
            ctx.say(format!(
                "{}: scheduled backup {} ({}) of {}",
                local(now, &tz),
                e.id,
                e.timing,
                e.paths.join(", ")
            ));
            let paths = e.paths.iter().map(PathBuf::from).collect();
            if let Err(err) = run_backup(ctx, paths, e.kind, ctx.config_excludes(), e.tags, None) {
                failed += 1;
                eprintln!("kura agent: scheduled backup {} failed: {err:#}", e.id);
            }
        }
        if once || signalled() {
            break;
        }
        let wake = load(&base)?.next_wake(&tz);
        let until = std::time::Instant::now()
            + wake
                .map(|w| Duration::try_from(w.duration_since(Timestamp::now())).unwrap_or_default())
                .unwrap_or(TICK)
                .min(TICK);
        while std::time::Instant::now() < until && !signalled() {
            std::thread::sleep(Duration::from_millis(200));
        }
        if signalled() {
            break;
        }
    }
    if failed > 0 && once {
        bail!("{failed} scheduled backups failed");
    }
    Ok(())
}

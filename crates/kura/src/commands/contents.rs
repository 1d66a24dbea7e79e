//! What snapshots hold, without restoring: `kura find`, `kura dump`, `kura stats`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use kura_client::find::{Finder, Holder, Query};
use kura_client::stats::{self, Mode};
use kura_client::{dump, walk};
use kura_core::tree::NodeKind;
use serde_json::json;

use super::snapshots::{SelectArgs, lost_trees};
use crate::ctx::Ctx;
use crate::output::{count, human, lines, local_time};

/// Options of `kura find`.
#[derive(Args)]
pub struct FindArgs {
    /// Glob patterns (`*`, `?`, `[...]`, `**`): without `/` matched against names, with `/`
    /// against whole paths. With --blob or --tree: ids (hex prefixes).
    #[arg(required = true)]
    patterns: Vec<String>,
    /// The arguments are blob ids: find the files whose contents hold them (as `kura check`
    /// names a damaged blob).
    #[arg(long, conflicts_with = "tree")]
    blob: bool,
    /// The arguments are tree ids: find the directories they list.
    #[arg(long)]
    tree: bool,
    /// Only these snapshots (id prefix or `latest`; repeatable). Default: every snapshot
    /// the selection options consider.
    #[arg(long = "snapshot", short = 's')]
    snapshots: Vec<String>,
    /// Match without regard to case.
    #[arg(long, short = 'i')]
    ignore_case: bool,
    /// Only entries modified at or after this local time (`2026-11-30`, `2026-11-30 14:00`,
    /// or RFC 3339).
    #[arg(long, short = 'O', value_parser = local_time_arg)]
    oldest: Option<jiff::Timestamp>,
    /// Only entries modified at or before this local time (same forms; a day alone means
    /// its end).
    #[arg(long, short = 'N', value_parser = local_end_arg)]
    newest: Option<jiff::Timestamp>,
    #[command(flatten)]
    select: SelectArgs,
}

/// A time as `--oldest` takes it: RFC 3339, or a local date with or without a time of day.
fn local_time_arg(s: &str) -> Result<jiff::Timestamp, String> {
    parse_local(s, false)
}

/// A time as `--newest` takes it: a day alone means the last moment of that day.
fn local_end_arg(s: &str) -> Result<jiff::Timestamp, String> {
    parse_local(s, true)
}

fn parse_local(s: &str, end_of_day: bool) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let tz = jiff::tz::TimeZone::system();
    let bad = |_| format!("{s:?}: expected 2026-11-30, 2026-11-30 14:00[:00] or RFC 3339");
    let at = match s.parse::<jiff::civil::DateTime>() {
        Ok(dt) if s.len() > 10 => dt,
        _ => {
            let day: jiff::civil::Date = s.parse().map_err(bad)?;
            match end_of_day {
                true => day.to_datetime(jiff::civil::Time::MAX),
                false => day.to_datetime(jiff::civil::Time::MIN),
            }
        }
    };
    at.to_zoned(tz)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

/// Options of `kura dump`.
#[derive(Args)]
pub struct DumpArgs {
    /// Snapshot id prefix or `latest`.
    snapshot: String,
    /// Absolute path in the snapshot: a file is written as it is, a directory (or `/`) as a
    /// tar archive.
    path: PathBuf,
    /// Write here instead of to standard output.
    #[arg(long, short = 't')]
    target: Option<PathBuf>,
    #[command(flatten)]
    select: SelectArgs,
}

/// What `kura stats` counts.
#[derive(Clone, Copy, ValueEnum)]
enum StatsMode {
    /// Files and bytes a restore of each snapshot writes.
    RestoreSize,
    /// Distinct blobs the snapshots need, as stored and as plaintext.
    RawData,
}

/// Options of `kura stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Snapshots (id prefix or `latest`). Default: every snapshot the selection options
    /// consider.
    snapshots: Vec<String>,
    /// What to count.
    #[arg(long, value_enum, default_value = "restore-size")]
    mode: StatsMode,
    #[command(flatten)]
    select: SelectArgs,
}

/// `kura find`.
pub fn find(ctx: &Ctx, a: FindArgs) -> Result<()> {
    let ns = |t: Option<jiff::Timestamp>| {
        t.map(|t| {
            t.as_nanosecond()
                .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        })
    };
    let query = match (a.blob, a.tree) {
        (true, _) => Query::ids(Holder::Blob, &a.patterns)?,
        (_, true) => Query::ids(Holder::Tree, &a.patterns)?,
        _ => Query::new(&a.patterns, a.ignore_case)?,
    }
    .modified(ns(a.oldest), ns(a.newest));
    let repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let snaps = a.select.chosen(&repo, &a.snapshots)?;
    let index = repo.load_index()?;
    let mut finder = Finder::new(&repo, &index, query);
    let mut report = Vec::new();
    let mut text = Vec::new();
    for (id, s) in &snaps {
        let found = finder.in_snapshot(&s.tree)?;
        if found.is_empty() {
            continue;
        }
        text.push(format!(
            "Found matching entries in snapshot {} from {}",
            id.short(),
            local_time(s.time)
        ));
        for f in found.iter() {
            text.push(format!(
                "{:<7} {:04o} {:>12}  {}  {}",
                f.node.kind.name(),
                f.node.mode,
                f.node.size,
                local_time(jiff::Timestamp::from_nanosecond(i128::from(
                    f.node.mtime_ns
                ))?),
                f.path.display()
            ));
        }
        text.push(String::new());
        report.push(json!({
            "snapshot": id, "short_id": id.short(), "time": s.time, "hits": found.len(),
            "matches": found.iter().map(|f| json!({
                "path": f.path, "type": f.node.kind.name(), "size": f.node.size,
                "mode": f.node.mode, "mtime_ns": f.node.mtime_ns,
            })).collect::<Vec<_>>(),
        }));
    }
    let hits: usize = report
        .iter()
        .map(|r| r["hits"].as_u64().unwrap_or(0) as usize)
        .sum();
    ctx.out.emit(&report, || {
        text.push(format!(
            "{} in {} of {}",
            count(hits as u64, "hit"),
            count(report.len() as u64, "snapshot"),
            snaps.len()
        ));
        lines(text)
    });
    lost_trees(&finder.lost)
}

/// `kura dump`.
pub fn dump(ctx: &Ctx, a: DumpArgs) -> Result<()> {
    let repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let (_, snap) = a.select.find(&repo, &a.snapshot)?;
    let index = repo.load_index()?;
    let path = walk::absolute(&a.path)?;
    let node = walk::find_node(&repo, &index, &snap.tree, &path)?;
    let mut out: Box<dyn Write> = match &a.target {
        Some(t) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(t).with_context(|| format!("creating {}", t.display()))?,
        )),
        None => {
            let stdout = std::io::stdout();
            if ctx.out.json {
                bail!("dump writes the file itself to standard output; --json has no place here");
            }
            Box::new(std::io::BufWriter::new(stdout.lock()))
        }
    };
    let lost = match &node {
        Some(n) if n.kind == NodeKind::File => {
            let mut content = dump::Content::new(&repo, &index, &path, n);
            std::io::copy(&mut content, &mut out)
                .with_context(|| format!("dumping {}", path.display()))?;
            Vec::new()
        }
        Some(n) if n.kind != NodeKind::Dir => {
            bail!(
                "{} is a {}: only files and directories can be dumped",
                path.display(),
                n.kind.name()
            )
        }
        _ => dump::tar(&repo, &index, &path, node.as_ref(), &snap.tree, &mut out)?.lost,
    };
    out.flush().context("writing the dump")?;
    lost_trees(&lost)
}

/// `kura stats`.
pub fn stats(ctx: &Ctx, a: StatsArgs) -> Result<()> {
    let repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let snaps = a.select.chosen(&repo, &a.snapshots)?;
    let index = repo.load_index()?;
    let (mode, name) = match a.mode {
        StatsMode::RestoreSize => (Mode::RestoreSize, "restore-size"),
        StatsMode::RawData => (Mode::RawData, "raw-data"),
    };
    let roots: Vec<_> = snaps.iter().map(|(_, s)| s.tree).collect();
    let mut lost = Vec::new();
    let t = stats::count(&repo, &index, &roots, mode, &mut lost)?;
    ctx.out.emit(&json!({"mode": name, "totals": t}), || {
        let mut rows = vec![
            format!("Stats in {name} mode:"),
            format!("     Snapshots: {}", t.snapshots),
        ];
        match mode {
            Mode::RestoreSize => {
                rows.push(format!("   Total files: {}", t.files));
                rows.push(format!("    Total size: {}", human(t.bytes)));
            }
            Mode::RawData => {
                rows.push(format!("   Total blobs: {}", t.blobs));
                rows.push(format!("    Plain size: {}", human(t.bytes)));
                rows.push(format!("   Stored size: {}", human(t.stored_bytes)));
                if t.stored_bytes > 0 {
                    rows.push(format!(
                        "  Stored/plain: {:.2}",
                        t.stored_bytes as f64 / t.bytes.max(1) as f64
                    ));
                }
            }
        }
        lines(rows)
    });
    lost_trees(&lost)
}

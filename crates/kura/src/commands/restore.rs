//! `kura restore`: a snapshot, or part of it, into a directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use kura_client::restore::{Overwrite, RestoreOptions, restore as restore_snapshot};
use kura_repo::Repository;
use serde_json::json;

use crate::ctx::Ctx;
use crate::output::{Partial, count, human};
use crate::progress::Bar;

/// Options of `kura restore`.
#[derive(Args)]
pub struct RestoreArgs {
    /// SNAPSHOT or SNAPSHOT:PATH (id prefix or `latest`; PATH absolute, as in the snapshot).
    snapshot: String,
    /// Directory to restore into.
    #[arg(long, short = 't')]
    target: PathBuf,
    /// Restore only what matches this pattern (restic's rules: a name or relative path matches
    /// at any depth, `/...` from the root, `**` spans directories; a matching directory brings
    /// everything under it). Repeatable.
    #[arg(long)]
    include: Vec<String>,
    /// Directory holding the baseline's files, for files that exist only in a baseline.
    #[arg(long)]
    baseline_source: Option<PathBuf>,
    /// Restore only the files an incremental or differential snapshot carried (what changed
    /// since its base), not the whole state at that snapshot.
    #[arg(long)]
    only_changes: bool,
    /// What to do with files already at the target. Whatever the choice, a directory where
    /// the snapshot has a file (or a file where it has a directory) is only replaced with
    /// `always`; otherwise it is left as it is and reported, and the restore exits 3.
    #[arg(long, value_enum, default_value_t = OverwriteArg::IfChanged)]
    overwrite: OverwriteArg,
    /// Keep setuid and setgid bits on restored files (left off otherwise, with a warning).
    #[arg(long)]
    keep_setuid: bool,
    #[command(flatten)]
    select: super::snapshots::SelectArgs,
}

/// `--overwrite` values (restic's names).
#[derive(Clone, Copy, ValueEnum)]
enum OverwriteArg {
    /// Replace whatever is in the way, a directory included.
    Always,
    /// Replace a file whose size or mtime differs from the snapshot's; keep an equal one.
    IfChanged,
    /// Keep every existing file as it is.
    Never,
}

impl From<OverwriteArg> for Overwrite {
    fn from(a: OverwriteArg) -> Overwrite {
        match a {
            OverwriteArg::Always => Overwrite::Always,
            OverwriteArg::IfChanged => Overwrite::IfChanged,
            OverwriteArg::Never => Overwrite::Never,
        }
    }
}

/// `kura restore`.
pub fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<()> {
    let repo = ctx.open()?;
    let (spec, subpath) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s.to_string(), Some(PathBuf::from(p))),
        None => (a.snapshot.clone(), None),
    };
    let (id, snap) = a.select.find(&repo, &spec)?;
    let opts = RestoreOptions {
        target: a.target,
        subpath,
        includes: a.include,
        baseline_source: a.baseline_source,
        only_changes: a.only_changes,
        keep_setuid: a.keep_setuid,
        overwrite: a.overwrite.into(),
        threads: ctx.g.threads,
    };
    let bar = Bar::new("restore", "files", ctx.out.progress());
    let out = restore_snapshot(&repo, &snap, &opts, &bar);
    bar.finish();
    let out = out?;
    for p in &out.unmatched {
        eprintln!("warning: include pattern {p:?} matched nothing");
    }
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    if !ctx.out.json {
        for e in &out.errors {
            eprintln!("error: {e}");
        }
    }
    ctx.out.emit(
        &json!({"snapshot": id, "target": opts.target, "files": out.files, "dirs": out.dirs, "symlinks": out.symlinks, "bytes": out.bytes, "kept": out.kept, "specials": out.specials, "devices_skipped": out.devices_skipped, "setuid_stripped": out.setuid_stripped,
               "errors": out.errors, "warnings": out.warnings, "unmatched_patterns": out.unmatched}),
        || {
            let kept = match out.kept {
                0 => String::new(),
                n => format!("; {n} already there and left alone"),
            };
            let specials = match out.specials {
                0 => String::new(),
                n => format!(", {}", count(n, "special file")),
            };
            format!(
                "restored snapshot {} to {}: {}, {}, {}{specials}, {}{kept}",
                id.short(),
                opts.target.display(),
                count(out.files, "file"),
                count(out.dirs, "dir"),
                count(out.symlinks, "symlink"),
                human(out.bytes)
            )
        },
    );
    if !out.errors.is_empty() {
        return Err(Partial(format!(
            "restore incomplete ({}): see above",
            count(out.errors.len() as u64, "error")
        ))
        .into());
    }
    Ok(())
}

/// The first path of snapshot `id`, read whole into a temporary folder in this machine's state
/// directory (removed when dropped). For commands that keep a device's data as a snapshot and
/// need it back as files: phones, cards.
pub(crate) fn snapshot_root(
    ctx: &Ctx,
    repo: &Repository,
    id: &kura_core::id::Id,
    snap: &kura_core::snapshot::Snapshot,
) -> Result<tempfile::TempDir> {
    let root = snap
        .paths
        .first()
        .with_context(|| format!("snapshot {} has no paths", id.short()))?;
    let base = ctx.state_base()?;
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let tmp = tempfile::tempdir_in(&base).context("a folder to restore into")?;
    let opts = RestoreOptions {
        target: tmp.path().to_path_buf(),
        subpath: Some(PathBuf::from(root)),
        includes: Vec::new(),
        baseline_source: None,
        only_changes: false,
        keep_setuid: false,
        overwrite: Overwrite::Always,
        threads: ctx.g.threads,
    };
    let out = restore_snapshot(
        repo,
        snap,
        &opts,
        &Bar::new("read", "files", crate::output::Shown::Hidden),
    )?;
    if !out.errors.is_empty() {
        anyhow::bail!(
            "snapshot {} cannot be read whole: {}",
            id.short(),
            out.errors.join("; ")
        );
    }
    Ok(tmp)
}

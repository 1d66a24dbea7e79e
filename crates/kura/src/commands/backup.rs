//! `kura backup` and `kura baseline`: a backup as a job (new, resumed, or the unfinished one
//! of the same paths and type).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use kura_client::ClientError;
use kura_client::backup::BackupOptions;
use kura_core::job::JobId;
use kura_core::snapshot::BackupType;
use kura_repo::Repository;
use kura_repo::lock::hostname;
use serde_json::json;

use crate::ctx::Ctx;
use crate::output::{Partial, count, human};
use crate::progress::Bar;

/// Options of `kura backup`.
#[derive(Args)]
pub struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required_unless_present_any = ["files_from", "stdin"])]
    paths: Vec<PathBuf>,
    /// Also back up the paths listed in this file, one per line (`#` starts a comment).
    /// Repeatable.
    #[arg(long)]
    files_from: Vec<PathBuf>,
    /// Back up what arrives on standard input (a database dump piped in) as one file.
    #[arg(long, conflicts_with_all = ["paths", "files_from"])]
    stdin: bool,
    /// The name that file gets at the root of the snapshot.
    #[arg(long, default_value = "stdin", requires = "stdin")]
    stdin_filename: String,
    /// Only say what the backup would do: every file it would read is read and compressed, so
    /// the data it would add is exact (and what it would store, to a few bytes), but nothing
    /// is written.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// full: everything, new baseline; copy: everything, markers unchanged; incremental: changes
    /// since the last full or incremental; differential: changes since the last full.
    #[arg(long = "type", value_enum, default_value_t = TypeArg::Full)]
    kind: TypeArg,
    /// Leave out what matches this pattern (restic's rules: a name or relative path matches at
    /// any depth, `/...` from the root, `*` stays within a name, `**` spans directories; a
    /// matching directory takes everything under it). Repeatable; one that matches nothing is
    /// warned about.
    #[arg(long)]
    exclude: Vec<String>,
    /// Read exclude patterns from a file, one per line (`#` starts a comment).
    #[arg(long)]
    exclude_file: Vec<PathBuf>,
    /// Tag the snapshot.
    #[arg(long)]
    tag: Vec<String>,
    /// Do not cross into other filesystems (mount points are kept, empty).
    #[arg(long, short = 'x')]
    one_file_system: bool,
    /// Leave out the contents of directories tagged as caches with a CACHEDIR.TAG file.
    #[arg(long)]
    exclude_caches: bool,
}

/// Options of `kura baseline`.
#[derive(Args)]
pub struct BaselineArgs {
    /// Paths whose current state is the baseline.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Tag the snapshot.
    #[arg(long)]
    tag: Vec<String>,
}

/// The backup types a user asks for (a baseline has its own command).
#[derive(Clone, Copy, ValueEnum)]
pub enum TypeArg {
    /// Everything; a new baseline for incremental and differential backups.
    Full,
    /// Everything; the markers stay as they are.
    Copy,
    /// What changed since the last full or incremental backup.
    Incremental,
    /// What changed since the last full backup.
    Differential,
}

impl From<TypeArg> for BackupType {
    fn from(t: TypeArg) -> BackupType {
        match t {
            TypeArg::Full => BackupType::Full,
            TypeArg::Copy => BackupType::Copy,
            TypeArg::Incremental => BackupType::Incremental,
            TypeArg::Differential => BackupType::Differential,
        }
    }
}

/// The lines of a list file (`--exclude-file`, `--files-from`): trimmed, without blank lines
/// and `#` comments.
fn list_file(f: &std::path::Path, what: &str) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(f).with_context(|| format!("reading {what} {}", f.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// `kura backup`.
pub fn backup(ctx: &Ctx, a: BackupArgs) -> Result<()> {
    let mut excludes = ctx.config.exclude.clone();
    excludes.extend(a.exclude);
    for f in &a.exclude_file {
        excludes.extend(list_file(f, "exclude file")?);
    }
    let mut paths = a.paths;
    for f in &a.files_from {
        let listed = list_file(f, "--files-from")?;
        if listed.is_empty() {
            bail!("{} lists no path", f.display());
        }
        paths.extend(listed.into_iter().map(PathBuf::from));
    }
    // Standard input is spooled to a private file first: the backup reads a file, and a
    // pipe that breaks midway fails here, before anything is sent.
    let spool = match a.stdin {
        true => Some(spool_stdin(ctx)?),
        false => None,
    };
    if let Some(s) = &spool {
        paths = vec![s.path().to_path_buf()];
    }
    let opts = BackupOptions {
        paths,
        kind: a.kind.into(),
        excludes,
        tags: a.tag,
        one_file_system: a.one_file_system,
        exclude_caches: a.exclude_caches,
        stdin_name: a.stdin.then_some(a.stdin_filename),
        ..BackupOptions::default()
    };
    match a.dry_run {
        true => dry_run(ctx, opts),
        false => run_backup(ctx, opts, None),
    }
}

/// Standard input in a file readable by this user only, removed when dropped.
fn spool_stdin(ctx: &Ctx) -> Result<tempfile::NamedTempFile> {
    let dir = ctx.state_base()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut f = tempfile::Builder::new()
        .prefix("stdin-")
        .tempfile_in(&dir)
        .with_context(|| format!("spooling standard input in {}", dir.display()))?;
    std::io::copy(&mut std::io::stdin().lock(), f.as_file_mut())
        .context("reading standard input")?;
    f.as_file().sync_all().context("spooling standard input")?;
    Ok(f)
}

/// What a snapshot holds, for people: `3 files, 1 dir, 12 KiB (1 new, 2 changed, 0
/// unchanged{more})`.
fn held(s: &kura_core::snapshot::Summary, more: &str) -> String {
    format!(
        "{}, {}, {} ({} new, {} changed, {} unchanged{more})",
        count(s.files, "file"),
        count(s.dirs, "dir"),
        human(s.bytes),
        s.files_new,
        s.files_changed,
        s.files_unchanged
    )
}

/// What a backup added, for people: `12 KiB of data, 4 KiB stored`.
fn added(s: &kura_core::snapshot::Summary) -> String {
    format!(
        "{} of data, {} stored",
        human(s.data_added),
        human(s.stored_added)
    )
}

/// `kura backup --dry-run`: what the backup would add, with nothing written.
fn dry_run(ctx: &Ctx, mut opts: BackupOptions) -> Result<()> {
    let repo = ctx.open()?;
    let (state, device) = ctx.this_device(&repo)?;
    opts.hostname = hostname();
    opts.threads = ctx.g.threads;
    let bar = Bar::new("dry run", "files", ctx.out.progress());
    let p = kura_client::backup::preview(&repo, &state, device, &opts, &bar)?;
    bar.finish();
    if let Some(msg) = &p.fell_back {
        eprintln!("note: {msg}");
    }
    for e in &p.errors {
        eprintln!("warning: {e}");
    }
    let s = &p.snapshot.summary;
    ctx.out.emit(
        &json!({
            "dry_run": true, "type": p.snapshot.kind, "paths": p.snapshot.paths,
            "summary": s, "errors": p.errors, "unmatched_patterns": p.unmatched,
        }),
        || {
            format!(
                "dry run: a {} backup would hold {} and add {}; nothing was written",
                p.snapshot.kind,
                held(s, ""),
                added(s)
            )
        },
    );
    Ok(())
}

/// `kura baseline`.
pub fn baseline(ctx: &Ctx, a: BaselineArgs) -> Result<()> {
    let opts = BackupOptions {
        paths: a.paths,
        kind: BackupType::Baseline,
        tags: a.tag,
        ..BackupOptions::default()
    };
    run_backup(ctx, opts, None)
}

/// Runs a backup as a job (a new one, the unfinished one of the same paths and type, or
/// `resume`).
pub fn run_backup(ctx: &Ctx, opts: BackupOptions, resume: Option<JobId>) -> Result<()> {
    run_backup_in(ctx, ctx.open()?, opts, resume)
}

/// [`run_backup`] in a repository already opened; the host name and thread count come from
/// this machine and the options.
pub fn run_backup_in(
    ctx: &Ctx,
    repo: Repository,
    opts: BackupOptions,
    resume: Option<JobId>,
) -> Result<()> {
    let kind = opts.kind;
    let (job, out) = save(ctx, &repo, opts, resume)?;
    if let Some(msg) = &out.fell_back {
        eprintln!("note: {msg}");
    }
    for p in &out.unmatched {
        eprintln!("warning: exclude pattern {p:?} matched nothing");
    }
    super::conditions::after_backup(ctx, repo.backend().as_ref(), &job);
    let s = &out.snapshot.summary;
    ctx.out.emit(
        &json!({
            "id": out.id, "short_id": out.id.short(), "type": out.snapshot.kind, "requested_type": kind,
            "fell_back_to_full": out.fell_back.is_some(), "paths": out.snapshot.paths,
            "summary": s, "errors": out.errors, "adopted_packs": out.adopted_packs,
            "unmatched_patterns": out.unmatched,
            "job": job.id, "attempts": job.attempts,
        }),
        || {
            let kind = match out.snapshot.base {
                Some(b) => format!("{} on {}", out.snapshot.kind, b.short()),
                None => out.snapshot.kind.to_string(),
            };
            let carried = match out.snapshot.changes {
                Some(_) => format!("; {} carried", count(s.files_carried, "changed file")),
                None => String::new(),
            };
            format!(
                "snapshot {} ({kind}) saved: {}; added {}, in {:.1}s",
                out.id.short(),
                held(s, &carried),
                added(s),
                s.duration
            )
        },
    );
    if !out.errors.is_empty() {
        return Err(Partial(format!(
            "{} entries could not be read and are not in the snapshot",
            out.errors.len()
        ))
        .into());
    }
    Ok(())
}

/// Runs a backup as a job in `repo` and returns the job and what it saved, printing only the
/// progress bar and a resumed job's note; the host name and thread count come from this
/// machine and the options.
pub fn save(
    ctx: &Ctx,
    repo: &Repository,
    mut opts: BackupOptions,
    resume: Option<JobId>,
) -> Result<(kura_core::job::Job, kura_client::backup::BackupOutcome)> {
    let (state, device) = ctx.this_device(repo)?;
    opts.hostname = hostname();
    opts.threads = ctx.g.threads;
    let verb = if opts.kind == BackupType::Baseline {
        "baseline"
    } else {
        "backup"
    };
    let bar = Bar::new(verb, "files", ctx.out.progress());
    kura_client::job::stop_on_signals();
    let (job, out) = kura_client::job::run(repo, &state, device, &opts, resume, &bar)?;
    bar.finish();
    if job.attempts > 1 {
        ctx.out.say(format!(
            "resumed job {} (attempt {})",
            job.id.short(),
            job.attempts
        ));
    }
    let out = out.map_err(|e| match e {
        ClientError::Stopped => anyhow::Error::new(e).context(format!(
            "job {} {}; `kura jobs` lists it",
            job.id.short(),
            job.status
        )),
        e => e.into(),
    })?;
    Ok((job, out))
}

//! `kura init` and `kura quickstart`: a new repository, and a first backup in one step.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use kura_repo::lock::hostname;
use kura_repo::{RepoError, Repository};
use serde_json::json;

use super::check::{CheckArgs, check};
use crate::ctx::{Ctx, kdf};

/// Options of `kura quickstart`.
#[derive(Args)]
pub struct QuickstartArgs {
    /// Directory to back up.
    dir: PathBuf,
}

/// `kura init`.
pub fn init(ctx: &Ctx) -> Result<()> {
    let backend = ctx.backend()?;
    if Repository::read_config(backend.as_ref()).is_ok() {
        return Err(RepoError::AlreadyExists(backend.location()).into());
    }
    let pass = ctx.passphrase(true)?;
    let host = hostname();
    let (repo, device, code) = Repository::init(backend, &pass, kdf(), &host, &host)?;
    ctx.state(&repo)?.set_device(device)?;
    let location = ctx.repo_path()?;
    if ctx.out.quiet && !ctx.out.json {
        // Shown only once, so even --quiet must not swallow it.
        eprintln!("recovery code (shown once; keep it offline): {code}");
    }
    ctx.out.emit(
        &json!({"repository": repo.config().id, "location": location, "device": device.to_string(), "recovery_code": code}),
        || {
            format!(
                "created repository {} at {}\nthis machine is device {device}\n\n\
                 Recovery code (shown once; keep it offline, it unlocks everything without the passphrase):\n  {code}",
                repo.config().id,
                location.display(),
            )
        },
    );
    Ok(())
}

/// `kura quickstart`: the default repository (made if needed), a backup of DIR, the
/// snapshot list, and a check that reads every byte.
pub fn quickstart(ctx: &Ctx, a: QuickstartArgs) -> Result<()> {
    // Everything that can be wrong with the arguments is said before a repository is made.
    let dir = std::fs::canonicalize(&a.dir)
        .with_context(|| format!("cannot back up {}", a.dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let backend = ctx.backend()?;
    match Repository::read_config(backend.as_ref()) {
        Ok(_) => ctx.out.say(format!(
            "using repository at {}",
            ctx.repo_path()?.display()
        )),
        Err(RepoError::NotFound(_)) => init(ctx)?,
        Err(e) => return Err(e.into()),
    }
    let opts = kura_client::backup::BackupOptions {
        paths: vec![dir.clone()],
        ..Default::default()
    };
    super::backup::run_backup(ctx, opts, None)?;
    if !ctx.out.json {
        super::snapshots::snapshots(ctx, Default::default())?;
    }
    check(ctx, CheckArgs { read_data: true })?;
    ctx.out.say(format!(
        "\nTo get it back: kura restore latest --target /tmp/restore   (or latest:{} for part of it)",
        dir.display()
    ));
    Ok(())
}

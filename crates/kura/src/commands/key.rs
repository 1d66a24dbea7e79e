//! `kura key list|passwd|recovery-code`: what unlocks the repository's common key.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use kura_repo::lock::hostname;
use serde_json::json;

use crate::ctx::{Ctx, kdf};
use crate::output::table;

/// Key commands.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// List the key files: the passphrase(s) and the recovery code.
    List,
    /// Change the passphrase: unlock with the current one (or the recovery code, if it was
    /// lost), then the new one replaces it. The new one comes from --new-password-file,
    /// KURA_NEW_PASSWORD, or a prompt.
    Passwd {
        /// File holding the new passphrase.
        #[arg(long)]
        new_password_file: Option<PathBuf>,
    },
    /// Issue a new recovery code, shown once, and retire the old one: it opens nothing any more.
    RecoveryCode,
}

/// `kura key ...`.
pub fn key(ctx: &Ctx, c: KeyCommand) -> Result<()> {
    match c {
        KeyCommand::List => list(ctx),
        KeyCommand::Passwd { new_password_file } => passwd(ctx, new_password_file),
        KeyCommand::RecoveryCode => recovery_code(ctx),
    }
}

fn list(ctx: &Ctx) -> Result<()> {
    let repo = ctx.open()?;
    let mut keys = repo.keys()?;
    keys.sort_by(|a, b| a.created.cmp(&b.created));
    ctx.out.emit(&keys, || {
        let header = format!("{:<8}  {:<14}  {:<32}  host", "key", "kind", "created");
        let rows = keys.iter().map(|k| {
            format!(
                "{:<8}  {:<14}  {:<32}  {}{}",
                &k.name[..k.name.len().min(8)],
                k.kind,
                k.created,
                k.host,
                if k.in_use { "  (used now)" } else { "" }
            )
        });
        table(header, rows)
    });
    Ok(())
}

fn passwd(ctx: &Ctx, new_password_file: Option<PathBuf>) -> Result<()> {
    let mut repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let new = ctx.replacement_passphrase(new_password_file.as_deref())?;
    repo.change_passphrase(&new, kdf(), &hostname())?;
    ctx.out.emit(&json!({"changed": true}), || {
        "passphrase changed: the old one no longer unlocks the repository. Update any password \
         file that scheduled backups read (KURA_PASSWORD, --password-file, the config file)."
            .to_string()
    });
    Ok(())
}

fn recovery_code(ctx: &Ctx) -> Result<()> {
    let mut repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let code = repo.replace_recovery_code(&hostname())?;
    if ctx.out.quiet && !ctx.out.json {
        // Shown only once, so even --quiet must not swallow it.
        eprintln!("new recovery code (shown once; keep it offline): {code}");
    }
    ctx.out.emit(&json!({"recovery_code": code}), || {
        format!(
            "New recovery code (shown once; keep it offline, it unlocks everything without the passphrase):\n  {code}\nThe old recovery code no longer opens the repository."
        )
    });
    Ok(())
}

//! `kura completion SHELL` and `kura man DIR`: what a shell and `man` need, made from the
//! command-line definition itself, so they never fall behind it.

use std::path::Path;

use anyhow::{Context, Result};
use clap_complete::Shell;

use crate::ctx::Ctx;

/// Prints the completion script for `shell` on stdout.
pub fn completion(cmd: clap::Command, shell: Shell) -> Result<()> {
    let mut cmd = cmd;
    let mut out = std::io::stdout();
    clap_complete::generate(shell, &mut cmd, "kura", &mut out);
    Ok(())
}

/// Writes `kura.1` and a page for every command (`kura-backup.1`, `kura-wallet-escrow.1`,
/// ...) into `dir`, made if missing.
pub fn man(ctx: &Ctx, cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    page(&cmd.name("kura"), "kura", dir, &mut written)?;
    ctx.out.emit(&written, || {
        format!("wrote {} manual pages in {}", written.len(), dir.display())
    });
    Ok(())
}

/// Writes the page of `cmd`, named `name`, and of each command under it.
fn page(cmd: &clap::Command, name: &str, dir: &Path, written: &mut Vec<String>) -> Result<()> {
    let file = format!("{name}.1");
    let mut bytes = Vec::new();
    clap_mangen::Man::new(cmd.clone().name(name.to_string()))
        .render(&mut bytes)
        .with_context(|| format!("rendering {file}"))?;
    crate::ctx::write_private(&dir.join(&file), &bytes)?;
    written.push(file);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        page(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

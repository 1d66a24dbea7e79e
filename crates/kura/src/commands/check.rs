//! `kura check`: the repository's structure, and with `--read-data` every byte.

use anyhow::Result;
use clap::Args;

use crate::ctx::Ctx;
use crate::output::{Partial, count};
use crate::progress::Bar;

/// Options of `kura check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Read and verify every pack and blob.
    #[arg(long)]
    pub read_data: bool,
}

/// `kura check`.
pub fn check(ctx: &Ctx, a: CheckArgs) -> Result<()> {
    let repo = ctx.open()?;
    let bar = Bar::new("check", "packs", ctx.out.show_progress() && a.read_data);
    let r = kura_repo::check::check(&repo, a.read_data, ctx.threads(), &bar);
    bar.finish();
    let r = r?;
    if !ctx.out.json {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        for e in &r.errors {
            eprintln!("error: {e}");
        }
    }
    ctx.out.emit(&r, || {
        format!(
            "checked {}, {}, {}{}: {}",
            count(r.snapshots as u64, "snapshot"),
            count(r.trees as u64, "tree"),
            count(r.packs as u64, "pack"),
            if a.read_data {
                format!(", {} read", count(r.blobs_read as u64, "blob"))
            } else {
                String::new()
            },
            if r.errors.is_empty() {
                "no errors".to_string()
            } else {
                count(r.errors.len() as u64, "error")
            }
        )
    });
    if !r.errors.is_empty() {
        return Err(Partial(format!("check found {} errors", r.errors.len())).into());
    }
    Ok(())
}

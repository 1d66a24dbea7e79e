//! `kura check`: the repository's structure, and with `--read-data` every byte.

use anyhow::Result;
use clap::Args;

use crate::ctx::Ctx;
use crate::output::Partial;
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
    let bar = Bar::new("check", ctx.out.show_progress() && a.read_data);
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
            "checked {} snapshots, {} trees, {} packs{}: {}",
            r.snapshots,
            r.trees,
            r.packs,
            if a.read_data {
                format!(", {} blobs read", r.blobs_read)
            } else {
                String::new()
            },
            if r.errors.is_empty() {
                "no errors".to_string()
            } else {
                format!("{} errors", r.errors.len())
            }
        )
    });
    if !r.errors.is_empty() {
        return Err(Partial(format!("check found {} errors", r.errors.len())).into());
    }
    Ok(())
}

//! `kura mount`: the repository's snapshots as a read-only file system.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use kura_mount::MountOptions;

use super::snapshots::SelectArgs;
use crate::ctx::Ctx;
use crate::output::count;

/// Options of `kura mount`.
#[derive(Args)]
pub struct MountArgs {
    /// An existing empty directory to mount on.
    mountpoint: PathBuf,
    /// Let other users see the mount (root always may; others need `user_allow_other` in
    /// /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
    /// MiB of recently read file data kept in memory.
    #[arg(long, default_value_t = 256)]
    cache_mib: usize,
    #[command(flatten)]
    select: SelectArgs,
}

/// `kura mount`.
pub fn mount(ctx: &Ctx, a: MountArgs) -> Result<()> {
    let meta = std::fs::metadata(&a.mountpoint)
        .with_context(|| format!("mount point {}", a.mountpoint.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "mount point {} is not a directory",
        a.mountpoint.display()
    );
    let repo = ctx.open()?;
    // Held while mounted, so that no prune removes data a reader is about to ask for.
    let _lock = repo.lock(false)?;
    let snaps = a.select.chosen(&repo, &[])?;
    let bar = crate::progress::Bar::new("loading", "index files", ctx.out.progress());
    let index = repo.load_index_with(&bar)?;
    bar.finish();
    let opts = MountOptions {
        mountpoint: a.mountpoint.clone(),
        cache_bytes: a.cache_mib.saturating_mul(1 << 20),
        threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
        allow_other: a.allow_other,
    };
    kura_client::job::stop_on_signals();
    let shown = count(snaps.len() as u64, "snapshot");
    kura_mount::mount(
        repo,
        index,
        &snaps,
        &opts,
        kura_client::job::signalled,
        || {
            ctx.out.say(format!(
                "{shown} mounted read-only at {}: ids/, snapshots/, hosts/ and tags/. \
             Ctrl-C or `fusermount3 -u {}` unmounts.",
                a.mountpoint.display(),
                a.mountpoint.display()
            ))
        },
    )
    .with_context(|| format!("mounting at {}", a.mountpoint.display()))?;
    Ok(())
}

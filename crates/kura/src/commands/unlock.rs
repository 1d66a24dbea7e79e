//! `kura unlock`: removes repository locks whose holders are gone.

use anyhow::Result;
use clap::Args;
use kura_repo::lock;
use serde_json::json;

use crate::ctx::Ctx;
use crate::output::{count, lines};

/// Options of `kura unlock`.
#[derive(Args)]
pub struct UnlockArgs {
    /// Remove every lock, also those whose holders may still run: only when no kura process
    /// uses the repository (a process on another host that crashed keeps its lock fresh for
    /// 30 minutes).
    #[arg(long)]
    remove_all: bool,
}

/// `kura unlock`.
pub fn unlock(ctx: &Ctx, a: UnlockArgs) -> Result<()> {
    let repo = ctx.open()?;
    let removed = lock::remove_locks(repo.backend().as_ref(), a.remove_all)?;
    let left = lock::holders(repo.backend().as_ref())?;
    ctx.out
        .emit(&json!({"removed": removed, "left": left}), || {
            let describe = |h: &lock::Holder| match (&h.host, h.pid, h.time) {
                (Some(host), Some(pid), Some(time)) => format!(
                    "{} lock of pid {pid} on {host}, refreshed {time}",
                    if h.exclusive {
                        "an exclusive"
                    } else {
                        "a shared"
                    }
                ),
                _ => format!("unreadable lock file locks/{}", h.name),
            };
            let mut rows: Vec<String> = removed
                .iter()
                .map(|h| format!("removed {}", describe(h)))
                .collect();
            rows.extend(left.iter().map(|h| {
                format!(
                    "left    {} (still held; --remove-all removes it)",
                    describe(h)
                )
            }));
            rows.push(format!(
                "{} removed, {} left",
                count(removed.len() as u64, "lock"),
                left.len()
            ));
            lines(rows)
        });
    Ok(())
}

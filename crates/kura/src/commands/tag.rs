//! `kura tag`: changes the tags of snapshots. A snapshot file is sealed whole, so a snapshot
//! with new tags is a new file: it is written first and keeps the old id as its `original`
//! (snapshots that name it as their base still find it), then the old one goes.

use anyhow::{Result, bail};
use clap::Args;
use kura_core::snapshot::TagChange;
use serde_json::json;

use super::snapshots::SelectArgs;
use crate::ctx::Ctx;
use crate::output::{count, lines};

/// Options of `kura tag`.
#[derive(Args)]
pub struct TagArgs {
    /// Snapshots (id prefix or `latest`). Default: every snapshot the selection options
    /// consider.
    snapshots: Vec<String>,
    /// Add these tags (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    add: Vec<String>,
    /// Remove these tags (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    remove: Vec<String>,
    /// Replace all tags with these (comma-separated; `--set ''` clears them).
    #[arg(long, value_delimiter = ',', num_args = 0..=1, conflicts_with = "add")]
    set: Option<Vec<String>>,
    #[command(flatten)]
    select: SelectArgs,
}

/// `kura tag`.
pub fn tag(ctx: &Ctx, a: TagArgs) -> Result<()> {
    let change = TagChange {
        set: a.set,
        add: a.add,
        remove: a.remove,
    };
    if change.is_empty() {
        bail!("say what to change: --add, --remove or --set");
    }
    let repo = ctx.open()?;
    let (_, device) = ctx.this_device(&repo)?;
    let _lock = repo.lock(true)?;
    let chosen = a.select.chosen(&repo, &a.snapshots)?;
    let mut changed = Vec::new();
    for (old, s) in &chosen {
        let tags = change.apply(&s.tags);
        if tags == s.tags {
            continue;
        }
        let mut new = repo.successor(*old, s, device);
        new.tags = tags;
        changed.push((*old, repo.replace_snapshot(old, &new)?, new.tags));
    }
    ctx.out.emit(
        &json!({
            "changed": changed.iter().map(|(old, new, tags)| json!({"old": old, "new": new, "tags": tags})).collect::<Vec<_>>(),
            "unchanged": chosen.len() - changed.len(),
        }),
        || {
            let rows = changed.iter().map(|(old, new, tags)| {
                format!("{} -> {}  {}", old.short(), new.short(), tags.join(","))
            });
            lines(rows.chain([format!(
                "{} changed, {} already so",
                count(changed.len() as u64, "snapshot"),
                chosen.len() - changed.len()
            )]))
        },
    );
    Ok(())
}

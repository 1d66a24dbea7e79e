//! `kura copy`: snapshots of another repository into this one.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use kura_repo::{Credential, Repository};
use serde_json::json;

use super::snapshots::SelectArgs;
use crate::ctx::Ctx;
use crate::output::{Partial, count, human, lines};
use crate::progress::Bar;

/// Options of `kura copy`.
#[derive(Args)]
pub struct CopyArgs {
    /// Snapshots of the source (id prefix or `latest`). Default: every one the selection
    /// options consider there.
    snapshots: Vec<String>,
    /// The repository to copy from: a directory, or the service (https://HOST:PORT, logged
    /// in with the service options); the target is the usual one (`--repo`).
    #[arg(long, env = "KURA_FROM_REPO")]
    from_repo: PathBuf,
    /// File holding the source repository's passphrase (else KURA_FROM_PASSWORD, or a
    /// prompt).
    #[arg(long, env = "KURA_FROM_PASSWORD_FILE")]
    from_password_file: Option<PathBuf>,
    #[command(flatten)]
    select: SelectArgs,
}

/// `kura copy`.
pub fn copy(ctx: &Ctx, a: CopyArgs) -> Result<()> {
    let backend = ctx.backend_at(a.from_repo.clone())?;
    Repository::read_config(backend.as_ref())
        .with_context(|| format!("the repository to copy from, {}", a.from_repo.display()))?;
    let passphrase = ctx.source_passphrase(a.from_password_file.as_deref())?;
    let from = Repository::open(backend, &Credential::Passphrase(passphrase))
        .with_context(|| format!("opening {}", a.from_repo.display()))?;
    let to = ctx.open()?;
    anyhow::ensure!(
        from.config().id != to.config().id,
        "the source and the target are the same repository"
    );
    let (_, device) = ctx.this_device(&to)?;
    let chosen = a.select.chosen(&from, &a.snapshots)?;
    let bar = Bar::new("copy", "snapshots", ctx.out.progress());
    let out = kura_client::copy::copy(&from, &to, device, &chosen, &bar)?;
    bar.finish();
    ctx.out.emit(
        &json!({
            "copied": out.copied.iter().map(|(old, new)| json!({"from": old, "to": new})).collect::<Vec<_>>(),
            "present": out.present, "failed": out.failed.iter().map(|(id, why)| json!({"id": id, "error": why})).collect::<Vec<_>>(),
            "blobs_added": out.blobs_added, "data_added": out.data_added, "stored_added": out.stored_added,
        }),
        || {
            let mut rows: Vec<String> = (out.copied.iter())
                .map(|(old, new)| format!("copied {} -> {}", old.short(), new.short()))
                .collect();
            rows.extend(
                (out.failed.iter()).map(|(id, why)| format!("failed {}: {why}", id.short())),
            );
            rows.push(format!(
                "{} copied, {} there already; added {} of data, {} stored",
                count(out.copied.len() as u64, "snapshot"),
                out.present.len(),
                human(out.data_added),
                human(out.stored_added)
            ));
            lines(rows)
        },
    );
    if !out.failed.is_empty() {
        return Err(Partial(format!(
            "{} could not be copied",
            count(out.failed.len() as u64, "snapshot")
        ))
        .into());
    }
    Ok(())
}

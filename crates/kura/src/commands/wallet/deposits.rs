//! The wallet's trips to the vault: `kura wallet deposit|withdraw|auto-backup`.

use anyhow::{Context, Result, bail};
use kura_wallet::wallet::Holding;
use serde_json::json;

use super::dir::{Dir, today};
use super::{RoomArgs, made_room};
use crate::ctx::Ctx;

/// `kura wallet deposit`.
pub(super) fn deposit(ctx: &Ctx, mut d: Dir, id: u64) -> Result<()> {
    let keep = d.settings.keep_deposited;
    let (cid, cert) = d.deposit(id, keep)?;
    ctx.out.emit(
        &json!({ "id": cid, "counter": cert.counter, "kept_value": keep }),
        || {
            format!(
                "deposited {id}: certificate {cid} (vault counter {})",
                cert.counter
            )
        },
    );
    Ok(())
}

/// `kura wallet withdraw`.
pub(super) fn withdraw(ctx: &Ctx, mut d: Dir, id: u64, room: RoomArgs) -> Result<()> {
    let Some((_, Holding::Certificate(cert))) =
        d.wallet.holdings.iter().find(|(n, _)| *n == id).cloned()
    else {
        bail!("item {id} is not a certificate this wallet holds");
    };
    let signer = d.signing_key()?;
    // Both keys first: the vault retires the record as it answers.
    let (_, key) = d.value_key().context(
        "without its value key this wallet cannot open the value (`kura wallet \
         rebuild-key` rebuilds an escrowed key)",
    )?;
    let (reg, file) = d.withdraw(&cert, &signer)?;
    let record = reg
        .open(&signer.public(), &key)
        .context("the withdrawn value does not verify: it was changed at the vault")?;
    let deposited = d.put_back(id, record, &room).with_context(|| {
        format!(
            "the value is kept in {} (withdraw again to take it in)",
            file.display()
        )
    })?;
    d.save()?;
    std::fs::remove_file(&file)?;
    ctx.out
        .emit(&json!({ "id": id, "deposited": deposited }), || {
            format!("withdrew {id}: the value is back{}", made_room(&deposited))
        });
    Ok(())
}

/// `kura wallet auto-backup`.
pub(super) fn auto_backup(ctx: &Ctx, mut d: Dir, when_due: bool) -> Result<()> {
    let today = today();
    let due_on = match (d.last_auto_backup, d.settings.conditions.every_days) {
        (Some(last), Some(every)) => Some(last.saturating_add(jiff::Span::new().try_days(every)?)),
        _ => None,
    };
    if when_due && due_on.is_some_and(|on| on > today) {
        ctx.out.emit(&json!({ "due": false, "deposited": [] }), || {
            format!(
                "not due: the next periodic auto-backup is on {}",
                due_on.map_or_else(String::new, |d| d.to_string())
            )
        });
        return Ok(());
    }
    let chosen = d
        .settings
        .conditions
        .select(&d.wallet, |id| d.since.get(&id).copied(), today);
    // Moved, whatever keep_deposited says: a value kept beside its certificate would be
    // chosen, and deposited again, at every run.
    let mut deposited = Vec::new();
    for id in chosen {
        d.deposit(id, false)?;
        deposited.push(id);
    }
    d.last_auto_backup = Some(today);
    d.save()?;
    ctx.out
        .emit(&json!({ "due": true, "deposited": deposited }), || {
            format!(
                "deposited {} values the conditions choose: {deposited:?}",
                deposited.len()
            )
        });
    Ok(())
}

//! What the wallet holds on this machine: `kura wallet add|list|show|remove|use` (nothing is
//! asked of the vault, unless a value must be deposited to make room).

use anyhow::{Context, Result};
use kura_wallet::record::{Validity, ValueRecord};
use kura_wallet::wallet::Filter;
use serde_json::json;

use super::dir::Dir;
use super::{AddArgs, describe, line, made_room};
use crate::ctx::Ctx;

/// `kura wallet add`.
pub(super) fn add(ctx: &Ctx, mut d: Dir, a: AddArgs) -> Result<()> {
    let record = ValueRecord {
        kind: a.kind,
        name: a.name,
        unit_price: a.unit_price,
        quantity: a.quantity,
        total: a.total,
        place: a.place,
        validity: match (a.valid_from, a.valid_until) {
            (Some(from), Some(until)) => Some(Validity { from, until }),
            (None, Some(until)) => Some(Validity { from: until, until }),
            _ => None,
        },
        balance: a.balance,
        remarks: a.remarks,
    };
    let (id, deposited) = d.take_in(record, &a.room)?;
    d.save()?;
    ctx.out.emit(
        &json!({ "id": id, "free": d.wallet.free(), "deposited": deposited }),
        || {
            format!(
                "added value {id} ({} bytes free){}",
                d.wallet.free(),
                made_room(&deposited)
            )
        },
    );
    Ok(())
}

/// `kura wallet list`.
pub(super) fn list(
    ctx: &Ctx,
    d: Dir,
    certificates: bool,
    kind: Option<String>,
    ending_within: Option<i64>,
) -> Result<()> {
    let filter = Filter {
        certificates_only: certificates,
        kind,
        ending_by: ending_within
            .map(|n| {
                let days = jiff::Span::new().try_days(n).context("--ending-within")?;
                Ok::<_, anyhow::Error>(jiff::Zoned::now().date().saturating_add(days))
            })
            .transpose()?,
    };
    let rows: Vec<_> = d.wallet.list(&filter).collect();
    ctx.out.emit(
        &rows
            .iter()
            .map(|(id, h)| describe(*id, h))
            .collect::<Vec<_>>(),
        || crate::output::lines(rows.iter().map(|(id, h)| line(*id, h))),
    );
    Ok(())
}

/// `kura wallet show`.
pub(super) fn show(ctx: &Ctx, d: Dir, id: u64) -> Result<()> {
    let (_, h) = d
        .wallet
        .holdings
        .iter()
        .find(|(n, _)| *n == id)
        .with_context(|| format!("the wallet holds no item {id}"))?;
    let v = describe(id, h);
    ctx.out
        .emit(&v, || serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(())
}

/// `kura wallet remove`.
pub(super) fn remove(ctx: &Ctx, mut d: Dir, id: u64) -> Result<()> {
    d.wallet.remove(id)?;
    d.save()?;
    ctx.out.say(format!("removed {id}"));
    Ok(())
}

/// `kura wallet use`.
pub(super) fn spend(ctx: &Ctx, mut d: Dir, id: u64, amount: u64) -> Result<()> {
    let left = d.wallet.spend(id, amount)?;
    d.save()?;
    ctx.out.emit(&json!({ "id": id, "balance": left }), || {
        format!("{id}: {left} left")
    });
    Ok(())
}

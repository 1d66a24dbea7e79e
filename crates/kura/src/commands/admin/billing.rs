//! `kura admin billing ...`: settlements, statements, objections and the ledger.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::json;

use super::Admin;
use crate::output::lines;
use crate::progress::Counter;

/// Billing commands.
#[derive(Subcommand)]
pub enum AdminBillingCommand {
    /// Settle the month before DATE: check each user's data (repairing what can be), charge
    /// it by the [billing] prices (level, GB-months stored, incidents), send the statements,
    /// and settle charges whose objection deadline has passed. Running it again charges
    /// nobody twice; `kura serve` runs it every `billing_every_secs` for today.
    Run {
        /// The settlement date, YYYY-MM-DD (default today, UTC).
        #[arg(long)]
        date: Option<jiff::civil::Date>,
    },
    /// Statements, everyone's or one user's.
    Statements {
        /// Only this user's.
        #[arg(long = "member", id = "member")]
        user: Option<String>,
    },
    /// Resolve a user's objection: the held charge stands (--uphold), is cancelled
    /// (--cancel), or is lowered (--keep AMOUNT); the user is told, with the note.
    #[command(group = clap::ArgGroup::new("decision").required(true).multiple(false))]
    Resolve {
        /// The statement.
        statement: String,
        /// Keep the whole charge.
        #[arg(long, group = "decision")]
        uphold: bool,
        /// Drop the charge.
        #[arg(long, group = "decision")]
        cancel: bool,
        /// Keep this much of it (in the currency's smallest unit).
        #[arg(long, group = "decision")]
        keep: Option<i64>,
        /// What the user is told of the decision.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// The ledger: every posting, each account's balance, and whether it balances.
    Ledger,
}

/// `kura admin billing ...`.
pub fn billing(a: Admin, c: AdminBillingCommand) -> Result<()> {
    match c {
        AdminBillingCommand::Run { date } => run(a, date),
        AdminBillingCommand::Statements { user } => statements(a, user),
        AdminBillingCommand::Resolve {
            statement,
            uphold,
            cancel,
            keep,
            note,
        } => {
            let held = a
                .registry
                .statements(None)?
                .into_iter()
                .find(|s| s.id == statement)
                .with_context(|| format!("no statement {statement}"))?;
            let kept = match (uphold, cancel, keep) {
                (true, _, _) => held.total,
                (_, true, _) => 0,
                (_, _, Some(k)) => k,
                _ => bail!("say --uphold, --cancel or --keep AMOUNT"),
            };
            let s = a.registry.resolve(&statement, kept, &note)?;
            let (runtime, storage, out) = a.storage()?;
            runtime.block_on(kura_service::settlement::tell(&storage))?;
            out.emit(&s, || {
                format!(
                    "statement {} {}: {} kept of {}",
                    s.id,
                    s.status.as_str(),
                    s.money(kept),
                    s.money(s.total)
                )
            });
            Ok(())
        }
        AdminBillingCommand::Ledger => ledger(a),
    }
}

fn run(a: Admin, date: Option<jiff::civil::Date>) -> Result<()> {
    let Some(prices) = a.config.billing.clone() else {
        bail!("no [billing] prices in the service config (--server-config)");
    };
    let date = date.unwrap_or_else(kura_service::settlement::today);
    let (runtime, storage, out) = a.storage()?;
    let bar = Counter::new("settle", "users", out.progress());
    let s = runtime.block_on(kura_service::settlement::settle(
        &storage,
        &prices,
        date,
        &|done, total| bar.update(done, total),
    ))?;
    bar.finish();
    out.emit(&s, || {
        format!(
            "settlement of {} on {}: {} users checked ({} objects lost or tampered with), {} \
             statements issued, {} already issued, {} charges settled, {} notices sent",
            s.period,
            s.date,
            s.checked,
            s.problems,
            s.issued.len(),
            s.already.len(),
            s.settled.len(),
            s.notified
        )
    });
    Ok(())
}

fn statements(a: Admin, user: Option<String>) -> Result<()> {
    let user = user.map(|u| a.registry.user(&u)).transpose()?.map(|u| u.id);
    let list = a.registry.statements(user)?;
    a.out.emit(&list, || {
        lines(list.iter().map(|s| {
            format!(
                "{:<16} user {:<6} {:>16}  {:<9} deadline {}{}",
                s.id,
                s.user,
                s.money(s.total),
                s.status.as_str(),
                s.deadline,
                s.objection
                    .as_deref()
                    .map(|o| format!("  objection: {o}"))
                    .unwrap_or_default()
            )
        }))
    });
    Ok(())
}

fn ledger(a: Admin) -> Result<()> {
    let prices = a.config.billing.clone().unwrap_or_default();
    let entries = a.registry.ledger()?;
    let postings: Vec<_> = entries.iter().map(|e| e.posting.clone()).collect();
    let balanced = kura_billing::ledger::balanced(&postings);
    let balances = kura_billing::ledger::balances(&postings);
    a.out.emit(
        &json!({"entries": entries, "balances": balances, "balanced": balanced}),
        || {
            let rows = entries.iter().map(|e| {
                format!(
                    "{:>6} {} {:<24} {:<20} {:>12} {:>12}",
                    e.id, e.at, e.txn, e.posting.account, e.posting.debit, e.posting.credit
                )
            });
            let sums = balances
                .iter()
                .map(|(account, b)| format!("{account:<20} {}", prices.money(*b)));
            let verdict = if balanced { "balanced" } else { "NOT BALANCED" };
            lines(rows.chain(sums).chain([verdict.to_string()]))
        },
    );
    if !balanced {
        bail!("the ledger does not balance");
    }
    Ok(())
}

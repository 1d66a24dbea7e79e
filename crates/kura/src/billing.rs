//! `kura billing`: a member's statements at the service, and objections to them
//! (`spec/placement.md` requirement 11).

use anyhow::Result;
use clap::Subcommand;
use kura_billing::Statement;
use serde_json::json;

use crate::cli::Ctx;

/// What `kura billing` does.
#[derive(Subcommand)]
pub enum BillingCommand {
    /// Your statements: each period's charge with its lines, where it stands (open until
    /// its objection deadline, held after an objection, settled, reduced or cancelled).
    Statements,
    /// Object to a statement by its deadline: the charge is held until the operator
    /// resolves the objection, and you are told of the decision.
    Object {
        /// The statement's id (`kura billing statements` shows it).
        statement: String,
        /// Why you object (the operator reads this).
        #[arg(long)]
        reason: String,
    },
}

fn not_a_service() -> anyhow::Error {
    anyhow::anyhow!("statements come from a Kura service; this repository is not on one")
}

fn show(s: &Statement) {
    println!(
        "{}  {}  {}  {}  (object by {})",
        s.id,
        s.period.label(),
        s.money(s.total),
        s.status.as_str(),
        s.deadline
    );
    for l in &s.lines {
        println!("    {:<56} {:>16}", l.description, s.money(l.amount));
    }
    if let Some(o) = &s.objection {
        println!("    objection: {o}");
    }
    if let Some(r) = &s.resolution {
        println!("    resolution: {r}");
    }
}

/// Runs `kura billing`.
pub fn billing(ctx: &Ctx, c: BillingCommand) -> Result<()> {
    let backend = ctx.backend()?;
    match c {
        BillingCommand::Statements => {
            let list = backend.statements()?.ok_or_else(not_a_service)?;
            if ctx.json() {
                ctx.print_json(&json!(list));
            } else if list.is_empty() {
                println!("no statements");
            } else {
                list.iter().for_each(show);
            }
        }
        BillingCommand::Object { statement, reason } => {
            let s = backend.object_to(&statement, &reason)?;
            if ctx.json() {
                ctx.print_json(&json!(s));
            } else {
                println!(
                    "statement {} is {}: its charge is held until the operator resolves your objection",
                    s.id,
                    s.status.as_str()
                );
            }
        }
    }
    Ok(())
}

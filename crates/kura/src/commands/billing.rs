//! `kura billing`: a user's statements at the service, and objections to them
//! (`docs/requirements/placement.md` requirement 11).

use anyhow::Result;
use clap::Subcommand;
use kura_api::Statement;

use crate::ctx::Ctx;
use crate::output::lines;

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

fn statement_text(s: &Statement) -> String {
    let head = format!(
        "{}  {}  {}  {}  (object by {})",
        s.id,
        s.period.label(),
        s.money(s.total),
        s.status.as_str(),
        s.deadline
    );
    let body = s
        .lines
        .iter()
        .map(|l| format!("    {:<56} {:>16}", l.description, s.money(l.amount)));
    let objection = s.objection.iter().map(|o| format!("    objection: {o}"));
    let resolution = s.resolution.iter().map(|r| format!("    resolution: {r}"));
    lines(
        std::iter::once(head)
            .chain(body)
            .chain(objection)
            .chain(resolution),
    )
}

/// `kura billing ...`.
pub fn billing(ctx: &Ctx, c: BillingCommand) -> Result<()> {
    match c {
        BillingCommand::Statements => {
            let list = ctx.with_provider("statements", |p| Ok(p.statements()?))?;
            ctx.out.emit(&list, || {
                if list.is_empty() {
                    return "no statements".into();
                }
                lines(list.iter().map(statement_text))
            });
        }
        BillingCommand::Object { statement, reason } => {
            let s = ctx.with_provider("statements", |p| Ok(p.object_to(&statement, &reason)?))?;
            ctx.out.emit(&s, || {
                format!(
                    "statement {} is {}: its charge is held until the operator resolves your objection",
                    s.id,
                    s.status.as_str()
                )
            });
        }
    }
    Ok(())
}

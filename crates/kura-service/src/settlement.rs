//! The billing cycle (`docs/requirements/placement.md` requirement 11): on a settlement date (`kura
//! admin billing run --date D`, and daily in `kura serve`) every user's data is checked first
//! (media faults repaired in place, other missing copies stored again by a placement run). Then the
//! charge for the month before is computed from the user's level, the storage used and the month's
//! incidents ([`kura_billing::charge`]), and a statement is sent with the storage conditions, the
//! incident history, the objection deadline and how to object. Charges with no objection by their
//! deadline are settled. Every money move is a balanced transaction in the append-only ledger
//! ([`crate::registry::billing`]); a settlement is one SQLite transaction, and running it again
//! charges nobody twice.

use std::sync::Arc;

use kura_billing::{Period, Prices, Statement, Status};
use serde::Serialize;

use crate::registry::{RegistryError, User};
use crate::storage::{Scope, Storage, StorageError};

/// What a settlement did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Settlement {
    /// The settlement date.
    pub date: String,
    /// The period charged (`YYYY-MM`).
    pub period: String,
    /// Users whose data was checked before their charge.
    pub checked: u64,
    /// Objects found lost or tampered with in those checks (they show in the charge).
    pub problems: u64,
    /// Copies stored again after those checks (where the check could not repair in place).
    pub restored: u64,
    /// Statements issued now.
    pub issued: Vec<String>,
    /// Statements issued for the period before (not charged again).
    pub already: Vec<String>,
    /// Charges settled now.
    pub settled: Vec<String>,
    /// Notices sent (statements, settled charges, objections, resolutions).
    pub notified: u64,
}

fn day_start(d: jiff::civil::Date) -> Result<jiff::Timestamp, StorageError> {
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| RegistryError::Invalid(e.to_string()).into())
}

/// Settles the period before `date`: checks and charges every user with a contract who has
/// no statement for it yet, then settles the charges whose objection period has ended, then
/// tells the users. `progress` is told (done, total) as users are checked.
pub async fn settle(
    storage: &Arc<Storage>,
    prices: &Prices,
    date: jiff::civil::Date,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Settlement, StorageError> {
    let period = Period::settled_on(date).map_err(invalid)?;
    let mut out = Settlement {
        date: date.to_string(),
        period: period.label(),
        ..Settlement::default()
    };
    let users = storage.blocking(|s| s.users()).await?;
    let total = users.len() as u64;
    let mut statements = Vec::new();
    for (done, user) in users.into_iter().enumerate() {
        progress(done as u64, total);
        let Some(contract) = &user.contract else {
            continue;
        };
        if contract
            .member_since
            .is_some_and(|since| since >= period.end)
        {
            continue;
        }
        let id = Statement::id_for(user.id, &period);
        let known = id.clone();
        if storage.blocking(move |s| s.has_statement(&known)).await? {
            out.already.push(id);
            continue;
        }
        // The user's data is checked (and repaired) before it is charged for.
        let scope = Scope {
            user: Some(user.name.clone()),
            sample: None,
        };
        let v = storage.verify(&scope, &|_, _| {}).await?;
        // What the check could not repair in place (a copy at a site that is down or failed
        // authentication) is stored again where the rule now says.
        let r = storage.place_users(Some(user.id)).await?;
        out.checked += 1;
        out.problems += v.lost + v.tampered;
        out.restored += r.copied;
        statements.push(charge(storage, prices, &user, &period, date).await?);
    }
    let written = storage
        .blocking(move |s| s.settle(&statements, date))
        .await?;
    out.issued = written.issued;
    out.already.extend(written.already);
    out.settled = written.settled;
    out.notified = tell(storage).await?;
    Ok(out)
}

async fn charge(
    storage: &Storage,
    prices: &Prices,
    user: &User,
    period: &Period,
    date: jiff::civil::Date,
) -> Result<Statement, StorageError> {
    let level = storage.level_of(user, date);
    let (id, p) = (user.id, *period);
    let average = storage
        .blocking(move |s| s.average_usage(id, &p))
        .await?
        .unwrap_or(user.bytes);
    let (from, to) = (day_start(period.start)?, day_start(period.end)?);
    let incidents = storage
        .blocking(move |s| s.incidents(Some(id), Some(from), Some(to)))
        .await?;
    let kinds: Vec<_> = incidents.iter().map(|i| i.kind).collect();
    let lines = kura_billing::charge(prices, &level, period, average, &kinds).map_err(invalid)?;
    Ok(Statement {
        id: Statement::id_for(user.id, period),
        user: user.id,
        period: *period,
        issued: date,
        deadline: kura_billing::deadline(prices, date).map_err(invalid)?,
        currency: prices.currency.clone(),
        decimals: prices.decimals,
        total: kura_billing::total(&lines).map_err(invalid)?,
        lines,
        status: Status::Open,
        objection: None,
        resolution: None,
    })
}

fn invalid(e: impl std::fmt::Display) -> StorageError {
    RegistryError::Invalid(e.to_string()).into()
}

/// Tells each user of every statement whose state they have not heard of: a new statement,
/// a settled charge, an objection received, a resolution. A crash between a settlement and
/// its notices only delays them to the next call. Returns how many were sent.
pub async fn tell(storage: &Storage) -> Result<u64, StorageError> {
    let registry = storage.registry().clone();
    let pending = storage.blocking(|s| s.statements_to_tell()).await?;
    let mut sent = 0;
    for st in pending {
        let id = st.user;
        let user = storage.blocking(move |s| s.user_by_id(id)).await?;
        let total = st.money(st.total);
        let (kind, subject, body) = match st.status {
            Status::Open => {
                let objects = storage.blocking(move |s| s.objects(id, None)).await?;
                let lines = crate::notice::conditions_lines(&objects);
                let (from, to) = (day_start(st.period.start)?, day_start(st.period.end)?);
                let incidents: Vec<String> = storage
                    .blocking(move |s| s.incidents(Some(id), Some(from), Some(to)))
                    .await?
                    .into_iter()
                    .map(|i| format!("{} [{}] {}", i.at, i.kind.as_str(), i.summary))
                    .collect();
                (
                    "statement",
                    format!("Statement {} for {}: {total}", st.id, st.period.label()),
                    kura_billing::statement_text(&st, &lines, &incidents),
                )
            }
            Status::Held => (
                "objection",
                format!("Your objection to statement {} is received", st.id),
                format!(
                    "The charge of {total} of statement {} is held until the operator resolves \
                     your objection:\n\n  {}\n\nYou will be told of the decision.\n",
                    st.id,
                    st.objection.as_deref().unwrap_or_default()
                ),
            ),
            Status::Settled | Status::Reduced | Status::Cancelled => {
                let what = match (st.status, &st.resolution) {
                    (Status::Settled, None) => format!(
                        "No objection was made by {}: the charge of {total} of statement {} is \
                         settled.",
                        st.deadline, st.id
                    ),
                    (Status::Cancelled, _) => format!(
                        "Your objection to statement {} was upheld: its charge of {total} is \
                         cancelled.",
                        st.id
                    ),
                    (Status::Reduced, _) => format!(
                        "Your objection to statement {} was partly upheld: its charge of {total} \
                         is lowered.",
                        st.id
                    ),
                    _ => format!(
                        "Your objection to statement {} was not upheld: the charge of {total} is \
                         settled.",
                        st.id
                    ),
                };
                let note = st
                    .resolution
                    .as_deref()
                    .map(|n| format!("\n\nThe operator's note: {n}"))
                    .unwrap_or_default();
                (
                    "settled",
                    format!("Statement {}: {}", st.id, st.status.as_str()),
                    format!("{what}{note}\n"),
                )
            }
        };
        crate::notice::send(&registry, storage.data_dir(), &user, kind, &subject, &body)?;
        let (sid, status) = (st.id.clone(), st.status);
        storage.blocking(move |s| s.told(&sid, status)).await?;
        sent += 1;
    }
    Ok(sent)
}

/// Today, in UTC: the calendar billing counts in.
pub fn today() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// Records today's usage of every user (the storage line of a charge averages these).
pub async fn sample_usage(storage: &Storage) -> Result<(), StorageError> {
    let today = today();
    storage.blocking(move |s| s.sample_usage(today)).await
}

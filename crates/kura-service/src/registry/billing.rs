//! Statements, the ledger and usage samples. The ledger is append-only (SQLite refuses to
//! change or delete a posting), every transaction in it is balanced and named for its
//! statement and step (`issue:7-2026-11`), so a step taken twice is refused rather than
//! counted twice; a settlement's statements and postings are written in one SQLite
//! transaction, so a crash leaves all of it or none.

use kura_billing::ledger::{self, Posting};
use kura_billing::{Period, Statement, Status};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::catalog::time_text;
use super::{Registry, RegistryError, Result, lock};

/// One posting as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerEntry {
    /// Its number.
    pub id: i64,
    /// The transaction (`issue:…`, `settle:…`, `hold:…`, `resolve:…`).
    pub txn: String,
    /// When it was written.
    pub at: String,
    /// The statement it belongs to.
    pub statement: String,
    /// The posting.
    #[serde(flatten)]
    pub posting: Posting,
}

/// What one settlement did in the database.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Settled {
    /// Statements issued now.
    pub issued: Vec<String>,
    /// Statements already issued for the period before (not charged again).
    pub already: Vec<String>,
    /// Charges settled now (their objection period ended without an objection).
    pub settled: Vec<String>,
}

fn date_text(d: jiff::civil::Date) -> String {
    d.to_string()
}

fn parse_date(s: &str) -> rusqlite::Result<jiff::civil::Date> {
    s.parse().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "date".into(), rusqlite::types::Type::Text)
    })
}

const STATEMENT_COLUMNS: &str = "id, user_id, period_start, period_end, issued, deadline,
    currency, lines, total, status, objection, resolution, decimals";

fn statement(r: &rusqlite::Row<'_>) -> rusqlite::Result<Statement> {
    let bad = |i: usize| {
        rusqlite::Error::InvalidColumnType(i, "statement".into(), rusqlite::types::Type::Text)
    };
    let lines: String = r.get(7)?;
    let status: String = r.get(9)?;
    Ok(Statement {
        id: r.get(0)?,
        user: r.get(1)?,
        period: Period {
            start: parse_date(&r.get::<_, String>(2)?)?,
            end: parse_date(&r.get::<_, String>(3)?)?,
        },
        issued: parse_date(&r.get::<_, String>(4)?)?,
        deadline: parse_date(&r.get::<_, String>(5)?)?,
        currency: r.get(6)?,
        lines: serde_json::from_str(&lines).map_err(|_| bad(7))?,
        total: r.get(8)?,
        status: status.parse().map_err(|_| bad(9))?,
        objection: r.get(10)?,
        resolution: r.get(11)?,
        decimals: r.get(12)?,
    })
}

/// Appends a balanced transaction's postings.
fn post(
    tx: &rusqlite::Transaction<'_>,
    txn: &str,
    statement: &str,
    postings: &[Posting],
) -> Result<()> {
    if !ledger::balanced(postings) {
        return Err(RegistryError::Invalid(format!(
            "transaction {txn} does not balance"
        )));
    }
    let at = time_text(jiff::Timestamp::now());
    for p in postings {
        tx.execute(
            "INSERT INTO ledger (txn, at, statement, account, debit, credit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![txn, at, statement, p.account, p.debit, p.credit],
        )?;
    }
    Ok(())
}

fn get_statement(db: &rusqlite::Connection, id: &str) -> Result<Option<Statement>> {
    Ok(db
        .query_row(
            &format!("SELECT {STATEMENT_COLUMNS} FROM statements WHERE id = ?1"),
            [id],
            statement,
        )
        .optional()?)
}

fn set_status(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    status: Status,
    objection: Option<&str>,
    resolution: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE statements SET status = ?2, objection = COALESCE(?3, objection),
             resolution = COALESCE(?4, resolution) WHERE id = ?1",
        params![id, status.as_str(), objection, resolution],
    )?;
    Ok(())
}

impl Registry {
    /// One settlement, all or nothing: issues `statements` (a user's statement already
    /// issued for its period is left as it is) and settles every open charge whose objection
    /// deadline is before `date`.
    pub fn settle(&self, statements: &[Statement], date: jiff::civil::Date) -> Result<Settled> {
        let mut db = lock(&self.db);
        let tx = db.transaction()?;
        let mut out = Settled::default();
        for s in statements {
            let added = tx.execute(
                "INSERT OR IGNORE INTO statements (id, user_id, period_start, period_end, issued,
                     deadline, currency, decimals, lines, total, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?11, ?8, ?9, ?10)",
                params![
                    s.id,
                    s.user,
                    date_text(s.period.start),
                    date_text(s.period.end),
                    date_text(s.issued),
                    date_text(s.deadline),
                    s.currency,
                    serde_json::to_string(&s.lines)
                        .map_err(|e| RegistryError::Invalid(e.to_string()))?,
                    s.total,
                    Status::Open.as_str(),
                    s.decimals,
                ],
            )?;
            if added == 0 {
                out.already.push(s.id.clone());
                continue;
            }
            post(
                &tx,
                &format!("issue:{}", s.id),
                &s.id,
                &ledger::issue(s.user, s.total),
            )?;
            out.issued.push(s.id.clone());
        }
        let due: Vec<(String, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT id, total FROM statements WHERE status = 'open' AND deadline < ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([date_text(date)], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (id, total) in due {
            post(&tx, &format!("settle:{id}"), &id, &ledger::settle(total))?;
            set_status(&tx, &id, Status::Settled, None, None)?;
            out.settled.push(id);
        }
        tx.commit()?;
        Ok(out)
    }

    /// Whether a statement with this id was issued.
    pub fn has_statement(&self, id: &str) -> Result<bool> {
        Ok(get_statement(&lock(&self.db), id)?.is_some())
    }

    /// A user objects to an open statement by its deadline: the charge is held.
    pub fn object_to(
        &self,
        user: i64,
        id: &str,
        reason: &str,
        today: jiff::civil::Date,
    ) -> Result<Statement> {
        let mut db = lock(&self.db);
        let tx = db.transaction()?;
        let s = match get_statement(&tx, id)? {
            Some(s) if s.user == user => s,
            _ => return Err(RegistryError::Invalid(format!("no statement {id}"))),
        };
        if s.status != Status::Open {
            return Err(RegistryError::Conflict(format!(
                "statement {id} is {}, not open to objection",
                s.status.as_str()
            )));
        }
        if today > s.deadline {
            return Err(RegistryError::Conflict(format!(
                "the objection period of statement {id} ended on {}",
                s.deadline
            )));
        }
        post(&tx, &format!("hold:{id}"), id, &ledger::hold(s.total))?;
        set_status(&tx, id, Status::Held, Some(reason), None)?;
        tx.commit()?;
        Ok(get_statement(&db, id)?.unwrap_or(s))
    }

    /// The operator resolves a held charge: it stands at `kept` (0 cancels it, the whole
    /// charge upholds it), with a note for the user.
    pub fn resolve(&self, id: &str, kept: i64, note: &str) -> Result<Statement> {
        let mut db = lock(&self.db);
        let tx = db.transaction()?;
        let Some(s) = get_statement(&tx, id)? else {
            return Err(RegistryError::Invalid(format!("no statement {id}")));
        };
        if s.status != Status::Held {
            return Err(RegistryError::Conflict(format!(
                "statement {id} is {}; only a held charge (one objected to) is resolved",
                s.status.as_str()
            )));
        }
        let postings = ledger::resolve(s.user, s.total, kept)
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        post(&tx, &format!("resolve:{id}"), id, &postings)?;
        let status = match kept {
            0 => Status::Cancelled,
            k if k == s.total => Status::Settled,
            _ => Status::Reduced,
        };
        set_status(&tx, id, status, None, Some(note))?;
        tx.commit()?;
        Ok(get_statement(&db, id)?.unwrap_or(s))
    }

    /// Statements, a user's or everyone's, oldest period first.
    pub fn statements(&self, user: Option<i64>) -> Result<Vec<Statement>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {STATEMENT_COLUMNS} FROM statements WHERE ?1 IS NULL OR user_id = ?1
             ORDER BY period_start, user_id"
        ))?;
        let rows = stmt.query_map([user], statement)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Statements whose user has not been told of where they stand now.
    pub fn statements_to_tell(&self) -> Result<Vec<Statement>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(&format!(
            "SELECT {STATEMENT_COLUMNS} FROM statements
             WHERE told IS NULL OR told != status ORDER BY id"
        ))?;
        let rows = stmt.query_map([], statement)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Notes that the user was told the statement stands at `status`.
    pub fn told(&self, id: &str, status: Status) -> Result<()> {
        lock(&self.db).execute(
            "UPDATE statements SET told = ?2 WHERE id = ?1",
            params![id, status.as_str()],
        )?;
        Ok(())
    }

    /// The whole ledger, in order.
    pub fn ledger(&self) -> Result<Vec<LedgerEntry>> {
        let db = lock(&self.db);
        let mut stmt = db.prepare_cached(
            "SELECT id, txn, at, statement, account, debit, credit FROM ledger ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(LedgerEntry {
                id: r.get(0)?,
                txn: r.get(1)?,
                at: r.get(2)?,
                statement: r.get(3)?,
                posting: Posting {
                    account: r.get(4)?,
                    debit: r.get(5)?,
                    credit: r.get(6)?,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Records every user's stored bytes for `day` (once a day; later samples of the same
    /// day are ignored).
    pub fn sample_usage(&self, day: jiff::civil::Date) -> Result<()> {
        lock(&self.db).execute(
            "INSERT OR IGNORE INTO usage_days (user_id, day, bytes) SELECT id, ?1, bytes FROM users",
            [date_text(day)],
        )?;
        Ok(())
    }

    /// A user's average stored bytes over the days sampled in `period`, if any were.
    pub fn average_usage(&self, user: i64, period: &Period) -> Result<Option<u64>> {
        let avg: Option<f64> = lock(&self.db).query_row(
            "SELECT AVG(bytes) FROM usage_days WHERE user_id = ?1 AND day >= ?2 AND day < ?3",
            params![user, date_text(period.start), date_text(period.end)],
            |r| r.get(0),
        )?;
        Ok(avg.map(|a| a.round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use kura_billing::Line;

    fn statement_for(user: i64, total: i64) -> Statement {
        let period = Period::settled_on(date(2026, 12, 1)).unwrap();
        Statement {
            id: Statement::id_for(user, &period),
            user,
            period,
            issued: date(2026, 12, 1),
            deadline: date(2026, 12, 15),
            currency: "JPY".into(),
            decimals: 0,
            lines: vec![Line {
                description: "fee".into(),
                amount: total,
            }],
            total,
            status: Status::Open,
            objection: None,
            resolution: None,
        }
    }

    fn balanced(s: &Registry) -> bool {
        let postings: Vec<Posting> = s.ledger().unwrap().into_iter().map(|e| e.posting).collect();
        ledger::balanced(&postings)
    }

    #[test]
    fn a_settlement_twice_charges_once_and_settles_after_the_deadline() {
        let (_d, s, ann) = crate::registry::scratch();
        let st = statement_for(ann, 520);
        let first = s
            .settle(std::slice::from_ref(&st), date(2026, 12, 1))
            .unwrap();
        assert_eq!(first.issued, std::slice::from_ref(&st.id));
        let again = s
            .settle(std::slice::from_ref(&st), date(2026, 12, 1))
            .unwrap();
        assert_eq!((again.issued.len(), again.already.len()), (0, 1));
        assert_eq!(s.ledger().unwrap().len(), 2);
        assert!(
            s.settle(&[], date(2026, 12, 15))
                .unwrap()
                .settled
                .is_empty()
        );
        let later = s.settle(&[], date(2026, 12, 16)).unwrap();
        assert_eq!(later.settled, std::slice::from_ref(&st.id));
        assert!(
            s.settle(&[], date(2026, 12, 17))
                .unwrap()
                .settled
                .is_empty()
        );
        assert_eq!(s.statements(Some(ann)).unwrap()[0].status, Status::Settled);
        assert!(balanced(&s));
        let b = ledger::balances(
            &s.ledger()
                .unwrap()
                .into_iter()
                .map(|e| e.posting)
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            (
                b[&format!("receivable:{ann}")],
                b["revenue"],
                b["unsettled"]
            ),
            (520, -520, 0)
        );
    }

    #[test]
    fn an_objection_holds_until_resolved() {
        let (_d, s, ann) = crate::registry::scratch();
        let st = statement_for(ann, 520);
        s.settle(std::slice::from_ref(&st), date(2026, 12, 1))
            .unwrap();
        let bob = s.add_user("bob", b"another password").unwrap();
        assert!(
            s.object_to(bob, &st.id, "not mine", date(2026, 12, 2))
                .is_err()
        );
        assert!(
            s.object_to(ann, &st.id, "late", date(2026, 12, 16))
                .is_err()
        );
        let held = s
            .object_to(ann, &st.id, "the site lost my data", date(2026, 12, 15))
            .unwrap();
        assert_eq!(held.status, Status::Held);
        assert!(
            s.object_to(ann, &st.id, "twice", date(2026, 12, 3))
                .is_err()
        );
        // A held charge is not settled at the deadline.
        assert!(
            s.settle(&[], date(2026, 12, 20))
                .unwrap()
                .settled
                .is_empty()
        );
        assert!(s.resolve(&st.id, 600, "more").is_err());
        let done = s.resolve(&st.id, 200, "partly upheld").unwrap();
        assert_eq!(done.status, Status::Reduced);
        assert_eq!(done.resolution.as_deref(), Some("partly upheld"));
        assert!(s.resolve(&st.id, 200, "again").is_err());
        assert!(balanced(&s));
    }

    #[test]
    fn the_ledger_refuses_changes() {
        let (_d, s, ann) = crate::registry::scratch();
        s.settle(&[statement_for(ann, 520)], date(2026, 12, 1))
            .unwrap();
        let db = lock(&s.db);
        assert!(db.execute("UPDATE ledger SET debit = 1", []).is_err());
        assert!(db.execute("DELETE FROM ledger", []).is_err());
        assert!(
            db.execute(
                "INSERT INTO ledger (txn, at, statement, account, debit, credit)
                 SELECT txn, at, statement, account, debit, credit FROM ledger",
                []
            )
            .is_err(),
            "a transaction posted twice"
        );
    }

    #[test]
    fn usage_is_averaged_over_the_sampled_days() {
        let (_d, s, ann) = crate::registry::scratch();
        let period = Period::settled_on(date(2026, 12, 1)).unwrap();
        assert_eq!(s.average_usage(ann, &period).unwrap(), None);
        s.sample_usage(date(2026, 11, 3)).unwrap();
        lock(&s.db)
            .execute("UPDATE users SET bytes = 300 WHERE id = ?1", [ann])
            .unwrap();
        s.sample_usage(date(2026, 11, 4)).unwrap();
        s.sample_usage(date(2026, 11, 4)).unwrap();
        s.sample_usage(date(2026, 12, 1)).unwrap();
        assert_eq!(s.average_usage(ann, &period).unwrap(), Some(150));
    }
}

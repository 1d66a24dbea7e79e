//! `kura admin log`: the backup log as clients reported it, with where each user's data is.

use anyhow::Result;

use super::Admin;
use crate::output::table;

/// `kura admin log [--user NAME]`.
pub fn log(a: Admin, user: Option<String>) -> Result<()> {
    let log = kura_service::joblog::operator_log(&a.registry, user.as_deref())?;
    a.out.emit(&log, || {
        let header = format!(
            "{:<12} {:<8} {:<20} {:<11} {:<12} {:>9} {:>12}  {:<8}  stored at",
            "user", "job", "started", "status", "type", "files", "stored", "snapshot"
        );
        table(
            header,
            log.iter().map(|o| {
                let r = &o.line.report;
                format!(
                    "{:<12} {:<8} {:<20} {:<11} {:<12} {:>9} {:>12}  {:<8}  {}",
                    o.line.user,
                    r.job.short(),
                    r.started.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                    r.status.to_string(),
                    r.kind.to_string(),
                    r.files,
                    r.stored_added,
                    r.snapshot
                        .as_deref()
                        .map_or_else(|| "-".into(), |s| s.chars().take(8).collect::<String>()),
                    o.stored_at
                )
            }),
        )
    });
    Ok(())
}

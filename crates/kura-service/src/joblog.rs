//! The service's backup log (`docs/requirements/terminal-backup.md` requirements 4 and 7): each
//! job as its client reported it, in terms the service may see (when, type, status, counts,
//! snapshot name, never paths), and what the operator's `kura admin log` shows of it.

use std::collections::HashMap;
use std::path::Path;

use kura_api::JobReport;
use serde::Serialize;

use crate::registry::{LogLine, Registry, RegistryError, User};
use crate::storage::StorageError;

/// How much earlier than the client says its backup started the objects of its conditions
/// notice are taken from: the client's clock may differ from the service's.
const NOTICE_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Why a job report for job `job` cannot be taken, if it cannot: counts that do not fit the
/// database, a snapshot name that is not 64 lowercase hex digits, or another job's report.
pub fn refusal(report: &JobReport, job: &str) -> Option<&'static str> {
    let numbers_fit = [report.files, report.bytes, report.stored_added]
        .iter()
        .all(|&n| i64::try_from(n).is_ok());
    let snapshot_ok = report
        .snapshot
        .as_deref()
        .is_none_or(|n| n.len() == 64 && kura_api::is_hex_name(n, 64));
    if !numbers_fit || !snapshot_ok {
        return Some("malformed job report: counts out of range or a bad snapshot name");
    }
    if report.job.to_string() != job {
        return Some("the report is for another job");
    }
    None
}

/// The kind of the notice a completed job sends.
const CONDITIONS: &str = "conditions";

/// Most completed-job notices a user is sent in an hour (an hourly schedule sends one); the
/// jobs past it are recorded without one.
pub const JOB_NOTICES_PER_HOUR: u64 = 12;

/// Records a job's report; for a completed job, sends the user the storage conditions of
/// what it stored (`docs/requirements/placement.md` requirement 6).
pub fn record(
    registry: &Registry,
    data_dir: &Path,
    user: &User,
    report: &JobReport,
) -> Result<(), StorageError> {
    // One notice per job, however often the client repeats its report.
    if !registry.record_job(user.id, report)? {
        return Ok(());
    }
    // And a bounded number however many jobs a client makes up.
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    if registry.messages_since(user.id, CONDITIONS, hour_ago)? >= JOB_NOTICES_PER_HOUR {
        tracing::warn!(user = user.id, job = %report.job, "job notice skipped: too many this hour");
        return Ok(());
    }
    let entries = registry.objects(user.id, Some(report.started - NOTICE_SLACK))?;
    let snapshot = report.snapshot.as_deref().map_or_else(String::new, |s| {
        format!(", snapshot {}", s.get(..8).unwrap_or(s))
    });
    let intro = format!(
        "Backup job {}{snapshot} ({}) finished at {}: {} stored since it started.",
        report.job.short(),
        report.kind,
        report.ended.unwrap_or_else(jiff::Timestamp::now),
        kura_core::count(entries.len() as u64, "object")
    );
    crate::notice::send(
        registry,
        data_dir,
        user,
        CONDITIONS,
        "Storage conditions of your backup",
        &crate::notice::conditions_text(&intro, &entries),
    )?;
    Ok(())
}

/// One line of the operator's backup log: a reported job and where its user's data is.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorLine {
    /// The job as reported.
    #[serde(flatten)]
    pub line: LogLine,
    /// The sites holding good copies of the user's objects, comma-separated.
    pub stored_at: String,
}

/// The backup log as the operator sees it: every job (of `user`, or everyone's), each with
/// the sites that hold its user's data.
pub fn operator_log(
    registry: &Registry,
    user: Option<&str>,
) -> Result<Vec<OperatorLine>, RegistryError> {
    if let Some(u) = user {
        registry.user(u)?;
    }
    let lines = registry.job_log(user)?;
    let mut sites_of: HashMap<i64, String> = HashMap::new();
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let stored_at = match sites_of.get(&line.user_id) {
            Some(s) => s.clone(),
            None => {
                let mut sites: Vec<String> = registry
                    .objects(line.user_id, None)?
                    .iter()
                    .flat_map(|o| o.good_sites().map(str::to_string).collect::<Vec<_>>())
                    .collect();
                sites.sort();
                sites.dedup();
                let joined = sites.join(",");
                sites_of.insert(line.user_id, joined.clone());
                joined
            }
        };
        out.push(OperatorLine { line, stored_at });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_core::job::JobStatus;

    fn report() -> JobReport {
        JobReport {
            job: kura_core::job::JobId([7; 16]),
            kind: kura_core::snapshot::BackupType::Full,
            status: JobStatus::Running,
            started: jiff::Timestamp::UNIX_EPOCH,
            ended: None,
            files: 1,
            bytes: 2,
            stored_added: 3,
            snapshot: None,
        }
    }

    #[test]
    fn reports_must_fit_and_name_their_job() {
        let r = report();
        let job = r.job.to_string();
        assert_eq!(refusal(&r, &job), None);
        assert!(refusal(&r, "another").is_some());
        let mut big = r.clone();
        big.files = u64::MAX;
        assert!(refusal(&big, &job).is_some());
        let mut bad_name = r.clone();
        bad_name.snapshot = Some("A".repeat(64));
        assert!(refusal(&bad_name, &job).is_some());
        let mut good_name = r;
        good_name.snapshot = Some("a".repeat(64));
        assert_eq!(refusal(&good_name, &job), None);
    }

    #[test]
    fn a_completed_job_is_told_once_however_often_it_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(&dir.path().join("kura.sqlite")).unwrap();
        registry.add_user("alice", b"alice password").unwrap();
        let alice = registry.user("alice").unwrap();
        let mut r = report();
        record(&registry, dir.path(), &alice, &r).unwrap();
        r.status = JobStatus::Completed;
        r.ended = Some(jiff::Timestamp::UNIX_EPOCH);
        for _ in 0..150 {
            record(&registry, dir.path(), &alice, &r).unwrap();
        }
        assert_eq!(registry.messages(alice.id).unwrap().len(), 1);
        r.job = kura_core::job::JobId([8; 16]);
        record(&registry, dir.path(), &alice, &r).unwrap();
        assert_eq!(
            registry.messages(alice.id).unwrap().len(),
            2,
            "another job, another notice"
        );
        for i in 0..100 {
            r.job = kura_core::job::JobId([i; 16]);
            record(&registry, dir.path(), &alice, &r).unwrap();
        }
        assert_eq!(
            registry.messages(alice.id).unwrap().len() as u64,
            JOB_NOTICES_PER_HOUR,
            "made-up jobs send a bounded number"
        );
        assert!(registry.job_log(Some("alice")).unwrap().len() >= 100);
    }
}

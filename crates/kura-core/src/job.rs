//! Backup jobs and the backup log (`docs/requirements/terminal-backup.md` requirements 4 and 8). A
//! job is one backup from start to end, across resumptions; its [`Job`] record is the backup log's
//! entry for it: when it ran, how it ended, what it covered, how much it sent and where the archive
//! is stored. The log lives in the repository as sealed files (the service cannot read what was
//! backed up), and the device keeps the records of its unfinished jobs.

use serde::{Deserialize, Serialize};

use crate::keys::DeviceId;
use crate::snapshot::{BackupType, Summary};
use crate::{FormatError, Id};

/// How a job stands or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Still running (or its process died without a word: see [`Job::status_seen`]).
    Running,
    /// A snapshot was committed.
    Completed,
    /// It stopped on an error; no snapshot was made, and it can be resumed.
    Failed,
    /// It was stopped (a signal, a killed process, a shutdown); it can be resumed.
    Interrupted,
    /// The user cancelled it; no snapshot was made and it will not be resumed.
    Cancelled,
}

impl JobStatus {
    /// Whether the job is over for good.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Cancelled)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Interrupted => "interrupted",
            JobStatus::Cancelled => "cancelled",
        })
    }
}

crate::id::random_id! {
    /// A job's id: 16 random bytes, shown as 32 hex digits.
    JobId, "job id"
}

impl JobId {
    /// The first 8 hex digits, for people.
    pub fn short(&self) -> String {
        crate::id::hex(&self.0[..4])
    }
}

/// One job: what was asked, and how it went. This is also the backup log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// The device that runs it.
    pub device: DeviceId,
    /// That device's host name.
    pub hostname: String,
    /// The process running it (to tell a live job from one whose process died).
    pub pid: u32,
    /// The backup type asked for.
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// The paths it covers.
    pub paths: Vec<String>,
    /// Exclude patterns.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// `--one-file-system`.
    #[serde(default)]
    pub one_file_system: bool,
    /// `--exclude-caches`.
    #[serde(default)]
    pub exclude_caches: bool,
    /// Tags for the snapshot.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When it first started.
    pub started: jiff::Timestamp,
    /// When its last attempt ended.
    #[serde(default)]
    pub ended: Option<jiff::Timestamp>,
    /// How it stands.
    pub status: JobStatus,
    /// How many times it was started (1, plus one per resumption).
    pub attempts: u32,
    /// What the backup did, once it committed.
    #[serde(default)]
    pub summary: Option<Summary>,
    /// The snapshot it made.
    #[serde(default)]
    pub snapshot: Option<Id>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Where the archive is stored (the repository's location).
    pub location: String,
}

impl Job {
    /// The JSON encoding.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes a job.
    pub fn decode(data: &[u8]) -> Result<Job, FormatError> {
        serde_json::from_slice(data).map_err(|e| FormatError::invalid("job", e.to_string()))
    }

    /// The status as seen from `host`, where `alive` tells whether a process id is running:
    /// a job that says it is running, on this host, whose process is gone, was interrupted.
    pub fn status_seen(&self, host: &str, alive: impl Fn(u32) -> bool) -> JobStatus {
        if self.status == JobStatus::Running && self.hostname == host && !alive(self.pid) {
            JobStatus::Interrupted
        } else {
            self.status
        }
    }

    /// Whether a new backup of `paths` as `kind` continues this job.
    pub fn resumed_by(&self, kind: BackupType, paths: &[String]) -> bool {
        !self.status.is_final() && self.kind == kind && self.paths == paths
    }
}

/// What a storage provider learns of a job: when, how it went and how much, never what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// The job's id.
    pub job: JobId,
    /// The backup type.
    #[serde(rename = "type")]
    pub kind: BackupType,
    /// How it stands.
    pub status: JobStatus,
    /// When it started.
    pub started: jiff::Timestamp,
    /// When its last attempt ended.
    pub ended: Option<jiff::Timestamp>,
    /// Files in the snapshot, once committed.
    pub files: u64,
    /// Bytes of file data covered, once committed.
    pub bytes: u64,
    /// Bytes added to the repository.
    pub stored_added: u64,
    /// The snapshot file's name, once committed.
    pub snapshot: Option<String>,
}

impl JobReport {
    /// Decodes a report (as the service receives it).
    pub fn decode(data: &[u8]) -> Result<JobReport, FormatError> {
        serde_json::from_slice(data).map_err(|e| FormatError::invalid("job report", e.to_string()))
    }

    /// The report of `job`.
    pub fn of(job: &Job) -> JobReport {
        let s = job.summary.clone().unwrap_or_default();
        JobReport {
            job: job.id,
            kind: job.kind,
            status: job.status,
            started: job.started,
            ended: job.ended,
            files: s.files,
            bytes: s.bytes,
            stored_added: s.stored_added,
            snapshot: job.snapshot.map(|i| i.to_hex()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: JobId([7; 16]),
            device: DeviceId([1; 16]),
            hostname: "pc".into(),
            pid: 42,
            kind: BackupType::Full,
            paths: vec!["/home".into()],
            excludes: vec![],
            one_file_system: false,
            exclude_caches: false,
            tags: vec![],
            started: "2026-11-21T10:00:00Z".parse().unwrap(),
            ended: None,
            status: JobStatus::Running,
            attempts: 1,
            summary: None,
            snapshot: None,
            error: None,
            location: "/repo".into(),
        }
    }

    #[test]
    fn round_trip() {
        let j = job();
        assert_eq!(Job::decode(&j.encode()).unwrap(), j);
        assert!(Job::decode(b"{}").is_err());
        let id: JobId = j.id.to_string().parse().unwrap();
        assert_eq!(id, j.id);
        assert!("abc".parse::<JobId>().is_err());
        assert_eq!(j.id.short(), "07070707");
    }

    #[test]
    fn a_dead_process_means_interrupted_here_only() {
        let j = job();
        assert_eq!(j.status_seen("pc", |_| true), JobStatus::Running);
        assert_eq!(j.status_seen("pc", |_| false), JobStatus::Interrupted);
        assert_eq!(j.status_seen("other", |_| false), JobStatus::Running);
        let done = Job {
            status: JobStatus::Completed,
            ..job()
        };
        assert_eq!(done.status_seen("pc", |_| false), JobStatus::Completed);
    }

    #[test]
    fn resumption_needs_the_same_paths_and_type() {
        let j = job();
        assert!(j.resumed_by(BackupType::Full, &["/home".into()]));
        assert!(!j.resumed_by(BackupType::Copy, &["/home".into()]));
        assert!(!j.resumed_by(BackupType::Full, &["/etc".into()]));
        let cancelled = Job {
            status: JobStatus::Cancelled,
            ..job()
        };
        assert!(!cancelled.resumed_by(BackupType::Full, &["/home".into()]));
    }
}

//! Backups as jobs (`docs/requirements/terminal-backup.md` requirements 4 and 8). A job starts with
//! a record on this device and an entry in the repository's backup log, and ends completed, failed,
//! interrupted or cancelled. An unfinished job (failed or interrupted) is resumed by the next
//! backup of the same paths and type, or by `kura jobs resume`: what it had already sent is
//! indexed, so only the rest is sent. A cancelled job ends for good; like every job that did not
//! complete, it left no snapshot, and `prune` reclaims what it sent.
//!
//! Cancelling is a request file beside the job's record that the running backup watches, so
//! no signal is ever sent to a process id that may have been reused.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kura_core::job::{Job, JobId, JobStatus};
use kura_core::keys::DeviceId;
use kura_repo::Repository;
use kura_repo::lock::{hostname, process_alive};

use crate::backup::{BackupOptions, BackupOutcome, backup, root_names, roots};
use crate::progress::Progress;
use crate::state::{ClientState, replace_file};
use crate::{ClientError, Result, io_err};

/// This device's unfinished jobs of one repository, one JSON file each.
pub struct LocalJobs {
    dir: PathBuf,
}

/// Set by SIGINT or SIGTERM while a job runs.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        // A second signal: the user wants out now. The job stays resumable.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Makes SIGINT and SIGTERM stop a running job cleanly (what was sent is kept and indexed,
/// the job is logged as interrupted); a second signal exits at once.
pub fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Whether SIGINT or SIGTERM arrived since [`stop_on_signals`].
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::Relaxed)
}

impl ClientState {
    /// This device's unfinished jobs.
    pub fn jobs(&self) -> LocalJobs {
        LocalJobs {
            dir: self.dir().join("jobs"),
        }
    }
}

impl LocalJobs {
    fn record(&self, id: JobId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn cancel_file(&self, id: JobId) -> PathBuf {
        self.dir.join(format!("{id}.cancel"))
    }

    /// Every recorded job, oldest first (records that cannot be read are skipped).
    pub fn list(&self) -> Result<Vec<Job>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let mut jobs: Vec<Job> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| Job::decode(&b).ok())
            .collect();
        jobs.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        Ok(jobs)
    }

    /// The job whose id starts with `prefix` (unique).
    pub fn find(&self, prefix: &str) -> Result<Job> {
        let prefix = prefix.to_ascii_lowercase();
        let mut found: Vec<Job> = self
            .list()?
            .into_iter()
            .filter(|j| j.id.to_string().starts_with(&prefix))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(ClientError::Usage(format!(
                "no unfinished job {prefix:?} on this device (`kura jobs` lists them)"
            ))),
            n => Err(ClientError::Usage(format!(
                "{n} jobs start with {prefix:?}; give more digits"
            ))),
        }
    }

    /// Writes a job's record.
    pub fn save(&self, job: &Job) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        replace_file(&self.record(job.id), |w| w.write_all(&job.encode()))
    }

    /// Drops a job's record and any cancellation request.
    pub fn remove(&self, id: JobId) -> Result<()> {
        for p in [self.record(id), self.cancel_file(id)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        Ok(())
    }

    /// Asks the running job to stop and end as cancelled.
    pub fn request_cancel(&self, id: JobId) -> Result<()> {
        let p = self.cancel_file(id);
        fs::write(&p, b"").map_err(io_err(&p))
    }

    fn cancel_requested(&self, id: JobId) -> bool {
        self.cancel_file(id).exists()
    }
}

/// How a job stands as seen from this machine.
pub fn status_here(job: &Job) -> JobStatus {
    job.status_seen(&hostname(), process_alive)
}

/// Ends a job that is not running as cancelled: logs it and drops its record.
pub fn cancel_stopped(repo: &Repository, state: &ClientState, mut job: Job) -> Result<Job> {
    job.status = JobStatus::Cancelled;
    job.ended = Some(jiff::Timestamp::now());
    repo.save_job(&job)?;
    state.jobs().remove(job.id)?;
    Ok(job)
}

/// Runs a backup as a job: resumes `resume`, or the unfinished job of the same paths and type,
/// or starts a new one; watches for cancellation; and logs how it ended. The job is returned
/// with the backup's result.
pub fn run(
    repo: &Repository,
    state: &ClientState,
    device: DeviceId,
    opts: &BackupOptions,
    resume: Option<JobId>,
    progress: &dyn Progress,
) -> Result<(Job, Result<BackupOutcome>)> {
    let paths = root_names(&roots(&opts.paths)?);
    let local = state.jobs();
    let earlier = local.list()?.into_iter().rev().find(|j| {
        status_here(j) != JobStatus::Running
            && match resume {
                Some(id) => j.id == id,
                None => j.resumed_by(opts.kind, &paths),
            }
    });
    let mut job = match earlier {
        Some(mut j) => {
            j.attempts += 1;
            j
        }
        None => Job {
            id: JobId::random(),
            device,
            hostname: hostname(),
            pid: 0,
            kind: opts.kind,
            paths,
            excludes: opts.excludes.clone(),
            one_file_system: opts.one_file_system,
            exclude_caches: opts.exclude_caches,
            tags: opts.tags.clone(),
            started: jiff::Timestamp::now(),
            ended: None,
            status: JobStatus::Running,
            attempts: 1,
            summary: None,
            snapshot: None,
            error: None,
            location: repo.backend().location(),
        },
    };
    job.pid = std::process::id();
    job.hostname = hostname();
    job.status = JobStatus::Running;
    job.ended = None;
    job.error = None;
    local.save(&job)?;
    repo.save_job(&job)?;

    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if SIGNALLED.load(Ordering::Relaxed) || local.cancel_requested(job.id) {
                    opts.stop.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = backup(repo, state, device, opts, progress);
        done.store(true, Ordering::Relaxed);
        r
    });

    job.ended = Some(jiff::Timestamp::now());
    match &result {
        Ok(out) => {
            job.status = JobStatus::Completed;
            // What ran, not what was asked: an incremental with no full to build on runs full.
            job.kind = out.snapshot.kind;
            job.summary = Some(out.snapshot.summary.clone());
            job.snapshot = Some(out.id);
        }
        Err(ClientError::Stopped) if local.cancel_requested(job.id) => {
            job.status = JobStatus::Cancelled;
        }
        Err(ClientError::Stopped) => job.status = JobStatus::Interrupted,
        Err(e) => {
            job.status = JobStatus::Failed;
            job.error = Some(e.to_string());
        }
    }
    if job.status.is_final() {
        local.remove(job.id)?;
    } else {
        local.save(&job)?;
    }
    // The log entry is the last word; if the storage cannot take it (the failure that ended
    // the job, often), the device's record still says how the job ended.
    if let Err(e) = repo.save_job(&job) {
        progress.warn(&format!("the backup log could not be updated: {e}"));
    }
    Ok((job, result))
}

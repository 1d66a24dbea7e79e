//! This machine's schedule file (the timing logic is [`kura_core::schedule`]): one JSON file
//! beside the per-repository state, changed only under a lock, so `kura schedule add` and a
//! running agent recording a run never lose each other's change.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kura_core::schedule::{Entry, Outcome, Schedule};

use crate::state::replace_file;
use crate::{ClientError, Result, io_err};

/// Where the schedule of the state directory `base` lives.
pub fn path(base: &Path) -> PathBuf {
    base.join("schedule.json")
}

/// Reads the schedule (empty if there is none yet).
pub fn load(base: &Path) -> Result<Schedule> {
    let p = path(base);
    match fs::read(&p) {
        Ok(b) => {
            Schedule::decode(&b).map_err(|e| ClientError::Usage(format!("{}: {e}", p.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Schedule::default()),
        Err(e) => Err(io_err(&p)(e)),
    }
}

/// Changes the schedule under its lock: reads it, lets `change` edit it, writes it back
/// atomically. Returns what `change` returned.
pub fn update<T>(base: &Path, change: impl FnOnce(&mut Schedule) -> Result<T>) -> Result<T> {
    fs::create_dir_all(base).map_err(io_err(base))?;
    let lock_path = base.join("schedule.lock");
    let lock = fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    let mut schedule = load(base)?;
    let out = change(&mut schedule)?;
    replace_file(&path(base), |w| w.write_all(&schedule.encode()))?;
    Ok(out)
}

/// Claims entry `id` if it is still there and due at `now`: its run is recorded under the
/// schedule's lock before it starts, so a second agent does not run it too, and a run that
/// fails or is killed is not retried in a loop (its job is resumed by the next run).
pub fn claim(base: &Path, id: &str, now: Timestamp, tz: &TimeZone) -> Result<Option<Entry>> {
    update(base, |s| {
        Ok(match s.entries.iter_mut().find(|x| x.id == id) {
            Some(e) if e.is_due(now, tz) => {
                e.last_run = Some(now);
                Some(e.clone())
            }
            _ => None,
        })
    })
}

/// Records how a run of entry `id` ended (nothing, if the entry was removed meanwhile).
pub fn record_outcome(base: &Path, id: &str, outcome: Outcome) -> Result<()> {
    update(base, |s| {
        if let Some(e) = s.entries.iter_mut().find(|x| x.id == id) {
            e.last_outcome = Some(outcome);
        }
        Ok(())
    })
}

/// The agent looks at the schedule at least this often, so edits and clock jumps (a machine
/// waking from sleep) are noticed.
pub const TICK: Duration = Duration::from_secs(30);

/// Runs the schedule of `base`: each due entry is claimed and handed to `run` with the time
/// it was found due; then, unless `once`, waits until the next entry is due (at most
/// [`TICK`]) and looks again, until `stopped()`. A run missed while the machine was off is
/// due once when the agent next looks.
pub fn run_agent(
    base: &Path,
    tz: &TimeZone,
    once: bool,
    stopped: impl Fn() -> bool,
    mut run: impl FnMut(Entry, Timestamp),
) -> Result<()> {
    loop {
        let now = Timestamp::now();
        for id in load(base)?.entries.into_iter().map(|e| e.id) {
            if stopped() {
                break;
            }
            if let Some(e) = claim(base, &id, now, tz)? {
                run(e, now);
            }
        }
        if once || stopped() {
            return Ok(());
        }
        let wake = load(base)?.next_wake(tz);
        let until = Instant::now()
            + wake
                .map(|w| Duration::try_from(w.duration_since(Timestamp::now())).unwrap_or_default())
                .unwrap_or(TICK)
                .min(TICK);
        while Instant::now() < until && !stopped() {
            std::thread::sleep(Duration::from_millis(200));
        }
        if stopped() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kura_core::schedule::{Entry, Timing};
    use kura_core::snapshot::BackupType;

    fn hourly(id: &str) -> Entry {
        Entry {
            id: id.into(),
            paths: vec!["/x".into()],
            phone: None,
            kind: BackupType::Full,
            tags: vec![],
            timing: Timing::every("1h").unwrap(),
            created: Timestamp::now(),
            last_run: None,
            last_outcome: None,
        }
    }

    #[test]
    fn a_due_entry_is_claimed_once() {
        let d = tempfile::tempdir().unwrap();
        let tz = TimeZone::UTC;
        update(d.path(), |s| {
            s.entries.push(hourly("ab"));
            Ok(())
        })
        .unwrap();
        let mut runs = Vec::new();
        run_agent(d.path(), &tz, true, || false, |e, _| runs.push(e.id)).unwrap();
        run_agent(d.path(), &tz, true, || false, |e, _| runs.push(e.id)).unwrap();
        assert_eq!(
            runs,
            vec!["ab".to_string()],
            "the second look finds it not due"
        );
        assert!(load(d.path()).unwrap().entries[0].last_run.is_some());
        assert!(
            claim(d.path(), "zz", Timestamp::now(), &tz)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn updates_persist_and_a_damaged_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path()).unwrap().entries.is_empty());
        update(d.path(), |s| {
            s.entries.push(hourly("ab"));
            Ok(())
        })
        .unwrap();
        assert_eq!(load(d.path()).unwrap().entries[0].id, "ab");
        fs::write(path(d.path()), b"{not json").unwrap();
        assert!(load(d.path()).is_err());
        assert!(
            update(d.path(), |_| Ok(())).is_err(),
            "a damaged file is not overwritten"
        );
        assert_eq!(fs::read(path(d.path())).unwrap(), b"{not json");
    }
}

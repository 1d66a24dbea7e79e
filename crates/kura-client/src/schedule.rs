//! This machine's schedule file (the timing logic is [`kura_core::schedule`]): one JSON file
//! beside the per-repository state, changed only under a lock, so `kura schedule add` and a
//! running agent recording a run never lose each other's change.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use kura_core::schedule::Schedule;

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

#[cfg(test)]
mod tests {
    use super::*;
    use kura_core::schedule::{Entry, Timing};
    use kura_core::snapshot::BackupType;

    #[test]
    fn updates_persist_and_a_damaged_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path()).unwrap().entries.is_empty());
        update(d.path(), |s| {
            s.entries.push(Entry {
                id: "ab".into(),
                paths: vec!["/x".into()],
                kind: BackupType::Full,
                tags: vec![],
                timing: Timing::every("1h").unwrap(),
                created: jiff::Timestamp::now(),
                last_run: None,
            });
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

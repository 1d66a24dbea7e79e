//! Backups as jobs through the real binary: the backup log, interrupting a backup with a
//! signal, resuming it, and cancelling one while it runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fixture::*;

/// Enough noise that packs are written (each worker fills its own 16 MiB pack).
const NOISE_FILES: u64 = 24;
/// Zeros that take the backup tens of seconds to read.
const SPARSE: u64 = 16 << 30;

/// A tree whose backup takes a while: small files of noise first, then a large sparse file
/// (all zeros: quick to store, slow to read), so a signal lands after data was sent.
fn slow_tree(env: &Env) -> PathBuf {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..NOISE_FILES {
        fs::write(src.join(format!("a{i:02}")), noise(2_000_000, 40 + i)).unwrap();
    }
    let f = fs::File::create(src.join("zz-sparse")).unwrap();
    f.set_len(SPARSE).unwrap();
    src
}

fn local_jobs(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["jobs"]).as_array().unwrap().clone()
}

fn log(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["log"]).as_array().unwrap().clone()
}

/// Starts a backup of `src` in the background.
fn start_backup(env: &Env, src: &Path) -> Child {
    env.cmd(&["backup", src.to_str().unwrap(), "--json"])
        .env("KURA_THREADS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the backup's job is recorded and it has stored some packs; returns the job id.
fn wait_until_sending(env: &Env, child: &mut Child) -> String {
    wait_until(Duration::from_secs(120), "the backup to get going", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be stopped"
        );
        if files_under(&env.repo.join("data")).is_empty() {
            return None;
        }
        let jobs = local_jobs(env);
        Some(jobs.first()?["id"].as_str().unwrap().to_string())
    })
}

/// A running backup of a [`slow_tree`], under way; its job id.
fn sending() -> (Env, PathBuf, Child, String) {
    let env = Env::new();
    env.init();
    let src = slow_tree(&env);
    let mut child = start_backup(&env, &src);
    let id = wait_until_sending(&env, &mut child);
    (env, src, child, id)
}

#[test]
fn the_backup_log_records_each_job() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 10, 3);
    let first = env.backup(&[src.to_str().unwrap()]);
    fs::write(src.join("new"), b"more").unwrap();
    let second = env.backup(&["--type", "incremental", src.to_str().unwrap()]);
    assert_ne!(first["job"], second["job"]);

    let entries = log(&env);
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (a, b) = (&entries[0], &entries[1]);
    assert_eq!(a["id"], first["job"]);
    assert_eq!(a["status"], "completed");
    assert_eq!(a["type"], "full");
    assert_eq!(a["snapshot"], first["id"]);
    assert_eq!(a["paths"][0], src.to_str().unwrap());
    assert_eq!(a["summary"]["files"], first["summary"]["files"]);
    assert_eq!(a["location"], env.repo.to_str().unwrap());
    assert_eq!(a["attempts"], 1);
    assert!(a["ended"].is_string());
    assert_eq!(b["type"], "incremental");
    assert_eq!(b["summary"]["files_new"], 1);
    assert!(
        local_jobs(&env).is_empty(),
        "completed jobs are not pending"
    );

    let text = env.ok(&["log"]);
    assert!(text.contains("completed"), "{text}");
    assert!(
        text.contains(&first["short_id"].as_str().unwrap()[..8]),
        "{text}"
    );
    let last = env.json(&["log", "--last", "1"]);
    assert_eq!(last.as_array().unwrap().len(), 1);
    assert_eq!(last[0]["id"], second["job"]);

    // The log is encrypted in the repository: no path appears in its files.
    for f in files_under(&env.repo.join("logs")) {
        let data = fs::read(&f).unwrap();
        let needle = src.to_str().unwrap().as_bytes();
        assert!(!data.windows(needle.len()).any(|w| w == needle));
    }
}

/// A backup interrupted by SIGINT while sending: it said so and left no snapshot. Its job id.
fn interrupted() -> (Env, PathBuf, String) {
    let (env, src, child, id) = sending();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert!(env.snapshots().is_empty(), "no snapshot from a stopped job");
    (env, src, id)
}

#[test]
fn a_signal_interrupts_a_backup() {
    let (env, _, id) = interrupted();
    let jobs = local_jobs(&env);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["id"], id.as_str());
    assert_eq!(jobs[0]["status"], "interrupted");
    assert_eq!(log(&env)[0]["status"], "interrupted");
    env.ok(&["check"]);
}

#[test]
fn an_interrupted_job_resumes_sending_only_what_is_missing() {
    // The next backup of the same paths is the same job.
    let (env, src, id) = interrupted();
    fs::remove_file(src.join("zz-sparse")).unwrap();
    let v = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(v["job"], id.as_str());
    assert_eq!(v["attempts"], 2);
    let total = NOISE_FILES * 2_000_000;
    let added = v["summary"]["data_added"].as_u64().unwrap();
    assert!(added < total, "the resumed job sent everything again");
    assert!(local_jobs(&env).is_empty());
    let entries = log(&env);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["status"], "completed");
    assert_eq!(entries[0]["attempts"], 2);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
}

/// A running backup cancelled with `kura jobs cancel`; it said so. Its job id.
fn cancelled() -> (Env, PathBuf, String) {
    let (env, src, child, id) = sending();
    let text = env.ok(&["jobs", "cancel", &id[..8]]);
    assert!(text.contains("cancelled"), "{text}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
    assert!(stderr(&out).contains("cancelled"), "{}", stderr(&out));
    (env, src, id)
}

#[test]
fn a_cancelled_job_leaves_no_snapshot() {
    let (env, _, _) = cancelled();
    assert!(env.snapshots().is_empty());
    assert!(
        local_jobs(&env).is_empty(),
        "a cancelled job is not pending"
    );
    let entries = log(&env);
    assert_eq!(entries[0]["status"], "cancelled");
    assert!(entries[0]["snapshot"].is_null());
}

#[test]
fn prune_reclaims_what_a_cancelled_job_sent() {
    let (env, _, _) = cancelled();
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
    assert!(
        files_under(&env.repo.join("data")).is_empty(),
        "prune left the cancelled job's packs"
    );
}

#[test]
fn a_backup_after_a_cancelled_job_is_a_new_job() {
    let (env, src, id) = cancelled();
    fs::remove_file(src.join("zz-sparse")).unwrap();
    let v = env.backup(&[src.to_str().unwrap()]);
    assert_ne!(v["job"], id.as_str());
}

#[test]
fn cancelling_an_unknown_job_is_a_clear_error() {
    let env = Env::new();
    env.init();
    let out = env.run(&["jobs", "cancel", "ffffffff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no unfinished job"),
        "{}",
        stderr(&out)
    );
}

/// A backup of `src` killed (SIGKILL) while sending; its job id.
fn killed_while_sending(env: &Env, src: &Path) -> String {
    let mut child = start_backup(env, src);
    let id = wait_until_sending(env, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    id
}

#[test]
fn a_killed_job_is_listed_as_interrupted() {
    let env = Env::new();
    env.init();
    let src = slow_tree(&env);
    let id = killed_while_sending(&env, &src);
    let jobs = local_jobs(&env);
    assert_eq!(jobs[0]["status"], "interrupted", "a dead process's job");
    let text = env.ok(&["jobs"]);
    assert!(
        text.contains(&id[..8]) && text.contains("interrupted"),
        "{text}"
    );
}

#[test]
fn a_killed_job_is_resumed_by_id() {
    let env = Env::new();
    env.init();
    let src = slow_tree(&env);
    let id = killed_while_sending(&env, &src);
    fs::remove_file(src.join("zz-sparse")).unwrap();
    let out = run_ok(env.cmd(&["jobs", "resume", &id[..6], "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["job"], id.as_str());
    assert_eq!(v["attempts"], 2);
    assert!(local_jobs(&env).is_empty());
}

#[test]
fn a_killed_job_is_cancelled_by_id_while_nothing_runs_it() {
    let env = Env::new();
    env.init();
    let src = slow_tree(&env);
    let id = killed_while_sending(&env, &src);
    env.ok(&["jobs", "cancel", &id]);
    assert!(local_jobs(&env).is_empty());
    let entries = log(&env);
    let cancelled = entries.iter().find(|e| e["id"] == id.as_str()).unwrap();
    assert_eq!(cancelled["status"], "cancelled");
}

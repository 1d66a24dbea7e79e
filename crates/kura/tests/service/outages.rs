//! A service that goes away in the middle of a backup: restarted mid-piece, or killed until the
//! client gives up.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kura_repo::{Backend, FileType};

use crate::fixture::*;

/// User 1's packs on the primary demo site (not files being written).
fn stored_packs(data: &Path) -> usize {
    files_under(&data.join("sites/east/users/1/data"))
        .iter()
        .filter(|f| !f.file_name().unwrap().to_string_lossy().contains('#'))
        .count()
}

/// Unfinished uploads the service holds for user 1.
fn partial_uploads(data: &Path) -> usize {
    fs::read_dir(data.join("users/1/uploads"))
        .map(|d| {
            d.filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
        })
        .unwrap_or(0)
}

/// Twenty files of 4 MB of noise.
fn twenty_files(member: &Member) -> PathBuf {
    let src = member.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), noise(4_000_000, 700 + i)).unwrap();
    }
    src
}

/// A backup of twenty files by `member` in small pieces, caught in the middle of an object:
/// once a pack is stored and an upload is in flight. The source, the running backup (`--json`
/// on its stdout) and what it says on stderr.
fn uploading_in_pieces(member: &Member) -> (PathBuf, std::process::Child, Said) {
    let data = &member.svc.data;
    let src = twenty_files(member);
    member.init();
    let mut backup = member
        .cmd(&["backup", src.to_str().unwrap(), "--json"])
        .env("KURA_PIECE_KIB", "256")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let said = Said::follow(backup.stderr.take().unwrap());
    wait_until(Duration::from_secs(120), "a piece-wise upload", || {
        stored_packs(data) >= 1 && partial_uploads(data) >= 1
    });
    (src, backup, said)
}

#[test]
fn a_backup_rides_out_a_service_restart_mid_piece() {
    let mut erin = Member::start("erin");
    let data = erin.svc.data.clone();
    let (src, backup, said) = uploading_in_pieces(&erin);
    erin.svc.kill();
    let cut_at = stored_packs(&data);
    // The client meets the closed port, says so at once, and keeps retrying.
    wait_until(
        Duration::from_secs(60),
        "the client to say it retries",
        || {
            said.text()
                .contains("the service cannot be reached; retrying for up to")
        },
    );
    erin.svc.restart();

    // The same backup process carries on and finishes.
    let out = backup.wait_with_output().unwrap();
    let told = said.text();
    assert!(out.status.success(), "{told}");
    assert!(told.contains("the service answers again"), "{told}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["summary"]["files_new"].as_u64().unwrap() == 20, "{v}");
    assert!(stored_packs(&data) > cut_at);
    assert_eq!(partial_uploads(&data), 0, "a partial upload was left");
    erin.restore_and_compare(&src);
}

#[test]
fn sigterm_stops_the_service_gracefully_and_the_backup_goes_on_after() {
    let env = Env::new();
    let log = env.path("serve.log");
    let svc = Service::options(&env).log("info", &log).start();
    let mut frank = Member::on(env, svc, "frank");
    let data = frank.svc.data.clone();
    let (src, backup, said) = uploading_in_pieces(&frank);
    let status = frank.svc.terminate();
    assert!(status.success(), "the service ended with {status}");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("stopping: finishing requests in flight"),
        "{logged}"
    );
    assert!(logged.contains("stopped"), "{logged}");
    frank.svc.restart();
    let out = backup.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", said.text());
    assert_eq!(partial_uploads(&data), 0, "a partial upload was left");
    frank.restore_and_compare(&src);
}

/// Dave's backup with the service killed (SIGKILL) once two packs were stored and recorded,
/// until the client gave up; the service is then started again on the same port. The source,
/// and the jobs the device lists.
fn cut_off_by_a_killed_service() -> (Member, PathBuf, serde_json::Value) {
    let mut dave = Member::start("dave");
    let data = dave.svc.data.clone();
    let src = twenty_files(&dave);
    dave.init();
    let backup = dave
        .cmd(&["backup", src.to_str().unwrap()])
        .env("KURA_RETRY_SECS", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Two packs stored and recorded, as a client sees them.
    let seen = dave.backend();
    wait_until(Duration::from_secs(120), "two packs", || {
        seen.list(FileType::Pack).unwrap().len() >= 2
    });
    dave.svc.kill();
    let out = backup.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the backup cannot finish without the service"
    );
    assert!(stderr(&out).contains("gave up after"), "{}", stderr(&out));
    assert!(stored_packs(&data) >= 2);
    dave.svc.restart();
    let jobs = dave.json(&["jobs"]);
    (dave, src, jobs)
}

#[test]
fn a_backup_cut_off_by_a_killed_service_is_left_failed_with_the_reason() {
    // On the device, with nothing stored lost.
    let (_dave, _, jobs) = cut_off_by_a_killed_service();
    assert_eq!(jobs[0]["status"], "failed", "{jobs}");
    assert!(
        jobs[0]["error"].as_str().unwrap().contains("gave up"),
        "{jobs}"
    );
}

#[test]
fn a_job_cut_off_by_a_killed_service_resumes_once_it_is_back() {
    let (dave, src, jobs) = cut_off_by_a_killed_service();
    let total = 20 * 4_000_000u64;
    let v = dave.json(&["backup", src.to_str().unwrap()]);
    assert_eq!(v["job"], jobs[0]["id"]);
    assert_eq!(v["attempts"], 2);
    assert!(
        v["summary"]["data_added"].as_u64().unwrap() < total,
        "resume re-sent everything: {v}"
    );
    dave.restore_and_compare(&src);
}

//! Scheduled backups through the real binary: `kura schedule` and `kura agent`, including a
//! missed run after downtime and stopping the agent with a signal.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fixture::*;

/// A repository with an hourly full backup of a small tree scheduled, tagged `nightly`; the
/// entry's id.
fn hourly() -> (Env, String) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 5, 8);
    let added = env.json(&[
        "schedule",
        "add",
        src.to_str().unwrap(),
        "--every",
        "1h",
        "--type",
        "full",
        "--tag",
        "nightly",
    ]);
    let id = added["id"].as_str().unwrap().to_string();
    (env, id)
}

/// Runs the agent once with no passphrase, so the due run fails before it can start.
fn run_without_passphrase(env: &Env) {
    let out = env
        .cmd(&["agent", "--once"])
        .env_remove("KURA_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_scheduled_backup_is_listed() {
    let (env, id) = hourly();
    let list = env.json(&["schedule", "list"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["timing"], "every 1h");
    assert!(list[0]["last_run"].is_null());
}

#[test]
fn a_failed_scheduled_run_shows_in_the_schedule_list() {
    let (env, id) = hourly();
    run_without_passphrase(&env);
    let list = env.json(&["schedule", "list"]);
    let outcome = &list[0]["last_outcome"];
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(outcome["ok"], false, "{list}");
    assert!(
        outcome["detail"]
            .as_str()
            .unwrap()
            .contains("no passphrase"),
        "{list}"
    );
    let text = env.ok(&["schedule", "list"]);
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("no passphrase"), "{text}");
    // The next run that works says so.
    let later = env.state.join("schedule.json");
    let mut s: serde_json::Value = serde_json::from_slice(&fs::read(&later).unwrap()).unwrap();
    s["entries"][0]["last_run"] = serde_json::Value::Null;
    fs::write(&later, serde_json::to_vec(&s).unwrap()).unwrap();
    env.ok(&["agent", "--once"]);
    assert_eq!(
        env.json(&["schedule", "list"])[0]["last_outcome"]["ok"],
        true
    );
}

#[test]
fn a_scheduled_run_that_could_not_start_shows_in_the_log() {
    let (env, id) = hourly();
    run_without_passphrase(&env);
    let log = env.json(&["log"]);
    let row = log
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["schedule"] == id.as_str())
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(row["status"], "not started");
    assert!(
        row["error"].as_str().unwrap().contains("no passphrase"),
        "{row}"
    );
    let text = env.ok(&["log"]);
    assert!(
        text.contains(&format!(
            "scheduled backup {id} could not start: no passphrase"
        )),
        "{text}"
    );
}

#[test]
fn the_agent_runs_a_due_backup_once_per_interval() {
    // Due at once; then not again within the hour.
    let (env, _) = hourly();
    env.ok(&["agent", "--once"]);
    assert_eq!(env.snapshots().len(), 1);
    assert_eq!(env.snapshots()[0]["tags"][0], "nightly");
    env.ok(&["agent", "--once"]);
    assert_eq!(env.snapshots().len(), 1, "ran again before it was due");
}

#[test]
fn runs_missed_while_the_machine_was_off_are_made_once() {
    // The machine was off for five hours: five runs were missed, one is made.
    let (env, _) = hourly();
    env.ok(&["agent", "--once"]);
    let file = env.state.join("schedule.json");
    let mut s: serde_json::Value = serde_json::from_slice(&fs::read(&file).unwrap()).unwrap();
    let five_hours_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(5);
    s["entries"][0]["last_run"] = five_hours_ago.to_string().into();
    fs::write(&file, serde_json::to_vec(&s).unwrap()).unwrap();
    env.ok(&["agent", "--once"]);
    assert_eq!(env.snapshots().len(), 2);
    env.ok(&["agent", "--once"]);
    assert_eq!(
        env.snapshots().len(),
        2,
        "a missed run is made once, not five times"
    );
    let list = env.json(&["schedule", "list"]);
    let next: jiff::Timestamp = list[0]["next_run"].as_str().unwrap().parse().unwrap();
    assert!(next > jiff::Timestamp::now() + jiff::SignedDuration::from_mins(50));
    assert_eq!(env.json(&["log"]).as_array().unwrap().len(), 2);
}

#[test]
fn a_scheduled_backup_is_removed_by_id_prefix() {
    let (env, id) = hourly();
    env.ok(&["schedule", "remove", &id[..4]]);
    assert_eq!(env.json(&["schedule", "list"]), serde_json::json!([]));
}

#[test]
fn bad_timings_are_refused_clearly() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let s = src.to_str().unwrap();
    for (args, needle) in [
        (vec!["--cron", "61 * * * *"], "minute"),
        (vec!["--cron", "* * *"], "5 fields"),
        (vec!["--every", "soon"], "interval"),
        (vec!["--at", "25:99"], "HH:MM"),
        (vec!["--at", "2001-01-01 00:00"], "in the past"),
    ] {
        let mut a = vec!["schedule", "add", s];
        a.extend(args);
        let out = env.run(&a);
        assert_eq!(out.status.code(), Some(1), "{a:?}");
        assert!(stderr(&out).contains(needle), "{a:?}: {}", stderr(&out));
    }
    let out = env.run(&["schedule", "add", s]);
    assert_eq!(out.status.code(), Some(2), "when is required");
    let out = env.run(&["schedule", "add", s, "--every", "1h", "--at", "03:00"]);
    assert_eq!(out.status.code(), Some(2), "only one timing");
    assert_eq!(env.json(&["schedule", "list"]), serde_json::json!([]));
    let out = env.run(&["schedule", "remove", "nothing"]);
    assert!(
        stderr(&out).contains("no scheduled backup"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_foreground_agent_keeps_running_until_stopped() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 3, 9);
    env.ok(&["schedule", "add", src.to_str().unwrap(), "--every", "1s"]);
    env.ok(&[
        "schedule",
        "add",
        src.to_str().unwrap(),
        "--cron",
        "0 0 1 1 *",
    ]);
    let mut agent = env
        .cmd(&["agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(120),
        "the agent to run the schedule three times",
        || {
            assert!(agent.try_wait().unwrap().is_none(), "the agent exited");
            env.snapshots().len() >= 3
        },
    );
    Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    let status = wait_until(
        Duration::from_secs(30),
        "the agent to stop on SIGTERM",
        || agent.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(0), "{status:?}");
    env.ok(&["check"]);
    let list = env.json(&["schedule", "list"]);
    assert!(list[0]["last_run"].is_string());
    assert!(
        list[1]["last_run"].is_null(),
        "the yearly cron entry did not run"
    );
}

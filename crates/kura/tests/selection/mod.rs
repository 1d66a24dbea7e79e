//! `--host`, `--path` and `--tag` narrow which snapshots `snapshots`, `ls`, `restore` and
//! `forget` consider, and `latest` is the newest of those.

use std::fs;
use std::path::PathBuf;

use crate::fixture::*;

/// Two devices of one repository on the same host, the second named "laptop": the first backs
/// up `a` twice (tagged `daily` then `weekly,home`), the laptop backs up `b` once, last.
fn two_devices() -> (Env, PathBuf, PathBuf, PathBuf) {
    let env = Env::new();
    env.init();
    let (a, b) = (env.path("a"), env.path("b"));
    make_tree(&a, 3, 1);
    make_tree(&b, 3, 2);
    env.backup(&[a.to_str().unwrap(), "--tag", "daily"]);
    fs::write(a.join("later.txt"), b"later").unwrap();
    env.backup(&[a.to_str().unwrap(), "--tag", "weekly", "--tag", "home"]);
    let laptop = env.path("laptop-state");
    run_ok(env.cmd_as(&laptop, &["device", "add", "--name", "laptop"]));
    run_ok(env.cmd_as(&laptop, &["backup", b.to_str().unwrap()]));
    (env, a, b, laptop)
}

fn ids(v: &serde_json::Value) -> usize {
    v.as_array().unwrap().len()
}

#[test]
fn snapshots_are_narrowed_by_device_name_path_and_tag() {
    let (env, a, _, _) = two_devices();
    assert_eq!(ids(&env.json(&["snapshots"])), 3);
    assert_eq!(ids(&env.json(&["snapshots", "--host", "laptop"])), 1);
    assert_eq!(
        ids(&env.json(&["snapshots", "--path", a.to_str().unwrap()])),
        2
    );
    assert_eq!(ids(&env.json(&["snapshots", "--tag", "weekly,home"])), 1);
    assert_eq!(
        ids(&env.json(&["snapshots", "--tag", "daily", "--tag", "home"])),
        2
    );
    assert_eq!(ids(&env.json(&["snapshots", "--tag", "weekly,daily"])), 0);
}

#[test]
fn latest_is_the_newest_of_the_selection() {
    let (env, a, b, _) = two_devices();
    let t = env.path("t");
    env.ok(&[
        "restore",
        "latest",
        "--path",
        a.to_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(
        contents(&a),
        contents(&restored(&t, &a)),
        "the newest of a, not the laptop's b"
    );
    assert!(!restored(&t, &b).exists());
    let listed = env.json(&["ls", "latest", "--tag", "daily"]);
    let has_later = listed
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"].as_str().unwrap().ends_with("later.txt"));
    assert!(!has_later, "the daily snapshot predates later.txt");
    let out = env.run(&[
        "restore",
        "latest",
        "--host",
        "nobody",
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no snapshot matches"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn forget_latest_of_a_selection_leaves_the_others() {
    let (env, a, b, _) = two_devices();
    env.ok(&["forget", "latest", "--path", a.to_str().unwrap()]);
    let left = env.json(&["snapshots"]);
    assert_eq!(ids(&left), 2);
    let paths: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["paths"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [a.to_str().unwrap(), b.to_str().unwrap()],
        "the newest of a went, the laptop's newer one stayed"
    );
    let tags = &left[0]["tags"];
    assert_eq!(tags, &serde_json::json!(["daily"]));
}

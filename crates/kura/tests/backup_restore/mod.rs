//! Backup and restore through the real binary: round trips, backup types, baselines, devices,
//! and the config file.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use crate::fixture::*;

mod overwrite;

/// A tree of every kind of entry (files of many sizes, an executable, a symlink, a dangling
/// symlink, a hard link, empty directories) backed up once.
fn backed_up_tree() -> (Env, PathBuf, serde_json::Value) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 40, 1);
    fs::create_dir_all(src.join("empty/deeper")).unwrap();
    fs::write(src.join("exec.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("exec.sh"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("exec.sh", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    fs::hard_link(src.join("exec.sh"), src.join("hard")).unwrap();
    fs::write(src.join("big"), noise(20_000_000, 9)).unwrap();
    let v = env.backup(&[src.to_str().unwrap()]);
    (env, src, v)
}

/// Restores the latest snapshot into `target` of the test's directory; where `src` landed.
fn restore_latest(env: &Env, src: &std::path::Path, target: &str) -> PathBuf {
    let t = env.path(target);
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    restored(&t, src)
}

#[test]
fn a_round_trip_restores_every_kind_of_entry() {
    let (env, src, v) = backed_up_tree();
    assert_eq!(v["type"], "full");
    assert_eq!(v["summary"]["files"], 43);
    let out = restore_latest(&env, &src, "target");
    assert_eq!(contents(&src), contents(&out));
    assert!(out.join("empty/deeper").is_dir());
}

#[test]
fn a_restore_keeps_modes_times_hard_links() {
    let (env, src, _) = backed_up_tree();
    let out = restore_latest(&env, &src, "target");
    let m = fs::metadata(out.join("exec.sh")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o750);
    assert_eq!(
        m.mtime(),
        fs::metadata(src.join("exec.sh")).unwrap().mtime()
    );
    assert_eq!(
        m.ino(),
        fs::metadata(out.join("hard")).unwrap().ino(),
        "hard link restored as a link"
    );
    assert_eq!(
        fs::metadata(out.join("d3")).unwrap().mtime(),
        fs::metadata(src.join("d3")).unwrap().mtime()
    );
}

#[test]
fn a_sub_path_restores_alone() {
    let (env, src, _) = backed_up_tree();
    let part = env.path("part");
    env.ok(&[
        "restore",
        &format!("latest:{}", src.join("d1").display()),
        "--target",
        part.to_str().unwrap(),
    ]);
    assert_eq!(contents(&src.join("d1")), contents(&part));
}

#[test]
fn an_include_filter_restores_only_what_it_matches() {
    let (env, src, _) = backed_up_tree();
    let inc = env.path("inc");
    env.ok(&[
        "restore",
        "latest",
        "--target",
        inc.to_str().unwrap(),
        "--include",
        "**/d2/*",
    ]);
    let got = contents(&restored(&inc, &src));
    assert!(got.iter().all(|(p, _)| p.starts_with("d2")), "{got:?}");
    assert_eq!(got.len(), contents(&src.join("d2")).len() + 1);
}

/// A tree of 30 files backed up twice, nothing changed in between; the second backup's report.
fn backed_up_twice() -> (Env, PathBuf, serde_json::Value) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 30, 2);
    env.backup(&[src.to_str().unwrap()]);
    let v = env.backup(&[src.to_str().unwrap()]);
    (env, src, v)
}

#[test]
fn unchanged_files_are_not_read_again() {
    let (_env, src, v) = backed_up_twice();
    assert_eq!(v["summary"]["files_unchanged"], 30);
    assert_eq!(v["summary"]["files_changed"], 0);
    assert_eq!(v["summary"]["data_added"], 0);
    // No tree under the root is new; only the trees of its ancestors may be, when another
    // test changes the metadata of /tmp meanwhile.
    let ancestors = src.ancestors().count() as u64 - 1;
    assert!(
        v["summary"]["blobs_added"].as_u64().unwrap() <= ancestors,
        "nothing new but the ancestors' trees: {v}"
    );
}

#[test]
fn a_changed_file_is_read_again() {
    let (env, src, _) = backed_up_twice();
    fs::write(src.join("d1/f1.bin"), b"changed").unwrap();
    let v = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(v["summary"]["files_changed"], 1);
    assert_eq!(v["summary"]["files_unchanged"], 29);
}

#[test]
fn backup_types_follow_the_marker_rules() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 10, 3);
    let s = src.to_str().unwrap();

    // No baseline yet: incremental falls back to full, and says so.
    let out = env
        .cmd(&["backup", s, "--type", "incremental", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "full");
    assert_eq!(v["fell_back_to_full"], true);
    assert!(stderr(&out).contains("running a full backup instead of incremental"));

    // What each type carries follows the markers; every snapshot holds all ten files.
    let carried = |v: &serde_json::Value| v["summary"]["files_carried"].as_u64().unwrap();
    fs::write(src.join("d0/f0.bin"), b"one").unwrap();
    let inc1 = env.backup(&[s, "--type", "incremental"]);
    assert_eq!(
        (
            inc1["type"].as_str(),
            carried(&inc1),
            &inc1["summary"]["files"]
        ),
        (Some("incremental"), 1, &serde_json::json!(10))
    );
    fs::write(src.join("d1/f1.bin"), b"two").unwrap();
    let inc2 = env.backup(&[s, "--type", "incremental"]);
    assert_eq!(
        carried(&inc2),
        1,
        "only what changed since the last incremental"
    );
    let diff = env.backup(&[s, "--type", "differential"]);
    assert_eq!(carried(&diff), 2, "everything since the last full");
    let diff2 = env.backup(&[s, "--type", "differential"]);
    assert_eq!(carried(&diff2), 2, "differential leaves the markers");
    let copy = env.backup(&[s, "--type", "copy"]);
    assert_eq!(carried(&copy), 10);
    let inc3 = env.backup(&[s, "--type", "incremental"]);
    assert_eq!(
        carried(&inc3),
        0,
        "copy did not reset, incremental markers already current"
    );
    env.backup(&[s, "--type", "full"]);
    let diff3 = env.backup(&[s, "--type", "differential"]);
    assert_eq!(carried(&diff3), 0, "full set a new baseline");
    let snaps = env.snapshots();
    let types: Vec<&str> = snaps.iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "full",
            "incremental",
            "incremental",
            "differential",
            "differential",
            "copy",
            "incremental",
            "full",
            "differential"
        ]
    );
}

/// The size of a local repository's packs.
fn packs_size(repo: &std::path::Path) -> u64 {
    files_under(&repo.join("data"))
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum()
}

/// A factory state recorded as a baseline.
fn recorded_baseline() -> (Env, PathBuf, serde_json::Value) {
    let env = Env::new();
    env.init();
    let src = env.path("factory");
    make_tree(&src, 20, 4);
    let v = env.json(&["baseline", src.to_str().unwrap()]);
    (env, src, v)
}

/// After [`recorded_baseline`]: the same contents as one of its files backed up elsewhere, the
/// factory state copied aside as the recovery source (`media`), and a full backup of the
/// factory state with one file changed.
struct AfterBaseline {
    env: Env,
    src: PathBuf,
    media: PathBuf,
    elsewhere: PathBuf,
    elsewhere_snapshot: String,
    full: serde_json::Value,
}

fn after_baseline() -> AfterBaseline {
    let (env, src, _) = recorded_baseline();
    let elsewhere = env.path("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::copy(src.join("d3/f3.bin"), elsewhere.join("copy.bin")).unwrap();
    let v = env.backup(&[elsewhere.to_str().unwrap()]);
    let elsewhere_snapshot = v["id"].as_str().unwrap().to_string();
    let media = env.path("media");
    fs::create_dir_all(&media).unwrap();
    for (rel, c) in contents(&src) {
        if c != b"<dir>" {
            fs::create_dir_all(media.join(&rel).parent().unwrap()).unwrap();
            fs::write(media.join(&rel), c).unwrap();
        }
    }
    fs::write(src.join("d2/f2.bin"), noise(100_000, 77)).unwrap();
    let full = env.backup(&[src.to_str().unwrap()]);
    AfterBaseline {
        env,
        src,
        media,
        elsewhere,
        elsewhere_snapshot,
        full,
    }
}

#[test]
fn a_baseline_uploads_no_file_contents() {
    let (env, src, v) = recorded_baseline();
    assert_eq!(v["type"], "baseline");
    let src_size: u64 = contents(&src).iter().map(|(_, c)| c.len() as u64).sum();
    assert!(
        packs_size(&env.repo) < src_size / 10,
        "baseline uploaded file contents"
    );
}

#[test]
fn the_contents_of_a_baseline_elsewhere_are_uploaded() {
    // Only the baseline's own paths rely on the recovery source.
    let b = after_baseline();
    let t0 = b.env.path("t0");
    b.env.ok(&[
        "restore",
        &b.elsewhere_snapshot,
        "--target",
        t0.to_str().unwrap(),
    ]);
    assert_eq!(
        contents(&b.elsewhere),
        contents(&restored(&t0, &b.elsewhere))
    );
}

#[test]
fn a_full_backup_after_a_baseline_sends_only_the_change() {
    let b = after_baseline();
    assert_eq!(b.full["summary"]["files_changed"], 1);
    assert!(
        b.full["summary"]["data_added"].as_u64().unwrap() < 110_000,
        "only the change is sent"
    );
}

#[test]
fn a_baseline_restores_from_its_recovery_source() {
    let b = after_baseline();
    let t = b.env.path("t");
    let out = b
        .env
        .run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "partial: the rest is restored");
    assert!(
        stderr(&out).contains("14 files not restored: they exist only in a baseline")
            && stderr(&out).contains("--baseline-source"),
        "{}",
        stderr(&out)
    );
    let landed = restored(&t, &b.src);
    assert_eq!(
        fs::read(landed.join("d2/f2.bin")).unwrap(),
        fs::read(b.src.join("d2/f2.bin")).unwrap(),
        "the file changed since the baseline is restored"
    );
    assert!(!landed.join("d1/f1.bin").exists());
    b.env.ok(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--baseline-source",
        b.media.to_str().unwrap(),
    ]);
    assert_eq!(contents(&b.src), contents(&restored(&t, &b.src)));
}

#[test]
fn forgetting_the_baseline_snapshot_keeps_what_later_snapshots_need() {
    let b = after_baseline();
    let baseline = &b.env.snapshots()[0];
    assert_eq!(baseline["type"], "baseline");
    b.env
        .ok(&["forget", baseline["id"].as_str().unwrap(), "--prune"]);
    b.env.ok(&["check"]);
    let t = b.env.path("t");
    b.env.ok(&[
        "restore",
        b.full["id"].as_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
        "--baseline-source",
        b.media.to_str().unwrap(),
    ]);
    assert_eq!(contents(&b.src), contents(&restored(&t, &b.src)));
}

#[test]
fn a_recovery_source_that_differs_is_refused_for_the_files_it_does_not_match() {
    let b = after_baseline();
    fs::write(b.media.join("d6/f6.bin"), b"tampered").unwrap();
    let t2 = b.env.path("t2");
    let out = b.env.run(&[
        "restore",
        "latest",
        "--target",
        t2.to_str().unwrap(),
        "--baseline-source",
        b.media.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("does not hold the recorded contents"),
        "{}",
        stderr(&out)
    );
    let landed = restored(&t2, &b.src);
    assert!(!landed.join("d6/f6.bin").exists());
    assert!(
        landed.join("d3/f3.bin").exists(),
        "uploaded by the other backup"
    );
    assert!(landed.join("d4/f4.bin").exists());
}

/// Two snapshots of a small tree: the first tagged `first`, the second after adding,
/// removing and changing a file. Returns the first snapshot's id.
fn two_snapshots() -> (Env, String) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 5, 5);
    let s = src.to_str().unwrap();
    let a = env.backup(&[s, "--tag", "first"]);
    fs::write(src.join("new.txt"), b"new").unwrap();
    fs::remove_file(src.join("d1/f1.bin")).unwrap();
    fs::write(src.join("d2/f2.bin"), b"changed").unwrap();
    env.backup(&[s]);
    (env, a["id"].as_str().unwrap().to_string())
}

#[test]
fn the_snapshot_list_shows_what_each_snapshot_is() {
    let (env, _) = two_snapshots();
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2);
    for key in ["id", "time", "device", "paths", "type", "tags"] {
        assert!(snaps[0].get(key).is_some(), "missing {key}");
    }
    assert_eq!(snaps[0]["tags"][0], "first");
}

#[test]
fn a_snapshot_is_named_by_an_id_prefix() {
    let (env, first) = two_snapshots();
    let ls = env.ok(&["ls", &first[..6]]);
    assert!(ls.contains("d1/f1.bin"));
}

#[test]
fn diff_names_each_change_between_two_snapshots() {
    let (env, first) = two_snapshots();
    let d = env.json(&["diff", &first[..6], "latest"]);
    let changes: Vec<(String, String)> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().into(),
                c["path"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .into(),
            )
        })
        .collect();
    assert!(changes.contains(&("added".into(), "new.txt".into())));
    assert!(changes.contains(&("removed".into(), "f1.bin".into())));
    assert!(changes.contains(&("modified".into(), "f2.bin".into())));
    assert_eq!(changes.len(), 3, "{changes:?}");
}

#[test]
fn an_unknown_snapshot_prefix_is_a_clear_error() {
    let (env, _) = two_snapshots();
    let out = env.run(&["ls", "ffffffffff"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no snapshot matches"));
}

#[test]
fn a_second_device_restores_the_first_devices_snapshots() {
    let env = Env::new();
    let code = env.init();
    let src = env.path("src");
    make_tree(&src, 10, 6);
    env.backup(&[src.to_str().unwrap()]);

    let laptop = env.path("laptop-state");
    // Not yet a device: backing up is refused with a clear message.
    let out = env
        .cmd_as(&laptop, &["backup", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("kura device add"));
    // A wrong recovery code is refused.
    let bad = env
        .cmd_as(&laptop, &["device", "add"])
        .env("KURA_RECOVERY_CODE", "0000")
        .env_remove("KURA_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(11), "{}", stderr(&bad));
    let mut add = env.cmd_as(&laptop, &["device", "add", "--name", "laptop"]);
    add.env("KURA_RECOVERY_CODE", &code)
        .env_remove("KURA_PASSWORD");
    run_ok(add);
    let t = env.path("t");
    run_ok(env.cmd_as(
        &laptop,
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
    let other = env.path("other");
    make_tree(&other, 3, 60);
    run_ok(env.cmd_as(&laptop, &["backup", other.to_str().unwrap()]));
    let snaps = env.snapshots();
    assert_eq!(snaps.len(), 2);
    assert_ne!(
        snaps[0]["device"], snaps[1]["device"],
        "each snapshot names its device"
    );
    assert_eq!(snaps[1]["device_name"], "laptop");
    let devs = env.json(&["device", "list"]);
    assert_eq!(devs.as_array().unwrap().len(), 2);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn restore_never_follows_symlinks_out_of_the_target() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/passwd"), b"from backup").unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let outside = env.path("outside");
    fs::create_dir_all(&outside).unwrap();
    let target = env.path("t");
    let landing = restored(&target, &src);
    fs::create_dir_all(&landing).unwrap();
    // A hostile target: the directory the restore will write into is a symlink elsewhere.
    std::os::unix::fs::symlink(&outside, landing.join("etc")).unwrap();
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "wrote through a symlink"
    );
    assert_eq!(
        fs::read(landing.join("etc/passwd")).unwrap(),
        b"from backup"
    );
}

/// A config file naming the repository, a passphrase file and an exclude pattern; returns it
/// and a `kura` whose only settings come from it (and the state directory).
fn configured(env: &Env) -> (PathBuf, impl Fn(&[&str]) -> std::process::Command + '_) {
    let pass = env.path("pass");
    fs::write(&pass, "from a file\n").unwrap();
    let config = env.path("kura.toml");
    fs::write(
        &config,
        format!(
            "repo = {:?}\npassword_file = {:?}\nexclude = [\"*.skip\"]\n",
            env.repo, pass
        ),
    )
    .unwrap();
    let file = config.clone();
    let kura = move |args: &[&str]| {
        let mut c = env.kura();
        c.args(args)
            .env("KURA_CONFIG", &file)
            .env("KURA_STATE_DIR", &env.state)
            .env("KURA_INSECURE_FAST_KDF", "1");
        c
    };
    (config, kura)
}

/// Initializes and backs up `src` (a file to keep, one to exclude) with [`configured`] only.
fn backed_up_by_config(env: &Env) -> PathBuf {
    let (_, kura) = configured(env);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("keep"), b"k").unwrap();
    fs::write(src.join("drop.skip"), b"d").unwrap();
    run_ok(kura(&["init", "--quiet"]));
    run_ok(kura(&["backup", src.to_str().unwrap(), "--quiet"]));
    src
}

#[test]
fn a_config_file_supplies_repository_passphrase_excludes() {
    let env = Env::new();
    backed_up_by_config(&env);
    let (_, kura) = configured(&env);
    let ls = run_ok(kura(&["ls", "latest"]));
    assert!(ls.contains("keep") && !ls.contains("drop.skip"), "{ls}");
}

#[test]
fn a_repository_flag_wins_over_the_config_file() {
    let env = Env::new();
    backed_up_by_config(&env);
    let (_, kura) = configured(&env);
    let out = kura(&[
        "snapshots",
        "--repo",
        env.path("elsewhere").to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(10));
}

#[test]
fn the_passphrase_file_of_the_config_is_the_one_used() {
    let env = Env::new();
    backed_up_by_config(&env);
    let out = env
        .cmd(&["snapshots"])
        .env("KURA_PASSWORD", "from a file")
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn an_unknown_key_in_the_config_file_is_refused() {
    let env = Env::new();
    backed_up_by_config(&env);
    let (config, kura) = configured(&env);
    fs::write(&config, "bogus = 1\n").unwrap();
    let out = kura(&["snapshots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown field"), "{}", stderr(&out));
}

//! Incremental and differential snapshots hold the whole state of their paths: each restores
//! by itself to the tree as it was, `--only-changes` gives what it carried, `diff` against its
//! base shows the real changes, and forgetting a snapshot in the middle of a chain breaks none.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::fixture::*;

/// One backup of a chain: its report and the picture of the source when it was taken.
struct Step {
    report: serde_json::Value,
    picture: Vec<String>,
}

impl Step {
    fn id(&self) -> &str {
        self.report["id"].as_str().unwrap()
    }
}

fn step(env: &Env, src: &Path, kind: &str) -> Step {
    let report = env.backup(&[src.to_str().unwrap(), "--type", kind]);
    assert_eq!(report["type"], kind, "{report}");
    Step {
        report,
        picture: picture(src),
    }
}

/// A full backup, then an incremental after a change, an addition, a deletion, a rename and a
/// mode change, a second incremental after a directory was removed, and a differential.
fn chain() -> (Env, PathBuf, Vec<Step>) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 14, 5);
    fs::write(src.join("tool.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(src.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("d1/f1.bin", src.join("link")).unwrap();
    let full = step(&env, &src, "full");

    fs::write(src.join("d1/f1.bin"), b"changed contents").unwrap();
    fs::write(src.join("d0/added.txt"), b"new file").unwrap();
    fs::remove_file(src.join("d2/f2.bin")).unwrap();
    fs::rename(src.join("d3/f3.bin"), src.join("d4/renamed.bin")).unwrap();
    fs::set_permissions(src.join("tool.sh"), fs::Permissions::from_mode(0o700)).unwrap();
    let incr1 = step(&env, &src, "incremental");

    fs::remove_dir_all(src.join("d5")).unwrap();
    fs::write(src.join("d6/f6.bin"), b"second change").unwrap();
    let incr2 = step(&env, &src, "incremental");

    fs::write(src.join("d0/late.txt"), b"after the incrementals").unwrap();
    let diff = step(&env, &src, "differential");
    (env, src, vec![full, incr1, incr2, diff])
}

fn restore_to(env: &Env, snapshot: &str, target: &str, more: &[&str]) -> PathBuf {
    let t = env.path(target);
    let mut args = vec!["restore", snapshot, "--target", t.to_str().unwrap()];
    args.extend_from_slice(more);
    env.ok(&args);
    t
}

#[test]
fn every_snapshot_of_a_chain_restores_the_state_it_was_taken_at() {
    let (env, src, steps) = chain();
    for (i, s) in steps.iter().enumerate() {
        let t = restore_to(&env, s.id(), &format!("t{i}"), &[]);
        assert_eq!(
            picture(&restored(&t, &src)),
            s.picture,
            "snapshot {i} ({}) restored to the tree as it was",
            s.report["type"]
        );
    }
    assert_ne!(steps[0].picture, steps[1].picture);
}

#[test]
fn an_incremental_records_its_base_and_what_it_carried() {
    let (env, _src, steps) = chain();
    let carried = |i: usize| {
        steps[i].report["summary"]["files_carried"]
            .as_u64()
            .unwrap()
    };
    // Changed, added, renamed and re-moded files; the deleted one is simply absent.
    assert_eq!(carried(1), 4);
    assert_eq!(carried(2), 1);
    assert_eq!(carried(3), 6, "the differential carries all since the full");
    assert_eq!(
        steps[3].report["summary"]["files"],
        steps[3]
            .picture
            .iter()
            .filter(|l| l.contains(" file "))
            .count()
    );
    let snaps = env.snapshots();
    let base = |i: usize| snaps[i]["base"].as_str().map(String::from);
    assert_eq!(base(0), None);
    assert_eq!(base(1).as_deref(), Some(steps[0].id()));
    assert_eq!(base(2).as_deref(), Some(steps[1].id()));
    assert_eq!(
        base(3).as_deref(),
        Some(steps[0].id()),
        "a differential rests on the full"
    );
    let text = env.ok(&["snapshots"]);
    let row = text
        .lines()
        .find(|l| l.starts_with(&steps[1].id()[..8]))
        .unwrap();
    assert!(
        row.contains("incremental") && row.contains(&steps[0].id()[..8]),
        "the listing shows type and base: {row}"
    );
}

#[test]
fn only_changes_restores_just_what_a_snapshot_carried() {
    let (env, src, steps) = chain();
    let t = restore_to(&env, steps[1].id(), "changes", &["--only-changes"]);
    let files: Vec<PathBuf> = files_under(&t)
        .into_iter()
        .map(|f| f.strip_prefix(restored(&t, &src)).unwrap().to_path_buf())
        .collect();
    let want: Vec<PathBuf> = ["d0/added.txt", "d1/f1.bin", "d4/renamed.bin", "tool.sh"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(files, want);
    let listed = env.json(&["ls", steps[2].id(), "--only-changes"]);
    let listed_files: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed_files, [src.join("d6/f6.bin").to_str().unwrap()]);
}

#[test]
fn diff_against_the_base_shows_only_real_changes() {
    let (env, src, steps) = chain();
    let v = env.json(&["diff", steps[1].id()]);
    let mut got: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let p = Path::new(c["path"].as_str().unwrap());
            format!(
                "{} {}",
                c["change"].as_str().unwrap(),
                p.strip_prefix(&src).unwrap().display()
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "added d0/added.txt",
            "added d4/renamed.bin",
            "modified d1/f1.bin",
            "modified tool.sh",
            "removed d2/f2.bin",
            "removed d3/f3.bin",
        ]
    );
    // Naming both gives the same answer as naming one with its base.
    assert_eq!(env.json(&["diff", steps[0].id(), steps[1].id()]), v);
    let out = env.run(&["diff", steps[0].id()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no base"), "{}", stderr(&out));
}

#[test]
fn forgetting_the_middle_of_a_chain_breaks_no_kept_snapshot() {
    let (env, src, steps) = chain();
    env.ok(&["forget", steps[0].id(), steps[1].id()]);
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
    for (i, s) in steps.iter().enumerate().skip(2) {
        let t = restore_to(&env, s.id(), &format!("after{i}"), &[]);
        assert_eq!(picture(&restored(&t, &src)), s.picture, "snapshot {i}");
    }
    // The next incremental still follows the markers: what changed since the last incremental
    // (the differential's file too, as a differential leaves the markers).
    fs::write(src.join("d0/next.txt"), b"next").unwrap();
    let next = step(&env, &src, "incremental");
    assert_eq!(next.report["summary"]["files_carried"], 2);
    let t = restore_to(&env, next.id(), "next", &[]);
    assert_eq!(picture(&restored(&t, &src)), next.picture);
}

#[test]
fn retention_keeps_what_the_policy_says_and_nothing_for_chains() {
    let (env, _src, steps) = chain();
    let v = env.json(&["forget", "--keep-last", "1", "--dry-run"]);
    let kept: Vec<&str> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [steps[3].id()], "every snapshot stands alone: {v}");
}

#[test]
fn a_chain_over_the_service_restores_the_whole_state() {
    let m = Member::start("chain");
    m.init();
    let src = m.path("src");
    make_tree(&src, 8, 6);
    m.ok(&["backup", src.to_str().unwrap()]);
    fs::remove_file(src.join("d1/f1.bin")).unwrap();
    fs::write(src.join("d2/f2.bin"), b"changed over the service").unwrap();
    let out = m.ok(&["backup", src.to_str().unwrap(), "--type", "incremental"]);
    assert!(out.contains("(incremental on "), "{out}");
    m.restore_and_compare(&src);
}

#[test]
fn an_incremental_of_nothing_changed_still_restores_everything() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 6, 7);
    env.backup(&[src.to_str().unwrap()]);
    let v = env.backup(&[src.to_str().unwrap(), "--type", "incremental"]);
    assert_eq!(v["summary"]["files_carried"], 0);
    let t = restore_to(&env, "latest", "rl", &[]);
    assert_eq!(picture(&restored(&t, &src)), picture(&src));
}

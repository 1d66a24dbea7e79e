//! Damage, crashes, concurrency and bad input, through the real binary.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn packs(env: &Env) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for d in fs::read_dir(env.repo.join("data")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            v.push(f.unwrap().path());
        }
    }
    v.sort();
    v
}

#[test]
fn damage_is_detected_and_restore_saves_the_rest() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 20, 10);
    fs::write(src.join("big-a"), noise(12_000_000, 1)).unwrap();
    fs::write(src.join("big-b"), noise(12_000_000, 2)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    env.ok(&["check", "--read-data"]);

    // Flip one byte in the middle of the largest pack.
    let mut ps = packs(&env);
    ps.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let victim = ps.last().unwrap().clone();
    let mut bytes = fs::read(&victim).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x20;
    fs::write(&victim, &bytes).unwrap();

    // A damaged snapshot file does not hide the others.
    let extra = env.repo.join("snapshots").join("ab".repeat(32));
    fs::write(&extra, b"not a snapshot").unwrap();
    let out = env.run(&["snapshots", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    fs::remove_file(&extra).unwrap();

    let structural = env.run(&["check"]);
    assert!(
        structural.status.success(),
        "a flipped data byte is invisible without --read-data"
    );
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));

    let t = env.path("t");
    let out = env.run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("not restored"));
    let got = contents(&restored(&t, &src));
    let want = contents(&src);
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    assert_eq!(
        missing.len(),
        1,
        "exactly the damaged file is refused: {:?}",
        missing.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    for (p, _) in &got {
        assert!(
            !p.to_string_lossy().contains(".kura-"),
            "temporary file left behind: {p:?}"
        );
    }

    // A truncated pack is found by the structural check too.
    let f = fs::OpenOptions::new().write(true).open(&victim).unwrap();
    f.set_len(bytes.len() as u64 / 2).unwrap();
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn bad_credentials_missing_and_newer_repositories_are_clear_errors() {
    let env = Env::new();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10));
    assert!(
        stderr(&out).contains("no Kura repository"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);

    env.init();
    let src = env.path("src");
    make_tree(&src, 3, 11);
    env.backup(&[src.to_str().unwrap()]);
    let before = contents(&env.repo);

    let out = env
        .cmd(&["snapshots"])
        .env("KURA_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert_eq!(stderr(&out).trim(), "kura: wrong passphrase");

    let code = "ABCDE-FGHJK-MNPQR-STVWX-YZ012-34567-89ABC-DEFGH-JKMNP-QRSTV-WXYZ0";
    let out = env
        .cmd(&["snapshots"])
        .env("KURA_RECOVERY_CODE", code)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(stderr(&out).contains("recovery code"));

    let out = env.run(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"));

    let config = fs::read_to_string(env.repo.join("config")).unwrap();
    // Someone who can write the storage but holds no key cannot change how data is stored.
    fs::write(
        env.repo.join("config"),
        config.replace("\"compression_level\": 3", "\"compression_level\": 19"),
    )
    .unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("damaged config"), "{}", stderr(&out));
    fs::write(env.repo.join("config"), &config).unwrap();
    fs::write(
        env.repo.join("config"),
        config.replace("\"version\": 1", "\"version\": 99"),
    )
    .unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(13));
    assert!(stderr(&out).contains("upgrade kura"));
    fs::write(env.repo.join("config"), &config).unwrap();
    assert_eq!(
        before,
        contents(&env.repo),
        "failed commands changed the repository"
    );
}

#[test]
fn a_killed_backup_leaves_the_repository_consistent_and_resumes() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..24 {
        fs::write(src.join(format!("f{i}")), noise(4_000_000, 100 + i)).unwrap();
    }
    let total: u64 = 24 * 4_000_000;
    let locks = |env: &Env| {
        fs::read_dir(env.repo.join("locks"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    // Kill points: as soon as the backup holds its lock, then after one and after three more packs.
    for more_packs in [0usize, 1, 3] {
        let before = packs(&env).len();
        let mut child = env
            .cmd(&["backup", src.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let reached = if more_packs == 0 {
                locks(&env) > 0
            } else {
                packs(&env).len() >= before + more_packs
            };
            if reached
                || std::time::Instant::now() > deadline
                || child.try_wait().unwrap().is_some()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup finished before the kill point"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(env.snapshots().is_empty(), "no half snapshot is listed");
        let out = env.run(&["check"]);
        assert!(out.status.success(), "check after a kill: {}", stderr(&out));
    }
    assert!(
        packs(&env).len() >= 4,
        "the kills landed while packs were being written"
    );
    // The three killed runs were one job, interrupted, resumed twice.
    let jobs = env.json(&["jobs"]);
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs[0]["status"], "interrupted");
    assert_eq!(jobs[0]["attempts"], 3);
    let v = env.backup(&[src.to_str().unwrap()]);
    assert_eq!(v["job"], jobs[0]["id"]);
    assert_eq!(v["attempts"], 4);
    let added = v["summary"]["data_added"].as_u64().unwrap();
    assert!(
        added < total,
        "resume re-uploaded everything ({added} of {total})"
    );
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
}

#[test]
fn two_backups_at_once_do_not_corrupt_the_repository() {
    let env = Env::new();
    env.init();
    let (a, b) = (env.path("a"), env.path("b"));
    make_tree(&a, 60, 20);
    make_tree(&b, 60, 21);
    fs::write(a.join("shared"), noise(3_000_000, 5)).unwrap();
    fs::write(b.join("shared"), noise(3_000_000, 5)).unwrap();
    let ca = env
        .cmd(&["backup", a.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let cb = env
        .cmd(&["backup", b.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(ca.wait_with_output().unwrap().status.success());
    assert!(cb.wait_with_output().unwrap().status.success());
    assert_eq!(env.snapshots().len(), 2);
    env.ok(&["check", "--read-data"]);
    for (src, id) in [(&a, 0usize), (&b, 1)] {
        let snaps = env.snapshots();
        let snap = snaps
            .iter()
            .find(|s| s["paths"][0] == src.to_str().unwrap())
            .unwrap();
        let t = env.path(&format!("t{id}"));
        env.ok(&[
            "restore",
            snap["id"].as_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
        ]);
        assert_eq!(contents(src), contents(&restored(&t, src)));
    }
}

#[test]
fn forget_and_prune_reclaim_space_and_keep_what_is_needed() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let mut ids = Vec::new();
    for i in 0..4u64 {
        fs::write(src.join(format!("gen{i}")), noise(5_000_000, 300 + i)).unwrap();
        if i > 0 {
            fs::remove_file(src.join(format!("gen{}", i - 1))).unwrap();
        }
        ids.push(
            env.backup(&[src.to_str().unwrap()])["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let dry = env.json(&["forget", "--keep-last", "2", "--dry-run"]);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 2);
    assert_eq!(env.snapshots().len(), 4);
    let v = env.json(&["forget", "--keep-last", "2"]);
    assert_eq!(v["removed"].as_array().unwrap().len(), 2);
    let left: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ids[2..]);
    // A partial pack of a writer killed long ago is cleaned up; a fresh one is left alone.
    let old_partial = env.repo.join("data/00/.tmp-0123456789abcdef");
    let new_partial = env.repo.join("data/01/.tmp-fedcba9876543210");
    fs::write(&old_partial, b"partial").unwrap();
    fs::write(&new_partial, b"partial").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&old_partial)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    let p = env.json(&["prune"]);
    assert!(p["bytes_freed"].as_u64().unwrap() > 9_000_000, "{p}");
    assert_eq!(p["partials_deleted"], 1);
    assert!(!old_partial.exists() && new_partial.exists());
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", &ids[2][..10], "--target", t.to_str().unwrap()]);
    assert_eq!(
        fs::read(restored(&t, &src).join("gen2")).unwrap(),
        noise(5_000_000, 302)
    );
    env.ok(&["forget", &ids[3][..8]]);
    assert_eq!(env.snapshots().len(), 1);
    let out = env.run(&["forget"]);
    assert!(
        !out.status.success(),
        "forget with neither ids nor policy is refused"
    );
}

fn mount_tmpfs(at: &std::path::Path, options: &str) {
    fs::create_dir_all(at).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(at)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        mounted,
        "this test needs to mount a small tmpfs (run as root, as CI does)"
    );
}

fn unmount(at: &std::path::Path) {
    std::process::Command::new("umount")
        .arg(at)
        .status()
        .unwrap();
}

#[test]
fn a_restore_that_does_not_fit_is_refused_before_writing() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big"), noise(3_000_000, 8)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let small = env.path("small");
    mount_tmpfs(&small, "size=1m");
    let out = env.run(&["restore", "latest", "--target", small.to_str().unwrap()]);
    let listing = fs::read_dir(&small).unwrap().count();
    unmount(&small);
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(stderr(&out).contains("not enough free space"));
    assert!(stderr(&out).contains("bytes"));
    assert_eq!(listing, 0, "nothing written");

    // Many small files: the bytes fit, the inodes do not.
    let many = env.path("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..60 {
        fs::write(many.join(format!("f{i}")), b"x").unwrap();
    }
    env.backup(&[many.to_str().unwrap()]);
    let few = env.path("few-inodes");
    mount_tmpfs(&few, "size=8m,nr_inodes=30");
    let out = env.run(&["restore", "latest", "--target", few.to_str().unwrap()]);
    let listing = fs::read_dir(&few).unwrap().count();
    unmount(&few);
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(stderr(&out).contains("inodes"), "{}", stderr(&out));
    assert_eq!(listing, 0, "nothing written");
}

#[test]
fn a_missing_or_relative_home_is_refused_not_guessed() {
    let env = Env::new();
    for home in ["", "relative/home"] {
        let out = Command::new(env!("CARGO_BIN_EXE_kura"))
            .arg("snapshots")
            .current_dir(env.dir.path())
            .env_clear()
            .env("HOME", home)
            .env("KURA_PASSWORD", "pw")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("HOME is not set to an absolute path"),
            "{home:?}: {err}"
        );
        // Nothing was made under the working directory.
        assert!(
            fs::read_dir(env.dir.path()).unwrap().next().is_none(),
            "{home:?}"
        );
    }
}

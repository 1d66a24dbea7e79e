//! Damage, crashes, concurrency and bad input, through the real binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::fixture::*;

/// The packs of a local repository.
fn packs(env: &Env) -> Vec<PathBuf> {
    files_under(&env.repo.join("data"))
}

/// A backup with two large files, checked, and then one byte flipped in the middle of its
/// largest pack; returns that pack and its length.
fn damaged_pack() -> (Env, PathBuf, PathBuf, u64) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 20, 10);
    fs::write(src.join("big-a"), noise(12_000_000, 1)).unwrap();
    fs::write(src.join("big-b"), noise(12_000_000, 2)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    env.ok(&["check", "--read-data"]);
    let mut ps = packs(&env);
    ps.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let victim = ps.last().unwrap().clone();
    let mut bytes = fs::read(&victim).unwrap();
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x20;
    fs::write(&victim, &bytes).unwrap();
    (env, src, victim, bytes.len() as u64)
}

#[test]
fn a_damaged_snapshot_file_does_not_hide_the_others() {
    let (env, _, _, _) = damaged_pack();
    let extra = env.repo.join("snapshots").join("ab".repeat(32));
    fs::write(&extra, b"not a snapshot").unwrap();
    let out = env.run(&["snapshots", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[test]
fn a_flipped_data_byte_is_found_by_reading_the_data() {
    let (env, _, _, _) = damaged_pack();
    let structural = env.run(&["check"]);
    assert!(
        structural.status.success(),
        "a flipped data byte is invisible without --read-data"
    );
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
}

#[test]
fn a_restore_skips_the_damaged_file_only() {
    let (env, src, _, _) = damaged_pack();
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
}

#[test]
fn a_truncated_pack_is_found_by_the_structural_check() {
    let (env, _, victim, len) = damaged_pack();
    let f = fs::OpenOptions::new().write(true).open(&victim).unwrap();
    f.set_len(len / 2).unwrap();
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_missing_repository_is_a_clear_error() {
    let env = Env::new();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(10));
    assert!(
        stderr(&out).contains("no Kura repository"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
}

/// A repository with one small backup; the contents of the repository as it is.
fn small_repository() -> (Env, Vec<(PathBuf, Vec<u8>)>) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 3, 11);
    env.backup(&[src.to_str().unwrap()]);
    let before = contents(&env.repo);
    (env, before)
}

/// Asserts that failed commands left the repository as it was.
fn unchanged(env: &Env, before: &[(PathBuf, Vec<u8>)]) {
    assert_eq!(
        before,
        contents(&env.repo),
        "failed commands changed the repository"
    );
}

#[test]
fn a_wrong_passphrase_is_a_clear_error() {
    let (env, before) = small_repository();
    let out = env
        .cmd(&["snapshots"])
        .env("KURA_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert_eq!(stderr(&out).trim(), "kura: wrong passphrase");
    unchanged(&env, &before);
}

#[test]
fn a_wrong_recovery_code_is_a_clear_error() {
    let (env, before) = small_repository();
    let code = "ABCDE-FGHJK-MNPQR-STVWX-YZ012-34567-89ABC-DEFGH-JKMNP-QRSTV-WXYZ0";
    let out = env
        .cmd(&["snapshots"])
        .env("KURA_RECOVERY_CODE", code)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11));
    assert!(stderr(&out).contains("recovery code"));
    unchanged(&env, &before);
}

#[test]
fn init_refuses_an_existing_repository() {
    let (env, before) = small_repository();
    let out = env.run(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"));
    unchanged(&env, &before);
}

#[test]
fn a_config_changed_without_the_key_is_refused_as_damaged() {
    // Someone who can write the storage but holds no key cannot change how data is stored.
    let (env, before) = small_repository();
    let config = fs::read_to_string(env.repo.join("config")).unwrap();
    fs::write(
        env.repo.join("config"),
        config.replace("\"compression_level\": 3", "\"compression_level\": 19"),
    )
    .unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("damaged config"), "{}", stderr(&out));
    fs::write(env.repo.join("config"), &config).unwrap();
    unchanged(&env, &before);
}

#[test]
fn a_version_raised_without_the_key_is_not_trusted() {
    let (env, before) = small_repository();
    let config = fs::read_to_string(env.repo.join("config")).unwrap();
    fs::write(
        env.repo.join("config"),
        config.replace("\"version\": 1", "\"version\": 99"),
    )
    .unwrap();
    // Not "newer" (exit 13) on the file's word: its tag does not check.
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("tag does not check") && stderr(&out).contains("upgrade kura"),
        "{}",
        stderr(&out)
    );
    fs::write(env.repo.join("config"), &config).unwrap();
    unchanged(&env, &before);
}

#[test]
fn a_key_file_that_does_not_parse_is_named_not_taken_for_a_wrong_passphrase() {
    let env = Env::new();
    let code = env.init();
    let passphrase = passphrase_key_file(&env.json(&["key", "list"]));
    fs::write(env.repo.join("keys").join(&passphrase), noise(100, 3)).unwrap();
    let out = env.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not parse") && stderr(&out).contains(&passphrase),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("wrong passphrase"),
        "{}",
        stderr(&out)
    );
    // The recovery code still opens it.
    let out = env
        .cmd(&["snapshots"])
        .env_remove("KURA_PASSWORD")
        .env("KURA_RECOVERY_CODE", &code)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// 24 files of noise, 4 MB each: a backup that writes several packs.
fn noise_files(env: &Env) -> PathBuf {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..24 {
        fs::write(src.join(format!("f{i}")), noise(4_000_000, 100 + i)).unwrap();
    }
    src
}

/// Kills a backup of `src` three times (SIGKILL): as soon as it holds its lock, then after one
/// and after three more packs; after each kill, no half snapshot is listed and the repository
/// checks out.
fn kill_a_backup_three_times(env: &Env, src: &Path) {
    let locks = |env: &Env| {
        fs::read_dir(env.repo.join("locks"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    for more_packs in [0usize, 1, 3] {
        let before = packs(env).len();
        let mut child = env
            .cmd(&["backup", src.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(120), "the kill point", || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the backup finished before the kill point"
            );
            if more_packs == 0 {
                locks(env) > 0
            } else {
                packs(env).len() >= before + more_packs
            }
        });
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
        packs(env).len() >= 4,
        "the kills landed while packs were being written"
    );
}

#[test]
fn a_killed_backup_leaves_the_repository_consistent() {
    let env = Env::new();
    env.init();
    let src = noise_files(&env);
    kill_a_backup_three_times(&env, &src);
}

#[test]
fn a_backup_killed_three_times_resumes_as_one_job() {
    let env = Env::new();
    env.init();
    let src = noise_files(&env);
    let total: u64 = 24 * 4_000_000;
    kill_a_backup_three_times(&env, &src);
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

/// Four generations of a file of 5 MB, each backed up with the one before removed; their
/// snapshot ids, oldest first.
fn four_generations() -> (Env, PathBuf, Vec<String>) {
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
    (env, src, ids)
}

#[test]
fn forget_keeps_the_last_snapshots_it_is_told_to() {
    let (env, _, ids) = four_generations();
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
}

#[test]
fn prune_reclaims_space_but_keeps_what_is_needed() {
    let (env, src, ids) = four_generations();
    env.json(&["forget", "--keep-last", "2"]);
    let p = env.json(&["prune"]);
    assert!(p["bytes_freed"].as_u64().unwrap() > 9_000_000, "{p}");
    env.ok(&["check", "--read-data"]);
    let t = env.path("t");
    env.ok(&["restore", &ids[2][..10], "--target", t.to_str().unwrap()]);
    assert_eq!(
        fs::read(restored(&t, &src).join("gen2")).unwrap(),
        noise(5_000_000, 302)
    );
}

#[test]
fn prune_removes_what_killed_writers_left_and_counts_it() {
    // Every writer holds a lock, so under prune's exclusive one no partial file has a live
    // owner, however fresh it is.
    let (env, _, _) = four_generations();
    let partials = [
        env.repo.join("data/00/.tmp-0123456789abcdef"),
        env.repo.join("snapshots/.tmp-fedcba9876543210"),
    ];
    for p in &partials {
        fs::write(p, vec![7u8; 10_000]).unwrap();
    }
    let p = env.json(&["prune"]);
    assert_eq!(p["partials_deleted"], 2, "{p}");
    assert!(p["bytes_freed"].as_u64().unwrap() >= 20_000, "{p}");
    assert!(partials.iter().all(|p| !p.exists()));
    env.ok(&["check", "--read-data"]);
}

#[test]
fn forget_removes_a_snapshot_named_by_prefix() {
    let (env, _, ids) = four_generations();
    env.ok(&["forget", &ids[3][..8]]);
    assert_eq!(env.snapshots().len(), 3);
    assert!(env.snapshots().iter().all(|s| s["id"] != ids[3].as_str()));
}

#[test]
fn forget_with_neither_ids_nor_policy_is_refused() {
    let (env, _, _) = four_generations();
    let out = env.run(&["forget"]);
    assert!(
        !out.status.success(),
        "forget with neither ids nor policy is refused"
    );
    assert_eq!(env.snapshots().len(), 4);
}

/// A small tmpfs mounted at `at` for as long as it lives.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Tmpfs {
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
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_restore_larger_than_the_free_space_is_refused_before_writing() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big"), noise(3_000_000, 8)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let small = env.path("small");
    let _mounted = Tmpfs::mount(&small, "size=1m");
    let out = env.run(&["restore", "latest", "--target", small.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(stderr(&out).contains("not enough free space"));
    // It says how much is needed and how much there is.
    assert!(
        stderr(&out).contains("the restore needs "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(" MiB available"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(&small).unwrap().count(), 0, "nothing written");
}

#[test]
fn a_restore_of_more_files_than_free_inodes_is_refused_before_writing() {
    // Many small files: the bytes fit, the inodes do not.
    let env = Env::new();
    env.init();
    let many = env.path("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..60 {
        fs::write(many.join(format!("f{i}")), b"x").unwrap();
    }
    env.backup(&[many.to_str().unwrap()]);
    let few = env.path("few-inodes");
    let _mounted = Tmpfs::mount(&few, "size=8m,nr_inodes=30");
    let out = env.run(&["restore", "latest", "--target", few.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(14), "{}", stderr(&out));
    assert!(stderr(&out).contains("inodes"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(&few).unwrap().count(), 0, "nothing written");
}

#[test]
fn a_missing_or_relative_home_is_refused_not_guessed() {
    let env = Env::new();
    let cwd = env.path("cwd");
    fs::create_dir_all(&cwd).unwrap();
    for home in ["", "relative/home"] {
        let out = env
            .kura()
            .arg("snapshots")
            .current_dir(&cwd)
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CACHE_HOME")
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
        assert!(fs::read_dir(&cwd).unwrap().next().is_none(), "{home:?}");
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn client_state_is_private_to_its_user() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 3, 1);
    env.backup(&[src.to_str().unwrap()]);
    assert_eq!(mode(&env.state), 0o700);
    let repo_state = fs::read_dir(&env.state)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    assert_eq!(mode(&repo_state), 0o700);
    let cache = repo_state.join("cache.bin");
    assert_eq!(mode(&cache), 0o600, "the cache names every path backed up");
}

#[test]
fn the_service_database_is_private_and_an_open_one_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let op = Operator::new(&env, "data", None);
    op.add_user("alice", "alice password");
    assert_eq!(mode(&op.data), 0o700);
    assert_eq!(mode(&op.data.join("kura.sqlite")), 0o600);
    fs::set_permissions(&op.data, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(
        op.data.join("kura.sqlite"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    op.add_user("bob", "bob password");
    assert_eq!(mode(&op.data), 0o700);
    assert_eq!(mode(&op.data.join("kura.sqlite")), 0o600);
}

#[test]
fn an_uppercase_https_scheme_is_the_service_and_other_schemes_are_refused() {
    let env = Env::new();
    let out = env
        .kura()
        .args([
            "--repo",
            "HTTPS://127.0.0.1:9/",
            "--retry-secs",
            "0",
            "snapshots",
        ])
        .env("KURA_USER", "u")
        .env("KURA_USER_PASSWORD", "p")
        .output()
        .unwrap();
    assert!(
        !stderr(&out).contains("no Kura repository at HTTPS"),
        "not taken as a directory: {}",
        stderr(&out)
    );
    let out = env
        .kura()
        .args(["--repo", "s3://bucket/x", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown repository location scheme"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_backup_waits_for_a_lock_with_retry_lock_and_fails_at_once_without() {
    use std::io::BufRead;
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 4, 11);
    // Another host's prune, refreshed just now.
    let lock = env.repo.join("locks").join("ab".repeat(16));
    let info = serde_json::json!({
        "host": "another-host", "pid": 1, "exclusive": true,
        "time": jiff::Timestamp::now().to_string(),
    });
    fs::write(&lock, info.to_string()).unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    let mut child = env
        .cmd(&["--retry-lock", "2m", "backup", src.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    err.read_line(&mut said).unwrap();
    assert!(said.contains("waiting up to 2m"), "{said}");
    fs::remove_file(&lock).unwrap();
    // Read to the end, so the backup never writes into a closed pipe.
    std::io::Read::read_to_string(&mut err, &mut said).unwrap();
    assert!(child.wait().unwrap().success(), "{said}");
    assert_eq!(env.snapshots().len(), 1);
}

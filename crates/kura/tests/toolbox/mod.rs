//! The everyday toolbox restic and borg users reach for: `find`, `dump`, `stats`, `tag`,
//! `forget --keep-within/--keep-tag` and `unlock`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::fixture::*;

/// A repository with three snapshots of `src`: the second adds `photos/beach.jpg`, the third
/// (an incremental on the second) adds `photos/Dinner.JPG` and `notes/todo.txt`.
fn three_snapshots() -> (Env, PathBuf) {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 12, 7);
    env.backup(&[src.to_str().unwrap()]);
    fs::create_dir_all(src.join("photos")).unwrap();
    fs::write(src.join("photos/beach.jpg"), noise(90_000, 3)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    fs::write(src.join("photos/Dinner.JPG"), noise(2_000, 4)).unwrap();
    fs::create_dir_all(src.join("notes")).unwrap();
    fs::write(src.join("notes/todo.txt"), b"water the plants\n").unwrap();
    env.backup(&[src.to_str().unwrap(), "--type", "incremental"]);
    (env, src)
}

/// Per snapshot found in: how many matches.
fn hits(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["hits"].as_u64().unwrap())
        .collect()
}

#[test]
fn find_names_what_each_snapshot_holds_by_name_or_path() {
    let (env, src) = three_snapshots();
    let found = env.json(&["find", "*.jpg"]);
    assert_eq!(hits(&found), vec![1, 1], "{found}");
    assert_eq!(
        found[0]["matches"][0]["path"].as_str().unwrap(),
        src.join("photos/beach.jpg").to_str().unwrap()
    );
    assert_eq!(found[0]["matches"][0]["size"], 90_000);
    assert_eq!(hits(&env.json(&["find", "-i", "*.jpg"])), vec![1, 2]);
    assert_eq!(
        hits(&env.json(&["find", "*.jpg", "--snapshot", "latest"])),
        vec![1]
    );
    // With a slash, a pattern is matched against the whole path; names match directories too.
    assert_eq!(hits(&env.json(&["find", "notes/*.txt"])), vec![1]);
    assert_eq!(hits(&env.json(&["find", "photos"])), vec![1, 1]);
    assert_eq!(hits(&env.json(&["find", "*.pdf"])), Vec::<u64>::new());
    // restic's --oldest and --newest bound the modification time.
    assert_eq!(
        hits(&env.json(&["find", "*.jpg", "--oldest", "2000-01-01"])),
        vec![1, 1]
    );
    assert_eq!(
        hits(&env.json(&["find", "*.jpg", "--newest", "2000-01-01 12:00"])),
        Vec::<u64>::new()
    );
    assert_eq!(
        env.run(&["find", "*.jpg", "--newest", "soon"])
            .status
            .code(),
        Some(2)
    );
    let text = env.ok(&["find", "todo.txt"]);
    assert!(text.contains("notes/todo.txt"), "{text}");
    assert!(text.contains("1 hit in 1 snapshot of 3"), "{text}");
    let out = env.run(&["find", "[oops"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("[oops"));
}

#[test]
fn dump_writes_a_file_byte_for_byte_and_a_directory_as_a_tar_archive() {
    let (env, src) = three_snapshots();
    std::os::unix::fs::symlink("photos/beach.jpg", src.join("link")).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let beach = src.join("photos/beach.jpg");
    let out = env
        .cmd(&["dump", "latest", beach.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, fs::read(&beach).unwrap());

    // A directory comes as a tar archive that the system's tar reads back.
    let archive = env.path("src.tar");
    env.ok(&[
        "dump",
        "latest",
        src.to_str().unwrap(),
        "--target",
        archive.to_str().unwrap(),
    ]);
    let unpacked = env.path("unpacked");
    fs::create_dir_all(&unpacked).unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", stderr(&tar));
    let back = unpacked.join(src.strip_prefix("/").unwrap());
    assert_eq!(contents(&back), contents(&src));
    assert_eq!(
        fs::read_link(back.join("link")).unwrap(),
        Path::new("photos/beach.jpg")
    );
    // The whole snapshot, to standard output.
    let whole = env.cmd(&["dump", "latest", "/"]).output().unwrap();
    assert!(whole.status.success(), "{}", stderr(&whole));
    assert!(whole.stdout.len() > 90_000 && whole.stdout.len() % 512 == 0);

    // Damaged data: a clear error naming the file, and less than the file written. The
    // largest pack the last backup made holds the new file's data.
    let before = files_under(&env.repo.join("data"));
    let big = src.join("big.bin");
    fs::write(&big, noise(300_000, 9)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let new = files_under(&env.repo.join("data"))
        .into_iter()
        .filter(|p| !before.contains(p))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    flip(&new);
    let out = env
        .cmd(&["dump", "latest", big.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("big.bin"), "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged"), "{}", stderr(&out));
    assert!(out.stdout.len() < 300_000);
    // Which file a damaged blob hits: check names the blob, find --blob the file.
    let out = env
        .cmd(&["check", "--read-data", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let report = parse_json(&String::from_utf8(out.stdout).unwrap());
    let blob = report["damage"]["blobs"][0][1]
        .as_str()
        .unwrap()
        .to_string();
    let hit = env.json(&["find", "--blob", &blob[..12], "--snapshot", "latest"]);
    assert_eq!(hits(&hit), vec![1], "{hit}");
    assert_eq!(hit[0]["matches"][0]["path"], big.to_str().unwrap());
    let out = env.run(&["dump", "latest", "/no/such/path"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not in the snapshot"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stats_count_what_a_restore_writes_and_the_distinct_data_stored() {
    let (env, src) = three_snapshots();
    let files_now = files_under(&src);
    let bytes_now: u64 = files_now
        .iter()
        .map(|f| fs::metadata(f).unwrap().len())
        .sum();
    let latest = env.json(&["stats", "latest"]);
    assert_eq!(latest["mode"], "restore-size");
    assert_eq!(latest["totals"]["files"], files_now.len() as u64);
    assert_eq!(latest["totals"]["bytes"], bytes_now);
    // Three snapshots restore three times over; their distinct data is stored once.
    let all = env.json(&["stats"]);
    assert_eq!(all["totals"]["snapshots"], 3);
    assert_eq!(
        all["totals"]["files"].as_u64().unwrap(),
        12 + 13 + 15,
        "12 files, then beach.jpg, then two more"
    );
    let raw = env.json(&["stats", "--mode", "raw-data"]);
    let plain = raw["totals"]["bytes"].as_u64().unwrap();
    assert!(
        plain >= bytes_now && plain < bytes_now + 64 * 1024,
        "distinct data {plain} is about the latest tree's {bytes_now} plus its listings"
    );
    let stored = raw["totals"]["stored_bytes"].as_u64().unwrap();
    assert!(
        stored > 0 && stored < plain,
        "compressed: {stored} < {plain}"
    );
    let text = env.ok(&["stats", "--mode", "raw-data"]);
    assert!(text.contains("Total blobs:"), "{text}");
}

#[test]
fn tags_change_in_place_and_forget_keeps_what_is_recent_or_tagged() {
    let (env, _) = three_snapshots();
    let ids: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    // The second snapshot, the base of the third.
    let changed = env.json(&["tag", &ids[1][..8], "--add", "keep,yearly"]);
    assert_eq!(changed["changed"].as_array().unwrap().len(), 1);
    let tagged = env.json(&["snapshots", "--tag", "keep"]);
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    assert_eq!(tagged[0]["tags"], serde_json::json!(["keep", "yearly"]));
    // The old id is gone; the new one carries the same tree.
    assert_ne!(tagged[0]["id"].as_str().unwrap(), ids[1]);
    assert_eq!(env.snapshots().len(), 3);
    // Asked again, nothing changes; --remove and --set change only what they name.
    let again = env.json(&["tag", "--tag", "keep", "--add", "keep"]);
    assert_eq!(again["unchanged"], 1);
    env.ok(&["tag", "--tag", "keep", "--remove", "yearly"]);
    assert_eq!(
        env.json(&["snapshots", "--tag", "keep"])[0]["tags"],
        serde_json::json!(["keep"])
    );
    env.ok(&["tag", "latest", "--set", "last"]);
    // An incremental whose base was re-tagged still compares with it.
    env.ok(&["diff", "latest"]);
    let out = env.run(&["tag", "latest"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--add, --remove or --set"));

    // Everything was made within the hour: --keep-within 1h keeps all.
    let plan = env.json(&["forget", "--keep-within", "1h", "--dry-run"]);
    assert_eq!(plan["removed"].as_array().unwrap().len(), 0, "{plan}");
    let out = env.run(&["forget", "--keep-within", "1x"]);
    assert_eq!(out.status.code(), Some(2));
    // --keep-tag keeps the tagged ones, and the rest go.
    let done = env.json(&["forget", "--keep-tag", "keep", "--keep-tag", "last"]);
    assert_eq!(done["removed"].as_array().unwrap().len(), 1, "{done}");
    let left: Vec<serde_json::Value> = env.snapshots().iter().map(|s| s["tags"].clone()).collect();
    assert_eq!(
        left,
        vec![serde_json::json!(["keep"]), serde_json::json!(["last"])]
    );
}

/// Writes a lock file as a kura process would (`host`, `pid`, refreshed at `time`).
fn plant_lock(env: &Env, name: &str, host: &str, pid: u32, time: &str) {
    let dir = env.repo.join("locks");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join(name),
        format!(r#"{{"host":"{host}","pid":{pid},"time":"{time}","exclusive":true}}"#),
    )
    .unwrap();
}

#[test]
fn unlock_removes_locks_of_gone_processes_and_on_request_every_lock() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 3, 1);
    let now = jiff::Timestamp::now().to_string();
    let here = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // One of another host, fresh, blocks a backup.
    plant_lock(&env, "bb", "elsewhere", 4242, &now);
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    assert!(stderr(&out).contains("elsewhere"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kura unlock --remove-all"),
        "{}",
        stderr(&out)
    );
    // A crashed process of this host (no such pid) is stale: unlock removes only that one.
    plant_lock(&env, "aa", here.trim(), 0x3fff_fff0, &now);
    let first = env.json(&["unlock"]);
    assert_eq!(first["removed"].as_array().unwrap().len(), 1, "{first}");
    assert_eq!(first["removed"][0]["name"], "aa");
    assert_eq!(first["left"][0]["host"], "elsewhere");
    assert_eq!(
        env.run(&["backup", src.to_str().unwrap()]).status.code(),
        Some(12)
    );
    let all = env.json(&["unlock", "--remove-all"]);
    assert_eq!(all["removed"][0]["name"], "bb");
    assert_eq!(all["left"].as_array().unwrap().len(), 0);
    env.backup(&[src.to_str().unwrap()]);
    // An unreadable lock file blocks everyone until unlock removes it.
    fs::write(env.repo.join("locks/cc"), b"{not json").unwrap();
    let out = env.run(&["backup", src.to_str().unwrap()]);
    assert!(stderr(&out).contains("kura unlock"), "{}", stderr(&out));
    env.ok(&["unlock"]);
    env.backup(&[src.to_str().unwrap()]);
}

#[test]
fn find_dump_stats_tag_and_unlock_work_through_the_service() {
    let alice = Member::start("alice");
    alice.init();
    let src = alice.path("src");
    make_tree(&src, 6, 5);
    fs::write(src.join("report.pdf"), noise(40_000, 8)).unwrap();
    alice.backup(&src);
    let found = alice.json(&["find", "*.pdf"]);
    assert_eq!(hits(&found), vec![1], "{found}");
    let report = src.join("report.pdf");
    let out = alice
        .cmd(&["dump", "latest", report.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, fs::read(&report).unwrap());
    let stats = alice.json(&["stats", "--mode", "raw-data"]);
    assert!(stats["totals"]["blobs"].as_u64().unwrap() > 6, "{stats}");
    let tagged = alice.json(&["tag", "latest", "--add", "monthly"]);
    assert_eq!(tagged["changed"].as_array().unwrap().len(), 1, "{tagged}");
    assert_eq!(
        alice
            .json(&["snapshots", "--tag", "monthly"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let unlocked = alice.json(&["unlock"]);
    assert_eq!(unlocked["left"].as_array().unwrap().len(), 0, "{unlocked}");
    // The retention rules by age and by tag, at the service.
    alice.backup(&src);
    let within = alice.json(&["forget", "--keep-within", "1d", "--dry-run"]);
    assert_eq!(within["removed"].as_array().unwrap().len(), 0, "{within}");
    let tagged = alice.json(&["forget", "--keep-tag", "monthly"]);
    assert_eq!(tagged["removed"].as_array().unwrap().len(), 1, "{tagged}");
    assert_eq!(
        alice.json(&["snapshots"])[0]["tags"],
        serde_json::json!(["monthly"])
    );
}

#[test]
fn backup_inputs_come_from_a_list_a_pipe_or_only_a_dry_run() {
    let env = Env::new();
    env.init();
    let (a, b) = (env.path("a"), env.path("b"));
    make_tree(&a, 4, 1);
    make_tree(&b, 4, 2);
    // A dry run reads everything and says what a backup would add, and writes nothing.
    let before = files_under(&env.repo);
    let dry = env.json(&["backup", "--dry-run", a.to_str().unwrap()]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["summary"]["files"], 4);
    let would_add = dry["summary"]["data_added"].as_u64().unwrap();
    assert!(would_add > 70_000, "{dry}");
    assert_eq!(files_under(&env.repo), before, "nothing written");
    assert!(env.snapshots().is_empty());
    let done = env.backup(&[a.to_str().unwrap()]);
    assert_eq!(done["summary"]["data_added"].as_u64().unwrap(), would_add);
    // Stored sizes agree to a few bytes: workers fill packs in a different order each run,
    // and a pack's header takes a byte more or less.
    let (stored, would_store) = (
        done["summary"]["stored_added"].as_u64().unwrap(),
        dry["summary"]["stored_added"].as_u64().unwrap(),
    );
    assert!(
        stored.abs_diff(would_store) <= 64,
        "{stored} vs {would_store}"
    );
    let again = env.json(&["backup", "--dry-run", a.to_str().unwrap()]);
    assert_eq!(again["summary"]["data_added"], 0);
    assert_eq!(again["summary"]["files_unchanged"], 4);

    // Paths from a list file.
    let list = env.path("list.txt");
    fs::write(
        &list,
        format!("# what to keep\n{}\n\n{}\n", a.display(), b.display()),
    )
    .unwrap();
    let listed = env.backup(&["--files-from", list.to_str().unwrap()]);
    assert_eq!(listed["paths"].as_array().unwrap().len(), 2, "{listed}");
    fs::write(&list, "# nothing\n").unwrap();
    let out = env.run(&["backup", "--files-from", list.to_str().unwrap()]);
    assert!(stderr(&out).contains("lists no path"), "{}", stderr(&out));

    // A database dump piped in, kept as /db.sql.
    let dump = noise(200_000, 11);
    let mut c = env.cmd(&["backup", "--stdin", "--stdin-filename", "db.sql", "--json"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(&dump).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let piped = parse_json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(piped["paths"], serde_json::json!(["/db.sql"]));
    let back = env.cmd(&["dump", "latest", "/db.sql"]).output().unwrap();
    assert_eq!(back.stdout, dump);
    let listing = env.json(&["ls", "latest"]);
    assert_eq!(
        listing.as_array().unwrap().len(),
        1,
        "only the file: {listing}"
    );
    // Nothing is left spooled on this machine.
    assert!(files_under(&env.state).iter().all(|p| {
        !p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("stdin-")
    }),);
    let out = env.run(&["backup", "--stdin", "--stdin-filename", "a/b"]);
    assert!(!out.status.success());
}

/// Runs `cmd` (a `kura copy --json`) with the source's passphrase; what it printed.
fn copy_from(mut cmd: std::process::Command) -> serde_json::Value {
    cmd.env("KURA_FROM_PASSWORD", "correct horse");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    parse_json(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn copy_brings_snapshots_into_another_repository_once_and_deduplicated() {
    let (from, src) = three_snapshots();
    let to = Env::new();
    to.init();
    // The target already holds most of the data, backed up by itself.
    let own = to.backup(&[src.to_str().unwrap()]);
    let args = |extra: &[&str]| {
        let mut a = vec!["copy", "--from-repo", from.repo.to_str().unwrap(), "--json"];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        copy_from(to.cmd(&a))
    };
    let first = run(&[]);
    assert_eq!(first["copied"].as_array().unwrap().len(), 3, "{first}");
    let data = first["data_added"].as_u64().unwrap();
    assert!(
        data < own["summary"]["data_added"].as_u64().unwrap() / 2,
        "only what the target lacked: {first}"
    );
    assert_eq!(to.snapshots().len(), 4);
    // Each copy restores to exactly its source.
    let t = to.path("restored");
    to.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&restored(&t, &src)), contents(&src));
    let found = to.json(&["find", "beach.jpg"]);
    assert_eq!(
        hits(&found),
        vec![1, 1, 1],
        "the target's own and two copies"
    );
    // The incremental's base is copied too, so it still compares with it.
    let incremental = first["copied"][2]["to"].as_str().unwrap();
    let diff = to.ok(&["diff", &incremental[..12]]);
    assert!(diff.contains("todo.txt"), "{diff}");
    // Asked again, nothing is copied twice.
    let again = run(&[]);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0);
    assert_eq!(again["present"].as_array().unwrap().len(), 3);
    assert_eq!(again["data_added"], 0);
    // A wrong source passphrase, or the target itself as the source: clear refusals.
    let a = args(&[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = to
        .cmd(&a)
        .env("KURA_FROM_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", stderr(&out));
    let out = to
        .cmd(&["copy", "--from-repo", to.repo.to_str().unwrap()])
        .env("KURA_FROM_PASSWORD", "correct horse")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("same repository"), "{}", stderr(&out));
}

#[test]
fn copy_moves_a_local_repository_to_the_service_and_back() {
    let (from, src) = three_snapshots();
    let alice = Member::start("alice");
    alice.init();
    let copied = copy_from(alice.cmd(&[
        "--json",
        "copy",
        "--from-repo",
        from.repo.to_str().unwrap(),
        "latest",
    ]));
    assert_eq!(copied["copied"].as_array().unwrap().len(), 1, "{copied}");
    alice.restore_and_compare(&src);
    // Back from the service into a new local repository, logged in with the service options.
    let back = Env::new();
    back.init();
    let out = back
        .cmd(&["--json", "copy", "--from-repo", &alice.svc.url])
        .env("KURA_USER", &alice.user)
        .env("KURA_USER_PASSWORD", &alice.password)
        .env("KURA_SERVER_FINGERPRINT", &alice.svc.fingerprint)
        .env("KURA_FROM_PASSWORD", alice.passphrase())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let copied = parse_json(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(copied["copied"].as_array().unwrap().len(), 1, "{copied}");
    let t = back.path("t");
    back.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&restored(&t, &src)), contents(&src));
}

/// The JSON lines a command wrote on stderr with `--json-progress`.
fn progress_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn long_commands_report_progress_as_json_lines_for_front_ends() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 30, 4);
    let out = env
        .cmd(&["backup", src.to_str().unwrap(), "--json", "--json-progress"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // stdout keeps its one JSON document.
    let result = parse_json(&String::from_utf8(out.stdout.clone()).unwrap());
    let lines = progress_lines(&out);
    let done = lines.last().unwrap();
    assert_eq!(done["type"], "done", "{lines:?}");
    assert_eq!(done["verb"], "backup");
    assert_eq!(done["done"], result["summary"]["files"]);
    assert_eq!(done["total"], 30);
    assert_eq!(done["bytes_done"], done["bytes_total"]);
    assert_eq!(done["percent"], 100.0);
    assert!(lines.iter().all(|l| l["type"] == "status" || l == done));
    let t = env.path("t");
    let out = env
        .cmd(&[
            "restore",
            "latest",
            "--target",
            t.to_str().unwrap(),
            "--json-progress",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let done = progress_lines(&out).pop().unwrap();
    assert_eq!(
        (done["verb"].as_str(), done["type"].as_str()),
        (Some("restore"), Some("done"))
    );
    assert_eq!(done["done"], 30);
    // Without the flag, and not on a terminal, nothing but results.
    let out = env.run(&["check", "--read-data"]);
    assert!(progress_lines(&out).is_empty());
    let out = env
        .cmd(&["check", "--read-data", "--json-progress"])
        .output()
        .unwrap();
    let done = progress_lines(&out).pop().unwrap();
    assert_eq!(done["verb"], "check");
    assert_eq!(done["done"], done["total"]);
}

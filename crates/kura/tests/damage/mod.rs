//! Damage a user can recover from (issue 14): a damaged or missing directory listing costs only
//! what is under it, in a local repository and through the service.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::fixture::*;

/// Spoils every blob of a pack (a byte in every 16 before its header), so each one fails
/// authentication while the pack's header still lists them.
fn spoil_every_blob(pack: &Path) {
    let mut b = fs::read(pack).unwrap();
    let trailer = 4 + 16 + 1 + 4;
    let at = b.len() - trailer;
    let header = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    for i in (0..at - header).step_by(16) {
        b[i] ^= 0x55;
    }
    fs::write(pack, b).unwrap();
}

/// A source with `keep/` and `lose/`, each holding files: `lose/` is backed up first, on
/// its own in a tree pack of that backup; `keep/` joins it in the second backup, whose
/// snapshot takes `lose/`'s listing from the first one.
/// `packs` lists the stored packs as (`data/NAME`, length); returns the first backup's tree
/// pack, which holds `lose/`'s listing.
fn two_listings(
    src: &Path,
    packs: impl Fn() -> Vec<(String, u64)>,
    backup: impl Fn(&Path),
) -> String {
    fs::create_dir_all(src.join("lose")).unwrap();
    fs::write(src.join("lose/a"), noise(300_000, 1)).unwrap();
    fs::write(src.join("lose/b"), noise(200_000, 2)).unwrap();
    backup(src);
    // The data pack holds half a megabyte; the tree pack a few listings.
    let first = packs();
    let first_trees = first.iter().min_by_key(|(_, len)| *len).unwrap().0.clone();
    assert!(
        first.iter().filter(|(_, len)| *len < 100_000).count() == 1,
        "one small pack, the listings: {first:?}"
    );
    fs::create_dir_all(src.join("keep/deep")).unwrap();
    fs::write(src.join("keep/c"), noise(150_000, 3)).unwrap();
    fs::write(src.join("keep/deep/d"), noise(50_000, 4)).unwrap();
    fs::write(src.join("top"), b"at the top").unwrap();
    backup(src);
    first_trees
}

/// Restores the latest snapshot into `t` with `ok` (a command that must succeed) and asserts
/// it is `src`, entry for entry.
fn latest_restores_whole(ok: impl Fn(&[&str]) -> String, t: &Path, src: &Path) {
    ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&restored(t, src)), contents(src));
}

/// The relative paths of the files under `root`.
fn file_names(root: &Path) -> BTreeSet<PathBuf> {
    files_under(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

/// Restores the latest snapshot: exit code 3, `lose/` named as lost, everything else there
/// byte for byte.
fn restore_goes_past_the_lost_listing(
    run: impl Fn(&[&str]) -> std::process::Output,
    t: &Path,
    src: &Path,
) {
    let out = run(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let lose = src.join("lose");
    assert!(
        stderr(&out).contains(&format!("{}: its listing is damaged", lose.display())),
        "{}",
        stderr(&out)
    );
    let got = restored(t, src);
    let names = file_names(&got);
    let want: BTreeSet<PathBuf> = ["keep/c", "keep/deep/d", "top"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(names, want);
    for f in &want {
        assert_eq!(
            fs::read(got.join(f)).unwrap(),
            fs::read(src.join(f)).unwrap()
        );
    }
}

#[test]
fn a_damaged_listing_costs_only_the_directory_under_it() {
    let env = Env::new();
    env.init();
    let pack_files = || files_under(&env.repo.join("data"));
    let packs = || {
        pack_files()
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                (format!("data/{name}"), fs::metadata(p).unwrap().len())
            })
            .collect()
    };
    let src = env.path("src");
    let trees = two_listings(&src, packs, |src| {
        env.backup(&[src.to_str().unwrap()]);
    });
    let pack = pack_files()
        .into_iter()
        .find(|p| trees.ends_with(&*p.file_name().unwrap().to_string_lossy()))
        .unwrap();
    spoil_every_blob(&pack);
    restore_goes_past_the_lost_listing(|a| env.run(a), &env.path("r"), &src);
    // `ls` lists what it can read and names what it cannot.
    let out = env.run(&["ls", "latest"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("keep/deep/d") && !listed.contains("lose/a"),
        "{listed}"
    );
    assert!(
        stderr(&out).contains("its listing is damaged"),
        "{}",
        stderr(&out)
    );
    // Checked, repaired and backed up again, the latest snapshot has `lose/` back.
    assert_eq!(env.run(&["check", "--read-data"]).status.code(), Some(3));
    env.ok(&["repair", "packs"]);
    env.backup(&[src.to_str().unwrap()]);
    latest_restores_whole(|a| env.ok(a), &env.path("again"), &src);
    // The first snapshot's own listings are gone for good: its repair empties its root,
    // the others need nothing. Then a check finds nothing at all.
    assert_eq!(env.run(&["check", "--read-data"]).status.code(), Some(3));
    let dry = env.json(&["repair", "snapshots", "--dry-run"]);
    assert_eq!(dry.as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry[0]["dirs_emptied"][0], "/", "{dry}");
    let done = env.json(&["repair", "snapshots"]);
    assert_eq!(done.as_array().unwrap().len(), 1, "{done}");
    env.ok(&["check", "--read-data"]);
    let tagged: Vec<_> = env
        .snapshots()
        .into_iter()
        .filter(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "repaired")
        })
        .collect();
    assert_eq!(tagged.len(), 1);
    latest_restores_whole(|a| env.ok(a), &env.path("latest-again"), &src);
}

#[test]
fn a_listing_the_service_lost_costs_only_the_directory_under_it() {
    let alice = Member::start("alice");
    alice.init();
    let packs = || {
        alice
            .conditions()
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["object"].as_str().unwrap().starts_with("data/"))
            .map(|o| {
                let name = o["object"].as_str().unwrap().to_string();
                (name, o["size"].as_u64().unwrap())
            })
            .collect()
    };
    let src = alice.path("src");
    let trees = two_listings(&src, packs, |src| {
        alice.backup(src);
    });
    for site in ["demo-east", "demo-west"] {
        fs::remove_file(alice.svc.demo_file(site, &trees)).unwrap();
    }
    let (code, _) = alice.svc.admin_json_code(&["verify"]);
    assert_eq!(code, 3);
    restore_goes_past_the_lost_listing(|a| alice.run(a), &alice.path("r"), &src);
    // A backup stores `lose/` again; the first snapshot, whose own listings were lost, is
    // repaired; then the client's check is clean and the latest snapshot whole.
    alice.backup(&src);
    assert_eq!(alice.run(&["check"]).status.code(), Some(3));
    let done = alice.json(&["repair", "snapshots"]);
    assert_eq!(done.as_array().unwrap().len(), 1, "{done}");
    alice.ok(&["check"]);
    alice.restore_and_compare(&src);
}

#[test]
fn a_backup_after_a_check_stores_damaged_data_again_and_heals_every_snapshot() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 12, 5);
    fs::write(src.join("big"), noise(3_000_000, 6)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    fs::write(src.join("later"), b"a second snapshot").unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let mut packs = files_under(&env.repo.join("data"));
    packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
    spoil_every_blob(packs.last().unwrap());
    // Before a check, a backup cannot know: its cache says the files are unchanged.
    let out = env.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("damaged blob"), "{}", stderr(&out));
    assert!(stderr(&out).contains("recorded"), "{}", stderr(&out));
    // A second check records nothing new.
    let again = env.run(&["check", "--read-data"]);
    assert!(
        stderr(&again).contains("already recorded"),
        "{}",
        stderr(&again)
    );
    let healed = env.backup(&[src.to_str().unwrap()]);
    assert!(
        healed["summary"]["data_added"].as_u64().unwrap() >= 3_000_000,
        "the damaged data is stored again: {healed}"
    );
    // Every snapshot, the ones made before the damage too, restores whole.
    for (i, s) in env.snapshots().iter().enumerate() {
        let t = env.path(&format!("r{i}"));
        env.ok(&[
            "restore",
            s["id"].as_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
        ]);
        let got = restored(&t, &src);
        assert_eq!(
            fs::read(got.join("big")).unwrap(),
            fs::read(src.join("big")).unwrap()
        );
    }
    // The damaged pack is still there until repaired; then a check finds nothing.
    assert_eq!(env.run(&["check", "--read-data"]).status.code(), Some(3));
    let dry = env.json(&["repair", "packs", "--dry-run"]);
    assert_eq!(dry["packs_salvaged"], 1, "{dry}");
    assert_eq!(env.run(&["check", "--read-data"]).status.code(), Some(3));
    let done = env.json(&["repair", "packs"]);
    assert_eq!(done["packs_salvaged"], 1, "{done}");
    assert!(done["blobs_dropped"].as_u64().unwrap() >= 1, "{done}");
    env.ok(&["check", "--read-data"]);
    assert!(files_under(&env.repo.join("damage")).is_empty());
    // Every snapshot is whole again: nothing to rewrite.
    assert_eq!(env.json(&["repair", "snapshots"]), serde_json::json!([]));
    latest_restores_whole(|a| env.ok(a), &env.path("after-repair"), &src);
}

#[test]
fn a_damaged_snapshot_file_is_forgotten_by_id_and_blocks_nothing_else() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 6, 7);
    for i in 0..3 {
        fs::write(src.join("changing"), format!("generation {i}")).unwrap();
        env.backup(&[src.to_str().unwrap()]);
    }
    let ids: Vec<String> = env
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let file = |id: &str| env.repo.join("snapshots").join(id);
    fs::copy(file(&ids[0]), file(&ids[1])).unwrap();
    // The policy goes on over the snapshots it can read and leaves the damaged one.
    let out = env.run(&["forget", "--keep-last", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("left as it is"), "{}", stderr(&out));
    assert!(!file(&ids[0]).exists() && file(&ids[1]).exists() && file(&ids[2]).exists());
    // Prune cannot know what the damaged one needs, and says what to do.
    let out = env.run(&["prune"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("kura forget"), "{}", stderr(&out));
    // Forgotten by its id, it is gone; prune and check are clean.
    let out = env.json(&["forget", &ids[1]]);
    assert_eq!(out["removed_damaged"][0], ids[1].as_str(), "{out}");
    assert!(!file(&ids[1]).exists());
    env.ok(&["prune"]);
    env.ok(&["check", "--read-data"]);
}

#[test]
fn a_damaged_device_record_costs_only_what_that_device_stored() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 5, 8);
    env.backup(&[src.to_str().unwrap()]);
    let devices =
        || -> BTreeSet<PathBuf> { files_under(&env.repo.join("devices")).into_iter().collect() };
    let before = devices();
    let laptop = env.path("laptop-state");
    run_ok(env.cmd_as(&laptop, &["device", "add", "--name", "laptop"]));
    let record = devices().difference(&before).next().unwrap().clone();
    let other = env.path("other");
    make_tree(&other, 3, 9);
    run_ok(env.cmd_as(&laptop, &["backup", other.to_str().unwrap()]));
    fs::write(&record, noise(100, 1)).unwrap();
    // This machine backs up and restores as before.
    fs::write(src.join("new"), b"after the damage").unwrap();
    let made = env.backup(&[src.to_str().unwrap()]);
    let t = env.path("t");
    env.ok(&[
        "restore",
        made["id"].as_str().unwrap(),
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(contents(&restored(&t, &src)), contents(&src));
    // The laptop's snapshot cannot be opened: listed as unreadable, the others shown.
    let out = env.run(&["snapshots", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let out = env.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("device record"), "{}", stderr(&out));
    // Another machine can still join, and the laptop is told to join again.
    run_ok(env.cmd_as(
        &env.path("third-state"),
        &["device", "add", "--name", "third"],
    ));
    let out = env
        .cmd_as(&laptop, &["backup", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("kura device add"), "{}", stderr(&out));
}

#[test]
fn forget_and_prune_free_a_full_disk() {
    let env = Env::new();
    let disk = SmallDisk::mount(&env.repo, 24);
    env.init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("old"), noise(4_000_000, 21)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    fs::remove_file(src.join("old")).unwrap();
    fs::write(src.join("new"), noise(4_000_000, 22)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let filler = disk.fill();
    // Nothing more fits: a backup fails, but forget and prune still run.
    fs::write(src.join("more"), noise(1_000_000, 23)).unwrap();
    assert!(!env.run(&["backup", src.to_str().unwrap()]).status.success());
    fs::remove_file(src.join("more")).unwrap();
    env.ok(&["forget", "--keep-last", "1"]);
    let pruned = env.json(&["prune"]);
    assert_eq!(pruned["disk_was_full"], true, "{pruned}");
    assert!(
        pruned["bytes_freed"].as_u64().unwrap() >= 4_000_000,
        "{pruned}"
    );
    // With room again, the reserve is back and the repository whole.
    fs::remove_file(filler).unwrap();
    env.ok(&["check", "--read-data"]);
    latest_restores_whole(|a| env.ok(a), &env.path("t"), &src);
    env.backup(&[src.to_str().unwrap()]);
    assert_eq!(
        fs::metadata(env.repo.join("reserve")).unwrap().len(),
        4 << 20
    );
}

#[test]
fn index_files_lost_or_damaged_are_rebuilt_from_the_packs() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    make_tree(&src, 10, 12);
    env.backup(&[src.to_str().unwrap()]);
    fs::write(src.join("second"), noise(100_000, 13)).unwrap();
    env.backup(&[src.to_str().unwrap()]);
    let mut index = files_under(&env.repo.join("index"));
    index.sort();
    assert!(index.len() >= 2, "{index:?}");
    fs::remove_file(&index[0]).unwrap();
    fs::write(&index[1], noise(200, 14)).unwrap();
    // Prune would take the packs they list for unused: it refuses.
    let out = env.run(&["prune"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("index file"), "{}", stderr(&out));
    let dry = env.json(&["repair", "index", "--dry-run"]);
    assert_eq!(dry["index_files_unreadable"], 1, "{dry}");
    let done = env.json(&["repair", "index"]);
    assert!(done["packs_indexed"].as_u64().unwrap() >= 2, "{done}");
    assert_eq!(files_under(&env.repo.join("index")).len(), 1);
    env.ok(&["check", "--read-data"]);
    env.ok(&["prune"]);
    latest_restores_whole(|a| env.ok(a), &env.path("t"), &src);
}

#[test]
fn a_full_service_database_is_told_to_the_client_as_507() {
    let env = Env::new();
    let disk = SmallDisk::mount(&env.path("service"), 16);
    let svc = Service::start(&env);
    svc.add_user("alice", "alice password");
    let login = |svc: &Service| {
        svc.http()
            .post(format!("{}/v1/login", svc.url))
            .body(r#"{"user":"alice","password":"alice password"}"#)
            .send()
            .unwrap()
    };
    assert_eq!(login(&svc).status(), reqwest::StatusCode::OK);
    let filler = disk.fill();
    // A login writes its session: with the disk full, the client is told why.
    let refused = login(&svc);
    assert_eq!(refused.status(), reqwest::StatusCode::INSUFFICIENT_STORAGE);
    let said = refused.text().unwrap();
    assert!(said.contains("database is full"), "{said}");
    fs::remove_file(filler).unwrap();
    assert_eq!(login(&svc).status(), reqwest::StatusCode::OK);
}

#[test]
fn at_the_service_a_damaged_snapshot_device_record_or_key_file_costs_only_itself() {
    use kura_repo::{Backend, FileType};
    let alice = Member::start("alice");
    let code = alice.json(&["init"])["recovery_code"]
        .as_str()
        .unwrap()
        .to_string();
    let src = alice.path("src");
    make_tree(&src, 6, 15);
    for i in 0..3 {
        fs::write(src.join("changing"), format!("generation {i}")).unwrap();
        alice.backup(&src);
    }
    let b = alice.backend();
    let before = b.list(FileType::Device).unwrap();
    let laptop = alice.device(&alice.path("laptop-state"));
    laptop.ok(&["device", "add", "--name", "laptop"]);
    let laptop_id = b
        .list(FileType::Device)
        .unwrap()
        .into_iter()
        .find(|d| !before.contains(d))
        .unwrap();
    let mut snaps = b.list(FileType::Snapshot).unwrap();
    snaps.sort();
    // A snapshot file copied over another, a device record and a key file overwritten, all
    // through the service's own API, as a client with the account's password could.
    let first = b.read(FileType::Snapshot, &snaps[0]).unwrap();
    b.write(FileType::Snapshot, &snaps[1], &first).unwrap();
    b.write(FileType::Device, &laptop_id, &noise(100, 16))
        .unwrap();
    let passphrase = passphrase_key_file(&alice.json(&["key", "list"]));
    let good_key = b.read(FileType::Key, &passphrase).unwrap();
    b.write(FileType::Key, &passphrase, &noise(100, 17))
        .unwrap();
    // The key file is named, and the recovery code still opens the repository.
    let out = alice.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not parse"), "{}", stderr(&out));
    let out = alice
        .cmd(&["snapshots"])
        .env_remove("KURA_PASSWORD")
        .env("KURA_RECOVERY_CODE", &code)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "one snapshot file is damaged: {}",
        stderr(&out)
    );
    b.write(FileType::Key, &passphrase, &good_key).unwrap();
    // The damaged snapshot is forgotten by its id; the device record costs only the laptop.
    let forgot = alice.json(&["forget", &snaps[1]]);
    assert_eq!(forgot["removed_damaged"][0], snaps[1].as_str(), "{forgot}");
    let out = alice.run(&["check"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("device record"), "{}", stderr(&out));
    alice.backup(&src);
    latest_restores_whole(|a| alice.ok(a), &alice.path("t"), &src);
    let out = laptop.run(&["backup", src.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("kura device add"), "{}", stderr(&out));
}

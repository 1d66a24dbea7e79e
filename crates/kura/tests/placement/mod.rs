//! Placement through the real binary (`docs/requirements/placement.md` requirements 3-8): every
//! object the service stores gets two copies on the sites the rule picks, the member sees the
//! conditions, restores fall back to the other copy, placement runs move data when the rule changes
//! its answer, an outage is healed, a site with the wrong identity is never written, and checks
//! repair copies damaged at an S3 site.

mod mail;
mod s3;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::fixture::*;

/// Asserts that every object has good copies on exactly `sites`, primary first.
fn assert_placed(conditions: &Value, sites: &[&str]) {
    assert!(
        good_sites(conditions).iter().all(|s| s == sites),
        "not all on {sites:?}: {conditions}"
    );
}

/// Files under a directory site holding user 1's objects (not files being written).
fn files_at(site: &Path) -> usize {
    files_under(&site.join("users/1"))
        .iter()
        .filter(|f| !f.file_name().unwrap().to_string_lossy().contains('#'))
        .count()
}

/// Alice, whose home region is demo-east, after her first backup (a tree and 3 MB of noise)
/// on the demo sites; what `init` and `backup` printed.
struct FirstBackup {
    alice: Member,
    src: PathBuf,
    init: String,
    backup: String,
}

fn first_backup() -> FirstBackup {
    let alice = Member::start("alice");
    alice.svc.contract("alice", &["--home-region", "demo-east"]);
    let src = alice.path("src");
    make_tree(&src, 30, 7);
    fs::write(src.join("big"), noise(3_000_000, 9)).unwrap();
    let init = alice.init();
    let backup = alice.backup(&src);
    FirstBackup {
        alice,
        src,
        init,
        backup,
    }
}

#[test]
fn a_backup_says_where_it_was_stored() {
    let b = first_backup();
    assert!(b.init.contains("created repository"), "{}", b.init);
    assert!(
        b.backup
            .contains("stored at the service on demo-east, demo-west"),
        "{}",
        b.backup
    );
}

#[test]
fn every_object_gets_two_copies_where_the_rule_says() {
    // Primary on the safest site; the secondary on the safest one outside the home region
    // (demo-east is both the safest and the home region).
    let b = first_backup();
    let all = b.alice.conditions();
    let objects = all.as_array().unwrap();
    assert!(objects.len() > 5, "{all}");
    for o in objects {
        assert_eq!(o["degraded"], Value::Null, "{o}");
        let copies = o["copies"].as_array().unwrap();
        assert_eq!(copies.len(), 2, "{o}");
        for (c, (site, region)) in copies
            .iter()
            .zip([("demo-east", "demo-east"), ("demo-west", "demo-west")])
        {
            assert_eq!(c["site"], site);
            assert_eq!(c["region"], region);
            assert_eq!(c["status"], "ok");
            assert_eq!(c["algorithm"], "XChaCha20-Poly1305");
            assert_eq!(c["key_ref"], format!("{site}/v1"));
        }
    }
}

#[test]
fn the_conditions_name_keys_but_never_hold_one() {
    let b = first_backup();
    let all = b.alice.conditions();
    let keyring = fs::read_to_string(b.alice.svc.data.join("keyring.json")).unwrap();
    let keys: Value = serde_json::from_str(&keyring).unwrap();
    let east_key = keys["keys"]["demo-east"]["1"].as_str().unwrap();
    assert!(!all.to_string().contains(east_key));
    let text = b.alice.ok(&["conditions"]);
    assert!(
        text.contains("demo-west (region demo-west): ok, XChaCha20-Poly1305, key demo-west/v1"),
        "{text}"
    );
}

#[test]
fn a_snapshots_conditions_cover_what_it_needs() {
    // The snapshot, its index and its packs; and the client keeps the latest.
    let b = first_backup();
    let snap = b.alice.json(&["conditions", "latest"]);
    let names: Vec<&str> = snap
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].as_str().unwrap())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("snapshots/")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("data/")), "{names:?}");
    assert!(!names.contains(&"config"), "{names:?}");
    let kept = b.alice.json(&["conditions", "--cached"]);
    assert_eq!(kept, snap);
}

#[test]
fn the_member_is_told_the_conditions() {
    // In the message history and by a message in the outbox.
    let b = first_backup();
    let messages = b.alice.json(&["messages"]);
    assert_eq!(messages[0]["kind"], "conditions", "{messages}");
    assert!(
        messages[0]["body"]
            .as_str()
            .unwrap()
            .contains("demo-east (region demo-east): ok"),
        "{messages}"
    );
    let outbox: Vec<_> = fs::read_dir(b.alice.svc.data.join("outbox"))
        .unwrap()
        .collect();
    assert_eq!(outbox.len(), 1);
    let mail = fs::read_to_string(outbox[0].as_ref().unwrap().path()).unwrap();
    assert!(
        mail.contains("Subject: Storage conditions of your backup"),
        "{mail}"
    );
}

/// [`first_backup`], after which the primary (demo-east) lost every copy of user 1's packs;
/// how many files demo-east held before, and how many packs were lost.
fn primary_lost_its_packs() -> (FirstBackup, usize, usize) {
    let b = first_backup();
    let east = b.alice.svc.data.join("sites/east");
    let held = files_at(&east);
    let lost = fs::read_dir(east.join("users/1/data")).unwrap().count();
    fs::remove_dir_all(east.join("users/1/data")).unwrap();
    (b, held, lost)
}

/// How many objects' primary copies are recorded as failed.
fn failed_primaries(conditions: &Value) -> usize {
    conditions
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["copies"][0]["status"] == "failed")
        .count()
}

#[test]
fn restores_fall_back_to_the_secondary_copy() {
    let (b, _, lost) = primary_lost_its_packs();
    b.alice.restore_and_compare(&b.src);
    b.alice.ok(&["check", "--read-data"]);
    let after = b.alice.conditions();
    assert_eq!(
        failed_primaries(&after),
        lost,
        "reads of lost copies are recorded: {after}"
    );
}

#[test]
fn a_placement_run_repairs_the_primary_from_the_secondary() {
    let (b, held, _) = primary_lost_its_packs();
    b.alice.restore_and_compare(&b.src);
    let failed = failed_primaries(&b.alice.conditions());
    let r = b.alice.svc.admin_json(&["place"]);
    assert_eq!(r["copied"].as_u64(), Some(failed as u64), "{r}");
    assert_eq!(r["pending"], 0, "{r}");
    assert_eq!(files_at(&b.alice.svc.data.join("sites/east")), held);
    assert_placed(&b.alice.conditions(), &["demo-east", "demo-west"]);
}

/// [`first_backup`], then a risk feed that makes demo-north the safest site; the first
/// placement run's report.
fn north_made_safest() -> (FirstBackup, Value) {
    let b = first_backup();
    let feed = b.alice.path("feed.csv");
    fs::write(&feed, "region,earthquake,flood\ndemo-north,0.005,0.005\n").unwrap();
    b.alice
        .svc
        .admin(&["risk", "import", feed.to_str().unwrap()]);
    let r = b.alice.svc.admin_json(&["place"]);
    (b, r)
}

#[test]
fn a_risk_feed_moves_everything_to_the_safest_site() {
    // With the copy outside the home region kept on demo-west, and nothing left on demo-east.
    let (b, r) = north_made_safest();
    assert!(r["copied"].as_u64().unwrap() > 5, "{r}");
    assert_eq!(r["deleted"], r["copied"], "{r}");
    assert_eq!(r["notified"], 1, "{r}");
    assert_placed(&b.alice.conditions(), &["demo-north", "demo-west"]);
    assert_eq!(files_at(&b.alice.svc.data.join("sites/east")), 0);
    // A second run finds nothing to do.
    let r = b.alice.svc.admin_json(&["place"]);
    assert_eq!(
        (r["copied"].as_u64(), r["deleted"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_member_who_moves_gets_the_second_copy_outside_the_new_home_region() {
    // The member moves to demo-north: the second copy leaves it for the safest other region.
    let (b, _) = north_made_safest();
    let alice = &b.alice;
    alice
        .svc
        .contract("alice", &["--home-region", "demo-north"]);
    alice.svc.admin(&["place"]);
    let moved = alice.conditions();
    assert_placed(&moved, &["demo-north", "demo-east"]);
    alice.restore_and_compare(&b.src);
    let messages = alice.json(&["messages"]);
    let kinds: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["conditions", "placement", "placement"]);
    let sites = alice.svc.admin_json(&["sites"]);
    let east = &sites.as_array().unwrap()[0];
    assert_eq!(
        (east["id"].as_str(), east["copies"].as_u64()),
        (
            Some("demo-east"),
            Some(moved.as_array().unwrap().len() as u64)
        )
    );
}

#[test]
fn new_copies_are_sealed_under_a_key_rotated_while_the_service_runs() {
    // And the copies sealed under the old key still open.
    let (b, _) = north_made_safest();
    let alice = &b.alice;
    assert_eq!(
        alice.svc.admin_json(&["keys", "rotate", "demo-north"])["key_ref"],
        "demo-north/v2"
    );
    let before = alice.conditions().as_array().unwrap().len();
    fs::write(b.src.join("new"), noise(100_000, 77)).unwrap();
    alice.backup(&b.src);
    let now = alice.conditions();
    let north_keys: Vec<&str> = now
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["copies"][0]["key_ref"].as_str().unwrap())
        .collect();
    assert!(north_keys.contains(&"demo-north/v1"), "{north_keys:?}");
    assert!(north_keys.contains(&"demo-north/v2"), "{north_keys:?}");
    assert!(north_keys.len() > before);
    alice.restore_and_compare(&b.src);
}

#[test]
fn a_placement_run_killed_at_any_point_leaves_two_good_copies() {
    let alice = Member::start("alice");
    alice.svc.contract("alice", &["--home-region", "demo-east"]);
    let src = alice.path("src");
    make_tree(&src, 20, 5);
    for i in 0..4 {
        fs::write(src.join(format!("big{i}")), noise(12_000_000, 40 + i)).unwrap();
    }
    alice.init();
    alice.backup(&src);
    // Everything is to move from demo-east to demo-north.
    let feed = alice.path("feed.csv");
    fs::write(&feed, "region,flood\ndemo-north,0.01\n").unwrap();
    alice.svc.admin(&["risk", "import", feed.to_str().unwrap()]);

    let good_copies_exist = || {
        let all = alice.conditions();
        for o in all.as_array().unwrap() {
            let object = o["object"].as_str().unwrap();
            let on_disk = o["copies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == "ok")
                .filter(|c| {
                    alice
                        .svc
                        .demo_file(c["site"].as_str().unwrap(), object)
                        .is_file()
                })
                .count();
            assert!(on_disk >= 2, "{object} has {on_disk} good copies: {o}");
        }
        all
    };
    let mut finished = false;
    for delay_ms in [20, 50, 100, 200, 400, 800, 1600, 3200] {
        let mut run = alice
            .svc
            .admin_cmd(&["place"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = run.kill(); // SIGKILL, wherever it is
        finished = run.wait().unwrap().success();
        good_copies_exist();
        if finished {
            break;
        }
    }
    if !finished {
        alice.svc.admin(&["place"]);
    }
    let all = good_copies_exist();
    assert_placed(&all, &["demo-north", "demo-west"]);
    assert_eq!(files_at(&alice.svc.data.join("sites/east")), 0);
    alice.restore_and_compare(&src);
}

#[test]
fn a_repository_from_before_placement_is_stored_on_the_sites() {
    let env = Env::new();
    // A repository as an earlier service kept it: a plain directory for user 1.
    let src = env.path("src");
    make_tree(&src, 15, 11);
    let local = |args: &[&str]| {
        run_ok(
            env.cmd_as(&env.path("state-old"), args)
                .env("KURA_PASSWORD", "encryption passphrase of alice"),
        )
    };
    local(&["init"]);
    local(&["backup", src.to_str().unwrap()]);
    let op = Operator::new(&env, "service", None);
    op.add_user("alice", "alice password");
    fs::create_dir_all(op.data.join("users/1")).unwrap();
    fs::rename(&env.repo, op.data.join("users/1/repo")).unwrap();

    let svc = Service::start(&env);
    let data = svc.data.clone();
    let alice = Member::on_existing(env, svc, "alice");
    assert!(data.join("users/1/repo.imported").is_dir());
    assert!(!data.join("users/1/repo").exists());
    let all = alice.conditions();
    assert!(all.as_array().unwrap().len() > 3, "{all}");
    assert_placed(&all, &["demo-east", "demo-west"]);
    alice.restore_and_compare(&src);
}

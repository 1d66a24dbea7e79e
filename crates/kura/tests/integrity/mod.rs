//! Integrity checks and fraudulent sites through the real binary (`docs/requirements/placement.md`
//! requirements 9 and 10), by fault injection on the demo sites: bytes flipped in copies (media
//! faults, repaired), a copy changed consistently under its site's key (tampering, recorded and
//! kept), an object deleted at both sites (lost, with the snapshots that need it), and a site whose
//! identity is swapped (counted, passed over, members told at the threshold).

mod fraud;
mod loss;
mod tampering;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::fixture::*;

/// The objects of the conditions, by name, with their copies.
fn objects(conditions: &Value) -> Vec<(String, Vec<Value>)> {
    conditions
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["object"].as_str().unwrap().to_string(),
                o["copies"].as_array().unwrap().clone(),
            )
        })
        .collect()
}

/// The copies of one object: (site, status), primary first.
fn copies_of(member: &Member, object: &str) -> Vec<(String, String)> {
    let (_, copies) = objects(&member.conditions())
        .into_iter()
        .find(|(o, _)| o == object)
        .unwrap();
    copies
        .iter()
        .map(|c| {
            (
                c["site"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Asserts that a check finds every object sound.
fn all_sound(svc: &Service) {
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!((code, &v["sound"]), (0, &v["objects"]), "{v}");
}

/// Alice (home region demo-east) after two backups, the second adding a file: her objects,
/// her two snapshots, and the largest pack of the first backup, which holds file data both
/// snapshots need.
struct TwoSnapshots {
    alice: Member,
    src: PathBuf,
    all: Vec<(String, Vec<Value>)>,
    snapshots: BTreeSet<String>,
    shared_pack: String,
}

fn two_snapshots() -> TwoSnapshots {
    let alice = Member::start("alice");
    alice.svc.contract("alice", &["--home-region", "demo-east"]);
    let src = alice.path("src");
    make_tree(&src, 40, 3);
    fs::write(src.join("big"), noise(6_000_000, 4)).unwrap();
    alice.init();
    alice.backup(&src);
    let shared_pack = alice
        .conditions()
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["object"].as_str().unwrap().starts_with("data/"))
        .max_by_key(|o| o["size"].as_u64().unwrap())
        .unwrap()["object"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(src.join("later"), noise(200_000, 5)).unwrap();
    alice.backup(&src);
    let all = objects(&alice.conditions());
    let snapshots: BTreeSet<String> = all
        .iter()
        .filter_map(|(o, _)| o.strip_prefix("snapshots/").map(str::to_string))
        .collect();
    assert_eq!(snapshots.len(), 2);
    TwoSnapshots {
        alice,
        src,
        all,
        snapshots,
        shared_pack,
    }
}

#[test]
fn everything_is_sound_after_a_backup() {
    let t = two_snapshots();
    let (code, v) = t.alice.svc.admin_json_code(&["verify"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["objects"].as_u64(), Some(t.all.len() as u64), "{v}");
    assert_eq!(v["sound"], v["objects"], "{v}");
    assert_eq!(v["copies"].as_u64(), Some(2 * t.all.len() as u64), "{v}");
}

#[test]
fn a_check_repairs_media_faults() {
    // A byte flipped in seven objects at demo-west, and one copy gone. Every one is found and
    // repaired, and the repairs check out.
    let t = two_snapshots();
    let svc = &t.alice.svc;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut picked = BTreeSet::new();
    while picked.len() < 7 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let (object, _) = &t.all[(rng % t.all.len() as u64) as usize];
        if *object != t.shared_pack {
            picked.insert(object.clone());
        }
    }
    for object in &picked {
        flip(&svc.demo_file("demo-west", object));
    }
    let gone = t
        .all
        .iter()
        .map(|(o, _)| o)
        .find(|o| o.starts_with("index/") && !picked.contains(*o))
        .unwrap()
        .clone();
    fs::remove_file(svc.demo_file("demo-east", &gone)).unwrap();
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["media_faults"], 8, "{v}");
    assert_eq!(v["repaired"], 8, "{v}");
    assert_eq!(v["tampered"], 0, "{v}");
    let faults: BTreeSet<&str> = v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["object"].as_str().unwrap())
        .collect();
    let mut expected: BTreeSet<&str> = picked.iter().map(String::as_str).collect();
    expected.insert(&gone);
    assert_eq!(faults, expected);
    assert!(svc.demo_file("demo-east", &gone).is_file());
    all_sound(svc);
    assert_eq!(svc.incidents("media_fault").len(), 8);
}

#[test]
fn a_sample_checks_the_least_recently_checked_objects_first() {
    let alice = Member::start("alice");
    let src = alice.path("src");
    make_tree(&src, 20, 8);
    alice.init();
    alice.backup(&src);
    let total = alice.conditions().as_array().unwrap().len() as u64;
    let half = total.div_ceil(2);
    let (_, a) = alice.svc.admin_json_code(&["verify", "--sample", "50"]);
    let (_, b) = alice.svc.admin_json_code(&["verify", "--sample", "50%"]);
    assert_eq!(a["objects"].as_u64(), Some(half), "{a}");
    assert_eq!(b["objects"].as_u64(), Some(half), "{b}");
    let out = alice.svc.admin_run(&["verify", "--sample", "0"]);
    assert_eq!(out.status.code(), Some(2), "a sample of 0% is refused");
    // `--member` names a user; `--user` (a client's option) is refused, not ignored, and a
    // KURA_USER in the environment (a client's setting) filters nothing.
    let out = alice.svc.admin_run(&["verify", "--member", "nobody"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nobody"));
    let out = alice.svc.admin_run(&["verify", "--user", "alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("does not use --user"),
        "{}",
        stderr(&out)
    );
    let out = alice
        .svc
        .admin_cmd(&["verify"])
        .env("KURA_USER", "nobody")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Alice with a backup, and the snapshot it made.
fn malformed_requests() -> (Member, PathBuf, String) {
    let alice = Member::start("alice");
    let src = alice.path("src");
    make_tree(&src, 5, 4);
    alice.init();
    alice.backup(&src);
    let snapshot = alice
        .conditions()
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| {
            o["object"]
                .as_str()
                .unwrap()
                .strip_prefix("snapshots/")
                .map(str::to_string)
        })
        .unwrap();
    (alice, src, snapshot)
}

/// Asserts that nothing stored was touched.
fn untouched(alice: &Member, src: &std::path::Path) {
    all_sound(&alice.svc);
    alice.restore_and_compare(src);
}

#[test]
fn malformed_pack_reports_are_refused() {
    let (alice, src, snapshot) = malformed_requests();
    let http = alice.svc.http();
    let token = alice.svc.token(&http, "alice", &alice.password);
    let put = |name: &str, body: Vec<u8>| {
        http.put(format!("{}/v1/snapshots/{name}/packs", alice.svc.url))
            .bearer_auth(&token)
            .body(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(put("not-a-name", vec![0; 32]), 400);
    assert_eq!(put(&"0".repeat(64), vec![0; 32]), 404, "no such snapshot");
    assert_eq!(put(&snapshot, vec![0; 31]), 400, "a partial id");
    assert_eq!(put(&snapshot, vec![7; 64]), 204);
    untouched(&alice, &src);
}

#[test]
fn malformed_objections_are_refused() {
    let (alice, src, _) = malformed_requests();
    let http = alice.svc.http();
    let token = alice.svc.token(&http, "alice", &alice.password);
    let object = |body: &str, id: &str| {
        http.post(format!("{}/v1/statements/{id}/objection", alice.svc.url))
            .bearer_auth(&token)
            .body(body.to_string())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(object("{", "1-2026-11"), 400);
    assert_eq!(object(r#"{"reason": ""}"#, "1-2026-11"), 400);
    assert_eq!(object(r#"{"reason": "x", "amount": 0}"#, "1-2026-11"), 400);
    assert_eq!(object("{\"reason\": \"a\\u0000b\"}", "1-2026-11"), 400);
    assert_eq!(
        object(r#"{"reason": "no such statement"}"#, "1-2026-11"),
        404
    );
    untouched(&alice, &src);
}

#[test]
fn a_members_incidents_losses_statements_need_a_session() {
    let (alice, _, _) = malformed_requests();
    let http = alice.svc.http();
    let token = alice.svc.token(&http, "alice", &alice.password);
    for path in ["incidents", "lost", "statements"] {
        let anon = http
            .get(format!("{}/v1/{path}", alice.svc.url))
            .send()
            .unwrap();
        assert_eq!(anon.status().as_u16(), 401, "{path} without a session");
        let mine = http
            .get(format!("{}/v1/{path}", alice.svc.url))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(mine.text().unwrap(), "[]", "{path}");
    }
}

/// Alice with a backup of a tree and 20 MB of noise; her objects.
fn with_big_backup(alice: &Member) -> (PathBuf, Vec<(String, Vec<Value>)>) {
    let src = alice.path("src");
    make_tree(&src, 20, 6);
    fs::write(src.join("big"), noise(20_000_000, 6)).unwrap();
    alice.init();
    alice.backup(&src);
    (src, objects(&alice.conditions()))
}

#[test]
fn the_service_checks_on_its_own() {
    let env = Env::new();
    let svc = Service::options(&env)
        .args(&["--verify-every-secs", "1"])
        .start();
    let alice = Member::on(env, svc, "alice");
    let (_, all) = with_big_backup(&alice);
    let victim = &all[all.len() / 2].0;
    flip(&alice.svc.demo_file("demo-west", victim));
    wait_until(
        Duration::from_secs(60),
        "the periodic check to find the media fault",
        || !alice.svc.incidents("media_fault").is_empty(),
    );
}

#[test]
fn a_killed_check_never_loses_a_good_copy() {
    // Every copy at demo-west damaged, then checks killed at growing delays: no good copy is
    // ever lost, and a last check repairs what is left.
    let mut alice = Member::start("alice");
    let (src, all) = with_big_backup(&alice);
    alice.svc.kill();
    let svc = &alice.svc;
    for (object, _) in &all {
        flip(&svc.demo_file("demo-west", object));
    }
    let before: Vec<Vec<u8>> = all
        .iter()
        .map(|(o, _)| fs::read(svc.demo_file("demo-east", o)).unwrap())
        .collect();
    for delay_ms in [10, 40, 100, 250, 600] {
        let mut run = svc
            .admin_cmd(&["verify"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = run.kill();
        let _ = run.wait();
        for ((object, _), bytes) in all.iter().zip(&before) {
            assert_eq!(
                &fs::read(svc.demo_file("demo-east", object)).unwrap(),
                bytes,
                "{object} at demo-east changed"
            );
        }
    }
    let out = svc.admin_run(&["--json", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    alice.svc.restart();
    all_sound(&alice.svc);
    alice.restore_and_compare(&src);
}

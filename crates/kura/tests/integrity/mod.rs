//! Integrity checks and fraudulent sites through the real binary (`spec/placement.md`
//! requirements 9 and 10), by fault injection on the demo sites: bytes flipped in copies
//! (media faults, repaired), a copy changed consistently under its site's key (tampering,
//! recorded and kept), an object deleted at both sites (lost, with the snapshots that need it),
//! and a site whose identity is swapped (counted, passed over, members told at the threshold).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::common::service::*;
use crate::common::*;
use serde_json::Value;

const PW: &str = "alice password";

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

fn incidents(svc: &Service, kind: &str) -> Vec<Value> {
    svc.admin_json(&["incidents"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == kind)
        .cloned()
        .collect()
}

/// Flips one byte in the middle of a file.
fn flip(file: &Path) {
    let mut b = fs::read(file).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x5a;
    fs::write(file, b).unwrap();
}

#[test]
fn checks_repair_media_faults_keep_tampering_and_report_lost_objects() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start(&data);
    svc.add_user("alice", PW, env.dir.path());
    svc.contract("alice", &["--home-region", "demo-east"]);
    let src = env.path("src");
    make_tree(&src, 40, 3);
    fs::write(src.join("big"), noise(6_000_000, 4)).unwrap();
    run_ok(client(&env, &svc, "alice", PW, &["init"]));
    backup(&env, &svc, "alice", PW, &src);
    let first = client_json(&env, &svc, "alice", PW, &["conditions"]);
    // The largest pack of the first backup holds file data both snapshots need.
    let shared_pack = first
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
    backup(&env, &svc, "alice", PW, &src);
    let all = client_json(&env, &svc, "alice", PW, &["conditions"]);
    let all = objects(&all);
    let snapshots: BTreeSet<String> = all
        .iter()
        .filter_map(|(o, _)| o.strip_prefix("snapshots/").map(str::to_string))
        .collect();
    assert_eq!(snapshots.len(), 2);

    // Everything is sound to begin with.
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["objects"].as_u64(), Some(all.len() as u64), "{v}");
    assert_eq!(v["sound"], v["objects"], "{v}");
    assert_eq!(v["copies"].as_u64(), Some(2 * all.len() as u64), "{v}");

    // Media faults: a byte flipped in seven objects at demo-west, and one copy gone. Every one
    // is found and repaired, and the repairs check out.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut picked = BTreeSet::new();
    while picked.len() < 7 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let (object, _) = &all[(rng % all.len() as u64) as usize];
        if *object != shared_pack {
            picked.insert(object.clone());
        }
    }
    for object in &picked {
        flip(&demo_file(&data, "demo-west", object));
    }
    let gone = all
        .iter()
        .map(|(o, _)| o)
        .find(|o| o.starts_with("index/") && !picked.contains(*o))
        .unwrap()
        .clone();
    fs::remove_file(demo_file(&data, "demo-east", &gone)).unwrap();
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
    assert!(demo_file(&data, "demo-east", &gone).is_file());
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!((code, &v["sound"]), (0, &v["objects"]), "{v}");
    assert_eq!(incidents(&svc, "media_fault").len(), 8);

    // Tampering: one pack at demo-east opened with the site's key, changed and sealed again,
    // so it passes its own checks. The check records the range, keeps the copy untouched and
    // tells the member; reads go to the good copy.
    let victim = all
        .iter()
        .map(|(o, _)| o)
        .find(|o| o.starts_with("data/") && **o != shared_pack)
        .unwrap()
        .clone();
    let file = demo_file(&data, "demo-east", &victim);
    let forged = forge(&data, "demo-east", &victim, 100..110);
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!(code, 3, "tampering fails the check: {v}");
    assert_eq!(
        (&v["tampered"], &v["media_faults"]),
        (&Value::from(1), &Value::from(0)),
        "{v}"
    );
    let t = &v["incidents"][0];
    assert_eq!(t["kind"], "tampering", "{v}");
    assert_eq!(t["object"], victim.as_str());
    assert_eq!(t["detail"]["range"], serde_json::json!([100, 110]), "{t}");
    assert_eq!(t["detail"]["site"], "demo-east");
    assert_eq!(
        fs::read(&file).unwrap(),
        forged,
        "the evidence was overwritten"
    );
    let evidence = t["detail"]["evidence"].as_str().unwrap();
    assert_eq!(fs::read(evidence).unwrap(), forged);
    let told = messages_of(&env, &svc, "alice", PW, "integrity");
    assert_eq!(told.len(), 1);
    assert!(
        told[0]["body"]
            .as_str()
            .unwrap()
            .contains("bytes 100..110 differ"),
        "{told:?}"
    );
    restore_and_compare(&env, &svc, "alice", PW, &src);
    // A placement run gives the object a second good copy elsewhere and leaves the evidence.
    svc.admin(&["replace"]);
    let now = client_json(&env, &svc, "alice", PW, &["conditions"]);
    let (_, copies) = objects(&now)
        .into_iter()
        .find(|(o, _)| *o == victim)
        .unwrap();
    let status: Vec<(String, String)> = copies
        .iter()
        .map(|c| {
            (
                c["site"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        status.contains(&("demo-east".into(), "tampered".into())),
        "{status:?}"
    );
    assert_eq!(
        status.iter().filter(|(_, s)| s == "ok").count(),
        2,
        "{status:?}"
    );
    assert_eq!(fs::read(&file).unwrap(), forged);
    // Known tampering is not reported again.
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!((code, &v["tampered"]), (0, &Value::from(0)), "{v}");
    // Once looked into, the operator lets the evidence go: the next placement run puts the
    // object back where the rule wants it, with a good copy at demo-east again.
    let kept = svc.admin_json(&["evidence", "list"]);
    assert_eq!(kept.as_array().unwrap().len(), 1, "{kept}");
    assert_eq!(kept[0]["site"], "demo-east");
    let r = svc.admin_json(&["evidence", "release", "demo-east", "--object", &victim]);
    assert_eq!(r["released"], 1, "{r}");
    assert!(!file.exists(), "the released copy is deleted from the site");
    assert!(Path::new(evidence).is_file(), "the saved evidence stays");
    svc.admin(&["replace"]);
    let now = client_json(&env, &svc, "alice", PW, &["conditions"]);
    let (_, copies) = objects(&now)
        .into_iter()
        .find(|(o, _)| *o == victim)
        .unwrap();
    let sites: Vec<(&str, &str)> = copies
        .iter()
        .map(|c| (c["site"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(sites, [("demo-east", "ok"), ("demo-west", "ok")]);
    assert_ne!(fs::read(&file).unwrap(), forged);
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!((code, &v["sound"]), (0, &v["objects"]), "{v}");

    // Lost: a pack both snapshots need deleted at both sites.
    for site in ["demo-east", "demo-west"] {
        fs::remove_file(demo_file(&data, site, &shared_pack)).unwrap();
    }
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["lost"], 1, "{v}");
    let lost = &v["incidents"][0];
    assert_eq!(
        (&lost["kind"], lost["object"].as_str()),
        (&Value::from("lost"), Some(shared_pack.as_str()))
    );
    let needing: BTreeSet<String> = lost["detail"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(needing, snapshots, "{lost}");
    let told = messages_of(&env, &svc, "alice", PW, "integrity");
    assert_eq!(told.len(), 2);
    assert!(
        told[1]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Data lost"),
        "{told:?}"
    );
    for s in &snapshots {
        assert!(
            told[1]["body"].as_str().unwrap().contains(s.as_str()),
            "{told:?}"
        );
    }
    // The member's client names the files that cannot be restored whole, from each snapshot;
    // a check says so; a backup stores them again, which makes every snapshot whole again.
    let report = client_json(&env, &svc, "alice", PW, &["incidents"]);
    let affected = report["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 2, "{report}");
    for a in affected {
        let files = a["files"].as_array().unwrap();
        assert!(!files.is_empty(), "{a}");
        for f in files {
            let f = f.as_str().unwrap();
            assert!(Path::new(f).is_file(), "{f} is not a file backed up");
        }
    }
    let out = client(&env, &svc, "alice", PW, &["check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("is missing"), "{said}");
    assert!(said.contains("lost by the storage provider"), "{said}");
    backup(&env, &svc, "alice", PW, &src);
    run_ok(client(&env, &svc, "alice", PW, &["check", "--read-data"]));
    restore_and_compare(&env, &svc, "alice", PW, &src);
    // Still lost next time, but reported once.
    let (code, v) = svc.admin_json_code(&["verify", "--member", "alice"]);
    assert_eq!((code, &v["lost"]), (3, &Value::from(1)), "{v}");
    assert_eq!(incidents(&svc, "lost").len(), 1);
    assert_eq!(messages_of(&env, &svc, "alice", PW, "integrity").len(), 2);
}

#[test]
fn a_sample_checks_the_least_recently_checked_objects_first() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start(&data);
    svc.add_user("alice", PW, env.dir.path());
    let src = env.path("src");
    make_tree(&src, 20, 8);
    run_ok(client(&env, &svc, "alice", PW, &["init"]));
    backup(&env, &svc, "alice", PW, &src);
    let total = client_json(&env, &svc, "alice", PW, &["conditions"])
        .as_array()
        .unwrap()
        .len() as u64;
    let half = total.div_ceil(2);
    let (_, a) = svc.admin_json_code(&["verify", "--sample", "50"]);
    let (_, b) = svc.admin_json_code(&["verify", "--sample", "50%"]);
    assert_eq!(a["objects"].as_u64(), Some(half), "{a}");
    assert_eq!(b["objects"].as_u64(), Some(half), "{b}");
    let out = kura()
        .args(["admin", "--data-dir"])
        .arg(&data)
        .args(["verify", "--sample", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a sample of 0% is refused");
    let out = kura()
        .args(["admin", "--data-dir"])
        .arg(&data)
        .args(["verify", "--member", "nobody"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}

#[test]
fn a_site_whose_identity_changes_is_counted_passed_over_and_its_members_told() {
    let env = Env::new();
    let data = env.path("service");
    let config = env.path("service.toml");
    fs::write(&config, "fraud_threshold = 2\n").unwrap();
    let svc = Service::start_with(
        &data,
        "127.0.0.1:0",
        "warn",
        std::process::Stdio::null(),
        &["--server-config", config.to_str().unwrap()],
    );
    let admin = |args: &[&str]| -> Value {
        let mut all = vec!["--server-config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        svc.admin_json(&all)
    };
    svc.add_user("alice", PW, env.dir.path());
    svc.contract("alice", &["--home-region", "demo-east"]);
    let src = env.path("src");
    make_tree(&src, 10, 1);
    run_ok(client(&env, &svc, "alice", PW, &["init"]));
    backup(&env, &svc, "alice", PW, &src);
    let before = objects(&client_json(&env, &svc, "alice", PW, &["conditions"]));
    assert!(before.iter().all(|(_, c)| c[1]["site"] == "demo-west"));

    // demo-west's store now answers with another site's marker, while the service still
    // trusts its last proof: the next backup's writes there are caught as they finish and go
    // to the next site by the rule.
    let marker = |site: &str| data.join("sites").join(site).join("kura-site-marker");
    fs::copy(marker("north"), marker("west")).unwrap();
    fs::write(src.join("new"), noise(300_000, 2)).unwrap();
    backup(&env, &svc, "alice", PW, &src);
    let after = objects(&client_json(&env, &svc, "alice", PW, &["conditions"]));
    let new: Vec<&(String, Vec<Value>)> = after.iter().filter(|o| !before.contains(o)).collect();
    assert!(!new.is_empty());
    for (object, copies) in &new {
        let good: Vec<&str> = copies
            .iter()
            .filter(|c| c["status"] == "ok")
            .map(|c| c["site"].as_str().unwrap())
            .collect();
        assert_eq!(good, ["demo-east", "demo-north"], "{object}: {copies:?}");
    }
    restore_and_compare(&env, &svc, "alice", PW, &src);
    let sites = admin(&["sites"]);
    let west = sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "demo-west")
        .unwrap();
    let counted = west["auth_failures"].as_u64().unwrap();
    assert!(counted >= 2, "{west}");
    assert!(
        west["status"]
            .as_str()
            .unwrap()
            .contains("failed authentication"),
        "{west}"
    );
    // At the threshold (2), once: the member with data there is told, and it is on record.
    let told = messages_of(&env, &svc, "alice", PW, "fraudulent_site");
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0]["subject"].as_str().unwrap().contains("demo-west"));
    admin(&["sites"]);
    assert_eq!(
        messages_of(&env, &svc, "alice", PW, "fraudulent_site").len(),
        1
    );
    let recorded = incidents(&svc, "fraudulent_site");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["sites"], serde_json::json!(["demo-west"]));
    // The check does not trust what the site holds, and a placement run moves it elsewhere.
    let (code, v) = svc.admin_json_code(&["--server-config", config.to_str().unwrap(), "verify"]);
    assert_eq!(code, 3, "{v}");
    let at_west = after
        .iter()
        .flat_map(|(_, c)| c)
        .filter(|c| c["site"] == "demo-west")
        .count();
    assert_eq!(v["tampered"].as_u64(), Some(at_west as u64), "{v}");
    admin(&["replace"]);
    let moved = objects(&client_json(&env, &svc, "alice", PW, &["conditions"]));
    for (object, copies) in &moved {
        assert!(
            copies.iter().all(|c| c["site"] != "demo-west"),
            "{object}: {copies:?}"
        );
    }
    restore_and_compare(&env, &svc, "alice", PW, &src);
}

#[test]
fn malformed_reports_and_objections_are_refused_and_change_nothing() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start(&data);
    svc.add_user("alice", PW, env.dir.path());
    let src = env.path("src");
    make_tree(&src, 5, 4);
    run_ok(client(&env, &svc, "alice", PW, &["init"]));
    backup(&env, &svc, "alice", PW, &src);
    let snapshot = client_json(&env, &svc, "alice", PW, &["conditions"])
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
    let http = svc.http();
    let token = svc.token(&http, "alice", PW);
    let put = |name: &str, body: Vec<u8>| {
        http.put(format!("{}/v1/snapshots/{name}/packs", svc.url))
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
    let object = |body: &str, id: &str| {
        http.post(format!("{}/v1/statements/{id}/objection", svc.url))
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
    for path in ["incidents", "lost", "statements"] {
        let anon = http.get(format!("{}/v1/{path}", svc.url)).send().unwrap();
        assert_eq!(anon.status().as_u16(), 401, "{path} without a session");
        let mine = http
            .get(format!("{}/v1/{path}", svc.url))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(mine.text().unwrap(), "[]", "{path}");
    }
    // Nothing stored was touched.
    let (code, v) = svc.admin_json_code(&["verify"]);
    assert_eq!((code, &v["sound"]), (0, &v["objects"]), "{v}");
    restore_and_compare(&env, &svc, "alice", PW, &src);
}

#[test]
fn the_service_checks_on_its_own_and_a_killed_check_loses_nothing() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start_with(
        &data,
        "127.0.0.1:0",
        "warn",
        std::process::Stdio::null(),
        &["--verify-every-secs", "1"],
    );
    svc.add_user("alice", PW, env.dir.path());
    let src = env.path("src");
    make_tree(&src, 20, 6);
    fs::write(src.join("big"), noise(20_000_000, 6)).unwrap();
    run_ok(client(&env, &svc, "alice", PW, &["init"]));
    backup(&env, &svc, "alice", PW, &src);
    let all = objects(&client_json(&env, &svc, "alice", PW, &["conditions"]));
    let victim = &all[all.len() / 2].0;
    let file = demo_file(&data, "demo-west", victim);
    flip(&file);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while incidents(&svc, "media_fault").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the periodic check never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(svc);

    // Every copy at demo-west damaged, then checks killed at growing delays: no good copy is
    // ever lost, and a last check repairs what is left.
    for (object, _) in &all {
        flip(&demo_file(&data, "demo-west", object));
    }
    let good_east = |object: &str| demo_file(&data, "demo-east", object);
    let before: Vec<Vec<u8>> = all
        .iter()
        .map(|(o, _)| fs::read(good_east(o)).unwrap())
        .collect();
    for delay_ms in [10, 40, 100, 250, 600] {
        let mut run = kura()
            .args(["admin", "--data-dir"])
            .arg(&data)
            .arg("verify")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = run.kill();
        let _ = run.wait();
        for ((object, _), bytes) in all.iter().zip(&before) {
            assert_eq!(
                &fs::read(good_east(object)).unwrap(),
                bytes,
                "{object} at demo-east changed"
            );
        }
    }
    let out = kura()
        .args(["admin", "--data-dir"])
        .arg(&data)
        .args(["--json", "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, v) = {
        let svc = Service::start(&data);
        let r = svc.admin_json_code(&["verify"]);
        restore_and_compare(&env, &svc, "alice", PW, &src);
        r
    };
    assert_eq!((code, &v["sound"]), (0, &v["objects"]), "{v}");
}

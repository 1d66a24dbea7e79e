//! A site whose identity changes: counted, passed over, its members told at the threshold.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use super::objects;
use crate::fixture::*;

/// Alice (home region demo-east) with a backup whose second copies are on demo-west; then
/// demo-west's store answers with another site's marker while the service still trusts its
/// last proof, and a second backup (with a file added) is made. The objects before and after.
struct Swapped {
    alice: Member,
    src: PathBuf,
    before: Vec<(String, Vec<Value>)>,
    after: Vec<(String, Vec<Value>)>,
}

fn swapped() -> Swapped {
    let env = Env::new();
    let svc = Service::options(&env)
        .config("fraud_threshold = 2\n")
        .start();
    let alice = Member::on(env, svc, "alice");
    alice.svc.contract("alice", &["--home-region", "demo-east"]);
    let src = alice.path("src");
    make_tree(&src, 10, 1);
    alice.init();
    alice.backup(&src);
    let before = objects(&alice.conditions());
    assert!(before.iter().all(|(_, c)| c[1]["site"] == "demo-west"));
    let marker = |site: &str| {
        alice
            .svc
            .data
            .join("sites")
            .join(site)
            .join("kura-site-marker")
    };
    fs::copy(marker("north"), marker("west")).unwrap();
    fs::write(src.join("new"), noise(300_000, 2)).unwrap();
    alice.backup(&src);
    let after = objects(&alice.conditions());
    Swapped {
        alice,
        src,
        before,
        after,
    }
}

#[test]
fn writes_to_a_site_whose_identity_changed_go_to_the_next_site() {
    // The next backup's writes there are caught as they finish and go to the next site by the
    // rule.
    let s = swapped();
    let new: Vec<&(String, Vec<Value>)> =
        s.after.iter().filter(|o| !s.before.contains(o)).collect();
    assert!(!new.is_empty());
    for (object, copies) in &new {
        let good: Vec<&str> = copies
            .iter()
            .filter(|c| c["status"] == "ok")
            .map(|c| c["site"].as_str().unwrap())
            .collect();
        assert_eq!(good, ["demo-east", "demo-north"], "{object}: {copies:?}");
    }
    s.alice.restore_and_compare(&s.src);
}

#[test]
fn a_site_whose_identity_changed_is_counted_as_failing_authentication() {
    let s = swapped();
    let sites = s.alice.svc.admin_json(&["sites"]);
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
}

#[test]
fn members_with_data_there_are_told_once_at_the_threshold() {
    // At the threshold (2), once: the member with data there is told, and it is on record.
    let s = swapped();
    s.alice.svc.admin(&["sites"]);
    let told = s.alice.messages_of("fraudulent_site");
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0]["subject"].as_str().unwrap().contains("demo-west"));
    s.alice.svc.admin(&["sites"]);
    assert_eq!(s.alice.messages_of("fraudulent_site").len(), 1);
    let recorded = s.alice.svc.incidents("fraudulent_site");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["sites"], serde_json::json!(["demo-west"]));
}

#[test]
fn a_check_does_not_trust_what_the_site_holds() {
    let s = swapped();
    let (code, v) = s.alice.svc.admin_json_code(&["verify"]);
    assert_eq!(code, 3, "{v}");
    let at_west = s
        .after
        .iter()
        .flat_map(|(_, c)| c)
        .filter(|c| c["site"] == "demo-west")
        .count();
    assert_eq!(v["tampered"].as_u64(), Some(at_west as u64), "{v}");
}

#[test]
fn a_placement_run_moves_everything_off_the_site() {
    let s = swapped();
    s.alice.svc.admin_run(&["verify"]);
    // `replace`, the command's old name, still runs a placement run.
    s.alice.svc.admin(&["replace"]);
    let moved = objects(&s.alice.conditions());
    for (object, copies) in &moved {
        assert!(
            copies.iter().all(|c| c["site"] != "demo-west"),
            "{object}: {copies:?}"
        );
    }
    s.alice.restore_and_compare(&s.src);
}

//! Loss: an object with no good copy left is reported once, with the snapshots that need it;
//! the member's client names the files and stores them again.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use super::{TwoSnapshots, two_snapshots};

/// [`two_snapshots`], whose shared pack (needed by both snapshots) was deleted at both sites;
/// then checked.
fn lost() -> (TwoSnapshots, i32, Value) {
    let t = two_snapshots();
    for site in ["demo-east", "demo-west"] {
        fs::remove_file(t.alice.svc.demo_file(site, &t.shared_pack)).unwrap();
    }
    let (code, v) = t.alice.svc.admin_json_code(&["verify"]);
    (t, code, v)
}

#[test]
fn a_check_reports_a_lost_object_with_the_snapshots_that_need_it() {
    let (t, code, v) = lost();
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["lost"], 1, "{v}");
    let lost = &v["incidents"][0];
    assert_eq!(
        (&lost["kind"], lost["object"].as_str()),
        (&Value::from("lost"), Some(t.shared_pack.as_str()))
    );
    let needing: BTreeSet<String> = lost["detail"]["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(needing, t.snapshots, "{lost}");
}

#[test]
fn the_member_is_told_which_snapshots_a_loss_hurts() {
    let (t, _, _) = lost();
    let told = t.alice.messages_of("integrity");
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Data lost"),
        "{told:?}"
    );
    for s in &t.snapshots {
        assert!(
            told[0]["body"].as_str().unwrap().contains(s.as_str()),
            "{told:?}"
        );
    }
}

#[test]
fn the_client_names_the_files_a_loss_leaves_incomplete() {
    // From each snapshot.
    let (t, _, _) = lost();
    let report = t.alice.json(&["incidents"]);
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
}

#[test]
fn a_client_check_says_what_the_provider_lost() {
    let (t, _, _) = lost();
    let out = t.alice.run(&["check"]);
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("is missing"), "{said}");
    assert!(said.contains("lost by the storage provider"), "{said}");
}

#[test]
fn a_backup_stores_lost_data_again_making_every_snapshot_whole() {
    let (t, _, _) = lost();
    t.alice.backup(&t.src);
    t.alice.ok(&["check", "--read-data"]);
    t.alice.restore_and_compare(&t.src);
}

#[test]
fn a_lost_object_is_reported_once() {
    // Still lost next time, but reported once.
    let (t, _, _) = lost();
    t.alice.backup(&t.src);
    let (code, v) = t
        .alice
        .svc
        .admin_json_code(&["verify", "--member", "alice"]);
    assert_eq!((code, &v["lost"]), (3, &Value::from(1)), "{v}");
    assert_eq!(t.alice.svc.incidents("lost").len(), 1);
    assert_eq!(t.alice.messages_of("integrity").len(), 1);
}

//! Tampering: a copy changed consistently under its site's key is found, recorded and kept as
//! evidence; placement stores the object again elsewhere until the operator lets it go.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{TwoSnapshots, all_sound, copies_of, two_snapshots};

/// [`two_snapshots`], one of whose packs at demo-east was opened with the site's key, changed
/// in bytes 100..110 and sealed again, so it passes its own checks; then checked.
struct Tampered {
    t: TwoSnapshots,
    victim: String,
    file: PathBuf,
    forged: Vec<u8>,
    code: i32,
    check: Value,
}

fn tampered() -> Tampered {
    let t = two_snapshots();
    let victim = t
        .all
        .iter()
        .map(|(o, _)| o)
        .find(|o| o.starts_with("data/") && **o != t.shared_pack)
        .unwrap()
        .clone();
    let file = t.alice.svc.demo_file("demo-east", &victim);
    let forged = t.alice.svc.forge("demo-east", &victim, 100..110);
    let (code, check) = t.alice.svc.admin_json_code(&["verify"]);
    Tampered {
        t,
        victim,
        file,
        forged,
        code,
        check,
    }
}

#[test]
fn a_check_records_tampering_with_its_range() {
    let x = tampered();
    let v = &x.check;
    assert_eq!(x.code, 3, "tampering fails the check: {v}");
    assert_eq!(
        (&v["tampered"], &v["media_faults"]),
        (&Value::from(1), &Value::from(0)),
        "{v}"
    );
    let t = &v["incidents"][0];
    assert_eq!(t["kind"], "tampering", "{v}");
    assert_eq!(t["object"], x.victim.as_str());
    assert_eq!(t["detail"]["range"], serde_json::json!([100, 110]), "{t}");
    assert_eq!(t["detail"]["site"], "demo-east");
}

#[test]
fn a_tampered_copy_is_kept_as_evidence() {
    let x = tampered();
    assert_eq!(
        fs::read(&x.file).unwrap(),
        x.forged,
        "the evidence was overwritten"
    );
    let evidence = x.check["incidents"][0]["detail"]["evidence"]
        .as_str()
        .unwrap();
    assert_eq!(fs::read(evidence).unwrap(), x.forged);
}

#[test]
fn the_member_is_told_of_tampering() {
    let x = tampered();
    let told = x.t.alice.messages_of("integrity");
    assert_eq!(told.len(), 1);
    assert!(
        told[0]["body"]
            .as_str()
            .unwrap()
            .contains("bytes 100..110 differ"),
        "{told:?}"
    );
}

#[test]
fn reads_of_a_tampered_object_go_to_the_good_copy() {
    let x = tampered();
    x.t.alice.restore_and_compare(&x.t.src);
}

/// [`tampered`], then a placement run.
fn placed_again() -> Tampered {
    let x = tampered();
    x.t.alice.svc.admin(&["place"]);
    x
}

#[test]
fn a_placement_run_gives_a_tampered_object_a_second_good_copy() {
    // Elsewhere, leaving the evidence.
    let x = placed_again();
    let status = copies_of(&x.t.alice, &x.victim);
    assert!(
        status.contains(&("demo-east".into(), "tampered".into())),
        "{status:?}"
    );
    assert_eq!(
        status.iter().filter(|(_, s)| s == "ok").count(),
        2,
        "{status:?}"
    );
    assert_eq!(fs::read(&x.file).unwrap(), x.forged);
}

#[test]
fn known_tampering_is_not_reported_again() {
    let x = placed_again();
    let (code, v) = x.t.alice.svc.admin_json_code(&["verify"]);
    assert_eq!((code, &v["tampered"]), (0, &Value::from(0)), "{v}");
}

#[test]
fn released_evidence_makes_way_for_a_good_copy_where_the_rule_wants_it() {
    // Once looked into, the operator lets the evidence go: the next placement run puts the
    // object back where the rule wants it, with a good copy at demo-east again.
    let x = placed_again();
    let svc = &x.t.alice.svc;
    let kept = svc.admin_json(&["evidence", "list"]);
    assert_eq!(kept.as_array().unwrap().len(), 1, "{kept}");
    assert_eq!(kept[0]["site"], "demo-east");
    let r = svc.admin_json(&["evidence", "release", "demo-east", "--object", &x.victim]);
    assert_eq!(r["released"], 1, "{r}");
    assert!(
        !x.file.exists(),
        "the released copy is deleted from the site"
    );
    let evidence = x.check["incidents"][0]["detail"]["evidence"]
        .as_str()
        .unwrap();
    assert!(Path::new(evidence).is_file(), "the saved evidence stays");
    svc.admin(&["place"]);
    let sites = copies_of(&x.t.alice, &x.victim);
    assert_eq!(
        sites,
        [
            ("demo-east".to_string(), "ok".to_string()),
            ("demo-west".to_string(), "ok".to_string())
        ]
    );
    assert_ne!(fs::read(&x.file).unwrap(), x.forged);
    all_sound(svc);
}

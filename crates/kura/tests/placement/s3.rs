//! Placement on S3 sites of a real S3-compatible server (Garage) beside a directory site: an
//! outage degrades a backup and is healed, an impostor site is never written, and a check
//! repairs copies damaged through the S3 API.

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kura_sites::SiteConfig;
use serde_json::Value;

use super::{assert_placed, files_at};
use crate::fixture::*;

/// Two buckets of a Garage as sites s3-a and s3-b, an impostor (s3-x, the safest, but on
/// s3-a's bucket, so its marker says s3-a), and a directory site in alice's home region; a
/// service placing every second, and alice after a first backup, on s3-a and s3-b.
struct S3Sites {
    alice: Member,
    garage: Garage,
    a: SiteConfig,
    b: SiteConfig,
    disk: PathBuf,
    src: PathBuf,
}

fn s3_sites() -> S3Sites {
    let garage = Garage::start();
    let env = Env::new();
    let disk = env.path("disk-site");
    let a = garage.site("s3-a", "region-a", "bucket-a", "secret a");
    let b = garage.site("s3-b", "region-b", "bucket-b", "secret b");
    let x = garage.existing("s3-x", "region-x", "bucket-a", "secret x");
    let site = |s: &SiteConfig, risk: f64| {
        format!(
            "[[sites]]\nid = \"{}\"\nregion = \"{}\"\nurl = \"{}\"\naccess_key_id = \"{}\"\n\
             secret_access_key = \"{}\"\nsecret = \"{}\"\nrisk = {risk}\n\n",
            s.id,
            s.region,
            s.url,
            s.access_key_id.as_deref().unwrap_or_default(),
            s.secret_access_key.as_deref().unwrap_or_default(),
            s.secret
        )
    };
    let config = format!(
        "{}{}{}[[sites]]\nid = \"disk\"\nregion = \"region-c\"\nurl = \"file://{}\"\n\
         secret = \"secret c\"\nrisk = 0.3\n",
        site(&a, 0.1),
        site(&b, 0.2),
        site(&x, 0.01),
        disk.display()
    );
    let svc = Service::options(&env)
        .config(&config)
        .args(&["--replace-every-secs", "1"])
        .start();
    let alice = Member::on(env, svc, "alice");
    alice.svc.contract("alice", &["--home-region", "region-c"]);
    let src = alice.path("src");
    make_tree(&src, 20, 3);
    alice.init();
    alice.backup(&src);
    assert_placed(&alice.conditions(), &["s3-a", "s3-b"]);
    S3Sites {
        alice,
        garage,
        a,
        b,
        disk,
        src,
    }
}

/// [`s3_sites`], and Garage stopped while the next backup (with 30 MB more) is sending; the
/// backup completed.
fn outage() -> S3Sites {
    let mut s = s3_sites();
    fs::write(s.src.join("big"), noise(30_000_000, 5)).unwrap();
    let running = s
        .alice
        .cmd(&["--piece-kib", "256", "backup", s.src.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let uploads = s.alice.svc.data.join("users/1/uploads");
    wait_until(
        Duration::from_secs(120),
        "the backup's first upload",
        || fs::read_dir(&uploads).is_ok_and(|d| d.count() > 0),
    );
    s.garage.stop();
    let out = running.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    s
}

#[test]
fn an_outage_degrades_a_backup_to_the_site_still_there() {
    // The backup completes on the disk site, recorded as degraded.
    let s = outage();
    let degraded = s.alice.conditions();
    let short: Vec<&Value> = degraded
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["degraded"] == "one_copy")
        .collect();
    assert!(!short.is_empty(), "{degraded}");
    for o in &short {
        let copies = o["copies"].as_array().unwrap();
        assert_eq!(
            (copies[0]["site"].as_str(), copies[0]["status"].as_str()),
            (Some("disk"), Some("ok")),
            "{o}"
        );
        assert!(copies[1..].iter().all(|c| c["status"] == "failed"), "{o}");
    }
    assert!(files_at(&s.disk) >= short.len());
}

#[test]
fn after_an_outage_placement_runs_heal_every_object() {
    // Garage returns: the service's placement runs complete every object on s3-a and s3-b and
    // clear the disk site.
    let mut s = outage();
    s.garage.restart();
    let alice = &s.alice;
    wait_until(
        Duration::from_secs(120),
        "the degraded objects to heal",
        || {
            good_sites(&alice.conditions())
                .iter()
                .all(|s| s == &["s3-a", "s3-b"])
        },
    );
    wait_until(
        Duration::from_secs(120),
        "the disk site to be cleared",
        || files_at(&s.disk) == 0,
    );
    assert!(
        alice
            .conditions()
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["degraded"].is_null())
    );
    alice.restore_and_compare(&s.src);
    assert!(
        !alice.messages_of("placement").is_empty(),
        "the member was told"
    );
}

#[test]
fn an_impostor_site_is_never_written() {
    let s = s3_sites();
    let sites = s.alice.svc.admin_json(&["sites"]);
    let x = sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "s3-x")
        .unwrap();
    assert!(x["auth_failures"].as_u64().unwrap() >= 1, "{x}");
    assert_eq!(x["copies"], 0, "{x}");
    assert!(x["status"].as_str().unwrap().contains("s3-a"), "{x}");
    assert!(
        !s.alice.conditions().to_string().contains("s3-x"),
        "the impostor never took a copy"
    );
}

#[test]
fn a_check_repairs_media_faults_made_through_the_s3_api() {
    // Three copies at s3-b replaced by copies that do not open (sealed under a key the service
    // does not have), one copy at s3-a deleted. A check finds and repairs all four over S3;
    // the next finds everything sound.
    let s = s3_sites();
    let names: Vec<String> = s
        .alice
        .conditions()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].as_str().unwrap().to_string())
        .collect();
    let path = |object: &str| format!("users/1/{}", object_path(object));
    let runtime = garage::runtime();
    let (site_a, site_b) = (
        kura_sites::Site::open(s.a.clone()).unwrap(),
        kura_sites::Site::open(s.b.clone()).unwrap(),
    );
    let foreign = kura_core::crypto::Key::from_bytes([7; 32]);
    runtime.block_on(async {
        for o in &names[..3] {
            site_b
                .put(
                    (1, &foreign),
                    &path(o),
                    Arc::new(b"not the object".to_vec()),
                )
                .await
                .unwrap();
        }
        site_a.delete(&path(&names[3])).await.unwrap();
    });
    let v = s.alice.svc.admin_json(&["verify"]);
    assert_eq!(
        (&v["media_faults"], &v["repaired"]),
        (&Value::from(4), &Value::from(4)),
        "{v}"
    );
    let v = s.alice.svc.admin_json(&["verify"]);
    assert_eq!(v["sound"], v["objects"], "{v}");
    s.alice.restore_and_compare(&s.src);
}

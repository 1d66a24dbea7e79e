//! Placement through the real binary (`spec/placement.md` requirements 3-8): every object the
//! service stores gets two copies on the sites the rule picks, the member sees the conditions,
//! restores fall back to the other copy, placement runs move data when the rule changes its
//! answer, an outage is healed, a site with the wrong identity is never written, and checks
//! repair copies damaged at an S3 site.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::service::*;
use crate::common::*;
use serde_json::Value;

const PW: &str = "alice password";

fn json(c: std::process::Command) -> Value {
    let out = run_ok(c);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The sites of each object's good copies, primary first.
fn good_sites(conditions: &Value) -> Vec<Vec<String>> {
    conditions
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            o["copies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == "ok")
                .map(|c| c["site"].as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

/// Asserts that every object has good copies on exactly `sites`, primary first.
fn assert_placed(conditions: &Value, sites: &[&str]) {
    assert!(
        good_sites(conditions).iter().all(|s| s == sites),
        "not all on {sites:?}: {conditions}"
    );
}

/// Files under a directory site holding user 1's objects (not files being written).
fn files_at(site: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![site.join("users/1")];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if !e.file_name().to_string_lossy().contains('#') {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn two_copies_conditions_fallback_and_moves_on_the_demo_sites() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start(&data);
    svc.add_user("alice", PW, env.dir.path());
    svc.contract("alice", &["--home-region", "demo-east"]);
    let src = env.path("src");
    make_tree(&src, 30, 7);
    fs::write(src.join("big"), noise(3_000_000, 9)).unwrap();
    let out = run_ok(client(&env, &svc, "alice", PW, &["init"]));
    assert!(out.contains("created repository"), "{out}");
    let out = backup(&env, &svc, "alice", PW, &src);
    assert!(
        out.contains("stored at the service on demo-east, demo-west"),
        "{out}"
    );

    // Primary on the safest site; the secondary on the safest one outside the home region
    // (demo-east is both the safest and the home region).
    let all = client_json(&env, &svc, "alice", PW, &["conditions"]);
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
    // Only references to keys, never a key.
    let keyring = fs::read_to_string(data.join("keyring.json")).unwrap();
    let keys: Value = serde_json::from_str(&keyring).unwrap();
    let east_key = keys["keys"]["demo-east"]["1"].as_str().unwrap();
    assert!(!all.to_string().contains(east_key));
    // A snapshot's conditions cover it, its index and its packs; the client keeps the latest.
    let snap = client_json(&env, &svc, "alice", PW, &["conditions", "latest"]);
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
    let kept = client_json(&env, &svc, "alice", PW, &["conditions", "--cached"]);
    assert_eq!(kept, snap);
    let text = run_ok(client(&env, &svc, "alice", PW, &["conditions"]));
    assert!(
        text.contains("demo-west (region demo-west): ok, XChaCha20-Poly1305, key demo-west/v1"),
        "{text}"
    );
    // The member was told, in the message history and by a message in the outbox.
    let messages = client_json(&env, &svc, "alice", PW, &["messages"]);
    assert_eq!(messages[0]["kind"], "conditions", "{messages}");
    assert!(
        messages[0]["body"]
            .as_str()
            .unwrap()
            .contains("demo-east (region demo-east): ok"),
        "{messages}"
    );
    let outbox: Vec<_> = fs::read_dir(data.join("outbox")).unwrap().collect();
    assert_eq!(outbox.len(), 1);
    let mail = fs::read_to_string(outbox[0].as_ref().unwrap().path()).unwrap();
    assert!(
        mail.contains("Subject: Storage conditions of your backup"),
        "{mail}"
    );

    // The primary loses its copies: restores read the secondary, and a placement run repairs
    // the primary from it.
    let east = data.join("sites/east");
    let packs_at_east = files_at(&east);
    let lost = fs::read_dir(east.join("users/1/data")).unwrap().count();
    fs::remove_dir_all(east.join("users/1/data")).unwrap();
    restore_and_compare(&env, &svc, "alice", PW, &src);
    run_ok(client(&env, &svc, "alice", PW, &["check", "--read-data"]));
    let after = client_json(&env, &svc, "alice", PW, &["conditions"]);
    let failed = after
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["copies"][0]["status"] == "failed")
        .count();
    assert_eq!(failed, lost, "reads of lost copies are recorded: {after}");
    let r: Value = svc.admin_json(&["replace"]);
    assert_eq!(r["copied"].as_u64(), Some(failed as u64), "{r}");
    assert_eq!(r["pending"], 0, "{r}");
    assert_eq!(files_at(&east), packs_at_east);
    let repaired = client_json(&env, &svc, "alice", PW, &["conditions"]);
    assert_placed(&repaired, &["demo-east", "demo-west"]);

    // A risk feed makes demo-north the safest: everything moves there, with the copy outside
    // the home region kept on demo-west, and nothing is left on demo-east.
    let feed = env.path("feed.csv");
    fs::write(&feed, "region,earthquake,flood\ndemo-north,0.005,0.005\n").unwrap();
    svc.admin(&["risk", "import", feed.to_str().unwrap()]);
    let r: Value = svc.admin_json(&["replace"]);
    assert!(r["copied"].as_u64().unwrap() > 5, "{r}");
    assert_eq!(r["deleted"], r["copied"], "{r}");
    assert_eq!(r["notified"], 1, "{r}");
    let moved = client_json(&env, &svc, "alice", PW, &["conditions"]);
    assert_placed(&moved, &["demo-north", "demo-west"]);
    assert_eq!(files_at(&east), 0);
    // A second run finds nothing to do.
    let r: Value = svc.admin_json(&["replace"]);
    assert_eq!(
        (r["copied"].as_u64(), r["deleted"].as_u64()),
        (Some(0), Some(0))
    );
    // The member moves to demo-north: the second copy leaves it for the safest other region.
    svc.contract("alice", &["--home-region", "demo-north"]);
    svc.admin(&["replace"]);
    let moved = client_json(&env, &svc, "alice", PW, &["conditions"]);
    assert_placed(&moved, &["demo-north", "demo-east"]);
    restore_and_compare(&env, &svc, "alice", PW, &src);
    let messages = client_json(&env, &svc, "alice", PW, &["messages"]);
    let kinds: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["conditions", "placement", "placement"]);
    let sites: Value = svc.admin_json(&["sites"]);
    let east = &sites.as_array().unwrap()[0];
    assert_eq!(
        (east["id"].as_str(), east["copies"].as_u64()),
        (
            Some("demo-east"),
            Some(moved.as_array().unwrap().len() as u64)
        )
    );

    // A key rotated while the service runs: new copies at demo-north are sealed under v2, and
    // the copies sealed under v1 still open.
    assert_eq!(
        svc.admin_json(&["keys", "rotate", "demo-north"])["key_ref"],
        "demo-north/v2"
    );
    let before = moved.as_array().unwrap().len();
    fs::write(src.join("new"), noise(100_000, 77)).unwrap();
    backup(&env, &svc, "alice", PW, &src);
    let now = client_json(&env, &svc, "alice", PW, &["conditions"]);
    let north_keys: Vec<&str> = now
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["copies"][0]["key_ref"].as_str().unwrap())
        .collect();
    assert!(north_keys.contains(&"demo-north/v1"), "{north_keys:?}");
    assert!(north_keys.contains(&"demo-north/v2"), "{north_keys:?}");
    assert!(north_keys.len() > before);
    restore_and_compare(&env, &svc, "alice", PW, &src);
}

#[test]
fn a_placement_run_killed_at_any_point_leaves_two_good_copies() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start(&data);
    svc.add_user("alice", PW, env.dir.path());
    svc.contract("alice", &["--home-region", "demo-east"]);
    let src = env.path("src");
    make_tree(&src, 20, 5);
    for i in 0..4 {
        fs::write(src.join(format!("big{i}")), noise(12_000_000, 40 + i)).unwrap();
    }
    run_ok(client(&env, &svc, "alice", PW, &["init"]));
    backup(&env, &svc, "alice", PW, &src);
    // Everything is to move from demo-east to demo-north.
    let feed = env.path("feed.csv");
    fs::write(&feed, "region,flood\ndemo-north,0.01\n").unwrap();
    svc.admin(&["risk", "import", feed.to_str().unwrap()]);

    let good_copies_exist = || {
        let all = client_json(&env, &svc, "alice", PW, &["conditions"]);
        for o in all.as_array().unwrap() {
            let object = o["object"].as_str().unwrap();
            let on_disk = o["copies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == "ok")
                .filter(|c| demo_file(&data, c["site"].as_str().unwrap(), object).is_file())
                .count();
            assert!(on_disk >= 2, "{object} has {on_disk} good copies: {o}");
        }
        all
    };
    let mut finished = false;
    for delay_ms in [20, 50, 100, 200, 400, 800, 1600, 3200] {
        let mut run = kura()
            .arg("admin")
            .arg("--data-dir")
            .arg(&data)
            .arg("replace")
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
        svc.admin(&["replace"]);
    }
    let all = good_copies_exist();
    assert_placed(&all, &["demo-north", "demo-west"]);
    assert_eq!(files_at(&data.join("sites/east")), 0);
    restore_and_compare(&env, &svc, "alice", PW, &src);
}

/// Waits up to two minutes for `ready`.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn an_outage_degrades_then_heals_and_an_impostor_is_never_written() {
    let mut g = crate::common::garage::Garage::start();
    let env = Env::new();
    let disk = env.path("disk-site");
    let a = g.site("s3-a", "region-a", "bucket-a", "secret a");
    let b = g.site("s3-b", "region-b", "bucket-b", "secret b");
    // A site that claims to be s3-x but is s3-a's bucket: its marker says s3-a.
    let x = g.existing("s3-x", "region-x", "bucket-a", "secret x");
    let site = |s: &kura_sites::SiteConfig, risk: f64| {
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
    let config = env.path("service.toml");
    fs::write(
        &config,
        format!(
            "{}{}{}[[sites]]\nid = \"disk\"\nregion = \"region-c\"\nurl = \"file://{}\"\n\
             secret = \"secret c\"\nrisk = 0.3\n",
            site(&a, 0.1),
            site(&b, 0.2),
            site(&x, 0.01),
            disk.display()
        ),
    )
    .unwrap();
    let data = env.path("service");
    let svc = Service::start_with(
        &data,
        "127.0.0.1:0",
        "warn",
        Stdio::null(),
        &[
            "--server-config",
            config.to_str().unwrap(),
            "--replace-every-secs",
            "1",
        ],
    );
    let admin = |args: &[&str]| -> Value {
        let mut c = kura();
        c.arg("admin")
            .arg("--data-dir")
            .arg(&data)
            .arg("--server-config")
            .arg(&config)
            .arg("--json")
            .args(args);
        json(c)
    };
    svc.add_user("alice", PW, env.dir.path());
    svc.contract("alice", &["--home-region", "region-c"]);
    let src = env.path("src");
    make_tree(&src, 20, 3);
    run_ok(client(&env, &svc, "alice", PW, &["init"]));
    backup(&env, &svc, "alice", PW, &src);
    let conditions = || client_json(&env, &svc, "alice", PW, &["conditions"]);
    assert_placed(&conditions(), &["s3-a", "s3-b"]);

    // Garage stops while the next backup is sending: the backup completes on the disk site,
    // recorded as degraded.
    fs::write(src.join("big"), noise(30_000_000, 5)).unwrap();
    let mut backup = client(
        &env,
        &svc,
        "alice",
        PW,
        &["--piece-kib", "256", "backup", src.to_str().unwrap()],
    );
    let running = backup
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the backup's first upload", || {
        fs::read_dir(data.join("users/1/uploads")).is_ok_and(|d| d.count() > 0)
    });
    g.stop();
    let out = running.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let degraded = conditions();
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
    assert!(files_at(&disk) >= short.len());

    // Garage returns: the service's placement runs complete every object on s3-a and s3-b and
    // clear the disk site.
    g.restart();
    wait_for("the degraded objects to heal", || {
        good_sites(&conditions())
            .iter()
            .all(|s| s == &["s3-a", "s3-b"])
    });
    wait_for("the disk site to be cleared", || files_at(&disk) == 0);
    assert!(
        conditions()
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["degraded"].is_null())
    );
    restore_and_compare(&env, &svc, "alice", PW, &src);
    let messages = client_json(&env, &svc, "alice", PW, &["messages"]);
    assert!(
        messages
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["kind"] == "placement"),
        "{messages}"
    );

    // The impostor was refused every time, counted, and holds nothing.
    let sites = admin(&["sites"]);
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
        !conditions().to_string().contains("s3-x"),
        "the impostor never took a copy"
    );

    // Media faults made through the S3 API: three copies at s3-b replaced by copies that do
    // not open (sealed under a key the service does not have), one copy at s3-a deleted. A
    // check finds and repairs all four over S3; the next finds everything sound.
    let names: Vec<String> = conditions()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object"].as_str().unwrap().to_string())
        .collect();
    let path = |object: &str| {
        let object = if object == "config" {
            "config/config"
        } else {
            object
        };
        format!("users/1/{object}")
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (site_a, site_b) = (
        kura_sites::Site::open(a.clone()).unwrap(),
        kura_sites::Site::open(b.clone()).unwrap(),
    );
    let foreign = kura_core::crypto::Key::from_bytes([7; 32]);
    runtime.block_on(async {
        for o in &names[..3] {
            site_b
                .put((1, &foreign), &path(o), b"not the object")
                .await
                .unwrap();
        }
        site_a.delete(&path(&names[3])).await.unwrap();
    });
    let v = admin(&["verify"]);
    assert_eq!(
        (&v["media_faults"], &v["repaired"]),
        (&Value::from(4), &Value::from(4)),
        "{v}"
    );
    let v = admin(&["verify"]);
    assert_eq!(v["sound"], v["objects"], "{v}");
    restore_and_compare(&env, &svc, "alice", PW, &src);
}

#[test]
fn a_repository_from_before_placement_is_stored_on_the_sites() {
    let env = Env::new();
    let data = env.path("service");
    // A repository as an earlier service kept it: a plain directory for user 1.
    let src = env.path("src");
    make_tree(&src, 15, 11);
    let local = |args: &[&str]| {
        let mut c = kura();
        c.arg("--repo")
            .arg(&env.repo)
            .arg("--state-dir")
            .arg(env.path("state-old"))
            .args(args)
            .env("KURA_PASSWORD", "encryption passphrase of alice")
            .env("KURA_INSECURE_FAST_KDF", "1");
        run_ok(c)
    };
    local(&["init"]);
    local(&["backup", src.to_str().unwrap()]);
    let admin = |args: &[&str]| {
        let mut c = kura();
        c.arg("admin").arg("--data-dir").arg(&data).args(args);
        run_ok(c)
    };
    let pw = env.path("alice.pw");
    fs::write(&pw, PW).unwrap();
    admin(&[
        "user",
        "add",
        "alice",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    admin(&[
        "contract",
        "set",
        "alice",
        "--until",
        "2099-12-31",
        "--paid",
        "yes",
    ]);
    fs::create_dir_all(data.join("users/1")).unwrap();
    fs::rename(&env.repo, data.join("users/1/repo")).unwrap();

    let svc = Service::start(&data);
    assert!(data.join("users/1/repo.imported").is_dir());
    assert!(!data.join("users/1/repo").exists());
    let all = client_json(&env, &svc, "alice", PW, &["conditions"]);
    assert!(all.as_array().unwrap().len() > 3, "{all}");
    assert_placed(&all, &["demo-east", "demo-west"]);
    restore_and_compare(&env, &svc, "alice", PW, &src);
}

/// Debian's python, where python3-aiosmtpd installs (not a python of pyenv or a venv).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd; `.ci/run` installs it) delivering
/// into a Maildir, stopped when dropped.
struct MailServer {
    child: std::process::Child,
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl MailServer {
    fn start(maildir: &Path, port: u16) -> MailServer {
        let child = std::process::Command::new(SYSTEM_PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the system python3 is missing: apt-get install python3-aiosmtpd");
        let server = MailServer { child };
        wait_for("the SMTP server", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }
}

/// Messages the SMTP server has delivered.
fn delivered(maildir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(maildir.join("new"))
        .map(|d| {
            d.flatten()
                .map(|e| fs::read_to_string(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Queued messages in the service's outbox.
fn queued(data: &Path) -> usize {
    fs::read_dir(data.join("outbox")).map_or(0, |d| {
        d.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml"))
            .count()
    })
}

#[test]
fn notices_are_mailed_through_a_real_relay_and_wait_while_it_is_down() {
    let env = Env::new();
    let python_has_aiosmtpd = std::process::Command::new(SYSTEM_PYTHON)
        .args(["-c", "import aiosmtpd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        python_has_aiosmtpd,
        "the SMTP server is missing: apt-get install python3-aiosmtpd (.ci/run does it)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = env.path("maildir");
    let relay = MailServer::start(&maildir, port);
    let config = env.path("service.toml");
    fs::write(
        &config,
        format!(
            "[mail]\nrelay = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
             from = \"Kura <kura@example.test>\"\nevery_secs = 1\n"
        ),
    )
    .unwrap();
    let data = env.path("service");
    let svc = Service::start_with(
        &data,
        "127.0.0.1:0",
        "warn",
        Stdio::null(),
        &["--server-config", config.to_str().unwrap()],
    );
    let pw = env.path("pw");
    fs::write(&pw, PW).unwrap();
    for (user, email) in [("alice", Some("alice@example.test")), ("bob", None)] {
        let mut args = vec!["user", "add", user, "--password-file", pw.to_str().unwrap()];
        if let Some(e) = email {
            args.extend(["--email", e]);
        }
        svc.admin(&args);
        svc.admin(&[
            "contract",
            "set",
            user,
            "--until",
            "2099-12-31",
            "--paid",
            "yes",
        ]);
    }
    let bad = {
        let mut c = kura();
        c.arg("admin").arg("--data-dir").arg(&data).args([
            "user",
            "email",
            "alice",
            "alice@example.test\r\nBcc: x@y.z",
        ]);
        c.output().unwrap()
    };
    assert!(!bad.status.success(), "a header cannot be smuggled in");
    let src = env.path("src");
    make_tree(&src, 10, 21);
    let first_backup = |user: &str| {
        run_ok(client(&env, &svc, user, PW, &["init"]));
        backup(&env, &svc, user, PW, &src);
    };

    first_backup("alice");
    wait_for("the first notice to be mailed", || {
        delivered(&maildir).len() == 1
    });
    let mail = &delivered(&maildir)[0];
    assert!(mail.contains("To: alice@example.test"), "{mail}");
    assert!(
        mail.contains("Subject: Storage conditions of your backup"),
        "{mail}"
    );
    assert!(mail.contains("demo-east (region demo-east): ok"), "{mail}");
    assert_eq!(queued(&data), 0);
    assert_eq!(fs::read_dir(data.join("outbox/sent")).unwrap().count(), 1);

    // The relay goes down: a notice waits in the outbox and goes out when it returns. One to
    // a member without an address stays there.
    drop(relay);
    first_backup("bob");
    backup(&env, &svc, "alice", PW, &src);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(queued(&data), 2);
    assert_eq!(delivered(&maildir).len(), 1);
    let _relay = MailServer::start(&maildir, port);
    wait_for("the queued notice to be mailed", || {
        delivered(&maildir).len() == 2
    });
    assert!(
        delivered(&maildir)
            .iter()
            .all(|m| m.contains("To: alice@example.test"))
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(queued(&data), 1, "bob's notice stays: he has no address");
    let messages = client_json(&env, &svc, "bob", PW, &["messages"]);
    assert_eq!(messages.as_array().unwrap().len(), 1, "{messages}");
}

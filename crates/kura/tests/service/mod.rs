//! The service through the real binary: `kura serve` on loopback with TLS, the client using it
//! as a repository, authentication, contracts and isolation between users.

mod certificates;
mod contracts;
mod hostile;
mod offline;
mod operator;
mod outages;
mod quotas;
mod uploads;

use std::fs;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kura_repo::{Backend, BackendError, FileType};

use crate::fixture::*;

/// Alice, with a backup of a tree and a file of 6 MB of noise.
fn alice_backed_up() -> (Member, PathBuf) {
    let alice = Member::start("alice");
    let src = alice.path("src");
    make_tree(&src, 25, 40);
    fs::write(src.join("big"), noise(6_000_000, 4)).unwrap();
    alice.init();
    alice.backup(&src);
    (alice, src)
}

#[test]
fn a_backup_restores_through_the_service() {
    let (alice, src) = alice_backed_up();
    let t = alice.path("t");
    alice.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
    alice.ok(&["check", "--read-data"]);
}

#[test]
fn a_restore_of_small_files_reads_each_window_once() {
    // Restore workers take neighbouring files, whose blobs share windows of the same pack:
    // one worker reads a window while the others wait for it, so the service sends about
    // what the user stores, not that once per worker.
    let alice = Member::start("alice");
    let src = alice.path("src");
    make_tree(&src, 600, 11);
    alice.init();
    alice.backup(&src);
    let stored = alice.svc.user("alice")["bytes"].as_u64().unwrap();
    let before = alice.svc.metric("kura_bytes_sent_total");
    let t = alice.path("t");
    alice.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    let sent = alice.svc.metric("kura_bytes_sent_total") - before;
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
    assert!(
        sent <= stored + stored / 5,
        "sent {sent} bytes to restore {stored} stored"
    );
}

#[test]
fn the_service_stores_only_ciphertext() {
    // No plaintext of the source, and not even the names of what was backed up, appear in its
    // files (the database included).
    let (alice, src) = alice_backed_up();
    let needles = [
        &noise(6_000_000, 4)[1000..1032],
        src.to_str().unwrap().as_bytes(),
    ];
    let files = files_under(&alice.svc.data);
    assert!(files.len() > 10, "{files:?}");
    for p in files {
        let data = fs::read(&p).unwrap();
        for needle in needles {
            assert!(
                !data.windows(needle.len()).any(|w| w == needle),
                "plaintext in {}",
                p.display()
            );
        }
    }
}

#[test]
fn the_backup_log_reaches_the_operator() {
    // The client's log, and the operator's: when, how, how much, where.
    let (alice, src) = alice_backed_up();
    alice.another("bob", "bob password 22");
    let log = alice.json(&["log"]);
    assert_eq!(log[0]["status"], "completed");
    assert_eq!(log[0]["paths"][0], src.to_str().unwrap());
    assert_eq!(log[0]["location"], alice.svc.url.as_str());
    let admin = alice.svc.admin_json(&["log", "--member", "alice"]);
    assert_eq!(admin.as_array().unwrap().len(), 1, "{admin}");
    assert_eq!(admin[0]["user"], "alice");
    assert_eq!(admin[0]["job"], log[0]["id"]);
    assert_eq!(admin[0]["status"], "completed");
    assert_eq!(admin[0]["type"], "full");
    assert_eq!(admin[0]["files"], log[0]["summary"]["files"]);
    assert_eq!(admin[0]["snapshot"], log[0]["snapshot"]);
    // Two copies of everything: on the two safest demo sites in different regions.
    assert_eq!(admin[0]["stored_at"], "demo-east,demo-west", "{admin}");
    assert!(alice.svc.admin(&["log"]).contains("completed"));
    let bob_log = alice.svc.admin_json(&["log", "--member", "bob"]);
    assert_eq!(bob_log, serde_json::json!([]));
}

#[test]
fn a_user_sees_none_of_another_users_files() {
    // Whatever names bob sends.
    let (alice, _) = alice_backed_up();
    alice.another("bob", "bob password 22");
    let alice_sees = alice.backend();
    let bob = alice.svc.backend("bob", "bob password 22").unwrap();
    let alice_snaps = alice_sees.list(FileType::Snapshot).unwrap();
    assert_eq!(alice_snaps.len(), 1);
    for t in [
        FileType::Snapshot,
        FileType::Pack,
        FileType::Index,
        FileType::Key,
        FileType::Device,
        FileType::Config,
        FileType::Log,
    ] {
        assert!(bob.list(t).unwrap().is_empty(), "bob lists {t:?}");
        for name in alice_sees.list(t).unwrap() {
            assert!(
                matches!(bob.read(t, &name), Err(BackendError::NotFound(_))),
                "bob reads {t:?} {name}"
            );
            assert!(matches!(bob.size(t, &name), Err(BackendError::NotFound(_))));
            bob.remove(t, &name).unwrap();
            bob.write(t, &name, b"overwrite attempt").unwrap();
            assert_ne!(
                alice_sees.read(t, &name).unwrap(),
                b"overwrite attempt",
                "bob overwrote alice's {t:?}"
            );
        }
    }
    for evil in ["../1/repo/config", "..", "%2e%2e", "ABCDEF", "a/b", ""] {
        let r = bob.read(FileType::Pack, evil);
        assert!(r.is_err(), "{evil:?} was accepted");
    }
    assert_eq!(alice_sees.list(FileType::Snapshot).unwrap(), alice_snaps);
    alice.ok(&["check", "--read-data"]);
}

#[test]
fn a_wrong_password_is_refused_with_the_reason() {
    let alice = Member::start("alice");
    alice.init();
    let out = alice
        .cmd(&["snapshots"])
        .env("KURA_USER_PASSWORD", "wrong password")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wrong user name or password"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn failed_logins_are_counted_in_the_metrics() {
    let alice = Member::start("alice");
    let out = alice
        .cmd(&["snapshots"])
        .env("KURA_USER_PASSWORD", "wrong password")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let metrics = alice
        .svc
        .http()
        .get(format!("{}/metrics", alice.svc.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("kura_auth_failures_total 1"), "{metrics}");
}

#[test]
fn a_configured_metrics_token_guards_the_metrics() {
    let env = Env::new();
    let token = env.path("metrics.token");
    std::fs::write(&token, "a metrics token of some length\n").unwrap();
    let svc = Service::options(&env)
        .config(&format!("metrics_token_file = {:?}\n", token))
        .start();
    let get = |auth: Option<&str>| {
        let mut r = svc.http().get(format!("{}/metrics", svc.url));
        if let Some(t) = auth {
            r = r.bearer_auth(t);
        }
        r.send().unwrap()
    };
    assert_eq!(get(None).status().as_u16(), 401);
    assert_eq!(get(Some("a guess")).status().as_u16(), 401);
    let ok = get(Some("a metrics token of some length"));
    assert_eq!(ok.status().as_u16(), 200);
    assert!(ok.text().unwrap().contains("kura_requests_total"));
}

#[test]
fn another_certificate_is_refused_without_retrying() {
    let alice = Member::start("alice");
    alice.init();
    let out = alice
        .cmd(&["snapshots"])
        .env("KURA_SERVER_FINGERPRINT", "00".repeat(32))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("fingerprint"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("gave up"),
        "a certificate refusal is not retried: {}",
        stderr(&out)
    );
}

#[test]
fn the_health_check_answers() {
    let env = Env::new();
    let svc = Service::start(&env);
    let health = svc
        .http()
        .get(format!("{}/healthz", svc.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(health, "ok\n");
}

#[test]
fn requests_without_a_valid_session_are_refused() {
    let env = Env::new();
    let svc = Service::start(&env);
    let http = svc.http();
    let anon = http
        .get(format!("{}/v1/repo/snapshots", svc.url))
        .send()
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    let forged = http
        .get(format!("{}/v1/repo/snapshots", svc.url))
        .bearer_auth("f".repeat(64))
        .send()
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
}

#[test]
fn a_client_that_stalls_in_its_headers_is_disconnected() {
    let env = Env::new();
    let svc = Service::options(&env)
        .args(&["--header-timeout-secs", "1"])
        .start();
    let config =
        std::sync::Arc::new(kura_repo::remote::tls_config(Some(&svc.fingerprint), None).unwrap());
    let connect = || {
        let tcp = std::net::TcpStream::connect(svc.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let conn =
            rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    };

    // Half a request, then nothing: the service hangs up after the header timeout.
    let mut slow = connect();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(15), "held for {waited:?}");
    assert!(
        !String::from_utf8_lossy(&buf).contains("ok"),
        "answered a half request"
    );

    // Meanwhile and afterwards, a complete request is answered.
    let mut quick = connect();
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = quick.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Dan with two backups of a small tree, a file added between them; the source, the recovery
/// code and both backups' reports.
struct TwoBackups {
    dan: Member,
    src: PathBuf,
    code: String,
    first: serde_json::Value,
    second: serde_json::Value,
}

fn two_backups() -> TwoBackups {
    let dan = Member::start("dan");
    let src = dan.path("src");
    make_tree(&src, 12, 31);
    let s = src.to_str().unwrap();
    let code = dan.json(&["init"])["recovery_code"]
        .as_str()
        .unwrap()
        .to_string();
    let first = dan.json(&["backup", s]);
    fs::write(src.join("added"), b"new file").unwrap();
    let second = dan.json(&["backup", s]);
    TwoBackups {
        dan,
        src,
        code,
        first,
        second,
    }
}

#[test]
fn snapshots_ls_diff_work_through_the_service() {
    let TwoBackups {
        dan, src, first, ..
    } = two_backups();
    let s = src.to_str().unwrap();
    assert_eq!(dan.json(&["snapshots"]).as_array().unwrap().len(), 2);
    let listing = dan.ok(&["ls", "latest", s]);
    assert!(listing.contains("added"), "{listing}");
    let diff = dan.ok(&["diff", first["short_id"].as_str().unwrap(), "latest"]);
    assert!(diff.contains("added"), "{diff}");
}

#[test]
fn a_second_device_joins_through_the_service() {
    // With the recovery code, and restores.
    let TwoBackups { dan, src, code, .. } = two_backups();
    let laptop = dan.device(&dan.path("laptop-state"));
    run_ok(
        laptop
            .cmd(&["device", "add", "--name", "laptop"])
            .env("KURA_RECOVERY_CODE", &code)
            .env_remove("KURA_PASSWORD"),
    );
    assert_eq!(dan.json(&["device", "list"]).as_array().unwrap().len(), 2);
    let t = dan.path("t");
    laptop.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
}

#[test]
fn forget_prune_work_through_the_service() {
    // Forget the first snapshot and prune; the rest stays whole.
    let TwoBackups {
        dan,
        src,
        first,
        second,
        ..
    } = two_backups();
    dan.ok(&["forget", first["id"].as_str().unwrap(), "--prune"]);
    let left = dan.json(&["snapshots"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], second["id"]);
    dan.ok(&["prune"]);
    dan.ok(&["check", "--read-data"]);
    let t2 = dan.path("t2");
    dan.ok(&["restore", "latest", "--target", t2.to_str().unwrap()]);
    assert_eq!(contents(&src), contents(&restored(&t2, &src)));
}

#[test]
fn no_secret_reaches_the_service_log() {
    let env = Env::new();
    let log_path = env.path("serve.log");
    let svc = Service::options(&env).log("trace", &log_path).start();
    let mut erin = Member::on(env, svc, "erin");
    let src = erin.path("src");
    make_tree(&src, 3, 77);
    erin.init();
    erin.backup(&src);
    let wrong = erin
        .cmd(&["snapshots"])
        .env("KURA_USER_PASSWORD", "a wrong guess of a password")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    // A session token, to look for in the log.
    let token = {
        let http = erin.svc.http();
        let token = erin.svc.token(&http, "erin", &erin.password);
        http.get(format!("{}/v1/repo/snapshots", erin.svc.url))
            .bearer_auth(&token)
            .send()
            .unwrap();
        token
    };
    erin.svc.kill();
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("session opened"),
        "the log is being written: {log}"
    );
    for secret in [
        erin.password.as_str(),
        "a wrong guess of a password",
        erin.passphrase().as_str(),
        token.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the service log");
    }
}

#[test]
fn sixteen_clients_use_the_service_at_once() {
    let env = Env::new();
    let svc = Service::start(&env);
    let clients: Vec<Client> = (0..16)
        .map(|i| {
            let user = format!("user{i}");
            let password = format!("{user} password");
            svc.add_user(&user, &password);
            Client::new(&env, &svc, &user, &password)
        })
        .collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let env = &env;
                s.spawn(move || -> Result<(), String> {
                    let u = &c.user;
                    let src = env.path(&format!("src-{u}"));
                    make_tree(&src, 12, 1000 + i as u64);
                    fs::write(src.join("big"), noise(1_500_000, 2000 + i as u64)).unwrap();
                    let t = env.path(&format!("t-{u}"));
                    for args in [
                        vec!["init"],
                        vec!["backup", src.to_str().unwrap()],
                        vec!["restore", "latest", "--target", t.to_str().unwrap()],
                    ] {
                        let out = c.run(&args);
                        if !out.status.success() {
                            return Err(format!("{u} {args:?}: {}", stderr(&out)));
                        }
                    }
                    if contents(&src) != contents(&restored(&t, &src)) {
                        return Err(format!("{u}: restore differs"));
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    assert!(failures.is_empty(), "{failures:#?}");
    let listed = svc.admin_json(&["user", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["bytes"].as_u64().unwrap() > 1_000_000)
    );
}

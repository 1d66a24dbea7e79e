//! The service through the real binary: `kura serve` on loopback with TLS, the client using it
//! as a repository, authentication, contracts and isolation between users.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::service::*;
use crate::common::*;
use kura_repo::{Backend, BackendError, FileType};

#[test]
fn backup_and_restore_through_the_service_with_isolation() {
    let env = Env::new();
    let svc = Service::start(&env.path("service"));
    svc.add_user("alice", "alice password", env.dir.path());
    svc.add_user("bob", "bob password 22", env.dir.path());
    let src = env.path("src");
    make_tree(&src, 25, 40);
    fs::write(src.join("big"), noise(6_000_000, 4)).unwrap();
    let s = src.to_str().unwrap();

    run_ok(client(&env, &svc, "alice", "alice password", &["init"]));
    run_ok(client(
        &env,
        &svc,
        "alice",
        "alice password",
        &["backup", s],
    ));
    let t = env.path("t");
    run_ok(client(
        &env,
        &svc,
        "alice",
        "alice password",
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
    run_ok(client(
        &env,
        &svc,
        "alice",
        "alice password",
        &["check", "--read-data"],
    ));

    // The service stores only ciphertext: no plaintext of the source, and not even the
    // names of what was backed up, appear in its files (the database included).
    let needles = [&noise(6_000_000, 4)[1000..1032], s.as_bytes()];
    let mut stack = vec![svc.data.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
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
    }

    // The backup log: the client's, and the operator's (when, how, how much, where).
    let log: serde_json::Value = serde_json::from_str(&run_ok(client(
        &env,
        &svc,
        "alice",
        "alice password",
        &["log", "--json"],
    )))
    .unwrap();
    assert_eq!(log[0]["status"], "completed");
    assert_eq!(log[0]["paths"][0], s);
    assert_eq!(log[0]["location"], svc.url.as_str());
    let admin: serde_json::Value = svc.admin_json(&["log", "--user", "alice"]);
    assert_eq!(admin.as_array().unwrap().len(), 1, "{admin}");
    assert_eq!(admin[0]["user"], "alice");
    assert_eq!(admin[0]["job"], log[0]["id"]);
    assert_eq!(admin[0]["status"], "completed");
    assert_eq!(admin[0]["type"], "full");
    assert_eq!(admin[0]["files"], log[0]["summary"]["files"]);
    assert_eq!(admin[0]["snapshot"], log[0]["snapshot"]);
    // Two copies of everything: on the two safest demo sites in different regions.
    assert_eq!(admin[0]["stored_at"], "demo-east,demo-west", "{admin}");
    assert!(svc.admin(&["log"]).contains("completed"));
    let bob_log: serde_json::Value = svc.admin_json(&["log", "--user", "bob"]);
    assert_eq!(bob_log, serde_json::json!([]));

    // Bob sees none of Alice's files, whatever names he sends.
    let alice = svc.backend("alice", "alice password").unwrap();
    let bob = svc.backend("bob", "bob password 22").unwrap();
    let alice_snaps = alice.list(FileType::Snapshot).unwrap();
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
        for name in alice.list(t).unwrap() {
            assert!(
                matches!(bob.read(t, &name), Err(BackendError::NotFound(_))),
                "bob reads {t:?} {name}"
            );
            assert!(matches!(bob.size(t, &name), Err(BackendError::NotFound(_))));
            bob.remove(t, &name).unwrap();
            bob.write(t, &name, b"overwrite attempt").unwrap();
            assert_ne!(
                alice.read(t, &name).unwrap(),
                b"overwrite attempt",
                "bob overwrote alice's {t:?}"
            );
        }
    }
    for evil in ["../1/repo/config", "..", "%2e%2e", "ABCDEF", "a/b", ""] {
        let r = bob.read(FileType::Pack, evil);
        assert!(r.is_err(), "{evil:?} was accepted");
    }
    assert_eq!(alice.list(FileType::Snapshot).unwrap(), alice_snaps);
    run_ok(client(
        &env,
        &svc,
        "alice",
        "alice password",
        &["check", "--read-data"],
    ));

    // Credentials and pinning.
    let out = client(&env, &svc, "alice", "wrong password", &["snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wrong user name or password"),
        "{}",
        stderr(&out)
    );
    let out = client(&env, &svc, "alice", "alice password", &["snapshots"])
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

    // Health and metrics.
    let http = svc.http();
    assert_eq!(
        http.get(format!("{}/healthz", svc.url))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "ok\n"
    );
    let metrics = http
        .get(format!("{}/metrics", svc.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("kura_auth_failures_total 1"), "{metrics}");
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

/// User 1's packs on the primary demo site (not files being written).
fn stored_packs(data: &Path) -> usize {
    fs::read_dir(data.join("sites/east/users/1/data"))
        .map(|d| {
            d.filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains('#')
            })
            .count()
        })
        .unwrap_or(0)
}

/// Unfinished uploads the service holds for user 1.
fn partial_uploads(data: &Path) -> usize {
    fs::read_dir(data.join("users/1/uploads"))
        .map(|d| {
            d.filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
        })
        .unwrap_or(0)
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

fn twenty_files(env: &Env) -> PathBuf {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), noise(4_000_000, 700 + i)).unwrap();
    }
    src
}

#[test]
fn pieces_are_checked_resumable_and_private() {
    let env = Env::new();
    let svc = Service::start(&env.path("service"));
    svc.add_user("alice", "alice password", env.dir.path());
    svc.add_user("bob", "bob password 22", env.dir.path());
    let http = svc.http();
    let (alice, bob) = (
        svc.token(&http, "alice", "alice password"),
        svc.token(&http, "bob", "bob password 22"),
    );
    let sha = |d: &[u8]| kura_service::upload::sha256_hex(d);
    let object: Vec<u8> = noise(300_000, 9);
    let name = "ab".repeat(32);
    let url = format!("{}/v1/uploads/data/{name}", svc.url);
    let piece = |token: &str, offset: usize, bytes: &[u8], sum: &str| {
        http.put(format!("{url}?offset={offset}"))
            .bearer_auth(token)
            .header("x-kura-sha256", sum)
            .body(bytes.to_vec())
            .send()
            .unwrap()
    };
    let body = |r: reqwest::blocking::Response| -> (u16, serde_json::Value) {
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_slice(&r.bytes().unwrap()).unwrap_or_default(),
        )
    };

    // Without a session nothing is taken.
    let (status, _) = body(piece("", 0, &object[..1000], &sha(&object[..1000])));
    assert_eq!(status, 401);
    let (status, v) = body(piece(
        &alice,
        0,
        &object[..100_000],
        &sha(&object[..100_000]),
    ));
    assert_eq!((status, v["received"].as_u64()), (200, Some(100_000)));
    // A damaged piece is answered with a resend request and changes nothing.
    let mut damaged = object[100_000..200_000].to_vec();
    damaged[7] ^= 1;
    let (status, v) = body(piece(
        &alice,
        100_000,
        &damaged,
        &sha(&object[100_000..200_000]),
    ));
    assert_eq!((status, v["resend"].as_bool()), (422, Some(true)), "{v}");
    // A piece at the wrong place is answered with where to go on.
    let (status, v) = body(piece(
        &alice,
        50_000,
        &object[50_000..60_000],
        &sha(&object[50_000..60_000]),
    ));
    assert_eq!(
        (status, v["received"].as_u64()),
        (409, Some(100_000)),
        "{v}"
    );
    let (status, v) = body(piece(&alice, 0, b"x", "not a checksum"));
    assert_eq!(status, 400, "{v}");
    let status = http.head(&url).bearer_auth(&alice).send().unwrap();
    assert_eq!(status.headers()["x-kura-received"], "100000");

    // Bob sees no trace of Alice's upload and cannot touch it.
    let (status, v) = body(
        http.get(format!("{}/v1/uploads", svc.url))
            .bearer_auth(&bob)
            .send()
            .unwrap(),
    );
    assert_eq!((status, v), (200, serde_json::json!([])));
    assert_eq!(
        http.head(&url)
            .bearer_auth(&bob)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    let (status, _) = body(piece(
        &bob,
        100_000,
        &object[100_000..],
        &sha(&object[100_000..]),
    ));
    assert_eq!(status, 409, "bob's piece must not extend alice's upload");
    assert_eq!(
        http.delete(&url)
            .bearer_auth(&bob)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let commit = |token: &str, sum: &str| {
        http.post(&url)
            .bearer_auth(token)
            .header("x-kura-sha256", sum)
            .send()
            .unwrap()
    };
    assert_eq!(commit(&bob, &sha(&object)).status().as_u16(), 404);
    let (_, v) = body(
        http.get(format!("{}/v1/uploads", svc.url))
            .bearer_auth(&alice)
            .send()
            .unwrap(),
    );
    assert_eq!(v[0]["received"].as_u64(), Some(100_000), "{v}");

    // Nothing is visible until the whole object is committed with the right checksum.
    let (status, _) = body(piece(
        &alice,
        100_000,
        &object[100_000..],
        &sha(&object[100_000..]),
    ));
    assert_eq!(status, 200);
    let read = |token: &str| {
        http.get(format!("{}/v1/repo/data/{name}", svc.url))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    assert_eq!(read(&alice).status().as_u16(), 404);
    assert_eq!(
        commit(&alice, &sha(b"something else")).status().as_u16(),
        422
    );
    assert_eq!(
        read(&alice).status().as_u16(),
        404,
        "a mismatched commit was stored"
    );
    assert_eq!(
        http.head(&url)
            .bearer_auth(&alice)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    for (offset, part) in [(0, &object[..150_000]), (150_000, &object[150_000..])] {
        assert_eq!(
            piece(&alice, offset, part, &sha(part)).status().as_u16(),
            200
        );
    }
    assert_eq!(commit(&alice, &sha(&object)).status().as_u16(), 204);
    assert_eq!(read(&alice).bytes().unwrap().to_vec(), object);
    assert_eq!(read(&bob).status().as_u16(), 404);
    // A range running past the end gives what there is; one starting past it, nothing.
    let ranged = |range: &str| {
        http.get(format!("{}/v1/repo/data/{name}", svc.url))
            .bearer_auth(&alice)
            .header("range", range)
            .send()
            .unwrap()
    };
    let tail = ranged("bytes=299990-400000");
    assert_eq!(tail.status().as_u16(), 206);
    assert_eq!(tail.bytes().unwrap().to_vec(), &object[299_990..]);
    assert_eq!(ranged("bytes=300000-300010").status().as_u16(), 416);

    // Job reports the operator's log could not hold are refused.
    let report = |body: serde_json::Value| {
        http.put(format!("{}/v1/jobs/{}", svc.url, "ab".repeat(16)))
            .bearer_auth(&alice)
            .body(body.to_string())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let good = serde_json::json!({"job": "ab".repeat(16), "type": "full", "status": "running",
        "started": "2026-11-21T10:00:00Z", "ended": null, "files": 1, "bytes": 2,
        "stored_added": 3, "snapshot": null});
    assert_eq!(report(good.clone()), 204);
    let mut huge = good.clone();
    huge["files"] = u64::MAX.into();
    assert_eq!(report(huge), 400);
    let mut odd = good.clone();
    odd["snapshot"] = "é".repeat(40).into();
    assert_eq!(report(odd), 400);
    let mut long = good;
    long["snapshot"] = "a".repeat(20_000).into();
    assert_eq!(report(long), 413, "a job report is small");
    let big_login = http
        .post(format!("{}/v1/login", svc.url))
        .body(vec![b' '; 20_000])
        .send()
        .unwrap();
    assert_eq!(big_login.status().as_u16(), 413);
    // Without a session, nothing is read or stored, whatever the body.
    // (The service answers 401 at once; a client still sending may see the connection close.)
    let anon = http
        .put(format!("{}/v1/repo/data/{}", svc.url, "ef".repeat(32)))
        .body(vec![0u8; 8 << 20])
        .send();
    if let Ok(r) = anon {
        assert_eq!(r.status().as_u16(), 401);
    }
    assert_eq!(
        read_json::<Vec<String>>(&http, &format!("{}/v1/repo/data", svc.url), &alice).len(),
        1
    );
    let admin_log = svc.admin(&["log"]);
    assert!(admin_log.contains("running"), "{admin_log}");

    // A whole-object PUT with a checksum that does not match is refused with a resend request.
    let r = http
        .put(format!("{}/v1/repo/index/{}", svc.url, "cd".repeat(32)))
        .bearer_auth(&alice)
        .header("x-kura-sha256", sha(b"other"))
        .body(b"contents".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let listed: Vec<String> = read_json(&http, &format!("{}/v1/repo/index", svc.url), &alice);
    assert!(listed.is_empty(), "{listed:?}");

    // Unfinished uploads count against the storage limit.
    let users: serde_json::Value = svc.admin_json(&["user", "list"]);
    let used = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alice")
        .unwrap()["bytes"]
        .as_u64()
        .unwrap();
    let limit = (used + 150_000).to_string();
    svc.admin(&[
        "contract",
        "set",
        "alice",
        "--until",
        "2099-12-31",
        "--paid",
        "yes",
        "--max-bytes",
        &limit,
    ]);
    let alice = svc.token(&http, "alice", "alice password");
    let part = &object[..100_000];
    let start = |name: &str| {
        http.put(format!("{}/v1/uploads/data/{name}?offset=0", svc.url))
            .bearer_auth(&alice)
            .header("x-kura-sha256", sha(part))
            .body(part.to_vec())
            .send()
            .unwrap()
    };
    assert_eq!(start(&"01".repeat(32)).status().as_u16(), 200);
    let (status, v) = body(start(&"02".repeat(32)));
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("storage limit"),
        "{v}"
    );
}

fn read_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::blocking::Client,
    url: &str,
    token: &str,
) -> T {
    serde_json::from_slice(
        &http
            .get(url)
            .bearer_auth(token)
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn a_backup_rides_out_a_service_restart_mid_piece() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start(&data);
    svc.add_user("erin", "erin password", env.dir.path());
    let src = twenty_files(&env);
    run_ok(client(&env, &svc, "erin", "erin password", &["init"]));
    // Small pieces, so the service is killed in the middle of an object.
    let backup = client(
        &env,
        &svc,
        "erin",
        "erin password",
        &["backup", src.to_str().unwrap(), "--json"],
    )
    .env("KURA_PIECE_KIB", "256")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for("a piece-wise upload", || {
        stored_packs(&data) >= 1 && partial_uploads(&data) >= 1
    });
    let port = svc.url.rsplit(':').next().unwrap().to_string();
    drop(svc); // SIGKILL
    let cut_at = stored_packs(&data);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let svc = Service::start_on(&data, &format!("127.0.0.1:{port}"));

    // The same backup process carries on and finishes.
    let out = backup.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["summary"]["files_new"].as_u64().unwrap() == 20, "{v}");
    assert!(stored_packs(&data) > cut_at);
    assert_eq!(partial_uploads(&data), 0, "a partial upload was left");
    restore_and_compare(&env, &svc, "erin", "erin password", &src);
}

#[test]
fn a_killed_service_loses_nothing_and_the_backup_resumes() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start(&data);
    svc.add_user("dave", "dave password", env.dir.path());
    let src = twenty_files(&env);
    let total = 20 * 4_000_000u64;
    run_ok(client(&env, &svc, "dave", "dave password", &["init"]));
    let backup = client(
        &env,
        &svc,
        "dave",
        "dave password",
        &["backup", src.to_str().unwrap()],
    )
    .env("KURA_RETRY_SECS", "2")
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Two packs stored and recorded, as a client sees them.
    let seen = svc.backend("dave", "dave password").unwrap();
    wait_for("two packs", || {
        seen.list(FileType::Pack).unwrap().len() >= 2
    });
    let port = svc.url.rsplit(':').next().unwrap().to_string();
    drop(svc); // SIGKILL
    let out = backup.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the backup cannot finish without the service"
    );
    assert!(stderr(&out).contains("gave up after"), "{}", stderr(&out));
    assert!(stored_packs(&data) >= 2);

    // The job is left failed, with the reason, on the device.
    let svc = Service::start_on(&data, &format!("127.0.0.1:{port}"));
    let jobs: serde_json::Value = serde_json::from_str(&run_ok(client(
        &env,
        &svc,
        "dave",
        "dave password",
        &["jobs", "--json"],
    )))
    .unwrap();
    assert_eq!(jobs[0]["status"], "failed", "{jobs}");
    assert!(
        jobs[0]["error"].as_str().unwrap().contains("gave up"),
        "{jobs}"
    );

    // The same service came back on the same port; the next backup resumes the job.
    let out = run_ok(client(
        &env,
        &svc,
        "dave",
        "dave password",
        &["backup", src.to_str().unwrap(), "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["job"], jobs[0]["id"]);
    assert_eq!(v["attempts"], 2);
    assert!(
        v["summary"]["data_added"].as_u64().unwrap() < total,
        "resume re-sent everything: {v}"
    );
    restore_and_compare(&env, &svc, "dave", "dave password", &src);
}

#[test]
fn contracts_are_enforced_with_clear_errors() {
    let env = Env::new();
    let svc = Service::start(&env.path("service"));
    svc.add_user("carol", "carol password", env.dir.path());
    let src = env.path("src");
    make_tree(&src, 5, 50);
    let s = src.to_str().unwrap();
    let carol = |args: &[&str]| client(&env, &svc, "carol", "carol password", args);
    run_ok(carol(&["init"]));

    svc.admin(&[
        "contract",
        "set",
        "carol",
        "--until",
        "2099-12-31",
        "--paid",
        "yes",
        "--max-archives",
        "1",
    ]);
    run_ok(carol(&["backup", s]));
    let out = carol(&["backup", s]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("limit of 1 archives"),
        "{}",
        stderr(&out)
    );

    svc.admin(&[
        "contract",
        "set",
        "carol",
        "--until",
        "2099-12-31",
        "--paid",
        "no",
    ]);
    let out = carol(&["snapshots"]).output().unwrap();
    assert!(stderr(&out).contains("not paid"), "{}", stderr(&out));

    svc.admin(&[
        "contract",
        "set",
        "carol",
        "--until",
        "2020-01-01",
        "--paid",
        "yes",
    ]);
    let out = carol(&["snapshots"]).output().unwrap();
    assert!(stderr(&out).contains("lapsed"), "{}", stderr(&out));

    svc.admin(&[
        "contract",
        "set",
        "carol",
        "--until",
        "2099-12-31",
        "--paid",
        "yes",
        "--max-bytes",
        "1000",
    ]);
    fs::write(src.join("more"), noise(50_000, 9)).unwrap();
    let out = carol(&["backup", s]).output().unwrap();
    assert!(
        stderr(&out).contains("storage limit of 1000 bytes"),
        "{}",
        stderr(&out)
    );

    let users: serde_json::Value =
        serde_json::from_str(&svc.admin(&["user", "list", "--json"])).unwrap();
    assert!(users[0]["accesses"].as_u64().unwrap() >= 4);
    assert!(users[0]["bytes"].as_u64().unwrap() > 0);
    svc.admin(&[
        "contract",
        "set",
        "carol",
        "--until",
        "2099-12-31",
        "--paid",
        "yes",
        "--max-accesses",
        "1",
    ]);
    let out = carol(&["snapshots"]).output().unwrap();
    assert!(
        stderr(&out).contains("accesses is reached"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sixteen_clients_back_up_and_restore_at_once() {
    let env = Env::new();
    let svc = Service::start(&env.path("service"));
    let users: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
    for u in &users {
        svc.add_user(u, &format!("{u} password"), env.dir.path());
    }
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let (env, svc) = (&env, &svc);
                s.spawn(move || -> Result<(), String> {
                    let pw = format!("{u} password");
                    let src = env.path(&format!("src-{u}"));
                    make_tree(&src, 12, 1000 + i as u64);
                    fs::write(src.join("big"), noise(1_500_000, 2000 + i as u64)).unwrap();
                    let t = env.path(&format!("t-{u}"));
                    for args in [
                        vec!["init"],
                        vec!["backup", src.to_str().unwrap()],
                        vec!["restore", "latest", "--target", t.to_str().unwrap()],
                    ] {
                        let out = client(env, svc, u, &pw, &args).output().unwrap();
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
    let listed: serde_json::Value =
        serde_json::from_str(&svc.admin(&["user", "list", "--json"])).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["bytes"].as_u64().unwrap() > 1_000_000)
    );
}

/// A client command that logs in with the client certificate in `dir` (no user, no password).
fn cert_client(env: &Env, svc: &Service, dir: &Path, args: &[&str]) -> Command {
    let mut c = kura();
    c.arg("--repo")
        .arg(&svc.url)
        .arg("--state-dir")
        .arg(env.path("state-cert"))
        .arg("--client-cert")
        .arg(dir.join("client.crt"))
        .arg("--client-key")
        .arg(dir.join("client.key"))
        .args(args)
        .env_remove("KURA_USER_PASSWORD")
        .env("KURA_SERVER_FINGERPRINT", &svc.fingerprint)
        .env("KURA_PASSWORD", "encryption passphrase")
        .env("KURA_INSECURE_FAST_KDF", "1");
    c
}

#[test]
fn a_registered_client_certificate_logs_in_without_a_password() {
    let env = Env::new();
    let svc = Service::start(&env.path("service"));
    svc.add_user("carol", "carol password", env.dir.path());
    svc.add_user("mallory", "mallory password", env.dir.path());
    let certs = env.path("carol-cert");
    let mut c = kura();
    c.args([
        "cert",
        "create",
        "--json",
        "--name",
        "carol-laptop",
        "--out",
    ])
    .arg(&certs);
    let made: serde_json::Value = serde_json::from_str(&run_ok(c)).unwrap();
    let fp = made["fingerprint"].as_str().unwrap().to_string();

    // Not registered yet: refused with the reason.
    let out = cert_client(&env, &svc, &certs, &["init"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no registered client certificate"),
        "{}",
        stderr(&out)
    );

    svc.admin(&["user", "cert", "carol", &fp]);
    let out = kura()
        .args(["admin", "--data-dir"])
        .arg(&svc.data)
        .args(["user", "cert", "mallory", &fp])
        .output()
        .unwrap();
    assert!(!out.status.success(), "one certificate, one user");
    assert!(stderr(&out).contains("another user"), "{}", stderr(&out));

    let src = env.path("src");
    make_tree(&src, 8, 21);
    run_ok(cert_client(&env, &svc, &certs, &["init"]));
    run_ok(cert_client(
        &env,
        &svc,
        &certs,
        &["backup", src.to_str().unwrap()],
    ));
    let t = env.path("t");
    run_ok(cert_client(
        &env,
        &svc,
        &certs,
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
    // The certificate stands for carol: her password sees the same repository, mallory's not.
    let carol = svc.backend("carol", "carol password").unwrap();
    assert_eq!(carol.list(FileType::Snapshot).unwrap().len(), 1);
    let mallory = svc.backend("mallory", "mallory password").unwrap();
    assert!(mallory.list(FileType::Snapshot).unwrap().is_empty());
    let users: serde_json::Value = svc.admin_json(&["user", "list"]);
    let carol_row = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "carol")
        .unwrap();
    assert!(carol_row["accesses"].as_u64().unwrap() >= 3, "{carol_row}");

    // A withdrawn certificate no longer logs in.
    let fp_upper = fp.to_ascii_uppercase();
    svc.admin(&["user", "cert", "carol", &fp_upper, "--remove"]);
    let out = cert_client(&env, &svc, &certs, &["snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no registered client certificate"),
        "{}",
        stderr(&out)
    );

    // A certificate file registered by path works the same; a missing key file is a clear error.
    let other = env.path("other-cert");
    let mut c = kura();
    c.args(["cert", "create", "--out"]).arg(&other);
    run_ok(c);
    svc.admin(&[
        "user",
        "cert",
        "mallory",
        "--cert",
        other.join("client.crt").to_str().unwrap(),
    ]);
    fs::remove_file(other.join("client.key")).unwrap();
    let out = cert_client(&env, &svc, &other, &["snapshots"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("client key"), "{}", stderr(&out));
}

#[test]
fn a_client_that_stalls_in_its_headers_is_disconnected() {
    use std::io::{Read, Write};
    let env = Env::new();
    let data = env.path("service");
    let mut child = kura()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--header-timeout-secs",
            "1",
            "--data-dir",
        ])
        .arg(&data)
        .env("KURA_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap();
    let addr = url
        .strip_prefix("listening on https://")
        .unwrap()
        .to_string();
    std::thread::spawn(move || lines.for_each(drop));
    let fingerprint = fs::read_to_string(data.join("tls/fingerprint")).unwrap();
    let config =
        std::sync::Arc::new(kura_repo::remote::tls_config(Some(fingerprint.trim()), None).unwrap());
    let connect = || {
        let tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let conn =
            rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    };

    // Half a request, then nothing: the service hangs up after the header timeout.
    let mut slow = connect();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(15),
        "held for {waited:?}"
    );
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
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn every_command_works_through_the_service() {
    let env = Env::new();
    let svc = Service::start(&env.path("service"));
    svc.add_user("dan", "dan password", env.dir.path());
    let dan = |args: &[&str]| run_ok(client(&env, &svc, "dan", "dan password", args));
    let json = |args: &[&str]| -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&dan(&a)).unwrap()
    };
    let src = env.path("src");
    make_tree(&src, 12, 31);
    let s = src.to_str().unwrap();
    let code = json(&["init"])["recovery_code"]
        .as_str()
        .unwrap()
        .to_string();
    let first = json(&["backup", s]);
    fs::write(src.join("added"), b"new file").unwrap();
    let second = json(&["backup", s]);
    let snaps = json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    let listing = dan(&["ls", "latest", s]);
    assert!(listing.contains("added"), "{listing}");
    let diff = dan(&["diff", first["short_id"].as_str().unwrap(), "latest"]);
    assert!(diff.contains("added"), "{diff}");

    // A second device joins with the recovery code and restores.
    let laptop = env.path("laptop-state");
    let mut add = client(
        &env,
        &svc,
        "dan",
        "dan password",
        &["device", "add", "--name", "laptop"],
    );
    add.arg("--state-dir")
        .arg(&laptop)
        .env("KURA_RECOVERY_CODE", &code)
        .env_remove("KURA_PASSWORD");
    run_ok(add);
    assert_eq!(json(&["device", "list"]).as_array().unwrap().len(), 2);
    let t = env.path("t");
    let mut restore = client(
        &env,
        &svc,
        "dan",
        "dan password",
        &["restore", "latest", "--target", t.to_str().unwrap()],
    );
    restore.arg("--state-dir").arg(&laptop);
    run_ok(restore);
    assert_eq!(contents(&src), contents(&restored(&t, &src)));

    // Retention: forget the first snapshot and prune; the rest stays whole.
    dan(&["forget", first["id"].as_str().unwrap(), "--prune"]);
    let left = json(&["snapshots"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], second["id"]);
    dan(&["prune"]);
    dan(&["check", "--read-data"]);
    let t2 = env.path("t2");
    dan(&["restore", "latest", "--target", t2.to_str().unwrap()]);
    assert_eq!(contents(&src), contents(&restored(&t2, &src)));
}

#[test]
fn no_secret_reaches_the_service_log() {
    let env = Env::new();
    let log_path = env.path("serve.log");
    let svc = Service::start_logging(
        &env.path("service"),
        "127.0.0.1:0",
        "trace",
        Stdio::from(fs::File::create(&log_path).unwrap()),
    );
    svc.add_user("erin", "erin's secret password", env.dir.path());
    let src = env.path("src");
    make_tree(&src, 3, 77);
    run_ok(client(
        &env,
        &svc,
        "erin",
        "erin's secret password",
        &["init"],
    ));
    run_ok(client(
        &env,
        &svc,
        "erin",
        "erin's secret password",
        &["backup", src.to_str().unwrap()],
    ));
    let wrong = client(
        &env,
        &svc,
        "erin",
        "a wrong guess of a password",
        &["snapshots"],
    )
    .output()
    .unwrap();
    assert!(!wrong.status.success());
    // A session token, to look for in the log.
    let token = {
        let http = svc.http();
        let token = svc.token(&http, "erin", "erin's secret password");
        http.get(format!("{}/v1/repo/snapshots", svc.url))
            .bearer_auth(&token)
            .send()
            .unwrap();
        token
    };
    drop(svc);
    let log = fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("session opened"),
        "the log is being written: {log}"
    );
    for secret in [
        "erin's secret password",
        "a wrong guess of a password",
        "encryption passphrase of erin",
        token.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the service log");
    }
}

#[test]
fn sites_risk_feeds_and_site_keys_are_managed_offline() {
    let env = Env::new();
    let data = env.path("service");
    let admin = |args: &[&str]| -> serde_json::Value {
        let mut c = kura();
        c.arg("admin")
            .arg("--data-dir")
            .arg(&data)
            .arg("--json")
            .args(args);
        serde_json::from_str(&run_ok(c)).unwrap()
    };
    // Without configuration: three demo sites in three regions, each proving its identity.
    let sites = admin(&["sites"]);
    let ids: Vec<&str> = sites
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["demo-east", "demo-west", "demo-north"]);
    for s in sites.as_array().unwrap() {
        assert_eq!(s["status"], "ok", "{s}");
        assert!(s["risk"].as_f64().is_some());
        assert_ne!(s["region"], "", "{s}");
    }
    assert_eq!(sites[1]["risk"].as_f64(), Some(0.4));

    // A risk feed changes the risk of the sites in its regions.
    let feed = env.path("feed.csv");
    fs::write(&feed, "region,earthquake,flood\ndemo-west,0.01,0.02\n").unwrap();
    let imported = admin(&["risk", "import", feed.to_str().unwrap()]);
    assert_eq!(imported["regions"], 1);
    let sites = admin(&["sites"]);
    assert!(
        (sites[1]["risk"].as_f64().unwrap() - 0.03).abs() < 1e-9,
        "{sites}"
    );
    assert_eq!(sites[0]["risk"].as_f64(), Some(0.2));
    fs::write(&feed, "region,earthquake\ndemo-west,lots\n").unwrap();
    let mut c = kura();
    c.arg("admin")
        .arg("--data-dir")
        .arg(&data)
        .args(["risk", "import"])
        .arg(&feed);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));

    // Keys rotate per site; an unknown site is refused.
    // Every site got its first key when the sites were opened.
    assert_eq!(
        admin(&["keys", "rotate", "demo-east"])["key_ref"],
        "demo-east/v2"
    );
    assert_eq!(
        admin(&["keys", "rotate", "demo-east"])["key_ref"],
        "demo-east/v3"
    );
    let mut c = kura();
    c.arg("admin")
        .arg("--data-dir")
        .arg(&data)
        .args(["keys", "rotate", "nowhere"]);
    assert!(stderr(&c.output().unwrap()).contains("no site"));

    // A configured site pointing at another site's storage answers with the wrong identity.
    let shared = env.path("shared-site");
    let config = env.path("server.toml");
    fs::write(
        &config,
        format!(
            r#"[[sites]]
id = "tokyo"
region = "kanto"
url = "file://{p}"
secret = "tokyo secret"
risk = 0.3

[[sites]]
id = "osaka"
region = "kansai"
url = "file://{p}"
secret = "osaka secret"
risk = 0.5

[[levels]]
level = "gold"
plans = ["premium"]
min_years = 2
sites = ["tokyo", "osaka"]
"#,
            p = shared.display()
        ),
    )
    .unwrap();
    let mut c = kura();
    c.arg("admin")
        .arg("--data-dir")
        .arg(env.path("service-2"))
        .arg("--server-config")
        .arg(&config)
        .args(["--json", "sites"]);
    let sites: serde_json::Value = serde_json::from_str(&run_ok(c)).unwrap();
    assert_eq!(sites[0]["status"], "ok");

    // Levels come from the plan and the contract years, by the configured rules.
    let data2 = env.path("service-2");
    let admin2 = |args: &[&str]| -> String {
        let mut c = kura();
        c.arg("admin")
            .arg("--data-dir")
            .arg(&data2)
            .arg("--server-config")
            .arg(&config)
            .args(args);
        run_ok(c)
    };
    let pw = env.path("pw");
    fs::write(&pw, "member password").unwrap();
    for (name, plan, since) in [
        ("old", "premium", "2020-01-01"),
        ("new", "premium", "2026-11-01"),
    ] {
        admin2(&["user", "add", name, "--password-file", pw.to_str().unwrap()]);
        admin2(&[
            "contract",
            "set",
            name,
            "--until",
            "2099-12-31",
            "--paid",
            "yes",
            "--plan",
            plan,
            "--home-region",
            "kanto",
            "--member-since",
            since,
        ]);
    }
    let users: serde_json::Value =
        serde_json::from_str(&admin2(&["--json", "user", "list"])).unwrap();
    let level = |name: &str| {
        let u = users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap();
        (
            u["level"].as_str().unwrap().to_string(),
            u["contract"]["home_region"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(level("old"), ("gold".to_string(), "kanto".to_string()));
    assert_eq!(level("new"), ("standard".to_string(), "kanto".to_string()));
    let osaka = sites[1]["status"].as_str().unwrap();
    assert!(
        osaka.contains("failed authentication") && osaka.contains("tokyo"),
        "{osaka}"
    );
}

//! The service through the real binary: `kura serve` on loopback with TLS, the client using it
//! as a repository, authentication, contracts and isolation between users.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use kura_repo::remote::{HttpBackend, Remote};
use kura_repo::{Backend, BackendError, FileType};

/// A running `kura serve`, stopped when dropped.
struct Service {
    child: Child,
    url: String,
    fingerprint: String,
    data: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kura() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
    c.env_remove("KURA_REPO")
        .env_remove("KURA_USER")
        .env_remove("KURA_USER_PASSWORD");
    c
}

impl Service {
    fn start(data: &Path) -> Service {
        Service::start_on(data, "127.0.0.1:0")
    }

    /// Starts `kura serve` on `listen` and waits until it accepts connections.
    fn start_on(data: &Path, listen: &str) -> Service {
        let mut child = kura()
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data)
            .env("KURA_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .next()
            .unwrap()
            .unwrap()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        // Keep draining the service's stdout so it never writes into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let fingerprint = fs::read_to_string(data.join("tls/fingerprint"))
            .unwrap()
            .trim()
            .to_string();
        Service {
            child,
            url,
            fingerprint,
            data: data.to_path_buf(),
        }
    }

    fn admin(&self, args: &[&str]) -> String {
        let mut c = kura();
        c.arg("admin").arg("--data-dir").arg(&self.data).args(args);
        run_ok(c)
    }

    fn add_user(&self, name: &str, password: &str, dir: &Path) {
        let pw = dir.join(format!("{name}.pw"));
        fs::write(&pw, format!("{password}\n")).unwrap();
        self.admin(&["user", "add", name, "--password-file", pw.to_str().unwrap()]);
        self.admin(&[
            "contract",
            "set",
            name,
            "--until",
            "2099-12-31",
            "--paid",
            "yes",
        ]);
    }

    fn backend(&self, user: &str, password: &str) -> Result<HttpBackend, BackendError> {
        HttpBackend::connect(Remote {
            url: self.url.clone(),
            fingerprint: Some(self.fingerprint.clone()),
            user: user.into(),
            password: password.into(),
        })
    }
}

/// A client command as `user` against the service.
fn client(env: &Env, svc: &Service, user: &str, password: &str, args: &[&str]) -> Command {
    let mut c = kura();
    c.arg("--repo")
        .arg(&svc.url)
        .arg("--state-dir")
        .arg(env.path(&format!("state-{user}")))
        .args(args)
        .env("KURA_USER", user)
        .env("KURA_USER_PASSWORD", password)
        .env("KURA_SERVER_FINGERPRINT", &svc.fingerprint)
        .env("KURA_PASSWORD", format!("encryption passphrase of {user}"))
        .env("KURA_INSECURE_FAST_KDF", "1");
    c
}

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

    // The service stores only ciphertext: no plaintext of the source appears in its files.
    let needle = &noise(6_000_000, 4)[1000..1032];
    let mut stack = vec![svc.data.join("users")];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let data = fs::read(&p).unwrap();
                assert!(
                    !data.windows(needle.len()).any(|w| w == needle),
                    "plaintext in {}",
                    p.display()
                );
            }
        }
    }

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

    // Health and metrics.
    let http = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(kura_repo::remote::tls_config(Some(&svc.fingerprint)).unwrap())
        .build()
        .unwrap();
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

#[test]
fn a_killed_service_loses_nothing_and_the_backup_resumes() {
    let env = Env::new();
    let data = env.path("service");
    let svc = Service::start(&data);
    svc.add_user("dave", "dave password", env.dir.path());
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..20 {
        fs::write(src.join(format!("f{i}")), noise(4_000_000, 700 + i)).unwrap();
    }
    let total = 20 * 4_000_000u64;
    run_ok(client(&env, &svc, "dave", "dave password", &["init"]));
    let mut backup = client(
        &env,
        &svc,
        "dave",
        "dave password",
        &["backup", src.to_str().unwrap()],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let packs_dir = data.join("users/1/repo/data");
    let count = || {
        fs::read_dir(&packs_dir)
            .map(|d| {
                d.flat_map(|e| fs::read_dir(e.unwrap().path()).unwrap())
                    .filter(|e| {
                        !e.as_ref()
                            .unwrap()
                            .file_name()
                            .to_string_lossy()
                            .starts_with('.')
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let port = svc.url.rsplit(':').next().unwrap().to_string();
    drop(svc); // SIGKILL
    assert!(
        !backup.wait().unwrap().success(),
        "the backup cannot finish without the service"
    );
    assert!(count() >= 2);

    // The same service comes back on the same port; the client resumes.
    let svc = Service::start_on(&data, &format!("127.0.0.1:{port}"));
    let out = run_ok(client(
        &env,
        &svc,
        "dave",
        "dave password",
        &["backup", src.to_str().unwrap(), "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["summary"]["data_added"].as_u64().unwrap() < total,
        "resume re-sent everything: {v}"
    );
    run_ok(client(
        &env,
        &svc,
        "dave",
        "dave password",
        &["check", "--read-data"],
    ));
    let t = env.path("t");
    run_ok(client(
        &env,
        &svc,
        "dave",
        "dave password",
        &["restore", "latest", "--target", t.to_str().unwrap()],
    ));
    assert_eq!(contents(&src), contents(&restored(&t, &src)));
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

//! What an anonymous or hostile client can cost the service: password checks run a few at a
//! time whatever the number of connections, guessing a password makes the guesser wait, and
//! a mix of every attack at once leaves memory, descriptors and stored bytes within their
//! bounds while a user is served.

use std::time::Duration;

use reqwest::StatusCode;

use crate::fixture::*;

fn login(svc: &Service, user: &str, password: &str) -> reqwest::blocking::Response {
    svc.http()
        .post(format!("{}/v1/login", svc.url))
        .body(serde_json::json!({"user": user, "password": password}).to_string())
        .send()
        .unwrap()
}

#[test]
fn concurrent_password_checks_are_capped_and_memory_stays_bounded() {
    let env = Env::new();
    let svc = Service::options(&env)
        .config("password_checks = 2\n")
        .start();
    svc.add_user("alice", "alice password");
    let before = svc.peak_rss_kib();
    // Forty clients at once, each guessing a different name (so no per-name wait applies):
    // without a cap each Argon2id check holds about 19 MiB.
    let statuses: Vec<StatusCode> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let svc = &svc;
                s.spawn(move || login(svc, &format!("nobody{i}"), "guess").status())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    let peak = svc.peak_rss_kib();
    // Two checks of about 19.5 MiB each, plus connections; 40 at once took 600 MiB before
    // the checks had threads of their own and one buffer each.
    assert!(
        peak < before + 100 * 1024,
        "peak memory grew from {before} KiB to {peak} KiB"
    );
    assert_eq!(
        login(&svc, "alice", "alice password").status(),
        StatusCode::OK
    );
}

#[test]
fn password_guessing_makes_the_guesser_wait_and_is_logged() {
    let env = Env::new();
    let log = env.path("service.log");
    let svc = Service::options(&env).log("info", &log).start();
    svc.add_user("alice", "alice password");
    for _ in 0..5 {
        assert_eq!(
            login(&svc, "alice", "wrong guess").status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let held = login(&svc, "alice", "alice password");
    assert_eq!(
        held.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right one waits"
    );
    assert!(held.headers().contains_key("retry-after"));
    wait_until(Duration::from_secs(10), "the wait to pass", || {
        login(&svc, "alice", "alice password").status() == StatusCode::OK
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("login failed") && text.contains("alice") && text.contains("127.0.0.1"),
        "{text}"
    );
    assert!(
        !text.contains("wrong guess"),
        "a password never reaches the log"
    );
}

/// A TLS connection to `svc` that finished its handshake and sends nothing.
fn silent_connection(
    svc: &Service,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = kura_repo::remote::tls_config(Some(&svc.fingerprint), None).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let addr = svc.url.trim_start_matches("https://");
    let sock = std::net::TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Whether the service closed `tls`: a read ends (EOF or an error) instead of blocking.
fn closed_within(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    limit: Duration,
) -> bool {
    use std::io::Read;
    tls.sock.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 1];
    match tls.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn a_connection_that_sends_nothing_is_closed() {
    let env = Env::new();
    let svc = Service::options(&env)
        .args(&["--header-timeout-secs", "1"])
        .start();
    let mut idle = silent_connection(&svc);
    assert!(
        closed_within(&mut idle, Duration::from_secs(20)),
        "still open"
    );
}

#[test]
fn connections_over_the_limit_are_refused_and_a_freed_slot_serves_again() {
    let env = Env::new();
    let svc = Service::options(&env)
        .config("max_connections = 3\n")
        .start();
    svc.add_user("alice", "alice password");
    let held: Vec<_> = (0..3).map(|_| silent_connection(&svc)).collect();
    let over = svc
        .http()
        .post(format!("{}/v1/login", svc.url))
        .body(r#"{"user":"alice","password":"alice password"}"#)
        .send();
    assert!(over.is_err(), "a fourth connection is refused: {over:?}");
    drop(held);
    wait_until(Duration::from_secs(10), "a slot to free", || {
        svc.http()
            .post(format!("{}/v1/login", svc.url))
            .body(r#"{"user":"alice","password":"alice password"}"#)
            .send()
            .is_ok_and(|r| r.status() == StatusCode::OK)
    });
}

#[test]
fn parallel_large_bodies_stay_within_the_memory_budget() {
    let env = Env::new();
    let svc = Service::options(&env)
        .config("request_memory_mib = 64\n")
        .start();
    svc.add_user("alice", "alice password");
    let http = svc.http();
    let token = svc.token(&http, "alice", "alice password");
    let body = noise(48 << 20, 5);
    let before = svc.peak_rss_kib();
    // Eight 48 MiB objects at once.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (http, token, body, url) = (&http, &token, &body, &svc.url);
                s.spawn(move || {
                    let name = format!("{i:02x}").repeat(32);
                    http.put(format!("{url}/v1/repo/data/{name}"))
                        .bearer_auth(token)
                        .body(body.clone())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    let grown = svc.peak_rss_kib() - before;
    eprintln!("peak grew by {} MiB", grown / 1024);
    // Within the budget, whatever the bodies' length; all at once, held whole, took over
    // 1 GiB.
    assert!(grown < 200 * 1024, "peak memory grew by {grown} KiB");
}

#[test]
fn a_large_object_is_streamed_through_the_service_not_held() {
    let env = Env::new();
    let svc = Service::start(&env);
    svc.add_user("alice", "alice password");
    let http = svc.http();
    let token = svc.token(&http, "alice", "alice password");
    let body = noise(64 << 20, 9);
    let url = format!("{}/v1/repo/data/{}", svc.url, "ab".repeat(32));
    let before = svc.peak_rss_kib();
    let put = http.put(&url).bearer_auth(&token).body(body.clone()).send();
    assert_eq!(put.unwrap().status(), StatusCode::NO_CONTENT);
    let got = http.get(&url).bearer_auth(&token).send().unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert!(got.bytes().unwrap() == body, "the object read back differs");
    let grown = svc.peak_rss_kib() - before;
    eprintln!("peak grew by {} MiB", grown / 1024);
    // Held whole, the body and its two sealed copies took over 192 MiB; received into a
    // spool and sealed, sent and read a block at a time, a few parts of it.
    assert!(grown < 80 * 1024, "peak memory grew by {grown} KiB");
}

/// Clears its flag when dropped.
struct Stop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_mixed_attack_stays_within_every_bound_while_a_user_is_served() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let env = Env::new();
    let svc = Service::options(&env)
        .config("max_connections = 40\npassword_checks = 2\nrequest_memory_mib = 64\n")
        .start();
    svc.add_user("mallory", "mallory password");
    svc.contract("mallory", &["--max-bytes", "2000000"]);
    svc.add_user("bob", "bob password");
    let bob = Client::new(&env, &svc, "bob", "bob password");
    let src = env.path("bob-src");
    make_tree(&src, 150, 9);
    bob.init();
    let http = svc.http();
    let token = svc.token(&http, "mallory", "mallory password");
    let files_before = svc.open_files();
    let memory_before = svc.peak_rss_kib();
    let attacking = AtomicBool::new(true);
    let most_files = AtomicUsize::new(0);
    let refused_logins = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while attacking.load(Ordering::Relaxed) {
                most_files.fetch_max(svc.open_files(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // Whatever ends the attack, a failure included, ends the watchers too.
        let _stop = Stop(&attacking);
        let mut attacks = Vec::new();
        // Connections that never send a byte, held through the whole attack.
        attacks.push(s.spawn(|| {
            let idle: Vec<_> = (0..8).map(|_| silent_connection(&svc)).collect();
            while attacking.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(idle);
        }));
        // Logins for names that do not exist, each a full password check. (Guesses at bob's
        // own name would make bob wait too, by design: see the test above.)
        for t in 0..4 {
            let (svc, refused) = (&svc, &refused_logins);
            attacks.push(s.spawn(move || {
                for i in 0..12 {
                    let status = login(svc, &format!("nobody{t}-{i}"), "guess").status();
                    assert!(
                        [401, 429, 503].contains(&status.as_u16()),
                        "a guess was answered {status}"
                    );
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // Mallory: objects past her storage limit, many tiny ones, and floods of job
        // reports, all at once.
        for t in 0..4 {
            let (http, token, url) = (&http, &token, &svc.url);
            attacks.push(s.spawn(move || {
                for i in 0..40 {
                    let name = format!("{t:02x}{i:02x}").repeat(16);
                    let body = if i % 2 == 0 {
                        noise(300_000, i)
                    } else {
                        vec![i as u8]
                    };
                    let status = http
                        .put(format!("{url}/v1/repo/data/{name}"))
                        .bearer_auth(token)
                        .body(body)
                        .send()
                        .unwrap()
                        .status()
                        .as_u16();
                    assert!(
                        [204, 403, 503].contains(&status),
                        "a store was answered {status}"
                    );
                    let job = serde_json::json!({"job": "cd".repeat(16), "type": "full",
                        "status": "completed", "started": "2026-11-21T10:00:00Z",
                        "ended": "2026-11-21T10:01:00Z", "files": i, "bytes": 2,
                        "stored_added": 3, "snapshot": null});
                    let status = http
                        .put(format!("{url}/v1/jobs/{}", "cd".repeat(16)))
                        .bearer_auth(token)
                        .body(job.to_string())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16();
                    assert!(
                        [204, 429, 503].contains(&status),
                        "a job report was answered {status}"
                    );
                }
            }));
        }
        // Bob backs up and restores meanwhile; his client waits out busy answers itself.
        bob.backup(&src);
        bob.restore_and_compare(&src);
        for a in attacks.drain(1..) {
            a.join().unwrap();
        }
    });
    assert_eq!(refused_logins.load(Ordering::Relaxed), 48);
    let mallory = svc.user("mallory");
    let listed = svc.listed(&http, &token, "data");
    assert_eq!(
        mallory["objects"].as_u64().unwrap(),
        listed.len() as u64,
        "what is counted is what is stored: {mallory}"
    );
    let stored = mallory["bytes"].as_u64().unwrap();
    assert!(
        stored <= 2_000_000,
        "mallory stores {stored} bytes: {mallory}"
    );
    let notices = Client::new(&env, &svc, "mallory", "mallory password").messages_of("conditions");
    assert_eq!(
        notices.len(),
        1,
        "one notice for one job reported 160 times: {notices:?}"
    );
    let most = most_files.load(Ordering::Relaxed);
    eprintln!(
        "descriptors: {files_before} before, {most} at the peak; mallory stores {stored} bytes"
    );
    assert!(
        most <= files_before + 40 + 16,
        "{most} descriptors at the peak, {files_before} before"
    );
    wait_until(
        Duration::from_secs(30),
        "descriptors to be given back",
        || svc.open_files() <= files_before + 4,
    );
    let grown = svc.peak_rss_kib() - memory_before;
    eprintln!("peak memory grew by {} MiB", grown / 1024);
    // The 64 MiB body budget, two password checks of about 19 MiB, and connections.
    assert!(grown < 160 * 1024, "peak memory grew by {grown} KiB");
}

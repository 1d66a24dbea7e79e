//! Limits that hold when a client sends many requests at once: each store reserves its room
//! in the database before it stores, so parallel requests never pass a limit together, and
//! tiny objects are charged a minimum and counted.

use crate::fixture::*;

/// A service with alice under the contract options `contract` and the service config
/// `config`, logged in over HTTP.
struct Tenant {
    svc: Service,
    http: reqwest::blocking::Client,
    token: String,
}

impl Tenant {
    fn new(contract: &[&str], config: &str) -> (Env, Tenant) {
        let env = Env::new();
        let svc = Service::options(&env).config(config).start();
        svc.add_user("alice", "alice password");
        svc.contract("alice", contract);
        let http = svc.http();
        let token = svc.token(&http, "alice", "alice password");
        (env, Tenant { svc, http, token })
    }

    /// Sends `n` requests at once, the `i`th made by `request(i)`; their statuses.
    fn at_once(
        &self,
        n: usize,
        request: impl Fn(usize) -> reqwest::blocking::RequestBuilder + Sync,
    ) -> Vec<u16> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let request = &request;
                    s.spawn(move || request(i).send().unwrap().status().as_u16())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    fn put(&self, kind: &str, name: &str, body: Vec<u8>) -> reqwest::blocking::RequestBuilder {
        self.http
            .put(format!("{}/v1/repo/{kind}/{name}", self.svc.url))
            .bearer_auth(&self.token)
            .body(body)
    }

    fn stored(&self, kind: &str) -> Vec<String> {
        self.svc.listed(&self.http, &self.token, kind)
    }
}

fn name(i: usize) -> String {
    format!("{i:02x}").repeat(32)
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[test]
fn parallel_stores_never_pass_the_storage_limit() {
    let (_env, t) = Tenant::new(&["--max-bytes", "1000000"], "");
    let statuses = t.at_once(8, |i| t.put("data", &name(i), noise(900_000, i as u64)));
    assert_eq!(count(&statuses, 204), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 403), 7, "{statuses:?}");
    assert_eq!(t.stored("data").len(), 1);
    let used = t.svc.user("alice")["bytes"].as_u64().unwrap();
    assert!(used <= 1_000_000, "{used} bytes stored");
}

#[test]
fn parallel_snapshots_never_pass_the_archive_limit() {
    let (_env, t) = Tenant::new(&["--max-archives", "1"], "");
    let statuses = t.at_once(8, |i| t.put("snapshots", &name(i), vec![b's'; 100]));
    assert_eq!(count(&statuses, 204), 1, "{statuses:?}");
    assert_eq!(t.stored("snapshots").len(), 1);
}

#[test]
fn parallel_upload_pieces_never_pass_the_storage_limit() {
    let (_env, t) = Tenant::new(&["--max-bytes", "1000000"], "");
    let piece = noise(900_000, 3);
    let sum = kura_service::upload::sha256_hex(&piece);
    let statuses = t.at_once(4, |i| {
        t.http
            .put(format!(
                "{}/v1/uploads/data/{}?offset=0",
                t.svc.url,
                name(i)
            ))
            .bearer_auth(&t.token)
            .header("x-kura-sha256", &sum)
            .body(piece.clone())
    });
    assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 403), 3, "{statuses:?}");
}

#[test]
fn tiny_objects_are_charged_a_minimum_each() {
    // Ten objects' worth at the minimum charge of 4 KiB, however small they are.
    let (_env, t) = Tenant::new(&["--max-bytes", "40960"], "");
    let statuses: Vec<u16> = (0..30)
        .map(|i| {
            let body = if i % 2 == 0 { vec![] } else { vec![1] };
            t.put("data", &name(i), body)
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(count(&statuses, 204), 10, "{statuses:?}");
    assert_eq!(t.stored("data").len(), 10);
    let row = t.svc.user("alice");
    assert_eq!(row["bytes"], 40960, "{row}");
    assert_eq!(row["objects"], 10, "{row}");
}

#[test]
fn the_object_count_per_user_is_capped() {
    let (_env, t) = Tenant::new(&[], "max_objects_per_user = 5\n");
    let statuses = t.at_once(8, |i| t.put("data", &name(i), vec![7; 10]));
    assert_eq!(count(&statuses, 204), 5, "{statuses:?}");
    let r = t.put("data", &name(9), vec![7; 10]).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().unwrap().contains("limit of 5 objects"));
    // Replacing a stored object adds none.
    let stored = t.stored("data");
    assert_eq!(stored.len(), 5);
    let again = t.put("data", &stored[0], vec![8; 10]).send().unwrap();
    assert_eq!(again.status().as_u16(), 204);
}

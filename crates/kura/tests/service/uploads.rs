//! Uploads in pieces, straight through the HTTP API: each piece checked, resumable, private to
//! its user, and nothing visible before the commit.

use crate::fixture::*;

/// The size of the object every test here uploads.
const SIZE: usize = 300_000;

fn sha(d: &[u8]) -> String {
    kura_service::upload::sha256_hex(d)
}

/// Alice and bob at a service, logged in over HTTP, with an upload of an object in pieces at
/// hand.
struct Uploads {
    alice: Member,
    http: reqwest::blocking::Client,
    alice_token: String,
    bob_token: String,
    object: Vec<u8>,
    name: String,
    url: String,
}

impl Uploads {
    fn new() -> Uploads {
        let alice = Member::start("alice");
        alice.another("bob", "bob password 22");
        let http = alice.svc.http();
        let alice_token = alice.svc.token(&http, "alice", &alice.password);
        let bob_token = alice.svc.token(&http, "bob", "bob password 22");
        let name = "ab".repeat(32);
        let url = format!("{}/v1/uploads/data/{name}", alice.svc.url);
        Uploads {
            alice,
            http,
            alice_token,
            bob_token,
            object: noise(SIZE, 9),
            name,
            url,
        }
    }

    /// Sends `bytes` at `offset` with checksum `sum`; the status and the answer.
    fn piece(
        &self,
        token: &str,
        offset: usize,
        bytes: &[u8],
        sum: &str,
    ) -> (u16, serde_json::Value) {
        let r = self
            .http
            .put(format!("{}?offset={offset}", self.url))
            .bearer_auth(token)
            .header("x-kura-sha256", sum)
            .body(bytes.to_vec())
            .send()
            .unwrap();
        body(r)
    }

    /// Sends the object's bytes `range` as alice, with their checksum.
    fn alice_sends(&self, range: std::ops::Range<usize>) -> (u16, serde_json::Value) {
        let part = &self.object[range.clone()];
        self.piece(&self.alice_token, range.start, part, &sha(part))
    }

    fn commit(&self, token: &str, sum: &str) -> u16 {
        self.http
            .post(&self.url)
            .bearer_auth(token)
            .header("x-kura-sha256", sum)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// What `HEAD` on the upload answers: the status, and how much the service has.
    fn head(&self, token: &str) -> (u16, Option<String>) {
        let r = self.http.head(&self.url).bearer_auth(token).send().unwrap();
        let received = r.headers().get("x-kura-received");
        (
            r.status().as_u16(),
            received.map(|v| v.to_str().unwrap().to_string()),
        )
    }

    /// Reads the object as `token`'s user.
    fn read(&self, token: &str) -> reqwest::blocking::Response {
        self.http
            .get(format!("{}/v1/repo/data/{}", self.alice.svc.url, self.name))
            .bearer_auth(token)
            .send()
            .unwrap()
    }

    /// `GET` of a listing as `token`'s user.
    fn list(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.alice.svc.url))
            .bearer_auth(token)
            .send()
            .unwrap();
        body(r)
    }

    /// The whole object uploaded by alice in two pieces and committed.
    fn committed(&self) {
        for range in [0..150_000, 150_000..SIZE] {
            assert_eq!(self.alice_sends(range).0, 200);
        }
        assert_eq!(self.commit(&self.alice_token, &sha(&self.object)), 204);
    }
}

fn body(r: reqwest::blocking::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().unwrap()).unwrap_or_default(),
    )
}

#[test]
fn a_piece_without_a_session_is_refused() {
    let u = Uploads::new();
    let part = &u.object[..1000];
    let (status, _) = u.piece("", 0, part, &sha(part));
    assert_eq!(status, 401);
}

#[test]
fn a_damaged_piece_is_answered_with_a_resend_request() {
    let u = Uploads::new();
    let (status, v) = u.alice_sends(0..100_000);
    assert_eq!((status, v["received"].as_u64()), (200, Some(100_000)));
    let mut damaged = u.object[100_000..200_000].to_vec();
    damaged[7] ^= 1;
    let (status, v) = u.piece(
        &u.alice_token,
        100_000,
        &damaged,
        &sha(&u.object[100_000..200_000]),
    );
    assert_eq!((status, v["resend"].as_bool()), (422, Some(true)), "{v}");
    // It changes nothing.
    assert_eq!(u.head(&u.alice_token).1.as_deref(), Some("100000"));
}

#[test]
fn a_piece_at_the_wrong_place_is_told_where_to_go_on() {
    let u = Uploads::new();
    u.alice_sends(0..100_000);
    let (status, v) = u.alice_sends(50_000..60_000);
    assert_eq!(
        (status, v["received"].as_u64()),
        (409, Some(100_000)),
        "{v}"
    );
    assert_eq!(u.head(&u.alice_token).1.as_deref(), Some("100000"));
}

#[test]
fn a_piece_with_a_malformed_checksum_is_refused() {
    let u = Uploads::new();
    let (status, v) = u.piece(&u.alice_token, 0, b"x", "not a checksum");
    assert_eq!(status, 400, "{v}");
}

#[test]
fn another_user_can_neither_see_nor_touch_an_upload() {
    let u = Uploads::new();
    u.alice_sends(0..100_000);
    let bob = &u.bob_token;
    assert_eq!(u.list("/v1/uploads", bob), (200, serde_json::json!([])));
    assert_eq!(u.head(bob).0, 404);
    let rest = &u.object[100_000..];
    let (status, _) = u.piece(bob, 100_000, rest, &sha(rest));
    assert_eq!(status, 409, "bob's piece must not extend alice's upload");
    let deleted = u.http.delete(&u.url).bearer_auth(bob).send().unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    assert_eq!(u.commit(bob, &sha(&u.object)), 404);
    let (_, v) = u.list("/v1/uploads", &u.alice_token);
    assert_eq!(v[0]["received"].as_u64(), Some(100_000), "{v}");
}

#[test]
fn nothing_is_visible_before_a_commit_with_the_right_checksum() {
    let u = Uploads::new();
    u.alice_sends(0..100_000);
    let (status, _) = u.alice_sends(100_000..SIZE);
    assert_eq!(status, 200);
    assert_eq!(u.read(&u.alice_token).status().as_u16(), 404);
    assert_eq!(u.commit(&u.alice_token, &sha(b"something else")), 422);
    assert_eq!(
        u.read(&u.alice_token).status().as_u16(),
        404,
        "a mismatched commit was stored"
    );
    assert_eq!(u.head(&u.alice_token).0, 404);
    u.committed();
    assert_eq!(u.read(&u.alice_token).bytes().unwrap().to_vec(), u.object);
    assert_eq!(u.read(&u.bob_token).status().as_u16(), 404);
}

#[test]
fn a_range_past_the_end_gives_what_there_is() {
    // And one starting past it, nothing.
    let u = Uploads::new();
    u.committed();
    let ranged = |range: &str| {
        u.http
            .get(format!("{}/v1/repo/data/{}", u.alice.svc.url, u.name))
            .bearer_auth(&u.alice_token)
            .header("range", range)
            .send()
            .unwrap()
    };
    let tail = ranged("bytes=299990-400000");
    assert_eq!(tail.status().as_u16(), 206);
    assert_eq!(tail.bytes().unwrap().to_vec(), &u.object[299_990..]);
    assert_eq!(ranged("bytes=300000-300010").status().as_u16(), 416);
}

#[test]
fn job_reports_the_operators_log_could_not_hold_are_refused() {
    let u = Uploads::new();
    let report = |body: serde_json::Value| {
        u.http
            .put(format!("{}/v1/jobs/{}", u.alice.svc.url, "ab".repeat(16)))
            .bearer_auth(&u.alice_token)
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
    let admin_log = u.alice.svc.admin(&["log"]);
    assert!(admin_log.contains("running"), "{admin_log}");
}

#[test]
fn a_large_login_is_refused() {
    let u = Uploads::new();
    let big_login = u
        .http
        .post(format!("{}/v1/login", u.alice.svc.url))
        .body(vec![b' '; 20_000])
        .send()
        .unwrap();
    assert_eq!(big_login.status().as_u16(), 413);
}

#[test]
fn without_a_session_nothing_is_stored_whatever_the_body() {
    // The service answers 401 at once; a client still sending may see the connection close.
    let u = Uploads::new();
    u.committed();
    let anon = u
        .http
        .put(format!(
            "{}/v1/repo/data/{}",
            u.alice.svc.url,
            "ef".repeat(32)
        ))
        .body(vec![0u8; 8 << 20])
        .send();
    if let Ok(r) = anon {
        assert_eq!(r.status().as_u16(), 401);
    }
    let (_, listed) = u.list("/v1/repo/data", &u.alice_token);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn a_whole_object_with_a_wrong_checksum_is_refused_with_a_resend_request() {
    let u = Uploads::new();
    let r = u
        .http
        .put(format!(
            "{}/v1/repo/index/{}",
            u.alice.svc.url,
            "cd".repeat(32)
        ))
        .bearer_auth(&u.alice_token)
        .header("x-kura-sha256", sha(b"other"))
        .body(b"contents".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let (_, listed) = u.list("/v1/repo/index", &u.alice_token);
    assert_eq!(listed, serde_json::json!([]));
}

#[test]
fn unfinished_uploads_count_against_the_storage_limit() {
    let u = Uploads::new();
    u.committed();
    let used = u.alice.svc.user("alice")["bytes"].as_u64().unwrap();
    let limit = (used + 150_000).to_string();
    u.alice.svc.contract("alice", &["--max-bytes", &limit]);
    let token = u.alice.svc.token(&u.http, "alice", &u.alice.password);
    let part = &u.object[..100_000];
    let start = |name: &str| {
        u.http
            .put(format!(
                "{}/v1/uploads/data/{name}?offset=0",
                u.alice.svc.url
            ))
            .bearer_auth(&token)
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

//! The HTTPS API's handlers, apart from serving them ([`crate::serve`]): [`app`] builds the
//! router over an [`AppState`], so the rules can be tested without a socket. The routes and
//! bodies are `kura_api`'s.
//!
//! Every route but login, `/healthz` and `/metrics` is authenticated (a session token from
//! login) and checked against the user's contract before its body is read ([`auth`]); the
//! objects a request reaches are the authenticated user's only, and names are validated
//! ([`objects::file_type`]), so no request can reach another user's files.

pub mod account;
pub mod auth;
pub mod budget;
pub mod error;
pub mod objects;
pub mod throttle;
pub mod uploads;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use budget::Cost;
use kura_api::{MAX_BODY, PACKS_BODY, SMALL_BODY, route};

pub use error::{ApiError, ApiResult};

use crate::registry::{Registry, RegistryError};
use crate::storage::Storage;

/// No request may take longer, so a stalled client cannot hold a worker or a lock forever.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Counters served at `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// API requests received.
    pub requests: AtomicU64,
    /// Requests refused for bad credentials.
    pub auth_failures: AtomicU64,
    /// Requests refused by a contract check.
    pub refused: AtomicU64,
    /// Object bytes stored.
    pub bytes_in: AtomicU64,
    /// Object bytes served.
    pub bytes_out: AtomicU64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What every handler shares.
pub struct AppState {
    /// The SQLite database.
    pub registry: Arc<Registry>,
    /// The copies on the storage sites.
    pub storage: Arc<Storage>,
    /// The service's data directory (unfinished uploads, the outbox).
    pub data_dir: PathBuf,
    /// How long a session lasts.
    pub ttl: jiff::SignedDuration,
    /// Request counters.
    pub metrics: Metrics,
    /// Runs of the background tasks, by name (shown at `/metrics`).
    pub tasks: Arc<crate::tasks::TaskRuns>,
    /// Password checks at once, and backoff after failed logins.
    pub login_gate: throttle::LoginGate,
    /// Objects one user may store; 0 for no limit.
    pub max_objects: u64,
    /// The token `/metrics` asks for; `None` answers anyone.
    pub metrics_token: Option<String>,
    /// Memory and requests at once for signed-in users.
    pub budget: budget::Budget,
}

/// The shared state as handlers extract it.
pub type App = State<Arc<AppState>>;

/// The whole API over `state`.
pub fn app(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route(route::OBJECTS.pattern(), get(objects::list))
        .route(
            route::OBJECT.pattern(),
            get(objects::read)
                .head(objects::head)
                .put(objects::write.layer(axum::middleware::from_fn_with_state(
                    (state.clone(), Cost::Sealed),
                    budget::hold_body,
                )))
                .delete(objects::remove),
        )
        .route(route::JOBS.pattern(), get(account::jobs))
        .route(
            route::JOB.pattern(),
            put(account::job_report)
                .layer(DefaultBodyLimit::max(SMALL_BODY))
                .layer(axum::middleware::from_fn_with_state(
                    SMALL_BODY,
                    refuse_declared_over,
                )),
        )
        .route(
            route::SNAPSHOT_PACKS.pattern(),
            put(account::snapshot_packs)
                .layer(DefaultBodyLimit::max(PACKS_BODY))
                .layer(axum::middleware::from_fn_with_state(
                    PACKS_BODY,
                    refuse_declared_over,
                )),
        )
        .route(route::CONDITIONS.pattern(), get(account::conditions))
        .route(
            route::MESSAGES.pattern(),
            account::view(|s, user| s.messages(user)),
        )
        .route(
            route::INCIDENTS.pattern(),
            account::view(|s, user| s.incidents(Some(user), None, None)),
        )
        .route(
            route::LOST.pattern(),
            account::view(|s, user| s.lost_objects(user)),
        )
        .route(
            route::STATEMENTS.pattern(),
            account::view(|s, user| s.statements(Some(user))),
        )
        .route(
            route::OBJECTION.pattern(),
            post(account::objection)
                .layer(DefaultBodyLimit::max(SMALL_BODY))
                .layer(axum::middleware::from_fn_with_state(
                    SMALL_BODY,
                    refuse_declared_over,
                )),
        )
        .route(
            route::UPLOADS.pattern(),
            get(uploads::list).delete(uploads::sweep),
        )
        .route(
            route::UPLOAD.pattern(),
            axum::routing::head(uploads::status)
                .put(uploads::piece.layer(axum::middleware::from_fn_with_state(
                    (state.clone(), Cost::Kept),
                    budget::hold_body,
                )))
                .post(uploads::commit)
                .delete(uploads::abort),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            budget::hold_request,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .route(route::HEALTHZ.pattern(), get(|| async { "ok\n" }))
        .route(route::METRICS.pattern(), get(metrics))
        .route(
            route::LOGIN.pattern(),
            post(auth::login)
                .layer(DefaultBodyLimit::max(SMALL_BODY))
                .layer(axum::middleware::from_fn_with_state(
                    SMALL_BODY,
                    refuse_declared_over,
                )),
        )
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            MAX_BODY,
            refuse_declared_over,
        ))
        .layer(axum::middleware::from_fn(
            |req, next: axum::middleware::Next| async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
                    Ok(resp) => resp,
                    Err(_) => ApiError::new(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        "the request took too long",
                    )
                    .into_response(),
                }
            },
        ))
        .with_state(state)
}

/// Refuses with 413, before a byte of it is read, a body that declares (`Content-Length`)
/// more than `max` bytes; [`DefaultBodyLimit`] stops one that sends more than it declared.
async fn refuse_declared_over(
    State(max): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body may be at most {max} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Runs a database query on the blocking pool.
pub async fn catalog<T: Send + 'static>(
    app: &Arc<AppState>,
    f: impl FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
) -> ApiResult<T> {
    let registry = app.registry.clone();
    Ok(tokio::task::spawn_blocking(move || f(&registry)).await??)
}

async fn metrics(State(app): App, headers: axum::http::HeaderMap) -> ApiResult<String> {
    if let Some(expected) = &app.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared as digests, so the time taken says nothing of the token.
        if kura_core::Id::of_bytes(given.as_bytes()) != kura_core::Id::of_bytes(expected.as_bytes())
        {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "/metrics needs the metrics token",
            ));
        }
    }
    let m = &app.metrics;
    let line = |name: &str, help: &str, v: &AtomicU64| {
        format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        )
    };
    let mut text = [
        line("kura_requests_total", "API requests received.", &m.requests),
        line(
            "kura_auth_failures_total",
            "Requests refused for bad credentials.",
            &m.auth_failures,
        ),
        line(
            "kura_contract_refusals_total",
            "Requests refused by a contract check.",
            &m.refused,
        ),
        line(
            "kura_bytes_received_total",
            "Object bytes stored.",
            &m.bytes_in,
        ),
        line(
            "kura_bytes_sent_total",
            "Object bytes served.",
            &m.bytes_out,
        ),
    ]
    .concat();
    text.push_str(&app.tasks.prometheus());
    Ok(text)
}

#[cfg(test)]
mod tests {
    //! The API's rules through the router itself (`tower::ServiceExt::oneshot`), with a real
    //! SQLite database and demo directory sites, and no socket.

    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    use crate::registry::Contract;

    struct Fixture {
        _dir: tempfile::TempDir,
        state: Arc<AppState>,
    }

    async fn fixture(paid: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(crate::serve::open_registry(dir.path()).unwrap());
        registry.add_user("alice", b"alice password").unwrap();
        let contract = Contract {
            plan: "standard".into(),
            until: jiff::civil::date(2099, 12, 31),
            paid,
            max_bytes: 3 * crate::registry::quota::MIN_CHARGE,
            max_archives: 0,
            max_accesses: 0,
            home_region: String::new(),
            member_since: None,
        };
        registry.set_contract("alice", &contract).unwrap();
        let storage = Storage::open(dir.path(), &Default::default(), registry.clone())
            .await
            .unwrap();
        let state = Arc::new(AppState {
            registry,
            storage: Arc::new(storage),
            data_dir: dir.path().to_path_buf(),
            ttl: jiff::SignedDuration::from_mins(5),
            metrics: Metrics::default(),
            tasks: Default::default(),
            login_gate: throttle::LoginGate::new(2),
            max_objects: 100,
            metrics_token: None,
            budget: budget::Budget::new(64 << 20, 8),
        });
        Fixture { _dir: dir, state }
    }

    async fn call(state: &Arc<AppState>, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let resp = app(state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    fn login(password: &str) -> Request<Body> {
        let body = serde_json::json!({"user": "alice", "password": password});
        Request::post(route::LOGIN.path(&[]))
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    async fn token(state: &Arc<AppState>) -> String {
        let (status, body) = call(state, login("alice password")).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice::<kura_api::Session>(&body)
            .unwrap()
            .token
    }

    fn authed(method: &str, path: String, token: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
    }

    fn object(name: &str) -> String {
        route::OBJECT.path(&["data", name])
    }

    #[tokio::test]
    async fn nothing_is_served_without_a_session() {
        let f = fixture(true).await;
        let req = Request::get(route::OBJECTS.path(&["data"]))
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&f.state, req).await.0, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&f.state, login("wrong password")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(f.state.metrics.auth_failures.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn an_unpaid_contract_refuses_the_login() {
        let f = fixture(false).await;
        let (status, body) = call(&f.state, login("alice password")).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        let e: kura_api::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert!(e.error.contains("not paid"), "{}", e.error);
    }

    #[tokio::test]
    async fn a_body_declared_over_the_limit_is_refused_before_it_is_read() {
        let f = fixture(true).await;
        // No body follows the header: a server that waited for it would answer 400, not 413.
        let req = Request::post(route::LOGIN.path(&[]))
            .header(header::CONTENT_LENGTH, (SMALL_BODY + 1).to_string())
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&f.state, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
        let t = token(&f.state).await;
        let req = authed("PUT", object("ab"), &t)
            .header(header::CONTENT_LENGTH, (MAX_BODY + 1).to_string())
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&f.state, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_pack_report_keeps_only_packs_the_member_stores() {
        let f = fixture(true).await;
        let t = token(&f.state).await;
        let stored = "aa".repeat(32);
        let snapshot = "bb".repeat(32);
        for (kind, name) in [("data", &stored), ("snapshots", &snapshot)] {
            let data = b"x".to_vec();
            let put = authed("PUT", route::OBJECT.path(&[kind, name]), &t)
                .header(kura_api::CHECKSUM_HEADER, crate::upload::sha256_hex(&data))
                .body(Body::from(data))
                .unwrap();
            assert_eq!(call(&f.state, put).await.0, StatusCode::NO_CONTENT);
        }
        let body = [[0xaa; 32], [0xcc; 32], [0xaa; 32]].concat();
        let report = authed("PUT", route::SNAPSHOT_PACKS.path(&[&snapshot]), &t)
            .body(Body::from(body))
            .unwrap();
        assert_eq!(call(&f.state, report).await.0, StatusCode::NO_CONTENT);
        let alice = f.state.registry.user("alice").unwrap().id;
        let needing = |p: [u8; 32]| f.state.registry.snapshots_needing(alice, &p).unwrap();
        assert_eq!(needing([0xaa; 32]), std::slice::from_ref(&snapshot));
        assert!(
            needing([0xcc; 32]).is_empty(),
            "a pack it does not store is dropped"
        );
    }

    #[tokio::test]
    async fn a_long_object_is_sent_a_window_at_a_time_and_checked_whole() {
        let f = fixture(true).await;
        let mut contract = f.state.registry.user("alice").unwrap().contract.unwrap();
        contract.max_bytes = 1 << 30;
        f.state.registry.set_contract("alice", &contract).unwrap();
        let t = token(&f.state).await;
        let len = 2 * crate::storage::READ_WINDOW as usize + 12_345;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let put = authed("PUT", object("ab"), &t)
            .body(Body::from(data.clone()))
            .unwrap();
        assert_eq!(call(&f.state, put).await.0, StatusCode::NO_CONTENT);
        let get = authed("GET", object("ab"), &t).body(Body::empty()).unwrap();
        assert_eq!(call(&f.state, get).await, (StatusCode::OK, data.clone()));
        let part = authed("GET", object("ab"), &t)
            .header(header::RANGE, format!("bytes=100-{}", len - 2))
            .body(Body::empty())
            .unwrap();
        let resp = app(f.state.clone()).oneshot(part).await.unwrap();
        assert_eq!(
            resp.headers()[header::CONTENT_RANGE],
            format!("bytes 100-{}/{len}", len - 2).as_str()
        );
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
        assert_eq!(body.unwrap(), data[100..len - 1]);
        // The catalog's checksum no longer matches what the sites hold (as when the object
        // is replaced during the read): the body fails before its last window.
        let db = rusqlite::Connection::open(f.state.data_dir.join("kura.sqlite")).unwrap();
        db.execute("UPDATE objects SET sha256 = ?1", [&"0".repeat(64)])
            .unwrap();
        let get = authed("GET", object("ab"), &t).body(Body::empty()).unwrap();
        let resp = app(f.state.clone()).oneshot(get).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn an_object_is_stored_and_read_whole_or_in_part() {
        let f = fixture(true).await;
        let t = token(&f.state).await;
        let data = b"0123456789".to_vec();
        let sum = crate::upload::sha256_hex(&data);
        let put = authed("PUT", object("ab"), &t)
            .header(kura_api::CHECKSUM_HEADER, &sum)
            .body(Body::from(data.clone()))
            .unwrap();
        assert_eq!(call(&f.state, put).await.0, StatusCode::NO_CONTENT);
        let get = authed("GET", object("ab"), &t).body(Body::empty()).unwrap();
        assert_eq!(call(&f.state, get).await, (StatusCode::OK, data));
        let part = authed("GET", object("ab"), &t)
            .header(header::RANGE, "bytes=2-4")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            call(&f.state, part).await,
            (StatusCode::PARTIAL_CONTENT, b"234".to_vec())
        );
        let part = authed("GET", object("ab"), &t)
            .header(header::RANGE, "bytes=2-4")
            .body(Body::empty())
            .unwrap();
        let resp = app(f.state.clone()).oneshot(part).await.unwrap();
        assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes 2-4/10");
        let past_the_end = authed("GET", object("ab"), &t)
            .header(header::RANGE, "bytes=8-20")
            .body(Body::empty())
            .unwrap();
        let resp = app(f.state.clone()).oneshot(past_the_end).await.unwrap();
        assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes 8-9/10");
        let list = authed("GET", route::OBJECTS.path(&["data"]), &t)
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(&f.state, list).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_slice::<Vec<String>>(&body).unwrap(),
            ["ab"]
        );
    }

    #[tokio::test]
    async fn a_damaged_object_is_asked_for_again_and_not_stored() {
        let f = fixture(true).await;
        let t = token(&f.state).await;
        let put = authed("PUT", object("ab"), &t)
            .header(
                kura_api::CHECKSUM_HEADER,
                crate::upload::sha256_hex(b"other"),
            )
            .body(Body::from("data"))
            .unwrap();
        let (status, body) = call(&f.state, put).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            serde_json::from_slice::<kura_api::ErrorBody>(&body)
                .unwrap()
                .resend
        );
        let get = authed("GET", object("ab"), &t).body(Body::empty()).unwrap();
        assert_eq!(call(&f.state, get).await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_names_and_the_storage_limit_are_refused_before_storing() {
        let f = fixture(true).await;
        let t = token(&f.state).await;
        let bad = authed("PUT", object("NOT-HEX"), &t)
            .body(Body::from("x"))
            .unwrap();
        assert_eq!(call(&f.state, bad).await.0, StatusCode::BAD_REQUEST);
        let too_big = authed("PUT", object("cd"), &t)
            .body(Body::from(vec![0u8; 3 * 4096 + 1]))
            .unwrap();
        assert_eq!(call(&f.state, too_big).await.0, StatusCode::FORBIDDEN);
        assert_eq!(f.state.metrics.refused.load(Ordering::Relaxed), 1);
        let list = authed("GET", route::OBJECTS.path(&["data"]), &t)
            .body(Body::empty())
            .unwrap();
        let (_, body) = call(&f.state, list).await;
        assert!(
            serde_json::from_slice::<Vec<String>>(&body)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_objection_to_a_statement_that_does_not_exist_is_not_found() {
        let f = fixture(true).await;
        let t = token(&f.state).await;
        let body = serde_json::json!({"reason": "too much"}).to_string();
        let req = authed("POST", route::OBJECTION.path(&["1-2026-11"]), &t)
            .body(Body::from(body))
            .unwrap();
        assert_eq!(call(&f.state, req).await.0, StatusCode::NOT_FOUND);
        let empty = authed("POST", route::OBJECTION.path(&["1-2026-11"]), &t)
            .body(Body::from(r#"{"reason": "  "}"#))
            .unwrap();
        assert_eq!(call(&f.state, empty).await.0, StatusCode::BAD_REQUEST);
    }
}

//! The HTTPS API's handlers, apart from serving them ([`crate::serve`]): [`app`] builds the
//! router over an [`AppState`], so the rules can be tested without a socket. The routes and
//! bodies are `kura_api`'s.
//!
//! Every route but login, `/healthz` and `/metrics` is authenticated (a session token from
//! login) and checked against the user's contract before its body is read ([`auth`]); the
//! objects a request reaches are the authenticated user's only, and names are validated
//! ([`objects::file_type`]), so no request can reach another user's files.

pub mod auth;
pub mod error;
pub mod member;
pub mod objects;
pub mod uploads;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use kura_api::{MAX_BODY, SMALL_BODY, route};

pub use error::{ApiError, ApiResult};

use crate::storage::Storage;
use crate::store::{Store, StoreError};

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
    pub store: Arc<Store>,
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
                .put(objects::write)
                .delete(objects::remove),
        )
        .route(route::JOBS.pattern(), get(member::jobs))
        .route(
            route::JOB.pattern(),
            put(member::job_report).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(route::SNAPSHOT_PACKS.pattern(), put(member::snapshot_packs))
        .route(route::CONDITIONS.pattern(), get(member::conditions))
        .route(
            route::MESSAGES.pattern(),
            member::view(|s, user| s.messages(user)),
        )
        .route(
            route::INCIDENTS.pattern(),
            member::view(|s, user| s.incidents(Some(user), None, None)),
        )
        .route(
            route::LOST.pattern(),
            member::view(|s, user| s.lost_objects(user)),
        )
        .route(
            route::STATEMENTS.pattern(),
            member::view(|s, user| s.statements(Some(user))),
        )
        .route(
            route::OBJECTION.pattern(),
            post(member::objection).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            route::UPLOADS.pattern(),
            get(uploads::list).delete(uploads::sweep),
        )
        .route(
            route::UPLOAD.pattern(),
            axum::routing::head(uploads::status)
                .put(uploads::piece)
                .post(uploads::commit)
                .delete(uploads::abort),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .route(route::HEALTHZ.pattern(), get(|| async { "ok\n" }))
        .route(route::METRICS.pattern(), get(metrics))
        .route(
            route::LOGIN.pattern(),
            post(auth::login).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY))
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

/// Runs a database query on the blocking pool.
pub async fn catalog<T: Send + 'static>(
    app: &Arc<AppState>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    let store = app.store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
}

async fn metrics(State(app): App) -> String {
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
    text
}

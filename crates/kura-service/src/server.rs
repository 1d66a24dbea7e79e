//! The HTTPS API. Every request under `/v1/repo` is authenticated (a session token from
//! `/v1/login`) and checked against the user's contract before anything else happens; the
//! objects a request reaches are the authenticated user's only, and names are validated, so no
//! request can reach another user's files. Objects are kept by [`Storage`] on the storage
//! sites.
//!
//! ```text
//! POST   /v1/login                    {"user","password"} or {} with a registered client
//!                                     certificate -> {"token","expires"}
//! GET    /v1/repo/{kind}              list names (kind: config keys devices snapshots index data locks logs)
//! GET    /v1/repo/{kind}/{name}       contents (Range: bytes=a-b for part)
//! HEAD   /v1/repo/{kind}/{name}       size in Content-Length
//! PUT    /v1/repo/{kind}/{name}       store (atomic; checked against X-Kura-Sha256 if sent)
//! DELETE /v1/repo/{kind}/{name}       remove
//! PUT    /v1/jobs/{job}               a job's report for the service's backup log
//! GET    /v1/jobs                     the user's backup log as the service has it
//! GET    /v1/conditions?since=TIME    storage conditions of the user's objects (stored since)
//! GET    /v1/messages                 the user's message history
//! GET    /v1/uploads                  unfinished uploads [{"kind","name","received"}]
//! DELETE /v1/uploads?older_than=SECS  drop unfinished uploads untouched that long
//! HEAD   /v1/uploads/{kind}/{name}    bytes received so far in X-Kura-Received
//! PUT    /v1/uploads/{kind}/{name}?offset=N   one piece, with its X-Kura-Sha256
//! POST   /v1/uploads/{kind}/{name}    commit: X-Kura-Sha256 of the whole object
//! DELETE /v1/uploads/{kind}/{name}    abandon an upload
//!
//! A piece or object that does not match its checksum is answered 422 with `"resend": true`;
//! a piece at the wrong offset 409 with `"received": N`, where the client goes on from.
//!
//! GET    /healthz                     liveness
//! GET    /metrics                     Prometheus text format
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use kura_repo::FileType;
use serde::Deserialize;
use tower_layer::Layer;

use crate::sites::PlacementConfig;
use crate::storage::{Storage, StorageError};
use crate::store::{Store, User};
use crate::tls::Identity;
use crate::upload::{self, UploadError, Uploads};

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the database, TLS identity and users' storage live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// A configured certificate and key (PEM); `None` makes a self-signed one.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long a session token is valid.
    pub session_ttl: jiff::SignedDuration,
    /// How long a client may take to send a request's headers (a stalled or slow client is
    /// disconnected after this).
    pub header_timeout: std::time::Duration,
    /// The storage sites and membership levels.
    pub placement: PlacementConfig,
    /// How often placements are brought up to date (sites that returned, new risk feeds,
    /// changed levels and home regions).
    pub replace_every: std::time::Duration,
    /// The mail relay notices are delivered through; `None` keeps them in the outbox.
    pub mail: Option<crate::notice::MailConfig>,
    /// How often stored copies are checked (the first check runs this long after the start).
    pub verify_every: std::time::Duration,
    /// The share of objects each periodic check reads, least recently checked first (1-100).
    pub verify_sample: f64,
    /// The price table; `None` runs no billing.
    pub billing: Option<kura_billing::Prices>,
    /// How often the billing cycle looks for a period to settle and charges to settle.
    pub billing_every: std::time::Duration,
}

/// Largest request body: a pack is at most ~24 MiB.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest body of a login or a job report.
pub const SMALL_BODY: usize = 16 * 1024;
/// No request may take longer, so a stalled client cannot hold a worker or a lock forever.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Default)]
struct Metrics {
    requests: AtomicU64,
    auth_failures: AtomicU64,
    refused: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

struct App {
    store: Arc<Store>,
    storage: Arc<Storage>,
    data_dir: PathBuf,
    ttl: jiff::SignedDuration,
    metrics: Metrics,
}

/// How often unfinished uploads untouched for [`upload::STALE_AFTER`] are removed.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes every user's stale unfinished uploads (abandoned ones would otherwise stay).
fn sweep_stale_uploads(users: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(users) else {
        return;
    };
    for e in entries.flatten() {
        match Uploads::new(e.path().join("uploads")).sweep(upload::STALE_AFTER) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(user = %e.file_name().to_string_lossy(), removed = n, "stale uploads removed")
            }
            Err(err) => tracing::warn!("sweeping {}: {err}", e.path().display()),
        }
    }
}

/// The fingerprint of the certificate the client presented on this connection, if any.
#[derive(Debug, Clone)]
struct ClientCert(Option<String>);

/// Accepts TLS connections and records the client's certificate for the handlers.
#[derive(Clone)]
struct ClientCertAcceptor(RustlsAcceptor);

impl<I, S> Accept<I, S> for ClientCertAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = tokio_rustls::server::TlsStream<I>;
    type Service = axum::middleware::AddExtension<S, ClientCert>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send,
        >,
    >;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            let (stream, service) = inner.accept(stream, service).await?;
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| crate::tls::fingerprint(c));
            Ok((stream, Extension(ClientCert(cert)).layer(service)))
        })
    }
}

/// An error answer: status and a one-line message for the client to show.
struct ApiError {
    status: StatusCode,
    body: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        let mut body = serde_json::Map::new();
        body.insert("error".to_string(), message.into().into());
        ApiError { status, body }
    }

    /// Adds a field the client acts on (`received`, `resend`).
    fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> ApiError {
        self.body.insert(key.into(), value.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

impl App {
    /// Everything stored for one user.
    fn user_dir(&self, user: &User) -> PathBuf {
        self.data_dir.join("users").join(user.id.to_string())
    }
}

/// How much earlier than the client says its backup started the objects of its conditions
/// notice are taken from: the client's clock may differ from the service's.
const NOTICE_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// The SHA-256 (hex) of a piece or object, sent by the client and checked before storing.
pub const CHECKSUM_HEADER: &str = "x-kura-sha256";
/// How many bytes of an unfinished upload the service has.
pub const RECEIVED_HEADER: &str = "x-kura-received";

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("internal error: {e}");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

fn store_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("kura.sqlite")
}

/// Opens the service database under `data_dir` (for the offline admin commands too).
pub fn open_store(data_dir: &std::path::Path) -> Result<Store, crate::store::StoreError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| crate::store::StoreError::Invalid(format!("{}: {e}", data_dir.display())))?;
    Store::open(&store_path(data_dir))
}

/// Runs the service until the process is stopped. `ready` is called with the bound address
/// and the TLS identity once it accepts connections.
pub async fn serve(
    opts: ServeOptions,
    ready: impl FnOnce(SocketAddr, &Identity),
) -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let identity = crate::tls::identity(&opts.data_dir.join("tls"), opts.tls.clone())?;
    let store = Arc::new(open_store(&opts.data_dir).map_err(std::io::Error::other)?);
    let storage = Arc::new(
        Storage::open(&opts.data_dir, &opts.placement, store.clone())
            .await
            .map_err(std::io::Error::other)?,
    );
    storage
        .import_local_repositories()
        .await
        .map_err(std::io::Error::other)?;
    let app = Arc::new(App {
        store,
        storage: storage.clone(),
        data_dir: opts.data_dir.clone(),
        ttl: opts.session_ttl,
        metrics: Metrics::default(),
    });
    let protected = Router::new()
        .route("/v1/repo/{kind}", get(list))
        .route(
            "/v1/repo/{kind}/{name}",
            get(read).head(head).put(write).delete(remove),
        )
        .route("/v1/jobs", get(job_list))
        .route("/v1/conditions", get(conditions))
        .route("/v1/messages", get(messages))
        .route("/v1/incidents", get(incidents))
        .route("/v1/lost", get(lost))
        .route("/v1/statements", get(statements))
        .route(
            "/v1/statements/{id}/objection",
            post(objection).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route(
            "/v1/snapshots/{name}/packs",
            axum::routing::put(snapshot_packs),
        )
        .route(
            "/v1/jobs/{job}",
            axum::routing::put(job_report).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .route("/v1/uploads", get(upload_list).delete(upload_sweep))
        .route(
            "/v1/uploads/{kind}/{name}",
            axum::routing::head(upload_status)
                .put(upload_piece)
                .post(upload_commit)
                .delete(upload_abort),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_session,
        ));
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route(
            "/v1/login",
            post(login).layer(DefaultBodyLimit::max(SMALL_BODY)),
        )
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(
            |req, next: axum::middleware::Next| async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
                    Ok(resp) => resp,
                    Err(_) => {
                        ApiError::new(StatusCode::REQUEST_TIMEOUT, "the request took too long")
                            .into_response()
                    }
                }
            },
        ))
        .with_state(app);
    let tls = RustlsConfig::from_config(crate::tls::server_config(&identity)?);
    let listener = std::net::TcpListener::bind(opts.listen)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    let users = opts.data_dir.join("users");
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            every.tick().await;
            let dir = users.clone();
            let _ = tokio::task::spawn_blocking(move || sweep_stale_uploads(&dir)).await;
        }
    });
    if let Some(mail) = opts.mail.clone() {
        let data_dir = opts.data_dir.clone();
        let every = std::time::Duration::from_secs(mail.every_secs.unwrap_or(60).max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (mail, dir) = (mail.clone(), data_dir.clone());
                match tokio::task::spawn_blocking(move || mail.deliver(&dir)).await {
                    Ok(Ok(d)) if d.sent > 0 => {
                        tracing::info!(sent = d.sent, waiting = d.waiting, "notices mailed")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!("{e}"),
                    Err(e) => tracing::error!("mail delivery: {e}"),
                }
            }
        });
    }
    let checker = storage.clone();
    let biller = storage.clone();
    let replace_every = opts.replace_every;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(replace_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match storage.replace().await {
                Ok(r) if r.copied + r.deleted + r.pending + r.unreadable > 0 => {
                    tracing::info!(?r, "placements brought up to date")
                }
                Ok(_) | Err(StorageError::Busy) => {}
                Err(e) => tracing::error!("placement run: {e}"),
            }
        }
    });
    let (verify_every, sample) = (opts.verify_every, opts.verify_sample);
    tokio::spawn(async move {
        let mut every =
            tokio::time::interval_at(tokio::time::Instant::now() + verify_every, verify_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let scope = crate::storage::Scope {
            member: None,
            sample: Some(sample),
        };
        loop {
            every.tick().await;
            match checker.verify(&scope, &|_, _| {}).await {
                Ok(v) => tracing::info!(
                    objects = v.objects,
                    sound = v.sound,
                    media_faults = v.media_faults,
                    repaired = v.repaired,
                    tampered = v.tampered,
                    lost = v.lost,
                    unchecked = v.unchecked,
                    "integrity check done"
                ),
                Err(StorageError::Busy) => {}
                Err(e) => tracing::error!("integrity check: {e}"),
            }
        }
    });
    if let Some(prices) = opts.billing.clone() {
        let every = opts.billing_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = crate::billing::sample_usage(&biller).await {
                    tracing::error!("usage sample: {e}");
                }
                let today = crate::billing::today();
                match crate::billing::settle(&biller, &prices, today, &|_, _| {}).await {
                    Ok(s) if !s.issued.is_empty() || !s.settled.is_empty() => tracing::info!(
                        period = s.period,
                        issued = s.issued.len(),
                        settled = s.settled.len(),
                        "billing settlement"
                    ),
                    Ok(_) | Err(StorageError::Busy) => {}
                    Err(e) => tracing::error!("billing settlement: {e}"),
                }
            }
        });
    }
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        shutdown.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    ready(addr, &identity);
    tracing::info!(%addr, fingerprint = %identity.fingerprint, "kura service listening");
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(ClientCertAcceptor(RustlsAcceptor::new(tls)))
        .handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(opts.header_timeout);
    server.serve(router.into_make_service()).await
}

async fn metrics(State(app): State<Arc<App>>) -> String {
    let m = &app.metrics;
    let line = |name: &str, help: &str, v: &AtomicU64| {
        format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        )
    };
    [
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
    .concat()
}

/// A login: a user name and password, or nothing but the connection's client certificate.
#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    user: String,
    password: Option<String>,
}

async fn login(
    State(app): State<Arc<App>>,
    Extension(cert): Extension<ClientCert>,
    body: Bytes,
) -> ApiResult<Response> {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let req: Login = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed login: {e}")))?;
    let a = app.clone();
    let by_cert = req.password.is_none();
    let found = tokio::task::spawn_blocking(move || match (req.password, cert.0) {
        (Some(password), _) => a.store.login(&req.user, password.as_bytes(), a.ttl),
        (None, Some(fingerprint)) => a.store.login_by_cert(&fingerprint, a.ttl),
        (None, None) => Ok(None),
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    let Some((user, token)) = found else {
        app.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            if by_cert {
                "no password given, and no registered client certificate presented"
            } else {
                "wrong user name or password"
            },
        ));
    };
    check_contract(&app, &user, true)?;
    tracing::info!(user = user.id, "session opened");
    Ok(axum::Json(serde_json::json!({"token": token, "expires": (jiff::Timestamp::now() + app.ttl).to_string()})).into_response())
}

/// The contract check of spec/terminal-backup.md requirement 2.
fn check_contract(app: &App, user: &User, at_login: bool) -> ApiResult<()> {
    let refuse = |status: StatusCode, msg: String| {
        app.metrics.refused.fetch_add(1, Ordering::Relaxed);
        Err(ApiError::new(status, msg))
    };
    let Some(c) = &user.contract else {
        return refuse(
            StatusCode::FORBIDDEN,
            "no contract for this user".to_string(),
        );
    };
    if !c.paid {
        return refuse(
            StatusCode::PAYMENT_REQUIRED,
            "the contract is not paid".to_string(),
        );
    }
    let today = jiff::Zoned::now().date();
    if c.until < today {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("the contract lapsed after {}", c.until),
        );
    }
    if at_login && c.max_accesses > 0 && user.accesses > c.max_accesses {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "the contract's limit of {} accesses is reached",
                c.max_accesses
            ),
        );
    }
    Ok(())
}

/// An authenticated request's user, set by [`require_session`].
#[derive(Clone)]
struct Authed {
    user: User,
}

/// Authenticates every request to the protected routes before its body is read.
async fn require_session(
    State(app): State<Arc<App>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&app, req.headers()).await {
        Ok(user) => {
            req.extensions_mut().insert(Authed { user });
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Authenticates the request and checks the contract.
async fn authorize(app: &Arc<App>, headers: &HeaderMap) -> ApiResult<User> {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let a = app.clone();
    let user = match token {
        Some(t) => tokio::task::spawn_blocking(move || a.store.session(&t))
            .await
            .map_err(internal)?
            .map_err(internal)?,
        None => None,
    };
    let Some(user) = user else {
        app.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not logged in or session expired",
        ));
    };
    check_contract(app, &user, false)?;
    Ok(user)
}

fn file_type(kind: &str, name: Option<&str>) -> ApiResult<FileType> {
    let t = FileType::from_name(kind)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no such kind {kind:?}")))?;
    if let Some(n) = name {
        let ok = match t {
            FileType::Config => n == "config",
            _ => {
                !n.is_empty()
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            }
        };
        if !ok {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid name {n:?}"),
            ));
        }
    }
    Ok(t)
}

fn storage_error(e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not found"),
        StorageError::OutOfRange => ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range starts past the end",
        ),
        StorageError::Lost(_) => {
            tracing::error!("{e}");
            ApiError::new(StatusCode::GONE, e.to_string())
        }
        StorageError::NoSite(_) | StorageError::Unreadable { .. } => {
            tracing::error!("{e}");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        StorageError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "the service is out of space",
        ),
        other => internal(other),
    }
}

/// Runs a catalog query on the blocking pool.
async fn catalog<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> ApiResult<T> {
    let store = app.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(internal)?
        .map_err(internal)
}

async fn list(
    State(app): State<Arc<App>>,
    Path(kind): Path<String>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let t = file_type(&kind, None)?;
    let id = authed.user.id;
    let names = catalog(&app, move |s| s.object_names(id, t.name())).await?;
    Ok(axum::Json(names).into_response())
}

fn parse_range(headers: &HeaderMap) -> ApiResult<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::RANGE) else {
        return Ok(None);
    };
    let bad = || ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "malformed Range header");
    let v = v.to_str().map_err(|_| bad())?;
    let (a, b) = v
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if b < a || b - a >= MAX_BODY as u64 {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// The size of a stored object, 0 if there is none (for usage accounting).
async fn stored_size(app: &Arc<App>, user: i64, t: FileType, name: &str) -> ApiResult<u64> {
    let name = name.to_string();
    let entry = catalog(app, move |s| s.object(user, t.name(), &name)).await?;
    Ok(entry.map_or(0, |e| e.size))
}

async fn read(
    State(app): State<Arc<App>>,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let t = file_type(&kind, Some(&name))?;
    let range = parse_range(&headers)?;
    let id = authed.user.id;
    let (body, status) = match range {
        Some((a, b)) => (
            app.storage
                .get_range(id, t, &name, a, b + 1)
                .await
                .map_err(storage_error)?,
            StatusCode::PARTIAL_CONTENT,
        ),
        None => (
            app.storage.get(id, t, &name).await.map_err(storage_error)?,
            StatusCode::OK,
        ),
    };
    app.metrics
        .bytes_out
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    Ok((status, body).into_response())
}

async fn head(
    State(app): State<Arc<App>>,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let t = file_type(&kind, Some(&name))?;
    let id = authed.user.id;
    let entry = catalog(&app, move |s| s.object(id, t.name(), &name))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not found"))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_LENGTH, entry.size.to_string())],
    )
        .into_response())
}

#[derive(Deserialize)]
struct Since {
    since: Option<jiff::Timestamp>,
}

/// The storage conditions: per object, each copy's site, region, state, algorithm and key
/// reference.
async fn conditions(
    State(app): State<Arc<App>>,
    Query(q): Query<Since>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let id = authed.user.id;
    let entries = catalog(&app, move |s| s.objects(id, q.since)).await?;
    let list: Vec<_> = entries.iter().map(|e| e.conditions()).collect();
    Ok(axum::Json(list).into_response())
}

async fn messages(
    State(app): State<Arc<App>>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let id = authed.user.id;
    let list = catalog(&app, move |s| s.messages(id)).await?;
    Ok(axum::Json(list).into_response())
}

async fn incidents(
    State(app): State<Arc<App>>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let id = authed.user.id;
    let list = catalog(&app, move |s| s.incidents(Some(id), None, None)).await?;
    Ok(axum::Json(list).into_response())
}

async fn lost(
    State(app): State<Arc<App>>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let id = authed.user.id;
    let list = catalog(&app, move |s| s.lost_objects(id)).await?;
    Ok(axum::Json(list).into_response())
}

async fn statements(
    State(app): State<Arc<App>>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let id = authed.user.id;
    let list = catalog(&app, move |s| s.statements(Some(id))).await?;
    Ok(axum::Json(list).into_response())
}

/// A member's objection to a statement.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Objection {
    reason: String,
}

/// The most characters an objection's reason may have.
const MAX_REASON: usize = 4000;

async fn objection(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Extension(authed): Extension<Authed>,
    body: Bytes,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    let o: Objection = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed objection: {e}")))?;
    let reason = o.reason.trim().to_string();
    let printable = reason
        .chars()
        .all(|c| !c.is_control() || c == '\n' || c == '\t');
    if reason.is_empty() || reason.chars().count() > MAX_REASON || !printable {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("an objection needs a reason of 1 to {MAX_REASON} printable characters"),
        ));
    }
    let today = crate::billing::today();
    let store = app.store.clone();
    let held = tokio::task::spawn_blocking(move || store.object_to(user.id, &id, &reason, today))
        .await
        .map_err(internal)?;
    let held = match held {
        Ok(s) => s,
        Err(crate::store::StoreError::Invalid(m)) => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, m));
        }
        Err(crate::store::StoreError::Conflict(m)) => {
            return Err(ApiError::new(StatusCode::CONFLICT, m));
        }
        Err(e) => return Err(internal(e)),
    };
    if let Err(e) = crate::billing::tell(&app.storage).await {
        tracing::warn!("telling of the objection: {e}");
    }
    Ok(axum::Json(held).into_response())
}

async fn job_report(
    State(app): State<Arc<App>>,
    Path(job): Path<String>,
    Extension(authed): Extension<Authed>,
    body: Bytes,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    let report = kura_core::job::JobReport::decode(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed job report: {e}"),
        )
    })?;
    let numbers_fit = [report.files, report.bytes, report.stored_added]
        .iter()
        .all(|&n| i64::try_from(n).is_ok());
    let snapshot_ok = report.snapshot.as_deref().is_none_or(|n| {
        n.len() == 64
            && n.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    if !numbers_fit || !snapshot_ok {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed job report: counts out of range or a bad snapshot name",
        ));
    }
    if report.job.to_string() != job {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the report is for another job",
        ));
    }
    let a = app.clone();
    tokio::task::spawn_blocking(move || {
        a.store.record_job(user.id, &report)?;
        if report.status == kura_core::job::JobStatus::Completed {
            // The storage conditions of what this backup stored (spec/placement.md req. 6).
            let entries = a
                .store
                .objects(user.id, Some(report.started - NOTICE_SLACK))?;
            let intro = format!(
                "Backup {} finished at {}: {} objects stored since it started.",
                report.job.short(),
                report.ended.unwrap_or_else(jiff::Timestamp::now),
                entries.len()
            );
            crate::notice::send(
                &a.store,
                &a.data_dir,
                &user,
                "conditions",
                "Storage conditions of your backup",
                &crate::notice::conditions_text(&intro, &entries),
            )
            .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
        }
        Ok::<_, crate::store::StoreError>(())
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Which packs a member's snapshot needs, as the client reports after a backup: a lost pack
/// then names the snapshots it takes with it.
async fn snapshot_packs(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    Extension(authed): Extension<Authed>,
    body: Bytes,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    let t = file_type(FileType::Snapshot.name(), Some(&name))?;
    let packs = kura_core::id::ids_from_bytes(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed pack list: {e}")))?;
    let known = catalog(&app, move |s| {
        if s.object(user.id, t.name(), &name)?.is_none() {
            return Ok(false);
        }
        let ids: Vec<[u8; 32]> = packs.iter().map(|p| p.0).collect();
        s.set_snapshot_packs(user.id, &name, &ids)?;
        Ok(true)
    })
    .await?;
    if !known {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such snapshot"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn job_list(
    State(app): State<Arc<App>>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    let a = app.clone();
    let lines = tokio::task::spawn_blocking(move || a.store.job_log(Some(&user.name)))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let reports: Vec<_> = lines.into_iter().map(|l| l.report).collect();
    Ok(axum::Json(reports).into_response())
}

/// The contract's limits on storing `len` bytes as `t`/`name`.
async fn admit(app: &Arc<App>, user: &User, t: FileType, name: &str, len: u64) -> ApiResult<()> {
    let Some(contract) = &user.contract else {
        return Err(internal("authorized user without a contract"));
    };
    let old = stored_size(app, user.id, t, name).await?;
    let new_total = user.bytes.saturating_sub(old).saturating_add(len);
    if contract.max_bytes > 0 && new_total > contract.max_bytes {
        return Err(over_storage(app, contract.max_bytes));
    }
    if t == FileType::Snapshot && contract.max_archives > 0 && old == 0 {
        let id = user.id;
        let count = catalog(app, move |s| s.object_names(id, t.name()))
            .await?
            .len() as u64;
        if count >= contract.max_archives {
            app.metrics.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the contract's limit of {} archives is reached (forget one first)",
                    contract.max_archives
                ),
            ));
        }
    }
    Ok(())
}

fn over_storage(app: &App, max_bytes: u64) -> ApiError {
    app.metrics.refused.fetch_add(1, Ordering::Relaxed);
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!("the contract's storage limit of {max_bytes} bytes would be exceeded"),
    )
}

/// Stores an object on the sites. It runs to its end even if the client goes away meanwhile,
/// so an object is never stored without being recorded and counted.
async fn store_object(
    app: &Arc<App>,
    user: &User,
    t: FileType,
    name: &str,
    body: Bytes,
    sha256: String,
) -> ApiResult<()> {
    let (storage, user, name) = (app.storage.clone(), user.clone(), name.to_string());
    let len = body.len() as u64;
    tokio::spawn(async move { storage.put(&user, t, &name, body, sha256).await })
        .await
        .map_err(internal)?
        .map_err(storage_error)?;
    app.metrics.bytes_in.fetch_add(len, Ordering::Relaxed);
    Ok(())
}

/// Runs `f` on the blocking pool to its end, even if the client goes away meanwhile.
async fn in_background<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

/// The checksum a client sent with a piece or object, if any.
fn checksum(headers: &HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get(CHECKSUM_HEADER)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "malformed checksum header"))
        })
        .transpose()
}

fn resend() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "the data does not match its checksum; send it again",
    )
    .with("resend", true)
}

async fn write(
    State(app): State<Arc<App>>,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let Authed { user } = authed;
    let t = file_type(&kind, Some(&name))?;
    let sum = upload::sha256_hex(&body);
    if checksum(&headers)?.is_some_and(|sent| !sum.eq_ignore_ascii_case(&sent)) {
        return Err(resend());
    }
    admit(&app, &user, t, &name, body.len() as u64).await?;
    store_object(&app, &user, t, &name, body, sum).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::Offset { received, .. } => {
            ApiError::new(StatusCode::CONFLICT, e.to_string()).with("received", received)
        }
        UploadError::Checksum => resend(),
        UploadError::TooLarge => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        UploadError::TooMany => ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        UploadError::NotFound => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        UploadError::BadChecksum(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
        UploadError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "the service is out of space",
        ),
        UploadError::Io(e) => internal(e),
    }
}

async fn uploading<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UploadError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(upload_error)
}

/// The user's unfinished uploads, beside their repository.
fn uploads_of(app: &App, user: &User) -> Uploads {
    Uploads::new(app.user_dir(user).join("uploads"))
}

async fn upload_list(
    State(app): State<Arc<App>>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    let up = uploads_of(&app, &user);
    Ok(axum::Json(uploading(move || up.list()).await?).into_response())
}

#[derive(Deserialize)]
struct Sweep {
    older_than: u64,
}

async fn upload_sweep(
    State(app): State<Arc<App>>,
    Query(q): Query<Sweep>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    let up = uploads_of(&app, &user);
    let age = std::time::Duration::from_secs(q.older_than);
    let removed = uploading(move || up.sweep(age)).await?;
    Ok(axum::Json(serde_json::json!({ "removed": removed })).into_response())
}

async fn upload_status(
    State(app): State<Arc<App>>,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    file_type(&kind, Some(&name))?;
    let up = uploads_of(&app, &user);
    let received = uploading(move || up.received(&kind, &name)).await?;
    Ok((StatusCode::OK, [(RECEIVED_HEADER, received.to_string())]).into_response())
}

#[derive(Deserialize)]
struct PieceAt {
    offset: u64,
}

async fn upload_piece(
    State(app): State<Arc<App>>,
    Path((kind, name)): Path<(String, String)>,
    Query(at): Query<PieceAt>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    file_type(&kind, Some(&name))?;
    let sum = checksum(&headers)?
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "a piece needs a checksum"))?;
    let up = uploads_of(&app, &user);
    let received = in_background(move || {
        // Unfinished uploads count against the storage limit too.
        if let Some(c) = &user.contract
            && c.max_bytes > 0
        {
            let pending = up.pending_bytes().map_err(upload_error)?;
            let total = user
                .bytes
                .saturating_add(pending)
                .saturating_add(body.len() as u64);
            if total > c.max_bytes {
                return Err(over_storage(&app, c.max_bytes));
            }
        }
        up.append(&kind, &name, at.offset, &body, &sum)
            .map_err(upload_error)
    })
    .await?;
    Ok(axum::Json(serde_json::json!({ "received": received })).into_response())
}

async fn upload_commit(
    State(app): State<Arc<App>>,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Authed { user } = authed;
    let t = file_type(&kind, Some(&name))?;
    let sum = checksum(&headers)?
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "a commit needs a checksum"))?;
    let up = uploads_of(&app, &user);
    let (k, n, s, u) = (kind.clone(), name.clone(), sum.clone(), up.clone());
    let finished = tokio::task::spawn_blocking(move || u.finish(&k, &n, &s))
        .await
        .map_err(internal)?;
    let data = match finished {
        Ok(data) => data,
        Err(UploadError::NotFound) => {
            // A repeated commit whose first answer was lost: the object is in place.
            let id = user.id;
            let stored = catalog(&app, move |s| s.object(id, t.name(), &name)).await?;
            return match stored {
                Some(e) if e.sha256.eq_ignore_ascii_case(&sum) => {
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                _ => Err(upload_error(UploadError::NotFound)),
            };
        }
        Err(e) => return Err(upload_error(e)),
    };
    let drop_upload = {
        let (kind, name) = (kind.clone(), name.clone());
        move || uploading(move || up.abort(&kind, &name))
    };
    if let Err(e) = admit(&app, &user, t, &name, data.len() as u64).await {
        drop_upload().await?;
        return Err(e);
    }
    // Dropped only once stored: a service killed before that finds it again when the client
    // repeats the commit.
    store_object(
        &app,
        &user,
        t,
        &name,
        Bytes::from(data),
        sum.to_ascii_lowercase(),
    )
    .await?;
    drop_upload().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn upload_abort(
    State(app): State<Arc<App>>,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let Authed { user, .. } = authed;
    file_type(&kind, Some(&name))?;
    let up = uploads_of(&app, &user);
    uploading(move || up.abort(&kind, &name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn remove(
    State(app): State<Arc<App>>,
    Path((kind, name)): Path<(String, String)>,
    Extension(authed): Extension<Authed>,
) -> ApiResult<Response> {
    let t = file_type(&kind, Some(&name))?;
    let (storage, id) = (app.storage.clone(), authed.user.id);
    tokio::spawn(async move { storage.delete(id, t, &name).await })
        .await
        .map_err(internal)?
        .map_err(storage_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! The vault's HTTP API: deposit a registered value for a certificate, withdraw it once with the
//! certificate and the wallet's signature (or, for an owner whose device is lost, the trusted
//! key manager's), and the usual `/healthz` and `/metrics`. Bodies are small and bounded;
//! every store call runs on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kura_service::serve::blocking;
use kura_wallet::certificate::{Purpose, Withdrawal};
use kura_wallet::rekey::Replacement;

use crate::store::{Store, VaultError};

/// Largest request body: a registered value or a certificate with its proof.
pub const MAX_BODY: usize = 64 * 1024;
/// Replacements read at once: each may be as large as a wallet's quota, so they wait their
/// turn rather than share the memory.
pub const REPLACING_AT_ONCE: usize = 1;

/// What the handlers share.
pub struct Vault {
    /// The store.
    pub store: Store,
    /// The largest replacement: every value one wallet may hold, new, and its old
    /// certificates.
    max_replacement: usize,
    replacing: tokio::sync::Semaphore,
    deposits: AtomicU64,
    withdrawals: AtomicU64,
    refusals: AtomicU64,
}

impl Vault {
    /// The vault over `store`, whose wallets may hold `quota_bytes` each.
    pub fn new(store: Store, quota_bytes: u64) -> Vault {
        Vault {
            store,
            max_replacement: usize::try_from(quota_bytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(2)
                .saturating_add(1 << 20),
            replacing: tokio::sync::Semaphore::new(REPLACING_AT_ONCE),
            deposits: AtomicU64::new(0),
            withdrawals: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }
}

/// The vault's routes.
pub fn app(vault: Arc<Vault>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/key", get(key))
        .route("/v1/deposit", post(deposit))
        .route("/v1/withdraw", post(withdraw))
        .route("/v1/emergency", post(emergency))
        .route("/v1/read", post(read))
        .route(
            "/v1/replace",
            post(replace).layer(DefaultBodyLimit::disable()),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(vault)
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let status = match &self {
            VaultError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
            VaultError::Invalid(_) => StatusCode::BAD_REQUEST,
            VaultError::Unknown => StatusCode::NOT_FOUND,
            VaultError::Redeemed | VaultError::Replayed => StatusCode::CONFLICT,
            VaultError::Quota(_) => StatusCode::FORBIDDEN,
            VaultError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            VaultError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{self}");
        }
        (status, format!("{self}\n")).into_response()
    }
}

fn octets(b: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response()
}

impl From<tokio::task::JoinError> for VaultError {
    fn from(e: tokio::task::JoinError) -> VaultError {
        VaultError::Invalid(format!("the request was cut short: {e}"))
    }
}

async fn key(State(v): State<Arc<Vault>>) -> String {
    format!("{}\n", kura_core::id::hex(&v.store.public_key()))
}

async fn deposit(State(v): State<Arc<Vault>>, body: Bytes) -> Result<Response, VaultError> {
    let vault = v.clone();
    let r = blocking(move || vault.store.deposit(&body)).await;
    count(&v, &v.deposits, &r);
    Ok(octets(r?.to_bytes()))
}

async fn withdraw_for(
    v: Arc<Vault>,
    body: Bytes,
    purpose: Purpose,
) -> Result<Response, VaultError> {
    let vault = v.clone();
    let r = blocking(move || {
        let w = Withdrawal::parse(&body).map_err(|e| VaultError::Invalid(e.to_string()))?;
        vault.store.withdraw(&w, purpose)
    })
    .await;
    if purpose != Purpose::Read {
        count(&v, &v.withdrawals, &r);
    }
    Ok(octets(r?))
}

async fn withdraw(State(v): State<Arc<Vault>>, body: Bytes) -> Result<Response, VaultError> {
    withdraw_for(v, body, Purpose::Withdraw).await
}

async fn emergency(State(v): State<Arc<Vault>>, body: Bytes) -> Result<Response, VaultError> {
    withdraw_for(v, body, Purpose::Emergency).await
}

async fn read(State(v): State<Arc<Vault>>, body: Bytes) -> Result<Response, VaultError> {
    withdraw_for(v, body, Purpose::Read).await
}

async fn replace(
    State(v): State<Arc<Vault>>,
    body: axum::body::Body,
) -> Result<Response, VaultError> {
    // The slot first, then the body, read up to its bound: memory for one replacement.
    let _slot = v
        .replacing
        .try_acquire()
        .map_err(|_| VaultError::Busy("a replacement is being made: try again shortly"))?;
    let body = axum::body::to_bytes(body, v.max_replacement)
        .await
        .map_err(|_| VaultError::TooLarge(v.max_replacement))?;
    let vault = v.clone();
    let r = blocking(move || {
        let r = Replacement::parse(&body).map_err(|e| VaultError::Invalid(e.to_string()))?;
        vault.store.replace(&r)
    })
    .await;
    Ok(octets(r?))
}

fn count<T>(v: &Vault, ok: &AtomicU64, r: &Result<T, VaultError>) {
    match r {
        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
        Err(_) => v.refusals.fetch_add(1, Ordering::Relaxed),
    };
}

async fn metrics(State(v): State<Arc<Vault>>) -> Result<String, VaultError> {
    let vault = v.clone();
    let (held, retired) = blocking(move || vault.store.counts()).await?;
    Ok(format!(
        "kura_vault_values_held {held}\nkura_vault_values_retired {retired}\n\
         kura_vault_deposits_total {}\nkura_vault_withdrawals_total {}\n\
         kura_vault_refusals_total {}\n",
        v.deposits.load(Ordering::Relaxed),
        v.withdrawals.load(Ordering::Relaxed),
        v.refusals.load(Ordering::Relaxed)
    ))
}

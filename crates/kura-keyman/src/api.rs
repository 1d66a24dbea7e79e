//! The key manager's HTTP API: a wallet enrols its share with the credentials that release
//! it; the owner gets the share back on a match, or (device lost) a deposited value, which the
//! key manager withdraws from the vault, checks, opens and hands over. Every credential check
//! runs on the gate's few threads behind a bounded queue; bodies are small and bounded.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kura_core::id::hex;
use kura_service::api::throttle::{LoginGate, Refusal};
use kura_service::serve::blocking;
use kura_vault::client::{ClientError, VaultClient};
use kura_wallet::registered::Registered;
use serde_json::json;

use crate::store::{Attempt, Escrow, KeymanError, Phantoms, Store, check_nothing};
use kura_wallet::escrow::{Credentials, Delivery, Enrol, Rekey, RekeyDone, Release, Restore};

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest re-keying request: every certificate one wallet may hold.
pub const MAX_REKEY: usize = 4 << 20;
/// Re-keyings at once (each reads up to [`MAX_REKEY`] before it is authenticated).
pub const REKEYING_AT_ONCE: usize = 2;

/// What the handlers share.
pub struct Keyman {
    /// The store.
    pub store: Store,
    /// Credential checks at once, and guesses per address.
    pub gate: LoginGate,
    /// The vault emergency restores withdraw from: its address and TLS fingerprint.
    pub vault: Option<(String, String)>,
    rekeying: tokio::sync::Semaphore,
    phantoms: Phantoms,
    max_per_address: u64,
    backoffs: AtomicU64,
    released: AtomicU64,
    restored: AtomicU64,
    refused: AtomicU64,
}

impl Keyman {
    /// The key manager over `store`, checking on `checks` threads, restoring from `vault`,
    /// taking at most `max_per_address` enrolments from one address.
    pub fn new(
        store: Store,
        checks: usize,
        vault: Option<(String, String)>,
        max_per_address: u64,
    ) -> Keyman {
        Keyman {
            store,
            gate: LoginGate::new(checks),
            vault,
            rekeying: tokio::sync::Semaphore::new(REKEYING_AT_ONCE),
            phantoms: Phantoms::default(),
            max_per_address,
            backoffs: AtomicU64::new(0),
            released: AtomicU64::new(0),
            restored: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

/// The key manager's routes.
pub fn app(k: Arc<Keyman>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/key", get(key))
        .route("/v1/escrow", post(enrol))
        .route("/v1/release", post(release))
        .route("/v1/restore", post(restore))
        .route("/v1/rekey/done", post(rekey_done))
        .route("/v1/rekey", post(rekey).layer(DefaultBodyLimit::disable()))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(k)
}

impl IntoResponse for KeymanError {
    fn into_response(self) -> Response {
        let status = match &self {
            KeymanError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
            KeymanError::Invalid(_) => StatusCode::BAD_REQUEST,
            KeymanError::Refused => StatusCode::FORBIDDEN,
            KeymanError::Backoff(_) => StatusCode::TOO_MANY_REQUESTS,
            KeymanError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            KeymanError::Full(_) => StatusCode::INSUFFICIENT_STORAGE,
            KeymanError::PerAddress(_) => StatusCode::TOO_MANY_REQUESTS,
            KeymanError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            KeymanError::Redeemed => StatusCode::CONFLICT,
            KeymanError::Vault(_) => StatusCode::BAD_GATEWAY,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{self}");
        }
        let mut r = (status, format!("{self}\n")).into_response();
        if let KeymanError::Backoff(d) = &self
            && let Ok(v) = HeaderValue::from_str(&d.as_secs().max(1).to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

fn refusal(r: Refusal) -> KeymanError {
    match r {
        Refusal::Backoff(d) => KeymanError::Backoff(d),
        Refusal::Busy => KeymanError::Busy,
    }
}

impl From<tokio::task::JoinError> for KeymanError {
    fn from(e: tokio::task::JoinError) -> KeymanError {
        KeymanError::Invalid(format!("the request was cut short: {e}"))
    }
}

type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn ip(peer: Peer) -> Option<IpAddr> {
    peer.map(|Extension(ConnectInfo(a))| a.ip())
}

async fn key(State(k): State<Arc<Keyman>>) -> String {
    format!("{}\n", hex(&k.store.key().public()))
}

async fn enrol(
    State(k): State<Arc<Keyman>>,
    peer: Peer,
    body: Bytes,
) -> Result<&'static str, KeymanError> {
    let e = Enrol::parse(&body).map_err(|e| KeymanError::Invalid(e.0))?;
    let addr = ip(peer);
    let (store, from) = (k.clone(), address(addr));
    let enrolled = blocking(move || store.store.enrolled_from(&from)).await?;
    if enrolled >= k.max_per_address {
        return Err(KeymanError::PerAddress(k.max_per_address));
    }
    let escrow = k
        .gate
        .check(move || Escrow::from_enrolment(&e))
        .await
        .map_err(refusal)??;
    let (store, wallet) = (k.clone(), hex(&escrow.wallet));
    blocking(move || {
        let r = store.store.enrol(&escrow);
        let outcome = if r.is_ok() { "ok" } else { "refused" };
        store.store.log(&attempt(&wallet, "enrol", addr, outcome))?;
        r
    })
    .await?;
    Ok("escrowed\n")
}

fn address(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| "-".to_string(), |a| a.to_string())
}

fn attempt(wallet: &str, what: &str, addr: Option<IpAddr>, outcome: &str) -> Attempt {
    Attempt {
        at: jiff::Timestamp::now().to_string(),
        wallet: wallet.to_string(),
        what: what.to_string(),
        address: address(addr),
        outcome: outcome.to_string(),
    }
}

/// Checks `creds` against `wallet`'s escrow: the address's and the wallet's waits first, the
/// try counted as a failure before the (slow) check and forgiven after a match, every
/// outcome logged. The escrow when they match.
async fn authenticate(
    k: &Arc<Keyman>,
    wallet: [u8; 32],
    creds: Credentials,
    addr: Option<IpAddr>,
    what: &'static str,
) -> Result<Escrow, KeymanError> {
    let name = hex(&wallet);
    let methods = creds.methods().join("+");
    let settle = |outcome: &'static str, ok: bool| {
        let (k, name) = (k.clone(), name.clone());
        if ok {
            k.gate.succeeded(&name, addr);
        } else {
            k.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(wallet = %name, address = ?addr, what, methods = %methods, outcome, "escrow attempt refused");
        }
        blocking(move || {
            if ok {
                k.store.succeeded(&wallet)?;
            }
            k.store.log(&attempt(&name, what, addr, outcome))
        })
    };
    // A try made to wait costs no check and no write: it is counted, not logged, so a
    // flood of them neither loads the disk nor pushes real attempts out of the log.
    let waited = |d| {
        k.backoffs.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(wallet = %name, address = ?addr, what, "escrow attempt made to wait");
        KeymanError::Backoff(d)
    };
    if let Err(Refusal::Backoff(d)) = k.gate.admit(&name, addr, Instant::now()) {
        return Err(waited(d));
    }
    let store = k.clone();
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let found = match blocking(move || store.store.begin(&wallet, now_ms)).await {
        Err(KeymanError::Backoff(d)) => return Err(waited(d)),
        other => other?,
    };
    if found.is_none()
        && let Err(KeymanError::Backoff(d)) = k.phantoms.begin(&wallet, now_ms)
    {
        return Err(waited(d));
    }
    let checked = k
        .gate
        .check(move || match found {
            Some(e) => e.admits(&creds).then_some(e),
            None => {
                check_nothing(&creds);
                None
            }
        })
        .await
        .map_err(refusal)?;
    match checked {
        Some(e) => {
            settle("ok", true).await?;
            Ok(e)
        }
        None => {
            k.gate.failed(&name, addr, Instant::now());
            settle("refused", false).await?;
            Err(KeymanError::Refused)
        }
    }
}

async fn release(
    State(k): State<Arc<Keyman>>,
    peer: Peer,
    body: Bytes,
) -> Result<Json<serde_json::Value>, KeymanError> {
    let (r, wallet) = Release::parse(&body).map_err(|e| KeymanError::Invalid(e.0))?;
    let escrow = authenticate(&k, wallet, r.credentials, ip(peer), "release").await?;
    k.released.fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({ "share": hex(&escrow.share) })))
}

async fn restore(
    State(k): State<Arc<Keyman>>,
    peer: Peer,
    body: Bytes,
) -> Result<Json<serde_json::Value>, KeymanError> {
    let (r, wallet, cert, recipient) =
        Restore::parse(&body).map_err(|e| KeymanError::Invalid(e.0))?;
    if k.vault.is_none() {
        return Err(KeymanError::Vault(
            "this key manager is not configured with a vault (--vault)".into(),
        ));
    }
    let escrow = authenticate(&k, wallet, r.owner.credentials, ip(peer), "restore").await?;
    let keyman = k.clone();
    let value = blocking(move || {
        // A blocking client lives and dies off the async threads, so it is made here.
        let (url, fingerprint) = keyman.vault.as_ref().ok_or(KeymanError::Refused)?;
        let vault =
            VaultClient::new(url, fingerprint).map_err(|e| KeymanError::Vault(e.to_string()))?;
        let refused = |e: ClientError| match e {
            ClientError::Refused { status: 409, .. } => KeymanError::Redeemed,
            e => KeymanError::Vault(e.to_string()),
        };
        // Read and opened before it is withdrawn: a value that is not this owner's (a
        // certificate shown with someone else's credentials) is never retired. A value
        // retired already can only be this key manager's own earlier withdrawal, asked
        // again after its answer was lost.
        match vault.read(&cert, keyman.store.key()) {
            Ok(bytes) => {
                open(&escrow, &cert.payload_hash, &bytes)?;
            }
            Err(ClientError::Refused { status: 409, .. }) => {}
            Err(e) => return Err(refused(e)),
        }
        // One receiving wallet per value, before it leaves the vault.
        keyman.store.claim_restore(&cert.payload_hash, &recipient)?;
        let bytes = vault
            .emergency(&cert, keyman.store.key())
            .map_err(refused)?;
        open(&escrow, &cert.payload_hash, &bytes)
    })
    .await?;
    k.restored.fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({ "value": hex(&value) })))
}

async fn rekey(
    State(k): State<Arc<Keyman>>,
    peer: Peer,
    body: axum::body::Body,
) -> Result<Json<Delivery>, KeymanError> {
    // The slot first, then the body, read up to its bound: memory for a few re-keyings.
    let _slot = k.rekeying.try_acquire().map_err(|_| KeymanError::Busy)?;
    let body = axum::body::to_bytes(body, MAX_REKEY)
        .await
        .map_err(|_| KeymanError::TooLarge(MAX_REKEY))?;
    let (r, wallet, certs) = Rekey::parse(&body).map_err(|e| KeymanError::Invalid(e.0))?;
    let (url, fingerprint) = k.vault.clone().ok_or_else(|| {
        KeymanError::Vault("this key manager is not configured with a vault (--vault)".into())
    })?;
    let escrow = authenticate(&k, wallet, r.owner.credentials, ip(peer), "rekey").await?;
    let keyman = k.clone();
    let delivery = blocking(move || {
        let vault =
            VaultClient::new(&url, &fingerprint).map_err(|e| KeymanError::Vault(e.to_string()))?;
        crate::rekey::run(&keyman.store, &vault, &escrow, &certs)
    })
    .await?;
    Ok(Json(delivery))
}

async fn rekey_done(
    State(k): State<Arc<Keyman>>,
    body: Bytes,
) -> Result<&'static str, KeymanError> {
    let (_, old, sig) = RekeyDone::parse(&body).map_err(|e| KeymanError::Invalid(e.0))?;
    blocking(move || {
        let r =
            k.store.rekey(&old)?.filter(|r| r.done).ok_or_else(|| {
                KeymanError::Invalid("no finished re-keying of this wallet".into())
            })?;
        let new = kura_core::id::unhex_array::<32>(&r.delivery.wallet)
            .ok_or_else(|| KeymanError::Invalid("a stored re-keying is damaged".into()))?;
        if !RekeyDone::verify(&old, &sig, &new) {
            return Err(KeymanError::Invalid(
                "the confirmation is not signed by the delivered key".into(),
            ));
        }
        let public = Delivery {
            signing_key: String::new(),
            value_key: String::new(),
            vault_share: String::new(),
            recovery_share: String::new(),
            ..r.delivery
        };
        k.store.rekey_confirm(&old, &public)
    })
    .await?;
    Ok("confirmed\n")
}

/// Opens a value the vault gave back for `escrow`'s owner: it must be the one the certificate
/// names, signed by the owner's wallet (checked before anything is decrypted), and carry the
/// vault's share, which with the escrowed share rebuilds the value key. The value record's
/// bytes.
pub fn open(
    escrow: &Escrow,
    payload_hash: &[u8; 32],
    bytes: &[u8],
) -> Result<Vec<u8>, KeymanError> {
    let vault = |m: String| KeymanError::Vault(m);
    let reg = Registered::parse(bytes).map_err(|e| vault(format!("the vault's value: {e}")))?;
    if &reg.payload_hash() != payload_hash {
        return Err(vault(
            "the vault returned another value than the certificate names".into(),
        ));
    }
    reg.verify(&escrow.wallet).map_err(|_| {
        vault("the value is not signed by this wallet: it was changed at the vault".into())
    })?;
    let Some(share) = &reg.vault_share else {
        return Err(vault(
            "the value was deposited before the wallet's key was split and escrowed".into(),
        ));
    };
    let key = kura_wallet::split::combine(&[escrow.share.clone(), share.clone()])
        .map_err(|e| vault(e.to_string()))?;
    let record = reg
        .open(&escrow.wallet, &key)
        .map_err(|e| vault(format!("the escrowed share does not open the value: {e}")))?;
    Ok(record.to_bytes())
}

async fn metrics(State(k): State<Arc<Keyman>>) -> Result<String, KeymanError> {
    let keyman = k.clone();
    let (escrows, logged) = blocking(move || keyman.store.counts()).await?;
    Ok(format!(
        "kura_keyman_escrows {escrows}\nkura_keyman_attempts_refused_logged {logged}\n\
         kura_keyman_releases_total {}\nkura_keyman_restores_total {}\n\
         kura_keyman_refusals_total {}\nkura_keyman_backoffs_total {}\n",
        k.released.load(Ordering::Relaxed),
        k.restored.load(Ordering::Relaxed),
        k.refused.load(Ordering::Relaxed),
        k.backoffs.load(Ordering::Relaxed)
    ))
}

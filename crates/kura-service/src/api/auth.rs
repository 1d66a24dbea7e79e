//! Who is asking: logins (a password, or the connection's client certificate) open
//! sessions; every protected request carries a session token and passes the contract check
//! (`docs/requirements/terminal-backup.md` requirement 2) before its body is read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kura_api::{Login, Session};

use super::throttle::Refusal;
use super::{ApiError, ApiResult, App, AppState, Metrics, catalog};
use crate::registry::User;

/// The fingerprint of the certificate the client presented on this connection, if any (set
/// by the TLS acceptor).
#[derive(Debug, Clone)]
pub struct ClientCert(pub Option<String>);

/// An authenticated request's user, set by [`require_session`].
#[derive(Clone)]
pub struct Authed {
    /// Who.
    pub user: User,
    /// Whether this session may only add (see [`crate::registry::access`]).
    pub append_only: bool,
}

impl Authed {
    /// Refuses, in an append-only session, what would delete or replace stored data.
    pub fn may_destroy(&self, what: &str) -> ApiResult<()> {
        if self.append_only {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this account is append-only: {what} needs a session opened with the \
                     maintenance password (`--user-password-file` or KURA_USER_PASSWORD)"
                ),
            ));
        }
        Ok(())
    }
}

/// `POST /v1/login`. Password logins pass the [`LoginGate`](super::throttle::LoginGate)
/// first; every failure is logged with the source address, never with the password.
pub async fn login(
    State(app): App,
    cert: Option<Extension<ClientCert>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> ApiResult<axum::Json<Session>> {
    Metrics::add(&app.metrics.requests, 1);
    let req: Login = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("malformed login: {e}")))?;
    let by_cert = req.password.is_none();
    let fingerprint = cert.and_then(|Extension(c)| c.0);
    let addr = peer.map(|Extension(ConnectInfo(a))| a.ip());
    let name = req.user.clone();
    let a = app.clone();
    let found = match (req.password, fingerprint) {
        (Some(password), _) => {
            let gate = &app.login_gate;
            gate.admit(&name, addr, Instant::now())
                .map_err(|r| refused(&app, r))?;
            let user = req.user;
            gate.check(move || a.registry.check_password(&user, password.as_bytes()))
                .await
                .map_err(|r| refused(&app, r))??
        }
        (None, Some(fingerprint)) => {
            tokio::task::spawn_blocking(move || a.registry.user_by_cert(&fingerprint)).await??
        }
        (None, None) => None,
    };
    let Some(grant) = found else {
        Metrics::add(&app.metrics.auth_failures, 1);
        if !by_cert {
            app.login_gate.failed(&name, addr, Instant::now());
        }
        let from = addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        tracing::warn!(user = %name, %from, by_cert, "login failed");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            if by_cert {
                "no password given, and no registered client certificate presented"
            } else {
                "wrong user name or password"
            },
        ));
    };
    if !by_cert {
        app.login_gate.succeeded(&name, addr);
    }
    // The contract first: a refused login opens no session and is not counted as an access.
    let user = catalog(&app, move |s| s.user_by_id(grant.user)).await?;
    check_contract(&app, &user, jiff::Zoned::now().date(), true)?;
    let ttl = app.ttl;
    let (user, token) = catalog(&app, move |s| s.open_session(grant, ttl)).await?;
    tracing::info!(
        user = user.id,
        append_only = grant.append_only,
        "session opened"
    );
    Ok(axum::Json(Session {
        token,
        expires: (jiff::Timestamp::now() + app.ttl).to_string(),
    }))
}

/// The answer to a login the gate did not let through: 429 or 503, with when to try again.
fn refused(app: &AppState, r: Refusal) -> ApiError {
    Metrics::add(&app.metrics.refused, 1);
    match r {
        Refusal::Backoff(wait) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins for this user or address: wait before trying again",
        )
        .retry_after(wait),
        Refusal::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the service is checking as many passwords as it can: try again shortly",
        )
        .retry_after(std::time::Duration::from_secs(1)),
    }
}

/// Why a contract refuses service on `today`, if it does.
pub fn contract_refusal(
    user: &User,
    today: jiff::civil::Date,
    at_login: bool,
) -> Option<(StatusCode, String)> {
    let Some(c) = &user.contract else {
        return Some((StatusCode::FORBIDDEN, "no contract for this user".into()));
    };
    if !c.paid {
        return Some((
            StatusCode::PAYMENT_REQUIRED,
            "the contract is not paid".into(),
        ));
    }
    if c.until < today {
        return Some((
            StatusCode::FORBIDDEN,
            format!("the contract lapsed after {}", c.until),
        ));
    }
    // At login, before the access is counted: this one would be the (accesses + 1)th.
    if at_login && c.max_accesses > 0 && user.accesses >= c.max_accesses {
        return Some((
            StatusCode::FORBIDDEN,
            format!(
                "the contract's limit of {} accesses is reached",
                c.max_accesses
            ),
        ));
    }
    None
}

/// The contract check, counted when it refuses.
fn check_contract(
    app: &AppState,
    user: &User,
    today: jiff::civil::Date,
    at_login: bool,
) -> ApiResult<()> {
    match contract_refusal(user, today, at_login) {
        None => Ok(()),
        Some((status, message)) => {
            Metrics::add(&app.metrics.refused, 1);
            Err(ApiError::new(status, message))
        }
    }
}

/// Authenticates every request to the protected routes before its body is read.
pub async fn require_session(
    State(app): App,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authorize(&app, req.headers()).await {
        Ok(authed) => {
            req.extensions_mut().insert(authed);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Authenticates the request and checks the contract.
async fn authorize(app: &Arc<AppState>, headers: &HeaderMap) -> ApiResult<Authed> {
    Metrics::add(&app.metrics.requests, 1);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let a = app.clone();
    let session = match token {
        Some(t) => tokio::task::spawn_blocking(move || a.registry.session(&t)).await??,
        None => None,
    };
    let Some((user, grant)) = session else {
        Metrics::add(&app.metrics.auth_failures, 1);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not logged in or session expired",
        ));
    };
    check_contract(app, &user, jiff::Zoned::now().date(), false)?;
    Ok(Authed {
        user,
        append_only: grant.append_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Contract;
    use jiff::civil::date;

    fn user(contract: Option<Contract>, accesses: u64) -> User {
        User {
            id: 1,
            name: "alice".into(),
            created: String::new(),
            contract,
            accesses,
            bytes: 0,
            objects: 0,
            append_only: false,
            removed: None,
            email: None,
        }
    }

    fn contract(paid: bool, until: jiff::civil::Date, max_accesses: u64) -> Contract {
        Contract {
            plan: "standard".into(),
            until,
            paid,
            max_bytes: 0,
            max_archives: 0,
            max_accesses,
            home_region: String::new(),
            member_since: None,
        }
    }

    #[test]
    fn a_contract_refuses_for_each_reason() {
        let today = date(2026, 11, 30);
        let refusal = |u: &User, login| contract_refusal(u, today, login).map(|r| r.0);
        assert_eq!(refusal(&user(None, 0), false), Some(StatusCode::FORBIDDEN));
        let unpaid = user(Some(contract(false, date(2027, 1, 1), 0)), 0);
        assert_eq!(refusal(&unpaid, false), Some(StatusCode::PAYMENT_REQUIRED));
        let lapsed = user(Some(contract(true, date(2026, 11, 29), 0)), 0);
        assert_eq!(refusal(&lapsed, false), Some(StatusCode::FORBIDDEN));
        let last_day = user(Some(contract(true, today, 0)), 0);
        assert_eq!(refusal(&last_day, false), None);
        let used_up = user(Some(contract(true, date(2027, 1, 1), 3)), 4);
        assert_eq!(refusal(&used_up, true), Some(StatusCode::FORBIDDEN));
        // The access limit counts sessions: it is checked when one opens, not per request.
        assert_eq!(refusal(&used_up, false), None);
        // Checked before the access is counted: with two used, the third may open.
        let one_left = user(Some(contract(true, date(2027, 1, 1), 3)), 2);
        assert_eq!(refusal(&one_left, true), None);
        let at_limit = user(Some(contract(true, date(2027, 1, 1), 3)), 3);
        assert_eq!(refusal(&at_limit, true), Some(StatusCode::FORBIDDEN));
    }
}

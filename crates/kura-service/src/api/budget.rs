//! What signed-in users can cost the service in memory. Bodies are received into a spool (a
//! file past its first MiB) and objects are sealed and read a block or a window at a time, so
//! a request holds a bounded amount whatever its body's length; the budget still rations that,
//! so many requests at once cannot add up: a request waits for its share of a fixed budget
//! before its body is read or its object loaded, and one user may hold at most half the budget
//! and a fixed number of requests at once. A request that waits too long is answered 503 with
//! Retry-After, which clients honour.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::spool::{Receiver, SPILL, Spool, spool_dir};
use crate::storage::READ_WINDOW;
use axum::extract::{FromRequest, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::auth::Authed;
use super::{ApiError, ApiResult, AppState};

/// How long a request waits for memory or a slot before it is answered 503.
const WAIT: Duration = Duration::from_secs(30);

/// Memory is counted in KiB, so a permit count fits a `u32`.
const UNIT: u64 = 1024;

/// What is done with a body, which decides what of it is held at once.
#[derive(Debug, Clone, Copy)]
pub enum Cost {
    /// Spooled, then copied to its upload (an upload piece).
    Kept,
    /// Spooled, then sealed for each of two sites, some parts of each in flight (an object
    /// stored whole, a committed upload).
    Sealed,
    /// Read from a site and opened, a window at a time (an object read).
    Opened,
}

impl Cost {
    /// Bytes held at once for a body of `bytes`.
    fn held(self, bytes: u64) -> u64 {
        match self {
            Cost::Kept => bytes.min(SPILL as u64) * 2,
            Cost::Sealed => bytes.min(2 * kura_sites::PART as u64) * 3,
            Cost::Opened => bytes.min(READ_WINDOW) * 2,
        }
    }
}

/// The budget, and each user's part of it.
pub struct Budget {
    memory: Arc<Semaphore>,
    /// The whole budget, in units.
    total: u32,
    /// Half the budget: the most one user may hold.
    share: u32,
    requests_per_user: usize,
    users: Mutex<HashMap<i64, Arc<UserPart>>>,
}

struct UserPart {
    requests: Arc<Semaphore>,
    memory: Arc<Semaphore>,
}

/// Memory or a request slot held until dropped.
#[derive(Debug)]
pub struct Held {
    _permits: Vec<OwnedSemaphorePermit>,
}

fn busy(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the service is busy ({what}): try again shortly"),
    )
    .retry_after(Duration::from_secs(2))
}

async fn acquire(sem: &Arc<Semaphore>, n: u32, what: &str) -> ApiResult<OwnedSemaphorePermit> {
    match tokio::time::timeout(WAIT, sem.clone().acquire_many_owned(n)).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(_)) => Err(ApiError::internal("budget closed")),
        Err(_) => Err(busy(what)),
    }
}

impl Budget {
    /// A budget of `memory` bytes for bodies at once (at least 64 MiB), and
    /// `requests_per_user` requests of one user at once.
    pub fn new(memory: u64, requests_per_user: usize) -> Budget {
        let units = (memory.max(64 << 20) / UNIT).min(u32::MAX as u64) as u32;
        Budget {
            memory: Arc::new(Semaphore::new(units as usize)),
            total: units,
            share: units / 2,
            requests_per_user: requests_per_user.max(1),
            users: Mutex::new(HashMap::new()),
        }
    }

    fn part(&self, user: i64) -> Arc<UserPart> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .entry(user)
            .or_insert_with(|| {
                Arc::new(UserPart {
                    requests: Arc::new(Semaphore::new(self.requests_per_user)),
                    memory: Arc::new(Semaphore::new(self.share as usize)),
                })
            })
            .clone()
    }

    /// Waits for one of `user`'s request slots.
    pub async fn request(&self, user: i64) -> ApiResult<Held> {
        let part = self.part(user);
        let p = acquire(&part.requests, 1, "too many requests of this user at once").await?;
        Ok(Held { _permits: vec![p] })
    }

    /// Waits for the memory a body of `bytes` handled at `cost` takes. A request larger than a
    /// user's share, or than the whole budget, holds all of it: it runs alone.
    pub async fn memory(&self, user: i64, bytes: u64, cost: Cost) -> ApiResult<Held> {
        let units = (cost.held(bytes) / UNIT).max(1);
        let part = self.part(user);
        let mine = units.min(self.share as u64) as u32;
        let mine = acquire(&part.memory, mine, "this user's requests hold their memory").await?;
        let all = units.min(self.total as u64) as u32;
        let all = acquire(&self.memory, all, "memory for requests").await?;
        Ok(Held {
            _permits: vec![mine, all],
        })
    }
}

/// A request body received into a [`Spool`]: its first MiB in memory, the rest in a file, so
/// a body costs the service about the same memory whatever its length.
pub struct Received(pub Spool);

impl FromRequest<Arc<AppState>> for Received {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<AppState>) -> Result<Self, ApiError> {
        use axum::RequestExt;
        use http_body_util::BodyExt;
        let mut body = req.into_limited_body();
        let mut received = Receiver::new(spool_dir(&app.data_dir));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(unreadable)?;
            if let Ok(data) = frame.into_data() {
                received.push(&data).await.map_err(ApiError::from)?;
            }
        }
        Ok(Received(received.finish().await.map_err(ApiError::from)?))
    }
}

/// Why a body could not be read: too long, or cut off.
fn unreadable(e: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the body is too long");
        }
        source = s.source();
    }
    ApiError::bad_request(format!("the body could not be read: {e}"))
}

/// Holds one of the user's request slots for the whole request (after [`super::auth`]).
pub async fn hold_request(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(user) = req.extensions().get::<Authed>().map(|a| a.user.id) else {
        return ApiError::internal("no session before the budget").into_response();
    };
    match app.budget.request(user).await {
        Ok(_held) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Holds the memory of a request's body, by its declared length (a body without one counts
/// as the largest allowed), before the body is read.
pub async fn hold_body(
    State((app, cost)): State<(Arc<AppState>, Cost)>,
    req: Request,
    next: Next,
) -> Response {
    let Some(user) = req.extensions().get::<Authed>().map(|a| a.user.id) else {
        return ApiError::internal("no session before the budget").into_response();
    };
    if req.method() != Method::PUT && req.method() != Method::POST {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(kura_api::MAX_BODY as u64);
    match app.budget.memory(user, declared, cost).await {
        Ok(_held) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn memory_is_handed_out_up_to_the_budget_and_one_user_gets_half() {
        let b = Budget::new(64 << 20, 4);
        let first = b.memory(1, 10 << 20, Cost::Sealed).await.unwrap();
        // 30 MiB held of a 32 MiB share: a second large body of the same user waits, then
        // is told to come back.
        let e = b.memory(1, 10 << 20, Cost::Sealed).await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        // Another user still gets theirs.
        let other = b.memory(2, 10 << 20, Cost::Sealed).await.unwrap();
        drop(first);
        b.memory(1, 10 << 20, Cost::Sealed).await.unwrap();
        drop(other);
        // Larger than a share: held as the whole share.
        b.memory(3, 1 << 30, Cost::Sealed).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn one_user_has_a_few_requests_at_once() {
        let b = Budget::new(64 << 20, 2);
        let _a = b.request(1).await.unwrap();
        let _b = b.request(1).await.unwrap();
        assert!(b.request(1).await.is_err());
        assert!(b.request(2).await.is_ok());
    }
}

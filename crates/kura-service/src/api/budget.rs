//! What signed-in users can cost the service in memory. Bodies are received into a spool (a
//! file past its first MiB) and objects are sealed and read a block or a window at a time, so
//! a request holds a bounded amount of memory whatever its body's length; the budget still
//! rations that, and the disk the spooled bodies take (four times the memory), so many
//! requests at once cannot add up: a request waits for its share of a fixed budget
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
    /// stored whole).
    Sealed,
    /// Sealed for each of two sites from the file it was assembled in (a committed upload).
    Committed,
    /// Read from a site and opened, a window at a time (an object read).
    Opened,
}

impl Cost {
    /// Whether the body arrives with the request (and is spooled).
    fn received(self) -> bool {
        matches!(self, Cost::Kept | Cost::Sealed)
    }

    /// Bytes held at once for a body of `bytes`.
    fn held(self, bytes: u64) -> u64 {
        match self {
            Cost::Kept => bytes.min(SPILL as u64) * 2,
            Cost::Sealed | Cost::Committed => bytes.min(2 * kura_sites::PART as u64) * 3,
            Cost::Opened => bytes.min(READ_WINDOW) * 2,
        }
    }
}

/// One thing rationed, in units of [`UNIT`] bytes: all of it, and the most one user may
/// hold (half).
struct Pool {
    all: Arc<Semaphore>,
    total: u32,
    share: u32,
}

impl Pool {
    fn new(bytes: u64) -> Pool {
        let units = (bytes / UNIT).min(u32::MAX as u64) as u32;
        Pool {
            all: Arc::new(Semaphore::new(units as usize)),
            total: units,
            share: units / 2,
        }
    }

    /// Takes `bytes` of it for one request of a user whose share is `mine`; more than a
    /// share (or the whole) takes all of it: such a request runs alone.
    async fn take(
        &self,
        mine: &Arc<Semaphore>,
        bytes: u64,
        what: &str,
    ) -> ApiResult<[OwnedSemaphorePermit; 2]> {
        let units = (bytes / UNIT).max(1);
        let own = units.min(self.share as u64) as u32;
        let own = acquire(
            mine,
            own,
            &format!("this user's requests hold their {what}"),
        )
        .await?;
        let all = units.min(self.total as u64) as u32;
        let all = acquire(&self.all, all, &format!("{what} for requests")).await?;
        Ok([own, all])
    }
}

/// The budget, and each user's part of it.
pub struct Budget {
    memory: Pool,
    /// Room on disk for the parts of bodies beyond their first MiB ([`Spool`]).
    spool: Pool,
    requests_per_user: usize,
    users: Mutex<HashMap<i64, Arc<UserPart>>>,
}

struct UserPart {
    requests: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    spool: Arc<Semaphore>,
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
    /// A budget of `memory` bytes for bodies at once (at least 64 MiB) and four times as much
    /// disk for spooled bodies, and `requests_per_user` requests of one user at once.
    pub fn new(memory: u64, requests_per_user: usize) -> Budget {
        let memory = memory.max(64 << 20);
        Budget {
            memory: Pool::new(memory),
            spool: Pool::new(memory.saturating_mul(4)),
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
                    memory: Arc::new(Semaphore::new(self.memory.share as usize)),
                    spool: Arc::new(Semaphore::new(self.spool.share as usize)),
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

    /// Waits for what a body of `bytes` handled at `cost` takes: memory, and for a body that
    /// is received, disk for the part of it beyond the first MiB.
    pub async fn hold(&self, user: i64, bytes: u64, cost: Cost) -> ApiResult<Held> {
        let part = self.part(user);
        let mut permits = Vec::with_capacity(4);
        permits.extend(
            self.memory
                .take(&part.memory, cost.held(bytes), "memory")
                .await?,
        );
        if cost.received() {
            let beyond = bytes.saturating_sub(SPILL as u64);
            if beyond > 0 {
                permits.extend(self.spool.take(&part.spool, beyond, "disk").await?);
            }
        }
        Ok(Held { _permits: permits })
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
    match app.budget.hold(user, declared, cost).await {
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
        let first = b.hold(1, 10 << 20, Cost::Sealed).await.unwrap();
        // 30 MiB held of a 32 MiB share: a second large body of the same user waits, then
        // is told to come back.
        let e = b.hold(1, 10 << 20, Cost::Sealed).await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        // Another user still gets theirs.
        let other = b.hold(2, 10 << 20, Cost::Sealed).await.unwrap();
        drop(first);
        b.hold(1, 10 << 20, Cost::Sealed).await.unwrap();
        drop(other);
        // Larger than a share: held as the whole share.
        b.hold(3, 1 << 30, Cost::Sealed).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn spooled_bodies_are_rationed_on_disk_too() {
        let b = Budget::new(256 << 20, 32);
        // Pieces cost little memory (2 MiB each), but their spool files add up: a user's
        // share of the 1 GiB of disk is 512 MiB, eight 64 MiB pieces.
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(b.hold(1, 64 << 20, Cost::Kept).await.unwrap());
        }
        let e = b.hold(1, 64 << 20, Cost::Kept).await.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.body.error.contains("disk"), "{}", e.body.error);
        // Another user still gets theirs; reads and commits spool nothing.
        b.hold(2, 64 << 20, Cost::Kept).await.unwrap();
        b.hold(1, 64 << 20, Cost::Opened).await.unwrap();
        b.hold(1, 64 << 20, Cost::Committed).await.unwrap();
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

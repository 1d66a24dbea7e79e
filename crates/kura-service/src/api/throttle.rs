//! What logging in can cost the service: password checks at once (each Argon2id check takes
//! about 19 MiB and a core for a quarter of a second), and guesses per user name and per
//! source address (after a few failures, each more waits twice as long as the last).
//!
//! Checks run on a few threads of their own: the allocator keeps a freed Argon2id buffer in
//! the arena of the thread that used it, so checks spread over the blocking pool's hundreds of
//! threads would leave hundreds of such buffers behind.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Failures allowed before a user name has to wait.
const FREE_FAILURES: u32 = 5;
/// Failures allowed before an address has to wait: more, as many people may share one (NAT).
const FREE_FAILURES_PER_ADDRESS: u32 = 100;
/// The first wait; each further failure doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait.
const LONGEST_WAIT: Duration = Duration::from_secs(300);
/// Failures older than this are forgotten.
const MEMORY: Duration = Duration::from_secs(900);
/// Logins that may wait at once, per checking thread: beyond, they are answered 503 at once.
const WAITING_PER_CHECK: usize = 32;

/// The most user names and addresses remembered, so guessing with ever new names cannot
/// grow the table without bound.
const MAX_REMEMBERED: usize = 10_000;

/// Who failed: a user name, or the address a login came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    User(String),
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Who {
    fn free_failures(&self) -> u32 {
        match self {
            Who::User(_) => FREE_FAILURES,
            Who::Addr(_) => FREE_FAILURES_PER_ADDRESS,
        }
    }
}

impl Failures {
    /// When the next try is allowed, after `free` failures without waiting.
    fn free_at(&self, free: u32) -> Instant {
        self.last + backoff(self.count, free, FIRST_WAIT, LONGEST_WAIT)
    }
}

/// How long the next try waits after `failures` failures, when `free` of them cost no wait:
/// `first` at the first failure beyond them, twice as long at each further one, at most
/// `longest`. The service's logins and the key manager's escrow releases back off alike.
pub fn backoff(failures: u32, free: u32, first: Duration, longest: Duration) -> Duration {
    if failures < free {
        return Duration::ZERO;
    }
    let doublings = (failures - free).min(16);
    first.saturating_mul(2u32.pow(doublings)).min(longest)
}

/// The gate every password login passes.
pub struct LoginGate {
    /// Jobs for the checking threads.
    checks: Mutex<mpsc::Sender<Job>>,
    /// Checks queued or running, and how many may be.
    pending: Arc<AtomicUsize>,
    max_pending: usize,
    failures: Mutex<HashMap<Who, Failures>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Why a login is not tried now.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many recent failures for this user name or address: try again after this long.
    Backoff(Duration),
    /// As many password checks as may wait are waiting.
    Busy,
}

impl LoginGate {
    /// A gate running password checks on `threads` threads of its own (they end when the
    /// gate is dropped).
    pub fn new(threads: usize) -> LoginGate {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("kura-password-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password-checking thread: {e}");
            }
        }
        LoginGate {
            checks: Mutex::new(tx),
            pending: Arc::new(AtomicUsize::new(0)),
            max_pending: threads * (WAITING_PER_CHECK + 1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, addr: Option<IpAddr>) -> impl Iterator<Item = Who> {
        std::iter::once(Who::User(user.to_string())).chain(addr.map(Who::Addr))
    }

    /// Whether a login by `user` from `addr` may be tried at `now`.
    pub fn admit(&self, user: &str, addr: Option<IpAddr>, now: Instant) -> Result<(), Refusal> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let wait = Self::keys(user, addr)
            .filter_map(|k| failures.get(&k).map(|f| f.free_at(k.free_failures())))
            .map(|at| at.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        match wait.is_zero() {
            true => Ok(()),
            false => Err(Refusal::Backoff(wait)),
        }
    }

    /// Runs `check` (a password check) on a checking thread and returns what it returns; a
    /// burst of honest logins waits its turn, a flood beyond the queue is refused at once.
    pub async fn check<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Busy);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let pending = self.pending.clone();
        let job: Job = Box::new(move || {
            let result = check();
            // Counted down before the answer goes out, so whoever gets it sees the count
            // without this check.
            pending.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(result);
        });
        let sent = self
            .checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Busy);
        }
        rx.await.map_err(|_| Refusal::Busy)
    }

    /// A login by `user` from `addr` failed at `now`.
    pub fn failed(&self, user: &str, addr: Option<IpAddr>, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_REMEMBERED {
            failures.retain(|_, f| now.saturating_duration_since(f.last) < MEMORY);
        }
        if failures.len() >= MAX_REMEMBERED
            && let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
        {
            failures.remove(&oldest);
        }
        for k in Self::keys(user, addr) {
            let f = failures.entry(k).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.saturating_duration_since(f.last) >= MEMORY {
                f.count = 0;
            }
            f.count += 1;
            f.last = now;
        }
    }

    /// A login by `user` from `addr` succeeded: both start afresh.
    pub fn succeeded(&self, user: &str, addr: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in Self::keys(user, addr) {
            failures.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn failures_beyond_the_free_ones_wait_twice_as_long_each_time() {
        let gate = LoginGate::new(2);
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(gate.admit("u", A, t0).is_ok());
            gate.failed("u", A, t0);
        }
        assert_eq!(
            gate.admit("u", A, t0).err(),
            Some(Refusal::Backoff(FIRST_WAIT))
        );
        assert!(gate.admit("u", A, t0 + FIRST_WAIT).is_ok());
        gate.failed("u", A, t0 + FIRST_WAIT);
        assert_eq!(
            gate.admit("u", A, t0 + FIRST_WAIT).err(),
            Some(Refusal::Backoff(FIRST_WAIT * 2))
        );
        // Another user from the same address does not wait yet; the right password clears.
        assert!(gate.admit("v", A, t0 + FIRST_WAIT).is_ok());
        gate.succeeded("u", A);
        assert!(gate.admit("u", A, t0 + FIRST_WAIT).is_ok());
    }

    #[test]
    fn an_address_guessing_many_names_waits_too() {
        let gate = LoginGate::new(2);
        let t0 = Instant::now();
        for i in 0..FREE_FAILURES_PER_ADDRESS {
            gate.failed(&format!("name{i}"), A, t0);
        }
        assert_eq!(
            gate.admit("fresh", A, t0).err(),
            Some(Refusal::Backoff(FIRST_WAIT))
        );
        assert!(
            gate.admit("fresh", None, t0).is_ok(),
            "other addresses are not held up"
        );
    }

    #[tokio::test]
    async fn checks_run_on_the_gates_threads_and_the_queue_is_bounded() {
        let gate = Arc::new(LoginGate::new(1));
        let name = gate
            .check(|| std::thread::current().name().map(String::from))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("kura-password-0"));
        // Hold the one thread, fill the queue: the next check is refused at once.
        let (release, held) = mpsc::channel::<()>();
        let busy = {
            let g = gate.clone();
            tokio::spawn(async move { g.check(move || held.recv().is_ok()).await })
        };
        while gate.pending.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        let queued: Vec<_> = (0..WAITING_PER_CHECK)
            .map(|_| {
                let g = gate.clone();
                tokio::spawn(async move { g.check(|| true).await })
            })
            .collect();
        while gate.pending.load(Ordering::Acquire) < gate.max_pending {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.check(|| true).await.err(), Some(Refusal::Busy));
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(true));
        for q in queued {
            assert_eq!(
                q.await.unwrap(),
                Ok(true),
                "the queued ones are served in turn"
            );
        }
    }

    #[test]
    fn the_table_of_failures_stays_bounded() {
        let gate = LoginGate::new(1);
        let now = Instant::now();
        for i in 0..(MAX_REMEMBERED + 50) {
            gate.failed(&format!("user{i}"), None, now);
        }
        assert!(gate.failures.lock().unwrap().len() <= MAX_REMEMBERED);
    }
}

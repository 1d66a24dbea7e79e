//! The service's background work in one place: each task runs every period by one helper,
//! [`every`], and its runs are counted (shown at `/metrics` as `kura_task_runs_total`), so
//! an operator, or a test, sees that a task ran without reading its log.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::storage::{Scope, Storage, StorageError};
use crate::upload::{self, Uploads};

/// How many times each background task has finished a run.
#[derive(Debug, Default)]
pub struct TaskRuns(Mutex<BTreeMap<&'static str, u64>>);

impl TaskRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finished runs of `task`.
    pub fn count(&self, task: &str) -> u64 {
        self.lock().get(task).copied().unwrap_or(0)
    }

    /// The counts in Prometheus text format.
    pub fn prometheus(&self) -> String {
        let mut text = "# HELP kura_task_runs_total Finished runs of each background task.\n\
                        # TYPE kura_task_runs_total counter\n"
            .to_string();
        for (task, n) in self.lock().iter() {
            text.push_str(&format!("kura_task_runs_total{{task=\"{task}\"}} {n}\n"));
        }
        text
    }
}

/// Runs `run` every `period`, the first time after `first`, for as long as the runtime
/// lives; a run that overruns delays the next rather than piling up. Each finished run is
/// counted under `name`.
pub fn every<F, Fut>(
    runs: &Arc<TaskRuns>,
    name: &'static str,
    first: Duration,
    period: Duration,
    mut run: F,
) where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    runs.lock().entry(name).or_insert(0);
    let runs = runs.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            run().await;
            *runs.lock().entry(name).or_insert(0) += 1;
        }
    });
}

/// How often unfinished uploads untouched for [`upload::STALE_AFTER`] are removed.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Removes every user's stale unfinished uploads (abandoned ones would otherwise stay).
pub fn sweep_stale_uploads(users: &std::path::Path) {
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

/// What the background tasks need.
pub struct Background {
    /// The copies on the sites.
    pub storage: Arc<Storage>,
    /// The service's data directory.
    pub data_dir: PathBuf,
    /// The mail relay, if notices are mailed.
    pub mail: Option<crate::notice::MailConfig>,
    /// Time between placement runs.
    pub placement_every: Duration,
    /// Time between integrity checks (also before the first).
    pub verify_every: Duration,
    /// Percent of objects each check reads.
    pub verify_sample: f64,
    /// The price table, if the service bills.
    pub billing: Option<kura_billing::Prices>,
    /// Time between billing cycles.
    pub billing_every: Duration,
}

/// Starts every background task: the upload sweep, mail delivery, placement runs, integrity
/// checks and the billing cycle.
pub fn start(b: Background, runs: &Arc<TaskRuns>) {
    let users = crate::users_dir(&b.data_dir);
    every(runs, "sweep", Duration::ZERO, SWEEP_EVERY, move || {
        let dir = users.clone();
        async move {
            let _ = tokio::task::spawn_blocking(move || sweep_stale_uploads(&dir)).await;
        }
    });
    if let Some(mail) = b.mail {
        let period = Duration::from_secs(mail.every_secs.unwrap_or(60).max(1));
        let data_dir = b.data_dir.clone();
        every(runs, "mail", Duration::ZERO, period, move || {
            let (mail, dir) = (mail.clone(), data_dir.clone());
            async move {
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
    let storage = b.storage.clone();
    every(
        runs,
        "placement",
        Duration::ZERO,
        b.placement_every,
        move || {
            let storage = storage.clone();
            async move {
                match storage.place_all().await {
                    Ok(r) if r.copied + r.deleted + r.pending + r.unreadable > 0 => {
                        tracing::info!(?r, "placements brought up to date")
                    }
                    Ok(_) | Err(StorageError::Busy) => {}
                    Err(e) => tracing::error!("placement run: {e}"),
                }
            }
        },
    );
    let storage = b.storage.clone();
    let scope = Scope {
        user: None,
        sample: Some(b.verify_sample),
    };
    every(runs, "verify", b.verify_every, b.verify_every, move || {
        let (storage, scope) = (storage.clone(), scope.clone());
        async move {
            match storage.verify(&scope, &|_, _| {}).await {
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
    if let Some(prices) = b.billing {
        let storage = b.storage;
        every(
            runs,
            "billing",
            Duration::ZERO,
            b.billing_every,
            move || {
                let (storage, prices) = (storage.clone(), prices.clone());
                async move {
                    if let Err(e) = crate::settlement::sample_usage(&storage).await {
                        tracing::error!("usage sample: {e}");
                    }
                    let today = crate::settlement::today();
                    match crate::settlement::settle(&storage, &prices, today, &|_, _| {}).await {
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
            },
        );
    }
}

//! The vault (docs/requirements/value-vault.md requirements 2 and 3): its own process, its own
//! SQLite file and its own TLS listener. It keeps registered values it cannot open (they are
//! sealed on the device), answers each deposit with a certificate signed by its own key, and
//! gives a value back once, to the wallet that deposited it.

pub mod api;
pub mod client;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kura_service::serve::{Listen, blocking, serve_router};
use kura_service::tls::Identity;

/// How the vault runs.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    /// Where its database, signing key and TLS identity live.
    pub data_dir: PathBuf,
    /// The listener.
    pub listen: Listen,
    /// The counter wraps after this.
    pub max_counter: u64,
    /// What one wallet may keep.
    pub quota: store::Quota,
    /// The signing key of the key manager trusted to withdraw for owners whose devices are
    /// lost; `None` trusts none.
    pub keyman_key: Option<[u8; 32]>,
    /// How long retired values and replacements are kept (for answers lost on the way)
    /// before they are forgotten.
    pub keep_retired: Duration,
    /// Where to stop dead, for tests of crash safety.
    pub crash_at: Option<store::CrashAt>,
}

/// How often the vault forgets what it need not keep.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Runs the vault until SIGTERM or Ctrl-C; `ready` hears its address, TLS identity and signing
/// key once it accepts connections.
pub async fn serve(
    opts: VaultOptions,
    ready: impl FnOnce(SocketAddr, &Identity, &[u8; 32]),
) -> std::io::Result<()> {
    let store = store::Store::open(&opts.data_dir, opts.max_counter, opts.quota)
        .map_err(std::io::Error::other)?
        .trust_keyman(opts.keyman_key)
        .crash_at(opts.crash_at);
    let key = store.public_key();
    let vault = Arc::new(api::Vault::new(store, opts.quota.bytes));
    tokio::spawn(purge(vault.clone(), opts.keep_retired));
    let app = api::app(vault);
    serve_router(app, opts.listen, "kura vault", |addr, id| {
        ready(addr, id, &key)
    })
    .await
}

/// Forgets retired values and replacements older than `keep`, now and every hour.
async fn purge(vault: Arc<api::Vault>, keep: Duration) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        every.tick().await;
        let v = vault.clone();
        match blocking(move || v.store.purge(keep)).await {
            Ok((0, 0)) => {}
            Ok((records, replacements)) => tracing::info!(
                "forgot {records} retired values and {replacements} replacements older than {} days",
                keep.as_secs() / 86_400
            ),
            Err(e) => tracing::warn!("purging retired values: {e}"),
        }
    }
}

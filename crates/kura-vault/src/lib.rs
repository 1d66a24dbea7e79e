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

use kura_service::serve::{Listen, serve_router};
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
    /// Where to stop dead, for tests of crash safety.
    pub crash_at: Option<store::CrashAt>,
}

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
    let app = api::app(Arc::new(api::Vault::new(store, opts.quota.bytes)));
    serve_router(app, opts.listen, "kura vault", |addr, id| {
        ready(addr, id, &key)
    })
    .await
}

//! The key manager (docs/requirements/value-vault.md requirements 5 to 7): its own process,
//! SQLite file, signing key and TLS listener, apart from the vault. It keeps one share of each
//! wallet's value key with the owner's authentication (password or identity-card data as
//! Argon2id hashes, a biometric template matched within a tolerance, or a combination), and
//! releases the share, or restores a deposited value, only on a match. The vault keeps the
//! other share inside each registered value, so neither service alone can rebuild the key.

pub mod api;
pub mod client;
pub mod rekey;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use kura_service::serve::{Listen, serve_router};
use kura_service::tls::Identity;

/// How the key manager runs.
#[derive(Debug, Clone)]
pub struct KeymanOptions {
    /// Where its database, signing key and TLS identity live.
    pub data_dir: PathBuf,
    /// The listener.
    pub listen: Listen,
    /// Credential checks (Argon2id) at once.
    pub checks: usize,
    /// Escrows it keeps at most.
    pub max_escrows: u64,
    /// Escrows one address may enrol.
    pub max_escrows_per_address: u64,
    /// The vault emergency restores withdraw from: its address and TLS fingerprint.
    pub vault: Option<(String, String)>,
}

/// Runs the key manager until SIGTERM or Ctrl-C; `ready` hears its address, TLS identity and
/// signing key (the vault trusts it) once it accepts connections.
pub async fn serve(
    opts: KeymanOptions,
    ready: impl FnOnce(SocketAddr, &Identity, &[u8; 32]),
) -> std::io::Result<()> {
    let store =
        store::Store::open(&opts.data_dir, opts.max_escrows).map_err(std::io::Error::other)?;
    let key = store.key().public();
    let app = api::app(Arc::new(api::Keyman::new(
        store,
        opts.checks,
        opts.vault,
        opts.max_escrows_per_address,
    )));
    serve_router(app, opts.listen, "kura keyman", |addr, id| {
        ready(addr, id, &key)
    })
    .await
}

//! `kura keyman serve`: the key manager, a service of its own apart from the vault (its own
//! process, SQLite file, signing key and TLS listener), in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use kura_keyman::KeymanOptions;
use serde::Deserialize;

use super::vault::{announce, listen, load};

/// Key manager commands.
#[derive(Subcommand)]
pub enum KeymanCommand {
    /// Run the key manager until SIGTERM or Ctrl-C. Prints its address, its TLS certificate's
    /// fingerprint (wallets pin it) and its signing key (give it to `kura vault serve
    /// --keyman-key` so the vault lets it restore values for owners whose devices are lost).
    Serve(KeymanServeArgs),
}

/// Options of `kura keyman serve`; each overrides the config file's.
#[derive(Args)]
pub struct KeymanServeArgs {
    /// Config file (TOML: listen, data_dir, tls_cert, tls_key, header_timeout_secs,
    /// max_connections, password_checks, max_escrows, vault, vault_fingerprint).
    #[arg(long = "keyman-config", env = "KURA_KEYMAN_CONFIG")]
    keyman_config: Option<PathBuf>,
    /// Address and port (default 127.0.0.1:8445; port 0 picks a free one).
    #[arg(long, env = "KURA_KEYMAN_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where its database, signing key and TLS identity live (default
    /// ~/.local/share/kura/keyman).
    #[arg(long, env = "KURA_KEYMAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The vault emergency restores withdraw from, https://HOST:PORT.
    #[arg(long, env = "KURA_KEYMAN_VAULT", requires = "vault_fingerprint")]
    vault: Option<String>,
    /// The vault's TLS certificate fingerprint (SHA-256).
    #[arg(long, env = "KURA_KEYMAN_VAULT_FINGERPRINT")]
    vault_fingerprint: Option<String>,
    /// Credential checks (Argon2id, about 19 MiB and a quarter of a second of a core each)
    /// at once (default 2).
    #[arg(long, env = "KURA_KEYMAN_PASSWORD_CHECKS")]
    password_checks: Option<usize>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeymanConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    header_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    password_checks: Option<usize>,
    max_escrows: Option<u64>,
    vault: Option<String>,
    vault_fingerprint: Option<String>,
}

/// `kura keyman ...`.
pub fn keyman(c: KeymanCommand) -> Result<()> {
    let KeymanCommand::Serve(a) = c;
    let config: KeymanConfig = load(a.keyman_config.as_deref(), "key manager")?;
    let data_dir = match a.data_dir.or(config.data_dir) {
        Some(d) => d,
        None => kura_client::state::user_dir("XDG_DATA_HOME", ".local/share")?.join("keyman"),
    };
    let vault = match (
        a.vault.or(config.vault),
        a.vault_fingerprint.or(config.vault_fingerprint),
    ) {
        (Some(url), Some(fp)) => Some((url, fp)),
        (None, _) => None,
        (Some(_), None) => anyhow::bail!("a vault needs its fingerprint (--vault-fingerprint)"),
    };
    let opts = KeymanOptions {
        listen: listen(
            &data_dir,
            a.listen.or(config.listen),
            (config.tls_cert, config.tls_key),
            config.header_timeout_secs,
            config.max_connections,
            8445,
        )?,
        data_dir,
        checks: a.password_checks.or(config.password_checks).unwrap_or(2),
        max_escrows: config.max_escrows.unwrap_or(1_000_000),
        vault,
    };
    crate::output::init_logs("info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kura_keyman::serve(opts, |addr, id, key| {
        announce(addr, &id.fingerprint, "keyman key", key)
    }))?;
    Ok(())
}

//! `kura keyman serve`: the key manager, a service of its own apart from the vault (its own
//! process, SQLite file, signing key and TLS listener), in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use kura_keyman::KeymanOptions;
use kura_keyman::store::Store;
use serde::Deserialize;
use serde_json::json;

use super::vault::{announce, listen, load};
use crate::ctx::Ctx;
use crate::output::table;

/// Key manager commands.
#[derive(Subcommand)]
pub enum KeymanCommand {
    /// Run the key manager until SIGTERM or Ctrl-C. Prints its address, its TLS certificate's
    /// fingerprint (wallets pin it) and its signing key (give it to `kura vault serve
    /// --keyman-key` so the vault lets it restore values for owners whose devices are lost).
    Serve(KeymanServeArgs),
    /// Show the log of escrow attempts (enrol, release, restore, rekey; ok, refused or
    /// backoff; from which address), oldest first. It never holds the credentials.
    Attempts {
        /// The key manager's data directory (default ~/.local/share/kura/keyman).
        #[arg(long, env = "KURA_KEYMAN_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Only the last N.
        #[arg(long)]
        last: Option<usize>,
    },
}

/// Options of `kura keyman serve`; each overrides the config file's.
#[derive(Args)]
pub struct KeymanServeArgs {
    /// Config file (TOML: listen, data_dir, tls_cert, tls_key, header_timeout_secs,
    /// max_connections, password_checks, max_escrows, max_escrows_per_address, vault,
    /// vault_fingerprint).
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
    max_escrows_per_address: Option<u64>,
    vault: Option<String>,
    vault_fingerprint: Option<String>,
}

fn default_data_dir() -> Result<PathBuf> {
    Ok(kura_client::state::user_dir("XDG_DATA_HOME", ".local/share")?.join("keyman"))
}

/// `kura keyman ...`.
pub fn keyman(ctx: &Ctx, c: KeymanCommand) -> Result<()> {
    match c {
        KeymanCommand::Serve(a) => serve(a),
        KeymanCommand::Attempts { data_dir, last } => {
            let dir = match data_dir {
                Some(d) => d,
                None => default_data_dir()?,
            };
            if !dir.join("keyman.sqlite").exists() {
                bail!("no key manager data in {}", dir.display());
            }
            let store = Store::open(&dir, u64::MAX)?;
            let all = store.attempts()?;
            let shown = &all[all.len().saturating_sub(last.unwrap_or(all.len()))..];
            let rows: Vec<_> = shown
                .iter()
                .map(|a| json!({ "at": a.at, "wallet": a.wallet, "what": a.what, "address": a.address, "outcome": a.outcome }))
                .collect();
            ctx.out.emit(&rows, || {
                table(
                    format!(
                        "{:<30}  {:<16}  {:<8}  {:<16}  outcome",
                        "at", "wallet", "what", "address"
                    ),
                    shown.iter().map(|a| {
                        format!(
                            "{:<30}  {:<16}  {:<8}  {:<16}  {}",
                            a.at,
                            &a.wallet[..a.wallet.len().min(16)],
                            a.what,
                            a.address,
                            a.outcome
                        )
                    }),
                )
            });
            Ok(())
        }
    }
}

fn serve(a: KeymanServeArgs) -> Result<()> {
    let config: KeymanConfig = load(a.keyman_config.as_deref(), "key manager")?;
    let data_dir = match a.data_dir.or(config.data_dir) {
        Some(d) => d,
        None => default_data_dir()?,
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
        max_escrows_per_address: config.max_escrows_per_address.unwrap_or(1000),
        vault,
    };
    crate::output::init_logs("info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kura_keyman::serve(opts, |addr, id, key| {
        announce(addr, &id.fingerprint, "keyman key", key)
    }))?;
    Ok(())
}

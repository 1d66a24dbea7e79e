//! `kura vault serve`: the vault that keeps deposited electronic value, a service of its own
//! (its own process, SQLite file, signing key and TLS listener), in the foreground.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kura_service::serve::Listen;
use kura_vault::VaultOptions;
use kura_vault::store::Quota;
use serde::Deserialize;

/// Vault commands.
#[derive(Subcommand)]
pub enum VaultCommand {
    /// Run the vault until SIGTERM or Ctrl-C. Prints its address, its TLS certificate's
    /// fingerprint (clients pin it) and its signing key (wallets check certificates with it).
    Serve(VaultServeArgs),
}

/// Options of `kura vault serve`; each overrides the config file's.
#[derive(Args)]
pub struct VaultServeArgs {
    /// Config file (TOML: listen, data_dir, tls_cert, tls_key, header_timeout_secs,
    /// max_connections, max_counter, max_values_per_wallet, max_bytes_per_wallet).
    #[arg(long = "vault-config", env = "KURA_VAULT_CONFIG")]
    config: Option<PathBuf>,
    /// Address and port (default 127.0.0.1:8444; port 0 picks a free one).
    #[arg(long, env = "KURA_VAULT_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where its database, signing key and TLS identity live (default
    /// ~/.local/share/kura/vault).
    #[arg(long, env = "KURA_VAULT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Values one wallet may keep at once (default 1000).
    #[arg(long, env = "KURA_VAULT_MAX_VALUES")]
    max_values_per_wallet: Option<u64>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    header_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_counter: Option<u64>,
    max_values_per_wallet: Option<u64>,
    max_bytes_per_wallet: Option<u64>,
}

fn load(path: Option<&Path>) -> Result<VaultConfig> {
    let Some(path) = path else {
        return Ok(VaultConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a vault config", path.display()))
}

/// `kura vault ...`.
pub fn vault(c: VaultCommand) -> Result<()> {
    let VaultCommand::Serve(a) = c;
    let config = load(a.config.as_deref())?;
    let data_dir = match a.data_dir.or(config.data_dir) {
        Some(d) => d,
        None => kura_client::state::user_dir("XDG_DATA_HOME", ".local/share")?.join("vault"),
    };
    let tls = match (config.tls_cert, config.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("the vault config needs both tls_cert and tls_key, or neither"),
    };
    let opts = VaultOptions {
        listen: Listen {
            tls_dir: data_dir.join("tls"),
            addr: a
                .listen
                .or(config.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8444))),
            tls,
            header_timeout: Duration::from_secs(config.header_timeout_secs.unwrap_or(30)),
            max_connections: config.max_connections.unwrap_or(256),
        },
        data_dir,
        max_counter: config.max_counter.unwrap_or(u64::from(u32::MAX)),
        quota: Quota {
            values: a
                .max_values_per_wallet
                .or(config.max_values_per_wallet)
                .unwrap_or(1000),
            bytes: config.max_bytes_per_wallet.unwrap_or(64 << 20),
        },
    };
    crate::output::init_logs("info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kura_vault::serve(opts, |addr, id, key| {
        // Scripts read these lines; a closed stdout must not stop the vault.
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on https://{addr}");
        let _ = writeln!(out, "certificate fingerprint (SHA-256): {}", id.fingerprint);
        let _ = writeln!(out, "vault key: {}", kura_core::id::hex(key));
        let _ = out.flush();
    }))?;
    Ok(())
}

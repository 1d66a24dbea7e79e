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
    /// max_connections, max_counter, max_values_per_wallet, max_bytes_per_wallet,
    /// keep_retired_days, keyman_key).
    #[arg(long = "vault-config", env = "KURA_VAULT_CONFIG")]
    vault_config: Option<PathBuf>,
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
    /// Days a withdrawn value is kept (so a wallet whose answer was lost can ask again) and
    /// a re-keying's answer is kept, before both are forgotten (default 90).
    #[arg(long, env = "KURA_VAULT_KEEP_RETIRED_DAYS")]
    keep_retired_days: Option<u64>,
    /// The signing key (hex) of the key manager trusted to withdraw values for owners whose
    /// devices are lost, as `kura keyman serve` printed it (default: none is trusted).
    #[arg(long, env = "KURA_VAULT_KEYMAN_KEY")]
    keyman_key: Option<String>,
    /// Stop dead at this point (replace-item:N or replace-commit): for tests that a
    /// replacement is all or nothing.
    #[arg(long, hide = true)]
    crash_at: Option<kura_vault::store::CrashAt>,
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
    keep_retired_days: Option<u64>,
    keyman_key: Option<String>,
}

/// Reads a value service's config file (`what` names it in errors); none gives the defaults.
pub(crate) fn load<T: Default + serde::de::DeserializeOwned>(
    path: Option<&Path>,
    what: &str,
) -> Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a {what} config", path.display()))
}

/// Where a value service listens: the flag's address or the config's, else loopback on
/// `port`; TLS from the config's certificate and key, or self-signed in `data_dir/tls`.
pub(crate) fn listen(
    data_dir: &Path,
    addr: Option<SocketAddr>,
    tls: (Option<PathBuf>, Option<PathBuf>),
    header_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    port: u16,
) -> Result<Listen> {
    let tls = match tls {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => anyhow::bail!("the config needs both tls_cert and tls_key, or neither"),
    };
    Ok(Listen {
        tls_dir: data_dir.join("tls"),
        addr: addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port))),
        tls,
        header_timeout: Duration::from_secs(header_timeout_secs.unwrap_or(30)),
        max_connections: max_connections.unwrap_or(256),
    })
}

/// Prints what scripts read when a value service starts: its address, TLS fingerprint and
/// signing key. A closed stdout must not stop the service.
pub(crate) fn announce(addr: SocketAddr, fingerprint: &str, key_name: &str, key: &[u8; 32]) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "listening on https://{addr}");
    let _ = writeln!(out, "certificate fingerprint (SHA-256): {fingerprint}");
    let _ = writeln!(out, "{key_name}: {}", kura_core::id::hex(key));
    let _ = out.flush();
}

/// `kura vault ...`.
pub fn vault(c: VaultCommand) -> Result<()> {
    let VaultCommand::Serve(a) = c;
    let config: VaultConfig = load(a.vault_config.as_deref(), "vault")?;
    let data_dir = match a.data_dir.or(config.data_dir) {
        Some(d) => d,
        None => kura_client::state::user_dir("XDG_DATA_HOME", ".local/share")?.join("vault"),
    };
    let keyman_key = a
        .keyman_key
        .or(config.keyman_key)
        .map(|k| {
            kura_core::id::unhex_array::<32>(&k)
                .context("the key manager's key is the 64 hex digits `kura keyman serve` printed")
        })
        .transpose()?;
    let opts = VaultOptions {
        listen: listen(
            &data_dir,
            a.listen.or(config.listen),
            (config.tls_cert, config.tls_key),
            config.header_timeout_secs,
            config.max_connections,
            8444,
        )?,
        data_dir,
        max_counter: config.max_counter.unwrap_or(u64::from(u32::MAX)),
        quota: Quota {
            values: a
                .max_values_per_wallet
                .or(config.max_values_per_wallet)
                .unwrap_or(1000),
            bytes: config.max_bytes_per_wallet.unwrap_or(64 << 20),
        },
        keyman_key,
        keep_retired: Duration::from_secs(
            (a.keep_retired_days.or(config.keep_retired_days))
                .unwrap_or(90)
                .saturating_mul(86_400),
        ),
        crash_at: a.crash_at,
    };
    crate::output::init_logs("info");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kura_vault::serve(opts, |addr, id, key| {
        announce(addr, &id.fingerprint, "vault key", key)
    }))?;
    Ok(())
}

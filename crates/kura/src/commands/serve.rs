//! `kura serve`: the provider's backup service in the foreground.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use kura_service::config::{Overrides, ServerConfig, percent};

/// Options of `kura serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Service config file (TOML: listen, data_dir, tls_cert, tls_key, session_minutes,
    /// header_timeout_secs, max_connections, password_checks, max_objects_per_user,
    /// metrics_token_file, request_memory_mib, requests_per_user, placement_every_secs, verify_every_secs, verify_sample_percent,
    /// fraud_threshold, billing_every_secs, [mail], [billing], [[sites]], [[levels]]).
    #[arg(long = "server-config", env = "KURA_SERVER_CONFIG")]
    pub server_config: Option<PathBuf>,
    /// Address and port to listen on (default 127.0.0.1:8443; port 0 picks a free one).
    #[arg(long, env = "KURA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where the database, TLS identity and stored data live (default ~/.local/share/kura/service).
    #[arg(long, env = "KURA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Seconds a client may take to send a request's headers before it is disconnected
    /// (default 30).
    #[arg(long, env = "KURA_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// A file holding the token `/metrics` then asks for (`Authorization: Bearer TOKEN`);
    /// without one `/metrics` answers anyone who can reach the service.
    #[arg(long, env = "KURA_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<PathBuf>,
    /// Seconds between placement runs, which complete degraded objects once their sites
    /// return and move data whose placement changed (default 600).
    #[arg(long, env = "KURA_PLACEMENT_EVERY_SECS", alias = "replace-every-secs")]
    placement_every_secs: Option<u64>,
    /// Seconds between integrity checks of the stored copies (default 86400; the first runs
    /// this long after the start).
    #[arg(long, env = "KURA_VERIFY_EVERY_SECS")]
    verify_every_secs: Option<u64>,
    /// Percent of the objects each periodic check reads, least recently checked first
    /// (default 100).
    #[arg(long, env = "KURA_VERIFY_SAMPLE", value_parser = percent)]
    verify_sample: Option<f64>,
}

/// The service's data directory: the flag, else the config file's, else
/// `$XDG_DATA_HOME/kura/service` (or `~/.local/share/kura/service`).
pub fn data_dir(config: &ServerConfig, flag: Option<PathBuf>) -> Result<PathBuf> {
    match config.data_dir(flag) {
        Some(d) => Ok(d),
        None => Ok(kura_client::state::user_dir("XDG_DATA_HOME", ".local/share")?.join("service")),
    }
}

/// Runs the service in the foreground until SIGTERM or Ctrl-C.
pub fn serve(a: ServeArgs) -> Result<()> {
    let config = ServerConfig::load(a.server_config.as_deref())?;
    let opts = config
        .serve_options(
            data_dir(&config, a.data_dir)?,
            Overrides {
                listen: a.listen,
                header_timeout_secs: a.header_timeout_secs,
                metrics_token_file: a.metrics_token_file,
                placement_every_secs: a.placement_every_secs,
                verify_every_secs: a.verify_every_secs,
                verify_sample: a.verify_sample,
            },
        )
        .map_err(|e| anyhow!(e))?;
    crate::output::init_logs("info");
    few_arenas();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kura_service::serve::serve(opts, |addr, id| {
        // Scripts read these two lines; the fingerprint is also in DATA/tls/fingerprint. A closed
        // stdout must not stop the service.
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "listening on https://{addr}");
        let _ = writeln!(out, "certificate fingerprint (SHA-256): {}", id.fingerprint);
        let _ = out.flush();
    }))?;
    Ok(())
}

/// Keeps glibc to two malloc arenas. Requests run on many threads, each of which would get an
/// arena of its own that keeps what its large bodies freed: with 16 clients backing up and
/// restoring at once the service peaked at 565-653 MiB, with two arenas at 401-427 MiB and no
/// slower (`bench/service.sh`, 2 cores). `MALLOC_ARENA_MAX` set by the operator wins.
fn few_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called before the runtime
        // starts its threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

//! The service's config file (`--server-config`, TOML): where it listens and keeps its data,
//! its TLS identity, how often each background task runs, the mail relay, the price table,
//! and the storage sites and membership levels. Flags and environment variables given to
//! `kura serve` win over the file; the file wins over the defaults here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kura_sites::SiteConfig;
use serde::Deserialize;

use crate::serve::ServeOptions;
use crate::sites::{LevelEntry, PlacementConfig};

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default 127.0.0.1:8443).
    pub listen: Option<SocketAddr>,
    /// Where the database and data live.
    pub data_dir: Option<PathBuf>,
    /// A certificate (PEM) instead of the self-signed one; with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Minutes a session lasts (default 60).
    pub session_minutes: Option<i64>,
    /// Seconds a client may take to send its request headers, and a new connection to send
    /// its first byte (default 30).
    pub header_timeout_secs: Option<u64>,
    /// Connections open at once; more are closed at once (default 512).
    pub max_connections: Option<usize>,
    /// Password checks (Argon2id, ~19 MiB each) at once; more logins are answered 503 with
    /// Retry-After (default: the number of cores).
    pub password_checks: Option<usize>,
    /// Objects one user may store, of any size; 0 for no limit (default 1,000,000).
    pub max_objects_per_user: Option<u64>,
    /// A file holding the token `/metrics` asks for; without one it answers anyone.
    pub metrics_token_file: Option<PathBuf>,
    /// MiB of request and response bodies held at once, all users together; a request waits
    /// for its share (default 256, at least 64).
    pub request_memory_mib: Option<u64>,
    /// Requests of one user at once; more wait their turn (default 32).
    pub requests_per_user: Option<usize>,
    /// Seconds between placement runs (default 600).
    #[serde(alias = "replace_every_secs")]
    pub placement_every_secs: Option<u64>,
    /// Seconds between integrity checks (default a day).
    pub verify_every_secs: Option<u64>,
    /// Percent of objects each periodic check reads (default 100).
    pub verify_sample_percent: Option<f64>,
    /// Authentication failures after which a site's users are told (default 1).
    pub fraud_threshold: Option<u64>,
    /// Seconds between billing cycles (default an hour).
    pub billing_every_secs: Option<u64>,
    /// The price table; none runs no billing.
    pub billing: Option<kura_billing::Prices>,
    /// The mail relay; none keeps notices in the outbox.
    pub mail: Option<crate::notice::MailConfig>,
    /// The storage sites (three demo directories without).
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
    /// The membership levels, best first.
    #[serde(default)]
    pub levels: Vec<LevelEntry>,
}

/// Settings given on the command line or in the environment, which win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--header-timeout-secs`.
    pub header_timeout_secs: Option<u64>,
    /// `--metrics-token-file`.
    pub metrics_token_file: Option<PathBuf>,
    /// `--placement-every-secs`.
    pub placement_every_secs: Option<u64>,
    /// `--verify-every-secs`.
    pub verify_every_secs: Option<u64>,
    /// `--verify-sample`.
    pub verify_sample: Option<f64>,
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Which file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid config.
    #[error("service config {path}: {message}")]
    Invalid {
        /// Which file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A share of objects: above 0 and at most 100 (a trailing `%` is allowed).
pub fn percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage above 0 and at most 100")),
    }
}

/// The token in `file`: its first line, of at least 16 characters.
fn metrics_token(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("metrics token file {}: {e}", file.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < 16 {
        return Err(format!(
            "metrics token file {}: the token must have at least 16 characters",
            file.display()
        ));
    }
    Ok(token.to_string())
}

impl ServerConfig {
    /// Reads the config file, or the defaults without one.
    pub fn load(path: Option<&Path>) -> Result<ServerConfig, ConfigError> {
        let Some(p) = path else {
            return Ok(ServerConfig::default());
        };
        let shown = p.display().to_string();
        let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: shown,
            message: e.to_string(),
        })
    }

    /// The sites, levels and fraud threshold.
    pub fn placement(&self) -> PlacementConfig {
        PlacementConfig {
            sites: self.sites.clone(),
            levels: self.levels.clone(),
            fraud_threshold: self.fraud_threshold,
        }
    }

    /// The data directory: `over`, else the file's (`None`: the caller's default).
    pub fn data_dir(&self, over: Option<PathBuf>) -> Option<PathBuf> {
        over.or_else(|| self.data_dir.clone())
    }

    /// How `kura serve` runs with its data in `data_dir`: the overrides, else the file, else
    /// the defaults.
    pub fn serve_options(&self, data_dir: PathBuf, o: Overrides) -> Result<ServeOptions, String> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => return Err("tls_cert and tls_key go together".into()),
        };
        let secs = |a: Option<u64>, b: Option<u64>, default: u64| {
            Duration::from_secs(a.or(b).unwrap_or(default).max(1))
        };
        Ok(ServeOptions {
            data_dir,
            listen: o
                .listen
                .or(self.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
            tls,
            session_ttl: jiff::SignedDuration::from_mins(self.session_minutes.unwrap_or(60)),
            header_timeout: secs(o.header_timeout_secs, self.header_timeout_secs, 30),
            max_connections: self.max_connections.unwrap_or(512).max(1),
            password_checks: self.password_checks.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2)
            }),
            max_objects: self.max_objects_per_user.unwrap_or(1_000_000),
            request_memory: self.request_memory_mib.unwrap_or(256).max(64) << 20,
            requests_per_user: self.requests_per_user.unwrap_or(32).max(1),
            metrics_token: match o
                .metrics_token_file
                .as_ref()
                .or(self.metrics_token_file.as_ref())
            {
                Some(f) => Some(metrics_token(f)?),
                None => None,
            },
            placement: self.placement(),
            mail: self.mail.clone(),
            placement_every: secs(o.placement_every_secs, self.placement_every_secs, 600),
            verify_every: secs(o.verify_every_secs, self.verify_every_secs, 86_400),
            verify_sample: match o.verify_sample.or(self.verify_sample_percent) {
                Some(p) => percent(&p.to_string())?,
                None => 100.0,
            },
            billing: self.billing.clone(),
            billing_every: secs(None, self.billing_every_secs, 3600),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let c: ServerConfig =
            toml::from_str("placement_every_secs = 5\nverify_every_secs = 7\n").unwrap();
        let o = c
            .serve_options(
                "/d".into(),
                Overrides {
                    verify_every_secs: Some(9),
                    ..Overrides::default()
                },
            )
            .unwrap();
        assert_eq!(o.placement_every, Duration::from_secs(5));
        assert_eq!(o.verify_every, Duration::from_secs(9));
        assert_eq!(o.header_timeout, Duration::from_secs(30));
        assert_eq!(o.listen.port(), 8443);
    }

    #[test]
    fn the_old_name_of_the_placement_period_still_reads() {
        let c: ServerConfig = toml::from_str("replace_every_secs = 5\n").unwrap();
        assert_eq!(c.placement_every_secs, Some(5));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(toml::from_str::<ServerConfig>("lisen = \"x\"").is_err());
        let half_tls: ServerConfig = toml::from_str("tls_cert = \"/c\"").unwrap();
        assert!(
            half_tls
                .serve_options("/d".into(), Overrides::default())
                .is_err()
        );
        let bad_sample: ServerConfig = toml::from_str("verify_sample_percent = 0.0").unwrap();
        assert!(
            bad_sample
                .serve_options("/d".into(), Overrides::default())
                .is_err()
        );
        assert!(percent("101").is_err() && percent("50%").is_ok());
    }
}

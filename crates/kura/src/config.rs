//! The optional config file: defaults for settings that flags and environment variables did
//! not give. Precedence: flag, then environment variable, then this file, then built-in default.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// `config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository location.
    pub repo: Option<PathBuf>,
    /// File holding the passphrase.
    pub password_file: Option<PathBuf>,
    /// Client state directory.
    pub state_dir: Option<PathBuf>,
    /// Worker threads.
    pub threads: Option<usize>,
    /// Exclude patterns added to every backup.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// File holding the recovery code, to unlock with instead of the passphrase.
    pub recovery_code_file: Option<PathBuf>,
    /// Service user name.
    pub user: Option<String>,
    /// File holding the service user's password.
    pub user_password_file: Option<PathBuf>,
    /// Client certificate (PEM) for logging in without a password.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    pub client_key: Option<PathBuf>,
    /// The service certificate's SHA-256 fingerprint to pin.
    pub server_fingerprint: Option<String>,
    /// Seconds to keep retrying while the service is unreachable.
    pub retry_secs: Option<u64>,
    /// Upload piece size in KiB.
    pub piece_kib: Option<usize>,
}

/// `$XDG_CONFIG_HOME/kura`, else `~/.config/kura`.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    Ok(kura_client::state::user_dir("XDG_CONFIG_HOME", ".config")?)
}

/// Where `kura cert create` puts the client certificate and key by default.
pub fn client_cert_dir() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("client"))
}

/// `config.toml` in [`config_dir`].
pub fn default_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("config.toml"))
}

/// Reads the config file. A missing default file is an empty config; a missing file that was
/// named explicitly is an error.
pub fn load(explicit: Option<&Path>) -> Result<Config> {
    // Without a home directory there is no default file to read.
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match default_path() {
            Ok(p) => p,
            Err(_) => return Ok(Config::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(Config::default());
        }
        Err(e) => return Err(e).with_context(|| format!("reading config file {}", path.display())),
    };
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_keys() {
        let c: Config =
            toml::from_str("repo = \"/r\"\nthreads = 3\nexclude = [\"*.tmp\"]\n").unwrap();
        let service: Config = toml::from_str(
            "user = \"alice\"\nuser_password_file = \"/pw\"\nserver_fingerprint = \"ab\"\n\
             client_cert = \"/c\"\nclient_key = \"/k\"\nretry_secs = 5\npiece_kib = 256\n\
             recovery_code_file = \"/rc\"\n",
        )
        .unwrap();
        assert_eq!(service.user.as_deref(), Some("alice"));
        assert_eq!(
            (service.retry_secs, service.piece_kib),
            (Some(5), Some(256))
        );
        assert_eq!(c.repo, Some(PathBuf::from("/r")));
        assert_eq!(c.threads, Some(3));
        assert_eq!(c.exclude, vec!["*.tmp"]);
        assert!(toml::from_str::<Config>("rpeo = \"/r\"").is_err());
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        assert!(load(Some(Path::new("/nonexistent/kura.toml"))).is_err());
    }
}

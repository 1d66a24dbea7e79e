//! What every command needs: the global options after the config file filled them in, and
//! the ways to reach the repository, this machine's state and the passphrase.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use kura_client::state::{self, ClientState};
use kura_core::keys::{DeviceId, KdfParams};
use kura_repo::{Backend, Credential, LocalDir, Provider, RepoError, Repository};

use crate::config::Config;
use crate::output::Output;

/// The help heading of the options that matter only for an https:// repository.
const SERVICE_OPTIONS: &str = "Service options (for an https:// repository)";

/// The global options that reach a repository (the rest shape output), as (id, long name),
/// for leaving them out of the help of commands that never open one.
pub const REPOSITORY_OPTIONS: &[(&str, &str)] = &[
    ("repo", "repo"),
    ("password_file", "password-file"),
    ("recovery_code_file", "recovery-code-file"),
    ("state_dir", "state-dir"),
    ("retry_lock", "retry-lock"),
    ("user", "user"),
    ("user_password_file", "user-password-file"),
    ("client_cert", "client-cert"),
    ("client_key", "client-key"),
    ("server_fingerprint", "server-fingerprint"),
    ("retry_secs", "retry-secs"),
    ("piece_kib", "piece-kib"),
];

/// Options every command takes.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Config file (TOML: repo, password_file, recovery_code_file, state_dir, threads,
    /// exclude, user, user_password_file, server_fingerprint, client_cert, client_key,
    /// retry_secs, piece_kib). Default:
    /// ~/.config/kura/config.toml if it exists.
    #[arg(long, env = "KURA_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Repository location: a directory, or https://HOST:PORT for the Kura service. Default:
    /// $XDG_DATA_HOME/kura/repo or ~/.local/share/kura/repo.
    #[arg(long, short = 'r', env = "KURA_REPO", global = true)]
    pub repo: Option<PathBuf>,
    /// Read the passphrase from this file (otherwise KURA_PASSWORD, otherwise a prompt).
    #[arg(long, env = "KURA_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Unlock with the recovery code in this file instead of a passphrase (or KURA_RECOVERY_CODE).
    #[arg(long, env = "KURA_RECOVERY_CODE_FILE", global = true)]
    pub recovery_code_file: Option<PathBuf>,
    /// Where this machine keeps its client state (device id, file cache, backup markers).
    #[arg(long, env = "KURA_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// When another process holds a conflicting lock on the repository, wait up to this long
    /// for it to go (e.g. `30s`, `5m`, `1h`) instead of failing at once with exit code 12.
    #[arg(long, env = "KURA_RETRY_LOCK", global = true, value_parser = parse_wait)]
    pub retry_lock: Option<std::time::Duration>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Report the progress of long commands as JSON lines on stderr (for front ends): a
    /// `status` line twice a second and a `done` line at the end.
    #[arg(long, global = true)]
    pub json_progress: bool,
    /// Service user name, for an https:// repository.
    #[arg(long, env = "KURA_USER", global = true, help_heading = SERVICE_OPTIONS)]
    pub user: Option<String>,
    /// Read the service user's password from this file (otherwise KURA_USER_PASSWORD).
    #[arg(long, env = "KURA_USER_PASSWORD_FILE", global = true, help_heading = SERVICE_OPTIONS)]
    pub user_password_file: Option<PathBuf>,
    /// Log in to the service with this client certificate (PEM; made by `kura cert create`)
    /// instead of a password.
    #[arg(
        long,
        env = "KURA_CLIENT_CERT",
        global = true,
        requires = "client_key",
        help_heading = SERVICE_OPTIONS
    )]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        env = "KURA_CLIENT_KEY",
        global = true,
        requires = "client_cert",
        help_heading = SERVICE_OPTIONS
    )]
    pub client_key: Option<PathBuf>,
    /// SHA-256 fingerprint of the service's certificate to pin (printed by `kura serve`).
    #[arg(long, env = "KURA_SERVER_FINGERPRINT", global = true, help_heading = SERVICE_OPTIONS)]
    pub server_fingerprint: Option<String>,
    /// Keep retrying this many seconds while the service is unreachable or unavailable
    /// (default 120).
    #[arg(long, env = "KURA_RETRY_SECS", global = true, help_heading = SERVICE_OPTIONS)]
    pub retry_secs: Option<u64>,
    /// Upload pieces of this many KiB to the service (default: chosen from the measured line
    /// speed, 256 KiB to 32 MiB).
    #[arg(long, env = "KURA_PIECE_KIB", global = true, help_heading = SERVICE_OPTIONS)]
    pub piece_kib: Option<usize>,
    /// Worker threads (default: by core count).
    #[arg(long, env = "KURA_THREADS", global = true, default_value_t = 0)]
    pub threads: usize,
}

/// The global options with the config file's defaults filled in.
pub struct Ctx {
    /// The options.
    pub g: Global,
    /// The config file.
    pub config: Config,
    /// How results are printed.
    pub out: Output,
    /// The passphrase once given, so one command asks for it once.
    passphrase: std::sync::OnceLock<Vec<u8>>,
}

impl Ctx {
    /// Reads the config file and fills in what the flags and environment left open.
    pub fn new(mut g: Global) -> Result<Ctx> {
        let config = crate::config::load(g.config.as_deref())?;
        g.repo = g.repo.or_else(|| config.repo.clone());
        g.state_dir = g.state_dir.or_else(|| config.state_dir.clone());
        g.recovery_code_file = g
            .recovery_code_file
            .or_else(|| config.recovery_code_file.clone());
        g.user = g.user.or_else(|| config.user.clone());
        g.user_password_file = g
            .user_password_file
            .or_else(|| config.user_password_file.clone());
        g.server_fingerprint = g
            .server_fingerprint
            .or_else(|| config.server_fingerprint.clone());
        g.retry_secs = g.retry_secs.or(config.retry_secs);
        g.piece_kib = g.piece_kib.or(config.piece_kib);
        if g.client_cert.is_none() && g.client_key.is_none() {
            g.client_cert = config.client_cert.clone();
            g.client_key = config.client_key.clone();
        }
        if g.client_cert.is_some() != g.client_key.is_some() {
            bail!("client_cert and client_key go together in the config file");
        }
        if g.threads == 0 {
            g.threads = config.threads.unwrap_or(0);
        }
        let out = Output {
            json: g.json,
            quiet: g.quiet,
            json_progress: g.json_progress,
        };
        Ok(Ctx {
            g,
            config,
            out,
            passphrase: std::sync::OnceLock::new(),
        })
    }

    /// The repository location.
    pub fn repo_path(&self) -> Result<PathBuf> {
        if let Some(r) = &self.g.repo {
            return Ok(r.clone());
        }
        Ok(state::user_dir("XDG_DATA_HOME", ".local/share")?.join("repo"))
    }

    /// The storage at the repository location: a directory, or the service (logged in).
    pub fn backend(&self) -> Result<Arc<dyn Backend>> {
        self.backend_at(self.repo_path()?)
    }

    /// The storage at `p`: a directory, or the service, logged in with the service options
    /// (`kura copy --from-repo` reaches its source with them).
    pub fn backend_at(&self, p: PathBuf) -> Result<Arc<dyn Backend>> {
        let s = p.to_string_lossy();
        // A URL scheme is case-insensitive; anything else with `://` is a mistake, not a
        // directory to create.
        let scheme = s
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        let url = match scheme.as_deref() {
            None => return Ok(Arc::new(LocalDir::new(p))),
            Some("https") => format!("https://{}", &s[8..]),
            Some("http") => bail!("refusing plain http for {s}: the service speaks https only"),
            Some(other) => bail!(
                "{s}: unknown repository location scheme {other:?} (a directory, or https://HOST:PORT)"
            ),
        };
        let client_cert = self
            .g
            .client_cert
            .clone()
            .zip(self.g.client_key.clone())
            .or_else(|| self.made_certificate());
        let (user, password) = if client_cert.is_some() {
            (self.g.user.clone().unwrap_or_default(), None)
        } else {
            let user = self.g.user.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "the service needs a user name (KURA_USER or --user) or a client certificate (--client-cert)"
                )
            })?;
            (user, Some(self.service_password()?))
        };
        let remote = kura_repo::remote::Remote {
            url,
            fingerprint: self.g.server_fingerprint.clone(),
            user,
            password,
            client_cert,
            retry_for: std::time::Duration::from_secs(self.g.retry_secs.unwrap_or(120)),
            piece_size: self.g.piece_kib.map(|k| k.clamp(1, 64 * 1024) << 10),
            on_outage: (!self.out.quiet)
                .then(|| Arc::new(|o| eprintln!("note: {o}")) as Arc<dyn Fn(_) + Send + Sync>),
        };
        Ok(Arc::new(kura_repo::remote::HttpBackend::connect(remote)?))
    }

    /// The certificate `kura cert create` made, when there is one and no user name was
    /// given: a device that made one logs in with it by default.
    fn made_certificate(&self) -> Option<(PathBuf, PathBuf)> {
        if self.g.user.is_some() {
            return None;
        }
        let dir = crate::config::client_cert_dir().ok()?;
        let (cert, key) = (dir.join("client.crt"), dir.join("client.key"));
        (cert.is_file() && key.is_file()).then_some((cert, key))
    }

    /// The service password: from a file, KURA_USER_PASSWORD, or a prompt on a terminal.
    fn service_password(&self) -> Result<String> {
        if let Some(f) = &self.g.user_password_file {
            let secret = read_secret(f, "user password file")?;
            return Ok(String::from_utf8_lossy(&secret).into_owned());
        }
        if let Ok(p) = std::env::var("KURA_USER_PASSWORD") {
            return Ok(p);
        }
        if std::io::stdin().is_terminal() {
            return Ok(rpassword::prompt_password("service password: ")?);
        }
        bail!(
            "the service needs the user's password: set KURA_USER_PASSWORD, pass \
             --user-password-file, or run on a terminal"
        )
    }

    /// Runs `f` with the storage provider behind the repository: only the Kura service has
    /// one; `what` says what only it can give.
    pub fn with_provider<T>(
        &self,
        what: &str,
        f: impl FnOnce(&dyn Provider) -> Result<T>,
    ) -> Result<T> {
        let backend = self.backend()?;
        let provider = backend.provider().ok_or_else(|| {
            anyhow::anyhow!(
                "{what} come from a Kura service; this repository is not on one (--repo https://...)"
            )
        })?;
        f(provider)
    }

    /// Where this machine keeps its client state.
    pub fn state_base(&self) -> Result<PathBuf> {
        match &self.g.state_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(state::default_base()?),
        }
    }

    /// This machine's state for the repository at the configured location, found from its
    /// config alone (no passphrase needed).
    pub fn state_unlocked(&self) -> Result<ClientState> {
        let config = Repository::read_config(self.backend()?.as_ref())?;
        Ok(ClientState::open(&self.state_base()?, &config.id)?)
    }

    /// The passphrase: from a file, KURA_PASSWORD, the config's file, or a prompt. A `new`
    /// passphrase (one that will protect a key) is asked for twice on a terminal and may not
    /// be empty, wherever it comes from.
    pub fn passphrase(&self, new: bool) -> Result<Vec<u8>> {
        if let Some(p) = self.passphrase.get() {
            return Ok(p.clone());
        }
        let given = if let Some(f) = &self.g.password_file {
            read_secret(f, "password file")?
        } else if let Ok(p) = std::env::var("KURA_PASSWORD") {
            p.into_bytes()
        } else if let Some(f) = &self.config.password_file {
            read_secret(f, "password file")?
        } else if !std::io::stdin().is_terminal() {
            bail!("no passphrase: set KURA_PASSWORD, pass --password-file, or run on a terminal");
        } else {
            prompt("passphrase", new)?
        };
        if new {
            refuse_empty(&given)?;
        }
        Ok(self.passphrase.get_or_init(|| given).clone())
    }

    /// The passphrase that is to replace the current one (`kura key passwd`): from `file`,
    /// KURA_NEW_PASSWORD, or a prompt (twice); never empty.
    pub fn replacement_passphrase(&self, file: Option<&Path>) -> Result<Vec<u8>> {
        let given = passphrase_from(
            file,
            ("KURA_NEW_PASSWORD", "--new-password-file"),
            "new passphrase",
            true,
        )?;
        refuse_empty(&given)?;
        Ok(given)
    }

    /// The passphrase of another repository (`kura copy --from-repo`): from `file`,
    /// KURA_FROM_PASSWORD, or a prompt.
    pub fn source_passphrase(&self, file: Option<&Path>) -> Result<Vec<u8>> {
        passphrase_from(
            file,
            ("KURA_FROM_PASSWORD", "--from-password-file"),
            "passphrase of the repository to copy from",
            false,
        )
    }

    fn credential(&self) -> Result<Credential> {
        if let Some(f) = &self.g.recovery_code_file {
            let code = read_secret(f, "recovery code file")?;
            return Ok(Credential::RecoveryCode(
                String::from_utf8_lossy(&code).into_owned(),
            ));
        }
        if let Ok(code) = std::env::var("KURA_RECOVERY_CODE") {
            return Ok(Credential::RecoveryCode(code));
        }
        Ok(Credential::Passphrase(self.passphrase(false)?))
    }

    /// Opens and unlocks the repository.
    pub fn open(&self) -> Result<Repository> {
        self.open_with(None)
    }

    /// Opens and unlocks the repository with `credential`, or the one the options give.
    pub fn open_with(&self, credential: Option<Credential>) -> Result<Repository> {
        let backend = self.backend()?;
        // Check the config before asking for a passphrase: a missing repository is not a prompt.
        Repository::read_config(backend.as_ref())?;
        let credential = match credential {
            Some(c) => c,
            None => self.credential()?,
        };
        let mut repo = Repository::open(backend, &credential)?;
        if let Some(wait) = self.g.retry_lock {
            let shown = jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX);
            let said = format!("waiting up to {shown:#} for it (--retry-lock)");
            repo.set_lock_patience(
                wait,
                std::sync::Arc::new(move |e| eprintln!("kura: {e}; {said}")),
            );
        }
        Ok(repo)
    }

    /// This machine's state for `repo`.
    pub fn state(&self, repo: &Repository) -> Result<ClientState> {
        Ok(ClientState::open(&self.state_base()?, &repo.config().id)?)
    }

    /// This machine's state and its device in `repo`; an error if it is not one.
    pub fn this_device(&self, repo: &Repository) -> Result<(ClientState, DeviceId)> {
        let state = self.state(repo)?;
        let device = state.device().ok_or(RepoError::NotADevice)?;
        repo.require_device(device)?;
        Ok((state, device))
    }

    /// Worker threads: the option, else one per core.
    pub fn threads(&self) -> usize {
        if self.g.threads > 0 {
            return self.g.threads;
        }
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    }
}

/// Asks for a passphrase on the terminal; one that will protect a key (`twice`) is asked for
/// again and must match.
/// A passphrase from `file`, else the environment variable `env.0`, else a prompt for `label`
/// (asked twice when `twice`) on a terminal; `env.1` names the file's flag in the error.
fn passphrase_from(
    file: Option<&Path>,
    env: (&str, &str),
    label: &str,
    twice: bool,
) -> Result<Vec<u8>> {
    if let Some(f) = file {
        return read_secret(f, "password file");
    }
    if let Ok(p) = std::env::var(env.0) {
        return Ok(p.into_bytes());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "no {label}: set {}, pass {}, or run on a terminal",
            env.0,
            env.1
        );
    }
    prompt(label, twice)
}

fn prompt(label: &str, twice: bool) -> Result<Vec<u8>> {
    let p = rpassword::prompt_password(format!("{label}: "))?;
    if twice && rpassword::prompt_password(format!("{label} again: "))? != p {
        bail!("the passphrases do not match");
    }
    Ok(p.into_bytes())
}

fn refuse_empty(passphrase: &[u8]) -> Result<()> {
    if passphrase.is_empty() {
        bail!("an empty passphrase is not allowed");
    }
    Ok(())
}

/// The Argon2id cost for new keys. Tests and benchmarks may lower it; the default is the
/// secure one.
pub fn kdf() -> KdfParams {
    match std::env::var("KURA_INSECURE_FAST_KDF").as_deref() {
        Ok("1") => KdfParams::insecure_for_tests(),
        _ => KdfParams::default(),
    }
}

/// A wait such as `30s`, `5m` or `1h30m` (or ISO 8601, `PT5M`): an interval as `--every`
/// takes one.
pub(crate) fn parse_wait(text: &str) -> Result<std::time::Duration, String> {
    let d = kura_core::schedule::interval(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 5m or 1h"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("{text:?} is negative"))
}

/// Writes `bytes` to `path` for its owner only (mode 0600): a new file is written and synced
/// beside it, renamed into place, and the directory synced, so a killed process or a power
/// cut leaves the old contents or the new.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// A secret kept in a file, without its trailing newline.
pub fn read_secret(path: &Path, what: &str) -> Result<Vec<u8>> {
    let text = std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let end = text
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    Ok(text[..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_wait_is_written_as_people_write_it() {
        assert_eq!(parse_wait("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_wait("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_wait("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_wait("PT2M"), Ok(Duration::from_secs(120)));
        assert!(parse_wait("soon").is_err());
        assert!(parse_wait("-5m").is_err());
    }
}

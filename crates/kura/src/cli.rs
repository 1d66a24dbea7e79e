//! Commands, options and exit codes.

use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kura_client::ClientError;
use kura_client::backup::BackupOptions;
use kura_client::restore::{RestoreOptions, restore};
use kura_client::state::{self, ClientState};
use kura_client::walk;
use kura_core::Id;
use kura_core::keys::{KdfParams, KeyError};
use kura_core::policy::{self, KeepPolicy};
use kura_core::snapshot::{BackupType, Snapshot};
use kura_core::tree::{Node, NodeKind};
use kura_repo::lock::{RepoLock, hostname};
use kura_repo::{Backend, Credential, LocalDir, RepoError, Repository};
use serde_json::json;

use crate::progress::Bar;

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   error (the message says which)
  2   usage error (bad option or argument)
  3   partial: some files could not be backed up or restored, or check found problems
  10  no repository at the location
  11  wrong passphrase or recovery code
  12  repository locked by another process
  13  repository format newer than this kura
  14  not enough free space for a restore
  15  stopped (a signal, or `kura jobs cancel`) before the snapshot was committed";

/// Kura: encrypted, deduplicating backups.
#[derive(Parser)]
#[command(name = "kura", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Global {
    /// Config file (TOML: repo, password_file, state_dir, threads, exclude). Default:
    /// ~/.config/kura/config.toml if it exists.
    #[arg(long, env = "KURA_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Repository location: a directory, or https://HOST:PORT for the Kura service. Default:
    /// $XDG_DATA_HOME/kura/repo or ~/.local/share/kura/repo.
    #[arg(long, short = 'r', env = "KURA_REPO", global = true)]
    repo: Option<PathBuf>,
    /// Read the passphrase from this file (otherwise KURA_PASSWORD, otherwise a prompt).
    #[arg(long, env = "KURA_PASSWORD_FILE", global = true)]
    password_file: Option<PathBuf>,
    /// Unlock with the recovery code in this file instead of a passphrase (or KURA_RECOVERY_CODE).
    #[arg(long, env = "KURA_RECOVERY_CODE_FILE", global = true)]
    recovery_code_file: Option<PathBuf>,
    /// Where this machine keeps its client state (device id, file cache, backup markers).
    #[arg(long, env = "KURA_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but errors.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    /// Service user name, for an https:// repository.
    #[arg(long, env = "KURA_USER", global = true)]
    user: Option<String>,
    /// Read the service user's password from this file (otherwise KURA_USER_PASSWORD).
    #[arg(long, env = "KURA_USER_PASSWORD_FILE", global = true)]
    user_password_file: Option<PathBuf>,
    /// Log in to the service with this client certificate (PEM; made by `kura cert create`)
    /// instead of a password.
    #[arg(long, env = "KURA_CLIENT_CERT", global = true, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "KURA_CLIENT_KEY", global = true, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// SHA-256 fingerprint of the service's certificate to pin (printed by `kura serve`).
    #[arg(long, env = "KURA_SERVER_FINGERPRINT", global = true)]
    server_fingerprint: Option<String>,
    /// Keep retrying this many seconds while the service is unreachable or unavailable.
    #[arg(long, env = "KURA_RETRY_SECS", global = true, default_value_t = 120)]
    retry_secs: u64,
    /// Upload pieces of this many KiB to the service (default: chosen from the measured line
    /// speed, 256 KiB to 32 MiB).
    #[arg(long, env = "KURA_PIECE_KIB", global = true)]
    piece_kib: Option<usize>,
    /// Worker threads (default: by core count).
    #[arg(long, env = "KURA_THREADS", global = true, default_value_t = 0)]
    threads: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Create a repository, its common key and this machine's device key; prints a recovery code once.
    Init,
    /// Back up paths into a new snapshot.
    Backup(BackupArgs),
    /// Record PATHs as backed up without uploading their contents (factory state, recovery media).
    Baseline {
        /// Paths whose current state is the baseline.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Tag the snapshot.
        #[arg(long)]
        tag: Vec<String>,
    },
    /// List snapshots.
    Snapshots,
    /// List the contents of a snapshot (SNAPSHOT: id prefix or `latest`).
    Ls {
        /// Snapshot id prefix or `latest`.
        snapshot: String,
        /// Only this absolute path and what is under it.
        path: Option<PathBuf>,
    },
    /// Show what changed between two snapshots.
    Diff {
        /// Older snapshot.
        from: String,
        /// Newer snapshot.
        to: String,
    },
    /// Restore a snapshot, or part of it, into a directory.
    Restore(RestoreArgs),
    /// Remove snapshots by id, or by a retention policy (per device and set of paths).
    Forget(ForgetArgs),
    /// Reclaim the space of data that no snapshot needs.
    Prune {
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Verify the repository's structure; with --read-data, every byte.
    Check {
        /// Read and verify every pack and blob.
        #[arg(long)]
        read_data: bool,
    },
    /// Devices of the repository.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Unfinished backup jobs of this device; cancel or resume one.
    Jobs {
        #[command(subcommand)]
        action: Option<crate::jobs::JobsCommand>,
    },
    /// The backup log: every job, when it ran, how it ended, what it covered, and where it is stored.
    Log {
        /// Only the last N entries.
        #[arg(long)]
        last: Option<usize>,
    },
    /// Scheduled backups of this machine: add, list, remove.
    #[command(subcommand)]
    Schedule(crate::schedule::ScheduleCommand),
    /// Run scheduled backups in the foreground (as a systemd user service, see the README);
    /// runs missed ones once at start.
    Agent {
        /// Run what is due now, then exit (for cron or a systemd timer).
        #[arg(long)]
        once: bool,
    },
    /// Storage conditions at the service: for each stored object (of SNAPSHOT, or all), every
    /// copy's site, region, state, algorithm and key reference. The latest are kept locally.
    Conditions {
        /// Only the objects this snapshot needs (id prefix or `latest`).
        snapshot: Option<String>,
        /// Show the conditions kept locally, without asking the service.
        #[arg(long, conflicts_with = "snapshot")]
        cached: bool,
    },
    /// The notices the service sent you (storage conditions, moved data, incidents).
    Messages,
    /// What the service's integrity checks found in your data (media faults repaired,
    /// tampering, lost objects, fraudulent sites); for a lost object, the snapshots and the
    /// files in them that cannot be restored whole.
    Incidents,
    /// Your statements at the service, and objections to them.
    #[command(subcommand)]
    Billing(crate::billing::BillingCommand),
    /// Client certificates for logging in to the service without a password (mutual TLS).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Run the Kura service (the provider's backup server).
    Serve(crate::service::ServeArgs),
    /// Operator commands for the service: users, contracts, certificates, sites and placement,
    /// integrity checks and incidents, billing, the backup log.
    Admin(crate::service::AdminArgs),
    /// Set up the default repository if needed, back up DIR, then list and verify the snapshot.
    Quickstart {
        /// Directory to back up.
        dir: PathBuf,
    },
}

#[derive(Args)]
struct BackupArgs {
    /// Files and directories to back up.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// full: everything, new baseline; copy: everything, markers unchanged; incremental: changes
    /// since the last full or incremental; differential: changes since the last full.
    #[arg(long = "type", value_enum, default_value_t = TypeArg::Full)]
    kind: TypeArg,
    /// Leave out matching entries (a pattern with `/` matches the absolute path, else any name).
    #[arg(long)]
    exclude: Vec<String>,
    /// Read exclude patterns from a file, one per line (`#` starts a comment).
    #[arg(long)]
    exclude_file: Vec<PathBuf>,
    /// Tag the snapshot.
    #[arg(long)]
    tag: Vec<String>,
}

/// The backup types a user asks for (a baseline has its own command).
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum TypeArg {
    Full,
    Copy,
    Incremental,
    Differential,
}

impl From<TypeArg> for BackupType {
    fn from(t: TypeArg) -> BackupType {
        match t {
            TypeArg::Full => BackupType::Full,
            TypeArg::Copy => BackupType::Copy,
            TypeArg::Incremental => BackupType::Incremental,
            TypeArg::Differential => BackupType::Differential,
        }
    }
}

#[derive(Args)]
struct RestoreArgs {
    /// SNAPSHOT or SNAPSHOT:PATH (id prefix or `latest`; PATH absolute, as in the snapshot).
    snapshot: String,
    /// Directory to restore into.
    #[arg(long, short = 't')]
    target: PathBuf,
    /// Restore only entries matching this glob (or under a matching directory).
    #[arg(long)]
    include: Vec<String>,
    /// Directory holding the baseline's files, for files that exist only in a baseline.
    #[arg(long)]
    baseline_source: Option<PathBuf>,
}

#[derive(Args)]
struct ForgetArgs {
    /// Snapshots to remove.
    snapshots: Vec<String>,
    /// Keep the newest N snapshots.
    #[arg(long, default_value_t = 0)]
    keep_last: u32,
    /// Keep the newest snapshot of each of the last N hours.
    #[arg(long, default_value_t = 0)]
    keep_hourly: u32,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long, default_value_t = 0)]
    keep_daily: u32,
    /// Keep the newest snapshot of each of the last N weeks.
    #[arg(long, default_value_t = 0)]
    keep_weekly: u32,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long, default_value_t = 0)]
    keep_monthly: u32,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long, default_value_t = 0)]
    keep_yearly: u32,
    /// Only show what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    prune: bool,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Make this machine a device of an existing repository (needs the passphrase or recovery code).
    Add {
        /// A name for the device (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the repository's devices.
    List,
}

#[derive(Subcommand)]
enum CertCommand {
    /// Make a self-signed client certificate and key; prints the fingerprint for the provider
    /// to register (`kura admin user cert NAME FINGERPRINT`).
    Create {
        /// Directory for client.crt and client.key (default ~/.config/kura/client).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Name in the certificate (default: this host's name).
        #[arg(long)]
        name: Option<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

fn cert_create(ctx: &Ctx, out: Option<PathBuf>, name: Option<String>, days: i64) -> Result<()> {
    let dir = match out {
        Some(d) => d,
        None => crate::config::config_dir()?.join("client"),
    };
    let id = kura_service::tls::client_certificate(&dir, &name.unwrap_or_else(hostname), days)?;
    if ctx.g.json {
        ctx.print_json(&json!({"cert": id.cert, "key": id.key, "fingerprint": id.fingerprint}));
    } else {
        ctx.say(format!(
            "wrote {} and {}\nfingerprint (SHA-256): {}\nthe provider registers it with `kura admin user cert NAME {}`; then use --client-cert and --client-key (or KURA_CLIENT_CERT, KURA_CLIENT_KEY)",
            id.cert.display(),
            id.key.display(),
            id.fingerprint,
            id.fingerprint
        ));
    }
    Ok(())
}

/// A run that finished but with problems: exit code 3.
#[derive(Debug)]
pub(crate) struct Partial(pub(crate) String);

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Partial {}

/// Parses the command line, runs it, and maps the outcome to an exit code.
pub fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Typed errors often repeat their cause in their own message: say each part once.
            let mut msg = String::new();
            for cause in e.chain().map(|c| c.to_string()) {
                if !msg.contains(&cause) {
                    if !msg.is_empty() {
                        msg.push_str(": ");
                    }
                    msg.push_str(&cause);
                }
            }
            eprintln!("kura: {msg}");
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<Partial>().is_some() {
            return 3;
        }
        let repo = cause.downcast_ref::<RepoError>().or_else(|| {
            match cause.downcast_ref::<ClientError>() {
                Some(ClientError::Repo(r)) => Some(r),
                _ => None,
            }
        });
        match repo {
            Some(RepoError::NotFound(_)) => return 10,
            Some(RepoError::Key(KeyError::Format(_))) => return 1,
            Some(RepoError::Key(_)) => return 11,
            Some(RepoError::Locked(_)) => return 12,
            Some(RepoError::NewerFormat { .. }) => return 13,
            _ => {}
        }
        match cause.downcast_ref::<ClientError>() {
            Some(ClientError::NoSpace { .. }) => return 14,
            Some(ClientError::Stopped) => return 15,
            Some(ClientError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                return 14;
            }
            _ => {}
        }
    }
    1
}

/// What every command needs: the global options and the config file.
pub(crate) struct Ctx {
    g: Global,
    config: crate::config::Config,
}

impl Ctx {
    pub(crate) fn repo_path(&self) -> Result<PathBuf> {
        if let Some(r) = &self.g.repo {
            return Ok(r.clone());
        }
        Ok(state::user_dir("XDG_DATA_HOME", ".local/share")?.join("repo"))
    }

    pub(crate) fn backend(&self) -> Result<Arc<dyn Backend>> {
        let p = self.repo_path()?;
        let s = p.to_string_lossy();
        if s.starts_with("http://") {
            bail!("refusing plain http for {s}: the service speaks https only");
        }
        if s.starts_with("https://") {
            let client_cert = self.g.client_cert.clone().zip(self.g.client_key.clone());
            let (user, password) = if client_cert.is_some() {
                (self.g.user.clone().unwrap_or_default(), None)
            } else {
                let user = self.g.user.clone().ok_or_else(|| {
                    anyhow::anyhow!(
                        "the service needs a user name (KURA_USER or --user) or a client certificate (--client-cert)"
                    )
                })?;
                let password = match (
                    &self.g.user_password_file,
                    std::env::var("KURA_USER_PASSWORD"),
                ) {
                    (Some(f), _) => {
                        String::from_utf8_lossy(&read_secret(f, "user password file")?).into_owned()
                    }
                    (None, Ok(p)) => p,
                    (None, Err(_)) => bail!(
                        "the service needs the user's password: set KURA_USER_PASSWORD or pass --user-password-file"
                    ),
                };
                (user, Some(password))
            };
            let remote = kura_repo::remote::Remote {
                url: s.into_owned(),
                fingerprint: self.g.server_fingerprint.clone(),
                user,
                password,
                client_cert,
                retry_for: std::time::Duration::from_secs(self.g.retry_secs),
                piece_size: self.g.piece_kib.map(|k| k.clamp(1, 64 * 1024) << 10),
            };
            return Ok(Arc::new(kura_repo::remote::HttpBackend::connect(remote)?));
        }
        Ok(Arc::new(LocalDir::new(p)))
    }

    pub(crate) fn state_base(&self) -> Result<PathBuf> {
        match &self.g.state_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(state::default_base()?),
        }
    }

    pub(crate) fn show_progress(&self) -> bool {
        !self.g.json && !self.g.quiet
    }

    /// Exclude patterns from the config file.
    pub(crate) fn config_excludes(&self) -> Vec<String> {
        self.config.exclude.clone()
    }

    /// Whether to print JSON.
    pub(crate) fn json(&self) -> bool {
        self.g.json
    }

    /// This machine's state for the repository at the configured location, found from its
    /// config alone (no passphrase needed).
    pub(crate) fn state_unlocked(&self) -> Result<ClientState> {
        let config = Repository::read_config(self.backend()?.as_ref())?;
        Ok(ClientState::open(&self.state_base()?, &config.id)?)
    }

    pub(crate) fn say(&self, text: impl AsRef<str>) {
        if !self.g.quiet && !self.g.json {
            println!("{}", text.as_ref());
        }
    }

    fn passphrase(&self, confirm: bool) -> Result<Vec<u8>> {
        if let Some(f) = &self.g.password_file {
            return read_secret(f, "password file");
        }
        if let Ok(p) = std::env::var("KURA_PASSWORD") {
            return Ok(p.into_bytes());
        }
        if let Some(f) = &self.config.password_file {
            return read_secret(f, "password file");
        }
        if !std::io::stdin().is_terminal() {
            bail!("no passphrase: set KURA_PASSWORD, pass --password-file, or run on a terminal");
        }
        let p = rpassword::prompt_password("passphrase: ")?;
        if confirm && rpassword::prompt_password("passphrase again: ")? != p {
            bail!("the passphrases do not match");
        }
        if confirm && p.is_empty() {
            bail!("an empty passphrase is not allowed");
        }
        Ok(p.into_bytes())
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

    pub(crate) fn open(&self) -> Result<Repository> {
        let backend = self.backend()?;
        // Check the config before asking for a passphrase: a missing repository is not a prompt.
        Repository::read_config(backend.as_ref())?;
        Ok(Repository::open(backend, &self.credential()?)?)
    }

    pub(crate) fn state(&self, repo: &Repository) -> Result<ClientState> {
        Ok(ClientState::open(&self.state_base()?, &repo.config().id)?)
    }

    pub(crate) fn print_json(&self, value: &serde_json::Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    }
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

/// The user's home directory.
fn dispatch(cli: Cli) -> Result<()> {
    let config = crate::config::load(cli.global.config.as_deref())?;
    let mut g = cli.global;
    g.repo = g.repo.or_else(|| config.repo.clone());
    g.state_dir = g.state_dir.or_else(|| config.state_dir.clone());
    if g.threads == 0 {
        g.threads = config.threads.unwrap_or(0);
    }
    let ctx = Ctx { g, config };
    match cli.command {
        Command::Init => init(&ctx),
        Command::Backup(a) => {
            let kind = a.kind.into();
            let mut excludes = ctx.config.exclude.clone();
            excludes.extend(a.exclude);
            for f in &a.exclude_file {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading exclude file {}", f.display()))?;
                excludes.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(String::from),
                );
            }
            run_backup(&ctx, a.paths, kind, excludes, a.tag, None)
        }
        Command::Baseline { paths, tag } => {
            run_backup(&ctx, paths, BackupType::Baseline, vec![], tag, None)
        }
        Command::Snapshots => snapshots(&ctx),
        Command::Ls { snapshot, path } => ls(&ctx, &snapshot, path.as_deref()),
        Command::Diff { from, to } => diff(&ctx, &from, &to),
        Command::Restore(a) => run_restore(&ctx, a),
        Command::Forget(a) => forget(&ctx, a),
        Command::Prune { dry_run } => prune(&ctx, dry_run),
        Command::Check { read_data } => check(&ctx, read_data),
        Command::Device(DeviceCommand::Add { name }) => device_add(&ctx, name),
        Command::Device(DeviceCommand::List) => device_list(&ctx),
        Command::Quickstart { dir } => quickstart(&ctx, dir),
        Command::Jobs { action } => crate::jobs::jobs(&ctx, action),
        Command::Log { last } => crate::jobs::log(&ctx, last),
        Command::Conditions { snapshot, cached } => {
            crate::conditions::conditions(&ctx, snapshot, cached)
        }
        Command::Messages => crate::conditions::messages(&ctx),
        Command::Incidents => crate::conditions::incidents(&ctx),
        Command::Billing(c) => crate::billing::billing(&ctx, c),
        Command::Schedule(c) => crate::schedule::schedule(&ctx, c),
        Command::Agent { once } => crate::schedule::agent(&ctx, once),
        Command::Cert(CertCommand::Create { out, name, days }) => {
            cert_create(&ctx, out, name, days)
        }
        Command::Serve(a) => crate::service::serve(a),
        Command::Admin(a) => crate::service::admin(a, ctx.g.json),
    }
}

fn kdf() -> KdfParams {
    // Tests and benchmarks may lower the Argon2id cost; the default is the secure one.
    match std::env::var("KURA_INSECURE_FAST_KDF").as_deref() {
        Ok("1") => KdfParams::insecure_for_tests(),
        _ => KdfParams::default(),
    }
}

fn init(ctx: &Ctx) -> Result<()> {
    let backend = ctx.backend()?;
    if Repository::read_config(backend.as_ref()).is_ok() {
        return Err(RepoError::AlreadyExists(backend.location()).into());
    }
    let pass = ctx.passphrase(true)?;
    let host = hostname();
    let (repo, device, code) = Repository::init(backend, &pass, kdf(), &host, &host)?;
    ctx.state(&repo)?.set_device(device)?;
    if ctx.g.json {
        ctx.print_json(&json!({"repository": repo.config().id, "location": ctx.repo_path()?, "device": device.to_string(), "recovery_code": code}));
    } else if !ctx.g.quiet {
        println!(
            "created repository {} at {}",
            repo.config().id,
            ctx.repo_path()?.display()
        );
        println!("this machine is device {device}");
        println!();
        println!(
            "Recovery code (shown once; keep it offline, it unlocks everything without the passphrase):"
        );
        println!("  {code}");
    }
    Ok(())
}

pub(crate) fn this_device(
    ctx: &Ctx,
    repo: &Repository,
) -> Result<(ClientState, kura_core::keys::DeviceId)> {
    let state = ctx.state(repo)?;
    let device = state
        .device()
        .filter(|d| repo.device_key(*d).is_some())
        .ok_or(RepoError::NotADevice)?;
    Ok((state, device))
}

/// Runs a backup as a job (a new one, the unfinished one of the same paths and type, or
/// `resume`).
pub(crate) fn run_backup(
    ctx: &Ctx,
    paths: Vec<PathBuf>,
    kind: BackupType,
    excludes: Vec<String>,
    tags: Vec<String>,
    resume: Option<kura_core::job::JobId>,
) -> Result<()> {
    let repo = ctx.open()?;
    let (state, device) = this_device(ctx, &repo)?;
    let opts = BackupOptions {
        paths,
        kind,
        excludes,
        tags,
        hostname: hostname(),
        threads: ctx.g.threads,
        stop: Default::default(),
    };
    let bar = Bar::new(
        if kind == BackupType::Baseline {
            "baseline"
        } else {
            "backup"
        },
        ctx.show_progress(),
    );
    kura_client::job::stop_on_signals();
    let (job, out) = kura_client::job::run(&repo, &state, device, &opts, resume, &bar)?;
    bar.finish();
    if job.attempts > 1 && !ctx.g.json {
        ctx.say(format!(
            "resumed job {} (attempt {})",
            job.id.short(),
            job.attempts
        ));
    }
    let out = out.map_err(|e| match e {
        ClientError::Stopped => anyhow::Error::new(e).context(format!(
            "job {} {}; `kura jobs` lists it",
            job.id.short(),
            job.status
        )),
        e => e.into(),
    })?;
    if let Some(msg) = &out.fell_back {
        eprintln!("note: {msg}");
    }
    crate::conditions::after_backup(ctx, repo.backend().as_ref(), &job);
    let s = &out.snapshot.summary;
    if ctx.g.json {
        ctx.print_json(&json!({
            "id": out.id, "short_id": out.id.short(), "type": out.snapshot.kind, "requested_type": kind,
            "fell_back_to_full": out.fell_back.is_some(), "paths": out.snapshot.paths,
            "summary": s, "errors": out.errors, "adopted_packs": out.adopted_packs,
            "job": job.id, "attempts": job.attempts,
        }));
    } else {
        ctx.say(format!(
            "snapshot {} ({}) saved: {} files, {} dirs, {} ({} new, {} changed, {} unchanged); added {} of data, {} stored, in {:.1}s",
            out.id.short(),
            out.snapshot.kind,
            s.files,
            s.dirs,
            human(s.bytes),
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            human(s.data_added),
            human(s.stored_added),
            s.duration
        ));
    }
    if !out.errors.is_empty() {
        return Err(Partial(format!(
            "{} entries could not be read and are not in the snapshot",
            out.errors.len()
        ))
        .into());
    }
    Ok(())
}

pub(crate) fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn device_names(repo: &Repository) -> std::collections::HashMap<kura_core::keys::DeviceId, String> {
    repo.devices().map(|d| (d.device, d.name.clone())).collect()
}

fn snapshot_json(
    id: &Id,
    s: &Snapshot,
    names: &std::collections::HashMap<kura_core::keys::DeviceId, String>,
) -> serde_json::Value {
    json!({
        "id": id, "short_id": id.short(), "time": s.time, "device": s.device.to_string(),
        "device_name": names.get(&s.device), "hostname": s.hostname, "paths": s.paths, "type": s.kind,
        "tags": s.tags, "tree": s.tree, "base": s.base, "summary": s.summary,
    })
}

fn snapshots(ctx: &Ctx) -> Result<()> {
    let repo = ctx.open()?;
    let (snaps, damaged) = repo.readable_snapshots()?;
    for e in &damaged {
        eprintln!("warning: {e}");
    }
    let names = device_names(&repo);
    if ctx.g.json {
        ctx.print_json(&serde_json::Value::Array(
            snaps
                .iter()
                .map(|(id, s)| snapshot_json(id, s, &names))
                .collect(),
        ));
        return damaged_is_partial(&damaged);
    }
    println!(
        "{:<8}  {:<19}  {:<12}  {:<12}  {:>10}  {:<20}  tags",
        "id", "time", "device", "type", "size", "paths"
    );
    let tz = jiff::tz::TimeZone::system();
    for (id, s) in &snaps {
        let time = s
            .time
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string();
        let dev = names
            .get(&s.device)
            .cloned()
            .unwrap_or_else(|| s.device.to_string());
        println!(
            "{:<8}  {:<19}  {:<12}  {:<12}  {:>10}  {:<20}  {}",
            id.short(),
            time,
            dev,
            s.kind.to_string(),
            human(s.summary.bytes),
            s.paths.join(" "),
            s.tags.join(",")
        );
    }
    ctx.say(format!("{} snapshots", snaps.len()));
    damaged_is_partial(&damaged)
}

fn damaged_is_partial(damaged: &[RepoError]) -> Result<()> {
    if damaged.is_empty() {
        return Ok(());
    }
    Err(Partial(format!(
        "{} snapshot files could not be read (see `kura check`)",
        damaged.len()
    ))
    .into())
}

fn kind_str(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
    }
}

fn ls(ctx: &Ctx, spec: &str, path: Option<&Path>) -> Result<()> {
    let repo = ctx.open()?;
    let _lock = RepoLock::acquire(repo.backend().clone(), false)?;
    let (_, snap) = repo.find_snapshot(spec)?;
    let index = repo.load_index()?;
    let mut rows = Vec::new();
    let (start, base) = match path {
        None => (Some(snap.tree), PathBuf::from("/")),
        Some(p) => {
            let p = walk::absolute(p)?;
            match walk::find_node(&repo, &index, &snap.tree, &p)? {
                None => (Some(snap.tree), PathBuf::from("/")),
                Some(node) => {
                    let sub = node.subtree;
                    rows.push((p.clone(), node));
                    (sub, p)
                }
            }
        }
    };
    if let Some(t) = start {
        walk::visit_tree(&repo, &index, &t, &base, &mut |p: &Path, n: &Node| {
            rows.push((p.to_path_buf(), n.clone()));
            Ok(true)
        })?;
    }
    if ctx.g.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(p, n)| json!({"path": p, "type": kind_str(n.kind), "size": n.size, "mode": n.mode, "mtime_ns": n.mtime_ns, "target": n.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned())}))
            .collect();
        ctx.print_json(&serde_json::Value::Array(v));
    } else {
        for (p, n) in rows {
            let link = n
                .target
                .map(|t| format!(" -> {}", String::from_utf8_lossy(&t)))
                .unwrap_or_default();
            println!(
                "{:<7} {:04o} {:>12}  {}{}",
                kind_str(n.kind),
                n.mode,
                n.size,
                p.display(),
                link
            );
        }
    }
    Ok(())
}

fn diff(ctx: &Ctx, from: &str, to: &str) -> Result<()> {
    let repo = ctx.open()?;
    let _lock = RepoLock::acquire(repo.backend().clone(), false)?;
    let (_, a) = repo.find_snapshot(from)?;
    let (_, b) = repo.find_snapshot(to)?;
    let index = repo.load_index()?;
    let mut changes: Vec<(char, PathBuf)> = Vec::new();
    diff_trees(
        &repo,
        &index,
        Some(a.tree),
        Some(b.tree),
        Path::new("/"),
        &mut changes,
    )?;
    if ctx.g.json {
        let v: Vec<serde_json::Value> = changes
            .iter()
            .map(|(c, p)| json!({"path": p, "change": match c { '+' => "added", '-' => "removed", _ => "modified" }}))
            .collect();
        ctx.print_json(&serde_json::Value::Array(v));
    } else {
        for (c, p) in &changes {
            println!("{c} {}", p.display());
        }
        let count = |k: char| changes.iter().filter(|(c, _)| *c == k).count();
        ctx.say(format!(
            "{} added, {} removed, {} modified",
            count('+'),
            count('-'),
            count('M')
        ));
    }
    Ok(())
}

fn diff_trees(
    repo: &Repository,
    index: &kura_repo::MasterIndex,
    a: Option<Id>,
    b: Option<Id>,
    at: &Path,
    out: &mut Vec<(char, PathBuf)>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let load = |t: Option<Id>| -> Result<kura_core::tree::Tree> {
        Ok(match t {
            Some(id) => repo.load_tree(index, &id)?,
            None => kura_core::tree::Tree::default(),
        })
    };
    let (na, nb) = (load(a)?, load(b)?);
    let mut names: Vec<&[u8]> = na
        .nodes
        .iter()
        .chain(&nb.nodes)
        .map(|n| n.name.as_slice())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let path = at.join(std::ffi::OsStr::from_bytes(name));
        let (x, y) = (na.find(name), nb.find(name));
        match (&x, &y) {
            (Some(x), None) => {
                out.push(('-', path.clone()));
                if x.kind == NodeKind::Dir {
                    diff_trees(repo, index, x.subtree, None, &path, out)?;
                }
            }
            (None, Some(y)) => {
                out.push(('+', path.clone()));
                if y.kind == NodeKind::Dir {
                    diff_trees(repo, index, None, y.subtree, &path, out)?;
                }
            }
            (Some(x), Some(y)) => {
                if x.kind == NodeKind::Dir && y.kind == NodeKind::Dir {
                    diff_trees(repo, index, x.subtree, y.subtree, &path, out)?;
                } else if x.kind != y.kind
                    || x.content != y.content
                    || x.target != y.target
                    || x.mode != y.mode
                    || x.mtime_ns != y.mtime_ns
                {
                    out.push(('M', path));
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

fn run_restore(ctx: &Ctx, a: RestoreArgs) -> Result<()> {
    let repo = ctx.open()?;
    let (spec, subpath) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s.to_string(), Some(PathBuf::from(p))),
        None => (a.snapshot.clone(), None),
    };
    let (id, snap) = repo.find_snapshot(&spec)?;
    let opts = RestoreOptions {
        target: a.target,
        subpath,
        includes: a.include,
        baseline_source: a.baseline_source,
        threads: ctx.g.threads,
    };
    let bar = Bar::new("restore", ctx.show_progress());
    let out = restore(&repo, &snap, &opts, &bar);
    bar.finish();
    let out = out?;
    if ctx.g.json {
        ctx.print_json(&json!({"snapshot": id, "target": opts.target, "files": out.files, "dirs": out.dirs, "symlinks": out.symlinks, "bytes": out.bytes, "errors": out.errors}));
    } else {
        for e in &out.errors {
            eprintln!("error: {e}");
        }
        ctx.say(format!(
            "restored snapshot {} to {}: {} files, {} dirs, {} symlinks, {}",
            id.short(),
            opts.target.display(),
            out.files,
            out.dirs,
            out.symlinks,
            human(out.bytes)
        ));
    }
    if !out.errors.is_empty() {
        return Err(Partial(format!(
            "{} entries could not be restored",
            out.errors.len()
        ))
        .into());
    }
    Ok(())
}

fn forget(ctx: &Ctx, a: ForgetArgs) -> Result<()> {
    let policy = KeepPolicy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
    };
    if a.snapshots.is_empty() == policy.is_empty() {
        bail!(
            "name snapshots to forget, or give a policy (--keep-last, --keep-daily, ...), not both"
        );
    }
    let repo = ctx.open()?;
    let lock = RepoLock::acquire(repo.backend().clone(), true)?;
    let mut remove: Vec<(Id, Snapshot)> = Vec::new();
    let mut keep: Vec<(Id, Snapshot, Vec<&'static str>)> = Vec::new();
    let policy_mode = !policy.is_empty();
    if policy.is_empty() {
        for spec in &a.snapshots {
            remove.push(repo.find_snapshot(spec)?);
        }
    } else {
        let all = repo.load_snapshots()?;
        // Retention applies per device and set of paths.
        type Group = (String, Vec<String>);
        let mut groups: std::collections::BTreeMap<Group, Vec<(Id, Snapshot)>> = Default::default();
        for (id, s) in all {
            let mut paths = s.paths.clone();
            paths.sort();
            groups
                .entry((s.device.to_string(), paths))
                .or_default()
                .push((id, s));
        }
        let tz = jiff::tz::TimeZone::system();
        for (_, group) in groups {
            let times: Vec<(Id, jiff::Timestamp)> =
                group.iter().map(|(id, s)| (*id, s.time)).collect();
            for d in policy::apply(&policy, &times, &tz) {
                let Some((_, s)) = group.iter().find(|(id, _)| *id == d.id) else {
                    continue;
                };
                if d.keep {
                    keep.push((d.id, s.clone(), d.reasons));
                } else {
                    remove.push((d.id, s.clone()));
                }
            }
        }
    }
    // A kept incremental or differential snapshot keeps the snapshots it was built on, so
    // the chain it belongs to stays whole.
    loop {
        let bases: Vec<Id> = keep.iter().filter_map(|(_, s, _)| s.base).collect();
        let Some(pos) = remove
            .iter()
            .position(|(id, _)| bases.contains(id) && policy_mode)
        else {
            break;
        };
        let (id, s) = remove.remove(pos);
        keep.push((id, s, vec!["base of a kept snapshot"]));
    }
    if !a.dry_run {
        for (id, _) in &remove {
            repo.remove_snapshot(id)?;
        }
    }
    drop(lock);
    if ctx.g.json {
        ctx.print_json(&json!({
            "dry_run": a.dry_run,
            "removed": remove.iter().map(|(id, _)| id.to_hex()).collect::<Vec<_>>(),
            "kept": keep.iter().map(|(id, _, r)| json!({"id": id, "reasons": r})).collect::<Vec<_>>(),
        }));
    } else {
        for (id, s, reasons) in &keep {
            ctx.say(format!(
                "keep   {}  {}  {}  ({})",
                id.short(),
                s.time,
                s.paths.join(" "),
                reasons.join(", ")
            ));
        }
        for (id, s) in &remove {
            ctx.say(format!(
                "{} {}  {}  {}",
                if a.dry_run { "would remove" } else { "remove" },
                id.short(),
                s.time,
                s.paths.join(" ")
            ));
        }
    }
    if a.prune && !a.dry_run {
        return prune(ctx, false);
    }
    Ok(())
}

fn prune(ctx: &Ctx, dry_run: bool) -> Result<()> {
    let repo = ctx.open()?;
    let (_, device) = this_device(ctx, &repo)?;
    let r = kura_repo::prune::prune(&repo, device, dry_run)?;
    if ctx.g.json {
        ctx.print_json(&serde_json::to_value(&r)?);
    } else {
        ctx.say(format!(
            "{}{} packs deleted, {} repacked, {} kept, {} unindexed and {} partial files removed; {} blobs removed; {} freed, {} in use",
            if dry_run { "dry run: " } else { "" },
            r.packs_deleted,
            r.packs_repacked,
            r.packs_kept,
            r.orphans_deleted,
            r.partials_deleted,
            r.blobs_removed,
            human(r.bytes_freed),
            human(r.bytes_after)
        ));
    }
    Ok(())
}

fn check(ctx: &Ctx, read_data: bool) -> Result<()> {
    let repo = ctx.open()?;
    let bar = Bar::new("check", ctx.show_progress() && read_data);
    let threads = if ctx.g.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        ctx.g.threads
    };
    let r = kura_repo::check::check(&repo, read_data, threads, &bar);
    bar.finish();
    let r = r?;
    if ctx.g.json {
        ctx.print_json(&serde_json::to_value(&r)?);
    } else {
        for w in &r.warnings {
            eprintln!("warning: {w}");
        }
        for e in &r.errors {
            eprintln!("error: {e}");
        }
        ctx.say(format!(
            "checked {} snapshots, {} trees, {} packs{}: {}",
            r.snapshots,
            r.trees,
            r.packs,
            if read_data {
                format!(", {} blobs read", r.blobs_read)
            } else {
                String::new()
            },
            if r.errors.is_empty() {
                "no errors".to_string()
            } else {
                format!("{} errors", r.errors.len())
            }
        ));
    }
    if !r.errors.is_empty() {
        return Err(Partial(format!("check found {} errors", r.errors.len())).into());
    }
    Ok(())
}

fn device_add(ctx: &Ctx, name: Option<String>) -> Result<()> {
    let mut repo = ctx.open()?;
    let state = ctx.state(&repo)?;
    if let Some(d) = state.device().filter(|d| repo.device_key(*d).is_some()) {
        bail!("this machine is already device {d} of the repository");
    }
    let host = hostname();
    let device = repo.add_device(name.as_deref().unwrap_or(&host), &host)?;
    state.set_device(device)?;
    if ctx.g.json {
        ctx.print_json(&json!({"device": device.to_string()}));
    } else {
        ctx.say(format!("this machine is now device {device}"));
    }
    Ok(())
}

fn device_list(ctx: &Ctx) -> Result<()> {
    let repo = ctx.open()?;
    let mine = ctx.state(&repo)?.device();
    let mut devs: Vec<_> = repo.devices().collect();
    devs.sort_by_key(|d| d.created);
    if ctx.g.json {
        let v: Vec<serde_json::Value> = devs
            .iter()
            .map(|d| json!({"device": d.device.to_string(), "name": d.name, "host": d.host, "created": d.created, "this_machine": Some(d.device) == mine}))
            .collect();
        ctx.print_json(&serde_json::Value::Array(v));
    } else {
        for d in devs {
            println!(
                "{}  {:<16} {:<16} {}{}",
                d.device,
                d.name,
                d.host,
                d.created,
                if Some(d.device) == mine {
                    "  (this machine)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

fn quickstart(ctx: &Ctx, dir: PathBuf) -> Result<()> {
    let backend = ctx.backend()?;
    match Repository::read_config(backend.as_ref()) {
        Ok(_) => ctx.say(format!(
            "using repository at {}",
            ctx.repo_path()?.display()
        )),
        Err(RepoError::NotFound(_)) => init(ctx)?,
        Err(e) => return Err(e.into()),
    }
    run_backup(ctx, vec![dir], BackupType::Full, vec![], vec![], None)?;
    if !ctx.g.json {
        snapshots(ctx)?;
    }
    check(ctx, true)
}

//! `kura serve` and `kura admin`: the service side of the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use kura_service::server::{ServeOptions, open_store};
use kura_service::sites::{LevelEntry, Placement, PlacementConfig};
use kura_service::store::Contract;
use kura_sites::SiteConfig;
use serde::Deserialize;

/// Options of `kura serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Service config file (TOML: listen, data_dir, tls_cert, tls_key, session_minutes,
    /// header_timeout_secs, replace_every_secs, verify_every_secs, verify_sample_percent,
    /// fraud_threshold, billing_every_secs, [mail], [billing], [[sites]], [[levels]]).
    #[arg(long = "server-config", env = "KURA_SERVER_CONFIG")]
    server_config: Option<PathBuf>,
    /// Address and port to listen on (default 127.0.0.1:8443; port 0 picks a free one).
    #[arg(long, env = "KURA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Where the database, TLS identity and stored data live (default ~/.local/share/kura/service).
    #[arg(long, env = "KURA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Seconds a client may take to send a request's headers before it is disconnected
    /// (default 30).
    #[arg(long, env = "KURA_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// Seconds between placement runs, which complete degraded objects once their sites
    /// return and move data whose placement changed (default 600).
    #[arg(long, env = "KURA_REPLACE_EVERY_SECS")]
    replace_every_secs: Option<u64>,
    /// Seconds between integrity checks of the stored copies (default 86400; the first runs
    /// this long after the start).
    #[arg(long, env = "KURA_VERIFY_EVERY_SECS")]
    verify_every_secs: Option<u64>,
    /// Percent of the objects each periodic check reads, least recently checked first
    /// (default 100).
    #[arg(long, env = "KURA_VERIFY_SAMPLE", value_parser = percent)]
    verify_sample: Option<f64>,
}

fn percent(s: &str) -> Result<f64, String> {
    match s.trim_end_matches('%').parse::<f64>() {
        Ok(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(format!("{s:?} is not a percentage above 0 and at most 100")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    session_minutes: Option<i64>,
    header_timeout_secs: Option<u64>,
    replace_every_secs: Option<u64>,
    verify_every_secs: Option<u64>,
    verify_sample_percent: Option<f64>,
    fraud_threshold: Option<u64>,
    billing_every_secs: Option<u64>,
    billing: Option<kura_billing::Prices>,
    mail: Option<kura_service::notice::MailConfig>,
    #[serde(default)]
    sites: Vec<SiteConfig>,
    #[serde(default)]
    levels: Vec<LevelEntry>,
}

impl ServerConfig {
    /// Reads the service config file, or the defaults without one.
    fn load(path: Option<&std::path::Path>) -> Result<ServerConfig> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("service config {}", p.display()))
            }
            None => Ok(ServerConfig::default()),
        }
    }

    fn placement(&self) -> PlacementConfig {
        PlacementConfig {
            sites: self.sites.clone(),
            levels: self.levels.clone(),
            fraud_threshold: self.fraud_threshold,
        }
    }
}

fn default_data_dir() -> Result<PathBuf> {
    Ok(kura_client::state::user_dir("XDG_DATA_HOME", ".local/share")?.join("service"))
}

/// Runs the service in the foreground until interrupted.
pub fn serve(a: ServeArgs) -> Result<()> {
    let config = ServerConfig::load(a.server_config.as_deref())?;
    let placement = config.placement();
    let tls = match (config.tls_cert, config.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => bail!("tls_cert and tls_key go together"),
    };
    let opts = ServeOptions {
        data_dir: a
            .data_dir
            .or(config.data_dir)
            .map_or_else(default_data_dir, Ok)?,
        listen: a
            .listen
            .or(config.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8443))),
        tls,
        session_ttl: jiff::SignedDuration::from_mins(config.session_minutes.unwrap_or(60)),
        header_timeout: std::time::Duration::from_secs(
            a.header_timeout_secs
                .or(config.header_timeout_secs)
                .unwrap_or(30)
                .max(1),
        ),
        placement,
        mail: config.mail.clone(),
        replace_every: std::time::Duration::from_secs(
            a.replace_every_secs
                .or(config.replace_every_secs)
                .unwrap_or(600)
                .max(1),
        ),
        verify_every: std::time::Duration::from_secs(
            a.verify_every_secs
                .or(config.verify_every_secs)
                .unwrap_or(86_400)
                .max(1),
        ),
        verify_sample: match a.verify_sample.or(config.verify_sample_percent) {
            Some(p) => percent(&p.to_string()).map_err(anyhow::Error::msg)?,
            None => 100.0,
        },
        billing: config.billing.clone(),
        billing_every: std::time::Duration::from_secs(
            config.billing_every_secs.unwrap_or(3600).max(1),
        ),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KURA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(kura_service::server::serve(opts, |addr, id| {
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

/// Options of `kura admin`.
#[derive(Args)]
pub struct AdminArgs {
    /// The service's data directory (the database lives there).
    #[arg(long, env = "KURA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The service config file (for its sites and levels).
    #[arg(long = "server-config", env = "KURA_SERVER_CONFIG")]
    server_config: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// Contracts.
    #[command(subcommand)]
    Contract(ContractCommand),
    /// Storage sites: id, region, current risk, whether each proves its identity now (a new
    /// site gets its marker), authentication failures counted, and copies held.
    Sites,
    /// Bring every object to the placement the rule gives now: complete degraded objects whose
    /// sites returned, and move data whose placement changed (new risk feed, level or home
    /// region). Each move copies, checks, and only then deletes the old copy. Members whose
    /// data moved are notified. `kura serve` does the same every `replace_every_secs`.
    Replace,
    /// Check the stored copies: read every copy of each object, remove its site's envelope
    /// and compare it with what was stored. A damaged or missing copy beside a good one is
    /// repaired and read back (media fault); a copy that opens but holds other bytes is kept
    /// as evidence and its member told (tampering); an object with no good copy is reported
    /// lost, with the snapshots that need it. Needs no member's keys. `kura serve` does the
    /// same every `verify_every_secs`. Exits 3 when anything is lost or tampered with.
    Verify {
        /// Only this member's objects.
        #[arg(long)]
        member: Option<String>,
        /// Percent of the objects to read, least recently checked first (default 100).
        #[arg(long, value_parser = percent)]
        sample: Option<f64>,
    },
    /// The incident history the checks recorded: media faults, tampering, lost objects,
    /// fraudulent sites.
    Incidents {
        /// Only this member's incidents.
        #[arg(long)]
        member: Option<String>,
    },
    /// The billing cycle: settlements, statements, objections, the ledger.
    #[command(subcommand)]
    Billing(AdminBillingCommand),
    /// Copies kept as evidence of tampering.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Risk feeds.
    #[command(subcommand)]
    Risk(RiskCommand),
    /// Site keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The backup log as clients reported it: when each job ran, how it ended, how much it
    /// stored and where (never what: paths stay encrypted in the user's repository).
    Log {
        /// Only this user's jobs.
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password (at least 8 characters) is stored as an Argon2id hash.
    Add {
        /// Login name.
        name: String,
        /// File holding the password.
        #[arg(long)]
        password_file: PathBuf,
        /// Where the user's notices are mailed.
        #[arg(long)]
        email: Option<String>,
    },
    /// Set where a user's notices are mailed (no ADDRESS: mail none; they stay in the outbox).
    Email {
        /// The user.
        name: String,
        /// The address.
        address: Option<String>,
    },
    /// List users with their contracts and usage.
    List,
    /// Let a user log in with a client certificate (mutual TLS) instead of a password.
    Cert {
        /// The user.
        name: String,
        /// The certificate's SHA-256 fingerprint (printed by `kura cert create`).
        #[arg(required_unless_present = "cert", conflicts_with = "cert")]
        fingerprint: Option<String>,
        /// Or the certificate file (PEM) itself.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Withdraw the certificate instead (a lost or stolen device); the user's sessions end.
        #[arg(long)]
        remove: bool,
    },
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// The copies kept as evidence: never read, overwritten or deleted by the service (each
    /// object has its good copies elsewhere).
    List,
    /// Let go of the copies kept at SITE once they have been looked into: each is deleted
    /// from the site (the copy saved under DATA/evidence stays) and forgotten, and the next
    /// placement run puts a good copy where the rule wants one.
    Release {
        /// The site.
        site: String,
        /// Only this member's.
        #[arg(long)]
        member: Option<String>,
        /// Only this object (`data/…`, `snapshots/…`, `config`).
        #[arg(long)]
        object: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminBillingCommand {
    /// Settle the month before DATE: check each member's data (repairing what can be), charge
    /// it by the [billing] prices (level, GB-months stored, incidents), send the statements,
    /// and settle charges whose objection deadline has passed. Running it again charges
    /// nobody twice; `kura serve` runs it every `billing_every_secs` for today.
    Run {
        /// The settlement date, YYYY-MM-DD (default today, UTC).
        #[arg(long)]
        date: Option<jiff::civil::Date>,
    },
    /// Statements, everyone's or one member's.
    Statements {
        /// Only this member's.
        #[arg(long)]
        member: Option<String>,
    },
    /// Resolve a member's objection: the held charge stands (--uphold), is cancelled
    /// (--cancel), or is lowered (--keep AMOUNT); the member is told, with the note.
    #[command(group = clap::ArgGroup::new("decision").required(true).multiple(false))]
    Resolve {
        /// The statement.
        statement: String,
        /// Keep the whole charge.
        #[arg(long, group = "decision")]
        uphold: bool,
        /// Drop the charge.
        #[arg(long, group = "decision")]
        cancel: bool,
        /// Keep this much of it (in the currency's smallest unit).
        #[arg(long, group = "decision")]
        keep: Option<i64>,
        /// What the member is told of the decision.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// The ledger: every posting, each account's balance, and whether it balances.
    Ledger,
}

#[derive(Subcommand)]
enum RiskCommand {
    /// Load a risk feed (CSV `region,hazard,...` or JSON `{"region": {"hazard": score}}`);
    /// its regions replace what earlier feeds said of them.
    Import {
        /// The feed file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Start sealing a site's copies under a new key; copies under older keys stay readable.
    Rotate {
        /// The site id.
        site: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum YesNo {
    Yes,
    No,
}

#[derive(Subcommand)]
enum ContractCommand {
    /// Set a user's contract (replacing any earlier one).
    Set {
        /// The user.
        name: String,
        /// Last day of the access period (YYYY-MM-DD).
        #[arg(long)]
        until: jiff::civil::Date,
        /// Whether the fee is paid.
        #[arg(long, value_enum)]
        paid: YesNo,
        /// Most bytes stored (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_bytes: u64,
        /// Most snapshots (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_archives: u64,
        /// Most sessions over the contract (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_accesses: u64,
        /// The fee plan.
        #[arg(long, default_value = "standard")]
        plan: String,
        /// The member's home region (their second copy is kept in another).
        #[arg(long, default_value = "")]
        home_region: String,
        /// When the membership began, YYYY-MM-DD (default: as recorded, or today).
        #[arg(long)]
        member_since: Option<jiff::civil::Date>,
    },
}

/// Opens the storage sites for an offline operator command.
fn open_storage(
    data_dir: &std::path::Path,
    config: &ServerConfig,
    store: kura_service::store::Store,
) -> Result<(tokio::runtime::Runtime, kura_service::storage::Storage)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new()?;
    let storage = runtime.block_on(kura_service::storage::Storage::open(
        data_dir,
        &config.placement(),
        std::sync::Arc::new(store),
    ))?;
    // A placement run or check the service has under way ends first.
    Ok((
        runtime,
        storage.wait_for_others(std::time::Duration::from_secs(600)),
    ))
}

/// Runs an operator command against the database, offline.
pub fn admin(a: AdminArgs, json: bool) -> Result<()> {
    let config = ServerConfig::load(a.server_config.as_deref())?;
    let data_dir = a
        .data_dir
        .or_else(|| config.data_dir.clone())
        .map_or_else(default_data_dir, Ok)?;
    let store = open_store(&data_dir)?;
    match a.command {
        AdminCommand::User(UserCommand::Add {
            name,
            password_file,
            email,
        }) => {
            let password = crate::cli::read_secret(&password_file, "password file")?;
            if let Some(e) = &email {
                kura_service::store::check_email(e)?;
            }
            let id = store.add_user(&name, &password)?;
            store.set_email(&name, email.as_deref())?;
            if json {
                println!("{}", serde_json::json!({"user": name, "id": id}));
            } else {
                println!(
                    "added user {name} (id {id}); give them a contract with `kura admin contract set {name} ...`"
                );
            }
        }
        AdminCommand::User(UserCommand::Email { name, address }) => {
            store.set_email(&name, address.as_deref())?;
            if json {
                println!("{}", serde_json::json!({"user": name, "email": address}));
            } else {
                match &address {
                    Some(a) => println!("notices to {name} are mailed to {a}"),
                    None => println!("notices to {name} are no longer mailed"),
                }
            }
        }
        AdminCommand::User(UserCommand::Cert {
            name,
            fingerprint,
            cert,
            remove,
        }) => {
            let fp = match (fingerprint, cert) {
                (Some(f), _) => f,
                (None, Some(path)) => kura_service::tls::certificate_fingerprint(&path)?,
                (None, None) => bail!("give the certificate's fingerprint or --cert FILE"),
            };
            if remove {
                store.remove_cert(&name, &fp)?;
                println!("{name} may no longer log in with the client certificate {fp}");
                return Ok(());
            }
            store.add_cert(&name, &fp)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"user": name, "fingerprint": fp.to_ascii_lowercase()})
                );
            } else {
                println!(
                    "{name} may now log in with the client certificate {}",
                    fp.to_ascii_lowercase()
                );
            }
        }
        AdminCommand::User(UserCommand::List) => {
            let users = store.users()?;
            let placement = Placement::load(&data_dir, &config.placement())?;
            let today = jiff::Zoned::now().date();
            let level = |c: &Contract| placement.level_of(c, today).to_string();
            if json {
                let v: Vec<_> = users
                    .iter()
                    .map(|u| {
                        let mut v = serde_json::to_value(u).unwrap_or_default();
                        v["level"] = u.contract.as_ref().map(level).into();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<16} {:>4} {:>12} {:>8}  contract",
                    "user", "id", "bytes", "accesses"
                );
                for u in &users {
                    let c = match &u.contract {
                        Some(c) => format!(
                            "{} until {} {} (max bytes {}, archives {}, accesses {}); level {}, home {}",
                            c.plan,
                            c.until,
                            if c.paid { "paid" } else { "UNPAID" },
                            c.max_bytes,
                            c.max_archives,
                            c.max_accesses,
                            level(c),
                            if c.home_region.is_empty() {
                                "-"
                            } else {
                                &c.home_region
                            },
                        ),
                        None => "none".into(),
                    };
                    println!(
                        "{:<16} {:>4} {:>12} {:>8}  {c}",
                        u.name, u.id, u.bytes, u.accesses
                    );
                }
            }
        }
        AdminCommand::Sites => {
            let (runtime, storage) = open_storage(&data_dir, &config, store)?;
            let rows = runtime.block_on(storage.sites_report())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<16} {:<16} {:>8} {:>9} {:>8}  status",
                    "site", "region", "risk", "failures", "copies"
                );
                for r in &rows {
                    println!(
                        "{:<16} {:<16} {:>8.3} {:>9} {:>8}  {}",
                        r["id"].as_str().unwrap_or_default(),
                        r["region"].as_str().unwrap_or_default(),
                        r["risk"].as_f64().unwrap_or_default(),
                        r["auth_failures"].as_u64().unwrap_or_default(),
                        r["copies"].as_u64().unwrap_or_default(),
                        r["status"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        AdminCommand::Replace => {
            let (runtime, storage) = open_storage(&data_dir, &config, store)?;
            let r = runtime.block_on(storage.replace())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "{} objects checked: {} copies made, {} old copies deleted, {} waiting for a \
                     site, {} unreadable; {} members notified",
                    r.objects, r.copied, r.deleted, r.pending, r.unreadable, r.notified
                );
            }
            if r.unreadable > 0 {
                bail!("{} objects have no readable copy", r.unreadable);
            }
        }
        AdminCommand::Verify { member, sample } => {
            let (runtime, storage) = open_storage(&data_dir, &config, store)?;
            let storage = std::sync::Arc::new(storage);
            let bar = crate::progress::Counter::new("verify", "objects", !json);
            let scope = kura_service::storage::Scope { member, sample };
            let v =
                runtime.block_on(storage.verify(&scope, &|done, total| bar.update(done, total)))?;
            bar.finish();
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for i in &v.incidents {
                    println!("{:<16} user {:<6} {}", i.kind.as_str(), i.user, i.summary);
                }
                println!(
                    "{} objects checked ({} copies, {} bytes) in {:.1} s: {} sound, {} media \
                     faults ({} repaired), {} copies tampered with, {} lost, {} left for a site \
                     that could not be reached; {} members notified",
                    v.objects,
                    v.copies,
                    v.bytes,
                    v.seconds,
                    v.sound,
                    v.media_faults,
                    v.repaired,
                    v.tampered,
                    v.lost,
                    v.unchecked,
                    v.notified
                );
            }
            if v.lost > 0 || v.tampered > 0 || v.repaired < v.media_faults {
                return Err(crate::cli::Partial(format!(
                    "{} lost, {} tampered with, {} media faults not repaired",
                    v.lost,
                    v.tampered,
                    v.media_faults - v.repaired
                ))
                .into());
            }
        }
        AdminCommand::Incidents { member } => {
            let user = member.map(|m| store.user(&m)).transpose()?.map(|u| u.id);
            let list = store.incidents(user, None, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for i in &list {
                    println!(
                        "{:>5} {} user {:<6} {:<16} {}",
                        i.id,
                        i.at,
                        i.user,
                        i.kind.as_str(),
                        i.summary
                    );
                }
            }
        }
        AdminCommand::Evidence(EvidenceCommand::List) => {
            let list = store.tampered_copies(None, None)?;
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|(u, k, n, s)| serde_json::json!({"user": u, "kind": k, "name": n, "site": s}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for (u, k, n, s) in &list {
                    println!("user {u:<6} {s:<16} {k}/{n}");
                }
            }
        }
        AdminCommand::Evidence(EvidenceCommand::Release {
            site,
            member,
            object,
        }) => {
            let (runtime, storage) = open_storage(&data_dir, &config, store)?;
            let n = runtime.block_on(storage.release_evidence(
                &site,
                member.as_deref(),
                object.as_deref(),
            ))?;
            if json {
                println!("{}", serde_json::json!({ "released": n }));
            } else {
                println!("{n} copies at {site} released; `kura admin replace` places them again");
            }
        }
        AdminCommand::Billing(c) => admin_billing(&data_dir, &config, store, c, json)?,
        AdminCommand::Risk(RiskCommand::Import { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let feed = kura_placement::RiskFeed::parse(&text)
                .with_context(|| format!("risk feed {}", file.display()))?;
            let regions = feed.regions().count();
            let mut placement = Placement::load(&data_dir, &config.placement())?;
            placement.import_feed(feed)?;
            if json {
                let sites: Vec<_> = placement
                    .sites
                    .iter()
                    .map(|s| serde_json::json!({"id": s.id, "region": s.region, "risk": placement.risk(s)}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"regions": regions, "sites": sites})
                );
            } else {
                println!("imported risk scores for {regions} regions");
            }
        }
        AdminCommand::Keys(KeysCommand::Rotate { site }) => {
            let placement = Placement::load(&data_dir, &config.placement())?;
            if !placement.sites.iter().any(|s| s.id == site) {
                bail!("no site {site:?} (`kura admin sites` lists them)");
            }
            let mut keyring = placement.keyring()?;
            let version = keyring.rotate(&site);
            placement.save_keyring(&keyring)?;
            let key_ref = kura_placement::envelope::key_ref(&site, version);
            if json {
                println!("{}", serde_json::json!({"site": site, "key_ref": key_ref}));
            } else {
                println!(
                    "new copies at {site} are sealed under {key_ref}; older copies stay readable"
                );
            }
        }
        AdminCommand::Log { user } => {
            if let Some(u) = &user {
                store.user(u)?;
            }
            let lines = store.job_log(user.as_deref())?;
            // Where each member's objects are: the sites holding their copies.
            let mut sites_of = std::collections::HashMap::new();
            for l in &lines {
                if let std::collections::hash_map::Entry::Vacant(e) = sites_of.entry(l.user_id) {
                    let mut sites: Vec<String> = store
                        .objects(l.user_id, None)?
                        .iter()
                        .flat_map(|o| o.good_sites().map(str::to_string).collect::<Vec<_>>())
                        .collect();
                    sites.sort();
                    sites.dedup();
                    e.insert(sites.join(","));
                }
            }
            let stored_at = |id: i64| sites_of.get(&id).cloned().unwrap_or_default();
            if json {
                let v: Vec<_> = lines
                    .iter()
                    .map(|l| {
                        let mut v = serde_json::to_value(l).unwrap_or_default();
                        v["stored_at"] = stored_at(l.user_id).into();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:<12} {:<8} {:<20} {:<11} {:<12} {:>9} {:>12}  {:<8}  stored at",
                    "user", "job", "started", "status", "type", "files", "stored", "snapshot"
                );
                for l in &lines {
                    let r = &l.report;
                    println!(
                        "{:<12} {:<8} {:<20} {:<11} {:<12} {:>9} {:>12}  {:<8}  {}",
                        l.user,
                        r.job.short(),
                        r.started.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                        r.status.to_string(),
                        r.kind.to_string(),
                        r.files,
                        r.stored_added,
                        r.snapshot
                            .as_deref()
                            .map_or_else(|| "-".into(), |s| s.chars().take(8).collect::<String>()),
                        stored_at(l.user_id)
                    );
                }
            }
        }
        AdminCommand::Contract(ContractCommand::Set {
            name,
            until,
            paid,
            max_bytes,
            max_archives,
            max_accesses,
            plan,
            home_region,
            member_since,
        }) => {
            let c = Contract {
                plan,
                until,
                paid: matches!(paid, YesNo::Yes),
                max_bytes,
                max_archives,
                max_accesses,
                home_region,
                member_since,
            };
            store.set_contract(&name, &c)?;
            if json {
                println!("{}", serde_json::json!({"user": name, "contract": c}));
            } else {
                println!("contract of {name} set");
            }
        }
    }
    Ok(())
}

fn admin_billing(
    data_dir: &std::path::Path,
    config: &ServerConfig,
    store: kura_service::store::Store,
    c: AdminBillingCommand,
    json: bool,
) -> Result<()> {
    let prices = config.billing.clone().unwrap_or_default();
    match c {
        AdminBillingCommand::Run { date } => {
            if config.billing.is_none() {
                bail!("no [billing] prices in the service config (--server-config)");
            }
            let date = date.unwrap_or_else(kura_service::billing::today);
            let (runtime, storage) = open_storage(data_dir, config, store)?;
            let storage = std::sync::Arc::new(storage);
            let bar = crate::progress::Counter::new("settle", "members", !json);
            let s = runtime.block_on(kura_service::billing::settle(
                &storage,
                &prices,
                date,
                &|done, total| bar.update(done, total),
            ))?;
            bar.finish();
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "settlement of {} on {}: {} members checked ({} objects lost or tampered \
                     with), {} statements issued, {} already issued, {} charges settled, {} \
                     notices sent",
                    s.period,
                    s.date,
                    s.checked,
                    s.problems,
                    s.issued.len(),
                    s.already.len(),
                    s.settled.len(),
                    s.notified
                );
            }
        }
        AdminBillingCommand::Statements { member } => {
            let user = member.map(|m| store.user(&m)).transpose()?.map(|u| u.id);
            let list = store.statements(user)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for s in &list {
                    println!(
                        "{:<16} user {:<6} {:>16}  {:<9} deadline {}{}",
                        s.id,
                        s.user,
                        s.money(s.total),
                        s.status.as_str(),
                        s.deadline,
                        s.objection
                            .as_deref()
                            .map(|o| format!("  objection: {o}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        AdminBillingCommand::Resolve {
            statement,
            uphold,
            cancel,
            keep,
            note,
        } => {
            let held = store
                .statements(None)?
                .into_iter()
                .find(|s| s.id == statement)
                .with_context(|| format!("no statement {statement}"))?;
            let kept = match (uphold, cancel, keep) {
                (true, _, _) => held.total,
                (_, true, _) => 0,
                (_, _, Some(k)) => k,
                _ => bail!("say --uphold, --cancel or --keep AMOUNT"),
            };
            let s = store.resolve(&statement, kept, &note)?;
            let (runtime, storage) = open_storage(data_dir, config, store)?;
            runtime.block_on(kura_service::billing::tell(&storage))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "statement {} {}: {} kept of {}",
                    s.id,
                    s.status.as_str(),
                    s.money(kept),
                    s.money(s.total)
                );
            }
        }
        AdminBillingCommand::Ledger => {
            let entries = store.ledger()?;
            let postings: Vec<_> = entries.iter().map(|e| e.posting.clone()).collect();
            let balanced = kura_billing::ledger::balanced(&postings);
            let balances = kura_billing::ledger::balances(&postings);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"entries": entries, "balances": balances, "balanced": balanced})
                    )?
                );
            } else {
                for e in &entries {
                    println!(
                        "{:>6} {} {:<24} {:<20} {:>12} {:>12}",
                        e.id, e.at, e.txn, e.posting.account, e.posting.debit, e.posting.credit
                    );
                }
                for (account, b) in &balances {
                    println!("{account:<20} {}", prices.money(*b));
                }
                println!("{}", if balanced { "balanced" } else { "NOT BALANCED" });
            }
            if !balanced {
                bail!("the ledger does not balance");
            }
        }
    }
    Ok(())
}

//! `kura admin`: the operator's commands, run offline against the service's data directory
//! (and its config, for the sites and levels). Each group is a module: users and contracts,
//! sites and placement, integrity checks, billing, the backup log.

mod billing;
mod integrity;
mod log;
mod sites;
mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Subcommand};
use kura_service::config::ServerConfig;
use kura_service::registry::Registry;
use kura_service::storage::Storage;

use crate::ctx::Ctx;
use crate::output::Output;

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
    User(users::UserCommand),
    /// Contracts.
    #[command(subcommand)]
    Contract(users::ContractCommand),
    /// Storage sites: id, region, current risk, whether each proves its identity now (a new
    /// site gets its marker), authentication failures counted, and copies held.
    Sites,
    /// Bring every object to the placement the rule gives now: complete degraded objects whose
    /// sites returned, and move data whose placement changed (new risk feed, level or home
    /// region). Each move copies, checks, and only then deletes the old copy. Users whose
    /// data moved are notified. `kura serve` does the same every `placement_every_secs`.
    #[command(alias = "replace")]
    Place,
    /// Check the stored copies: read every copy of each object, remove its site's envelope
    /// and compare it with what was stored. A damaged or missing copy beside a good one is
    /// repaired and read back (media fault); a copy that opens but holds other bytes is kept
    /// as evidence and its user told (tampering); an object with no good copy is reported
    /// lost, with the snapshots that need it. Needs no user's keys. `kura serve` does the
    /// same every `verify_every_secs`. Exits 3 when anything is lost or tampered with.
    Verify(integrity::VerifyArgs),
    /// The incident history the checks recorded: media faults, tampering, lost objects,
    /// fraudulent sites.
    Incidents {
        /// Only this user's incidents.
        #[arg(long = "member", id = "member")]
        user: Option<String>,
    },
    /// The billing cycle: settlements, statements, objections, the ledger.
    #[command(subcommand)]
    Billing(billing::AdminBillingCommand),
    /// Copies kept as evidence of tampering.
    #[command(subcommand)]
    Evidence(integrity::EvidenceCommand),
    /// Risk feeds.
    #[command(subcommand)]
    Risk(sites::RiskCommand),
    /// Site keys.
    #[command(subcommand)]
    Keys(sites::KeysCommand),
    /// The backup log as clients reported it: when each job ran, how it ended, how much it
    /// stored and where (never what: paths stay encrypted in the user's repository).
    Log {
        /// Only this user's jobs.
        #[arg(long = "member", id = "member")]
        user: Option<String>,
    },
}

/// What every operator command works on.
struct Admin {
    data_dir: PathBuf,
    config: ServerConfig,
    registry: Registry,
    out: Output,
}

impl Admin {
    /// Opens the storage sites, once a placement run or check the service has under way
    /// ends (up to ten minutes).
    fn storage(self) -> Result<(tokio::runtime::Runtime, Arc<Storage>, Output)> {
        let (runtime, storage) = open_storage(&self.data_dir, &self.config, self.registry)?;
        Ok((runtime, Arc::new(storage), self.out))
    }
}

fn open_storage(
    data_dir: &Path,
    config: &ServerConfig,
    registry: Registry,
) -> Result<(tokio::runtime::Runtime, Storage)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new()?;
    let storage = runtime.block_on(Storage::open(
        data_dir,
        &config.placement(),
        Arc::new(registry),
    ))?;
    Ok((
        runtime,
        storage.wait_for_others(std::time::Duration::from_secs(600)),
    ))
}

/// Runs an operator command against the database, offline.
pub fn admin(ctx: &Ctx, a: AdminArgs) -> Result<()> {
    let config = ServerConfig::load(a.server_config.as_deref())?;
    let data_dir = super::serve::data_dir(&config, a.data_dir)?;
    let registry = kura_service::serve::open_registry(&data_dir)?;
    let admin = Admin {
        data_dir,
        config,
        registry,
        out: ctx.out,
    };
    match a.command {
        AdminCommand::User(c) => users::user(admin, c),
        AdminCommand::Contract(c) => users::contract(admin, c),
        AdminCommand::Sites => sites::sites(admin),
        AdminCommand::Place => sites::place(admin),
        AdminCommand::Verify(v) => integrity::verify(admin, v),
        AdminCommand::Incidents { user } => integrity::incidents(admin, user),
        AdminCommand::Evidence(c) => integrity::evidence(admin, c),
        AdminCommand::Billing(c) => billing::billing(admin, c),
        AdminCommand::Risk(c) => sites::risk(admin, c),
        AdminCommand::Keys(c) => sites::keys(admin, c),
        AdminCommand::Log { user } => log::log(admin, user),
    }
}

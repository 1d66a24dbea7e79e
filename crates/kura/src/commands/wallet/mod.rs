//! `kura wallet`: a wallet of electronic value on this machine (a directory: its settings, its
//! keys, its holdings), and its deposits at and withdrawals from a vault
//! (docs/requirements/value-vault.md requirements 1 to 4).
//!
//! Here: the command line and the listing's output. The wallet's directory is `dir`; the
//! commands are grouped by what they work on: the holdings on this machine (`holdings`), the
//! vault (`deposits`) and the key manager (`escrow`).

mod deposits;
mod dir;
mod escrow;
mod holdings;

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kura_core::crypto::Key;
use kura_core::id::unhex;
use kura_wallet::conditions::{Conditions, Shortage};
use kura_wallet::escrow::Rule;
use kura_wallet::record::{DEFAULT_DIGEST, Field};
use kura_wallet::sign::SigningKey;
use kura_wallet::wallet::{Holding, Wallet};
use serde_json::json;

use self::dir::{Dir, Settings, dir_of};
pub use self::escrow::OwnerArgs;
use crate::ctx::{Ctx, write_private};

/// `kura wallet` and where the wallet lives.
#[derive(Args)]
pub struct WalletArgs {
    /// The wallet's directory (default ~/.local/share/kura/wallet).
    #[arg(long, env = "KURA_WALLET_DIR", global = true)]
    wallet_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: WalletCommand,
}

/// Wallet commands.
#[derive(Subcommand)]
pub enum WalletCommand {
    /// Make a wallet: its keys, its capacity, and the vault it deposits at (the address, the
    /// TLS fingerprint and the signing key `kura vault serve` printed).
    Init {
        /// Bytes it can hold, as a card's memory (default 16384).
        #[arg(long, default_value_t = 16384)]
        capacity: usize,
        /// The vault's address, https://HOST:PORT.
        #[arg(long)]
        vault: String,
        /// The vault's TLS certificate fingerprint (SHA-256).
        #[arg(long)]
        vault_fingerprint: String,
        /// The vault's signing key (hex).
        #[arg(long)]
        vault_key: String,
        /// Keep a value after depositing it (by default the certificate replaces it).
        #[arg(long)]
        keep_deposited: bool,
    },
    /// Add a value record.
    Add(Box<AddArgs>),
    /// List what the wallet holds, from its records and its certificates' digests alone
    /// (nothing is asked of the vault).
    List {
        /// Only certificates: the deposited values, listed from their digests alone (no
        /// listing contacts the vault, so `--offline` is the same).
        #[arg(long, visible_alias = "offline")]
        certificates: bool,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only those whose validity ends within this many days.
        #[arg(long)]
        ending_within: Option<i64>,
    },
    /// Show one holding.
    Show {
        /// Its number.
        id: u64,
    },
    /// Remove a holding.
    Remove {
        /// Its number.
        id: u64,
    },
    /// Spend from a value's balance.
    Use {
        /// Its number.
        id: u64,
        /// How much.
        amount: u64,
    },
    /// Deposit a value at the vault: it is sealed and signed here, and the vault's certificate
    /// is kept only if it is signed by the vault's key and names exactly what was sent.
    Deposit {
        /// The value's number.
        id: u64,
    },
    /// Withdraw a deposited value with its certificate: its signature is checked before it
    /// is opened, and it takes the certificate's place.
    Withdraw {
        /// The certificate's number.
        id: u64,
        #[command(flatten)]
        room: RoomArgs,
    },
    /// Split the value key into three shares, any two of which rebuild it: one escrowed at a
    /// key manager (released only to the credentials given here), one put inside every value
    /// deposited from now on (the vault keeps it), one written to the recovery file for the
    /// owner to keep apart (print it). Neither service alone can rebuild the key.
    Escrow {
        /// The key manager's address, https://HOST:PORT.
        #[arg(long)]
        keyman: String,
        /// The key manager's TLS certificate fingerprint (SHA-256).
        #[arg(long)]
        keyman_fingerprint: String,
        /// Release on any one of the credentials (by default all must match).
        #[arg(long)]
        any: bool,
        /// Where to write the recovery file (the third share, the wallet's name, the key
        /// manager and the vault): keep it off this device.
        #[arg(long)]
        recovery_file: PathBuf,
        #[command(flatten)]
        owner: OwnerArgs,
    },
    /// After this device's wallet is lost: get its deposited values back into this wallet.
    /// The key manager checks the credentials, withdraws each value the old certificates name
    /// from the vault, checks and opens it, and hands it over.
    Recover {
        /// The recovery file `kura wallet escrow` wrote.
        #[arg(long)]
        recovery_file: PathBuf,
        /// The lost wallet's holdings.json (from a backup), whose certificates name the values.
        #[arg(long)]
        holdings: PathBuf,
        #[command(flatten)]
        owner: OwnerArgs,
        #[command(flatten)]
        room: RoomArgs,
    },
    /// Rebuild a lost value key (value.key) from the key manager's share, released to the
    /// credentials, and either the vault's share inside one deposited value (--certificate,
    /// which withdraws that value) or the recovery file's share.
    RebuildKey {
        /// The certificate whose value gives the vault's share.
        #[arg(long, required_unless_present = "recovery_file")]
        certificate: Option<u64>,
        /// The recovery file `kura wallet escrow` wrote.
        #[arg(long, conflicts_with = "certificate")]
        recovery_file: Option<PathBuf>,
        #[command(flatten)]
        owner: OwnerArgs,
    },
    /// Re-key the wallet after its keys are lost or feared stolen: the key manager opens every
    /// value this wallet's certificates name, seals and signs it again under new keys, has
    /// the vault replace them all or none, and delivers the new keys here. Run again after
    /// any failure: it finishes what was begun.
    Rekey {
        /// The recovery file `kura wallet escrow` wrote (it names the wallet and the key
        /// manager).
        #[arg(long)]
        recovery_file: PathBuf,
        /// Where to write the new recovery file (the old one no longer rebuilds the key).
        #[arg(long)]
        new_recovery_file: PathBuf,
        #[command(flatten)]
        owner: OwnerArgs,
    },
    /// Deposit every value the conditions choose (`kura wallet conditions` shows them); each
    /// one's certificate takes its place. Run it by hand, or from a timer with --when-due.
    AutoBackup {
        /// Only if the last periodic run is at least the conditions' every_days old.
        #[arg(long)]
        when_due: bool,
    },
    /// Show, or change, the conditions that choose values for auto-backup and for the backup
    /// policy, and the policy when a value does not fit.
    Conditions(Box<ConditionsArgs>),
}

/// Changes to the conditions; none shows them.
#[derive(Args)]
pub struct ConditionsArgs {
    /// Values of these kinds (comma-separated).
    #[arg(long, value_delimiter = ',')]
    kinds: Option<Vec<String>>,
    /// Values of at least this many bytes.
    #[arg(long)]
    min_bytes: Option<usize>,
    /// Values larger than this share (0 to 1) of the free memory.
    #[arg(long)]
    over_free_share: Option<f64>,
    /// Values valid for more than this many days yet (or always).
    #[arg(long)]
    ending_after_days: Option<i64>,
    /// Values held for at least this many days.
    #[arg(long)]
    held_days: Option<i64>,
    /// all (every condition set must hold) or any (one is enough).
    #[arg(long)]
    rule: Option<Rule>,
    /// Days between periodic runs (`auto-backup --when-due`).
    #[arg(long)]
    every_days: Option<i64>,
    /// What happens when a value does not fit: abort, backup or choose.
    #[arg(long)]
    on_shortage: Option<Shortage>,
    /// Conditions to drop: kinds, min-bytes, over-free-share, ending-after-days, held-days,
    /// every-days (comma-separated).
    #[arg(long, value_delimiter = ',')]
    unset: Vec<String>,
}

impl ConditionsArgs {
    /// Applies the changes; whether there were any.
    fn apply(self, c: &mut Conditions, on_shortage: &mut Shortage) -> Result<bool> {
        let mut changed = false;
        let mut set = |changed_here: bool| changed |= changed_here;
        for name in &self.unset {
            match name.as_str() {
                "kinds" => c.kinds.clear(),
                "min-bytes" => c.min_bytes = None,
                "over-free-share" => c.over_free_share = None,
                "ending-after-days" => c.ending_after_days = None,
                "held-days" => c.held_days = None,
                "every-days" => c.every_days = None,
                other => bail!(
                    "--unset {other}: kinds, min-bytes, over-free-share, ending-after-days, \
                     held-days or every-days"
                ),
            }
            set(true);
        }
        if let Some(k) = self.kinds {
            c.kinds = k;
            set(true);
        }
        if let Some(share) = self.over_free_share {
            if !(0.0..=1.0).contains(&share) {
                bail!("--over-free-share is a share from 0 to 1");
            }
            c.over_free_share = Some(share);
            set(true);
        }
        for (flag, field) in [
            (self.ending_after_days, &mut c.ending_after_days),
            (self.held_days, &mut c.held_days),
            (self.every_days, &mut c.every_days),
        ] {
            if let Some(days) = flag {
                *field = Some(days);
                set(true);
            }
        }
        if let Some(b) = self.min_bytes {
            c.min_bytes = Some(b);
            set(true);
        }
        if let Some(r) = self.rule {
            c.rule = r;
            set(true);
        }
        if let Some(p) = self.on_shortage {
            *on_shortage = p;
            set(true);
        }
        Ok(changed)
    }
}

/// A value record's fields.
#[derive(Args)]
pub struct AddArgs {
    /// What kind: movie-ticket, concert-ticket, prepaid, ...
    #[arg(long)]
    kind: String,
    /// Its name.
    #[arg(long)]
    name: String,
    /// Price of one.
    #[arg(long, default_value_t = 0)]
    unit_price: u64,
    /// How many.
    #[arg(long, default_value_t = 1)]
    quantity: u64,
    /// Price of all.
    #[arg(long, default_value_t = 0)]
    total: u64,
    /// Where it is used.
    #[arg(long, default_value = "")]
    place: String,
    /// First day it may be used (YYYY-MM-DD); with --valid-until.
    #[arg(long, requires = "valid_until")]
    valid_from: Option<jiff::civil::Date>,
    /// Last day it may be used (YYYY-MM-DD).
    #[arg(long)]
    valid_until: Option<jiff::civil::Date>,
    /// Balance left to spend.
    #[arg(long, default_value_t = 0)]
    balance: u64,
    /// Anything else.
    #[arg(long, default_value = "")]
    remarks: String,
    #[command(flatten)]
    room: RoomArgs,
}

/// What to do if a value does not fit.
#[derive(Args, Default)]
pub struct RoomArgs {
    /// When it does not fit: abort, backup (deposit values the conditions choose until it
    /// fits) or choose (deposit the values picked with --deposit, or asked for on a
    /// terminal). Default: the wallet's on_shortage setting (abort).
    #[arg(long)]
    on_shortage: Option<Shortage>,
    /// With --on-shortage choose: the values to deposit (numbers, comma-separated).
    #[arg(long, value_delimiter = ',')]
    deposit: Option<Vec<u64>>,
}

/// `kura wallet ...`.
pub fn wallet(ctx: &Ctx, a: WalletArgs) -> Result<()> {
    let path = dir_of(a.wallet_dir)?;
    let open = || Dir::open(path.clone());
    match a.command {
        WalletCommand::Init {
            capacity,
            vault,
            vault_fingerprint,
            vault_key,
            keep_deposited,
        } => init(
            ctx,
            path,
            capacity,
            vault,
            vault_fingerprint,
            vault_key,
            keep_deposited,
        ),
        WalletCommand::Add(a) => holdings::add(ctx, open()?, *a),
        WalletCommand::List {
            certificates,
            kind,
            ending_within,
        } => holdings::list(ctx, open()?, certificates, kind, ending_within),
        WalletCommand::Show { id } => holdings::show(ctx, open()?, id),
        WalletCommand::Remove { id } => holdings::remove(ctx, open()?, id),
        WalletCommand::Use { id, amount } => holdings::spend(ctx, open()?, id, amount),
        WalletCommand::Deposit { id } => deposits::deposit(ctx, open()?, id),
        WalletCommand::Withdraw { id, room } => deposits::withdraw(ctx, open()?, id, room),
        WalletCommand::Escrow {
            keyman,
            keyman_fingerprint,
            any,
            recovery_file,
            owner,
        } => escrow::escrow(
            ctx,
            open()?,
            keyman,
            keyman_fingerprint,
            any,
            recovery_file,
            owner,
        ),
        WalletCommand::Recover {
            recovery_file,
            holdings,
            owner,
            room,
        } => escrow::recover(ctx, open()?, recovery_file, holdings, owner, room),
        WalletCommand::Rekey {
            recovery_file,
            new_recovery_file,
            owner,
        } => escrow::rekey(
            ctx,
            Dir::open_rekeying(path.clone())?,
            recovery_file,
            new_recovery_file,
            owner,
        ),
        WalletCommand::AutoBackup { when_due } => deposits::auto_backup(ctx, open()?, when_due),
        WalletCommand::Conditions(a) => conditions(ctx, open()?, *a),
        WalletCommand::RebuildKey {
            certificate,
            recovery_file,
            owner,
        } => escrow::rebuild_key(ctx, open()?, certificate, recovery_file, owner),
    }
}

/// `kura wallet init`.
fn init(
    ctx: &Ctx,
    path: PathBuf,
    capacity: usize,
    vault: String,
    vault_fingerprint: String,
    vault_key: String,
    keep_deposited: bool,
) -> Result<()> {
    if path.join("wallet.toml").exists() {
        bail!("a wallet is already in {}", path.display());
    }
    if unhex(&vault_key).is_none_or(|k| k.len() != 32) {
        bail!("--vault-key is the 64 hex digits `kura vault serve` printed as its key");
    }
    kura_repo::backend::private_dir(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let settings = Settings {
        capacity,
        vault,
        vault_fingerprint,
        vault_key,
        keep_deposited,
        digest: DEFAULT_DIGEST.to_vec(),
        keyman: None,
        keyman_fingerprint: None,
        vault_share: None,
        conditions: Conditions::default(),
        on_shortage: Shortage::default(),
    };
    write_private(&path.join("signing.key"), SigningKey::generate().pkcs8())?;
    let d = Dir {
        path: path.clone(),
        wallet: Wallet::new(capacity),
        settings,
        since: HashMap::new(),
        last_auto_backup: None,
        recovered: Vec::new(),
    };
    d.write_value_key(&kura_core::crypto::random_bytes::<16>(), &Key::random())?;
    d.save_settings()?;
    d.save()?;
    ctx.out
        .emit(&json!({ "wallet": path, "capacity": capacity }), || {
            format!("a wallet of {capacity} bytes in {}", path.display())
        });
    Ok(())
}

/// `kura wallet conditions`.
fn conditions(ctx: &Ctx, mut d: Dir, a: ConditionsArgs) -> Result<()> {
    let (mut conditions, mut policy) = (d.settings.conditions.clone(), d.settings.on_shortage);
    if a.apply(&mut conditions, &mut policy)? {
        d.settings.conditions = conditions;
        d.settings.on_shortage = policy;
        d.save_settings()?;
    }
    let shown = json!({
        "conditions": d.settings.conditions,
        "on_shortage": d.settings.on_shortage,
    });
    ctx.out.emit(&shown, || {
        toml::to_string(&shown).unwrap_or_else(|_| shown.to_string())
    });
    Ok(())
}

/// What a command's output adds when it deposited values to make room.
fn made_room(deposited: &[u64]) -> String {
    match deposited {
        [] => String::new(),
        ids => format!("; deposited {ids:?} at the vault to make room"),
    }
}

/// A holding as JSON, for `list` and `show`.
fn describe(id: u64, h: &Holding) -> serde_json::Value {
    match h {
        Holding::Value(r) => json!({ "id": id, "type": "value", "record": r }),
        Holding::Certificate(c) => json!({
            "id": id, "type": "certificate", "counter": c.counter,
            "digest": c.digest.0.iter().map(|(n, v)| json!({ "field": n, "value": v })).collect::<Vec<_>>(),
        }),
    }
}

/// A holding as one line of `list`.
fn line(id: u64, h: &Holding) -> String {
    match h {
        Holding::Value(r) => format!(
            "{id:>4}  value        {:<16} {}{}",
            r.kind,
            r.name,
            r.validity
                .as_ref()
                .map_or(String::new(), |v| format!("  (until {})", v.until))
        ),
        Holding::Certificate(c) => format!(
            "{id:>4}  certificate  {:<16} {}",
            c.digest.get(Field::Kind).unwrap_or("-"),
            c.digest
                .0
                .iter()
                .filter(|(n, _)| n != "kind")
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

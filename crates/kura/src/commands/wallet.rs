//! `kura wallet`: a wallet of electronic value on this machine (a directory: its settings, its
//! keys, its holdings), and its deposits at and withdrawals from a vault
//! (docs/requirements/value-vault.md requirements 1 to 4).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use jiff::civil::Date;
use kura_core::crypto::Key;
use kura_core::id::{hex, unhex};
use kura_keyman::client::KeymanClient;
use kura_vault::client::{ClientError, VaultClient};
use kura_wallet::certificate::Certificate;
use kura_wallet::conditions::{Conditions, Shortage};
use kura_wallet::escrow::{Credentials, Delivery, Enrol, Rule, key_check};
use kura_wallet::record::{DEFAULT_DIGEST, Field, Validity, ValueRecord};
use kura_wallet::registered::Registered;
use kura_wallet::sign::SigningKey;
use kura_wallet::wallet::{Filter, Holding, Wallet};
use serde::{Deserialize, Serialize};
use serde_json::json;

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
        /// Only certificates.
        #[arg(long)]
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
    /// Deposit every value the conditions choose (`kura wallet conditions` shows them). Run it
    /// by hand, or from a timer with --when-due.
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

/// A re-keying delivered and not yet applied to the wallet's files (`rekey.json`).
#[derive(Serialize, Deserialize)]
struct Delivered {
    delivery: Delivery,
    /// The holdings whose certificates were sent, in order.
    ids: Vec<u64>,
    keyman: String,
    keyman_fingerprint: String,
}

/// How the owner proves who they are to the key manager.
#[derive(Args)]
pub struct OwnerArgs {
    /// A file holding the owner's password at the key manager (or set KURA_OWNER_PASSWORD).
    /// Not the repository's passphrase (--password-file).
    #[arg(long)]
    owner_password_file: Option<PathBuf>,
    /// A file holding what the identity card yields when read.
    #[arg(long)]
    id_card_file: Option<PathBuf>,
    /// A file holding a biometric reading: numbers separated by spaces, commas or lines.
    #[arg(long)]
    biometric_file: Option<PathBuf>,
}

impl OwnerArgs {
    pub(crate) fn credentials(&self) -> Result<Credentials> {
        let text = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|t| t.trim_end_matches(['\n', '\r']).to_string())
                .with_context(|| format!("reading {}", p.display()))
        };
        let password = match &self.owner_password_file {
            Some(p) => Some(text(p)?),
            None => std::env::var("KURA_OWNER_PASSWORD").ok(),
        };
        let biometric = self
            .biometric_file
            .as_deref()
            .map(|p| {
                text(p)?
                    .split(|c: char| c.is_whitespace() || c == ',')
                    .filter(|w| !w.is_empty())
                    .map(|w| {
                        w.parse::<f32>()
                            .with_context(|| format!("{}: {w:?} is not a number", p.display()))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?;
        let c = Credentials {
            password,
            id_card: self.id_card_file.as_deref().map(text).transpose()?,
            biometric,
        };
        if c.methods().is_empty() {
            bail!(
                "no credentials: give --owner-password-file (or KURA_OWNER_PASSWORD), \
                 --id-card-file or --biometric-file"
            );
        }
        Ok(c)
    }
}

/// The recovery file: what an owner needs, with their credentials, to rebuild the value key or
/// restore values after the device is lost.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recovery {
    /// The lost wallet's public key: its name at the key manager.
    wallet: String,
    keyman: String,
    keyman_fingerprint: String,
    /// The value key's id, and a check that a rebuilt key is the right one.
    key_id: String,
    key_check: String,
    /// The third share.
    share: String,
}

fn read_recovery(p: &Path) -> Result<(Recovery, [u8; 32])> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let r: Recovery =
        toml::from_str(&text).with_context(|| format!("{} is not a recovery file", p.display()))?;
    let wallet = unhex(&r.wallet)
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{}: wallet is not 32 bytes of hex", p.display()))?;
    Ok((r, wallet))
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

/// What a command's output adds when it deposited values to make room.
fn made_room(deposited: &[u64]) -> String {
    match deposited {
        [] => String::new(),
        ids => format!("; deposited {ids:?} at the vault to make room"),
    }
}

/// The wallet's settings file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    capacity: usize,
    vault: String,
    vault_fingerprint: String,
    vault_key: String,
    keep_deposited: bool,
    digest: Vec<Field>,
    /// Set by `kura wallet escrow`: the key manager, and the vault's share of the value key
    /// that every deposit carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyman: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyman_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vault_share: Option<String>,
    /// Which values `kura wallet auto-backup` and the backup policy deposit.
    #[serde(default)]
    conditions: Conditions,
    /// What happens when a value arriving or coming back does not fit.
    #[serde(default)]
    on_shortage: Shortage,
}

/// One holding as the wallet keeps it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Saved {
    Value {
        id: u64,
        record: ValueRecord,
        /// The day the wallet got it (the conditions' holding time).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Date>,
    },
    Certificate {
        id: u64,
        certificate: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Holdings {
    next: u64,
    holdings: Vec<Saved>,
    /// The day of the last periodic auto-backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_auto_backup: Option<Date>,
}

/// An open wallet directory.
struct Dir {
    path: PathBuf,
    settings: Settings,
    wallet: Wallet,
    since: HashMap<u64, Date>,
    last_auto_backup: Option<Date>,
}

fn today() -> Date {
    jiff::Zoned::now().date()
}

fn dir_of(a: Option<PathBuf>) -> Result<PathBuf> {
    match a {
        Some(d) => Ok(d),
        None => Ok(kura_client::state::user_dir("XDG_DATA_HOME", ".local/share")?.join("wallet")),
    }
}

impl Dir {
    fn open(path: PathBuf) -> Result<Dir> {
        let read = |name: &str| {
            let p = path.join(name);
            std::fs::read_to_string(&p).with_context(|| {
                format!(
                    "reading {} (`kura wallet init` makes a wallet)",
                    p.display()
                )
            })
        };
        let settings: Settings = toml::from_str(&read("wallet.toml")?)
            .with_context(|| format!("{}/wallet.toml", path.display()))?;
        let saved: Holdings = serde_json::from_str(&read("holdings.json")?)
            .with_context(|| format!("{}/holdings.json", path.display()))?;
        let mut wallet = Wallet::new(settings.capacity);
        wallet.next = saved.next;
        let mut since = HashMap::new();
        for h in saved.holdings {
            wallet.holdings.push(match h {
                Saved::Value {
                    id,
                    record,
                    since: day,
                } => {
                    if let Some(day) = day {
                        since.insert(id, day);
                    }
                    (id, Holding::Value(record))
                }
                Saved::Certificate { id, certificate } => {
                    let b = unhex(&certificate).context("a certificate in holdings.json")?;
                    (id, Holding::Certificate(Certificate::parse(&b)?))
                }
            });
        }
        Ok(Dir {
            path,
            settings,
            wallet,
            since,
            last_auto_backup: saved.last_auto_backup,
        })
    }

    /// Writes the holdings whole, by rename: a killed command leaves the old ones or the new.
    fn save(&self) -> Result<()> {
        let holdings = Holdings {
            next: self.wallet.next,
            holdings: self
                .wallet
                .holdings
                .iter()
                .map(|(id, h)| match h {
                    Holding::Value(r) => Saved::Value {
                        id: *id,
                        record: r.clone(),
                        since: self.since.get(id).copied(),
                    },
                    Holding::Certificate(c) => Saved::Certificate {
                        id: *id,
                        certificate: hex(&c.to_bytes()),
                    },
                })
                .collect(),
            last_auto_backup: self.last_auto_backup,
        };
        write_private(
            &self.path.join("holdings.json"),
            &serde_json::to_vec_pretty(&holdings)?,
        )
    }

    fn signing_key(&self) -> Result<SigningKey> {
        let b = std::fs::read(self.path.join("signing.key")).context("the wallet's signing key")?;
        Ok(SigningKey::from_pkcs8(&b)?)
    }

    fn value_key(&self) -> Result<([u8; 16], Key)> {
        let text = std::fs::read_to_string(self.path.join("value.key"))
            .context("the wallet's value key")?;
        let b = unhex(text.trim()).context("value.key is not hex")?;
        if b.len() != 48 {
            bail!("value.key is not a key id and a key");
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[..16]);
        let mut k = [0u8; 32];
        k.copy_from_slice(&b[16..]);
        Ok((id, Key::from_bytes(k)))
    }

    fn write_value_key(&self, id: &[u8; 16], key: &Key) -> Result<()> {
        let mut value = id.to_vec();
        value.extend_from_slice(key.expose());
        write_private(
            &self.path.join("value.key"),
            format!("{}\n", hex(&value)).as_bytes(),
        )
    }

    fn save_settings(&self) -> Result<()> {
        write_private(
            &self.path.join("wallet.toml"),
            toml::to_string(&self.settings)?.as_bytes(),
        )
    }

    fn keyman(&self) -> Result<KeymanClient> {
        match (&self.settings.keyman, &self.settings.keyman_fingerprint) {
            (Some(url), Some(fp)) => Ok(KeymanClient::new(url, fp)?),
            _ => bail!("this wallet's key is not escrowed (`kura wallet escrow`)"),
        }
    }

    /// Withdraws the value `cert` names and keeps its bytes in `withdrawn/` before anything
    /// else can fail (the vault has retired the record); the value as the vault returned it,
    /// checked to be the one the certificate names, and where its bytes are kept.
    fn withdraw(&self, cert: &Certificate, signer: &SigningKey) -> Result<(Registered, PathBuf)> {
        cert.verify(&self.vault_key()?)?;
        let kept = self.path.join("withdrawn");
        std::fs::create_dir_all(&kept)?;
        let name = format!("{}-{}", cert.counter, hex(&cert.payload_hash[..8]));
        let file = kept.join(format!("{name}.kreg"));
        if let Ok(bytes) = std::fs::read(&file) {
            // Received before, and not yet taken in.
            return Ok((Registered::parse(&bytes)?, file));
        }
        // The request's nonce is kept before it is sent: if the answer is lost, asking again
        // with it gets the value the vault retired for this request.
        let nonce_file = kept.join(format!("{name}.nonce"));
        let nonce = match std::fs::read(&nonce_file) {
            Ok(n) => n
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} is damaged", nonce_file.display()))?,
            Err(_) => {
                let n: [u8; 16] = kura_core::crypto::random_bytes();
                write_private(&nonce_file, &n)?;
                n
            }
        };
        let bytes = self.vault()?.withdraw(cert, nonce, signer)?;
        write_private(&file, &bytes)?;
        std::fs::remove_file(&nonce_file)?;
        let reg = Registered::parse(&bytes)?;
        if reg.payload_hash() != cert.payload_hash {
            bail!("the vault returned another value than the certificate names");
        }
        Ok((reg, file))
    }

    /// Deposits value `id` at the vault; its certificate takes the value's place (or is kept
    /// beside it when `keep`). The certificate is kept only if the trusted vault signed it
    /// and it names exactly what was sent; otherwise the value stays.
    fn deposit(&mut self, id: u64, keep: bool) -> Result<(u64, Certificate)> {
        let Some((_, Holding::Value(record))) =
            self.wallet.holdings.iter().find(|(n, _)| *n == id).cloned()
        else {
            bail!("item {id} is not a value this wallet holds");
        };
        let signer = self.signing_key()?;
        let (key_id, key) = self.value_key()?;
        let vault_share = self
            .settings
            .vault_share
            .as_deref()
            .map(|s| unhex(s).context("vault_share in wallet.toml is not hex"))
            .transpose()?;
        let sent = Registered::seal(
            &hex(&signer.public()),
            &record,
            &self.settings.digest,
            (&key_id, &key),
            &signer,
            vault_share,
        );
        let cert = self.vault()?.deposit(sent.to_bytes())?;
        cert.confirms(&self.vault_key()?, &sent).context(
            "the deposit is aborted: the vault's certificate does not confirm what was sent \
             (the value stays in the wallet)",
        )?;
        let cid = if keep {
            self.wallet.add(Holding::Certificate(cert.clone()))?
        } else {
            self.wallet
                .replace(id, Holding::Certificate(cert.clone()))?;
            self.since.remove(&id);
            id
        };
        self.save()?;
        Ok((cid, cert))
    }

    /// Makes room for `need` bytes as `policy` says: refuses, deposits values chosen by the
    /// conditions, or deposits the values the owner picks (`picked`, or asked on a
    /// terminal). Deposits made to free room always replace their values. The values
    /// deposited.
    fn make_room(&mut self, need: usize, room: &RoomArgs) -> Result<Vec<u64>> {
        let free = self.wallet.free();
        if need <= free {
            return Ok(Vec::new());
        }
        let policy = room.on_shortage.unwrap_or(self.settings.on_shortage);
        let short = format!("not enough room in the wallet: {need} bytes needed, {free} free");
        let chosen = match policy {
            Shortage::Abort => bail!(
                "{short} (on-shortage: abort; `--on-shortage backup` deposits values chosen by \
                 the conditions, `--on-shortage choose --deposit IDS` the ones you pick)"
            ),
            Shortage::Backup => self.settings.conditions.select(
                &self.wallet,
                |id| self.since.get(&id).copied(),
                today(),
            ),
            Shortage::Choose => match &room.deposit {
                Some(ids) => ids.clone(),
                None if std::io::stdin().is_terminal() => self.ask_which(&short)?,
                None => bail!(
                    "{short}: pick values to deposit with --deposit IDS (values: {})",
                    self.values_line()
                ),
            },
        };
        let plan = kura_wallet::conditions::plan(
            &self.wallet,
            &chosen,
            &self.settings.digest,
            need,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "{short}, and depositing {} would not free enough ({e}); nothing was deposited",
                if policy == Shortage::Backup {
                    "every value the conditions choose"
                } else {
                    "the values picked"
                }
            )
        })?;
        for id in &plan {
            self.deposit(*id, false)?;
        }
        Ok(plan)
    }

    fn values_line(&self) -> String {
        kura_wallet::conditions::candidates(&self.wallet, |_| None)
            .map(|c| format!("{} {} ({} bytes)", c.id, c.record.name, c.size))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn ask_which(&self, short: &str) -> Result<Vec<u64>> {
        eprintln!("{short}. Values held: {}", self.values_line());
        eprint!("Deposit which (numbers separated by commas)? ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.split(',')
            .map(|w| {
                w.trim()
                    .parse::<u64>()
                    .with_context(|| format!("{w:?} is not a number"))
            })
            .collect()
    }

    /// Adds value `record`, making room first as `room` says.
    fn take_in(&mut self, record: ValueRecord, room: &RoomArgs) -> Result<(u64, Vec<u64>)> {
        let deposited = self.make_room(Holding::Value(record.clone()).size(), room)?;
        let id = self.wallet.add(Holding::Value(record))?;
        self.since.insert(id, today());
        Ok((id, deposited))
    }

    /// Puts value `record` in holding `id`'s place, making room first as `room` says.
    fn put_back(&mut self, id: u64, record: ValueRecord, room: &RoomArgs) -> Result<Vec<u64>> {
        let held = self
            .wallet
            .holdings
            .iter()
            .find(|(n, _)| *n == id)
            .map_or(0, |(_, h)| h.size());
        // The certificate's place is freed as the value takes it.
        let need = Holding::Value(record.clone()).size().saturating_sub(held);
        let deposited = self.make_room(need, room)?;
        self.wallet.replace(id, Holding::Value(record))?;
        self.since.insert(id, today());
        Ok(deposited)
    }

    fn vault_key(&self) -> Result<[u8; 32]> {
        unhex(&self.settings.vault_key)
            .and_then(|b| b.try_into().ok())
            .context("vault_key in wallet.toml is not 32 bytes of hex")
    }

    fn vault(&self) -> Result<VaultClient> {
        Ok(VaultClient::new(
            &self.settings.vault,
            &self.settings.vault_fingerprint,
        )?)
    }
}

fn describe(id: u64, h: &Holding) -> serde_json::Value {
    match h {
        Holding::Value(r) => json!({ "id": id, "type": "value", "record": r }),
        Holding::Certificate(c) => json!({
            "id": id, "type": "certificate", "counter": c.counter,
            "digest": c.digest.0.iter().map(|(n, v)| json!({ "field": n, "value": v })).collect::<Vec<_>>(),
        }),
    }
}

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
        } => {
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
        WalletCommand::Add(a) => {
            let mut d = open()?;
            let record = ValueRecord {
                kind: a.kind,
                name: a.name,
                unit_price: a.unit_price,
                quantity: a.quantity,
                total: a.total,
                place: a.place,
                validity: match (a.valid_from, a.valid_until) {
                    (Some(from), Some(until)) => Some(Validity { from, until }),
                    (None, Some(until)) => Some(Validity { from: until, until }),
                    _ => None,
                },
                balance: a.balance,
                remarks: a.remarks,
            };
            let (id, deposited) = d.take_in(record, &a.room)?;
            d.save()?;
            ctx.out.emit(
                &json!({ "id": id, "free": d.wallet.free(), "deposited": deposited }),
                || {
                    format!(
                        "added value {id} ({} bytes free){}",
                        d.wallet.free(),
                        made_room(&deposited)
                    )
                },
            );
            Ok(())
        }
        WalletCommand::List {
            certificates,
            kind,
            ending_within,
        } => {
            let d = open()?;
            let filter = Filter {
                certificates_only: certificates,
                kind,
                ending_by: ending_within
                    .map(|n| {
                        let days = jiff::Span::new().try_days(n).context("--ending-within")?;
                        Ok::<_, anyhow::Error>(jiff::Zoned::now().date().saturating_add(days))
                    })
                    .transpose()?,
            };
            let rows: Vec<_> = d.wallet.list(&filter).collect();
            ctx.out.emit(
                &rows
                    .iter()
                    .map(|(id, h)| describe(*id, h))
                    .collect::<Vec<_>>(),
                || crate::output::lines(rows.iter().map(|(id, h)| line(*id, h))),
            );
            Ok(())
        }
        WalletCommand::Show { id } => {
            let d = open()?;
            let (_, h) = d
                .wallet
                .holdings
                .iter()
                .find(|(n, _)| *n == id)
                .with_context(|| format!("the wallet holds no item {id}"))?;
            let v = describe(id, h);
            ctx.out
                .emit(&v, || serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(())
        }
        WalletCommand::Remove { id } => {
            let mut d = open()?;
            d.wallet.remove(id)?;
            d.save()?;
            ctx.out.say(format!("removed {id}"));
            Ok(())
        }
        WalletCommand::Use { id, amount } => {
            let mut d = open()?;
            let left = d.wallet.spend(id, amount)?;
            d.save()?;
            ctx.out.emit(&json!({ "id": id, "balance": left }), || {
                format!("{id}: {left} left")
            });
            Ok(())
        }
        WalletCommand::Deposit { id } => {
            let mut d = open()?;
            let keep = d.settings.keep_deposited;
            let (cid, cert) = d.deposit(id, keep)?;
            ctx.out.emit(
                &json!({ "id": cid, "counter": cert.counter, "kept_value": keep }),
                || {
                    format!(
                        "deposited {id}: certificate {cid} (vault counter {})",
                        cert.counter
                    )
                },
            );
            Ok(())
        }
        WalletCommand::Withdraw { id, room } => {
            let mut d = open()?;
            let Some((_, Holding::Certificate(cert))) =
                d.wallet.holdings.iter().find(|(n, _)| *n == id).cloned()
            else {
                bail!("item {id} is not a certificate this wallet holds");
            };
            let signer = d.signing_key()?;
            // Both keys first: the vault retires the record as it answers.
            let (_, key) = d.value_key().context(
                "without its value key this wallet cannot open the value (`kura wallet \
                 rebuild-key` rebuilds an escrowed key)",
            )?;
            let (reg, file) = d.withdraw(&cert, &signer)?;
            let record = reg
                .open(&signer.public(), &key)
                .context("the withdrawn value does not verify: it was changed at the vault")?;
            let deposited = d.put_back(id, record, &room).with_context(|| {
                format!(
                    "the value is kept in {} (withdraw again to take it in)",
                    file.display()
                )
            })?;
            d.save()?;
            std::fs::remove_file(&file)?;
            ctx.out
                .emit(&json!({ "id": id, "deposited": deposited }), || {
                    format!("withdrew {id}: the value is back{}", made_room(&deposited))
                });
            Ok(())
        }
        WalletCommand::Escrow {
            keyman,
            keyman_fingerprint,
            any,
            recovery_file,
            owner,
        } => {
            let mut d = open()?;
            let credentials = owner.credentials()?;
            let signer = d.signing_key()?;
            let (key_id, key) = d.value_key()?;
            let shares = kura_wallet::split::split(&key, 2, 3)?;
            let rule = if any { Rule::Any } else { Rule::All };
            let methods = credentials.methods().join(", ");
            KeymanClient::new(&keyman, &keyman_fingerprint)?.enrol(&Enrol::sign(
                &signer,
                shares[0].clone(),
                credentials,
                rule,
            ))?;
            let recovery = Recovery {
                wallet: hex(&signer.public()),
                keyman: keyman.clone(),
                keyman_fingerprint: keyman_fingerprint.clone(),
                key_id: hex(&key_id),
                key_check: key_check(&key),
                share: hex(&shares[2]),
            };
            write_private(&recovery_file, toml::to_string(&recovery)?.as_bytes())?;
            d.settings.keyman = Some(keyman);
            d.settings.keyman_fingerprint = Some(keyman_fingerprint);
            d.settings.vault_share = Some(hex(&shares[1]));
            d.save_settings()?;
            ctx.out.emit(
                &json!({ "wallet": recovery.wallet, "methods": methods, "rule": rule.name(), "recovery_file": recovery_file }),
                || {
                    format!(
                        "escrowed one share of the value key at the key manager (released to {} \
                         of: {methods}); values deposited from now on carry the vault's share; \
                         the third share is in {}: keep it off this device",
                        rule.name(),
                        recovery_file.display()
                    )
                },
            );
            Ok(())
        }
        WalletCommand::Recover {
            recovery_file,
            holdings,
            owner,
            room,
        } => {
            let mut d = open()?;
            let credentials = owner.credentials()?;
            let (recovery, wallet) = read_recovery(&recovery_file)?;
            let old: Holdings = serde_json::from_str(
                &std::fs::read_to_string(&holdings)
                    .with_context(|| format!("reading {}", holdings.display()))?,
            )
            .with_context(|| format!("{} is not a wallet's holdings.json", holdings.display()))?;
            let client = KeymanClient::new(&recovery.keyman, &recovery.keyman_fingerprint)?;
            let kept = d.path.join("recovered");
            std::fs::create_dir_all(&kept)?;
            let (mut restored, mut redeemed) = (Vec::new(), 0);
            for saved in old.holdings {
                let Saved::Certificate { certificate, .. } = saved else {
                    continue;
                };
                let cert = Certificate::parse(
                    &unhex(&certificate).context("a certificate in the old holdings")?,
                )?;
                let file = kept.join(format!(
                    "{}-{}.json",
                    cert.counter,
                    hex(&cert.payload_hash[..8])
                ));
                if file.exists() {
                    continue;
                }
                let record = match client.restore(&wallet, credentials.clone(), &cert) {
                    Ok(r) => r,
                    Err(ClientError::Refused { status: 409, .. }) => {
                        redeemed += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                // The vault has retired the record: the value is kept before anything else
                // can fail.
                write_private(&file, &serde_json::to_vec_pretty(&record)?)?;
                let (id, _) = d
                    .take_in(record, &room)
                    .with_context(|| format!("the value is kept in {}", file.display()))?;
                d.save()?;
                restored.push(id);
            }
            ctx.out.emit(
                &json!({ "restored": restored, "redeemed_already": redeemed }),
                || {
                    format!(
                        "restored {} values: {restored:?} ({redeemed} certificates were redeemed \
                         already)",
                        restored.len()
                    )
                },
            );
            Ok(())
        }
        WalletCommand::Rekey {
            recovery_file,
            new_recovery_file,
            owner,
        } => {
            let mut d = open()?;
            let pending = d.path.join("rekey.json");
            let delivered: Delivered = if pending.exists() {
                serde_json::from_slice(&std::fs::read(&pending)?)
                    .with_context(|| format!("{} is damaged", pending.display()))?
            } else {
                let credentials = owner.credentials()?;
                let (recovery, wallet) = read_recovery(&recovery_file)?;
                let (ids, certs): (Vec<u64>, Vec<Certificate>) = d
                    .wallet
                    .holdings
                    .iter()
                    .filter_map(|(id, h)| match h {
                        Holding::Certificate(c) => Some((*id, c.clone())),
                        Holding::Value(_) => None,
                    })
                    .unzip();
                let client = KeymanClient::new(&recovery.keyman, &recovery.keyman_fingerprint)?;
                let delivery = client.rekey(&wallet, credentials, &certs)?;
                let delivered = Delivered {
                    delivery,
                    ids,
                    keyman: recovery.keyman,
                    keyman_fingerprint: recovery.keyman_fingerprint,
                };
                // Kept before any key is replaced, so a command cut off here finishes on
                // the next run.
                write_private(&pending, &serde_json::to_vec(&delivered)?)?;
                delivered
            };
            let Delivered {
                delivery,
                ids,
                keyman,
                keyman_fingerprint,
            } = delivered;
            let bytes = |h: &str, what: &str| {
                unhex(h).with_context(|| format!("the delivered {what} is not hex"))
            };
            let signer = SigningKey::from_pkcs8(&bytes(&delivery.signing_key, "signing key")?)?;
            let key: [u8; 32] = bytes(&delivery.value_key, "value key")?
                .try_into()
                .map_err(|_| anyhow::anyhow!("the delivered value key is not 32 bytes"))?;
            let key = Key::from_bytes(key);
            let key_id: [u8; 16] = bytes(&delivery.key_id, "key id")?
                .try_into()
                .map_err(|_| anyhow::anyhow!("the delivered key id is not 16 bytes"))?;
            if ids.len() != delivery.certificates.len() {
                bail!(
                    "the key manager delivered {} certificates for {} sent",
                    delivery.certificates.len(),
                    ids.len()
                );
            }
            for (id, c) in ids.iter().zip(&delivery.certificates) {
                let cert = Certificate::parse(&bytes(c, "certificate")?)?;
                cert.verify(&d.vault_key()?)?;
                d.wallet.replace(*id, Holding::Certificate(cert))?;
            }
            write_private(&d.path.join("signing.key"), signer.pkcs8())?;
            d.write_value_key(&key_id, &key)?;
            d.settings.keyman = Some(keyman.clone());
            d.settings.keyman_fingerprint = Some(keyman_fingerprint.clone());
            d.settings.vault_share = Some(delivery.vault_share.clone());
            d.save_settings()?;
            d.save()?;
            let recovery = Recovery {
                wallet: delivery.wallet.clone(),
                keyman,
                keyman_fingerprint,
                key_id: delivery.key_id.clone(),
                key_check: key_check(&key),
                share: delivery.recovery_share.clone(),
            };
            write_private(&new_recovery_file, toml::to_string(&recovery)?.as_bytes())?;
            std::fs::remove_file(&pending)?;
            ctx.out.emit(
                &json!({ "wallet": delivery.wallet, "replaced": ids.len(), "recovery_file": new_recovery_file }),
                || {
                    format!(
                        "re-keyed: {} deposited values are now sealed under the new keys; the new \
                         recovery file is {}: keep it off this device",
                        ids.len(),
                        new_recovery_file.display()
                    )
                },
            );
            Ok(())
        }
        WalletCommand::AutoBackup { when_due } => {
            let mut d = open()?;
            let today = today();
            let due_on = match (d.last_auto_backup, d.settings.conditions.every_days) {
                (Some(last), Some(every)) => {
                    Some(last.saturating_add(jiff::Span::new().try_days(every)?))
                }
                _ => None,
            };
            if when_due && due_on.is_some_and(|on| on > today) {
                ctx.out.emit(&json!({ "due": false, "deposited": [] }), || {
                    format!(
                        "not due: the next periodic auto-backup is on {}",
                        due_on.map_or_else(String::new, |d| d.to_string())
                    )
                });
                return Ok(());
            }
            let chosen =
                d.settings
                    .conditions
                    .select(&d.wallet, |id| d.since.get(&id).copied(), today);
            let keep = d.settings.keep_deposited;
            let mut deposited = Vec::new();
            for id in chosen {
                d.deposit(id, keep)?;
                deposited.push(id);
            }
            d.last_auto_backup = Some(today);
            d.save()?;
            ctx.out
                .emit(&json!({ "due": true, "deposited": deposited }), || {
                    format!(
                        "deposited {} values the conditions choose: {deposited:?}",
                        deposited.len()
                    )
                });
            Ok(())
        }
        WalletCommand::Conditions(a) => {
            let mut d = open()?;
            let (mut conditions, mut policy) =
                (d.settings.conditions.clone(), d.settings.on_shortage);
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
        WalletCommand::RebuildKey {
            certificate,
            recovery_file,
            owner,
        } => {
            let mut d = open()?;
            if d.path.join("value.key").exists() {
                bail!(
                    "{} exists: this wallet has its value key (move it away to rebuild it)",
                    d.path.join("value.key").display()
                );
            }
            let credentials = owner.credentials()?;
            let signer = d.signing_key()?;
            let escrowed = d.keyman()?.release(&signer.public(), credentials)?;
            let (key_id, key, from) = match (certificate, recovery_file) {
                (Some(id), _) => {
                    let Some((_, Holding::Certificate(cert))) =
                        d.wallet.holdings.iter().find(|(n, _)| *n == id).cloned()
                    else {
                        bail!("item {id} is not a certificate this wallet holds");
                    };
                    let (reg, file) = d.withdraw(&cert, &signer)?;
                    let share = reg.vault_share.clone().with_context(|| {
                        format!(
                            "the value was deposited before the key was escrowed, so it holds \
                             no share (it is kept in {})",
                            file.display()
                        )
                    })?;
                    let key = kura_wallet::split::combine(&[escrowed, share])?;
                    let record = reg.open(&signer.public(), &key).with_context(|| {
                        format!(
                            "the rebuilt key does not open the value (kept in {})",
                            file.display()
                        )
                    })?;
                    d.wallet.replace(id, Holding::Value(record))?;
                    (
                        reg.key_id,
                        key,
                        format!("certificate {id}, whose value is back"),
                    )
                }
                (None, Some(p)) => {
                    let (r, _) = read_recovery(&p)?;
                    let share = unhex(&r.share).context("the recovery file's share is not hex")?;
                    let key = kura_wallet::split::combine(&[escrowed, share])?;
                    if key_check(&key) != r.key_check {
                        bail!(
                            "the shares do not rebuild this wallet's key (another wallet's recovery file?)"
                        );
                    }
                    let id = unhex(&r.key_id)
                        .and_then(|b| b.try_into().ok())
                        .context("the recovery file's key_id is not 16 bytes of hex")?;
                    (id, key, format!("the recovery file {}", p.display()))
                }
                (None, None) => bail!("give --certificate or --recovery-file"),
            };
            d.write_value_key(&key_id, &key)?;
            d.save()?;
            ctx.out.emit(&json!({ "rebuilt": true }), || {
                format!("rebuilt the value key from the key manager's share and {from}")
            });
            Ok(())
        }
    }
}

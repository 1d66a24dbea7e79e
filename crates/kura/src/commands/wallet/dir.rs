//! The wallet's directory on disk: its settings (`wallet.toml`), its holdings
//! (`holdings.json`) and its keys, opened as a [`Dir`] that deposits, withdraws and makes room.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use jiff::civil::Date;
use kura_core::crypto::Key;
use kura_core::id::{hex, unhex, unhex_array};
use kura_keyman::client::KeymanClient;
use kura_vault::client::VaultClient;
use kura_wallet::certificate::Certificate;
use kura_wallet::conditions::{Conditions, Shortage};
use kura_wallet::record::{Field, ValueRecord};
use kura_wallet::registered::Registered;
use kura_wallet::sign::SigningKey;
use kura_wallet::wallet::{Holding, Wallet};
use serde::{Deserialize, Serialize};

use super::RoomArgs;
use crate::ctx::write_private;

/// The wallet's settings file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Settings {
    pub(super) capacity: usize,
    pub(super) vault: String,
    pub(super) vault_fingerprint: String,
    pub(super) vault_key: String,
    pub(super) keep_deposited: bool,
    pub(super) digest: Vec<Field>,
    /// Set by `kura wallet escrow`: the key manager, and the vault's share of the value key
    /// that every deposit carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) keyman: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) keyman_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) vault_share: Option<String>,
    /// Which values `kura wallet auto-backup` and the backup policy deposit.
    #[serde(default)]
    pub(super) conditions: Conditions,
    /// What happens when a value arriving or coming back does not fit.
    #[serde(default)]
    pub(super) on_shortage: Shortage,
}

/// One holding as the wallet keeps it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub(super) enum Saved {
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

/// The holdings file (`holdings.json`).
#[derive(Serialize, Deserialize)]
pub(super) struct Holdings {
    next: u64,
    pub(super) holdings: Vec<Saved>,
    /// The day of the last periodic auto-backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_auto_backup: Option<Date>,
    /// The certificates (`COUNTER-HASH`) whose values `kura wallet recover` took in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recovered: Vec<String>,
}

/// An open wallet directory.
pub(super) struct Dir {
    pub(super) path: PathBuf,
    pub(super) settings: Settings,
    pub(super) wallet: Wallet,
    /// The day each value arrived (the conditions' holding time).
    pub(super) since: HashMap<u64, Date>,
    /// The day of the last periodic auto-backup.
    pub(super) last_auto_backup: Option<Date>,
    /// The certificates whose values `kura wallet recover` took in, so none comes twice.
    pub(super) recovered: Vec<String>,
}

/// Today, in local time.
pub(super) fn today() -> Date {
    jiff::Zoned::now().date()
}

/// The wallet's directory: `a`, or the default (~/.local/share/kura/wallet).
pub(super) fn dir_of(a: Option<PathBuf>) -> Result<PathBuf> {
    match a {
        Some(d) => Ok(d),
        None => Ok(kura_client::state::user_dir("XDG_DATA_HOME", ".local/share")?.join("wallet")),
    }
}

impl Dir {
    /// Opens the wallet in `path`.
    pub(super) fn open(path: PathBuf) -> Result<Dir> {
        if path.join("rekey.json").exists() {
            bail!(
                "a re-keying of this wallet is not finished: run `kura wallet rekey` again \
                 (its keys would otherwise be half old, half new)"
            );
        }
        Dir::open_rekeying(path)
    }

    /// Opens the wallet even with a re-keying in `rekey.json` not yet applied: only `kura
    /// wallet rekey` does, to finish it.
    pub(super) fn open_rekeying(path: PathBuf) -> Result<Dir> {
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
            recovered: saved.recovered,
        })
    }

    /// Writes the holdings whole, by rename: a killed command leaves the old ones or the new.
    pub(super) fn save(&self) -> Result<()> {
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
            recovered: self.recovered.clone(),
        };
        write_private(
            &self.path.join("holdings.json"),
            &serde_json::to_vec_pretty(&holdings)?,
        )
    }

    /// The wallet's signing key (`signing.key`).
    pub(super) fn signing_key(&self) -> Result<SigningKey> {
        let b = std::fs::read(self.path.join("signing.key")).context("the wallet's signing key")?;
        Ok(SigningKey::from_pkcs8(&b)?)
    }

    /// The value key (`value.key`): its id and the key.
    pub(super) fn value_key(&self) -> Result<([u8; 16], Key)> {
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

    /// Writes the value key (`value.key`).
    pub(super) fn write_value_key(&self, id: &[u8; 16], key: &Key) -> Result<()> {
        let mut value = id.to_vec();
        value.extend_from_slice(key.expose());
        write_private(
            &self.path.join("value.key"),
            format!("{}\n", hex(&value)).as_bytes(),
        )
    }

    /// Writes the settings (`wallet.toml`).
    pub(super) fn save_settings(&self) -> Result<()> {
        write_private(
            &self.path.join("wallet.toml"),
            toml::to_string(&self.settings)?.as_bytes(),
        )
    }

    /// The key manager the key is escrowed at.
    pub(super) fn keyman(&self) -> Result<KeymanClient> {
        match (&self.settings.keyman, &self.settings.keyman_fingerprint) {
            (Some(url), Some(fp)) => Ok(KeymanClient::new(url, fp)?),
            _ => bail!("this wallet's key is not escrowed (`kura wallet escrow`)"),
        }
    }

    /// Withdraws the value `cert` names and keeps its bytes in `withdrawn/` before anything
    /// else can fail (the vault has retired the record); the value as the vault returned it,
    /// checked to be the one the certificate names, and where its bytes are kept.
    pub(super) fn withdraw(
        &self,
        cert: &Certificate,
        signer: &SigningKey,
    ) -> Result<(Registered, PathBuf)> {
        cert.verify(&self.vault_key()?)?;
        let kept = self.path.join("withdrawn");
        std::fs::create_dir_all(&kept)?;
        let name = format!("{}-{}", cert.counter, hex(&cert.payload_hash[..8]));
        let file = kept.join(format!("{name}.kreg"));
        let bytes = match std::fs::read(&file) {
            // Received before, and not yet taken in.
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // The request's nonce, and which try this is, are kept before it is sent:
                // if the answer is lost, a later try with the same nonce gets the value the
                // vault retired for this request (a try sent again as it was gets nothing).
                let nonce_file = kept.join(format!("{name}.nonce"));
                let damaged = || anyhow::anyhow!("{} is damaged", nonce_file.display());
                let (nonce, attempt) = match std::fs::read(&nonce_file) {
                    Ok(n) if n.len() == 24 => {
                        let (nonce, attempt) = n.split_at(16);
                        (
                            <[u8; 16]>::try_from(nonce).map_err(|_| damaged())?,
                            u64::from_be_bytes(attempt.try_into().map_err(|_| damaged())?) + 1,
                        )
                    }
                    Ok(_) => return Err(damaged()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        (kura_core::crypto::random_bytes(), 1)
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("reading {}", nonce_file.display()));
                    }
                };
                write_private(&nonce_file, &[&nonce[..], &attempt.to_be_bytes()].concat())?;
                let bytes = self.vault()?.withdraw(cert, (nonce, attempt), signer)?;
                write_private(&file, &bytes)?;
                std::fs::remove_file(&nonce_file)?;
                bytes
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        let reg = Registered::parse(&bytes)?;
        if reg.payload_hash() != cert.payload_hash {
            bail!("the vault returned another value than the certificate names");
        }
        Ok((reg, file))
    }

    /// Deposits value `id` at the vault; its certificate takes the value's place (or is kept
    /// beside it when `keep`). The certificate is kept only if the trusted vault signed it
    /// and it names exactly what was sent; otherwise the value stays.
    pub(super) fn deposit(&mut self, id: u64, keep: bool) -> Result<(u64, Certificate)> {
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
    pub(super) fn take_in(
        &mut self,
        record: ValueRecord,
        room: &RoomArgs,
    ) -> Result<(u64, Vec<u64>)> {
        let deposited = self.make_room(Holding::Value(record.clone()).size(), room)?;
        let id = self.wallet.add(Holding::Value(record))?;
        self.since.insert(id, today());
        Ok((id, deposited))
    }

    /// Puts value `record` in holding `id`'s place, making room first as `room` says.
    pub(super) fn put_back(
        &mut self,
        id: u64,
        record: ValueRecord,
        room: &RoomArgs,
    ) -> Result<Vec<u64>> {
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

    /// The vault's signing key.
    pub(super) fn vault_key(&self) -> Result<[u8; 32]> {
        unhex_array(&self.settings.vault_key)
            .context("vault_key in wallet.toml is not 32 bytes of hex")
    }

    fn vault(&self) -> Result<VaultClient> {
        Ok(VaultClient::new(
            &self.settings.vault,
            &self.settings.vault_fingerprint,
        )?)
    }
}

//! The key manager's side of the wallet: the owner's credentials, the recovery file, and
//! `kura wallet escrow|recover|rekey|rebuild-key`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use kura_core::crypto::Key;
use kura_core::id::{hex, unhex, unhex_array};
use kura_keyman::client::KeymanClient;
use kura_vault::client::ClientError;
use kura_wallet::certificate::Certificate;
use kura_wallet::escrow::{Credentials, Delivery, Enrol, Rule, key_check};
use kura_wallet::sign::SigningKey;
use kura_wallet::wallet::Holding;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::RoomArgs;
use super::dir::{Dir, Holdings, Saved};
use crate::ctx::{Ctx, write_private};

/// A re-keying delivered and not yet applied to the wallet's files (`rekey.json`).
#[derive(Serialize, Deserialize)]
struct Delivered {
    delivery: Delivery,
    /// The holdings whose certificates were sent, in order.
    ids: Vec<u64>,
    /// The wallet's old public key (hex): what the key manager re-keyed.
    old_wallet: String,
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
    /// The credentials the files (and KURA_OWNER_PASSWORD) give; at least one.
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
                    .enumerate()
                    .map(|(i, w)| {
                        // The reading is a secret: the message names the place, not the text.
                        w.parse::<f32>().with_context(|| {
                            format!("{}: item {} is not a number", p.display(), i + 1)
                        })
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

/// Reads a recovery file: its contents, and the lost wallet's public key as bytes.
fn read_recovery(p: &Path) -> Result<(Recovery, [u8; 32])> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    let r: Recovery =
        toml::from_str(&text).with_context(|| format!("{} is not a recovery file", p.display()))?;
    let wallet = unhex_array(&r.wallet)
        .with_context(|| format!("{}: wallet is not 32 bytes of hex", p.display()))?;
    Ok((r, wallet))
}

/// `kura wallet escrow`.
pub(super) fn escrow(
    ctx: &Ctx,
    mut d: Dir,
    keyman: String,
    keyman_fingerprint: String,
    any: bool,
    recovery_file: PathBuf,
    owner: OwnerArgs,
) -> Result<()> {
    let credentials = owner.credentials()?;
    let signer = d.signing_key()?;
    let (key_id, key) = d.value_key()?;
    let shares = kura_wallet::split::split(&key, 2, 3)?;
    let rule = if any { Rule::Any } else { Rule::All };
    let methods = credentials.methods().join(", ");
    KeymanClient::new(&keyman, &keyman_fingerprint)?.enrol(&Enrol::sign(
        &signer,
        shares[0].clone(),
        (credentials, rule),
        kura_wallet::now_ms(),
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

/// `kura wallet recover`.
pub(super) fn recover(
    ctx: &Ctx,
    mut d: Dir,
    recovery_file: PathBuf,
    holdings: PathBuf,
    owner: OwnerArgs,
    room: RoomArgs,
) -> Result<()> {
    let credentials = owner.credentials()?;
    let (recovery, wallet) = read_recovery(&recovery_file)?;
    let old: Holdings = serde_json::from_str(
        &std::fs::read_to_string(&holdings)
            .with_context(|| format!("reading {}", holdings.display()))?,
    )
    .with_context(|| format!("{} is not a wallet's holdings.json", holdings.display()))?;
    let client = KeymanClient::new(&recovery.keyman, &recovery.keyman_fingerprint)?;
    let recipient = d.signing_key()?;
    let kept = d.path.join("recovered");
    std::fs::create_dir_all(&kept)?;
    let (mut restored, mut redeemed) = (Vec::new(), 0);
    for saved in old.holdings {
        let Saved::Certificate { certificate, .. } = saved else {
            continue;
        };
        let cert =
            Certificate::parse(&unhex(&certificate).context("a certificate in the old holdings")?)?;
        let name = format!("{}-{}", cert.counter, hex(&cert.payload_hash[..8]));
        if d.recovered.contains(&name) {
            continue;
        }
        let file = kept.join(format!("{name}.json"));
        let record = match std::fs::read(&file) {
            // Fetched before and not yet taken in (no room then, or a cut).
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is damaged", file.display()))?,
            Err(_) => match client.restore(&wallet, credentials.clone(), &cert, &recipient) {
                Ok(r) => {
                    // The vault has retired the record: the value is kept before anything
                    // else can fail.
                    write_private(&file, &serde_json::to_vec_pretty(&r)?)?;
                    r
                }
                Err(ClientError::Refused { status: 409, .. }) => {
                    redeemed += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            },
        };
        let (id, _) = d
            .take_in(record, &room)
            .with_context(|| format!("the value is kept in {}", file.display()))?;
        d.recovered.push(name);
        d.save()?;
        std::fs::remove_file(&file)?;
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

/// `kura wallet rekey`.
pub(super) fn rekey(
    ctx: &Ctx,
    mut d: Dir,
    recovery_file: PathBuf,
    new_recovery_file: PathBuf,
    owner: OwnerArgs,
) -> Result<()> {
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
            old_wallet: recovery.wallet,
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
        old_wallet,
        keyman,
        keyman_fingerprint,
    } = delivered;
    let bytes =
        |h: &str, what: &str| unhex(h).with_context(|| format!("the delivered {what} is not hex"));
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
    // Only once the new keys are in place: the key manager then forgets them and retires the
    // old escrow. Until it has heard, the wallet refuses other commands (rekey.json stays).
    let old: [u8; 32] =
        unhex_array(&old_wallet).context("rekey.json's old wallet is not 32 bytes of hex")?;
    KeymanClient::new(&recovery.keyman, &recovery.keyman_fingerprint)?
        .rekey_done(&old, &signer)
        .context(
            "the new keys are in place, but the key manager was not told: run `kura wallet \
             rekey` again to finish",
        )?;
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

/// `kura wallet rebuild-key`.
pub(super) fn rebuild_key(
    ctx: &Ctx,
    mut d: Dir,
    certificate: Option<u64>,
    recovery_file: Option<PathBuf>,
    owner: OwnerArgs,
) -> Result<()> {
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
            let id = unhex_array(&r.key_id)
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

//! Re-keying a wallet whose device's keys are lost (value-vault.md requirement 8): read every
//! value the certificates name, open it with the rebuilt key, seal and sign it again under a
//! new key pair and a new value key, have the vault replace the records all or none, then
//! keep the new escrow and deliver the new keys.
//!
//! The re-keying is kept before the vault is asked, and the vault answers a replacement it
//! made already with the same certificates, so a failure anywhere (the vault killed in its
//! transaction or after its commit, this process killed) is mended by asking again.

use kura_core::crypto::Key;
use kura_core::id::hex;
use kura_vault::client::{ClientError, VaultClient};
use kura_wallet::certificate::Certificate;
use kura_wallet::escrow::Delivery;
use kura_wallet::record::{Field, ValueRecord};
use kura_wallet::registered::Registered;
use kura_wallet::rekey::Replacement;
use kura_wallet::sign::SigningKey;

use crate::api::open;
use crate::store::{Escrow, KeymanError, Rekeying, Store};

fn vault_error(e: ClientError) -> KeymanError {
    KeymanError::Vault(e.to_string())
}

/// Re-keys `escrow`'s wallet over the values `certs` name, or finishes the re-keying begun
/// before; the new keys and certificates.
pub fn run(
    store: &Store,
    vault: &VaultClient,
    escrow: &Escrow,
    certs: &[Certificate],
) -> Result<Delivery, KeymanError> {
    let r = match store.rekey(&escrow.wallet)? {
        Some(r) if r.done => return Ok(r.delivery),
        Some(r) => r,
        None => {
            let r = prepare(store, vault, escrow, certs)?;
            store.rekey_begin(&escrow.wallet, &r)?;
            r
        }
    };
    let mut delivery = r.delivery.clone();
    if let Some(bytes) = &r.replacement {
        let replacement =
            Replacement::parse(bytes).map_err(|e| KeymanError::Invalid(e.to_string()))?;
        let new_certs = match vault.replace(&replacement) {
            Ok(c) => c,
            // The vault refused the replacement itself (not a busy or broken moment): it will
            // refuse it again, so it is dropped and the owner may ask afresh.
            Err(ClientError::Refused {
                status: status @ 400..=499,
                message,
                ..
            }) if status != 429 => {
                store.rekey_abandon(&escrow.wallet)?;
                return Err(KeymanError::Vault(format!(
                    "the vault refused the replacement ({status}: {message}); it is dropped: ask \
                     again with the wallet's certificates as they are now"
                )));
            }
            Err(e) => return Err(vault_error(e)),
        };
        let named = replacement.items.iter().map(|(_, new)| new);
        if new_certs.len() != replacement.items.len()
            || new_certs
                .iter()
                .zip(named)
                .any(|(c, new)| c.payload_hash != new.payload_hash() || c.digest != new.digest)
        {
            return Err(KeymanError::Vault(
                "the vault's certificates do not name the new values".into(),
            ));
        }
        delivery.certificates = new_certs.iter().map(|c| hex(&c.to_bytes())).collect();
    }
    let new = Escrow {
        wallet: kura_core::id::unhex_array(&delivery.wallet)
            .ok_or_else(|| KeymanError::Invalid("a stored re-keying is damaged".into()))?,
        share: r.new_share.clone(),
        ..escrow.clone()
    };
    store.rekey_finish(escrow, &new, &delivery)?;
    Ok(delivery)
}

/// Opens every value and seals it again under new keys.
fn prepare(
    store: &Store,
    vault: &VaultClient,
    escrow: &Escrow,
    certs: &[Certificate],
) -> Result<Rekeying, KeymanError> {
    let signer = SigningKey::generate();
    let (key_id, key) = (kura_core::crypto::random_bytes::<16>(), Key::random());
    let shares =
        kura_wallet::split::split(&key, 2, 3).map_err(|e| KeymanError::Invalid(e.to_string()))?;
    let wallet = hex(&signer.public());
    let mut items = Vec::new();
    for cert in certs {
        let bytes = vault.read(cert, store.key()).map_err(vault_error)?;
        let record = ValueRecord::from_bytes(&open(escrow, &cert.payload_hash, &bytes)?)
            .map_err(|e| KeymanError::Invalid(e.to_string()))?;
        let old = Registered::parse(&bytes).map_err(|e| KeymanError::Invalid(e.to_string()))?;
        let fields: Vec<Field> = old
            .digest
            .0
            .iter()
            .filter_map(|(n, _)| Field::from_name(n))
            .collect();
        let new = Registered::seal(
            &wallet,
            &record,
            &fields,
            (&key_id, &key),
            &signer,
            Some(shares[1].clone()),
        );
        items.push((cert.clone(), new));
    }
    let replacement = (!items.is_empty()).then(|| {
        Replacement::sign(kura_core::crypto::random_bytes(), items, store.key()).to_bytes()
    });
    Ok(Rekeying {
        replacement,
        delivery: Delivery {
            wallet,
            signing_key: hex(signer.pkcs8()),
            key_id: hex(&key_id),
            value_key: hex(key.expose()),
            vault_share: hex(&shares[1]),
            recovery_share: hex(&shares[2]),
            certificates: Vec::new(),
        },
        new_share: shares[0].clone(),
        done: false,
    })
}

//! A wallet's side of the key manager's API, over the same pinned HTTPS as the vault's.

use kura_core::id::{hex, unhex};
use kura_vault::client::{ClientError, Pinned};
use kura_wallet::certificate::Certificate;
use kura_wallet::record::ValueRecord;
use serde::Deserialize;

use kura_wallet::escrow::{Credentials, Delivery, Enrol, Rekey, RekeyDone, Release, Restore};
use kura_wallet::sign::SigningKey;

/// A connection to one key manager.
pub struct KeymanClient(Pinned);

fn answer(e: impl std::fmt::Display) -> ClientError {
    ClientError::Answer("key manager", e.to_string())
}

impl KeymanClient {
    /// A client of the key manager at `url` whose TLS certificate has SHA-256 `fingerprint`.
    pub fn new(url: &str, fingerprint: &str) -> Result<KeymanClient, ClientError> {
        Pinned::new("key manager", url, fingerprint).map(KeymanClient)
    }

    /// Escrows a share.
    pub fn enrol(&self, e: &Enrol) -> Result<(), ClientError> {
        self.0.post("/v1/escrow", e.to_json()).map(drop)
    }

    /// The escrowed share of `wallet`, for its owner's credentials.
    pub fn release(
        &self,
        wallet: &[u8; 32],
        credentials: Credentials,
    ) -> Result<Vec<u8>, ClientError> {
        #[derive(Deserialize)]
        struct Share {
            share: String,
        }
        let body = Release {
            wallet: hex(wallet),
            credentials,
        };
        let b = self
            .0
            .post("/v1/release", serde_json::to_vec(&body).map_err(answer)?)?;
        let s: Share = serde_json::from_slice(&b).map_err(answer)?;
        unhex(&s.share).ok_or_else(|| answer("the share is not hex"))
    }

    /// The value `cert` names, withdrawn and opened by the key manager for the owner of
    /// `wallet`, whose device is lost, into the wallet whose key is `recipient`.
    pub fn restore(
        &self,
        wallet: &[u8; 32],
        credentials: Credentials,
        cert: &Certificate,
        recipient: &SigningKey,
    ) -> Result<ValueRecord, ClientError> {
        #[derive(Deserialize)]
        struct Value {
            value: String,
        }
        let owner = Release {
            wallet: hex(wallet),
            credentials,
        };
        let body = Restore::sign(owner, cert, recipient);
        let b = self
            .0
            .post("/v1/restore", serde_json::to_vec(&body).map_err(answer)?)?;
        let v: Value = serde_json::from_slice(&b).map_err(answer)?;
        let bytes = unhex(&v.value).ok_or_else(|| answer("the value is not hex"))?;
        ValueRecord::from_bytes(&bytes).map_err(answer)
    }

    /// Has the key manager re-key `wallet` over the values `certs` name (or finish the
    /// re-keying it began); the new keys and certificates.
    pub fn rekey(
        &self,
        wallet: &[u8; 32],
        credentials: Credentials,
        certs: &[Certificate],
    ) -> Result<Delivery, ClientError> {
        let body = Rekey {
            owner: Release {
                wallet: hex(wallet),
                credentials,
            },
            certificates: certs.iter().map(|c| hex(&c.to_bytes())).collect(),
        };
        let b = self
            .0
            .post("/v1/rekey", serde_json::to_vec(&body).map_err(answer)?)?;
        serde_json::from_slice(&b).map_err(answer)
    }

    /// Tells the key manager the wallet holds what the re-keying of `old` delivered, signing
    /// with the new key `new`: it then forgets the delivered secrets.
    pub fn rekey_done(&self, old: &[u8; 32], new: &SigningKey) -> Result<(), ClientError> {
        let body = serde_json::to_vec(&RekeyDone::sign(old, new)).map_err(answer)?;
        self.0.post("/v1/rekey/done", body).map(drop)
    }
}

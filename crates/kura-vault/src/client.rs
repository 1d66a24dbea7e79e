//! A wallet's side of the vault's API: HTTPS with the vault's certificate pinned by its
//! SHA-256 fingerprint, as Kura's clients pin the service's.

use kura_wallet::certificate::{Certificate, withdrawal_message};
use kura_wallet::sign::SigningKey;

/// Why a request to the vault failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The vault could not be reached, or its certificate is not the pinned one.
    #[error("reaching the vault at {url}: {reason}")]
    Unreachable {
        /// The vault's address.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The vault answered with an error.
    #[error("the vault refused ({status}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The vault's message.
        message: String,
    },
    /// The vault's answer is not what it should be.
    #[error("the vault's answer: {0}")]
    Answer(String),
}

/// A connection to one vault.
pub struct VaultClient {
    url: String,
    http: reqwest::blocking::Client,
}

impl VaultClient {
    /// A client of the vault at `url` whose TLS certificate has SHA-256 `fingerprint`.
    pub fn new(url: &str, fingerprint: &str) -> Result<VaultClient, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let tls = kura_repo::remote::tls_config(Some(fingerprint), None)
            .map_err(|e| unreachable(e.to_string()))?;
        let http = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(VaultClient {
            url: url.trim_end_matches('/').to_string(),
            http,
        })
    }

    fn post(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body)
            .send()
            .map_err(|e| ClientError::Unreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let status = r.status().as_u16();
        let body = r
            .bytes()
            .map_err(|e| ClientError::Answer(e.to_string()))?
            .to_vec();
        if status != 200 {
            return Err(ClientError::Refused {
                status,
                message: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(body)
    }

    /// Deposits a registered value's bytes; the vault's certificate, not yet checked (the
    /// caller checks it with [`Certificate::confirms`] against what it sent).
    pub fn deposit(&self, registered: Vec<u8>) -> Result<Certificate, ClientError> {
        let b = self.post("/v1/deposit", registered)?;
        Certificate::parse(&b).map_err(|e| ClientError::Answer(e.to_string()))
    }

    /// Withdraws the value `cert` names, signing the request with the wallet's key; the
    /// registered value's bytes.
    pub fn withdraw(
        &self,
        cert: &Certificate,
        wallet: &SigningKey,
    ) -> Result<Vec<u8>, ClientError> {
        let mut body = cert.to_bytes();
        body.extend_from_slice(&wallet.sign(&withdrawal_message(cert)));
        self.post("/v1/withdraw", body)
    }
}

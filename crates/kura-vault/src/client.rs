//! A wallet's side of the vault's API (and the key manager's, which withdraws for owners whose
//! devices are lost): HTTPS with the certificate pinned by its SHA-256 fingerprint, as Kura's
//! clients pin the service's.

use kura_wallet::certificate::{Certificate, Purpose, Withdrawal};
use kura_wallet::rekey::{Replacement, parse_answer};
use kura_wallet::sign::SigningKey;

/// Why a request to the vault or the key manager failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service could not be reached, or its certificate is not the pinned one.
    #[error("reaching the {service} at {url}: {reason}")]
    Unreachable {
        /// Which service.
        service: &'static str,
        /// Its address.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The service answered with an error.
    #[error("the {service} refused ({status}): {message}")]
    Refused {
        /// Which service.
        service: &'static str,
        /// The HTTP status.
        status: u16,
        /// The service's message.
        message: String,
    },
    /// The service's answer is not what it should be.
    #[error("the {0}'s answer: {1}")]
    Answer(&'static str, String),
}

/// HTTPS to one of the value services (the vault, the key manager), its TLS certificate pinned
/// by its SHA-256 fingerprint.
pub struct Pinned {
    service: &'static str,
    url: String,
    http: reqwest::blocking::Client,
}

impl Pinned {
    /// A client of `service` at `url` whose TLS certificate has SHA-256 `fingerprint`.
    pub fn new(service: &'static str, url: &str, fingerprint: &str) -> Result<Pinned, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            service,
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
        Ok(Pinned {
            service,
            url: url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// POSTs `body` to `path`; the answer's body when the status is 200.
    pub fn post(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .body(body)
            .send()
            .map_err(|e| ClientError::Unreachable {
                service: self.service,
                url: self.url.clone(),
                reason: e.to_string(),
            })?;
        let status = r.status().as_u16();
        let body = r
            .bytes()
            .map_err(|e| ClientError::Answer(self.service, e.to_string()))?
            .to_vec();
        if status != 200 {
            return Err(ClientError::Refused {
                service: self.service,
                status,
                message: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        Ok(body)
    }
}

/// A connection to one vault.
pub struct VaultClient(Pinned);

impl VaultClient {
    /// A client of the vault at `url` whose TLS certificate has SHA-256 `fingerprint`.
    pub fn new(url: &str, fingerprint: &str) -> Result<VaultClient, ClientError> {
        Pinned::new("vault", url, fingerprint).map(VaultClient)
    }

    /// Deposits a registered value's bytes; the vault's certificate, not yet checked (the
    /// caller checks it with [`Certificate::confirms`] against what it sent).
    pub fn deposit(&self, registered: Vec<u8>) -> Result<Certificate, ClientError> {
        let b = self.0.post("/v1/deposit", registered)?;
        Certificate::parse(&b).map_err(|e| ClientError::Answer("vault", e.to_string()))
    }

    fn ask(&self, path: &str, w: &Withdrawal) -> Result<Vec<u8>, ClientError> {
        self.0.post(path, w.to_bytes())
    }

    /// Withdraws the value `cert` names, signing try `attempt` of the request `nonce` names
    /// with the wallet's key; the registered value's bytes. Keep the nonce until the answer
    /// arrives, and after a failure ask again with it and a higher attempt.
    pub fn withdraw(
        &self,
        cert: &Certificate,
        request: ([u8; 16], u64),
        wallet: &SigningKey,
    ) -> Result<Vec<u8>, ClientError> {
        self.ask(
            "/v1/withdraw",
            &Withdrawal::sign(Purpose::Withdraw, cert, request, wallet),
        )
    }

    /// Withdraws the value `cert` names for its owner, whose device is lost, signing as the
    /// key manager the vault trusts; the registered value's bytes. The nonce is the same for
    /// every try of one certificate and the attempt is the time in milliseconds, so a retry
    /// after a lost answer gets the value and a replay of an earlier try does not.
    pub fn emergency(
        &self,
        cert: &Certificate,
        keyman: &SigningKey,
    ) -> Result<Vec<u8>, ClientError> {
        let mut seed = b"kura-keyman emergency nonce".to_vec();
        seed.extend_from_slice(&cert.to_bytes());
        let id = kura_core::Id::of_bytes(&seed);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&id.0[..16]);
        self.ask(
            "/v1/emergency",
            &Withdrawal::sign(
                Purpose::Emergency,
                cert,
                (nonce, kura_wallet::now_ms()),
                keyman,
            ),
        )
    }

    /// Reads, without retiring, the value `cert` names, signing as the key manager the vault
    /// trusts; the registered value's bytes.
    pub fn read(&self, cert: &Certificate, keyman: &SigningKey) -> Result<Vec<u8>, ClientError> {
        self.ask(
            "/v1/read",
            &Withdrawal::sign(Purpose::Read, cert, ([0; 16], 0), keyman),
        )
    }

    /// Has the vault replace records, all or none; the new certificates in order.
    pub fn replace(&self, r: &Replacement) -> Result<Vec<Certificate>, ClientError> {
        let b = self.0.post("/v1/replace", r.to_bytes())?;
        parse_answer(&b).map_err(|e| ClientError::Answer("vault", e.to_string()))
    }
}

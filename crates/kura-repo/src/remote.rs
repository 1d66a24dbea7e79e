//! A repository stored by the Kura service, over HTTPS. The service authenticates the user
//! (`KURA_USER`/`KURA_USER_PASSWORD`, separate from the encryption passphrase, which never
//! leaves the device) and stores the encrypted files as they are.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::backend::{Backend, BackendError, FileType};

/// How to reach and log in to the service.
#[derive(Clone)]
pub struct Remote {
    /// `https://host:port` (a trailing `/` is ignored).
    pub url: String,
    /// SHA-256 fingerprint (hex) of the service's certificate to pin; `None` trusts CA-signed
    /// certificates (Mozilla's roots).
    pub fingerprint: Option<String>,
    /// Service user name.
    pub user: String,
    /// Service password.
    pub password: String,
}

/// The service as a [`Backend`].
pub struct HttpBackend {
    remote: Remote,
    client: Client,
    token: Mutex<String>,
}

fn kind(t: FileType) -> &'static str {
    match t {
        FileType::Config => "config",
        FileType::Key => "keys",
        FileType::Device => "devices",
        FileType::Snapshot => "snapshots",
        FileType::Index => "index",
        FileType::Pack => "data",
        FileType::Lock => "locks",
    }
}

fn net_error(op: &'static str, url: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Io {
        op,
        path: url.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Accepts exactly the certificate whose SHA-256 fingerprint was pinned.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got =
            kura_core::id::hex(ring::digest::digest(&ring::digest::SHA256, end_entity).as_ref());
        if got.eq_ignore_ascii_case(self.fingerprint.trim()) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the service's certificate fingerprint is {got}, not the pinned {}",
                self.fingerprint.trim()
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS client configuration that pins `fingerprint`, or trusts Mozilla's roots without one.
pub fn tls_config(fingerprint: Option<&str>) -> Result<rustls::ClientConfig, BackendError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| net_error("configure TLS", "", e))?;
    Ok(match fingerprint {
        Some(f) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: f.to_string(),
                provider,
            }))
            .with_no_client_auth(),
        None => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    })
}

impl HttpBackend {
    /// Connects and logs in; a refusal (wrong password, contract) is an error with the
    /// service's reason.
    pub fn connect(remote: Remote) -> Result<HttpBackend, BackendError> {
        let client = Client::builder()
            .use_preconfigured_tls(tls_config(remote.fingerprint.as_deref())?)
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| net_error("connect", &remote.url, e))?;
        let b = HttpBackend {
            remote,
            client,
            token: Mutex::new(String::new()),
        };
        b.login()?;
        Ok(b)
    }

    fn base(&self) -> &str {
        self.remote.url.trim_end_matches('/')
    }

    fn login(&self) -> Result<(), BackendError> {
        let url = format!("{}/v1/login", self.base());
        let body = serde_json::json!({"user": self.remote.user, "password": self.remote.password});
        let resp = self
            .client
            .post(&url)
            .json_body(&body)
            .send()
            .map_err(|e| net_error("log in to", &url, describe(&e)))?;
        let resp = check(resp, &url)?;
        let v: serde_json::Value =
            serde_json::from_slice(&resp.bytes().map_err(|e| net_error("log in to", &url, e))?)
                .map_err(|e| net_error("log in to", &url, e))?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| net_error("log in to", &url, "no token in the answer"))?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token.to_string();
        Ok(())
    }

    /// Sends a request with the session token; logs in again once if the session expired.
    fn send(
        &self,
        op: &'static str,
        url: &str,
        make: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, BackendError> {
        for attempt in 0..2 {
            let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let resp = make(&self.client)
                .bearer_auth(token)
                .send()
                .map_err(|e| net_error(op, url, describe(&e)))?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.login()?;
                continue;
            }
            return check(resp, url);
        }
        Err(net_error(op, url, "authentication failed"))
    }

    fn url(&self, t: FileType, name: Option<&str>) -> String {
        match name {
            Some(n) => format!("{}/v1/repo/{}/{}", self.base(), kind(t), n),
            None => format!("{}/v1/repo/{}", self.base(), kind(t)),
        }
    }
}

/// The innermost cause of a transport error (reqwest nests the TLS reason).
fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}

/// Maps the service's answer to a backend result, keeping its message.
fn check(resp: Response, url: &str) -> Result<Response, BackendError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.chars().take(200).collect());
    Err(match status {
        StatusCode::NOT_FOUND => BackendError::NotFound(url.to_string()),
        StatusCode::INSUFFICIENT_STORAGE => BackendError::NoSpace(url.to_string()),
        _ => BackendError::Refused {
            status: status.as_u16(),
            message,
        },
    })
}

trait JsonBody {
    fn json_body(self, v: &serde_json::Value) -> Self;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, v: &serde_json::Value) -> Self {
        self.header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(v).unwrap_or_default())
    }
}

impl Backend for HttpBackend {
    fn location(&self) -> String {
        self.remote.url.clone()
    }

    fn create(&self) -> Result<(), BackendError> {
        // The service lays out a user's storage on first use; a repository exists once its
        // config does.
        match self.read(FileType::Config, "config") {
            Ok(_) => Err(BackendError::Io {
                op: "create repository",
                path: self.location(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a repository already exists here",
                ),
            }),
            Err(BackendError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn list(&self, t: FileType) -> Result<Vec<String>, BackendError> {
        let url = self.url(t, None);
        let resp = self.send("list", &url, |c| c.get(&url))?;
        let bytes = resp.bytes().map_err(|e| net_error("list", &url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| net_error("list", &url, e))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>, BackendError> {
        let url = self.url(t, Some(name));
        let resp = self.send("read", &url, |c| c.get(&url))?;
        Ok(resp
            .bytes()
            .map_err(|e| net_error("read", &url, e))?
            .to_vec())
    }

    fn read_at(
        &self,
        t: FileType,
        name: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, BackendError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let url = self.url(t, Some(name));
        let range = format!("bytes={}-{}", offset, offset + len as u64 - 1);
        let resp = self.send("read", &url, |c| {
            c.get(&url).header(reqwest::header::RANGE, &range)
        })?;
        let data = resp
            .bytes()
            .map_err(|e| net_error("read", &url, e))?
            .to_vec();
        if data.len() != len {
            return Err(net_error(
                "read",
                &url,
                format!("short read: {} of {len} bytes", data.len()),
            ));
        }
        Ok(data)
    }

    fn size(&self, t: FileType, name: &str) -> Result<u64, BackendError> {
        let url = self.url(t, Some(name));
        let resp = self.send("stat", &url, |c| c.head(&url))?;
        resp.headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| net_error("stat", &url, "no size in the answer"))
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let url = self.url(t, Some(name));
        let body = data.to_vec();
        self.send("write", &url, |c| c.put(&url).body(body.clone()))?;
        Ok(())
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        let url = self.url(t, Some(name));
        match self.send("remove", &url, |c| c.delete(&url)) {
            Ok(_) | Err(BackendError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

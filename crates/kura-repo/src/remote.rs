//! A repository stored by the Kura service, over HTTPS. The service authenticates the user
//! (`KURA_USER`/`KURA_USER_PASSWORD`, separate from the encryption passphrase, which never
//! leaves the device) and stores the encrypted files as they are.
//!
//! Every request is retried, with growing pauses, while the service cannot be reached or says
//! it is unavailable, for up to [`Remote::retry_for`]; large objects go in checked pieces
//! ([`crate::transfer`]), so a lost connection or a restarted service costs at most one piece.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::HeaderMap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::backend::{Backend, BackendError, FileType};
use crate::provider::Provider;
use crate::transfer::{self, CommitAnswer, LineSpeed, PieceAnswer, PieceLine};
use kura_api::{
    ByteRange, CHECKSUM_HEADER, ErrorBody, Incident, JobReport, Notice, ObjectConditions,
    RECEIVED_HEADER, Received, Removed, Route, Session, Statement, route,
};
use kura_core::Id;
use serde::de::DeserializeOwned;

/// How to reach and log in to the service.
#[derive(Clone)]
pub struct Remote {
    /// `https://host:port` (a trailing `/` is ignored).
    pub url: String,
    /// SHA-256 fingerprint (hex) of the service's certificate to pin; `None` trusts CA-signed
    /// certificates (Mozilla's roots).
    pub fingerprint: Option<String>,
    /// Service user name (not needed with a client certificate).
    pub user: String,
    /// Service password; `None` logs in with the client certificate.
    pub password: Option<String>,
    /// A client certificate and key (PEM files) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// How long to keep retrying while the service is unreachable or unavailable.
    pub retry_for: Duration,
    /// A fixed piece size for uploads; `None` picks it from the measured line speed.
    pub piece_size: Option<usize>,
    /// Told at once when the service cannot be reached and requests are being retried, and
    /// when it answers again, so a person is not left with silence.
    pub on_outage: Option<Arc<dyn Fn(Outage) + Send + Sync>>,
}

/// How the line to the service stands, for [`Remote::on_outage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outage {
    /// The service cannot be reached (or is unavailable); requests are retried for up to
    /// `retry_for` seconds.
    Retrying {
        /// Why the last request failed.
        reason: String,
        /// For how long requests are retried.
        retry_for: Duration,
    },
    /// The service answers again.
    Over,
}

impl std::fmt::Display for Outage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outage::Retrying { reason, retry_for } => write!(
                f,
                "the service cannot be reached; retrying for up to {} s: {reason}",
                retry_for.as_secs()
            ),
            Outage::Over => f.write_str("the service answers again"),
        }
    }
}

impl Remote {
    /// The default for [`Remote::retry_for`]: long enough to ride out a service restart or a
    /// dropped line, short enough that a service that is gone fails the command.
    pub const DEFAULT_RETRY: Duration = Duration::from_secs(120);
}

/// The service as a [`Backend`].
pub struct HttpBackend {
    remote: Remote,
    client: Client,
    token: Mutex<String>,
    speed: Mutex<LineSpeed>,
    windows: Mutex<VecDeque<Window>>,
    /// Whether an outage has been reported and not yet ended.
    in_outage: std::sync::atomic::AtomicBool,
}

/// A stretch of a pack read whole, so that restoring many small files costs one request per
/// window rather than one per blob.
///
/// Workers that want a window another worker is reading wait for that read instead of
/// repeating it: restore workers take neighbouring files, whose blobs share windows.
struct Window {
    pack: String,
    start: u64,
    data: Arc<WindowData>,
}

/// A window's bytes once read; `None` when the read failed.
type WindowData = OnceLock<Option<Arc<Vec<u8>>>>;

/// Settles a window as failed unless its read settled it, so no waiter is left waiting
/// on a read that ended early.
struct Settle<'a>(&'a WindowData);

impl Drop for Settle<'_> {
    fn drop(&mut self) {
        let _ = self.0.set(None);
    }
}

/// Window size and alignment.
const WINDOW: u64 = 4 << 20;
/// Reads at most this long go through a window; longer ones are worth their own request.
const SMALL_READ: usize = 1 << 20;
/// Windows kept (most recently used first): room for every restore worker's current packs.
const WINDOWS_KEPT: usize = 16;

/// A whole answer from the service (bodies are at most one pack, so they are read at once).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    /// The service's refusal, if the body is one.
    fn refusal(&self) -> Option<ErrorBody> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The `error` message of a refusal, or the start of the body.
    fn message(&self) -> String {
        self.refusal().map(|r| r.error).unwrap_or_else(|| {
            String::from_utf8_lossy(&self.body)
                .chars()
                .take(200)
                .collect()
        })
    }

    /// The body as the API type `T`.
    fn json<T: DeserializeOwned>(&self, op: &'static str, url: &str) -> Result<T, BackendError> {
        serde_json::from_slice(&self.body).map_err(|e| net_error(op, url, e))
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
        let got = transfer::sha256_hex(end_entity);
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

/// A TLS client configuration that pins `fingerprint`, or trusts Mozilla's roots without one,
/// and presents `client_cert` (certificate and key PEM files) if given.
pub fn tls_config(
    fingerprint: Option<&str>,
    client_cert: Option<&(PathBuf, PathBuf)>,
) -> Result<rustls::ClientConfig, BackendError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| net_error("configure TLS", "", e))?;
    let builder = match fingerprint {
        Some(f) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fingerprint: f.to_string(),
                provider,
            })),
        None => builder.with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
    };
    let Some((cert, key)) = client_cert else {
        return Ok(builder.with_no_client_auth());
    };
    let shown = |p: &PathBuf| p.display().to_string();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| net_error("read client certificate", &shown(cert), e))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| net_error("read client key", &shown(key), e))?;
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| net_error("use client certificate", &shown(cert), e))
}

impl HttpBackend {
    /// Connects and logs in; a refusal (wrong password, contract) is an error with the
    /// service's reason.
    pub fn connect(remote: Remote) -> Result<HttpBackend, BackendError> {
        let client = Client::builder()
            .use_preconfigured_tls(tls_config(
                remote.fingerprint.as_deref(),
                remote.client_cert.as_ref(),
            )?)
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| net_error("connect", &remote.url, e))?;
        let b = HttpBackend {
            remote,
            client,
            token: Mutex::new(String::new()),
            speed: Mutex::new(LineSpeed::default()),
            windows: Mutex::new(VecDeque::new()),
            in_outage: std::sync::atomic::AtomicBool::new(false),
        };
        b.login()?;
        Ok(b)
    }

    /// The URL of `route` filled with `args`.
    fn at(&self, route: Route, args: &[&str]) -> String {
        format!(
            "{}{}",
            self.remote.url.trim_end_matches('/'),
            route.path(args)
        )
    }

    fn login(&self) -> Result<(), BackendError> {
        let url = self.at(route::LOGIN, &[]);
        let body = kura_api::Login {
            user: self.remote.user.clone(),
            password: self.remote.password.clone(),
        };
        let answer = self.exchange("log in to", &url, false, |c| c.post(&url).json_body(&body))?;
        let session: Session = check(answer, &url)?.json("log in to", &url)?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = session.token;
        Ok(())
    }

    /// GETs an API answer of type `T`.
    fn get_json<T: DeserializeOwned>(
        &self,
        op: &'static str,
        route: Route,
    ) -> Result<T, BackendError> {
        let url = self.at(route, &[]);
        self.send(op, &url, |c| c.get(&url))?.json(op, &url)
    }

    /// Sends a request and reads the whole answer, retrying while the service is unreachable
    /// or unavailable; with `auth`, carries the session token and logs in again once if the
    /// session expired. Any other answer, success or refusal, is returned as it is.
    fn exchange(
        &self,
        op: &'static str,
        url: &str,
        auth: bool,
        make: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Answer, BackendError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(250);
        let mut relogged = false;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let mut req = make(&self.client);
            if auth {
                let token = self.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
                req = req.bearer_auth(token);
            }
            let outcome = req.send().and_then(|resp| {
                let status = resp.status();
                let headers = resp.headers().clone();
                resp.bytes().map(|b| Answer {
                    status,
                    headers,
                    body: b.to_vec(),
                })
            });
            let failure = match outcome {
                Ok(a) if a.status == StatusCode::UNAUTHORIZED && auth && !relogged => {
                    relogged = true;
                    self.login()?;
                    continue;
                }
                Ok(a) if is_unavailable(a.status) => {
                    // The service may say how long to wait; waiting less only adds load.
                    let asked = a
                        .headers
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(60)));
                    pause = pause.max(asked.unwrap_or_default());
                    format!("{} {}", a.status, a.message())
                }
                Ok(a) => {
                    self.outage(None);
                    return Ok(a);
                }
                Err(e) if is_certificate_error(&e) => return Err(net_error(op, url, describe(&e))),
                Err(e) => describe(&e),
            };
            self.outage(Some(&failure));
            if started.elapsed() + pause > self.remote.retry_for {
                return Err(net_error(
                    op,
                    url,
                    format!(
                        "{failure} (gave up after {tries} tries in {}s)",
                        started.elapsed().as_secs()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(8));
        }
    }

    /// Tells [`Remote::on_outage`] when an outage begins (`failure`) and ends (`None`),
    /// once each.
    fn outage(&self, failure: Option<&str>) {
        use std::sync::atomic::Ordering;
        let Some(tell) = &self.remote.on_outage else {
            return;
        };
        let now_out = failure.is_some();
        if self.in_outage.swap(now_out, Ordering::Relaxed) == now_out {
            return;
        }
        tell(match failure {
            Some(reason) => Outage::Retrying {
                reason: reason.to_string(),
                retry_for: self.remote.retry_for,
            },
            None => Outage::Over,
        });
    }

    /// [`HttpBackend::exchange`] with the token, with refusals turned into errors.
    fn send(
        &self,
        op: &'static str,
        url: &str,
        make: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Answer, BackendError> {
        check(self.exchange(op, url, true, make)?, url)
    }

    fn piece_len(&self) -> usize {
        self.remote.piece_size.unwrap_or_else(|| {
            transfer::piece_size(
                self.speed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .bytes_per_sec(),
            )
        })
    }

    /// The window of pack `name` at `start` (which may be short at the pack's end), from the
    /// cache, from a read already under way, or from the service.
    fn window(&self, name: &str, start: u64) -> Result<Arc<Vec<u8>>, BackendError> {
        let (data, reader) = {
            let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            let found = w.iter().position(|x| x.pack == name && x.start == start);
            match found.and_then(|i| w.remove(i)) {
                Some(hit) => {
                    let data = hit.data.clone();
                    w.push_front(hit);
                    (data, false)
                }
                None => {
                    let data = Arc::new(WindowData::new());
                    w.push_front(Window {
                        pack: name.to_string(),
                        start,
                        data: data.clone(),
                    });
                    w.truncate(WINDOWS_KEPT);
                    (data, true)
                }
            }
        };
        if !reader {
            if let Some(bytes) = data.wait() {
                return Ok(bytes.clone());
            }
            // The read waited on failed: this one reports its own outcome.
            return self.read_window(name, start);
        }
        let settle = Settle(&data);
        let read = self.read_window(name, start);
        let _ = data.set(read.as_ref().ok().cloned());
        drop(settle);
        if read.is_err() {
            let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            w.retain(|x| !Arc::ptr_eq(&x.data, &data));
        }
        read
    }

    /// Reads the window of pack `name` at `start` from the service.
    fn read_window(&self, name: &str, start: u64) -> Result<Arc<Vec<u8>>, BackendError> {
        let url = self.url(FileType::Pack, Some(name));
        let range = ByteRange::of(start, WINDOW).header();
        let answer = self.send("read", &url, |c| {
            c.get(&url).header(reqwest::header::RANGE, &range)
        })?;
        Ok(Arc::new(answer.body))
    }

    /// Runs an upload request and counts its speed.
    fn timed<T>(&self, bytes: usize, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.speed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(bytes, t.elapsed());
        out
    }

    fn url(&self, t: FileType, name: Option<&str>) -> String {
        match name {
            Some(n) => self.at(route::OBJECT, &[t.name(), n]),
            None => self.at(route::OBJECTS, &[t.name()]),
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

/// A refused or failed TLS handshake (a wrong pinned fingerprint): retrying cannot help.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        // io::Error's own source skips the error it wraps, and TLS errors come wrapped in
        // io::Errors two deep, so look inside them.
        let mut inner: &(dyn std::error::Error + 'static) = s;
        while let Some(wrapped) = inner
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            inner = wrapped;
        }
        if inner.is::<rustls::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Answers that mean "try again later".
fn is_unavailable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Maps the service's answer to a backend result, keeping its message.
fn check(answer: Answer, url: &str) -> Result<Answer, BackendError> {
    let status = answer.status;
    if status.is_success() {
        return Ok(answer);
    }
    Err(match status {
        StatusCode::NOT_FOUND => BackendError::NotFound(url.to_string()),
        StatusCode::INSUFFICIENT_STORAGE => BackendError::NoSpace(url.to_string()),
        _ => BackendError::Refused {
            status: status.as_u16(),
            message: answer.message(),
        },
    })
}

/// One object's upload in pieces over the uploads API.
struct Pieces<'a> {
    backend: &'a HttpBackend,
    url: String,
}

impl PieceLine for Pieces<'_> {
    fn received(&mut self) -> Result<u64, BackendError> {
        let url = &self.url;
        match self.backend.send("upload", url, |c| c.head(url)) {
            Ok(a) => a
                .headers
                .get(RECEIVED_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| net_error("upload", url, "no received count in the answer")),
            Err(BackendError::NotFound(_)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, offset: u64, piece: &[u8], sum: &str) -> Result<PieceAnswer, BackendError> {
        let url = format!("{}?offset={offset}", self.url);
        let answer = self.backend.timed(piece.len(), || {
            self.backend.exchange("upload", &url, true, |c| {
                c.put(&url)
                    .header(CHECKSUM_HEADER, sum)
                    .body(piece.to_vec())
            })
        })?;
        match answer.status {
            StatusCode::UNPROCESSABLE_ENTITY => Ok(PieceAnswer::Resend),
            StatusCode::CONFLICT => answer
                .refusal()
                .and_then(|r| r.received)
                .map(PieceAnswer::Elsewhere)
                .ok_or_else(|| net_error("upload", &url, answer.message())),
            _ => {
                let r: Received = check(answer, &url)?.json("upload", &url)?;
                Ok(PieceAnswer::Received(r.received))
            }
        }
    }

    fn commit(&mut self, sum: &str) -> Result<CommitAnswer, BackendError> {
        let url = &self.url;
        let answer = self.backend.exchange("upload", url, true, |c| {
            c.post(url).header(CHECKSUM_HEADER, sum)
        })?;
        if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
            return Ok(CommitAnswer::Resend);
        }
        check(answer, url)?;
        Ok(CommitAnswer::Stored)
    }
}

trait JsonBody {
    fn json_body(self, v: &impl serde::Serialize) -> Self;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, v: &impl serde::Serialize) -> Self {
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
        let answer = self.send("list", &url, |c| c.get(&url))?;
        serde_json::from_slice(&answer.body).map_err(|e| net_error("list", &url, e))
    }

    fn read(&self, t: FileType, name: &str) -> Result<Vec<u8>, BackendError> {
        let url = self.url(t, Some(name));
        Ok(self.send("read", &url, |c| c.get(&url))?.body)
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
        let start = offset - offset % WINDOW;
        if t == FileType::Pack && len <= SMALL_READ && offset + len as u64 <= start + WINDOW {
            let window = self.window(name, start)?;
            let at = (offset - start) as usize;
            return window
                .get(at..at + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| net_error("read", name, "short read: the pack ends early"));
        }
        let url = self.url(t, Some(name));
        let range = ByteRange::of(offset, len as u64).header();
        let data = self
            .send("read", &url, |c| {
                c.get(&url).header(reqwest::header::RANGE, &range)
            })?
            .body;
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
        self.send("stat", &url, |c| c.head(&url))?
            .headers
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| net_error("stat", &url, "no size in the answer"))
    }

    fn write(&self, t: FileType, name: &str, data: &[u8]) -> Result<(), BackendError> {
        if data.len() > self.piece_len() {
            let mut line = Pieces {
                backend: self,
                url: self.at(route::UPLOAD, &[t.name(), name]),
            };
            return transfer::upload(&mut line, data, || self.piece_len());
        }
        let url = self.url(t, Some(name));
        let sum = transfer::sha256_hex(data);
        for _ in 0..=transfer::MAX_RESENDS {
            let answer = self.timed(data.len(), || {
                self.exchange("write", &url, true, |c| {
                    c.put(&url)
                        .header(CHECKSUM_HEADER, &sum)
                        .body(data.to_vec())
                })
            })?;
            if answer.status != StatusCode::UNPROCESSABLE_ENTITY {
                check(answer, &url)?;
                return Ok(());
            }
        }
        Err(net_error(
            "write",
            &url,
            "the object arrived damaged every time",
        ))
    }

    fn remove(&self, t: FileType, name: &str) -> Result<(), BackendError> {
        let url = self.url(t, Some(name));
        match self.send("remove", &url, |c| c.delete(&url)) {
            Ok(_) | Err(BackendError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn remove_partials(&self) -> Result<(usize, u64), BackendError> {
        let list = self.at(route::UPLOADS, &[]);
        let pending: Vec<kura_api::Upload> = self
            .send("list uploads", &list, |c| c.get(&list))?
            .json("list uploads", &list)?;
        let url = format!("{list}?older_than=0");
        let r: Removed = self
            .send("clean up", &url, |c| c.delete(&url))?
            .json("clean up", &url)?;
        Ok((r.removed, pending.iter().map(|u| u.received).sum()))
    }

    fn provider(&self) -> Option<&dyn Provider> {
        Some(self)
    }
}

impl Provider for HttpBackend {
    fn report_job(&self, report: &JobReport) -> Result<(), BackendError> {
        let url = self.at(route::JOB, &[&report.job.to_string()]);
        self.send("report", &url, |c| c.put(&url).json_body(report))?;
        Ok(())
    }

    fn report_snapshot_packs(&self, snapshot: &str, packs: &[Id]) -> Result<(), BackendError> {
        let url = self.at(route::SNAPSHOT_PACKS, &[snapshot]);
        let body = kura_core::id::ids_to_bytes(packs);
        self.send("report snapshot packs to", &url, |c| {
            c.put(&url).body(body.clone())
        })?;
        Ok(())
    }

    fn conditions(
        &self,
        since: Option<jiff::Timestamp>,
    ) -> Result<Vec<ObjectConditions>, BackendError> {
        let mut url = self.at(route::CONDITIONS, &[]);
        if let Some(t) = since {
            url.push_str(&format!("?since={t}"));
        }
        let op = "read conditions from";
        self.send(op, &url, |c| c.get(&url))?.json(op, &url)
    }

    fn lost(&self) -> Result<Vec<String>, BackendError> {
        self.get_json("read lost objects from", route::LOST)
    }

    fn statements(&self) -> Result<Vec<Statement>, BackendError> {
        self.get_json("read statements from", route::STATEMENTS)
    }

    fn object_to(&self, statement: &str, reason: &str) -> Result<Statement, BackendError> {
        let url = self.at(route::OBJECTION, &[statement]);
        let body = kura_api::Objection {
            reason: reason.to_string(),
        };
        let answer = self.send("object at", &url, |c| c.post(&url).json_body(&body))?;
        answer.json("object at", &url)
    }

    fn incidents(&self) -> Result<Vec<Incident>, BackendError> {
        self.get_json("read incidents from", route::INCIDENTS)
    }

    fn notices(&self) -> Result<Vec<Notice>, BackendError> {
        self.get_json("read messages from", route::MESSAGES)
    }
}

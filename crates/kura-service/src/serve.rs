//! Serving the API ([`crate::api::app`]) over TLS: the certificate, the acceptor that hands
//! the client's certificate to the handlers, the header timeout, the background tasks, and a
//! graceful stop on SIGTERM (what systemd sends) or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Extension;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;

use crate::api::auth::ClientCert;
use crate::api::throttle::LoginGate;
use crate::api::{AppState, Metrics};
use crate::registry::{Registry, RegistryError};
use crate::sites::PlacementConfig;
use crate::storage::Storage;
use crate::tasks::{Background, TaskRuns};
use crate::tls::Identity;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the database, TLS identity and users' storage live.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// A configured certificate and key (PEM); `None` makes a self-signed one.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long a session token is valid.
    pub session_ttl: jiff::SignedDuration,
    /// How long a client may take to send a request's headers, and a new connection its
    /// first byte (a stalled, slow or idle client is disconnected after this).
    pub header_timeout: std::time::Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Password checks at once (see [`LoginGate`]).
    pub password_checks: usize,
    /// Objects one user may store; 0 for no limit.
    pub max_objects: u64,
    /// The token `/metrics` asks for; `None` answers anyone.
    pub metrics_token: Option<String>,
    /// Bytes of request and response bodies held at once (see [`crate::api::budget`]).
    pub request_memory: u64,
    /// Requests of one user at once; more wait.
    pub requests_per_user: usize,
    /// The storage sites and membership levels.
    pub placement: PlacementConfig,
    /// How often placements are brought up to date (sites that returned, new risk feeds,
    /// changed levels and home regions).
    pub placement_every: std::time::Duration,
    /// The mail relay notices are delivered through; `None` keeps them in the outbox.
    pub mail: Option<crate::notice::MailConfig>,
    /// How often stored copies are checked (the first check runs this long after the start).
    pub verify_every: std::time::Duration,
    /// The share of objects each periodic check reads, least recently checked first (1-100).
    pub verify_sample: f64,
    /// The price table; `None` runs no billing.
    pub billing: Option<kura_billing::Prices>,
    /// How often the billing cycle looks for a period to settle and charges to settle.
    pub billing_every: std::time::Duration,
}

/// How long in-flight requests get to finish once the service is told to stop.
const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts TLS connections, at most so many at once, and records the client's certificate
/// for the handlers.
#[derive(Clone)]
struct ClientCertAcceptor {
    tls: RustlsAcceptor,
    /// One permit per open connection.
    slots: Arc<Semaphore>,
    /// How long a new connection may stay silent.
    first_byte: Duration,
}

impl<I, S> Accept<I, S> for ClientCertAcceptor
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = Connection<tokio_rustls::server::TlsStream<I>>;
    type Service = axum::middleware::AddExtension<S, ClientCert>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::io::Result<(Self::Stream, Self::Service)>> + Send,
        >,
    >;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let inner = self.tls.clone();
        let slot = self.slots.clone().try_acquire_owned();
        let first_byte = self.first_byte;
        Box::pin(async move {
            // Dropping the stream closes it: a client over the limit costs one accept.
            let slot = slot.map_err(|_| {
                tracing::warn!("connection refused: the limit of open connections is reached");
                std::io::Error::other("too many connections")
            })?;
            let (stream, service) = inner.accept(stream, service).await?;
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| crate::tls::fingerprint(c));
            let stream = Connection {
                stream,
                _slot: slot,
                silence: Some(Box::pin(tokio::time::sleep(first_byte))),
            };
            Ok((stream, Extension(ClientCert(cert)).layer(service)))
        })
    }
}

/// An accepted connection: it holds its slot while open, and is closed if it sends nothing
/// within its first-byte deadline (the header timeout only starts with the first byte).
struct Connection<S> {
    stream: S,
    _slot: OwnedSemaphorePermit,
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Connection<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.silence = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => match this.silence.as_mut().map(|s| s.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent nothing",
                ))),
                _ => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Connection<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Opens the service database under `data_dir` (for the offline admin commands too).
/// The directory is made private (0700, its files 0600), and so is a new database before
/// SQLite writes to it (its journal files take the database's mode).
pub fn open_registry(data_dir: &Path) -> Result<Registry, RegistryError> {
    use std::os::unix::fs::OpenOptionsExt;
    let invalid =
        |e: std::io::Error| RegistryError::Invalid(format!("{}: {e}", data_dir.display()));
    kura_repo::backend::private_dir(data_dir).map_err(invalid)?;
    let path = data_dir.join("kura.sqlite");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(invalid)?;
    Registry::open(&path)
}

/// Resolves when the process is told to stop: SIGTERM or Ctrl-C.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Where and how one of Kura's HTTPS listeners runs: the service's, the vault's and the key
/// manager's are alike.
#[derive(Debug, Clone)]
pub struct Listen {
    /// Where the TLS identity is kept (made self-signed on first start).
    pub tls_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    pub addr: SocketAddr,
    /// A configured certificate and key (PEM); `None` uses the self-signed one.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long a client may take to send a request's headers, and a new connection its
    /// first byte.
    pub header_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
}

/// Runs the service until SIGTERM or Ctrl-C, then lets in-flight requests finish (for up to
/// ten seconds) and returns. `ready` is called with the bound address and the TLS identity
/// once it accepts connections. An upload cut off by the stop is not lost: its pieces are on
/// disk and a commit keeps them until the object is stored, so the client goes on from there.
pub async fn serve(
    opts: ServeOptions,
    ready: impl FnOnce(SocketAddr, &Identity),
) -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = Arc::new(open_registry(&opts.data_dir).map_err(std::io::Error::other)?);
    // Reservations of a service that was stopped or killed hold nothing any more.
    registry
        .clear_reservations()
        .map_err(std::io::Error::other)?;
    // Nor do bodies it was receiving.
    crate::spool::clear(&opts.data_dir)?;
    let storage = Arc::new(
        Storage::open(&opts.data_dir, &opts.placement, registry.clone())
            .await
            .map_err(std::io::Error::other)?,
    );
    storage
        .import_local_repositories()
        .await
        .map_err(std::io::Error::other)?;
    let tasks = Arc::new(TaskRuns::default());
    let state = Arc::new(AppState {
        registry,
        storage: storage.clone(),
        data_dir: opts.data_dir.clone(),
        ttl: opts.session_ttl,
        metrics: Metrics::default(),
        tasks: tasks.clone(),
        login_gate: LoginGate::new(opts.password_checks),
        max_objects: opts.max_objects,
        metrics_token: opts.metrics_token.clone(),
        budget: crate::api::budget::Budget::new(opts.request_memory, opts.requests_per_user),
    });
    let router = crate::api::app(state);
    crate::tasks::start(
        Background {
            storage,
            data_dir: opts.data_dir.clone(),
            mail: opts.mail.clone(),
            placement_every: opts.placement_every,
            verify_every: opts.verify_every,
            verify_sample: opts.verify_sample,
            billing: opts.billing.clone(),
            billing_every: opts.billing_every,
        },
        &tasks,
    );
    let listen = Listen {
        tls_dir: opts.data_dir.join("tls"),
        addr: opts.listen,
        tls: opts.tls.clone(),
        header_timeout: opts.header_timeout,
        max_connections: opts.max_connections,
    };
    serve_router(router, listen, "kura service", ready).await
}

/// Serves `router` over TLS as `listen` says until SIGTERM or Ctrl-C, then lets in-flight
/// requests finish (for up to ten seconds). Every connection holds one of a fixed number of
/// slots and is closed if silent past its deadline; the client's certificate, if any, reaches
/// the handlers as a [`ClientCert`] extension. `ready` is called with the bound address and
/// the TLS identity once it accepts connections; `name` is what the log calls it.
pub async fn serve_router(
    router: axum::Router,
    listen: Listen,
    name: &str,
    ready: impl FnOnce(SocketAddr, &Identity),
) -> std::io::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let identity = crate::tls::identity(&listen.tls_dir, listen.tls.clone())?;
    let tls = RustlsConfig::from_config(crate::tls::server_config(&identity)?);
    let listener = std::net::TcpListener::bind(listen.addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping: finishing requests in flight");
        shutdown.graceful_shutdown(Some(GRACE));
    });
    ready(addr, &identity);
    tracing::info!(%addr, fingerprint = %identity.fingerprint, "{name} listening");
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(ClientCertAcceptor {
            tls: RustlsAcceptor::new(tls).handshake_timeout(listen.header_timeout),
            slots: Arc::new(Semaphore::new(listen.max_connections)),
            first_byte: listen.header_timeout,
        })
        .handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(listen.header_timeout);
    server
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs `f` (SQLite, Argon2id: work that blocks) on tokio's blocking threads; a task that
/// panicked or was cut short comes back as the caller's error.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<tokio::task::JoinError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

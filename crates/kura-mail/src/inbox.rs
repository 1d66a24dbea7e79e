//! Receiving mail: a mailbox read over IMAP (the `imap` crate), which both agents watch.
//!
//! Mail is fetched with `BODY.PEEK[]`, so reading a message never marks it: ordinary mail
//! (no MB field) is left exactly as it was, flags included. What an agent has handled is
//! remembered as the mailbox's UID validity and the highest UID handled ([`Mark`]), and an MB
//! message it has handled is removed from the mailbox (`UID EXPUNGE` of that message alone).
//! A message's size is asked before its bytes, so one larger than [`MAX_MESSAGE`] is never
//! downloaded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use imap::extensions::idle::SetReadTimeout;
use serde::Deserialize;

use crate::message::MAX_MESSAGE;
use crate::relay::Security;

/// The most messages one [`Inbox::arrivals`] returns, so one pass holds a bounded amount.
pub const BATCH: usize = 16;

/// A mailbox at an IMAP server and the login to it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    /// The server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port (default: 993 for TLS, 143 otherwise).
    pub port: Option<u16>,
    /// How the connection is secured: `tls` from the start (IMAPS, the default; RFC 8314
    /// prefers it to STARTTLS, which is not offered), or `none` (a server on this host only:
    /// the password travels in clear).
    pub security: Option<Security>,
    /// A PEM file of certificates to trust besides the usual public roots (a server with a
    /// certificate of its own authority).
    pub ca_file: Option<PathBuf>,
    /// The login.
    pub username: String,
    /// Its password.
    pub password: Option<String>,
    /// A file holding the password instead (its first line).
    pub password_file: Option<PathBuf>,
    /// The folder watched (default `INBOX`).
    pub folder: Option<String>,
}

/// Without the password.
impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

/// Why the mailbox could not be read.
#[derive(Debug, thiserror::Error)]
#[error("IMAP {host}: {what}")]
pub struct InboxError {
    host: String,
    what: String,
}

/// Where reading stopped: the mailbox's UID validity and the highest UID handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    /// The UID validity the UID belongs to.
    pub validity: u32,
    /// The highest UID handled.
    pub uid: u32,
}

/// A message that arrived.
#[derive(Debug)]
pub struct Arrived {
    /// Its UID.
    pub uid: u32,
    /// Its bytes, or its size when that is more than [`MAX_MESSAGE`] (not downloaded).
    pub bytes: Result<Vec<u8>, u64>,
}

/// The connection to the server: plain, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl SetReadTimeout for Stream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> imap::Result<()> {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_mut(),
        };
        SetReadTimeout::set_read_timeout(tcp, timeout)
    }
}

/// The TLS client configuration: the public roots and those of `ca_file`.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(f) = ca_file {
        let certs = CertificateDer::pem_file_iter(f)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", f.display()))?;
        for c in certs {
            roots.add(c).map_err(|e| format!("{}: {e}", f.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `tcp` wrapped in TLS for `host`, the handshake done.
fn wrap(tcp: TcpStream, host: &str, ca_file: Option<&PathBuf>) -> Result<Stream, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    let conn =
        rustls::ClientConnection::new(tls_config(ca_file)?, name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS with {host}: {e}"))?;
    }
    Ok(Stream::Tls(Box::new(tls)))
}

/// An open mailbox.
pub struct Inbox {
    session: imap::Session<Stream>,
    host: String,
    validity: u32,
}

impl Inbox {
    /// Logs in and opens the folder.
    pub fn connect(m: &Mailbox) -> Result<Inbox, InboxError> {
        let err = |what: String| InboxError {
            host: m.host.clone(),
            what,
        };
        let tls = match m.security.unwrap_or(Security::Tls) {
            Security::Tls => true,
            Security::None => false,
            Security::Starttls => {
                return Err(err(
                    "security = \"starttls\" is not offered for IMAP: use \"tls\" (port 993)"
                        .into(),
                ));
            }
        };
        let port = m.port.unwrap_or(if tls { 993 } else { 143 });
        let tcp = std::net::ToSocketAddrs::to_socket_addrs(&(m.host.as_str(), port))
            .map_err(|e| err(e.to_string()))?
            .find_map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)).ok())
            .ok_or_else(|| err("connection refused".into()))?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| err(e.to_string()))?;
        let stream = if tls {
            wrap(tcp, &m.host, m.ca_file.as_ref()).map_err(err)?
        } else {
            Stream::Plain(tcp)
        };
        let mut client = imap::Client::new(stream);
        client.read_greeting().map_err(|e| err(e.to_string()))?;
        let password = crate::relay::password(&m.password, &m.password_file).map_err(err)?;
        let mut session = client
            .login(&m.username, password.as_deref().unwrap_or(""))
            .map_err(|(e, _)| err(format!("login as {}: {e}", m.username)))?;
        let folder = m.folder.as_deref().unwrap_or("INBOX");
        let opened = session
            .select(folder)
            .map_err(|e| err(format!("{folder}: {e}")))?;
        Ok(Inbox {
            session,
            host: m.host.clone(),
            validity: opened.uid_validity.unwrap_or(0),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> InboxError {
        InboxError {
            host: self.host.clone(),
            what: e.to_string(),
        }
    }

    /// Up to [`BATCH`] messages after `after`, oldest first (all of the folder when `after`
    /// names another UID validity).
    pub fn arrivals(&mut self, after: Mark) -> Result<(u32, Vec<Arrived>), InboxError> {
        let from = if after.validity == self.validity {
            after.uid
        } else {
            0
        };
        let mut uids: Vec<u32> = self
            .session
            .uid_search(format!("UID {}:*", u64::from(from) + 1))
            .map_err(|e| self.err(e))?
            .into_iter()
            .filter(|u| *u > from)
            .collect();
        uids.sort_unstable();
        uids.truncate(BATCH);
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            let sizes = self
                .session
                .uid_fetch(uid.to_string(), "RFC822.SIZE")
                .map_err(|e| self.err(e))?;
            let size = sizes.iter().find_map(|f| f.size).unwrap_or(0);
            if size as usize > MAX_MESSAGE {
                out.push(Arrived {
                    uid,
                    bytes: Err(u64::from(size)),
                });
                continue;
            }
            let fetched = self
                .session
                .uid_fetch(uid.to_string(), "BODY.PEEK[]")
                .map_err(|e| self.err(e))?;
            let bytes = fetched
                .iter()
                .find_map(|f| f.body().map(<[u8]>::to_vec))
                .unwrap_or_default();
            out.push(Arrived {
                uid,
                bytes: Ok(bytes),
            });
        }
        Ok((self.validity, out))
    }

    /// Removes a handled message from the mailbox.
    pub fn remove(&mut self, uid: u32) -> Result<(), InboxError> {
        let set = uid.to_string();
        self.session
            .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
            .map_err(|e| self.err(e))?;
        self.session.uid_expunge(&set).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Waits until the server reports a change to the folder or `timeout` passes (IMAP IDLE);
    /// whether the folder changed.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, InboxError> {
        let mut idle = self.session.idle();
        idle.timeout(timeout).keepalive(false);
        let outcome = idle.wait_while(imap::extensions::idle::stop_on_any);
        drop(idle);
        outcome
            .map(|o| matches!(o, imap::extensions::idle::WaitOutcome::MailboxChanged))
            .map_err(|e| self.err(e))
    }

    /// Logs out.
    pub fn close(mut self) {
        let _ = self.session.logout();
    }
}

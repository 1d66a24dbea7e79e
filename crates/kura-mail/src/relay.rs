//! Sending mail: an SMTP relay reached with lettre, shared by the phone and terminal agents
//! and the service's notices.

use serde::Deserialize;

use crate::message::address_of;

/// How the relay is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
    /// No encryption (a relay on the same host or network only).
    None,
}

/// An SMTP relay and the login at it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// The relay's host name.
    pub relay: String,
    /// Its port (default: 587 for STARTTLS, 465 for TLS, 25 without).
    pub port: Option<u16>,
    /// How the connection is secured.
    #[serde(default)]
    pub security: Security,
    /// The login at the relay, if it needs one.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// A file holding the password instead (its first line), so the configuration holds no
    /// secret.
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
}

/// The password given directly, or the first line of `file`.
pub fn password(
    given: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<Option<String>, String> {
    match (given, file) {
        (Some(p), _) => Ok(Some(p.clone())),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map(|t| Some(t.lines().next().unwrap_or_default().to_string()))
            .map_err(|e| format!("password file {}: {e}", f.display())),
        (None, None) => Ok(None),
    }
}

/// Without the password, so a printed configuration gives none away.
impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("relay", &self.relay)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration or an address cannot be used.
    #[error("mail relay: {0}")]
    Config(String),
    /// The relay refused the message or could not be reached.
    #[error("mail relay: {0}")]
    Send(String),
}

impl Relay {
    /// The lettre transport for this relay.
    pub fn transport(&self) -> Result<lettre::SmtpTransport, RelayError> {
        use lettre::transport::smtp::authentication::Credentials;
        let bad = |e: lettre::transport::smtp::Error| RelayError::Config(e.to_string());
        let builder = match self.security {
            Security::Starttls => {
                lettre::SmtpTransport::starttls_relay(&self.relay).map_err(bad)?
            }
            Security::Tls => lettre::SmtpTransport::relay(&self.relay).map_err(bad)?,
            Security::None => lettre::SmtpTransport::builder_dangerous(&self.relay),
        };
        let mut builder = builder.timeout(Some(std::time::Duration::from_secs(30)));
        if let Some(port) = self.port {
            builder = builder.port(port);
        }
        let password = password(&self.password, &self.password_file).map_err(RelayError::Config)?;
        if let (Some(u), Some(p)) = (&self.username, password) {
            builder = builder.credentials(Credentials::new(u.clone(), p));
        }
        Ok(builder.build())
    }

    /// Sends `message` (a whole RFC 5322 message) from `from` to `to` through `transport`.
    pub fn send(
        transport: &lettre::SmtpTransport,
        from: &str,
        to: &str,
        message: &[u8],
    ) -> Result<(), RelayError> {
        use lettre::Transport;
        let parse = |a: &str| {
            address_of(a)
                .parse::<lettre::Address>()
                .map_err(|e| RelayError::Config(format!("address {a:?}: {e}")))
        };
        let envelope = lettre::address::Envelope::new(Some(parse(from)?), vec![parse(to)?])
            .map_err(|e| RelayError::Config(e.to_string()))?;
        transport
            .send_raw(&envelope, message)
            .map(|_| ())
            .map_err(|e| RelayError::Send(e.to_string()))
    }
}

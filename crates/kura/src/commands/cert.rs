//! `kura cert create`: a client certificate for logging in to the service without a password.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use kura_repo::lock::hostname;
use serde_json::json;

use crate::ctx::Ctx;

/// Certificate commands.
#[derive(Subcommand)]
pub enum CertCommand {
    /// Make a self-signed client certificate and key; prints the fingerprint for the provider
    /// to register (`kura admin user cert NAME FINGERPRINT`).
    Create {
        /// Directory for client.crt and client.key (default ~/.config/kura/client).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Name in the certificate (default: this host's name).
        #[arg(long)]
        name: Option<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

/// `kura cert ...`.
pub fn cert(ctx: &Ctx, c: CertCommand) -> Result<()> {
    let CertCommand::Create { out, name, days } = c;
    let dir = match out {
        Some(d) => d,
        None => crate::config::client_cert_dir()?,
    };
    let id = kura_service::tls::client_certificate(&dir, &name.unwrap_or_else(hostname), days)?;
    ctx.out.emit(
        &json!({"cert": id.cert, "key": id.key, "fingerprint": id.fingerprint}),
        || {
            format!(
                "wrote {} and {}\nfingerprint (SHA-256): {}\nthe provider registers it with `kura admin user cert NAME {}`; then use --client-cert and --client-key (or KURA_CLIENT_CERT, KURA_CLIENT_KEY)",
                id.cert.display(),
                id.key.display(),
                id.fingerprint,
                id.fingerprint
            )
        },
    );
    Ok(())
}

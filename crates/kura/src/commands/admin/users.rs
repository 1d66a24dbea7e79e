//! `kura admin user ...` and `kura admin contract set`: who may log in, how, and under what
//! contract.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use kura_service::registry::Contract;
use kura_service::sites::Placement;
use serde_json::{Value, json};

use super::Admin;
use crate::ctx::read_secret;
use crate::output::table;

/// User commands.
#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a user; the password (at least 8 characters) is stored as an Argon2id hash.
    Add {
        /// Login name.
        name: String,
        /// File holding the password.
        #[arg(long)]
        password_file: PathBuf,
        /// Where the user's notices are mailed.
        #[arg(long)]
        email: Option<String>,
    },
    /// Set where a user's notices are mailed (no ADDRESS: mail none; they stay in the outbox).
    Email {
        /// The user.
        name: String,
        /// The address.
        address: Option<String>,
    },
    /// List users with their contracts and usage.
    List,
    /// Let a user log in with a client certificate (mutual TLS) instead of a password.
    Cert {
        /// The user.
        name: String,
        /// The certificate's SHA-256 fingerprint (printed by `kura cert create`).
        #[arg(required_unless_present = "cert", conflicts_with = "cert")]
        fingerprint: Option<String>,
        /// Or the certificate file (PEM) itself.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Withdraw the certificate instead (a lost or stolen device); the user's sessions end.
        #[arg(long)]
        remove: bool,
    },
}

/// An answer on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum YesNo {
    /// Yes.
    Yes,
    /// No.
    No,
}

/// Contract commands.
#[derive(Subcommand)]
pub enum ContractCommand {
    /// Set a user's contract (replacing any earlier one).
    Set {
        /// The user.
        name: String,
        /// Last day of the access period (YYYY-MM-DD).
        #[arg(long)]
        until: jiff::civil::Date,
        /// Whether the fee is paid.
        #[arg(long, value_enum)]
        paid: YesNo,
        /// Most bytes stored, each object charged at least 4 KiB (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_bytes: u64,
        /// Most snapshots (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_archives: u64,
        /// Most sessions over the contract (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_accesses: u64,
        /// The fee plan.
        #[arg(long, default_value = "standard")]
        plan: String,
        /// The user's home region (their second copy is kept in another).
        #[arg(long, default_value = "")]
        home_region: String,
        /// When the membership began, YYYY-MM-DD (default: as recorded, or today).
        #[arg(long)]
        member_since: Option<jiff::civil::Date>,
    },
}

/// `kura admin user ...`.
pub fn user(a: Admin, c: UserCommand) -> Result<()> {
    let Admin { registry, out, .. } = &a;
    match c {
        UserCommand::Add {
            name,
            password_file,
            email,
        } => {
            let password = read_secret(&password_file, "password file")?;
            if let Some(e) = &email {
                kura_service::registry::check_email(e)?;
            }
            let id = registry.add_user(&name, &password)?;
            registry.set_email(&name, email.as_deref())?;
            out.emit(&json!({"user": name, "id": id}), || {
                format!(
                    "added user {name} (id {id}); give them a contract with `kura admin contract set {name} ...`"
                )
            });
        }
        UserCommand::Email { name, address } => {
            registry.set_email(&name, address.as_deref())?;
            out.emit(
                &json!({"user": name, "email": address}),
                || match &address {
                    Some(a) => format!("notices to {name} are mailed to {a}"),
                    None => format!("notices to {name} are no longer mailed"),
                },
            );
        }
        UserCommand::Cert {
            name,
            fingerprint,
            cert,
            remove,
        } => {
            let fp = match (fingerprint, cert) {
                (Some(f), _) => f,
                (None, Some(path)) => kura_service::tls::certificate_fingerprint(&path)?,
                (None, None) => bail!("give the certificate's fingerprint or --cert FILE"),
            };
            let fp = fp.to_ascii_lowercase();
            if remove {
                registry.remove_cert(&name, &fp)?;
                out.emit(&json!({"user": name, "removed": fp}), || {
                    format!("{name} may no longer log in with the client certificate {fp}")
                });
            } else {
                registry.add_cert(&name, &fp)?;
                out.emit(&json!({"user": name, "fingerprint": fp}), || {
                    format!("{name} may now log in with the client certificate {fp}")
                });
            }
        }
        UserCommand::List => list(&a)?,
    }
    Ok(())
}

fn list(a: &Admin) -> Result<()> {
    let users = a.registry.users()?;
    let placement = Placement::load(&a.data_dir, &a.config.placement())?;
    let today = jiff::Zoned::now().date();
    let level = |c: &Contract| placement.level_of(c, today).to_string();
    let listing: Vec<Value> = users
        .iter()
        .map(|u| {
            let mut v = serde_json::to_value(u).unwrap_or_default();
            v["level"] = u.contract.as_ref().map(level).into();
            v
        })
        .collect();
    a.out.emit(&listing, || {
        let header = format!(
            "{:<16} {:>4} {:>12} {:>8} {:>8}  contract",
            "user", "id", "bytes", "objects", "accesses"
        );
        table(header, users.iter().map(|u| {
            let c = match &u.contract {
                Some(c) => format!(
                    "{} until {} {} (max bytes {}, archives {}, accesses {}); level {}, home {}",
                    c.plan,
                    c.until,
                    if c.paid { "paid" } else { "UNPAID" },
                    c.max_bytes,
                    c.max_archives,
                    c.max_accesses,
                    level(c),
                    if c.home_region.is_empty() {
                        "-"
                    } else {
                        &c.home_region
                    },
                ),
                None => "none".into(),
            };
            format!(
                "{:<16} {:>4} {:>12} {:>8} {:>8}  {c}",
                u.name, u.id, u.bytes, u.objects, u.accesses
            )
        }))
    });
    Ok(())
}

/// `kura admin contract set`.
pub fn contract(a: Admin, c: ContractCommand) -> Result<()> {
    let ContractCommand::Set {
        name,
        until,
        paid,
        max_bytes,
        max_archives,
        max_accesses,
        plan,
        home_region,
        member_since,
    } = c;
    let c = Contract {
        plan,
        until,
        paid: matches!(paid, YesNo::Yes),
        max_bytes,
        max_archives,
        max_accesses,
        home_region,
        member_since,
    };
    a.registry.set_contract(&name, &c)?;
    a.out.emit(&json!({"user": name, "contract": c}), || {
        format!("contract of {name} set")
    });
    Ok(())
}

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
        #[arg(long = "login-password-file", id = "login_password_file")]
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
    /// Replace a user's password (a leaked one stops working at once: their sessions end).
    Passwd {
        /// The user.
        name: String,
        /// File holding the new password (at least 8 characters).
        #[arg(
            long = "login-password-file",
            id = "login_password_file",
            required_unless_present = "clear"
        )]
        password_file: Option<PathBuf>,
        /// Set the maintenance password instead: kept off the user's devices, it is the one
        /// credential that may delete or replace objects of an append-only user (for `kura
        /// forget` and `kura prune`).
        #[arg(long)]
        maintenance: bool,
        /// With --maintenance: withdraw the maintenance password.
        #[arg(long, requires = "maintenance", conflicts_with = "login_password_file")]
        clear: bool,
    },
    /// Make a user append-only (on) or not (off). Append-only: their devices may add
    /// snapshots but the service refuses every delete and overwrite, so ransomware on a
    /// device cannot destroy its backups; only the maintenance password (`user passwd
    /// --maintenance`) may. The user's sessions end so the change holds at once.
    AppendOnly {
        /// The user.
        name: String,
        /// On or off.
        #[arg(value_enum)]
        state: OnOff,
    },
    /// End every session of a user (they log in again with a valid credential).
    Logout {
        /// The user.
        name: String,
    },
    /// Remove a user: no one can log in as them again and their contract ends. Stored data is
    /// deleted from every site only with --delete-data; a user with data is refused without it.
    /// Statements and the ledger keep their name, which is not given to anyone else.
    Remove {
        /// The user.
        name: String,
        /// Delete every object the user stores, on every site. This cannot be undone.
        #[arg(long)]
        delete_data: bool,
        /// Do not ask for confirmation (needed when not on a terminal).
        #[arg(long)]
        yes: bool,
    },
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

/// A switch on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
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
        UserCommand::Passwd {
            name,
            password_file,
            maintenance,
            clear: _,
        } => {
            let password = password_file
                .map(|f| read_secret(&f, "password file"))
                .transpose()?;
            let what = if maintenance {
                registry.set_maintenance_password(&name, password.as_deref())?;
                match password {
                    Some(_) => "maintenance password set",
                    None => "maintenance password withdrawn",
                }
            } else {
                let Some(p) = password else {
                    bail!("give the new password with --password-file")
                };
                registry.set_password(&name, &p)?;
                "password changed"
            };
            out.emit(&json!({"user": name, "done": what}), || {
                format!("{name}: {what}; their sessions have ended")
            });
        }
        UserCommand::AppendOnly { name, state } => {
            let on = matches!(state, OnOff::On);
            registry.set_append_only(&name, on)?;
            let has_maintenance = registry.has_maintenance_password(&name)?;
            out.emit(
                &json!({"user": name, "append_only": on, "maintenance_password": has_maintenance}),
                || match (on, has_maintenance) {
                    (true, true) => format!(
                        "{name} is append-only: deleting needs their maintenance password"
                    ),
                    (true, false) => format!(
                        "{name} is append-only; nothing can delete their data until a \
                         maintenance password is set (`kura admin user passwd {name} --maintenance`)"
                    ),
                    (false, _) => format!("{name} may delete and replace their data again"),
                },
            );
        }
        UserCommand::Logout { name } => {
            let ended = registry.end_sessions(&name)?;
            out.emit(&json!({"user": name, "sessions_ended": ended}), || {
                format!("{name}: {ended} sessions ended")
            });
        }
        UserCommand::Remove {
            name,
            delete_data,
            yes,
        } => return remove(a, &name, delete_data, yes),
    }
    Ok(())
}

/// `kura admin user remove`.
fn remove(a: Admin, name: &str, delete_data: bool, yes: bool) -> Result<()> {
    let user = a.registry.user(name)?;
    if user.objects > 0 && !delete_data {
        bail!(
            "{name} stores {} ({} bytes charged); removing them deletes it: \
             add --delete-data to do so",
            kura_core::count(user.objects, "object"),
            user.bytes
        );
    }
    if !yes {
        confirm(name, user.objects)?;
    }
    let out = a.out;
    let (runtime, storage, _) = a.storage()?;
    let registry = storage.registry().clone();
    let deleted = runtime.block_on(async {
        let mut deleted = 0u64;
        for o in registry.objects(user.id, None)? {
            let kind = kura_repo::FileType::from_name(&o.kind)
                .ok_or_else(|| anyhow::anyhow!("unknown object kind {:?}", o.kind))?;
            storage.delete(user.id, kind, &o.name).await?;
            deleted += 1;
        }
        anyhow::Ok(deleted)
    })?;
    registry.remove_user(name)?;
    let own_files = kura_service::user_dir(storage.data_dir(), user.id);
    if own_files.exists() {
        std::fs::remove_dir_all(&own_files)?;
    }
    out.emit(
        &json!({"user": name, "removed": true, "objects_deleted": deleted}),
        || {
            format!(
                "removed {name}; {} deleted from the sites",
                kura_core::count(deleted, "object")
            )
        },
    );
    Ok(())
}

/// Asks the operator to type the user's name, on a terminal; refuses elsewhere.
fn confirm(name: &str, objects: u64) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!("removing {name} needs confirmation: add --yes");
    }
    eprint!(
        "Remove {name}{}? Type the name to confirm: ",
        if objects > 0 {
            format!(" and delete {}", kura_core::count(objects, "object"))
        } else {
            String::new()
        }
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != name {
        bail!("not confirmed; nothing removed");
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
            let c = match (&u.removed, u.append_only) {
                (Some(when), _) => format!("removed {when}"),
                (None, true) => format!("{c}; append-only"),
                (None, false) => c,
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

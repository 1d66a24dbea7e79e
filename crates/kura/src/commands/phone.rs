//! `kura phone`: a simulated phone that a terminal backs up and restores by e-mail
//! instructions (the phone agent of `kura_mail::phone`), with a real memory on disk.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kura_client::job::{signalled, stop_on_signals};
use kura_mail::pairing::Pairing;
use kura_mail::phone::{Outcome, Phone};
use kura_mail::store::{Store, read_folder, write_folder};
use serde_json::json;

use crate::ctx::{Ctx, write_private};

/// Phone commands.
#[derive(Subcommand)]
pub enum PhoneCommand {
    /// Set up a phone in DIR: its address, its terminal, its owner, the key registered with
    /// the terminal (`kura mail pair` makes it) and its mail servers. Writes DIR/phone.toml.
    Init(Box<InitArgs>),
    /// Replace the phone's memory with FOLDER (contacts/*.vcf, each one vCard 4.0, and
    /// items/*), all at once.
    Import {
        /// The phone's folder.
        dir: PathBuf,
        /// A folder laid out as the memory.
        folder: PathBuf,
    },
    /// Copy the phone's memory out to FOLDER (contacts/*.vcf and items/*).
    Export {
        /// The phone's folder.
        dir: PathBuf,
        /// Where to write it (its contacts/ and items/ are replaced).
        folder: PathBuf,
    },
    /// What the phone holds: its items, the number of cards (and with --json their names), the
    /// bytes.
    Show {
        /// The phone's folder.
        dir: PathBuf,
    },
    /// Run the phone: read its mailbox, act on instructions, answer, notify the owner.
    Run {
        /// The phone's folder.
        dir: PathBuf,
        /// Handle what is in the mailbox now, send, and exit.
        #[arg(long)]
        once: bool,
        /// Longest wait between looks at the mailbox (IMAP IDLE wakes it sooner), e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = crate::ctx::parse_wait)]
        poll: Duration,
    },
}

/// Options of `kura phone init`.
#[derive(Args)]
pub struct InitArgs {
    /// The phone's folder (created).
    dir: PathBuf,
    /// The phone's own address.
    #[arg(long)]
    address: String,
    /// The registered terminal's address; instructions from any other are refused.
    #[arg(long)]
    terminal: String,
    /// The owner's address, which gets a notice of every instruction, refused ones included.
    #[arg(long)]
    owner: String,
    /// The key file `kura mail pair` wrote for this phone, NAME.phone.key (copied into DIR).
    #[arg(long)]
    key_file: PathBuf,
    /// IMAP server as HOST:PORT (TLS from the start, as on port 993, unless
    /// `--imap-security none`).
    #[arg(long)]
    imap: String,
    /// IMAP security: tls, or none (a server on this host only).
    #[arg(long, default_value = "tls")]
    imap_security: String,
    /// A PEM file of certificates to trust for the IMAP server besides the public roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// SMTP relay as HOST:PORT.
    #[arg(long)]
    smtp: String,
    /// SMTP security: starttls, tls or none (none only for a relay on this host).
    #[arg(long, default_value = "starttls")]
    smtp_security: String,
    /// Login at both servers (default: the phone's address).
    #[arg(long)]
    login: Option<String>,
    /// File holding the login's password (its first line); phone.toml names the file, it
    /// does not copy the password.
    #[arg(long = "login-password-file", id = "login_password_file")]
    password_file: Option<PathBuf>,
    /// `each` (a notice after every instruction) or a period such as `1d` (a history).
    #[arg(long, default_value = "each")]
    notices: String,
}

fn host_port(s: &str) -> Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .with_context(|| format!("{s:?}: expected HOST:PORT"))?;
    Ok((
        h.to_string(),
        p.parse().with_context(|| format!("{s:?}: bad port"))?,
    ))
}

/// A string quoted for a TOML file (a JSON string is a valid TOML basic string).
pub fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `KEY = "ABSOLUTE PATH"` and a newline, or nothing without a path.
fn path_line(key: &str, path: Option<&std::path::Path>) -> Result<String> {
    let Some(p) = path else {
        return Ok(String::new());
    };
    let abs = std::path::absolute(p).with_context(|| format!("{}", p.display()))?;
    Ok(format!("{key} = {}\n", quoted(&abs.display().to_string())))
}

fn init(ctx: &Ctx, a: InitArgs) -> Result<()> {
    let keys = Pairing::load(&a.key_file)?;
    let (imap_host, imap_port) = host_port(&a.imap)?;
    let (smtp_host, smtp_port) = host_port(&a.smtp)?;
    let login = a.login.unwrap_or_else(|| a.address.clone());
    let password_line = path_line("password_file", a.password_file.as_deref())?;
    let ca_line = path_line("ca_file", a.ca_file.as_deref())?;
    let config = format!(
        "# Kura phone (kura phone run {dir})\n\
         address = {address}\nterminal = {terminal}\nowner = {owner}\n\
         key_file = \"key\"\nnotices = {notices}\n\n\
         [imap]\nhost = {imap_host}\nport = {imap_port}\nsecurity = {imap_security}\n{ca_line}\
         username = {login}\n{password_line}\n\
         [smtp]\nrelay = {smtp_host}\nport = {smtp_port}\nsecurity = {security}\n\
         username = {login}\n{password_line}",
        dir = a.dir.display(),
        address = quoted(&a.address),
        terminal = quoted(&a.terminal),
        owner = quoted(&a.owner),
        notices = quoted(&a.notices),
        imap_host = quoted(&imap_host),
        smtp_host = quoted(&smtp_host),
        security = quoted(&a.smtp_security),
        imap_security = quoted(&a.imap_security),
        login = quoted(&login),
    );
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let path = a.dir.join("phone.toml");
    if path.exists() {
        bail!("{} exists: this folder is a phone already", path.display());
    }
    write_private(&a.dir.join("key"), keys.to_text().as_bytes())?;
    write_private(&path, config.as_bytes())?;
    // Opening checks what was written and makes the empty memory.
    Phone::open(&a.dir)?;
    ctx.out
        .emit(&json!({"phone": a.dir, "address": a.address}), || {
            format!(
                "phone {} set up in {}; `kura phone run {}` runs it",
                a.address,
                a.dir.display(),
                a.dir.display()
            )
        });
    Ok(())
}

/// `kura phone ...`.
pub fn phone(ctx: &Ctx, c: PhoneCommand) -> Result<()> {
    crate::output::init_logs("info");
    match c {
        PhoneCommand::Init(a) => init(ctx, *a),
        PhoneCommand::Import { dir, folder } => {
            let bundle = read_folder(&folder)?;
            bundle.check_cards()?;
            let store = Store::open(&dir.join("memory"))?;
            store.restore(&bundle, &[])?;
            ctx.out.emit(
                &json!({"entries": bundle.entries.len(), "contacts": bundle.contacts()}),
                || {
                    format!(
                        "the phone's memory is now {} entries ({} contacts)",
                        bundle.entries.len(),
                        bundle.contacts()
                    )
                },
            );
            Ok(())
        }
        PhoneCommand::Export { dir, folder } => {
            let bundle = Store::open(&dir.join("memory"))?.read()?;
            write_folder(&folder, &bundle)?;
            ctx.out.emit(&json!({"entries": bundle.entries.len()}), || {
                format!(
                    "{} entries written to {}",
                    bundle.entries.len(),
                    folder.display()
                )
            });
            Ok(())
        }
        PhoneCommand::Show { dir } => {
            let bundle = Store::open(&dir.join("memory"))?.read()?;
            let items = bundle.items();
            let names = bundle.check_cards()?;
            ctx.out.emit(
                &json!({"items": items, "entries": bundle.entries.len(),
                        "contacts": bundle.contacts(), "bytes": bundle.size(),
                        "contact_names": names}),
                || {
                    format!(
                        "{} contacts, {} entries, {} bytes; items: {}",
                        bundle.contacts(),
                        bundle.entries.len(),
                        bundle.size(),
                        items.join(", ")
                    )
                },
            );
            Ok(())
        }
        PhoneCommand::Run { dir, once, poll } => {
            let mut phone = Phone::open(&dir)?;
            if once {
                let mut inbox = kura_mail::inbox::Inbox::connect(phone.mailbox())?;
                let outcomes = phone.pass(&mut inbox)?;
                inbox.close();
                report(ctx, &outcomes, phone.waiting()?);
                return Ok(());
            }
            stop_on_signals();
            ctx.out.say(format!(
                "kura phone: watching the mailbox of {}",
                dir.display()
            ));
            phone.run(poll, &signalled)?;
            Ok(())
        }
    }
}

fn report(ctx: &Ctx, outcomes: &[Outcome], waiting: u64) {
    let lines: Vec<String> = outcomes
        .iter()
        .filter(|o| !matches!(o, Outcome::Left(_)))
        .map(Outcome::describe)
        .collect();
    ctx.out.emit(
        &json!({"handled": lines, "waiting_to_send": waiting}),
        || {
            if lines.is_empty() {
                "no instruction in the mailbox".into()
            } else {
                lines.join("\n")
            }
        },
    );
}

//! `kura mail`: the terminal that backs up and restores phones by e-mail instructions
//! (`kura_mail::terminal`). Each backup a phone sends is stored as a snapshot of this
//! repository, tagged `phone:NAME`; a restore takes the phone's data from such a snapshot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kura_client::backup::BackupOptions;
use kura_core::schedule::Entry;
use kura_core::snapshot::BackupType;
use kura_mail::inbox::Inbox;
use kura_mail::pairing::Pairing;
use kura_mail::payload::Bundle;
use kura_mail::store::{read_folder, write_folder};
use kura_mail::terminal::{Instruction, Received, Terminal};
use kura_repo::Repository;
use serde_json::json;

use super::phone::quoted;
use crate::ctx::Ctx;
use crate::ctx::write_private;
use crate::output::{local_time, table};

/// Options of `kura mail`.
#[derive(Args)]
pub struct MailArgs {
    /// The terminal's configuration (TOML: address, [imap], [smtp], [[phone]]). Default:
    /// mail.toml in the config directory (~/.config/kura).
    #[arg(long, env = "KURA_MAIL_CONFIG", global = true)]
    mail_config: Option<PathBuf>,
    #[command(subcommand)]
    command: MailCommand,
}

/// Terminal commands.
#[derive(Subcommand)]
enum MailCommand {
    /// Register a phone: make the keys both sides hold, add the phone to mail.toml (its keys in
    /// NAME.key beside it), and write NAME.phone.key to give to the phone (`kura phone init
    /// --key-file`).
    Pair {
        /// The name to know the phone by.
        name: String,
        /// The phone's address.
        #[arg(long)]
        address: String,
        /// Sign with Ed25519 key pairs (each side its own, RFC 8463 shape) instead of an
        /// HMAC under the shared secret: neither side can then forge the other's mail, and
        /// anyone with a public key can check it.
        #[arg(long)]
        ed25519: bool,
    },
    /// Back PHONE up: send a backup instruction, wait for the answer, store it as a snapshot.
    Backup {
        /// The phone's name.
        phone: String,
        /// How long to wait for the answer (it is taken in later by `kura mail receive`).
        #[arg(long, default_value = "2m", value_parser = crate::ctx::parse_wait)]
        wait: Duration,
        /// A lost phone: have it erase its memory once its backup has been sent.
        #[arg(long)]
        wipe: bool,
    },
    /// Restore PHONE from a snapshot: send the data, wait until the phone says it is written.
    Restore {
        /// The phone's name.
        phone: String,
        /// Only these items (`contacts` is the address book; comma-separated).
        #[arg(long, value_delimiter = ',')]
        items: Vec<String>,
        /// The snapshot (id prefix or `latest`) among the phone's.
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// How long to wait for the completion.
        #[arg(long, default_value = "2m", value_parser = crate::ctx::parse_wait)]
        wait: Duration,
    },
    /// Take in the answers that have arrived (backups stored, restores confirmed).
    Receive,
    /// The registered phones and the latest instructions with where each stands.
    Status {
        /// How many instructions to show.
        #[arg(long, default_value_t = 20)]
        last: usize,
    },
    /// The terminal's log: instructions sent, answers stored, answers refused and why.
    Log {
        /// Only the last N lines.
        #[arg(long, default_value_t = 50)]
        last: usize,
    },
    /// Scheduled backups of phones, run by `kura agent`.
    #[command(subcommand)]
    Schedule(MailScheduleCommand),
}

/// `kura mail schedule ...`.
#[derive(Subcommand)]
enum MailScheduleCommand {
    /// Back PHONE up daily or once with --at, periodically with --every or --cron.
    Add {
        /// The phone's name.
        phone: String,
        #[command(flatten)]
        when: super::schedule::WhenArgs,
    },
    /// The scheduled phone backups.
    List,
    /// Remove a scheduled phone backup.
    Remove {
        /// Its id (or a unique prefix).
        id: String,
    },
}

/// The answer an instruction waited for did not come in time: the instruction stays
/// outstanding (exit code 16).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unanswered(pub String);

fn config_path(a: &Option<PathBuf>) -> Result<PathBuf> {
    match a {
        Some(p) => Ok(p.clone()),
        None => Ok(crate::config::config_dir()?.join("mail.toml")),
    }
}

fn terminal(ctx: &Ctx, config: &Path) -> Result<Terminal> {
    let db = ctx.state_base()?.join("mail").join("terminal.db");
    Terminal::open(config, &db).with_context(|| {
        format!(
            "the terminal's configuration {} (see `kura mail --help` and the README)",
            config.display()
        )
    })
}

/// `kura mail ...`.
pub fn mail(ctx: &Ctx, a: MailArgs) -> Result<()> {
    crate::output::init_logs("warn");
    let config = config_path(&a.mail_config)?;
    match a.command {
        MailCommand::Pair {
            name,
            address,
            ed25519,
        } => pair(ctx, &config, &name, &address, ed25519),
        MailCommand::Backup { phone, wait, wipe } => {
            // The configuration first: a missing mail.toml is said before a passphrase is asked.
            let mut t = terminal(ctx, &config)?;
            let repo = ctx.open()?;
            let id = t.instruct(&phone, &[], None, wipe)?;
            ctx.out.say(format!(
                "sent a backup instruction {id} to {phone}; waiting up to {} s for its answer",
                wait.as_secs()
            ));
            let done = await_answer(ctx, &mut t, &repo, &id, wait)?;
            ctx.out.emit(&done, || {
                format!(
                    "{phone} backed up: snapshot {}{}",
                    done.snapshot.as_deref().unwrap_or("?"),
                    if wipe {
                        "; the phone erases its memory now that its backup is sent"
                    } else {
                        ""
                    }
                )
            });
            Ok(())
        }
        MailCommand::Restore {
            phone,
            items,
            snapshot,
            wait,
        } => {
            let mut t = terminal(ctx, &config)?;
            let repo = ctx.open()?;
            t.phone(&phone)?;
            let (snap_id, bundle) = phone_data(ctx, &repo, &phone, &snapshot)?;
            for i in &items {
                if !bundle.items().contains(i) {
                    bail!(
                        "snapshot {} of {phone} has no item {i:?} (it has {})",
                        snap_id.short(),
                        bundle.items().join(", ")
                    );
                }
            }
            let id = t.instruct(&phone, &items, Some(&bundle), false)?;
            ctx.out.say(format!(
                "sent a restore instruction {id} to {phone} (snapshot {}, {}); waiting up to {} s \
                 for the phone to confirm the write",
                snap_id.short(),
                if items.is_empty() {
                    "every item".to_string()
                } else {
                    items.join(", ")
                },
                wait.as_secs()
            ));
            let done = await_answer(ctx, &mut t, &repo, &id, wait)?;
            ctx.out.emit(&done, || {
                format!(
                    "{phone} restored from snapshot {}: the phone confirmed the write",
                    snap_id.short()
                )
            });
            Ok(())
        }
        MailCommand::Receive => {
            let mut t = terminal(ctx, &config)?;
            let repo = ctx.open()?;
            let mut inbox = Inbox::connect(t.mailbox())?;
            let received = t.pass(&mut inbox, &mut |name, bundle| {
                store(ctx, &repo, name, bundle)
            })?;
            inbox.close();
            let lines: Vec<String> = received.iter().filter_map(describe).collect();
            ctx.out.emit(&json!({"received": lines}), || {
                if lines.is_empty() {
                    "no answers have arrived".into()
                } else {
                    lines.join("\n")
                }
            });
            Ok(())
        }
        MailCommand::Status { last } => {
            let t = terminal(ctx, &config)?;
            let instructions = t.instructions(None, last)?;
            let phones: Vec<_> = t
                .phones()
                .iter()
                .map(|p| json!({"name": p.name, "address": p.address}))
                .collect();
            ctx.out.emit(
                &json!({"phones": phones, "instructions": instructions}),
                || {
                    let mut out = format!(
                        "phones: {}\n\n",
                        t.phones()
                            .iter()
                            .map(|p| format!("{} <{}>", p.name, p.address))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    out.push_str(&table(
                        format!(
                            "{:<20}  {:<10}  {:<8}  {:<10}  {:<10}  instruction",
                            "sent", "phone", "kind", "state", "snapshot"
                        ),
                        instructions.iter().map(|i| {
                            format!(
                                "{:<20}  {:<10}  {:<8}  {:<10}  {:<10}  {}",
                                i.sent_at.get(..19).unwrap_or(&i.sent_at),
                                i.phone,
                                i.direction,
                                i.state,
                                i.snapshot
                                    .as_deref()
                                    .map_or("-", |s| s.get(..8).unwrap_or(s)),
                                i.message_id
                            )
                        }),
                    ));
                    out
                },
            );
            Ok(())
        }
        MailCommand::Log { last } => {
            let t = terminal(ctx, &config)?;
            let lines = t.log_lines(last)?;
            ctx.out.emit(&lines, || {
                lines
                    .iter()
                    .map(|[at, phone, id, event]| format!("{at}  {phone}  {id}  {event}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(())
        }
        MailCommand::Schedule(c) => schedule(ctx, &config, c),
    }
}

fn pair(ctx: &Ctx, config: &Path, name: &str, address: &str, ed25519: bool) -> Result<()> {
    if !kura_mail::payload::is_plain_name(name) {
        bail!("{name:?}: a phone's name is letters, digits, '.', '_' and '-'");
    }
    let text = std::fs::read_to_string(config).with_context(|| {
        format!(
            "{}: write the terminal's address, [imap] and [smtp] there first (see the README)",
            config.display()
        )
    })?;
    let parsed: kura_mail::terminal::TerminalConfig =
        toml::from_str(&text).with_context(|| format!("{}", config.display()))?;
    if parsed.phone.iter().any(|p| p.name == name) {
        bail!("a phone named {name} is registered already");
    }
    let key_file = format!("{name}.key");
    let key_path = config.with_file_name(&key_file);
    let phone_key_path = config.with_file_name(format!("{name}.phone.key"));
    let (terminal_keys, phone_keys) = Pairing::new_pair(ed25519)?;
    write_private(&key_path, terminal_keys.to_text().as_bytes())?;
    write_private(&phone_key_path, phone_keys.to_text().as_bytes())?;
    let entry = format!(
        "\n[[phone]]\nname = {}\naddress = {}\nkey_file = {}\n",
        quoted(name),
        quoted(address),
        quoted(&key_file)
    );
    std::fs::write(config, format!("{text}{entry}"))
        .with_context(|| format!("writing {}", config.display()))?;
    ctx.out.emit(
        &json!({"phone": name, "address": address, "key_file": key_path,
                "phone_key_file": phone_key_path, "ed25519": ed25519}),
        || {
            format!(
                "registered {name} <{address}>{}; give {} to the phone (`kura phone init \
                 --key-file`) over a channel you trust, then delete it here",
                if ed25519 {
                    ", signing with Ed25519"
                } else {
                    ""
                },
                phone_key_path.display()
            )
        },
    );
    Ok(())
}

/// Stores a phone's backup as a snapshot: the phone's data is laid out in this machine's
/// state directory (so unchanged cards are found unchanged) and backed up, tagged
/// `phone:NAME`. Returns the snapshot's id.
fn store(
    ctx: &Ctx,
    repo: &Repository,
    name: &str,
    bundle: &Bundle,
) -> Result<String, kura_mail::MailError> {
    let failed = |e: anyhow::Error| {
        kura_mail::MailError::Config(format!("storing the backup of {name}: {e:#}"))
    };
    let dir = ctx
        .state_base()
        .map_err(failed)?
        .join("mail")
        .join("phones")
        .join(name);
    write_folder(&dir, bundle)?;
    let opts = BackupOptions {
        paths: vec![dir],
        kind: BackupType::Full,
        tags: vec![format!("phone:{name}")],
        ..BackupOptions::default()
    };
    let (_, out) = super::backup::save(ctx, repo, opts, None).map_err(failed)?;
    Ok(out.id.to_string())
}

/// The snapshot `spec` of phone `name` and the phone data in it.
fn phone_data(
    ctx: &Ctx,
    repo: &Repository,
    name: &str,
    spec: &str,
) -> Result<(kura_core::id::Id, Bundle)> {
    let tag = format!("phone:{name}");
    let (id, snap) = repo
        .find_snapshot_where(spec, |s| s.tags.contains(&tag))
        .with_context(|| {
            format!("no snapshot {spec} of the phone {name} (`kura mail backup {name}` makes one)")
        })?;
    let tmp = super::restore::snapshot_root(ctx, repo, &id, &snap)?;
    Ok((id, read_folder(tmp.path())?))
}

/// Waits up to `wait` for the answer to instruction `id`, taking in every answer that
/// arrives meanwhile. A mail server that goes away is retried until the time is up.
fn await_answer(
    ctx: &Ctx,
    t: &mut Terminal,
    repo: &Repository,
    id: &str,
    wait: Duration,
) -> Result<Instruction> {
    let deadline = Instant::now() + wait;
    let settled = |t: &Terminal| -> Result<Option<Instruction>> {
        Ok(t.instruction(id)?
            .filter(|i| matches!(i.state.as_str(), "stored" | "completed")))
    };
    let mut complaint = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match Inbox::connect(t.mailbox()) {
            Ok(mut inbox) => loop {
                let pass = t.pass(&mut inbox, &mut |name, bundle| {
                    store(ctx, repo, name, bundle)
                });
                match pass {
                    Ok(received) => {
                        for line in received.iter().filter_map(describe) {
                            ctx.out.say(line);
                        }
                    }
                    Err(kura_mail::MailError::Inbox(e)) => {
                        complaint = e.to_string();
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
                if let Some(done) = settled(t)? {
                    inbox.close();
                    return Ok(done);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Err(e) = inbox.wait(left.min(Duration::from_secs(5))) {
                    complaint = e.to_string();
                    break;
                }
            },
            Err(e) => {
                complaint = e.to_string();
                std::thread::sleep(left.min(Duration::from_secs(1)));
            }
        }
        if let Some(done) = settled(t)? {
            return Ok(done);
        }
        if deadline.saturating_duration_since(Instant::now()).is_zero() {
            let why = if complaint.is_empty() {
                String::new()
            } else {
                format!(" (last problem: {complaint})")
            };
            return Err(Unanswered(format!(
                "no answer to {id} within {} s{why}; the instruction stays outstanding: \
                 `kura mail receive` takes a late answer in, `kura mail status` shows where it stands",
                wait.as_secs()
            ))
            .into());
        }
    }
}

fn describe(r: &Received) -> Option<String> {
    match r {
        Received::Left(_) => None,
        Received::Refused(why) => Some(format!("refused an answer: {why}")),
        Received::Backup {
            instruction,
            phone,
            bundle,
            ..
        } => Some(format!(
            "stored the backup of {phone} ({instruction}): {} entries, {} contacts",
            bundle.entries.len(),
            bundle.contacts()
        )),
        Received::Completed {
            instruction, phone, ..
        } => Some(format!("{phone} confirmed the restore {instruction}")),
    }
}

fn schedule(ctx: &Ctx, config: &Path, c: MailScheduleCommand) -> Result<()> {
    let base = ctx.state_base()?;
    let tz = TimeZone::system();
    match c {
        MailScheduleCommand::Add { phone, when } => {
            terminal(ctx, config)?.phone(&phone)?;
            let timing = when.timing()?;
            let entry = Entry {
                id: kura_core::id::hex(&kura_core::crypto::random_bytes::<4>()),
                paths: Vec::new(),
                phone: Some(phone.clone()),
                kind: BackupType::Full,
                tags: Vec::new(),
                timing,
                created: Timestamp::now(),
                last_run: None,
                last_outcome: None,
            };
            let Some(next) = entry.next_run(&tz) else {
                bail!("{} is in the past", entry.timing);
            };
            kura_client::schedule::update(&base, |s| {
                s.entries.push(entry.clone());
                Ok(())
            })?;
            ctx.out.emit(&super::schedule::entry_json(&entry, &tz), || {
                format!(
                    "scheduled backup {} of the phone {phone} ({}); next run {}; `kura agent` runs it",
                    entry.id,
                    entry.timing,
                    local_time(next)
                )
            });
            Ok(())
        }
        MailScheduleCommand::List => super::schedule::list(ctx, &base, &tz, true),
        MailScheduleCommand::Remove { id } => super::schedule::remove(ctx, &base, &id),
    }
}

/// A scheduled backup of the phone `name` (run by `kura agent`).
pub fn scheduled_backup(ctx: &Ctx, name: &str) -> Result<()> {
    let config = config_path(&std::env::var_os("KURA_MAIL_CONFIG").map(PathBuf::from))?;
    let mut t = terminal(ctx, &config)?;
    let repo = ctx.open()?;
    let id = t.instruct(name, &[], None, false)?;
    let done = await_answer(ctx, &mut t, &repo, &id, Duration::from_secs(120))?;
    ctx.out.say(format!(
        "{name} backed up: snapshot {}",
        done.snapshot.as_deref().unwrap_or("?")
    ));
    Ok(())
}

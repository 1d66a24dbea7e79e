//! The command line: the commands and their options, routed to [`crate::commands`], and the
//! exit codes their outcomes map to.

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use kura_client::ClientError;
use kura_core::keys::KeyError;
use kura_repo::RepoError;

use crate::commands::{
    admin, backup, billing, card, cert, check, conditions, contents, copy, device, forget, init,
    jobs, key, keyman, mail, mount, phone, repair, restore, schedule, serve, shell, snapshots, tag,
    unlock, vault, wallet,
};
use crate::ctx::{Ctx, Global, REPOSITORY_OPTIONS};
use crate::output::Partial;

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   error (the message says which)
  2   usage error (bad option or argument)
  3   partial: some files could not be backed up or restored, check found problems, or
      admin verify found data lost or tampered with
  10  no repository at the location
  11  wrong passphrase or recovery code
  12  repository locked by another process
  13  repository format newer than this kura
  14  not enough free space for a restore
  15  stopped (a signal, or `kura jobs cancel`) before the snapshot was committed
  16  no answer from the phone in time (`kura mail`): the instruction stays outstanding
  17  the card refused (`kura card`): the message gives its status word
  18  the key manager refused the owner's credentials, or makes them wait";

/// Kura: encrypted, deduplicating backups.
#[derive(Parser)]
#[command(name = "kura", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a repository, its common key and this machine's device key; prints a recovery code once.
    Init,
    /// Back up paths into a new snapshot.
    Backup(backup::BackupArgs),
    /// Record PATHs as backed up without uploading their contents (factory state, recovery media).
    Baseline(backup::BaselineArgs),
    /// List snapshots.
    Snapshots(snapshots::SnapshotsArgs),
    /// List the contents of a snapshot (SNAPSHOT: id prefix or `latest`).
    Ls(snapshots::LsArgs),
    /// Show what changed between two snapshots.
    Diff(snapshots::DiffArgs),
    /// Find files and directories by name or path pattern across snapshots.
    Find(contents::FindArgs),
    /// Write one file of a snapshot to standard output, or a directory as a tar archive.
    Dump(contents::DumpArgs),
    /// Count what snapshots hold: restore size, or the distinct data they need.
    Stats(contents::StatsArgs),
    /// Add, remove or set the tags of snapshots.
    Tag(tag::TagArgs),
    /// Browse snapshots as a read-only file system (FUSE) until Ctrl-C or unmount.
    Mount(mount::MountArgs),
    /// Restore a snapshot, or part of it, into a directory.
    Restore(restore::RestoreArgs),
    /// Remove snapshots by id, or by a retention policy (per device and set of paths).
    Forget(forget::ForgetArgs),
    /// Reclaim the space of data that no snapshot needs.
    Prune(forget::PruneArgs),
    /// Copy snapshots from another repository into this one (re-encrypted for it,
    /// deduplicated against what it holds).
    Copy(copy::CopyArgs),
    /// Remove locks left by kura processes that are gone.
    Unlock(unlock::UnlockArgs),
    /// Verify the repository's structure; with --read-data, every byte.
    Check(check::CheckArgs),
    /// Deal with what `check --read-data` found damaged: salvage damaged packs, rewrite
    /// snapshots that need what is lost.
    #[command(subcommand)]
    Repair(repair::RepairCommand),
    /// Devices of the repository: list, add this machine, rename, remove a lost one.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// The passphrase and recovery code: list, change the passphrase, issue a new recovery code.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Unfinished backup jobs of this device; cancel or resume one.
    Jobs {
        #[command(subcommand)]
        action: Option<jobs::JobsCommand>,
    },
    /// The backup log: every job, when it ran, how it ended, what it covered, and where it is stored.
    Log {
        /// Only the last N entries.
        #[arg(long)]
        last: Option<usize>,
    },
    /// Scheduled backups of this machine: add, list, remove.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Run scheduled backups in the foreground (as a systemd user service, see the README);
    /// runs missed ones once at start.
    Agent {
        /// Run what is due now, then exit (for cron or a systemd timer).
        #[arg(long)]
        once: bool,
    },
    /// Storage conditions at the service: for each stored object (of SNAPSHOT, or all), every
    /// copy's site, region, state, algorithm and key reference. The latest are kept locally.
    Conditions(conditions::ConditionsArgs),
    /// The notices the service sent you (storage conditions, moved data, incidents).
    Messages,
    /// What the service's integrity checks found in your data (media faults repaired,
    /// tampering, lost objects, fraudulent sites); for a lost object, the snapshots and the
    /// files in them that cannot be restored whole.
    Incidents,
    /// Your statements at the service, and objections to them.
    #[command(subcommand)]
    Billing(billing::BillingCommand),
    /// Client certificates for logging in to the service without a password (mutual TLS).
    #[command(subcommand)]
    Cert(cert::CertCommand),
    /// Back up and restore phones by e-mail instructions: pair a phone, back it up, restore
    /// it, schedule its backups, see the log.
    Mail(mail::MailArgs),
    /// A simulated phone run by e-mail instructions: set it up, fill its memory, run it.
    #[command(subcommand)]
    Phone(phone::PhoneCommand),
    /// Smart cards that back themselves up: emulate a card, personalise it, back it up and
    /// restore it (onto itself or another card) through a PC/SC reader.
    Card(card::CardArgs),
    /// The vault that keeps deposited electronic value and redeems each certificate once.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// The key manager that escrows a wallet's share of its value key and releases it, or
    /// restores a deposited value, only to the authenticated owner.
    #[command(subcommand)]
    Keyman(keyman::KeymanCommand),
    /// A wallet of electronic value: add values, deposit them at a vault for certificates,
    /// withdraw them back, list what it holds.
    Wallet(wallet::WalletArgs),
    /// Run the Kura service (the provider's backup server).
    Serve(serve::ServeArgs),
    /// Operator commands for the service: users, contracts, certificates, sites and placement,
    /// integrity checks and incidents, billing, the backup log.
    Admin(admin::AdminArgs),
    /// Set up the default repository if needed, back up DIR, then list and verify the snapshot.
    Quickstart(init::QuickstartArgs),
    /// Print a shell completion script: `kura completion bash > /etc/bash_completion.d/kura`,
    /// `kura completion zsh > ~/.zfunc/_kura`, `kura completion fish >
    /// ~/.config/fish/completions/kura.fish`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (kura.1 and one per command: kura-backup.1, kura-wallet-escrow.1,
    /// ...) into DIR, e.g. /usr/local/share/man/man1.
    Man {
        /// Where to write them (made if missing).
        dir: std::path::PathBuf,
    },
}

/// The commands by what they are for, in the order `kura --help` lists them.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "Back up and restore",
        &[
            "quickstart",
            "backup",
            "baseline",
            "snapshots",
            "ls",
            "diff",
            "find",
            "dump",
            "stats",
            "tag",
            "mount",
            "restore",
            "schedule",
            "agent",
            "jobs",
            "log",
        ],
    ),
    (
        "Repository",
        &[
            "init", "check", "repair", "forget", "prune", "copy", "unlock", "device", "key",
        ],
    ),
    (
        "Service member",
        &["conditions", "messages", "incidents", "billing", "cert"],
    ),
    ("Phones by e-mail", &["mail", "phone"]),
    ("Smart cards", &["card"]),
    ("Electronic value", &["wallet", "vault", "keyman"]),
    ("Service operator", &["serve", "admin"]),
    ("Shell and manual", &["completion", "man"]),
];

/// Commands that never open a repository, with the global options they do use.
const NO_REPOSITORY: &[(&str, &[&str])] = &[
    ("serve", &[]),
    ("admin", &[]),
    ("cert", &[]),
    ("phone", &[]),
    ("vault", &[]),
    ("keyman", &[]),
    ("wallet", &[]),
    ("completion", &[]),
    ("man", &[]),
    ("schedule", &["state_dir"]),
];

/// The command-line definition with the commands listed by group, and the repository options
/// left out of the help of commands that never open a repository.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let mut listing = String::new();
    for (group, names) in GROUPS {
        listing.push_str(&format!("{group}:\n"));
        for name in *names {
            let about = cmd
                .find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            let first = about.split(". ").next().unwrap_or_default();
            listing.push_str(&format!("  {name:<12}{}\n", wrap(first, 14, 100)));
        }
        listing.push('\n');
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        let uses = NO_REPOSITORY
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, uses)| *uses);
        cmd = cmd.mut_subcommand(&name, |sub| {
            let hidden: Vec<(&str, &str)> = match uses {
                Some(uses) => REPOSITORY_OPTIONS
                    .iter()
                    .copied()
                    .filter(|(id, _)| !uses.contains(id))
                    .collect(),
                None => Vec::new(),
            };
            hide_options(sub, &hidden).hide(true)
        });
    }
    cmd.override_usage("kura [OPTIONS] <COMMAND>").help_template(format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{listing}{{all-args}}{{after-help}}"
    ))
}

/// `cmd` and its subcommands with the global options `ids` left out of their help: each gets a
/// hidden option of its own with the same name, which stops the global one from being copied
/// in. Given there on the command line it is refused (those commands never read it, and a
/// user who typed it expects it to do something); set in the environment it is ignored.
fn hide_options(mut cmd: clap::Command, ids: &[(&'static str, &'static str)]) -> clap::Command {
    for &(id, long) in ids {
        if cmd.get_arguments().all(|a| a.get_id() != id) {
            let refuse = move |_: &str| -> Result<String, String> {
                Err(format!("this command does not use --{long}"))
            };
            cmd = cmd.arg(
                clap::Arg::new(id)
                    .long(long)
                    .num_args(1)
                    .hide(true)
                    .value_parser(refuse),
            );
        }
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |sub| hide_options(sub, ids));
    }
    cmd
}

/// `text` wrapped at `width` columns, lines after the first indented by `indent`.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut column = indent;
    for word in text.split_whitespace() {
        if column > indent && column + 1 + word.len() > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            column = indent;
        } else if column > indent {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += word.len();
    }
    out
}

/// Parses the command line, runs it, and maps the outcome to an exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kura: {}", message(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let ctx = Ctx::new(cli.global)?;
    let ctx = &ctx;
    match cli.command {
        Command::Init => init::init(ctx),
        Command::Backup(a) => backup::backup(ctx, a),
        Command::Baseline(a) => backup::baseline(ctx, a),
        Command::Snapshots(a) => snapshots::snapshots(ctx, a),
        Command::Ls(a) => snapshots::ls(ctx, a),
        Command::Diff(a) => snapshots::diff(ctx, a),
        Command::Find(a) => contents::find(ctx, a),
        Command::Dump(a) => contents::dump(ctx, a),
        Command::Stats(a) => contents::stats(ctx, a),
        Command::Tag(a) => tag::tag(ctx, a),
        Command::Mount(a) => mount::mount(ctx, a),
        Command::Restore(a) => restore::restore(ctx, a),
        Command::Forget(a) => forget::forget(ctx, a),
        Command::Prune(a) => forget::prune(ctx, a),
        Command::Unlock(a) => unlock::unlock(ctx, a),
        Command::Copy(a) => copy::copy(ctx, a),
        Command::Check(a) => check::check(ctx, a),
        Command::Repair(c) => repair::repair(ctx, c),
        Command::Device(c) => device::device(ctx, c),
        Command::Key(c) => key::key(ctx, c),
        Command::Jobs { action } => jobs::jobs(ctx, action),
        Command::Log { last } => jobs::log(ctx, last),
        Command::Schedule(c) => schedule::schedule(ctx, c),
        Command::Agent { once } => schedule::agent(ctx, once),
        Command::Conditions(a) => conditions::conditions(ctx, a),
        Command::Messages => conditions::messages(ctx),
        Command::Incidents => conditions::incidents(ctx),
        Command::Billing(c) => billing::billing(ctx, c),
        Command::Cert(c) => cert::cert(ctx, c),
        Command::Mail(a) => mail::mail(ctx, a),
        Command::Phone(c) => phone::phone(ctx, c),
        Command::Card(a) => card::card(ctx, a),
        Command::Vault(c) => vault::vault(c),
        Command::Keyman(c) => keyman::keyman(ctx, c),
        Command::Wallet(a) => wallet::wallet(ctx, a),
        Command::Serve(a) => serve::serve(a),
        Command::Admin(a) => admin::admin(ctx, a),
        Command::Quickstart(a) => init::quickstart(ctx, a),
        Command::Completion { shell } => shell::completion(command(), shell),
        Command::Man { dir } => shell::man(ctx, command(), &dir),
    }
}

/// The one-line message of an error: typed errors often repeat their cause in their own
/// message, so each part is said once.
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if !msg.contains(&cause) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&cause);
        }
    }
    msg
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<Partial>().is_some() {
            return 3;
        }
        if cause.downcast_ref::<mail::Unanswered>().is_some() {
            return 16;
        }
        if cause.downcast_ref::<card::Refused>().is_some() {
            return 17;
        }
        if let Some(kura_vault::client::ClientError::Refused {
            service: "key manager",
            status: 403 | 429,
            ..
        }) = cause.downcast_ref()
        {
            return 18;
        }
        let repo = cause.downcast_ref::<RepoError>().or_else(|| {
            match cause.downcast_ref::<ClientError>() {
                Some(ClientError::Repo(r)) => Some(r),
                _ => None,
            }
        });
        match repo {
            Some(RepoError::NotFound(_)) => return 10,
            Some(RepoError::Key(KeyError::Format(_))) => return 1,
            Some(RepoError::Key(_)) => return 11,
            Some(RepoError::Locked(_)) => return 12,
            Some(RepoError::NewerFormat { .. }) => return 13,
            _ => {}
        }
        match cause.downcast_ref::<ClientError>() {
            Some(ClientError::NoSpace { .. }) => return 14,
            Some(ClientError::Stopped) => return 15,
            Some(ClientError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                return 14;
            }
            _ => {}
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_listed_in_one_group() {
        let listed: Vec<&str> = GROUPS
            .iter()
            .flat_map(|(_, names)| names.iter().copied())
            .collect();
        let mut commands: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        commands.sort();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(commands, sorted, "each command in exactly one group");
        command().debug_assert();
    }

    /// A subcommand's option named like a global one silently takes its value (clap's own
    /// checks pass): `--vault-config` and the owner's `--password-file` were both caught late.
    #[test]
    fn no_subcommand_option_shares_an_id_or_name_with_a_global_one() {
        let root = Cli::command();
        let globals: Vec<(String, Option<String>)> = root
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| (a.get_id().to_string(), a.get_long().map(str::to_string)))
            .collect();
        fn walk(
            cmd: &clap::Command,
            path: &str,
            globals: &[(String, Option<String>)],
        ) -> Vec<String> {
            let mut clashes: Vec<String> = cmd
                .get_arguments()
                .filter(|a| {
                    globals.iter().any(|(id, long)| {
                        a.get_id() == id.as_str()
                            || (long.is_some() && a.get_long() == long.as_deref())
                    })
                })
                .map(|a| format!("{path} {:?}", a.get_id()))
                .collect();
            for sub in cmd.get_subcommands() {
                clashes.extend(walk(sub, &format!("{path} {}", sub.get_name()), globals));
            }
            clashes
        }
        assert!(globals.len() > 10, "{globals:?}");
        let clashes: Vec<String> = root
            .get_subcommands()
            .flat_map(|sub| walk(sub, &format!("kura {}", sub.get_name()), &globals))
            .collect();
        assert!(
            clashes.is_empty(),
            "options named like a global one: {clashes:?}"
        );
    }
}

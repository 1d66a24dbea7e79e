//! `kura card`: smart cards that back themselves up (docs/requirements/card.md part B). The
//! host side speaks to a card in a PC/SC reader; `kura card emulate` is a card for a
//! vsmartcard virtual reader. Backups are stored as snapshots tagged with the card's number.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use kura_card::app::default_layout;
use kura_card::card::{Card, Chip};
use kura_card::host::{Host, ValueOp, chain_to};
use kura_card::image::Image;
use kura_card::memory::{MAX_PAGE, MAX_PAGES, MIN_PAGE, Memory};
use kura_card::pcsc::PcscReader;
use kura_card::seal::BackupKind;
use kura_card::{state, vicc};
use kura_client::backup::BackupOptions;
use kura_client::job::{signalled, stop_on_signals};
use kura_core::crypto::Key;
use kura_core::snapshot::BackupType;
use kura_repo::Repository;
use serde_json::json;

use crate::ctx::{Ctx, read_secret, write_private};
use crate::progress::Counter;

/// `kura card` and the options every card command shares.
#[derive(Args)]
pub struct CardArgs {
    /// The PC/SC reader: any part of its name (default: the first reader holding a card).
    #[arg(long, env = "KURA_CARD_READER", global = true)]
    reader: Option<String>,
    /// A file holding the card's PIN (otherwise KURA_CARD_PIN, or asked on a terminal).
    #[arg(long, env = "KURA_CARD_PIN_FILE", global = true)]
    pin_file: Option<PathBuf>,
    #[command(subcommand)]
    command: CardCommand,
}

/// Card commands.
#[derive(Subcommand)]
pub enum CardCommand {
    /// Be a card: an emulated card whose state (its memory, keys, number and tables) lives in
    /// `--state FILE`, served to pcscd through vsmartcard's virtual reader (vpcd) until SIGTERM. A
    /// missing FILE is a new blank card for `kura card init`.
    Emulate {
        /// The card's state file (created blank if missing, written after every change).
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// Where vpcd listens, HOST:PORT (its reader.conf's DEVICENAME /dev/null:PORT).
        #[arg(long, default_value = "127.0.0.1:35963")]
        vpcd: String,
        /// Bytes per page of a new card (16 to 192).
        #[arg(long, default_value_t = 64)]
        page_size: usize,
        /// Pages of a new card (at most 4096); 1024 pages of 64 bytes is 64 KiB.
        #[arg(long, default_value_t = 1024)]
        pages: usize,
        /// Log every command's instruction byte and status word (never its data).
        #[arg(long)]
        log_apdus: bool,
        /// For testing hosts: pull the card out (stop at once, unanswered, as if its power
        /// were cut) when the Nth command with instruction byte INS arrives, e.g. `42:100`
        /// (hex INS). What earlier commands wrote is kept, as on a real card.
        #[arg(long, value_name = "INS:N", value_parser = parse_pull_out)]
        pull_out: Option<(u8, u64)>,
    },
    /// Personalise a blank card: its number, the common key every card of this account holds
    /// (FILE is made when missing; keep it as you keep the repository's key), and the PIN.
    /// The card makes its own unique key and never gives it out in clear.
    Init {
        /// The card's number.
        #[arg(long)]
        card_number: u64,
        /// The common key file (32 bytes in hex).
        #[arg(long, env = "KURA_CARD_COMMON_KEY_FILE")]
        common_key_file: PathBuf,
    },
    /// The card in the reader: number, pages, flags, applications and their restored flags.
    Status,
    /// Back up the card into the repository: a full backup, or the pages changed since the
    /// last completed one (the default once a backup has completed, except after a restore). The card is told the
    /// backup is complete only after the snapshot is stored.
    Backup {
        /// Every page.
        #[arg(long, conflicts_with = "differential")]
        full: bool,
        /// Only the pages changed since the last completed backup.
        #[arg(long)]
        differential: bool,
    },
    /// The card backups in the repository: card number, sequence, date, type.
    Backups {
        /// Only this card's.
        #[arg(long)]
        card: Option<u64>,
    },
    /// Restore the card in the reader from a full backup and the differentials after it, as
    /// one operation: the card checks every record before it writes any.
    Restore {
        /// The card whose backups to restore (default: the card in the reader).
        #[arg(long)]
        from_card: Option<u64>,
        /// Restore onto another card: that card's number, which it checks (a guard against
        /// restoring onto the wrong card).
        #[arg(long)]
        to_card: Option<u64>,
        /// Restore to this backup sequence (default: the latest).
        #[arg(long)]
        sequence: Option<u32>,
        /// Restore from these backup image files (a full one, then differentials in order)
        /// instead of the repository.
        #[arg(long = "image")]
        images: Vec<PathBuf>,
    },
    /// Read an application's bytes to stdout.
    Read {
        /// The application (`kura card status` lists them).
        app: String,
        /// Where to start.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// How many bytes (default: to the end of the application).
        #[arg(long)]
        length: Option<usize>,
    },
    /// Write bytes from FILE (or stdin) into a data application.
    Write {
        /// The application.
        app: String,
        /// Where to start.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// The bytes to write (stdin when absent).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// A value application's value, or a change to it.
    Value {
        /// The application (`purse`, `points`).
        app: String,
        /// Add this much.
        #[arg(long, group = "op")]
        credit: Option<u64>,
        /// Take this much.
        #[arg(long, group = "op")]
        debit: Option<u64>,
        /// Set the value (what the issuer does after a restore reported with 6300).
        #[arg(long, group = "op")]
        set: Option<u64>,
        /// Load this much from outside the card; recorded in the card's load history.
        #[arg(long, group = "op")]
        load: Option<u64>,
    },
    /// The card's latest loads of value from outside (date, amount, count).
    History,
}

/// A command the card answered with a status word other than 9000 (exit code 17).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Refused(pub kura_card::CardError);

/// `kura card ...`.
pub fn card(ctx: &Ctx, a: CardArgs) -> Result<()> {
    let connect = || -> Result<Host<PcscReader>> {
        Ok(Host::new(
            PcscReader::connect(a.reader.as_deref()).map_err(refused)?,
        ))
    };
    let pin = || pin(a.pin_file.as_deref());
    match a.command {
        CardCommand::Emulate {
            state,
            vpcd,
            page_size,
            pages,
            log_apdus,
            pull_out,
        } => emulate(ctx, &state, &vpcd, (page_size, pages), log_apdus, pull_out),
        CardCommand::Init {
            card_number,
            common_key_file,
        } => {
            let mut host = connect()?;
            let common = common_key(ctx, &common_key_file)?;
            host.initialize(card_number, &common, &pin()?)
                .map_err(refused)?;
            ctx.out.emit(&json!({ "card": card_number }), || {
                format!("card {card_number} is personalised; it made its own unique key")
            });
            Ok(())
        }
        CardCommand::Status => {
            let mut host = connect()?;
            let s = host.status().map_err(refused)?;
            let apps: Vec<_> = s
                .apps
                .iter()
                .map(|x| {
                    json!({
                        "name": x.name,
                        "kind": if x.value.is_some() { "value" } else { "data" },
                        "reset": x.value.map(|r| r.name()),
                        "first_page": x.first_page,
                        "pages": x.pages,
                        "restored": x.restored,
                    })
                })
                .collect();
            ctx.out.emit(
                &json!({
                    "card": s.card_number,
                    "page_size": s.page_size,
                    "pages": s.pages,
                    "backing_up": s.backing_up,
                    "restoring": s.restoring,
                    "pin_tries": s.pin_tries,
                    "sequence": s.sequence,
                    "completed": s.completed,
                    "changed_pages": s.changed_pages,
                    "apps": apps,
                }),
                || {
                    let mut t = format!(
                        "card {}\n{} pages of {} bytes, {} changed since backup {}\n",
                        s.card_number
                            .map_or("(blank)".to_string(), |n| n.to_string()),
                        s.pages,
                        s.page_size,
                        s.changed_pages,
                        s.completed
                    );
                    if s.backing_up {
                        t.push_str(
                            "a backup is in progress: writes are refused until one completes\n",
                        );
                    }
                    if s.restoring {
                        t.push_str(
                            "a restore is in progress: value is locked until one completes\n",
                        );
                    }
                    t.push_str(&format!("PIN tries left: {}\n", s.pin_tries));
                    for x in &s.apps {
                        t.push_str(&format!(
                            "  {:<8} {:<20} pages {}..{}{}\n",
                            x.name,
                            x.value.map_or("data".to_string(), |r| format!(
                                "value (reset {})",
                                r.name()
                            )),
                            x.first_page,
                            usize::from(x.first_page) + usize::from(x.pages),
                            if x.restored { "  restored" } else { "" }
                        ));
                    }
                    t.trim_end().to_string()
                },
            );
            Ok(())
        }
        CardCommand::Backup { full, differential } => {
            let mut host = connect()?;
            let repo = ctx.open()?;
            host.verify(&pin()?).map_err(refused)?;
            backup(ctx, &repo, &mut host, full, differential)
        }
        CardCommand::Backups { card } => {
            let repo = ctx.open()?;
            let rows = stored(&repo, card)?;
            let list: Vec<_> = rows
                .iter()
                .map(|b| {
                    json!({
                        "card": b.card, "sequence": b.sequence, "kind": b.kind.name(),
                        "time": b.time.to_string(), "snapshot": b.snapshot.to_string(),
                    })
                })
                .collect();
            ctx.out.emit(&list, || {
                crate::output::table(
                    format!(
                        "{:<20} {:>8}  {:<12}  {:<25}  snapshot",
                        "card", "sequence", "type", "date"
                    ),
                    rows.iter().map(|b| {
                        format!(
                            "{:<20} {:>8}  {:<12}  {:<25}  {}",
                            b.card,
                            b.sequence,
                            b.kind.name(),
                            crate::output::local_time(b.time),
                            b.snapshot.short()
                        )
                    }),
                )
            });
            Ok(())
        }
        CardCommand::Restore {
            from_card,
            to_card,
            sequence,
            images,
        } => {
            let mut host = connect()?;
            host.verify(&pin()?).map_err(refused)?;
            let own = host
                .status()
                .map_err(refused)?
                .card_number
                .context("the card in the reader is blank: `kura card init` it first")?;
            let chain = if images.is_empty() {
                let source = from_card.unwrap_or(own);
                if source != own && to_card.is_none() {
                    bail!(
                        "card {source}'s backups onto card {own}: say --to-card {own} to confirm \
                         the card in the reader is the one to restore onto"
                    );
                }
                let repo = ctx.open()?;
                chain_images(ctx, &repo, source, sequence)?
            } else {
                images
                    .iter()
                    .map(|p| {
                        let b =
                            std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                        Image::parse(&b).with_context(|| p.display().to_string())
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            let bar = Counter::new("card restore", "records", ctx.out.progress());
            host.restore(&chain, to_card, &mut |d, t| bar.update(d, t))
                .map_err(refused)?;
            bar.finish();
            let seqs: Vec<u32> = chain.iter().map(|i| i.header().sequence).collect();
            let source = chain[0].header().card_number;
            ctx.out.emit(
                &json!({ "card": own, "from_card": source, "sequences": seqs }),
                || {
                    format!(
                        "restored card {own} from card {source}'s backups {seqs:?}; value \
                         applications reset before their next use"
                    )
                },
            );
            Ok(())
        }
        CardCommand::Read {
            app,
            offset,
            length,
        } => {
            let mut host = connect()?;
            let a = host.select(&app).map_err(refused)?;
            let size =
                usize::from(a.pages) * usize::from(host.status().map_err(refused)?.page_size);
            let len = length.unwrap_or(size.saturating_sub(offset));
            let bytes = host.read(&app, offset, len).map_err(refused)?;
            std::io::stdout()
                .write_all(&bytes)
                .context("writing to stdout")?;
            Ok(())
        }
        CardCommand::Write { app, offset, file } => {
            let mut host = connect()?;
            let data = match file {
                Some(f) => std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
                None => {
                    let mut b = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut b)
                        .context("reading stdin")?;
                    b
                }
            };
            host.verify(&pin()?).map_err(refused)?;
            host.write(&app, offset, &data).map_err(refused)?;
            ctx.out.emit(
                &json!({ "app": app, "offset": offset, "bytes": data.len() }),
                || format!("wrote {} bytes into {app} at {offset}", data.len()),
            );
            Ok(())
        }
        CardCommand::Value {
            app,
            credit,
            debit,
            set,
            load,
        } => {
            let mut host = connect()?;
            let op = match (credit, debit, set, load) {
                (Some(n), ..) => ValueOp::Credit(n),
                (_, Some(n), ..) => ValueOp::Debit(n),
                (_, _, Some(n), _) => ValueOp::Set(n),
                (.., Some(n)) => ValueOp::Load {
                    amount: n,
                    date: jiff::Timestamp::now().as_second(),
                },
                _ => ValueOp::Get,
            };
            if op != ValueOp::Get {
                host.verify(&pin()?).map_err(refused)?;
            }
            let v = host.value(&app, op).map_err(refused)?;
            ctx.out
                .emit(&json!({ "app": app, "value": v }), || format!("{app}: {v}"));
            Ok(())
        }
        CardCommand::History => {
            let mut host = connect()?;
            let loads = host.history().map_err(refused)?;
            let names = host.status().map_err(refused)?.apps;
            let name = |i: u8| names.get(usize::from(i)).map_or("?", |a| a.name.as_str());
            let list: Vec<_> = loads
                .iter()
                .map(|l| json!({ "app": name(l.app), "date": l.date, "amount": l.amount, "count": l.count }))
                .collect();
            ctx.out.emit(&list, || {
                crate::output::lines(loads.iter().map(|l| {
                    let when = jiff::Timestamp::from_second(l.date)
                        .map_or(l.date.to_string(), crate::output::local_time);
                    format!("#{} {} {} loaded {}", l.count, when, name(l.app), l.amount)
                }))
            });
            Ok(())
        }
    }
}

fn refused(e: kura_card::CardError) -> anyhow::Error {
    match e {
        kura_card::CardError::Refused { .. } => Refused(e).into(),
        other => anyhow::Error::new(other),
    }
}

/// The PIN: from `file`, KURA_CARD_PIN, or asked on a terminal.
fn pin(file: Option<&Path>) -> Result<Vec<u8>> {
    if let Some(f) = file {
        return read_secret(f, "PIN file");
    }
    if let Ok(p) = std::env::var("KURA_CARD_PIN") {
        return Ok(p.into_bytes());
    }
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password("card PIN: ")?.into_bytes());
    }
    bail!("no card PIN: set KURA_CARD_PIN, pass --pin-file, or run on a terminal")
}

/// The common key in `path`, made (random, mode 0600) when the file does not exist.
fn common_key(ctx: &Ctx, path: &Path) -> Result<Key> {
    let parse = |text: &[u8]| -> Option<Key> {
        kura_core::id::unhex_array(std::str::from_utf8(text).ok()?.trim()).map(Key::from_bytes)
    };
    if path.exists() {
        let text = read_secret(path, "common key file")?;
        return parse(&text).with_context(|| {
            format!(
                "{} is not a card common key (64 hex digits)",
                path.display()
            )
        });
    }
    let key = Key::random();
    write_private(
        path,
        format!("{}\n", kura_core::id::hex(key.expose())).as_bytes(),
    )?;
    ctx.out.say(format!(
        "made a new common key in {}: every card of this account needs it, so keep it safe",
        path.display()
    ));
    Ok(key)
}

fn parse_pull_out(text: &str) -> Result<(u8, u64), String> {
    let bad = || format!("{text:?} is not INS:N (a hex instruction byte and a count), e.g. 42:100");
    let (ins, n) = text.split_once(':').ok_or_else(bad)?;
    let ins = u8::from_str_radix(ins, 16).map_err(|_| bad())?;
    let n = n.parse().map_err(|_| bad())?;
    Ok((ins, n))
}

fn emulate(
    ctx: &Ctx,
    path: &Path,
    vpcd: &str,
    (page_size, pages): (usize, usize),
    log_apdus: bool,
    pull_out: Option<(u8, u64)>,
) -> Result<()> {
    let chip = if path.exists() {
        let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        state::decode(&b).with_context(|| format!("the card state {}", path.display()))?
    } else {
        if !(MIN_PAGE..=MAX_PAGE).contains(&page_size) || !(3..=MAX_PAGES).contains(&pages) {
            bail!("a card has pages of {MIN_PAGE} to {MAX_PAGE} bytes and 3 to {MAX_PAGES} pages");
        }
        let chip = Chip::blank(
            Memory::blank(page_size, pages),
            default_layout(pages as u16),
        );
        write_private(path, &state::encode(&chip))?;
        ctx.out.say(format!(
            "a new blank card in {}: {pages} pages of {page_size} bytes",
            path.display()
        ));
        chip
    };
    stop_on_signals();
    let mut card = Card::new(chip);
    let mut seen = 0u64;
    let mut pulled = |apdu: &[u8]| {
        let Some((ins, n)) = pull_out else {
            return false;
        };
        seen += u64::from(apdu.get(1) == Some(&ins));
        seen >= n
    };
    let mut save = |c: &Card| -> std::io::Result<()> {
        write_private(path, &state::encode(c.chip())).map_err(std::io::Error::other)
    };
    ctx.out
        .say(format!("card emulator: waiting for vpcd at {vpcd}"));
    vicc::serve(vpcd, &mut card, &mut save, &signalled, &mut |e| match e {
        vicc::Event::Command(apdu) => {
            if pulled(apdu) {
                eprintln!("card emulator: pulled out");
                std::process::exit(19);
            }
        }
        vicc::Event::Connected(a) => eprintln!("card emulator: inserted in the reader at {a}"),
        vicc::Event::Disconnected => eprintln!("card emulator: the reader went away"),
        vicc::Event::Apdu {
            ins,
            status,
            data_in,
            data_out,
        } => {
            if log_apdus {
                eprintln!("apdu ins={ins:02X} sw={status:04X} in={data_in} out={data_out}");
            }
        }
    })
    .with_context(|| format!("serving the card to vpcd at {vpcd}"))
}

/// One stored card backup, from its snapshot's tags.
struct Stored {
    card: u64,
    sequence: u32,
    kind: BackupKind,
    time: jiff::Timestamp,
    snapshot: kura_core::id::Id,
    snap: kura_core::snapshot::Snapshot,
}

fn tag<'a>(tags: &'a [String], key: &str) -> Option<&'a str> {
    tags.iter()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix(':'))
}

/// The card backups in the repository, of card `card` or all, in card and sequence order.
fn stored(repo: &Repository, card: Option<u64>) -> Result<Vec<Stored>> {
    let mut rows: Vec<Stored> = repo
        .load_snapshots()?
        .into_iter()
        .filter_map(|(id, s)| {
            Some(Stored {
                card: tag(&s.tags, "card")?.parse().ok()?,
                sequence: tag(&s.tags, "card-seq")?.parse().ok()?,
                kind: BackupKind::from_name(tag(&s.tags, "card-type")?)?,
                time: s.time,
                snapshot: id,
                snap: s,
            })
        })
        .filter(|b| card.is_none_or(|c| c == b.card))
        .collect();
    rows.sort_by_key(|b| (b.card, b.sequence));
    Ok(rows)
}

fn backup(
    ctx: &Ctx,
    repo: &Repository,
    host: &mut Host<PcscReader>,
    full: bool,
    differential: bool,
) -> Result<()> {
    let s = host.status().map_err(refused)?;
    let number = s
        .card_number
        .context("the card in the reader is blank: `kura card init` it first")?;
    let kind = if full || (!differential && s.completed == 0) {
        BackupKind::Full
    } else {
        BackupKind::Differential
    };
    let started = std::time::Instant::now();
    let bar = Counter::new("card backup", "records", ctx.out.progress());
    let image = host
        .backup(kind, &mut |d, t| bar.update(d, t))
        .map_err(refused)?;
    bar.finish();
    let read = started.elapsed();
    let h = *image.header();
    let dir = ctx.state_base()?.join("card").join(number.to_string());
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("backup.kcb"), image.to_bytes())
        .with_context(|| format!("writing into {}", dir.display()))?;
    let opts = BackupOptions {
        paths: vec![dir],
        kind: BackupType::Full,
        tags: vec![
            format!("card:{number}"),
            format!("card-seq:{}", h.sequence),
            format!("card-type:{}", h.kind.name()),
        ],
        ..BackupOptions::default()
    };
    let (_, out) = super::backup::save(ctx, repo, opts, None)?;
    host.complete().map_err(refused)?;
    ctx.out.emit(
        &json!({
            "card": number, "sequence": h.sequence, "kind": h.kind.name(),
            "records": h.records, "snapshot": out.id.to_string(),
            "card_seconds": read.as_secs_f64(), "seconds": started.elapsed().as_secs_f64(),
        }),
        || {
            format!(
                "card {number}: {} backup {} of {} pages stored as snapshot {} (card {:.2} s, in all {:.2} s)",
                h.kind.name(),
                h.sequence,
                h.records,
                out.id.short(),
                read.as_secs_f64(),
                started.elapsed().as_secs_f64()
            )
        },
    );
    Ok(())
}

/// The stored images that restore card `source` to backup `upto` (the latest when `None`).
/// The chain is chosen from the snapshots' tags, so only its snapshots are read.
fn chain_images(
    ctx: &Ctx,
    repo: &Repository,
    source: u64,
    upto: Option<u32>,
) -> Result<Vec<Image>> {
    let rows = stored(repo, Some(source))?;
    if rows.is_empty() {
        bail!("the repository holds no backup of card {source} (`kura card backups` lists them)");
    }
    let chain = chain_to(rows, |b| (b.sequence, b.kind), upto).map_err(anyhow::Error::new)?;
    chain
        .iter()
        .map(|b| {
            let id = &b.snapshot;
            let tmp = super::restore::snapshot_root(ctx, repo, id, &b.snap)?;
            let bytes = std::fs::read(tmp.path().join("backup.kcb"))
                .with_context(|| format!("snapshot {} has no backup.kcb", id.short()))?;
            let image = Image::parse(&bytes).with_context(|| format!("snapshot {}", id.short()))?;
            if (image.header().card_number, image.header().sequence) != (source, b.sequence) {
                bail!(
                    "snapshot {} is tagged as backup {} of card {source} but holds another",
                    id.short(),
                    b.sequence
                );
            }
            Ok(image)
        })
        .collect()
}

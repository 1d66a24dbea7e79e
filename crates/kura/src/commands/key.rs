//! `kura key list|passwd|recovery-code|escrow|recover`: what unlocks the repository's common
//! key, and bringing it back through a key manager when the passphrase is lost.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use kura_core::crypto::Key;
use kura_core::id::{hex, unhex, unhex_array};
use kura_core::keys::RecoveryCode;
use kura_keyman::client::KeymanClient;
use kura_repo::Credential;
use kura_repo::lock::hostname;
use kura_wallet::escrow::{Enrol, Rule, key_check};
use kura_wallet::sign::SigningKey;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::wallet::OwnerArgs;
use crate::ctx::{Ctx, kdf, read_secret, write_private};
use crate::output::table;

/// Key commands.
#[derive(Subcommand)]
pub enum KeyCommand {
    /// List the key files: the passphrase(s) and the recovery code.
    List,
    /// Change the passphrase: unlock with the current one (or the recovery code, if it was
    /// lost), then the new one replaces it. The new one comes from --new-password-file,
    /// KURA_NEW_PASSWORD, or a prompt.
    Passwd {
        /// File holding the new passphrase.
        #[arg(long)]
        new_password_file: Option<PathBuf>,
    },
    /// Issue a new recovery code, shown once, and retire the old one: it opens nothing any more.
    RecoveryCode,
    /// Escrow a way back in, split in shares, so a lost passphrase can be replaced: a new
    /// recovery code (beside the one you have) is split so that one share goes to a key
    /// manager, released only to the credentials given here, and one into each --share-file
    /// for you to keep apart. Any two shares rebuild it; the key manager alone cannot, and
    /// the provider never holds a share. With --file, escrow that secret instead (64 hex
    /// digits, e.g. a card common key from `kura card init`).
    Escrow {
        /// The key manager's address, https://HOST:PORT.
        #[arg(long)]
        keyman: String,
        /// The key manager's TLS certificate fingerprint (SHA-256).
        #[arg(long)]
        keyman_fingerprint: String,
        /// Where to write a share (repeat for more; each alone with the key manager's
        /// rebuilds the secret).
        #[arg(long, required = true)]
        share_file: Vec<PathBuf>,
        /// Escrow this secret file (64 hex digits) rather than a repository recovery code.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Release on any one of the credentials (by default all must match).
        #[arg(long)]
        any: bool,
        #[command(flatten)]
        owner: OwnerArgs,
    },
    /// Bring back what `kura key escrow` escrowed: the key manager's share, released to the
    /// credentials, and one share file rebuild it. A repository's: then set a new passphrase
    /// (from --new-password-file, KURA_NEW_PASSWORD or a prompt). A file's: written to --file.
    Recover {
        /// One of the share files `kura key escrow` wrote.
        #[arg(long)]
        share_file: PathBuf,
        /// Where to write an escrowed file's secret.
        #[arg(long)]
        file: Option<PathBuf>,
        /// File holding the new passphrase.
        #[arg(long)]
        new_password_file: Option<PathBuf>,
        #[command(flatten)]
        owner: OwnerArgs,
    },
}

/// A share file: one share of an escrowed secret and where the key manager's is.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareFile {
    /// What the secret unlocks: `repository ID` or `file`.
    what: String,
    /// The escrow's name at the key manager (a public key).
    escrow: String,
    keyman: String,
    keyman_fingerprint: String,
    /// A check that the rebuilt secret is the right one.
    check: String,
    /// This share.
    share: String,
}

/// `kura key ...`.
pub fn key(ctx: &Ctx, c: KeyCommand) -> Result<()> {
    match c {
        KeyCommand::List => list(ctx),
        KeyCommand::Passwd { new_password_file } => passwd(ctx, new_password_file),
        KeyCommand::RecoveryCode => recovery_code(ctx),
        KeyCommand::Escrow {
            keyman,
            keyman_fingerprint,
            share_file,
            file,
            any,
            owner,
        } => escrow(
            ctx,
            (&keyman, &keyman_fingerprint),
            &share_file,
            file.as_deref(),
            any,
            &owner,
        ),
        KeyCommand::Recover {
            share_file,
            file,
            new_password_file,
            owner,
        } => recover(
            ctx,
            &share_file,
            file.as_deref(),
            new_password_file.as_deref(),
            &owner,
        ),
    }
}

fn secret_file(path: &Path) -> Result<Key> {
    let text = read_secret(path, "secret file")?;
    let bytes = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| unhex_array::<32>(t.trim()))
        .with_context(|| format!("{} is not a secret of 64 hex digits", path.display()))?;
    Ok(Key::from_bytes(bytes))
}

fn escrow(
    ctx: &Ctx,
    (keyman, fingerprint): (&str, &str),
    share_files: &[PathBuf],
    file: Option<&Path>,
    any: bool,
    owner: &OwnerArgs,
) -> Result<()> {
    let credentials = owner.credentials()?;
    let client = KeymanClient::new(keyman, fingerprint)?;
    // The repository learns the new code only once every share is out, so a failure
    // leaves no code that nobody holds.
    let (what, secret, repo) = match file {
        Some(f) => ("file".to_string(), secret_file(f)?, None),
        None => {
            let repo = ctx.open()?;
            let what = format!("repository {}", repo.config().id);
            let code = RecoveryCode::generate();
            (what, Key::from_bytes(*code.expose()), Some(repo))
        }
    };
    let shares = kura_wallet::split::split(&secret, 2, share_files.len() + 1)?;
    // The escrow's name: a key made for it; only its public half is kept.
    let name = SigningKey::generate();
    let rule = if any { Rule::Any } else { Rule::All };
    client.enrol(&Enrol::sign(
        &name,
        shares[0].clone(),
        (credentials, rule),
        kura_wallet::now_ms(),
    ))?;
    for (path, share) in share_files.iter().zip(&shares[1..]) {
        let sheet = ShareFile {
            what: what.clone(),
            escrow: hex(&name.public()),
            keyman: keyman.to_string(),
            keyman_fingerprint: fingerprint.to_string(),
            check: key_check(&secret),
            share: hex(share),
        };
        write_private(path, toml::to_string(&sheet)?.as_bytes())?;
    }
    if let Some(repo) = &repo {
        let _lock = repo.lock(false)?;
        repo.add_recovery_code(&RecoveryCode::from_bytes(*secret.expose()), &hostname())?;
    }
    ctx.out.emit(
        &json!({ "escrowed": what, "share_files": share_files, "escrow": hex(&name.public()) }),
        || {
            format!(
                "escrowed ({what}): one share at the key manager, one in each of {}; keep \
                 them apart. `kura key recover --share-file F` with the credentials brings it \
                 back.",
                share_files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    );
    Ok(())
}

fn recover(
    ctx: &Ctx,
    share_file: &Path,
    file: Option<&Path>,
    new_password_file: Option<&Path>,
    owner: &OwnerArgs,
) -> Result<()> {
    let text = std::fs::read_to_string(share_file)
        .with_context(|| format!("reading {}", share_file.display()))?;
    let sheet: ShareFile = toml::from_str(&text)
        .with_context(|| format!("{} is not a share file", share_file.display()))?;
    let escrow: [u8; 32] =
        unhex_array(&sheet.escrow).context("the share file's escrow is not 32 bytes of hex")?;
    let mine = unhex(&sheet.share).context("the share file's share is not hex")?;
    let client = KeymanClient::new(&sheet.keyman, &sheet.keyman_fingerprint)?;
    let theirs = client.release(&escrow, owner.credentials()?)?;
    let secret = kura_wallet::split::combine(&[theirs, mine])?;
    if key_check(&secret) != sheet.check {
        bail!("the shares do not rebuild the escrowed secret (a share file of another escrow?)");
    }
    match (sheet.what.as_str(), file) {
        ("file", Some(f)) => {
            write_private(f, format!("{}\n", hex(secret.expose())).as_bytes())?;
            ctx.out.emit(&json!({ "recovered": f }), || {
                format!("wrote the escrowed secret to {}", f.display())
            });
        }
        ("file", None) => bail!("this share file escrows a file: say where with --file"),
        (_, Some(_)) => bail!("this share file escrows a repository's key, not a file"),
        (_, None) => {
            let code = RecoveryCode::from_bytes(*secret.expose()).text();
            let mut repo = ctx.open_with(Some(Credential::RecoveryCode(code)))?;
            let _lock = repo.lock(false)?;
            let new = ctx.replacement_passphrase(new_password_file)?;
            repo.change_passphrase(&new, kdf(), &hostname())?;
            ctx.out.emit(&json!({ "changed": true }), || {
                "the passphrase is replaced: the escrowed recovery code opened the repository"
                    .to_string()
            });
        }
    }
    Ok(())
}

fn list(ctx: &Ctx) -> Result<()> {
    let repo = ctx.open()?;
    let mut keys = repo.keys()?;
    keys.sort_by(|a, b| a.created.cmp(&b.created));
    ctx.out.emit(&keys, || {
        let header = format!("{:<8}  {:<14}  {:<32}  host", "key", "kind", "created");
        let rows = keys.iter().map(|k| {
            format!(
                "{:<8}  {:<14}  {:<32}  {}{}",
                &k.name[..k.name.len().min(8)],
                k.kind,
                k.created,
                k.host,
                if k.in_use { "  (used now)" } else { "" }
            )
        });
        table(header, rows)
    });
    Ok(())
}

fn passwd(ctx: &Ctx, new_password_file: Option<PathBuf>) -> Result<()> {
    let mut repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let new = ctx.replacement_passphrase(new_password_file.as_deref())?;
    repo.change_passphrase(&new, kdf(), &hostname())?;
    ctx.out.emit(&json!({"changed": true}), || {
        "passphrase changed: the old one no longer unlocks the repository. Update any password \
         file that scheduled backups read (KURA_PASSWORD, --password-file, the config file)."
            .to_string()
    });
    Ok(())
}

fn recovery_code(ctx: &Ctx) -> Result<()> {
    let mut repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let code = repo.replace_recovery_code(&hostname())?;
    if ctx.out.quiet && !ctx.out.json {
        // Shown only once, so even --quiet must not swallow it.
        eprintln!("new recovery code (shown once; keep it offline): {code}");
    }
    ctx.out.emit(&json!({"recovery_code": code}), || {
        format!(
            "New recovery code (shown once; keep it offline, it unlocks everything without the passphrase):\n  {code}\nThe old recovery code no longer opens the repository."
        )
    });
    Ok(())
}

//! `kura device add|list|rename|remove`: the machines whose keys the repository's common key
//! wraps.

use anyhow::{Result, bail};
use clap::Subcommand;
use kura_repo::lock::hostname;
use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::output::{lines, local_time};

/// Device commands.
#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Make this machine a device of an existing repository (needs the passphrase or recovery code).
    Add {
        /// A name for the device (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the repository's devices.
    List,
    /// Give a device a new name (DEVICE: a unique id prefix or its current name).
    Rename {
        /// The device.
        device: String,
        /// Its new name.
        name: String,
    },
    /// Remove a device (a lost or retired machine): it may not add data any more. What it
    /// stored stays readable. On its own this does not lock out whoever holds the passphrase:
    /// change it with `kura key passwd` (and `kura key recovery-code` if the code was there too).
    Remove {
        /// The device (a unique id prefix or its name).
        device: String,
    },
}

/// `kura device ...`.
pub fn device(ctx: &Ctx, c: DeviceCommand) -> Result<()> {
    match c {
        DeviceCommand::Add { name } => add(ctx, name),
        DeviceCommand::List => list(ctx),
        DeviceCommand::Rename { device, name } => rename(ctx, &device, &name),
        DeviceCommand::Remove { device } => remove(ctx, &device),
    }
}

fn rename(ctx: &Ctx, spec: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        bail!("a device name may not be empty");
    }
    let mut repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let device = repo.find_device(spec)?;
    repo.rename_device(device, name)?;
    ctx.out
        .emit(&json!({"device": device.to_string(), "name": name}), || {
            format!("device {device} is now named {name:?}")
        });
    Ok(())
}

fn remove(ctx: &Ctx, spec: &str) -> Result<()> {
    let mut repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let device = repo.find_device(spec)?;
    let mine = ctx.state(&repo)?.device() == Some(device);
    repo.remove_device(device)?;
    ctx.out.emit(
        &json!({"device": device.to_string(), "removed": true, "this_machine": mine}),
        || {
            format!(
                "removed device {device}{}: it can no longer add snapshots; the snapshots it made stay readable.\n\
                 If the machine is lost, its passphrase may be lost with it: run `kura key passwd` \
                 (and `kura key recovery-code` if the recovery code was kept there too).",
                if mine { " (this machine)" } else { "" }
            )
        },
    );
    Ok(())
}

fn add(ctx: &Ctx, name: Option<String>) -> Result<()> {
    let mut repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let state = ctx.state(&repo)?;
    if let Some(d) = state.device().filter(|d| repo.require_device(*d).is_ok()) {
        bail!("this machine is already device {d} of the repository");
    }
    let host = hostname();
    let device = repo.add_device(name.as_deref().unwrap_or(&host), &host)?;
    state.set_device(device)?;
    ctx.out.emit(&json!({"device": device.to_string()}), || {
        format!("this machine is now device {device}")
    });
    Ok(())
}

fn list(ctx: &Ctx) -> Result<()> {
    let repo = ctx.open()?;
    let mine = ctx.state(&repo)?.device();
    let mut devs: Vec<_> = repo.devices().collect();
    devs.sort_by_key(|d| d.created);
    let listing: Vec<Value> = devs
        .iter()
        .map(|d| json!({"device": d.device.to_string(), "name": d.name, "host": d.host, "created": d.created, "removed": d.removed, "this_machine": Some(d.device) == mine}))
        .collect();
    ctx.out.emit(&listing, || {
        lines(devs.iter().map(|d| {
            let removed = d
                .removed
                .map(|t| format!("  (removed {})", local_time(t)))
                .unwrap_or_default();
            format!(
                "{}  {:<16} {:<16} {}{}{removed}",
                d.device,
                d.name,
                d.host,
                local_time(d.created),
                if Some(d.device) == mine {
                    "  (this machine)"
                } else {
                    ""
                }
            )
        }))
    });
    Ok(())
}

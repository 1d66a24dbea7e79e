//! `kura device add|list`: the machines whose keys the repository's common key wraps.

use anyhow::{Result, bail};
use clap::Subcommand;
use kura_repo::lock::hostname;
use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::output::lines;

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
}

/// `kura device ...`.
pub fn device(ctx: &Ctx, c: DeviceCommand) -> Result<()> {
    match c {
        DeviceCommand::Add { name } => add(ctx, name),
        DeviceCommand::List => list(ctx),
    }
}

fn add(ctx: &Ctx, name: Option<String>) -> Result<()> {
    let mut repo = ctx.open()?;
    let state = ctx.state(&repo)?;
    if let Some(d) = state.device().filter(|d| repo.device_key(*d).is_some()) {
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
        .map(|d| json!({"device": d.device.to_string(), "name": d.name, "host": d.host, "created": d.created, "this_machine": Some(d.device) == mine}))
        .collect();
    ctx.out.emit(&listing, || {
        lines(devs.iter().map(|d| {
            format!(
                "{}  {:<16} {:<16} {}{}",
                d.device,
                d.name,
                d.host,
                d.created,
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

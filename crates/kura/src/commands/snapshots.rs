//! Looking at snapshots: `kura snapshots`, `kura ls`, `kura diff`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use kura_client::walk;
use kura_core::Id;
use kura_core::keys::DeviceId;
use kura_core::snapshot::{Filter, Snapshot};
use kura_core::tree::{Node, NodeKind, Tree};
use kura_repo::{MasterIndex, RepoError, Repository};
use serde_json::{Value, json};

use crate::ctx::Ctx;
use crate::output::{Partial, count, human, lines, local_time, table};

/// `--host`, `--path`, `--tag`: which snapshots a command considers (restic's names); `latest`
/// is the newest of those.
#[derive(Args, Default)]
#[command(next_help_heading = "Snapshot selection")]
pub struct SelectArgs {
    /// Only snapshots of this host name or device name (repeatable: any of them).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Only snapshots that backed up this path (repeatable: all of them).
    #[arg(long = "path")]
    paths: Vec<PathBuf>,
    /// Only snapshots with these tags (`a,b`: both; repeatable: any of the lists).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

impl SelectArgs {
    /// The filter these options describe, with paths made absolute.
    fn filter(&self) -> Result<Filter> {
        Ok(Filter {
            hosts: self.hosts.clone(),
            paths: self
                .paths
                .iter()
                .map(|p| walk::absolute(p).map(|p| p.display().to_string()))
                .collect::<Result<_, _>>()?,
            tags: self.tags.clone(),
        })
    }

    /// Whether a snapshot of `repo` is considered.
    pub fn considered(&self, repo: &Repository) -> Result<impl Fn(&Snapshot) -> bool + use<>> {
        let filter = self.filter()?;
        let names = device_names(repo);
        Ok(move |s: &Snapshot| filter.matches(s, names.get(&s.device).map(String::as_str)))
    }

    /// The snapshot `spec` names among those considered.
    pub fn find(&self, repo: &Repository, spec: &str) -> Result<(Id, Snapshot)> {
        Ok(repo.find_snapshot_where(spec, self.considered(repo)?)?)
    }

    /// The snapshots `specs` name, or with none every one considered; oldest first. Snapshot
    /// files that cannot be read are warned about and left out.
    pub fn chosen(&self, repo: &Repository, specs: &[String]) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = if specs.is_empty() {
            let considered = self.considered(repo)?;
            let (mut all, damaged) = repo.readable_snapshots()?;
            for e in &damaged {
                eprintln!("warning: {e}; left out");
            }
            all.retain(|(_, s)| considered(s));
            all
        } else {
            (specs.iter())
                .map(|spec| self.find(repo, spec))
                .collect::<Result<Vec<_>>>()?
        };
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        out.dedup_by_key(|(id, _)| *id);
        Ok(out)
    }
}

/// Options of `kura snapshots`.
#[derive(Args, Default)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    select: SelectArgs,
}

/// Options of `kura ls`.
#[derive(Args)]
pub struct LsArgs {
    /// Snapshot id prefix or `latest`.
    snapshot: String,
    /// Only this absolute path and what is under it.
    path: Option<PathBuf>,
    /// List only the files an incremental or differential snapshot carried.
    #[arg(long)]
    only_changes: bool,
    #[command(flatten)]
    select: SelectArgs,
}

/// Options of `kura diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// Older snapshot; alone, the snapshot to compare with its base.
    from: String,
    /// Newer snapshot.
    to: Option<String>,
}

fn device_names(repo: &Repository) -> HashMap<DeviceId, String> {
    repo.devices().map(|d| (d.device, d.name.clone())).collect()
}

fn snapshot_json(id: &Id, s: &Snapshot, names: &HashMap<DeviceId, String>) -> Value {
    json!({
        "id": id, "short_id": id.short(), "time": s.time, "device": s.device.to_string(),
        "device_name": names.get(&s.device), "hostname": s.hostname, "paths": s.paths, "type": s.kind,
        "tags": s.tags, "tree": s.tree, "base": s.base, "changes": s.changes, "summary": s.summary,
    })
}

/// `kura snapshots`.
pub fn snapshots(ctx: &Ctx, a: SnapshotsArgs) -> Result<()> {
    let repo = ctx.open()?;
    let (mut snaps, damaged) = repo.readable_snapshots()?;
    let considered = a.select.considered(&repo)?;
    snaps.retain(|(_, s)| considered(s));
    for e in &damaged {
        eprintln!("warning: {e}");
    }
    let names = device_names(&repo);
    let listing: Vec<Value> = snaps
        .iter()
        .map(|(id, s)| snapshot_json(id, s, &names))
        .collect();
    ctx.out.emit(&listing, || {
        let header = format!(
            "{:<8}  {:<19}  {:<12}  {:<12}  {:<8}  {:>10}  {:<20}  tags",
            "id", "time", "device", "type", "base", "size", "paths"
        );
        let rows = snaps.iter().map(|(id, s)| {
            let dev = names
                .get(&s.device)
                .cloned()
                .unwrap_or_else(|| s.device.to_string());
            format!(
                "{:<8}  {:<19}  {:<12}  {:<12}  {:<8}  {:>10}  {:<20}  {}",
                id.short(),
                local_time(s.time),
                dev,
                s.kind.to_string(),
                s.base.map_or_else(|| "-".to_string(), |b| b.short()),
                human(s.summary.bytes),
                s.paths.join(" "),
                s.tags.join(",")
            )
        });
        let footer = count(snaps.len() as u64, "snapshot");
        table(header, rows.chain([footer]))
    });
    damaged_is_partial(&damaged)
}

fn damaged_is_partial(damaged: &[RepoError]) -> Result<()> {
    if damaged.is_empty() {
        return Ok(());
    }
    Err(Partial(format!(
        "{} snapshot files could not be read (see `kura check`)",
        damaged.len()
    ))
    .into())
}

/// `kura ls`.
pub fn ls(ctx: &Ctx, a: LsArgs) -> Result<()> {
    let repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let (_, snap) = a.select.find(&repo, &a.snapshot)?;
    let root = if a.only_changes {
        snap.carried()
    } else {
        snap.tree
    };
    let index = repo.load_index()?;
    let mut rows = Vec::new();
    let (start, base) = match a.path {
        None => (Some(root), PathBuf::from("/")),
        Some(p) => {
            let p = walk::absolute(&p)?;
            match walk::find_node(&repo, &index, &root, &p)? {
                None => (Some(root), PathBuf::from("/")),
                Some(node) => {
                    let sub = node.subtree;
                    rows.push((p.clone(), node));
                    (sub, p)
                }
            }
        }
    };
    let mut lost = Vec::new();
    if let Some(t) = start {
        let mut visit = |p: &Path, n: &Node| {
            rows.push((p.to_path_buf(), n.clone()));
            Ok(true)
        };
        walk::visit_tree(&repo, &index, &t, &base, &mut visit, &mut lost)?;
    }
    let listing: Vec<Value> = rows
        .iter()
        .map(|(p, n)| json!({"path": p, "type": n.kind.name(), "size": n.size, "mode": n.mode, "mtime_ns": n.mtime_ns, "target": n.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned())}))
        .collect();
    ctx.out.emit(&listing, || {
        lines(rows.iter().map(|(p, n)| {
            let link = n
                .target
                .as_ref()
                .map(|t| format!(" -> {}", String::from_utf8_lossy(t)))
                .unwrap_or_default();
            format!(
                "{:<7} {:04o} {:>12}  {}{}",
                n.kind.name(),
                n.mode,
                n.size,
                p.display(),
                link
            )
        }))
    });
    lost_trees(&lost)
}

/// Names the directories a listing could not go into, and makes the command end with
/// exit code 3.
pub(crate) fn lost_trees(lost: &[walk::LostTree]) -> Result<()> {
    if lost.is_empty() {
        return Ok(());
    }
    for l in lost {
        eprintln!("kura: {l}");
    }
    Err(Partial(format!(
        "{} could not be read (see `kura check --read-data`)",
        count(lost.len() as u64, "directory listing")
    ))
    .into())
}

/// What happened to a path between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Added,
    Removed,
    Modified,
}

impl Change {
    fn sign(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
        }
    }

    fn name(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
        }
    }
}

/// `kura diff`.
pub fn diff(ctx: &Ctx, a: DiffArgs) -> Result<()> {
    let repo = ctx.open()?;
    let _lock = repo.lock(false)?;
    let (from, to) = match &a.to {
        Some(to) => (repo.find_snapshot(&a.from)?.1, repo.find_snapshot(to)?.1),
        None => {
            let (id, to) = repo.find_snapshot(&a.from)?;
            let base = to.base.ok_or_else(|| {
                anyhow::anyhow!(
                    "snapshot {} is a {} backup with no base: name two snapshots to compare",
                    id.short(),
                    to.kind
                )
            })?;
            let (_, from) = repo.find_base(&base).map_err(|e| {
                anyhow::anyhow!(
                    "the base {} of snapshot {} cannot be read ({e}): name two snapshots to compare",
                    base.short(),
                    id.short()
                )
            })?;
            (from, to)
        }
    };
    let index = repo.load_index()?;
    let mut changes = Vec::new();
    let mut lost = Vec::new();
    let trees = (Some(from.tree), Some(to.tree));
    diff_trees(
        &repo,
        &index,
        trees,
        Path::new("/"),
        &mut changes,
        &mut lost,
    )?;
    let listing: Vec<Value> = changes
        .iter()
        .map(|(c, p)| json!({"path": p, "change": c.name()}))
        .collect();
    ctx.out.emit(&listing, || {
        let count = |k: Change| changes.iter().filter(|(c, _)| *c == k).count();
        let summary = format!(
            "{} added, {} removed, {} modified",
            count(Change::Added),
            count(Change::Removed),
            count(Change::Modified)
        );
        lines(
            changes
                .iter()
                .map(|(c, p)| format!("{} {}", c.sign(), p.display()))
                .chain([summary]),
        )
    });
    lost_trees(&lost)
}

/// Compares the trees `a` and `b` of the directory at `at`; a directory whose tree is damaged
/// on either side is recorded in `lost` and not compared.
fn diff_trees(
    repo: &Repository,
    index: &MasterIndex,
    (a, b): (Option<Id>, Option<Id>),
    at: &Path,
    out: &mut Vec<(Change, PathBuf)>,
    lost: &mut Vec<walk::LostTree>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let mut load = |t: Option<Id>| -> Result<Option<Tree>> {
        match t {
            Some(id) => Ok(walk::load_tree(repo, index, &id, at, lost)?),
            None => Ok(Some(Tree::default())),
        }
    };
    let (Some(na), Some(nb)) = (load(a)?, load(b)?) else {
        return Ok(());
    };
    let mut names: Vec<&[u8]> = na
        .nodes
        .iter()
        .chain(&nb.nodes)
        .map(|n| n.name.as_slice())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let path = at.join(OsStr::from_bytes(name));
        match (na.find(name), nb.find(name)) {
            (Some(x), None) => {
                out.push((Change::Removed, path.clone()));
                if x.kind == NodeKind::Dir {
                    diff_trees(repo, index, (x.subtree, None), &path, out, lost)?;
                }
            }
            (None, Some(y)) => {
                out.push((Change::Added, path.clone()));
                if y.kind == NodeKind::Dir {
                    diff_trees(repo, index, (None, y.subtree), &path, out, lost)?;
                }
            }
            (Some(x), Some(y)) => {
                if x.kind == NodeKind::Dir && y.kind == NodeKind::Dir {
                    diff_trees(repo, index, (x.subtree, y.subtree), &path, out, lost)?;
                } else if x.kind != y.kind
                    || x.content != y.content
                    || x.target != y.target
                    || x.mode != y.mode
                    || x.mtime_ns != y.mtime_ns
                    || x.rdev != y.rdev
                    || x.xattrs != y.xattrs
                {
                    out.push((Change::Modified, path));
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}

//! Restore: plan from the snapshot's trees, check free space, then write every file to a
//! temporary name in its directory and rename it into place only after every blob of it was
//! authenticated and matched its id. Names come from validated trees and directories are
//! checked to be real directories before anything is written into them, so a restore never
//! writes outside its target.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, FileTimes, Permissions};
use std::io::{self, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use kura_core::Id;
use kura_core::snapshot::Snapshot;
use kura_core::tree::{Node, NodeKind};
use kura_repo::{MasterIndex, RepoError, Repository};

use crate::pattern::Patterns;
use crate::progress::Progress;
use crate::sys;
use crate::walk;
use crate::{ClientError, Result, io_err};

/// What to restore, and where.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The directory to restore into (created if missing).
    pub target: PathBuf,
    /// Restore only this absolute path of the snapshot (its contents go directly into target).
    pub subpath: Option<PathBuf>,
    /// Restore only entries whose snapshot path, or an ancestor's, matches one of these globs.
    pub includes: Vec<String>,
    /// Where to take the contents of files that exist only in a baseline.
    pub baseline_source: Option<PathBuf>,
    /// Restore only the files the snapshot carried (for incremental and differential, what
    /// changed since its base), not the whole state.
    pub only_changes: bool,
    /// Keep setuid and setgid bits on files. Off by default: a snapshot could have been written
    /// by any device of the account, and a restore (as root above all) should not create
    /// privileged programs from it unasked.
    pub keep_setuid: bool,
    /// What to do with entries that already exist at the target.
    pub overwrite: Overwrite,
    /// Worker threads (0: two per core).
    pub threads: usize,
}

/// What a restore does with an entry already at the target (restic's vocabulary). Whatever the
/// choice, a directory where the snapshot has a file, or a file where it has a directory, is
/// replaced only under [`Overwrite::Always`]; otherwise that entry is refused and reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Replace whatever is there, including a directory in the way of a file.
    Always,
    /// Replace an entry of the same kind only if it differs (size and mtime for a file, the
    /// target for a symlink); leave an equal one as it is.
    #[default]
    IfChanged,
    /// Leave every existing entry as it is.
    Never,
}

/// What to do at one destination, from what is there now.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Nothing there, or something this restore may replace.
    Write,
    /// Something equal (or anything, with [`Overwrite::Never`]) that stays.
    Keep,
    /// Something of another kind that only [`Overwrite::Always`] may replace.
    Refuse(String),
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    /// Files restored.
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Symlinks restored.
    pub symlinks: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Entries already at the target that were left as they were (equal, or `--overwrite never`).
    pub kept: u64,
    /// Entries that could not be restored, with the reason.
    pub errors: Vec<String>,
    /// Include patterns that matched nothing.
    pub unmatched: Vec<String>,
    /// FIFOs (and, as root, device nodes) restored.
    pub specials: u64,
    /// Device nodes not restored because only root can make them.
    pub devices_skipped: u64,
    /// Files whose setuid/setgid bits were left off.
    pub setuid_stripped: u64,
    /// What was restored without all its metadata (extended attributes the target refused).
    pub warnings: Vec<String>,
}

struct Item {
    /// Path in the snapshot.
    source: PathBuf,
    /// Path relative to the target.
    rel: PathBuf,
    node: Node,
}

/// Restores `snapshot` (or part of it) into `opts.target`.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let _lock = repo.lock(false)?;
    let index = repo.load_index()?;
    let includes = Patterns::new(&opts.includes)?;
    let includes = (!includes.is_empty()).then_some(includes);
    let root = if opts.only_changes {
        snapshot.carried()
    } else {
        snapshot.tree
    };
    let mut lost = Vec::new();
    let (mut dirs, mut files, mut links) =
        plan(repo, &index, root, opts, includes.as_ref(), &mut lost)?;
    let unmatched = includes.as_ref().map(|i| i.unmatched()).unwrap_or_default();
    if !unmatched.is_empty() && unmatched.len() == opts.includes.len() {
        return Err(ClientError::Usage(format!(
            "nothing in the snapshot matches --include {}",
            unmatched.join(", ")
        )));
    }
    // Without the recovery source, files that exist only in a baseline are left out and
    // named once; everything else is restored.
    let mut baseline_only = Vec::new();
    if opts.baseline_source.is_none() {
        let only_in_baseline = |f: &Item| {
            f.node
                .content
                .iter()
                .any(|id| !index.contains(id) && index.external(id).is_some())
        };
        (baseline_only, files) = files.into_iter().partition(only_in_baseline);
    }

    if fs::metadata(&opts.target).is_ok_and(|m| !m.is_dir()) {
        return Err(ClientError::Usage(format!(
            "the target {} exists and is not a directory",
            opts.target.display()
        )));
    }
    fs::create_dir_all(&opts.target).map_err(io_err(&opts.target))?;
    let target = walk::absolute(&opts.target)?;
    let free = kura_repo::backend::free_space(&target).map_err(io_err(&target))?;
    // Every file takes whole blocks; a hard-linked file is stored once.
    let blocks = |size: u64| size.div_ceil(free.block.max(1)) * free.block.max(1);
    let linked: HashMap<u64, u64> = files
        .iter()
        .filter(|f| f.node.hardlink != 0)
        .map(|f| (f.node.hardlink, f.node.size))
        .collect();
    let unlinked = files.iter().filter(|f| f.node.hardlink == 0);
    let needed: u64 = unlinked.clone().map(|f| blocks(f.node.size)).sum::<u64>()
        + linked.values().map(|&s| blocks(s)).sum::<u64>();
    if needed > free.bytes {
        return Err(ClientError::NoSpace {
            target: target.display().to_string(),
            needed,
            available: free.bytes,
            unit: "bytes",
        });
    }
    let inodes = (unlinked.count() + linked.len() + dirs.len() + links.len()) as u64;
    if let Some(available) = free.inodes.filter(|&a| inodes > a) {
        return Err(ClientError::NoSpace {
            target: target.display().to_string(),
            needed: inodes,
            available,
            unit: "inodes",
        });
    }
    let mut out = RestoreOutcome {
        unmatched,
        ..RestoreOutcome::default()
    };
    // A damaged directory listing costs what is under it; the rest is restored.
    out.errors.extend(lost.iter().map(ToString::to_string));
    if let Some(first) = baseline_only.first() {
        out.errors.push(format!(
            "{} not restored: they exist only in a baseline (e.g. {}); give the recovery source with --baseline-source DIR",
            kura_core::count(baseline_only.len() as u64, "file"),
            first.source.display()
        ));
    }
    // Directories first; one that something else is in the way of is refused with all it holds.
    let mut verified = HashSet::new();
    let mut blocked: Vec<PathBuf> = Vec::new();
    let under_blocked =
        |rel: &Path, blocked: &[PathBuf]| blocked.iter().any(|b| rel.starts_with(b));
    dirs.retain(|d| {
        if under_blocked(&d.rel, &blocked) {
            return false;
        }
        match ensure_dir(&target, &d.rel, &mut verified, opts.overwrite) {
            Ok(None) => true,
            Ok(Some(why)) => {
                out.errors.push(format!("{}: {why}", d.source.display()));
                blocked.push(d.rel.clone());
                false
            }
            Err(e) => {
                out.errors
                    .push(format!("{}: {e} (not restored)", d.source.display()));
                blocked.push(d.rel.clone());
                false
            }
        }
    });
    out.dirs = dirs.len() as u64;
    if !opts.keep_setuid {
        for f in files.iter_mut().filter(|f| f.node.mode & 0o6000 != 0) {
            f.node.mode &= !0o6000;
            out.setuid_stripped += 1;
        }
        if out.setuid_stripped > 0 {
            out.warnings.push(format!(
                "setuid/setgid bits left off {} (--keep-setuid keeps them)",
                kura_core::count(out.setuid_stripped, "file")
            ));
        }
    }
    for items in [&mut files, &mut links] {
        items.retain(|f| {
            if under_blocked(&f.rel, &blocked) {
                return false;
            }
            let parent = f.rel.parent().unwrap_or(Path::new(""));
            let why = match ensure_dir(&target, parent, &mut verified, opts.overwrite) {
                Ok(None) => return true,
                Ok(Some(why)) => why,
                Err(e) => e.to_string(),
            };
            out.errors.push(format!("{}: {why}", f.source.display()));
            false
        });
    }
    progress.start(files.len() as u64, files.iter().map(|f| f.node.size).sum());

    // Regular files; the second and later names of a hard-linked file are linked afterwards.
    let mut first_of: HashMap<u64, usize> = HashMap::new();
    let mut later: Vec<usize> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.node.hardlink != 0 && first_of.contains_key(&f.node.hardlink) {
            later.push(i);
        } else {
            first_of.entry(f.node.hardlink).or_insert(i);
        }
    }
    let later_set: HashSet<usize> = later.iter().copied().collect();
    // The recovery source is laid out like the roots of the baseline snapshots.
    let baseline = match &opts.baseline_source {
        Some(dir) => {
            let mut roots: Vec<PathBuf> = repo
                .load_snapshots()?
                .iter()
                .filter(|(_, s)| s.kind == kura_core::snapshot::BackupType::Baseline)
                .flat_map(|(_, s)| s.paths.iter().map(PathBuf::from))
                .collect();
            if roots.is_empty() {
                roots = snapshot.paths.iter().map(PathBuf::from).collect();
            }
            Some(BaselineSource {
                dir: dir.clone(),
                roots,
            })
        }
        None => None,
    };
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
    } else {
        opts.threads
    };
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let kept = AtomicUsize::new(0);
    let warnings: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let kept_bytes = std::sync::atomic::AtomicU64::new(0);
    let failed: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let fatal: Mutex<Option<ClientError>> = Mutex::new(None);
    let chunker = repo.chunker();
    let am_root = unsafe { libc::geteuid() } == 0;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !abort.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = files.get(i) else { break };
                    if later_set.contains(&i) {
                        continue;
                    }
                    let dest = target.join(&item.rel);
                    let equal = |m: &fs::Metadata| {
                        Ok(m.len() == item.node.size
                            && crate::walk::mtime_ns(m) == item.node.mtime_ns)
                    };
                    let refused = match decide(&dest, NodeKind::File, opts.overwrite, equal) {
                        Ok(Decision::Write) => None,
                        Ok(Decision::Keep) => {
                            kept.fetch_add(1, Ordering::Relaxed);
                            kept_bytes.fetch_add(item.node.size, Ordering::Relaxed);
                            progress.bytes(item.node.size);
                            progress.item();
                            continue;
                        }
                        Ok(Decision::Refuse(why)) => Some(why),
                        Err(e) => Some(format!("{e} (not restored)")),
                    };
                    if let Some(why) = refused {
                        let msg = format!("{}: {why}", item.source.display());
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((i, msg));
                        progress.item();
                        continue;
                    }
                    let r = write_file(
                        &dest,
                        &item.node,
                        |tmp: &mut File| {
                            let mut from_source = None;
                            for id in &item.node.content {
                                let data = blob(
                                    repo,
                                    &index,
                                    id,
                                    item,
                                    baseline.as_ref(),
                                    &chunker,
                                    &mut from_source,
                                )?;
                                // A chunk of zeros becomes a hole, so a sparse file stays sparse.
                                let r = if data.iter().all(|&b| b == 0) {
                                    tmp.seek(io::SeekFrom::Current(data.len() as i64)).map(drop)
                                } else {
                                    tmp.write_all(&data)
                                };
                                r.map_err(|e| Failure::Io(io_err(&dest)(e)))?;
                                progress.bytes(data.len() as u64);
                            }
                            tmp.set_len(item.node.size)
                                .map_err(|e| Failure::Io(io_err(&dest)(e)))
                        },
                        am_root,
                        opts.overwrite,
                    );
                    progress.item();
                    match r {
                        Ok(()) => {
                            let lost = crate::xattr::write(&dest, &item.node.xattrs);
                            if !lost.is_empty() {
                                warnings.lock().unwrap_or_else(|p| p.into_inner()).extend(
                                    lost.into_iter()
                                        .map(|w| format!("{}: {w}", item.source.display())),
                                );
                            }
                        }
                        Err(Failure::Io(e)) if is_no_space(&e) => {
                            abort.store(true, Ordering::Relaxed);
                            fatal
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                        Err(f) => {
                            let msg = format!("{}: {} (not restored)", item.source.display(), f);
                            progress.warn(&msg);
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push((i, msg));
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        apply_dir_metadata(&dirs, &target, am_root);
        return Err(e);
    }
    let mut failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    let failed_idx: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
    for &i in &later {
        let item = &files[i];
        let first = first_of[&item.node.hardlink];
        let dest = target.join(&item.rel);
        let first_dest = target.join(&files[first].rel);
        let same_file = |m: &fs::Metadata| {
            let f = fs::symlink_metadata(&first_dest)?;
            Ok(m.ino() == f.ino() && m.dev() == f.dev())
        };
        let r = if failed_idx.contains(&first) {
            Err("the file it is a hard link of was not restored".to_string())
        } else {
            match decide(&dest, NodeKind::File, opts.overwrite, same_file) {
                Ok(Decision::Write) => {
                    replace_with(&dest, opts.overwrite, |tmp| fs::hard_link(&first_dest, tmp))
                        .map_err(|e| format!("{e} (not restored)"))
                }
                Ok(Decision::Keep) => {
                    kept.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Ok(Decision::Refuse(why)) => Err(why),
                Err(e) => Err(format!("{e} (not restored)")),
            }
        };
        if let Err(e) = r {
            failed.push((i, format!("{}: {e}", item.source.display())));
        }
    }
    failed.sort();
    out.kept = kept.load(Ordering::Relaxed) as u64;
    out.files = (files.len() - failed.len()) as u64 - out.kept;
    out.errors.extend(failed.into_iter().map(|(_, m)| m));
    out.bytes = files
        .iter()
        .enumerate()
        .filter(|(i, _)| !failed_idx.contains(i))
        .map(|(_, f)| f.node.size)
        .sum::<u64>()
        - kept_bytes.load(Ordering::Relaxed);

    out.warnings
        .extend(warnings.into_inner().unwrap_or_else(|p| p.into_inner()));
    let mut devices_skipped = 0u64;
    for l in &links {
        let dest = target.join(&l.rel);
        let kind = l.node.kind;
        if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) && !am_root {
            devices_skipped += 1;
            continue;
        }
        let t = std::ffi::OsStr::from_bytes(l.node.target.as_deref().unwrap_or_default());
        let equal = |m: &fs::Metadata| match kind {
            NodeKind::Symlink => Ok(fs::read_link(&dest)?.as_os_str() == t),
            _ => Ok(m.rdev() == l.node.rdev && m.mode() & 0o7777 == l.node.mode),
        };
        let r = match decide(&dest, kind, opts.overwrite, equal) {
            Ok(Decision::Write) => {
                replace_with(&dest, opts.overwrite, |tmp| make_special(&l.node, tmp))
                    .map_err(|e| format!("{e} (not restored)"))
            }
            Ok(Decision::Keep) => {
                out.kept += 1;
                continue;
            }
            Ok(Decision::Refuse(why)) => Err(why),
            Err(e) => Err(format!("{e} (not restored)")),
        };
        match r {
            Ok(()) => {
                if am_root {
                    let _ = std::os::unix::fs::lchown(&dest, Some(l.node.uid), Some(l.node.gid));
                }
                if kind != NodeKind::Symlink {
                    let _ = fs::set_permissions(&dest, Permissions::from_mode(l.node.mode));
                }
                if let Err(e) = set_mtime_nofollow(&dest, l.node.mtime_ns) {
                    out.warnings
                        .push(format!("{}: setting its time: {e}", l.source.display()));
                }
                for w in crate::xattr::write(&dest, &l.node.xattrs) {
                    out.warnings.push(format!("{}: {w}", l.source.display()));
                }
                match kind {
                    NodeKind::Symlink => out.symlinks += 1,
                    _ => out.specials += 1,
                }
            }
            Err(e) => out.errors.push(format!("{}: {e}", l.source.display())),
        }
    }
    if devices_skipped > 0 {
        out.warnings.push(format!(
            "{} not restored: making device nodes needs root",
            kura_core::count(devices_skipped, "device node")
        ));
    }
    out.devices_skipped = devices_skipped;
    out.errors
        .extend(apply_dir_metadata(&dirs, &target, am_root));
    Ok(out)
}

/// Directory metadata last, deepest first, so writing into them does not change it again.
/// Also run when a restore stops early, so no directory keeps its private creation mode.
fn apply_dir_metadata(dirs: &[Item], target: &Path, am_root: bool) -> Vec<String> {
    let mut errors = Vec::new();
    for d in dirs.iter().rev() {
        let dest = target.join(&d.rel);
        let r = File::open(&dest).and_then(|f| {
            if am_root {
                std::os::unix::fs::fchown(&f, Some(d.node.uid), Some(d.node.gid))?;
            }
            f.set_permissions(Permissions::from_mode(d.node.mode))?;
            f.set_times(FileTimes::new().set_modified(time_of(d.node.mtime_ns)))
        });
        if let Err(e) = r {
            errors.push(format!("{}: setting metadata: {e}", d.source.display()));
        }
        for w in crate::xattr::write(&dest, &d.node.xattrs) {
            errors.push(format!("{}: {w}", d.source.display()));
        }
    }
    errors
}

type Plan = (Vec<Item>, Vec<Item>, Vec<Item>);

fn plan(
    repo: &Repository,
    index: &MasterIndex,
    root: Id,
    opts: &RestoreOptions,
    includes: Option<&Patterns>,
    lost: &mut Vec<walk::LostTree>,
) -> Result<Plan> {
    let (mut dirs, mut files, mut links) = (Vec::new(), Vec::new(), Vec::new());
    // Where the walk starts, and the prefix stripped from snapshot paths to make target paths.
    let (start, strip): (Id, PathBuf) = match &opts.subpath {
        None => (root, PathBuf::from("/")),
        Some(p) => {
            let p = walk::absolute(p)?;
            match walk::find_node(repo, index, &root, &p)? {
                None => (root, PathBuf::from("/")),
                Some(node) if node.kind == NodeKind::Dir => (node.subtree.unwrap_or_default(), p),
                Some(node) => {
                    if includes.is_none_or(|g| g.matches(&p)) {
                        let item = Item {
                            rel: PathBuf::from(std::ffi::OsStr::from_bytes(&node.name)),
                            source: p,
                            node,
                        };
                        match item.node.kind {
                            NodeKind::File => files.push(item),
                            _ => links.push(item),
                        }
                    }
                    return Ok((dirs, files, links));
                }
            }
        }
    };
    // A pattern that matches a directory takes everything under it; the directories above
    // what matched are made as it is restored.
    let mut visit = |path: &Path, node: &Node| -> Result<bool> {
        let rel = path.strip_prefix(&strip).unwrap_or(path).to_path_buf();
        let selected = includes.is_none_or(|g| g.matches(path));
        let item = Item {
            source: path.to_path_buf(),
            rel,
            node: node.clone(),
        };
        match node.kind {
            _ if !selected => {}
            NodeKind::Dir => dirs.push(item),
            NodeKind::File => files.push(item),
            _ => links.push(item),
        }
        Ok(true)
    };
    walk::visit_tree(repo, index, &start, &strip, &mut visit, lost)?;
    Ok((dirs, files, links))
}

enum Failure {
    Io(ClientError),
    Repo(RepoError),
    Baseline(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Io(e) => e.fmt(f),
            Failure::Repo(e) => e.fmt(f),
            Failure::Baseline(e) => f.write_str(e),
        }
    }
}

fn is_no_space(e: &ClientError) -> bool {
    matches!(e, ClientError::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
}

/// One blob of a file: from the repository, or for a baseline-only blob from the recovery
/// source, which is read and chunked once per file (`from_source` keeps what it held).
fn blob(
    repo: &Repository,
    index: &MasterIndex,
    id: &Id,
    item: &Item,
    baseline: Option<&BaselineSource>,
    chunker: &kura_core::chunker::Chunker,
    from_source: &mut Option<HashMap<Id, Vec<u8>>>,
) -> Result<Vec<u8>, Failure> {
    if index.contains(id) {
        return repo.read_blob(index, id).map_err(Failure::Repo);
    }
    match (index.external(id), baseline) {
        (Some(_), Some(b)) => {
            if from_source.is_none() {
                *from_source = Some(b.chunks(repo, chunker, &item.source, &item.node.content)?);
            }
            from_source
                .as_mut()
                .and_then(|m| m.get(id).cloned())
                .ok_or_else(|| {
                    Failure::Baseline(format!(
                        "the baseline source does not hold the recorded contents of {}",
                        item.source.display()
                    ))
                })
        }
        (Some(_), None) => Err(Failure::Baseline(
            "exists only in a baseline: give --baseline-source".into(),
        )),
        (None, _) => Err(Failure::Repo(RepoError::MissingBlob(*id))),
    }
}

/// A directory laid out like a baseline's root (recovery media), to take baseline-only chunks from.
struct BaselineSource {
    dir: PathBuf,
    roots: Vec<PathBuf>,
}

impl BaselineSource {
    /// Reads the source file that corresponds to snapshot path `path` and returns those of its
    /// chunks whose ids are in `wanted`; each id is the keyed hash of its chunk, so what comes
    /// back is verified.
    fn chunks(
        &self,
        repo: &Repository,
        chunker: &kura_core::chunker::Chunker,
        path: &Path,
        wanted: &[Id],
    ) -> Result<HashMap<Id, Vec<u8>>, Failure> {
        let root = self
            .roots
            .iter()
            .filter(|r| path.starts_with(r))
            .max_by_key(|r| r.as_os_str().len())
            .ok_or_else(|| Failure::Baseline("not under any baseline root".into()))?;
        let rel = path.strip_prefix(root).unwrap_or(Path::new(""));
        let source = if rel.as_os_str().is_empty() {
            self.dir.join(path.file_name().unwrap_or_default())
        } else {
            self.dir.join(rel)
        };
        let data = fs::read(&source)
            .map_err(|e| Failure::Baseline(format!("baseline source {}: {e}", source.display())))?;
        let wanted: HashSet<&Id> = wanted.iter().collect();
        Ok(chunker
            .chunks(&data)
            .filter_map(|c| {
                let id = repo.blob_key().id(c);
                wanted.contains(&id).then(|| (id, c.to_vec()))
            })
            .collect())
    }
}

/// Creates `target/rel` as a real directory. Something else in the way is replaced only when
/// [`decide`] allows it (a symlink is never followed); otherwise the reason is returned.
/// `verified` remembers directories already checked.
fn ensure_dir(
    target: &Path,
    rel: &Path,
    verified: &mut HashSet<PathBuf>,
    overwrite: Overwrite,
) -> Result<Option<String>> {
    if verified.contains(rel) {
        return Ok(None);
    }
    let mut at = target.to_path_buf();
    let mut so_far = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(ClientError::Usage(format!(
                "refusing unsafe path {}",
                rel.display()
            )));
        };
        at.push(name);
        so_far.push(name);
        if verified.contains(&so_far) {
            continue;
        }
        match decide(&at, NodeKind::Dir, overwrite, |_| Ok(true)).map_err(io_err(&at))? {
            Decision::Keep => {}
            Decision::Refuse(why) => return Ok(Some(why)),
            Decision::Write => {
                if fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
                    fs::remove_file(&at).map_err(io_err(&at))?;
                }
                // Private until its own mode is applied at the end of the restore.
                match fs::DirBuilder::new().mode(0o700).create(&at) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(&at)(e)),
                }
            }
        }
        verified.insert(so_far.clone());
    }
    Ok(None)
}

/// What to do at `dest`, where the snapshot has an entry of `kind`, given what is there now;
/// `equal` says whether an entry of the same kind already matches the snapshot's.
fn decide(
    dest: &Path,
    kind: NodeKind,
    overwrite: Overwrite,
    equal: impl FnOnce(&fs::Metadata) -> io::Result<bool>,
) -> io::Result<Decision> {
    let m = match fs::symlink_metadata(dest) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Decision::Write),
        Err(e) => return Err(e),
    };
    let ft = m.file_type();
    let same_kind = match kind {
        NodeKind::File => ft.is_file(),
        NodeKind::Dir => ft.is_dir(),
        NodeKind::Symlink => ft.is_symlink(),
        NodeKind::Fifo => ft.is_fifo(),
        NodeKind::CharDevice => ft.is_char_device(),
        NodeKind::BlockDevice => ft.is_block_device(),
    };
    if same_kind {
        // An existing directory is always used as it is; only its metadata is restored.
        return Ok(match overwrite {
            _ if kind == NodeKind::Dir => Decision::Keep,
            Overwrite::Always => Decision::Write,
            Overwrite::Never => Decision::Keep,
            Overwrite::IfChanged if equal(&m)? => Decision::Keep,
            Overwrite::IfChanged => Decision::Write,
        });
    }
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a file"
    } else {
        // A symlink, socket or FIFO holds no data. Under `never` it stays, unless a directory
        // must go there: restoring beneath it would mean following it.
        return Ok(match overwrite {
            Overwrite::Never if kind != NodeKind::Dir => Decision::Keep,
            Overwrite::Never => Decision::Refuse(
                "something that is not a directory is in the way of this directory; left as it is, nothing under it restored (--overwrite if-changed or always replaces it)".into(),
            ),
            _ => Decision::Write,
        });
    };
    if overwrite == Overwrite::Always {
        return Ok(Decision::Write);
    }
    let of = match kind {
        NodeKind::Dir => "this directory; left as it is, nothing under it restored",
        NodeKind::File => "this file; left as it is",
        _ => "this entry; left as it is",
    };
    Ok(Decision::Refuse(format!(
        "{what} is in the way of {of} (--overwrite always replaces it)"
    )))
}

/// Creates a symlink, FIFO or device node at `at` as `node` describes it.
fn make_special(node: &Node, at: &Path) -> io::Result<()> {
    if node.kind == NodeKind::Symlink {
        let t = std::ffi::OsStr::from_bytes(node.target.as_deref().unwrap_or_default());
        return std::os::unix::fs::symlink(t, at);
    }
    let kind = match node.kind {
        NodeKind::CharDevice => libc::S_IFCHR,
        NodeKind::BlockDevice => libc::S_IFBLK,
        _ => libc::S_IFIFO,
    };
    let c = sys::c_path(at)?;
    // SAFETY: `c` is a valid C string; mknod reads nothing else from memory.
    sys::check(unsafe {
        libc::mknod(
            c.as_ptr(),
            kind | (node.mode & 0o7777),
            node.rdev as libc::dev_t,
        )
    })
}

/// Sets the modification time of `path` itself, not of what a symlink points to.
fn set_mtime_nofollow(path: &Path, ns: i64) -> io::Result<()> {
    let c = sys::c_path(path)?;
    let mtime = libc::timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    };
    let atime = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    let times = [atime, mtime];
    // SAFETY: `c` is a valid C string and `times` two initialised timespecs.
    sys::check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Modification time in nanoseconds, as trees record it.
/// Renames `tmp` over `dest`; a directory in the way is removed first only under
/// [`Overwrite::Always`] (with the others, [`decide`] refused it, and one that appeared since
/// makes the rename fail).
fn rename_over(tmp: &Path, dest: &Path, overwrite: Overwrite) -> io::Result<()> {
    match fs::rename(tmp, dest) {
        Err(e)
            if overwrite == Overwrite::Always
                && (matches!(
                    e.kind(),
                    io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty
                ) || fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir())) =>
        {
            fs::remove_dir_all(dest)?;
            fs::rename(tmp, dest)
        }
        r => r,
    }
}

fn temp_name(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short: String = name.chars().take(100).collect();
    dest.with_file_name(format!(
        ".{short}.kura-{}",
        kura_core::id::hex(&kura_core::crypto::random_bytes::<6>())
    ))
}

/// Makes `dest` by creating a temporary name with `make` and renaming it over `dest`.
fn replace_with(
    dest: &Path,
    overwrite: Overwrite,
    make: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_name(dest);
    let r = make(&tmp).and_then(|()| rename_over(&tmp, dest, overwrite));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Writes one file so that nothing appears at `dest` until its contents are complete and
/// verified: into an unnamed file (`O_TMPFILE`) that is linked into place at the end, or where
/// the filesystem lacks that, into a temporary name that is renamed over `dest`.
fn write_file(
    dest: &Path,
    node: &Node,
    fill: impl FnOnce(&mut File) -> Result<(), Failure>,
    am_root: bool,
    overwrite: Overwrite,
) -> Result<(), Failure> {
    let fail = |e: io::Error| Failure::Io(io_err(dest)(e));
    let dir = dest.parent().unwrap_or(Path::new("."));
    let (mut f, named) = match File::options()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
    {
        Ok(f) => (f, None),
        Err(_) => {
            let tmp = temp_name(dest);
            let f = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(fail)?;
            (f, Some(tmp))
        }
    };
    let r = (|| {
        fill(&mut f)?;
        if am_root {
            std::os::unix::fs::fchown(&f, Some(node.uid), Some(node.gid)).map_err(fail)?;
        }
        f.set_permissions(Permissions::from_mode(node.mode))
            .map_err(fail)?;
        f.set_times(FileTimes::new().set_modified(time_of(node.mtime_ns)))
            .map_err(fail)?;
        match &named {
            Some(tmp) => rename_over(tmp, dest, overwrite).map_err(fail),
            None => link_into_place(&f, dest, overwrite).map_err(fail),
        }
    })();
    if r.is_err()
        && let Some(tmp) = &named
    {
        let _ = fs::remove_file(tmp);
    }
    r
}

/// Gives an unnamed (`O_TMPFILE`) file the name `dest`, replacing what is there.
fn link_into_place(f: &File, dest: &Path, overwrite: Overwrite) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(io::Error::other)?;
    let link = |to: &Path| -> io::Result<()> {
        let to = sys::c_path(to)?;
        // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
        sys::check(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc_path.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
    };
    match link(dest) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let tmp = temp_name(dest);
            link(&tmp)?;
            rename_over(&tmp, dest, overwrite).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
        }
        r => r,
    }
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}
